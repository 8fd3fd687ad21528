//! Shared test helpers: an arena-backed allocator of a given size.
#![allow(dead_code)]

use dmaslab_core::{ArenaPageSource, Config, Kmalloc, Policy};
use std::mem::MaybeUninit;

/// Uninitialised memory for an arena (no writes, so Miri stays fast).
pub fn region(bytes: usize) -> Box<[MaybeUninit<u8>]> {
    let mut v = Vec::with_capacity(bytes);
    // SAFETY: MaybeUninit<u8> needs no initialisation.
    unsafe { v.set_len(bytes) };
    v.into_boxed_slice()
}

/// Segment order for tests: small segments under Miri keep the descriptor setup cheap.
pub const SEG_ORDER: u32 = if cfg!(miri) { 5 } else { 6 };

/// An allocator over `region` with `policy` and DMA line `l`.
pub fn kmalloc(
    region: &mut [MaybeUninit<u8>],
    policy: Policy,
    l: usize,
) -> Kmalloc<ArenaPageSource<'_>> {
    kmalloc_mode(region, policy, l, false)
}

/// The same, in debug mode when `debug` is set.
pub fn kmalloc_mode(
    region: &mut [MaybeUninit<u8>],
    policy: Policy,
    l: usize,
    debug: bool,
) -> Kmalloc<ArenaPageSource<'_>> {
    let arena = ArenaPageSource::new(region).expect("arena");
    let config = Config::new(policy)
        .dma_minalign(l)
        .seg_order(SEG_ORDER)
        .debug(debug);
    Kmalloc::new(arena, config).expect("config")
}

/// Largest power of two dividing `x` (x > 0).
pub fn natural_align(x: usize) -> usize {
    1 << x.trailing_zeros()
}
