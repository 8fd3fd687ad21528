//! Producer/consumer across threads: in its own test binary (process), so the heap's page count
//! measures this test alone.

use dmaslab::heap;
use std::sync::mpsc;
use std::thread;

/// One thread only allocates, another only frees: the depot bound must send the freed objects
/// back to the slabs, so the heap does not grow round after round.
#[test]
fn producer_consumer_stays_bounded() {
    let rounds = 40;
    let per_round = 20_000;
    let (tx, rx) = mpsc::sync_channel::<Vec<usize>>(2);
    let consumer = thread::spawn(move || {
        for v in rx {
            for p in v {
                // SAFETY: blocks from the producer, given to us.
                unsafe {
                    assert_eq!(*(p as *const u64), p as u64);
                    heap().free(p as *mut u8);
                }
            }
        }
    });
    let mut peak_after_warmup = 0;
    for r in 0..rounds {
        let mut v = Vec::with_capacity(per_round);
        for _ in 0..per_round {
            let p = heap().malloc(48);
            assert!(!p.is_null());
            // SAFETY: a fresh 48-byte block.
            unsafe { *(p as *mut u64) = p as u64 };
            v.push(p as usize);
        }
        tx.send(v).unwrap();
        let held = heap().totals().pages_held;
        if r == 5 {
            peak_after_warmup = held;
        }
        if r > 5 {
            assert!(
                held <= peak_after_warmup * 2 + 64,
                "round {r}: {held} pages held, {peak_after_warmup} after warm-up: memory grows"
            );
        }
    }
    drop(tx);
    consumer.join().unwrap();
}
