//! Golden parser tests. kmem lines are real: recorded on this machine (Linux 6.18.44) with
//! `dmaslab trace record` (kernel `trace_pipe` layout) and from an instance of our own read
//! with `trace-cmd extract -B` + `trace-cmd report` (trace-cmd 3.1.6 layout). This VM's
//! devices emit no DMA events, so the DMA lines are written to the kernel's print formats
//! (`events/dma/*/format`) in both layouts: trace-cmd's libtraceevent prints the same
//! formats, after its `comm-pid [cpu] timestamp: name:` prefix with the name padded.

use dmaslab_dma::Direction;
use dmaslab_trace::{parse, DmaRange, EventKind, Trace};

fn one(line: &str) -> (Trace, EventKind) {
    let t = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
    assert_eq!(t.events.len(), 1, "{line}");
    let k = t.events[0].kind;
    (t, k)
}

#[test]
fn kmem_events_in_the_kernel_layout() {
    let (t, k) = one("         dmaslab-26759   [000] .....  1475.459412: kmalloc: call_site=__get_vm_area_node+0x80/0x140 ptr=ffff88810247cc00 bytes_req=72 bytes_alloc=96 gfp_flags=GFP_KERNEL|__GFP_ZERO node=-1 accounted=false");
    assert_eq!(t.events[0].ts, 1_475_459_412_000);
    let EventKind::Kmalloc {
        site,
        ptr,
        bytes_req,
        bytes_alloc,
        gfp_dma,
    } = k
    else {
        panic!("{k:?}")
    };
    assert_eq!(t.sites.get(site), "__get_vm_area_node+0x80/0x140");
    assert_eq!(
        (ptr, bytes_req, bytes_alloc, gfp_dma),
        (0xffff88810247cc00, 72, 96, false)
    );

    let (t, k) = one("         dmaslab-26762   [000] .....  1475.459604: kfree: call_site=ida_alloc_range+0x39b/0x400 ptr=0000000000000000");
    let EventKind::Kfree { site, ptr } = k else {
        panic!("{k:?}")
    };
    assert_eq!((t.sites.get(site), ptr), ("ida_alloc_range+0x39b/0x400", 0));

    let (t, k) = one("          mktemp-26763   [000] ...1.  1475.469561: kmem_cache_alloc: call_site=__es_insert_extent+0x1a3/0x390 ptr=ffff88825d379640 name=extent_status bytes_req=40 bytes_alloc=40 gfp_flags=GFP_ATOMIC node=-1 accounted=false");
    let EventKind::CacheAlloc {
        name,
        ptr,
        bytes_req,
        bytes_alloc,
        ..
    } = k
    else {
        panic!("{k:?}")
    };
    assert_eq!(
        (t.names.get(name), ptr, bytes_req, bytes_alloc),
        ("extent_status", 0xffff88825d379640, 40, 40)
    );

    let (t, k) = one("         dmaslab-26759   [000] .....  1475.459362: kmem_cache_free: call_site=__fput+0x141/0x2a0 ptr=ffff88816db9e0f0 name=lsm_file_cache");
    let EventKind::CacheFree { site, ptr, name } = k else {
        panic!("{k:?}")
    };
    assert_eq!(
        (t.sites.get(site), ptr, t.names.get(name)),
        ("__fput+0x141/0x2a0", 0xffff88816db9e0f0, "lsm_file_cache")
    );
    assert!(!t.hashed_pointers);
}

#[test]
fn kmem_events_in_the_trace_cmd_layout() {
    let (t, k) = one("dmaslab-dev-2815:               dd-12034 [000]   564.759439: kmalloc:              (alloc_bprm+0x45) call_site=alloc_bprm+0x45 ptr=0xffff88819954ca00 bytes_req=408 bytes_alloc=512 gfp_flags=GFP_KERNEL|__GFP_ZERO node=-1 accounted=false");
    assert_eq!(t.events[0].ts, 564_759_439_000);
    let EventKind::Kmalloc {
        site,
        ptr,
        bytes_req,
        bytes_alloc,
        ..
    } = k
    else {
        panic!("{k:?}")
    };
    assert_eq!(
        (t.sites.get(site), ptr, bytes_req, bytes_alloc),
        ("alloc_bprm+0x45", 0xffff88819954ca00, 408, 512)
    );

    let (_, k) = one("dmaslab-dev-2815:               dd-12034 [000]   564.759450: kfree:                (ida_alloc_range+0x39b) call_site=ida_alloc_range+0x39b ptr=(nil)");
    assert!(matches!(k, EventKind::Kfree { ptr: 0, .. }));

    let (t, k) = one("dmaslab-dev-2815:               dd-12034 [000]   564.759370: kmem_cache_alloc:     (getname_flags.part.0+0x24) call_site=getname_flags.part.0+0x24 ptr=0xffff888100e71000 name=names_cache bytes_req=4096 bytes_alloc=4096 gfp_flags=GFP_KERNEL node=-1 accounted=false");
    let EventKind::CacheAlloc {
        name, bytes_alloc, ..
    } = k
    else {
        panic!("{k:?}")
    };
    assert_eq!((t.names.get(name), bytes_alloc), ("names_cache", 4096));

    let (t, k) = one("dmaslab-dev-2815:               dd-12034 [000]   564.759401: kmem_cache_free:      (do_sys_openat2+0xa2) call_site=do_sys_openat2+0xa2 ptr=0xffff888100e71000 name=names_cache");
    let EventKind::CacheFree { name, ptr, .. } = k else {
        panic!("{k:?}")
    };
    assert_eq!(
        (t.names.get(name), ptr),
        ("names_cache", 0xffff888100e71000)
    );

    let t = parse("cpus=2\ndmaslab-dev-2815: CPU:1 [EVENTS DROPPED]\n").unwrap();
    assert_eq!((t.events.len(), t.lost_events), (0, 1));
}

/// The DMA events of this kernel, as `(kernel layout, trace-cmd layout)`.
const DMA_LINES: [(&str, &str); 6] = [
    (
        "   kworker/1:1-77      [001] ..s1.   10.000100: dma_map_phys: 0000:00:04.0 dir=FROM_DEVICE dma_addr=fffff000 size=1536 phys_addr=10a2c3000 attrs=",
        "   kworker/1:1-77      [001]   10.000100: dma_map_phys:         0000:00:04.0 dir=FROM_DEVICE dma_addr=fffff000 size=1536 phys_addr=10a2c3000 attrs=",
    ),
    (
        "   kworker/1:1-77      [001] ..s1.   10.000200: dma_unmap_phys: 0000:00:04.0 dir=FROM_DEVICE dma_addr=fffff000 size=1536 attrs=SKIP_CPU_SYNC",
        "   kworker/1:1-77      [001]   10.000200: dma_unmap_phys:       0000:00:04.0 dir=FROM_DEVICE dma_addr=fffff000 size=1536 attrs=SKIP_CPU_SYNC",
    ),
    (
        "   kworker/1:1-77      [001] .....   10.000300: dma_map_sg: 0000:00:05.0 dir=TO_DEVICE nents=2/2 ents=2/2 dma_addrs={0x1000,0x3000} sizes={0x200,0x40} phys_addrs={0x1000,0x3000} attrs=",
        "   kworker/1:1-77      [001]   10.000300: dma_map_sg:           0000:00:05.0 dir=TO_DEVICE nents=2/2 ents=2/2 dma_addrs={0x1000,0x3000} sizes={0x200,0x40} phys_addrs={0x1000,0x3000} attrs=",
    ),
    (
        "   kworker/1:1-77      [001] .....   10.000400: dma_unmap_sg: 0000:00:05.0 dir=TO_DEVICE phys_addrs={0x1000,0x3000} attrs=",
        "   kworker/1:1-77      [001]   10.000400: dma_unmap_sg:         0000:00:05.0 dir=TO_DEVICE phys_addrs={0x1000,0x3000} attrs=",
    ),
    (
        "   kworker/1:1-77      [001] .....   10.000500: dma_sync_sg_for_device: 0000:00:05.0 dir=BIDIRECTIONAL dma_addrs={0x1000} sizes={0x200}",
        "   kworker/1:1-77      [001]   10.000500: dma_sync_sg_for_device: 0000:00:05.0 dir=BIDIRECTIONAL dma_addrs={0x1000} sizes={0x200}",
    ),
    (
        "   kworker/1:1-77      [001] .....   10.000600: swiotlb_bounced: dev_name: 0000:00:04.0 dma_mask=ffffffff dev_addr=10a2c3000 size=1536 NORMAL",
        "   kworker/1:1-77      [001]   10.000600: swiotlb_bounced:      dev_name: 0000:00:04.0 dma_mask=ffffffff dev_addr=10a2c3000 size=1536 NORMAL",
    ),
];

#[test]
fn dma_events_in_both_layouts_parse_alike() {
    for (kernel, trace_cmd) in DMA_LINES {
        let (a, ka) = one(kernel);
        let (b, kb) = one(trace_cmd);
        assert_eq!(ka, kb, "{kernel}");
        assert_eq!(a.ranges, b.ranges);
        assert_eq!(a.events[0].ts, b.events[0].ts);
    }
    let (t, k) = one(DMA_LINES[0].0);
    let EventKind::DmaMap {
        dev,
        dir,
        first,
        count,
    } = k
    else {
        panic!("{k:?}")
    };
    assert_eq!(
        (t.devices.get(dev), dir, count),
        ("0000:00:04.0", Some(Direction::FromDevice), 1)
    );
    assert_eq!(
        t.ranges[first as usize],
        DmaRange {
            phys: 0x10a2c3000,
            dma: 0xfffff000,
            len: 1536
        }
    );
    let (t, k) = one(DMA_LINES[2].0);
    assert!(matches!(
        k,
        EventKind::DmaMap {
            dir: Some(Direction::ToDevice),
            count: 2,
            ..
        }
    ));
    assert_eq!(
        t.ranges[1],
        DmaRange {
            phys: 0x3000,
            dma: 0x3000,
            len: 0x40
        }
    );
    let (t, _) = one(DMA_LINES[3].0);
    assert_eq!(
        t.ranges,
        [
            DmaRange {
                phys: 0x1000,
                dma: 0,
                len: 0
            },
            DmaRange {
                phys: 0x3000,
                dma: 0,
                len: 0
            }
        ]
    );
    let (t, k) = one(DMA_LINES[5].0);
    let EventKind::SwiotlbBounced { dev, size } = k else {
        panic!("{k:?}")
    };
    assert_eq!((t.devices.get(dev), size), ("0000:00:04.0", 1536));
    for l in [
        "   x-1 [000] ..... 1.0: dma_sync_single_for_cpu: 0000:00:04.0 dir=FROM_DEVICE dma_addr=fffff000 size=1536",
        "   x-1 [000] ..... 1.0: dma_sync_single_for_device: 0000:00:04.0 dir=FROM_DEVICE dma_addr=fffff000 size=1536",
        "   x-1 [000] ..... 1.0: dma_sync_sg_for_cpu: 0000:00:05.0 dir=FROM_DEVICE dma_addrs={0x1000} sizes={0x200}",
    ] {
        let (t, k) = one(l);
        assert!(matches!(k, EventKind::DmaSync { count: 1, .. }), "{l}");
        assert!(t.ranges[0].dma != 0 && t.ranges[0].len != 0);
    }
}

#[test]
fn comments_lost_notices_unknown_events_and_hashed_pointers() {
    let text = "\
# tracer: nop
#
# entries-in-buffer/entries-written: 3/3   #P:2
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
CPU:0 [LOST 12 EVENTS]
              sh-1       [000] .....     2.000000: kmalloc: call_site=a+0x1/0x2 ptr=00000000a1b2c3d4 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_KERNEL node=-1 accounted=false
              sh-1       [000] .....     1.000000: mm_page_alloc: page=0x1 pfn=0x1 order=0 migratetype=0 gfp_flags=GFP_KERNEL
              sh-1       [000] .....     3.000000: kfree: call_site=b+0x1/0x2 ptr=00000000a1b2c3d4
# dmaslab: lost_events=5
";
    let t = parse(text).unwrap();
    assert_eq!(t.events.len(), 2);
    assert_eq!(t.unknown.get("mm_page_alloc"), Some(&1));
    assert_eq!(
        t.lost_events, 12,
        "the larger of the notices and the recorder's count"
    );
    assert!(t.hashed_pointers);
    // Out-of-order lines are sorted by timestamp.
    let t = parse(&text.replace("2.000000: kmalloc", "4.000000: kmalloc")).unwrap();
    assert!(matches!(t.events[0].kind, EventKind::Kfree { .. }));
}
