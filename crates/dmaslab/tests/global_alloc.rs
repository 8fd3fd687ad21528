//! `DmaSlab` as the test binary's `#[global_allocator]`, and `Vec<u8, DmaAlloc>`.

use allocator_api2::vec::Vec as AVec;
use dmaslab::{heap, DmaAlloc, DmaSlab};
use std::collections::HashMap;

#[global_allocator]
static GLOBAL: DmaSlab = DmaSlab;

#[test]
fn std_collections_run_on_dmaslab() {
    let before = heap().totals().bytes_handed_out;
    let mut m: HashMap<String, Vec<u32>> = HashMap::new();
    for i in 0..20_000u32 {
        m.entry(format!("key{}", i % 5000)).or_default().push(i);
    }
    assert_eq!(m.len(), 5000);
    assert_eq!(m["key42"], vec![42, 5042, 10042, 15042]);
    let s: String = (0..1000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    assert_eq!(s.len(), 1000);
    assert!(
        heap().totals().bytes_handed_out > before,
        "the global allocator is not dmaslab"
    );
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                (0..10_000usize)
                    .map(|i| vec![t; i % 64].iter().sum::<usize>())
                    .sum::<usize>()
            })
        })
        .collect();
    for (t, h) in threads.into_iter().enumerate() {
        // Each i contributes t * (i % 64); 10_000 = 156 * 64 + 16.
        let per_cycle: usize = (0..64).sum();
        let tail: usize = (0..16).sum();
        assert_eq!(h.join().unwrap(), t * (156 * per_cycle + tail));
    }
}

#[test]
fn dma_vec_is_line_aligned_and_whole_lines() {
    let line = DmaAlloc.line();
    for n in [1usize, 5, 63, 64, 65, 100, 300, 4000, 10_000] {
        let mut v: AVec<u8, DmaAlloc> = AVec::with_capacity_in(n, DmaAlloc);
        v.extend(std::iter::repeat_n(0xA5u8, n));
        let p = v.as_ptr() as usize;
        assert_eq!(
            p % line,
            0,
            "DMA buffer of {n} bytes at {p:#x} not on a {line}-byte line"
        );
        assert_eq!(heap().usable_size(v.as_ptr()) % line, 0);
        assert!(v.iter().all(|&b| b == 0xA5));
    }
}
