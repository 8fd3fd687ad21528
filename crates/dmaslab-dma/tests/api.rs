//! The mapping API: bounce pool exhaustion, scatter-gather, syncs, coherent allocations, DMA
//! pools, the address mask, the Linux rule, and embedded-dma.

use dmaslab_core::{Gfp, Policy};
use dmaslab_dma::{
    BounceError, BounceRule, Device, Direction, DmaError, DmaPool, Machine, MachineConfig,
    ScatterList,
};
use embedded_dma::{ReadBuffer, WriteBuffer};

const DEV: Device = Device::non_coherent(64);

/// A 64 KiB buffer above a power of two that lies above the bounce pool.
fn high_buffer(m: &mut Machine) -> usize {
    let pool_end = m.phys(m.pool().base()) + m.pool().size() as u64;
    loop {
        let b = m.kmalloc(64 * 1024, Gfp::KERNEL).unwrap();
        if 1u64 << (63 - m.phys(b).leading_zeros()) >= pool_end {
            return b;
        }
    }
}

/// A device whose DMA mask ends just below `addr` (a power of two), reaching the bounce pool.
fn below(m: &Machine, addr: usize) -> Device {
    let phys = m.phys(addr);
    let dev = DEV.mask_bits(63 - phys.leading_zeros());
    assert!(!dev.reaches(phys, 1));
    let pool_end = m.phys(m.pool().base()) + m.pool().size() as u64;
    assert!(dev.reaches(0, pool_end as usize), "pool reachable");
    dev
}

#[test]
fn bounce_pool_exhaustion_is_an_error_and_leaves_the_pool_consistent() {
    let mut m = Machine::new(MachineConfig::new(Policy::C).bounce_bytes(256)).unwrap();
    assert_eq!(m.pool().size(), 256);
    let bufs: Vec<usize> = (0..6).map(|_| m.kmalloc(4, Gfp::KERNEL).unwrap()).collect();
    let mut maps = Vec::new();
    for &b in &bufs[..4] {
        maps.push(m.map_single(&DEV, b, 4, Direction::FromDevice).unwrap());
    }
    assert_eq!(m.stats().bounces, 4);
    assert_eq!(m.pool().free_bytes(), 0);
    let e = m
        .map_single(&DEV, bufs[4], 4, Direction::FromDevice)
        .unwrap_err();
    assert_eq!(
        e,
        DmaError::Bounce(BounceError::Exhausted {
            requested: 4,
            free: 0
        })
    );
    assert!(m.pool().is_consistent());
    assert_eq!(
        (m.stats().maps, m.stats().bounces, m.active_mappings()),
        (4, 4, 4)
    );
    // A scatter list that does not fit is rolled back whole.
    m.unmap_single(&DEV, maps.pop().unwrap(), 4, Direction::FromDevice)
        .unwrap();
    let mut sg = ScatterList::sg_init_table(&[(bufs[4], 4), (bufs[5], 4)]);
    assert!(matches!(
        m.map_sg(&DEV, &mut sg, Direction::FromDevice),
        Err(DmaError::Bounce(_))
    ));
    assert!(sg.entries.iter().all(|e| e.dma.is_none()));
    assert_eq!(m.pool().free_bytes(), 64);
    assert!(m.pool().is_consistent());
    // Room again: it works.
    let d = m
        .map_single(&DEV, bufs[4], 4, Direction::FromDevice)
        .unwrap();
    m.unmap_single(&DEV, d, 4, Direction::FromDevice).unwrap();
    for d in maps {
        m.unmap_single(&DEV, d, 4, Direction::FromDevice).unwrap();
    }
    assert_eq!(m.pool().free_bytes(), 256);
    assert!(m.pool().is_consistent());
    // Bigger than the pool (bounced because the device cannot reach it).
    let big = high_buffer(&mut m);
    let narrow = below(&m, big);
    assert_eq!(
        m.map_single(&narrow, big, 300, Direction::ToDevice),
        Err(DmaError::Bounce(BounceError::Exhausted {
            requested: 300,
            free: 256
        }))
    );
    assert!(m.pool().is_consistent());
}

#[test]
fn bounced_bidirectional_round_trip_with_syncs_and_counters() {
    let mut m = Machine::new(MachineConfig::new(Policy::C)).unwrap();
    let buf = m.kmalloc(24, Gfp::KERNEL).unwrap();
    m.cpu_write(buf, &[7; 24]).unwrap();
    let d = m
        .map_single(&DEV, buf, 24, Direction::Bidirectional)
        .unwrap();
    assert_eq!(m.stats().bounces, 1);
    assert_eq!(m.stats().bounced_bytes, 24);
    let mut seen = [0u8; 24];
    m.device_read(&DEV, d, &mut seen).unwrap();
    assert_eq!(seen, [7; 24], "copied in at map");
    m.device_write(&DEV, d.offset(4), &[9, 9]).unwrap();
    m.sync_single_for_cpu(&DEV, d, 24, Direction::Bidirectional)
        .unwrap();
    let mut got = [0u8; 24];
    m.cpu_read(buf, &mut got).unwrap();
    assert_eq!(&got[3..7], &[7, 9, 9, 7], "copied out at sync_for_cpu");
    m.cpu_write(buf, &[1]).unwrap();
    m.sync_single_for_device(&DEV, d, 24, Direction::Bidirectional)
        .unwrap();
    m.device_read(&DEV, d, &mut seen).unwrap();
    assert_eq!(seen[0], 1, "copied in again at sync_for_device");
    m.unmap_single(&DEV, d, 24, Direction::Bidirectional)
        .unwrap();
    assert!(
        m.device_read(&DEV, d, &mut seen).is_err(),
        "no access after unmap"
    );
    assert!(m.findings().is_empty());
    // ToDevice is never bounced; the Linux rule would bounce this 24-byte mapping.
    assert!(!m.would_bounce(BounceRule::Exact, &DEV, buf, 24, Direction::ToDevice));
    assert!(m.would_bounce(BounceRule::LinuxSize, &DEV, buf, 24, Direction::FromDevice));
    // A 64-byte object is alone in its line: neither rule bounces.
    let whole = m.kmalloc(64, Gfp::KERNEL).unwrap();
    assert!(!m.would_bounce(BounceRule::Exact, &DEV, whole, 64, Direction::FromDevice));
    assert!(!m.would_bounce(
        BounceRule::LinuxSize,
        &DEV,
        whole,
        64,
        Direction::FromDevice
    ));
    // ...but a 4-byte piece of it is: Linux's false positive (the rest of the line is the same
    // object), and a 64-byte piece of a 96-byte object at offset 8: Linux's false negative.
    assert!(m.would_bounce(
        BounceRule::LinuxSize,
        &DEV,
        whole + 8,
        4,
        Direction::FromDevice
    ));
    assert!(!m.would_bounce(BounceRule::Exact, &DEV, whole + 8, 4, Direction::FromDevice));
    let x = m.kmalloc(96, Gfp::KERNEL).unwrap();
    let _y = m.kmalloc(96, Gfp::KERNEL).unwrap();
    let _z = m.kmalloc(96, Gfp::KERNEL).unwrap();
    let odd = if x.is_multiple_of(64) { _y } else { x }; // a 96-byte object not starting a line
    assert!(m.would_bounce(BounceRule::Exact, &DEV, odd, 64, Direction::FromDevice));
    assert!(!m.would_bounce(BounceRule::LinuxSize, &DEV, odd, 64, Direction::FromDevice));
}

#[test]
fn address_mask_bounces_and_coherent_devices_see_the_cache() {
    let mut m = Machine::new(MachineConfig::new(Policy::A)).unwrap();
    let buf = high_buffer(&mut m);
    let phys = m.phys(buf);
    let pool_end = m.phys(m.pool().base()) + m.pool().size() as u64;
    assert!(
        phys >= pool_end,
        "the pool was allocated first, below the buffer"
    );
    let narrow = below(&m, buf);
    assert!(!narrow.reaches(phys, 64));
    assert!(narrow.reaches(0, pool_end as usize));
    let d = m.map_single(&narrow, buf, 64, Direction::ToDevice).unwrap();
    assert_eq!(m.stats().bounces, 1, "beyond the mask: bounced");
    m.unmap_single(&narrow, d, 64, Direction::ToDevice).unwrap();
    // A coherent device reads dirty cached data without any maintenance.
    let coh = Device::coherent(64);
    m.cpu_write(buf, &[5; 8]).unwrap();
    let d = m.map_single(&coh, buf, 8, Direction::ToDevice).unwrap();
    let mut got = [0u8; 8];
    m.device_read(&coh, d, &mut got).unwrap();
    assert_eq!(got, [5; 8]);
    assert_eq!(
        m.cache_state(buf),
        (true, true),
        "still dirty: no clean for coherent"
    );
    m.unmap_single(&coh, d, 8, Direction::ToDevice).unwrap();
}

#[test]
fn coherent_allocations_and_dma_pools() {
    let mut m = Machine::new(MachineConfig::new(Policy::C)).unwrap();
    let mut c = m.alloc_coherent(&DEV, 100).unwrap();
    assert_eq!(c.len(), 128, "whole lines");
    assert_eq!(c.cpu_addr() % 64, 0);
    c.write(0, &[3; 4]);
    m.device_write(&DEV, c.dma_addr().offset(4), &[4; 4])
        .unwrap();
    let mut got = [0u8; 8];
    c.read(0, &mut got);
    assert_eq!(
        got,
        [3, 3, 3, 3, 4, 4, 4, 4],
        "no maintenance needed, uncached"
    );
    // SAFETY: the buffer is not used by a transfer and stays alive while the pointer is used.
    let (p, n) = unsafe { c.write_buffer() };
    assert_eq!((p as usize, n), (c.cpu_addr(), 128));
    m.free_coherent(c).unwrap();

    let mut pool = DmaPool::create("descs", DEV, 16, 16).unwrap();
    let blocks: Vec<_> = (0..300).map(|_| pool.alloc(&mut m).unwrap()).collect();
    let mut addrs: Vec<usize> = blocks.iter().map(|b| b.cpu_addr()).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 300);
    assert!(addrs.iter().all(|a| a % 16 == 0));
    let mut b0 = pool.alloc(&mut m).unwrap();
    b0.write(0, &[1, 2]);
    m.device_write(&DEV, b0.dma_addr().offset(2), &[3]).unwrap();
    let mut got = [0u8; 3];
    b0.read(0, &mut got);
    assert_eq!(got, [1, 2, 3]);
    // SAFETY: as above.
    let (p, n) = unsafe { b0.read_buffer() };
    assert_eq!((p as usize, n), (b0.cpu_addr(), 16));
    assert_eq!(pool.live(), 301);
    assert_eq!(pool.destroy(&mut m), Err(DmaError::Pool), "busy");
    pool.free(b0).unwrap();
    for b in blocks {
        pool.free(b).unwrap();
    }
    pool.destroy(&mut m).unwrap();
}

#[test]
fn scatter_gather_maps_each_buffer() {
    let mut m = Machine::new(MachineConfig::new(Policy::C)).unwrap();
    let a = m.kmalloc(8, Gfp::KERNEL).unwrap();
    let b = m.kmalloc(256, Gfp::KERNEL).unwrap();
    let mut sg = ScatterList::sg_init_table(&[(a, 8), (b, 256)]);
    assert_eq!(m.map_sg(&DEV, &mut sg, Direction::FromDevice), Ok(2));
    assert_eq!(m.stats().bounces, 1, "only the 8-byte buffer shares a line");
    m.device_write(&DEV, sg.dma_address(0).unwrap(), &[1; 8])
        .unwrap();
    m.device_write(&DEV, sg.dma_address(1).unwrap(), &[2; 256])
        .unwrap();
    m.sync_sg_for_cpu(&DEV, &sg, Direction::FromDevice).unwrap();
    m.sync_sg_for_device(&DEV, &sg, Direction::FromDevice)
        .unwrap();
    m.unmap_sg(&DEV, &mut sg, Direction::FromDevice).unwrap();
    let mut x = [0u8; 8];
    m.cpu_read(a, &mut x).unwrap();
    assert_eq!(x, [1; 8]);
    let mut y = [0u8; 256];
    m.cpu_read(b, &mut y).unwrap();
    assert_eq!(y, [2; 256]);
    assert!(m.findings().is_empty());
}

#[test]
fn stores_outside_live_allocations_and_frees_of_mapped_buffers_are_refused() {
    let mut m = Machine::new(MachineConfig::new(Policy::B)).unwrap();
    let a = m.kmalloc(16, Gfp::KERNEL).unwrap();
    let b = m.kmalloc(16, Gfp::KERNEL).unwrap();
    assert_eq!(
        m.cpu_write(a + 8, &[0; 16]),
        Err(DmaError::NotAllocated {
            addr: a + 8,
            len: 16
        }),
        "runs into the next object"
    );
    m.kfree(b).unwrap();
    assert!(
        m.cpu_write(b, &[0; 8]).is_err(),
        "a free slot holds the free-list link"
    );
    let seg_start = m.ram_base();
    assert!(
        m.cpu_write(seg_start, &[0; 8]).is_err(),
        "allocator metadata"
    );
    let d = m.map_single(&DEV, a, 16, Direction::ToDevice).unwrap();
    assert_eq!(m.kfree(a), Err(DmaError::StillMapped { addr: a }));
    m.unmap_single(&DEV, d, 16, Direction::ToDevice).unwrap();
    m.kfree(a).unwrap();
}
