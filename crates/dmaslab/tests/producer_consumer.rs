//! Producer/consumer across threads: in its own test binary (process), so the heap's page count
//! measures this test alone.

use dmaslab::heap;
use std::sync::mpsc;
use std::thread;

/// Rounds the channel buffers: the producer runs at most this far ahead of the consumer.
const CAPACITY: usize = 2;

/// One thread only allocates, another only frees: the depot bound must send the freed objects
/// back to the slabs, so the heap does not grow round after round.
///
/// When the producer measures (right after a send), the live rounds are the ones in the channel
/// (at most `CAPACITY`, the one just sent among them) and the one the consumer is freeing: at
/// most `CAPACITY + 1`, however the threads are scheduled. One more round's worth covers the
/// consumer's freed objects still cached in its magazines and the depot (a few magazines, far
/// less than a round). A heap that keeps freed memory from the slabs grows past that bound
/// within a few rounds.
#[test]
fn producer_consumer_stays_bounded() {
    let rounds = 40;
    let per_round = 20_000;
    let (tx, rx) = mpsc::sync_channel::<Vec<usize>>(CAPACITY);
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
    let mut one_round = 0;
    for r in 0..rounds {
        let mut v = Vec::with_capacity(per_round);
        for _ in 0..per_round {
            let p = heap().malloc(48);
            assert!(!p.is_null());
            // SAFETY: a fresh 48-byte block.
            unsafe { *(p as *mut u64) = p as u64 };
            v.push(p as usize);
        }
        if r == 0 {
            // Before the first send: exactly one round live in a fresh heap (its own test
            // binary), whatever the consumer does.
            one_round = heap().totals().pages_held;
        }
        tx.send(v).unwrap();
        let held = heap().totals().pages_held;
        let bound = (CAPACITY + 2) * one_round + 64;
        assert!(
            held <= bound,
            "round {r}: {held} pages held, {one_round} for one round, bound {bound} for \
             {CAPACITY} + 1 rounds in flight: memory grows"
        );
    }
    drop(tx);
    consumer.join().unwrap();
}
