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
    Config, CriticalSectionRawMutex, Gfp, HeapRegion, Policy, StaticHeap, StaticKmalloc,
};
use dmaslab_dma::{
    BounceRegion, BounceRule, CortexM7, Device, Direction, DmaMap, SwiotlbPool, CORTEX_M7_LINE,
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
const LINE: usize = CORTEX_M7_LINE;

// The three-line heap: a region, the heap (interrupt-safe lock), and `init` in `main`.
static REGION: HeapRegion<{ 1 << 20 }> = HeapRegion::new();
#[global_allocator]
static HEAP: StaticHeap<CriticalSectionRawMutex> = StaticHeap::new();
/// The DMA bounce pool's memory (line-aligned, its own lines, in `.bss`).
static BOUNCE: BounceRegion<4096> = BounceRegion::new();

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

/// DMA-MAP: a real `map_single` / `unmap_single` through dmaslab-dma's hardware path: the
/// `CortexM7` backend (SCB clean/invalidate by address, D-cache on), a `BounceRegion` pool and
/// the heap itself as the `HeapLayout`, under the exact bounce rule. A 12-byte kmalloc buffer
/// shares its 32-byte line with a live neighbour, so its `FromDevice` mapping is bounced; a
/// 12-byte `Gfp::DMA` buffer owns its line and its `Bidirectional` mapping is in place. The
/// firmware acts as the device (QEMU has no DMA master here) by loads and stores at the bus
/// addresses; after unmap the CPU must read the device's bytes in both buffers, and the
/// neighbour the CPU wrote during the transfer must keep the CPU's bytes.
fn dma_buffers() {
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        fail(format_args!("dma: core peripherals already taken"));
    };
    cp.SCB.enable_dcache(&mut cp.CPUID);
    let Some(pool) = BOUNCE
        .take()
        .and_then(|r| SwiotlbPool::from_region(r, CORTEX_M7_LINE).ok())
    else {
        fail(format_args!("dma: no bounce pool"));
    };
    let mut dma = DmaMap::new(CortexM7::new(cp.SCB), &HEAP, pool, BounceRule::Exact);
    let dev = Device::non_coherent(CORTEX_M7_LINE);
    let Some(Some(b)) = HEAP.with_kmalloc(dma_candidates) else {
        fail(format_args!("dma: could not allocate the buffers"));
    };
    let (small, neighbour, own) = (b.small, b.neighbour, b.own);
    // SAFETY: three live 12-byte heap objects, reached only through these raw pointers.
    unsafe {
        small.write_bytes(0xee, 12); // stale bytes the device's data must replace
        neighbour.write_bytes(0x11, 12);
        own.copy_from_nonoverlapping(b"to-the-dev!!".as_ptr(), 12);
    }
    // SAFETY: live heap buffers of 12 bytes, not accessed by the CPU (no load, store or
    // reference) until unmapped; the only other byte of their lines the CPU writes meanwhile
    // is the neighbour, another heap object, which the exact rule bounces for.
    let maps = unsafe {
        dma.map_single(&dev, small, 12, Direction::FromDevice)
            .and_then(|a| Ok((a, dma.map_single(&dev, own, 12, Direction::Bidirectional)?)))
    };
    let (a, o) = match maps {
        Ok(m) => m,
        Err(e) => fail(format_args!("dma: map_single: {e}")),
    };
    // The transfer: the device writes the small buffer, reads then writes the DMA buffer; the
    // CPU meanwhile writes the neighbour that shares the small buffer's line.
    let (a_cpu, o_cpu) = (dma.cpu_of(a), dma.cpu_of(o));
    let mut seen = [0u8; 12];
    // SAFETY: the device's accesses: both are live mappings of 12 bytes at these CPU addresses
    // (bus = CPU address); the neighbour is the CPU's, outside both mappings.
    unsafe {
        let bus = |addr: usize| core::ptr::with_exposed_provenance_mut::<u8>(addr);
        bus(a_cpu).copy_from_nonoverlapping(b"from-the-dev".as_ptr(), 12);
        bus(o_cpu).copy_to_nonoverlapping(seen.as_mut_ptr(), 12);
        bus(o_cpu).copy_from_nonoverlapping(b"dev-answered".as_ptr(), 12);
        neighbour.write_bytes(0x22, 12);
    }
    let unmapped = dma
        .unmap_single(&dev, a, 12, Direction::FromDevice)
        .and_then(|()| dma.unmap_single(&dev, o, 12, Direction::Bidirectional));
    if let Err(e) = unmapped {
        fail(format_args!("dma: unmap_single: {e}"));
    }
    let mut got = [[0u8; 12]; 3];
    // SAFETY: unmapped: the CPU owns the three objects again; read, then freed once.
    let freed = unsafe {
        for (g, p) in got.iter_mut().zip([small, own, neighbour]) {
            p.copy_to_nonoverlapping(g.as_mut_ptr(), 12);
        }
        HEAP.with_kmalloc(|k| [small, own, neighbour].iter().all(|&p| k.kfree(p).is_ok()))
    };
    let small_ok = &got[0] == b"from-the-dev";
    let own_ok = &seen == b"to-the-dev!!" && &got[1] == b"dev-answered";
    let neighbour_ok = got[2] == [0x22; 12];
    let bounced = |addr: usize, buf: *mut u8| addr != buf as usize;
    let verdict = |ok: bool| if ok { "ok" } else { "WRONG" };
    say!(
        "dma: 12-byte kmalloc buffer, FromDevice: {} (shares its {LINE}-byte line); device data \
         read back: {}; neighbour intact: {}",
        if bounced(a_cpu, small) {
            "bounced"
        } else {
            "in place"
        },
        verdict(small_ok),
        verdict(neighbour_ok)
    );
    say!(
        "dma: 12-byte Gfp::DMA buffer, Bidirectional: {} (owns its line); device read the \
         CPU's data: {}; device data read back: {}",
        if bounced(o_cpu, own) {
            "bounced"
        } else {
            "in place"
        },
        verdict(&seen == b"to-the-dev!!"),
        verdict(&got[1] == b"dev-answered")
    );
    let st = dma.stats();
    let all_ok = small_ok
        && own_ok
        && neighbour_ok
        && bounced(a_cpu, small)
        && !bounced(o_cpu, own)
        && (st.maps, st.bounces, st.unmaps) == (2, 1, 2)
        && dma.active_mappings() == 0
        && dma.pool().free_bytes() == dma.pool().size()
        && freed == Some(true);
    if !all_ok {
        fail(format_args!(
            "dma: {} maps, {} bounces, {} unmaps, {} active",
            st.maps,
            st.bounces,
            st.unmaps,
            dma.active_mappings()
        ));
    }
}

/// The two DMA buffers and the small one's line-mate.
struct DmaCandidates {
    /// A 12-byte kmalloc-16 object whose 32-byte line holds `neighbour` too.
    small: *mut u8,
    /// A live object in `small`'s line.
    neighbour: *mut u8,
    /// A 12-byte `Gfp::DMA` object (a 32-byte slot: its line is its own).
    own: *mut u8,
}

/// Allocates the buffers of [`dma_buffers`] (`None`: out of memory, or no two of four fresh
/// kmalloc-16 objects share a line); the kmalloc-16 objects not used are freed again.
fn dma_candidates(k: &StaticKmalloc) -> Option<DmaCandidates> {
    let small: [*mut u8; 4] = [
        k.kmalloc(12, Gfp::KERNEL)?.as_ptr(),
        k.kmalloc(12, Gfp::KERNEL)?.as_ptr(),
        k.kmalloc(12, Gfp::KERNEL)?.as_ptr(),
        k.kmalloc(12, Gfp::KERNEL)?.as_ptr(),
    ];
    let line = |p: *mut u8| p as usize & !(LINE - 1);
    let pair = (0..4)
        .flat_map(|i| (0..4).map(move |j| (i, j)))
        .find(|&(i, j)| i != j && line(small[i]) == line(small[j]));
    let own = k.kmalloc(12, Gfp::DMA).map(|p| p.as_ptr());
    for (n, &p) in small.iter().enumerate() {
        if pair.is_none_or(|(i, j)| n != i && n != j) {
            // SAFETY: allocated just above from `k` and not handed out: freed once.
            unsafe { k.kfree(p) }.ok()?;
        }
    }
    let (i, j) = pair?;
    Some(DmaCandidates {
        small: small[i],
        neighbour: small[j],
        own: own?,
    })
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
