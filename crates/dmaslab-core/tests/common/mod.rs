//! Shared test helpers: an arena-backed allocator of a given size.
#![allow(dead_code)]

use dmaslab_core::{ArenaPageSource, Config, CpuCache, Gfp, Kmalloc, Policy};
use std::mem::MaybeUninit;

/// Uninitialised memory for an arena (no writes, so Miri stays fast).
pub fn region(bytes: usize) -> Box<[MaybeUninit<u8>]> {
    let mut v = Vec::with_capacity(bytes);
    // SAFETY: MaybeUninit<u8> needs no initialisation.
    unsafe { v.set_len(bytes) };
    v.into_boxed_slice()
}

/// Zeroed memory for an arena, as fresh pages from the kernel are: for tests whose misuse
/// makes the allocator read slots never written (a bogus free's first-word check), which is a
/// read of uninitialised memory under Miri over [`region`].
pub fn region_zeroed(bytes: usize) -> Box<[MaybeUninit<u8>]> {
    // `vec![0; n]` allocates zeroed memory in one step (also under Miri).
    let zeroed = Box::into_raw(vec![0u8; bytes].into_boxed_slice());
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and initialised bytes are valid for it;
    // the box's allocation is handed over whole.
    unsafe { Box::from_raw(zeroed as *mut [MaybeUninit<u8>]) }
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

/// `kmalloc_cpu(size)` through `cc` with every byte written with `fill` (as a program would;
/// the free paths read the first word).
///
/// # Safety
/// `cc` is used with `k` only.
pub unsafe fn cpu_alloc(
    k: &Kmalloc<ArenaPageSource<'_>>,
    cc: &mut CpuCache,
    size: usize,
    fill: u8,
) -> *mut u8 {
    // SAFETY: forwarded from the caller.
    let p = unsafe { k.kmalloc_cpu(cc, size, 1, Gfp::KERNEL, 0) }
        .expect("no misuse")
        .expect("memory")
        .as_ptr();
    // SAFETY: a fresh allocation of `size` bytes.
    unsafe { p.write_bytes(fill, size) };
    p
}
