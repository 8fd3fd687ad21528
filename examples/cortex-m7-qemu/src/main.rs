//! dmaslab-core as the heap of a Cortex-M7 firmware, on QEMU's MPS2-AN500.
//!
//! `cargo run --release` (needs the thumbv7em-none-eabihf target and qemu-system-arm). The
//! firmware uses the heap through `alloc` (Vec, Box, BTreeMap, String), prints
//! `/proc/slabinfo` over semihosting, runs the heap out of memory and back, and exits through
//! semihosting with status 0 only if every check held.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprint};
use dmaslab_core::{
    Config, CriticalSectionRawMutex, Gfp, HeapRegion, Owner, Policy, StaticHeap, StaticKmalloc,
};

/// The host's console through semihosting; writing to it does not allocate.
struct Host;

impl Write for Host {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        hprint!("{}", s);
        Ok(())
    }
}

/// `println!` to the host (`hprintln!` cannot capture variables in its format string).
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(Host, $($t)*);
    }};
}

/// The Cortex-M7's D-cache line, what DMA maintenance works on.
const LINE: usize = 32;

// The three-line heap: a region, the heap (interrupt-safe lock), and `init` in `main`.
static REGION: HeapRegion<{ 1 << 20 }> = HeapRegion::new();
#[global_allocator]
static HEAP: StaticHeap<CriticalSectionRawMutex> = StaticHeap::new();

#[entry]
fn main() -> ! {
    if let Err(e) = HEAP.init(
        REGION.take().expect("region taken once"),
        Config::new(Policy::C).dma_minalign(LINE),
    ) {
        fail(format_args!("heap init: {e}"));
    }
    let seg = HEAP
        .with_kmalloc(|k| k.page_size() << k.config().seg_order.unwrap_or(0))
        .unwrap_or(0);
    say!(
        "dmaslab firmware: 1024 KiB heap, {} KiB segments, policy C, {LINE}-byte lines",
        seg >> 10
    );
    collections();
    dma_buffers();
    slabinfo();
    oom_then_recovery();
    usable();
    say!("firmware: ok");
    debug::exit(debug::EXIT_SUCCESS);
    halt()
}

/// Vec, Box, BTreeMap and String on the heap, with their results checked.
fn collections() {
    let squares: Vec<u32> = (0..1000).map(|i| i * i).collect();
    let sum: u64 = squares.iter().map(|&x| x as u64).sum();
    let mut names: BTreeMap<u32, String> = BTreeMap::new();
    for i in 0..200u32 {
        let mut s = String::new();
        let _ = write!(s, "node-{i}");
        names.insert(i * 7 % 200, s);
    }
    let boxed: Box<[u16; 64]> = Box::new([3; 64]);
    let ok = sum == 332_833_500
        && names.len() == 200
        && names[&42] == "node-6"
        && boxed.iter().map(|&x| x as u32).sum::<u32>() == 192;
    if !ok {
        fail(format_args!("collections gave wrong results"));
    }
    say!(
        "collections: ok (Vec of {}, BTreeMap of {}, Box of {} bytes)",
        squares.len(),
        names.len(),
        core::mem::size_of_val(&*boxed)
    );
}

/// DMA-MAP: here goes a DMA map/unmap of a bounced and an unbounced buffer, through
/// dmaslab-dma's `map_single`/`unmap_single` on the Cortex-M7 cache-maintenance backend (SCB
/// clean/invalidate by address), once that backend is merged. Until then this shows, on the
/// target, the input of the bounce decision: a 12-byte kmalloc buffer (kmalloc-16) shares its
/// cache line with a neighbour, so under policy C its mapping would bounce; a `Gfp::DMA`
/// buffer (dma-kmalloc-32) owns its line and would be mapped in place.
fn dma_buffers() {
    let shared = HEAP.with_kmalloc(|k| middle_shares_a_line(k, Gfp::KERNEL));
    let own = HEAP.with_kmalloc(|k| middle_shares_a_line(k, Gfp::DMA));
    match (shared, own) {
        (Some(Some(true)), Some(Some(false))) => say!(
            "dma: 12-byte kmalloc buffer shares its {LINE}-byte line (would bounce); \
             12-byte Gfp::DMA buffer owns its line (mapped in place)"
        ),
        other => fail(format_args!(
            "dma buffers: unexpected line sharing {other:?}"
        )),
    }
}

/// Allocates three 12-byte buffers with `gfp` and tells whether any byte of the middle one's
/// cache lines outside its slot belongs to something (`None`: out of memory). All three are
/// freed again.
fn middle_shares_a_line(k: &StaticKmalloc, gfp: Gfp) -> Option<bool> {
    let bufs = [
        k.kmalloc(12, gfp)?,
        k.kmalloc(12, gfp)?,
        k.kmalloc(12, gfp)?,
    ];
    let p = bufs[1].as_ptr() as usize;
    let end = p + k.ksize(bufs[1].as_ptr())?;
    let shares = ((p & !(LINE - 1))..end.next_multiple_of(LINE))
        .step_by(8) // the smallest object
        .filter(|&a| a < p || a >= end)
        .any(|a| !matches!(k.owner_of(a), Owner::Unused));
    for b in bufs {
        // SAFETY: allocated just above from `k`, freed once.
        if unsafe { k.kfree(b.as_ptr()) }.is_err() {
            return None;
        }
    }
    Some(shares)
}

/// `/proc/slabinfo` over semihosting (read under the heap's lock; printing does not allocate).
fn slabinfo() {
    let live = Box::new([0u8; 100]);
    if HEAP.with_kmalloc(|k| k.write_slabinfo(&mut Host)) != Some(Ok(())) {
        fail(format_args!("slabinfo"));
    }
    drop(live);
}

/// Allocates 16 KiB blocks until the heap says no, frees them all, and does it again: the
/// heap must serve as much the second time.
fn oom_then_recovery() {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    if blocks.try_reserve_exact(128).is_err() {
        fail(format_args!("oom: no room for the block list"));
    }
    let fill = |blocks: &mut Vec<Vec<u8>>| {
        while blocks.len() < blocks.capacity() {
            let mut b = Vec::new();
            if b.try_reserve_exact(16 << 10).is_err() {
                break;
            }
            b.resize(16 << 10, blocks.len() as u8);
            blocks.push(b);
        }
        blocks.len()
    };
    let first = fill(&mut blocks);
    let mut too_big: Vec<u8> = Vec::new();
    let refused = too_big.try_reserve_exact(2 << 20).is_err();
    say!("oom: {first} blocks of 16 KiB, then out of memory; 2 MiB refused: {refused}");
    if !blocks
        .iter()
        .enumerate()
        .all(|(i, b)| b.iter().all(|&x| x == i as u8))
    {
        fail(format_args!("oom: block contents changed"));
    }
    blocks.clear();
    let in_use = HEAP.with_kmalloc(|k| k.totals().bytes_in_use);
    let second = fill(&mut blocks);
    say!(
        "recovered: {second} blocks again, {} bytes in use after freeing",
        in_use.unwrap_or(u64::MAX)
    );
    if !refused || first == 0 || first == blocks.capacity() || second != first {
        fail(format_args!(
            "oom then recovery: first {first}, second {second}"
        ));
    }
}

/// How much of the region 64-byte objects can fill on this target (the rest is metadata and
/// alignment; docs/firmware.md has the host's table). The objects are chained through their
/// own first word, so counting them needs no memory of its own; all are freed again.
fn usable() {
    let r = HEAP.with_kmalloc(|k| {
        let mut head: *mut u8 = core::ptr::null_mut();
        let mut n = 0usize;
        while let Some(p) = k.kmalloc(64, Gfp::KERNEL) {
            // SAFETY: a fresh 64-byte object, aligned to 64: room for one pointer.
            unsafe { p.as_ptr().cast::<*mut u8>().write(head) };
            head = p.as_ptr();
            n += 1;
        }
        let t = k.totals();
        let cap = k.with_page_source(|a| dmaslab_core::PageSource::capacity(a));
        while !head.is_null() {
            // SAFETY: `head` is one of the objects chained above, freed once.
            let next = unsafe { head.cast::<*mut u8>().read() };
            // SAFETY: as above.
            if unsafe { k.kfree(head) }.is_err() {
                return None;
            }
            head = next;
        }
        Some((n, t.pages.header_pages, t.pages.map_pages, cap.unwrap_or(0)))
    });
    let Some(Some((n, header, map, cap))) = r else {
        fail(format_args!("usable: could not count"));
    };
    let region = 1usize << 20;
    say!(
        "usable: {n} objects of 64 B = {} KiB of the {} KiB region ({}%); arena pages {} KiB, \
         segment headers {header} pages, segment map {map} pages",
        (n * 64) >> 10,
        region >> 10,
        n * 64 * 100 / region,
        cap >> 10
    );
}

fn fail(why: fmt::Arguments) -> ! {
    say!("firmware: FAILED: {}", why);
    debug::exit(debug::EXIT_FAILURE);
    halt()
}

/// Where a run ends if the semihosting exit returns (no debugger attached).
fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    fail(format_args!("panic: {info}"))
}
