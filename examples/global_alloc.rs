//! dmaslab as the global allocator, policy chosen in code.
//!
//! `cargo run -p dmaslab --release --example global_alloc`
//!
//! Policy A (every kmalloc buffer DMA-safe) is chosen here rather than with `DMASLAB_POLICY`:
//! the choice made in code wins over the environment. The example prints the kmalloc caches
//! the program used, as `/proc/slabinfo` rows, and what policy A cost in bytes.

use dmaslab::{heap, DmaSlab, Policy};
use std::collections::BTreeMap;

#[global_allocator]
static GLOBAL: DmaSlab = DmaSlab::with_policy(Policy::A);

fn main() {
    // A word count: many small strings and tree nodes, the kind of load where A's cost shows.
    let text = "the quick brown fox jumps over the lazy dog and the dog sleeps";
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..2000 {
        for w in text.split(' ') {
            *counts.entry(format!("{w}{}", round % 50)).or_default() += 1;
        }
    }
    let h = heap();
    let s = h.settings();
    println!(
        "policy {} (chosen in code), DMA line {}",
        s.policy, s.dma_minalign
    );
    println!(
        "{} distinct words, 'the7' seen {} times",
        counts.len(),
        counts["the7"]
    );
    let small = Box::new(7u8);
    println!(
        "a 1-byte Box sits in a {}-byte slot at {:p}",
        h.usable_size(&*small as *const u8),
        &*small
    );
    assert_eq!(
        s.policy,
        Policy::A,
        "the policy chosen in code is the heap's"
    );
    assert_eq!(
        h.usable_size(&*small as *const u8),
        s.dma_minalign,
        "under A the smallest object is a DMA line"
    );
    // What A costs here: every key's buffer is rounded up to a whole DMA line.
    let asked: usize = counts.keys().map(|k| k.capacity()).sum();
    let slots: usize = counts.keys().map(|k| h.usable_size(k.as_ptr())).sum();
    println!(
        "keys: {asked} bytes asked for, {slots} bytes of slots (+{}% under A)",
        (slots - asked) * 100 / asked
    );
    let mut slabinfo = String::new();
    h.core().write_slabinfo(&mut slabinfo).unwrap();
    for row in slabinfo
        .lines()
        .filter(|r| r.starts_with('#') || r.split_whitespace().nth(1).is_some_and(|a| a != "0"))
    {
        println!("{row}");
    }
    println!("global_alloc: ok");
}
