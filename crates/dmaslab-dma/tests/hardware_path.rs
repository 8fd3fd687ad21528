//! The generic map path on real host memory, as a firmware runs it: buffers from a
//! `StaticHeap`, a bounce pool over a static `BounceRegion`, real copies, and a backend that
//! records every maintenance operation (and copy) it receives, in order. The Cortex-M7 backend
//! cannot run here; this checks what the map path asks of any backend: the exact
//! clean / invalidate sequence per direction, per Linux arch rule, bounced or not.
//!
//! The "device" is the test writing and reading memory at the bus address (bus address = CPU
//! address, as on a Cortex-M); the map path exposes the provenance of the buffers it maps and
//! of the bounce pool for that.

use core::alloc::{GlobalAlloc, Layout};
use dmaslab_core::{Config, HeapRegion, Owner, Policy, StaticHeap};
use dmaslab_dma::{
    BounceError, BounceRegion, BounceRule, CacheMaintenance, Device, Direction, DmaAddr, DmaError,
    DmaMap, FindingKind, FromDeviceMap, HeapLayout, ScatterList, SwiotlbPool,
};
use std::ptr::with_exposed_provenance_mut;
use std::sync::Once;

const LINE: usize = 32;

static REGION: HeapRegion<{ 1 << 20 }> = HeapRegion::new();
static HEAP: StaticHeap = StaticHeap::new();

/// The heap, built once for all the tests (it is a `static`, as in a firmware).
fn heap() -> &'static StaticHeap {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        HEAP.init(
            REGION.take().unwrap(),
            Config::new(Policy::C).dma_minalign(LINE),
        )
        .unwrap()
    });
    &HEAP
}

/// A bounce pool over a fresh static region of `N` bytes.
fn pool<const N: usize>() -> SwiotlbPool {
    let region: &'static BounceRegion<N> = Box::leak(Box::new(BounceRegion::new()));
    SwiotlbPool::from_region(region.take().unwrap(), LINE).unwrap()
}

/// A heap allocation.
fn alloc(size: usize, align: usize) -> *mut u8 {
    // SAFETY: a non-zero size and a power-of-two alignment.
    let p = unsafe { heap().alloc(Layout::from_size_align(size, align).unwrap()) };
    assert!(!p.is_null());
    p
}

fn free(p: *mut u8, size: usize, align: usize) {
    // SAFETY: `p` came from `alloc` with this layout and is freed once.
    unsafe { heap().dealloc(p, Layout::from_size_align(size, align).unwrap()) }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Clean(usize, usize),
    Invalidate(usize, usize),
    CleanInvalidate(usize, usize),
    Copy { src: usize, dst: usize, len: usize },
}

/// Records what the map path asks; copies for real.
struct Recorder {
    rule: FromDeviceMap,
    ops: Vec<Op>,
}

impl CacheMaintenance for Recorder {
    fn line_size(&self) -> usize {
        LINE
    }
    fn arch_rule(&self) -> FromDeviceMap {
        self.rule
    }
    fn clean(&mut self, addr: usize, len: usize) {
        self.ops.push(Op::Clean(addr, len));
    }
    unsafe fn invalidate(&mut self, addr: usize, len: usize) {
        self.ops.push(Op::Invalidate(addr, len));
    }
    fn clean_invalidate(&mut self, addr: usize, len: usize) {
        self.ops.push(Op::CleanInvalidate(addr, len));
    }
    unsafe fn cpu_copy(&mut self, src: *const u8, dst: *mut u8, len: usize) {
        self.ops.push(Op::Copy {
            src: src.addr(),
            dst: dst.addr(),
            len,
        });
        // SAFETY: the trait's contract.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) }
    }
}

/// No cache at all, and the trait's default (plain) copy.
struct NoCache;

impl CacheMaintenance for NoCache {
    fn line_size(&self) -> usize {
        LINE
    }
    fn arch_rule(&self) -> FromDeviceMap {
        FromDeviceMap::Clean
    }
    fn clean(&mut self, _: usize, _: usize) {}
    unsafe fn invalidate(&mut self, _: usize, _: usize) {}
    fn clean_invalidate(&mut self, _: usize, _: usize) {}
}

fn map_over<B: CacheMaintenance>(b: B) -> DmaMap<B, &'static StaticHeap> {
    DmaMap::new(b, heap(), pool::<4096>(), BounceRule::Exact)
}

fn recorder(rule: FromDeviceMap) -> DmaMap<Recorder, &'static StaticHeap> {
    map_over(Recorder {
        rule,
        ops: Vec::new(),
    })
}

fn take_ops(m: &mut DmaMap<Recorder, &'static StaticHeap>) -> Vec<Op> {
    std::mem::take(&mut m.backend_mut().ops)
}

/// The device's store at bus address `dma`.
fn device_write(dma: DmaAddr, data: &[u8]) {
    let p = with_exposed_provenance_mut::<u8>(dma.0 as usize);
    // SAFETY: `dma` is a live mapping of `data.len()` bytes (each caller's own), exposed.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) }
}

/// The device's load at bus address `dma`.
fn device_read(dma: DmaAddr, len: usize) -> Vec<u8> {
    let p = with_exposed_provenance_mut::<u8>(dma.0 as usize);
    // SAFETY: as in `device_write`.
    unsafe { std::slice::from_raw_parts(p, len).to_vec() }
}

/// A symbolic operation: what, on which memory ("buf" or "bounce"), as DESIGN.md's table says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Clean(&'static str),
    Invalidate(&'static str),
    CopyIn,
    CopyOut,
}

use Want::{Clean, CopyIn, CopyOut, Invalidate};

/// The expected operations: (direction, arch rule, bounced) -> (map or sync_for_device,
/// unmap or sync_for_cpu). Written out from DESIGN.md section 3, not computed.
fn expected(dir: Direction, rule: FromDeviceMap, bounced: bool) -> (Vec<Want>, Vec<Want>) {
    use Direction::*;
    use FromDeviceMap as R;
    match (dir, rule, bounced) {
        (ToDevice, _, false) => (vec![Clean("buf")], vec![]),
        (FromDevice, R::Clean, false) => (vec![Clean("buf")], vec![Invalidate("buf")]),
        (FromDevice, R::Invalidate, false) => (vec![Invalidate("buf")], vec![Invalidate("buf")]),
        (Bidirectional, _, false) => (vec![Clean("buf")], vec![Invalidate("buf")]),
        (FromDevice, R::Clean, true) => {
            (vec![Clean("bounce")], vec![Invalidate("bounce"), CopyOut])
        }
        (FromDevice, R::Invalidate, true) => (
            vec![Invalidate("bounce")],
            vec![Invalidate("bounce"), CopyOut],
        ),
        (Bidirectional, _, true) => (
            vec![CopyIn, Clean("bounce")],
            vec![Invalidate("bounce"), CopyOut],
        ),
        (ToDevice, _, true) => unreachable!("ToDevice never bounces for sharing"),
    }
}

/// Turns recorded operations into [`Want`]s, checking every address and length.
fn symbolic(ops: &[Op], buf: usize, bounce: Option<usize>, len: usize) -> Vec<Want> {
    let name = |a: usize| match bounce {
        Some(b) if a == b => "bounce",
        _ if a == buf => "buf",
        _ => panic!("operation on {a:#x}: neither the buffer {buf:#x} nor its bounce buffer"),
    };
    ops.iter()
        .map(|&op| match op {
            Op::Clean(a, n) => {
                assert_eq!(n, len);
                Clean(name(a))
            }
            Op::Invalidate(a, n) => {
                assert_eq!(n, len);
                Invalidate(name(a))
            }
            Op::CleanInvalidate(..) => panic!("the map path never cleans and invalidates"),
            Op::Copy { src, dst, len: n } => {
                assert_eq!(n, len);
                match (name(src), name(dst)) {
                    ("buf", "bounce") => CopyIn,
                    ("bounce", "buf") => CopyOut,
                    other => panic!("copy {other:?}"),
                }
            }
        })
        .collect()
}

#[test]
fn maintenance_sequence_per_direction_rule_and_bounce() {
    let dev = Device::non_coherent(LINE);
    let mut cases = 0;
    for rule in [FromDeviceMap::Clean, FromDeviceMap::Invalidate] {
        for dir in Direction::ALL {
            for bounced in [false, true] {
                if bounced && dir == Direction::ToDevice {
                    continue;
                }
                let mut m = recorder(rule);
                // A 64-byte, 64-aligned object owns its lines; a 4-byte one shares its line with
                // the neighbour allocated next to it (and free slots): bounced.
                let (len, align) = if bounced { (4, 1) } else { (64, 64) };
                let buf = alloc(len, align);
                let neighbour = alloc(len, align);
                let initial: Vec<u8> = (0..len as u8).collect();
                // SAFETY: both are live allocations of `len` bytes the test owns.
                unsafe {
                    std::ptr::copy_nonoverlapping(initial.as_ptr(), buf, len);
                    neighbour.write_bytes(0x5a, len);
                }
                assert_eq!(
                    m.would_bounce(BounceRule::Exact, &dev, buf.addr(), len, dir),
                    bounced
                );
                // SAFETY: `buf` is a live allocation, untouched by the CPU until unmap.
                let dma = unsafe { m.map_single(&dev, buf, len, dir) }.unwrap();
                let bounce = (dma.0 as usize != buf.addr()).then_some(dma.0 as usize);
                assert_eq!(bounce.is_some(), bounced, "{dir} {rule:?}");
                let (to_dev, to_cpu) = expected(dir, rule, bounced);
                let what = format!("{dir} {rule:?} bounced={bounced}");
                assert_eq!(
                    symbolic(&take_ops(&mut m), buf.addr(), bounce, len),
                    to_dev,
                    "map {what}"
                );
                if dir.device_reads() {
                    assert_eq!(
                        device_read(dma, len),
                        initial,
                        "the device reads the data: {what}"
                    );
                }
                let data: Vec<u8> = (0..len as u8).map(|b| b ^ 0xa5).collect();
                if dir.device_writes() {
                    device_write(dma, &data);
                }
                m.sync_single_for_cpu(&dev, dma, len, dir).unwrap();
                assert_eq!(
                    symbolic(&take_ops(&mut m), buf.addr(), bounce, len),
                    to_cpu,
                    "sync_for_cpu {what}"
                );
                m.sync_single_for_device(&dev, dma, len, dir).unwrap();
                assert_eq!(
                    symbolic(&take_ops(&mut m), buf.addr(), bounce, len),
                    to_dev,
                    "sync_for_device {what}"
                );
                m.unmap_single(&dev, dma, len, dir).unwrap();
                assert_eq!(
                    symbolic(&take_ops(&mut m), buf.addr(), bounce, len),
                    to_cpu,
                    "unmap {what}"
                );
                // SAFETY: unmapped: the CPU owns both again.
                let (got, nb) = unsafe {
                    (
                        std::slice::from_raw_parts(buf, len).to_vec(),
                        std::slice::from_raw_parts(neighbour, len).to_vec(),
                    )
                };
                let want = if dir.device_writes() { &data } else { &initial };
                assert_eq!(&got, want, "the buffer after unmap: {what}");
                assert_eq!(nb, vec![0x5a; len], "the neighbour is untouched: {what}");
                assert!(m.findings().is_empty(), "{what}: {:?}", m.findings());
                assert_eq!((m.active_mappings(), m.pool().free_bytes()), (0, 4096));
                assert_eq!(m.stats().bounces, bounced as u64);
                free(buf, len, align);
                free(neighbour, len, align);
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 10);
}

#[test]
fn coherent_devices_get_no_maintenance() {
    let dev = Device::coherent(LINE);
    let mut m = recorder(FromDeviceMap::Invalidate);
    let buf = alloc(4, 1);
    for dir in Direction::ALL {
        // SAFETY: a live allocation, not touched while mapped.
        let dma = unsafe { m.map_single(&dev, buf, 4, dir) }.unwrap();
        assert_eq!(
            dma.0 as usize,
            buf.addr(),
            "a coherent device is never bounced"
        );
        m.unmap_single(&dev, dma, 4, dir).unwrap();
    }
    assert_eq!(take_ops(&mut m), vec![]);
    free(buf, 4, 1);
}

#[test]
fn scatter_list_with_the_default_copy() {
    let dev = Device::non_coherent(LINE);
    let mut m = map_over(NoCache);
    let small = alloc(8, 1);
    let whole = alloc(128, 64);
    let mut sg = ScatterList::sg_init_table(&[(small as usize, 8), (whole as usize, 128)]);
    // SAFETY: both are live allocations whose provenance `as usize` exposed; not touched until
    // unmap.
    assert_eq!(
        unsafe { m.map_sg(&dev, &mut sg, Direction::FromDevice) },
        Ok(2)
    );
    assert_eq!(m.stats().bounces, 1, "only the 8-byte buffer shares a line");
    assert_ne!(sg.dma_address(0).unwrap().0 as usize, small.addr());
    assert_eq!(sg.dma_address(1).unwrap().0 as usize, whole.addr());
    device_write(sg.dma_address(0).unwrap(), &[7; 8]);
    device_write(sg.dma_address(1).unwrap(), &[9; 128]);
    m.unmap_sg(&dev, &mut sg, Direction::FromDevice).unwrap();
    // SAFETY: unmapped.
    unsafe {
        assert_eq!(std::slice::from_raw_parts(small, 8), &[7; 8], "copied out");
        assert_eq!(std::slice::from_raw_parts(whole, 128), &[9; 128]);
    }
    free(small, 8, 1);
    free(whole, 128, 64);
}

#[test]
fn misuse_is_refused_before_any_maintenance() {
    let dev = Device::non_coherent(LINE);
    let mut m = recorder(FromDeviceMap::Clean);
    let mut stack = [0u8; 16];
    // SAFETY: refused by the check before anything is touched.
    let e = unsafe { m.map_single(&dev, stack.as_mut_ptr(), 16, Direction::FromDevice) };
    assert_eq!(
        e,
        Err(DmaError::NotDmaAble {
            addr: stack.as_ptr().addr()
        })
    );
    let p = alloc(32, 32);
    let keep = alloc(32, 32);
    free(p, 32, 32);
    assert!(matches!(
        heap().owner_of(p.addr()),
        Owner::Object { live: false, .. }
    ));
    // SAFETY: refused: not a live allocation.
    let e = unsafe { m.map_single(&dev, p, 32, Direction::ToDevice) };
    assert_eq!(e, Err(DmaError::NotLive { addr: p.addr() }));
    // SAFETY: refused: runs past the allocation.
    let e = unsafe { m.map_single(&dev, keep, 33, Direction::ToDevice) };
    assert_eq!(
        e,
        Err(DmaError::OutOfBounds {
            addr: keep.addr(),
            len: 33
        })
    );
    let kinds: Vec<FindingKind> = m.take_findings().iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FindingKind::NotDmaAble, FindingKind::NotDmaAble]);
    assert_eq!(take_ops(&mut m), vec![]);
    assert_eq!(m.active_mappings(), 0);
    free(keep, 32, 32);
}

#[test]
fn bounce_pool_exhaustion_touches_nothing() {
    let dev = Device::non_coherent(LINE);
    let mut m = DmaMap::new(
        Recorder {
            rule: FromDeviceMap::Clean,
            ops: Vec::new(),
        },
        heap(),
        pool::<64>(),
        BounceRule::Exact,
    );
    let bufs: Vec<*mut u8> = (0..3).map(|_| alloc(4, 1)).collect();
    let mut maps = Vec::new();
    for &b in &bufs[..2] {
        // SAFETY: live allocations, untouched while mapped.
        maps.push(unsafe { m.map_single(&dev, b, 4, Direction::FromDevice) }.unwrap());
    }
    take_ops(&mut m);
    // The two share a line: (b), even though both are bounced.
    let kinds: Vec<FindingKind> = m.take_findings().iter().map(|f| f.kind).collect();
    assert!(
        kinds.iter().all(|&k| k == FindingKind::OverlappingMappings),
        "{kinds:?}"
    );
    // SAFETY: as above.
    let e = unsafe { m.map_single(&dev, bufs[2], 4, Direction::FromDevice) };
    assert_eq!(
        e,
        Err(DmaError::Bounce(BounceError::Exhausted {
            requested: 4,
            free: 0
        }))
    );
    assert_eq!(take_ops(&mut m), vec![], "no maintenance for a failed map");
    assert!(
        m.findings().is_empty(),
        "no report either: {:?}",
        m.findings()
    );
    for d in maps {
        m.unmap_single(&dev, d, 4, Direction::FromDevice).unwrap();
    }
    assert!(m.pool().is_consistent());
    assert_eq!(m.pool().free_bytes(), 64);
    for b in bufs {
        free(b, 4, 1);
    }
}

#[test]
fn a_bounce_region_must_start_on_a_line() {
    let region: &'static BounceRegion<128> = Box::leak(Box::new(BounceRegion::new()));
    let mem = region.take().unwrap();
    assert!(region.take().is_none(), "handed out once");
    let (head, tail) = mem.split_at_mut(LINE);
    assert_eq!(
        SwiotlbPool::from_region(&mut head[1..], LINE).err(),
        Some(DmaError::Config("bounce region must start on a cache line"))
    );
    let p = SwiotlbPool::from_region(tail, LINE).unwrap();
    assert_eq!(p.size(), 96);
}
