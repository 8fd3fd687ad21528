//! Several threads allocate, hand objects to each other and free them, checking contents.

mod common;

use common::{kmalloc, region};
use dmaslab_core::{Gfp, Policy};
use std::sync::mpsc;

#[test]
fn cross_thread_alloc_free() {
    let threads = if cfg!(miri) { 2 } else { 4 };
    let rounds = if cfg!(miri) { 50 } else { 20_000 };
    let mut mem = region(if cfg!(miri) { 2 << 20 } else { 64 << 20 });
    let k = kmalloc(&mut mem, Policy::C, 64);
    std::thread::scope(|s| {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads)
            .map(|_| mpsc::sync_channel::<(usize, usize, u8)>(256))
            .unzip();
        for (t, rx) in rxs.into_iter().enumerate() {
            let k = &k;
            let next = txs[(t + 1) % threads].clone();
            s.spawn(move || {
                let mut seed = t as u64 * 7919 + 1;
                for r in 0..rounds {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let size = 1 + (seed % 3000) as usize;
                    let tag = (r % 251) as u8;
                    let p = k.kmalloc(size, Gfp::KERNEL).expect("memory");
                    // SAFETY: fresh allocation of `size` bytes.
                    unsafe { p.as_ptr().write_bytes(tag, size) };
                    if next.try_send((p.as_ptr() as usize, size, tag)).is_err() {
                        // SAFETY: not handed over (the next thread is behind): still ours.
                        unsafe { k.kfree(p.as_ptr()).unwrap() };
                    }
                    while let Ok((addr, size, tag)) = rx.try_recv() {
                        let p = addr as *mut u8;
                        // SAFETY: handed over by the previous thread, which no longer uses it.
                        let ok = unsafe { std::slice::from_raw_parts(p, size) }
                            .iter()
                            .all(|&b| b == tag);
                        assert!(ok, "object corrupted in flight");
                        // SAFETY: as above; freed once.
                        unsafe { k.kfree(p).unwrap() };
                    }
                }
                drop(next);
                for (addr, size, tag) in rx {
                    let p = addr as *mut u8;
                    // SAFETY: as above.
                    assert!(unsafe { std::slice::from_raw_parts(p, size) }
                        .iter()
                        .all(|&b| b == tag));
                    // SAFETY: as above.
                    unsafe { k.kfree(p).unwrap() };
                }
            });
        }
        drop(txs);
    });
    assert_eq!(k.totals().live_allocations, 0);
    let mut active = 0;
    k.for_each_cache(|_, i| active += i.active_objs);
    assert_eq!(active, 0);
}
