//! Replays with answers worked out by hand, and the seed workload as a trace.

use dmaslab_core::seed::{allocate_seed_workload, SEED_ACTIVE};
use dmaslab_core::{ArenaPageSource, Config, Kmalloc, Policy};
use dmaslab_trace::{analyse, parse, Report};
use std::fmt::Write;
use std::mem::MaybeUninit;

/// `n` kmalloc objects of each size, all allocated at 1 s and freed at 3 s.
fn all_alive(n: usize, sizes: &[u64]) -> String {
    let mut s = String::new();
    let mut addr = 0xffff_8881_0000_0000u64;
    let mut ptrs = Vec::new();
    for &size in sizes {
        for _ in 0..n {
            addr += 0x1000;
            writeln!(s, "  t-1 [000] ..... 1.000000: kmalloc: call_site=site_{size}+0x1/0x10 ptr={addr:x} bytes_req={size} bytes_alloc={size} gfp_flags=GFP_KERNEL node=-1 accounted=false").unwrap();
            ptrs.push(addr);
        }
    }
    for p in ptrs {
        writeln!(
            s,
            "  t-1 [000] ..... 3.000000: kfree: call_site=done+0x1/0x10 ptr={p:x}"
        )
        .unwrap();
    }
    s
}

fn pages(r: &Report, policy: &str, line: usize) -> (usize, f64, usize) {
    let p = r
        .policies
        .iter()
        .find(|p| p.policy == policy && p.dma_minalign == line)
        .unwrap();
    (p.peak_pages, p.mean_pages, p.final_pages)
}

/// 512 objects of each class 8..256 alive at once. One-page slabs hold 4096 / size objects:
///
/// - B and C (every class): 1 + 2 + 4 + 8 + ceil(512/42) + 16 + ceil(512/21) + 32 = 101.
/// - A, 32: 8, 16, 32 share kmalloc-32 (1536 / 128 = 12), then 8 + 13 + 16 + 25 + 32 = 106.
/// - A, 64: 8..64 in kmalloc-64 (2048 / 64 = 32), 96 and 128 in kmalloc-128 (1024 / 32 = 32),
///   192 (25), 256 (32): 121.
/// - A, 128: 8..128 in kmalloc-128 (3072 / 32 = 96), 192 and 256 in kmalloc-256 (1024 / 16): 160.
/// - A, 256: all 4096 objects in kmalloc-256: 256.
///
/// After the frees each cache used keeps its one empty slab: 8 pages under B and C, 6, 4, 2 and 1
/// under A at 32, 64, 128 and 256. The peak holds from 1 s to 3 s, the whole trace: mean = peak.
#[test]
fn n_objects_of_each_class_alive_at_once() {
    let text = all_alive(512, &[8, 16, 32, 64, 96, 128, 192, 256]);
    let r = analyse(&parse(&text).unwrap(), &[32, 64, 128, 256]);
    for (policy, line, peak, fin) in [
        ("A", 32, 106, 6),
        ("A", 64, 121, 4),
        ("A", 128, 160, 2),
        ("A", 256, 256, 1),
        ("B", 64, 101, 8),
        ("C", 64, 101, 8),
    ] {
        let (p, mean, f) = pages(&r, policy, line);
        assert_eq!((p, f), (peak, fin), "{policy} at {line}");
        assert!(
            (mean - peak as f64).abs() < 1e-9,
            "{policy} {line}: mean {mean}"
        );
    }
    assert_eq!(r.kernel_class_match, 1.0);
    assert_eq!((r.events, r.unmatched_frees, r.lost_events), (8192, 0, 0));
    assert!((r.duration_s - 2.0).abs() < 1e-12);
    // A at 64 against B at A's peak: 121 - 101 = 20 extra pages, from the sites whose objects
    // grow: 8 (+56 bytes each), 16 (+48), 32 (+32), 96 (+32); 512 objects each.
    assert_eq!(r.a_extra_peak_pages, 20);
    let sites: Vec<(&str, i64)> = r
        .a_cost_call_sites
        .iter()
        .map(|c| (c.call_site.as_str(), c.extra_peak_pages))
        .collect();
    // Shares 56 : 48 : 32 : 32 of 168.
    assert_eq!(
        sites,
        [
            ("site_8+0x1/0x10", 7),
            ("site_16+0x1/0x10", 6),
            ("site_32+0x1/0x10", 4),
            ("site_96+0x1/0x10", 4)
        ]
    );
    let total: f64 = r.a_cost_call_sites.iter().map(|c| c.share).sum();
    assert!((total - 1.0).abs() < 1e-12);
}

#[test]
fn frees_before_the_trace_and_class_mismatches_are_counted() {
    let text = "\
 t-1 [000] ..... 1.0: kfree: call_site=x+0x1/0x2 ptr=ffff888100000040
 t-1 [000] ..... 1.1: kmalloc: call_site=y+0x1/0x2 ptr=ffff888100001000 bytes_req=100 bytes_alloc=128 gfp_flags=GFP_KERNEL node=-1 accounted=false
 t-1 [000] ..... 1.2: kmalloc: call_site=y+0x1/0x2 ptr=ffff888100002000 bytes_req=100 bytes_alloc=104 gfp_flags=GFP_KERNEL node=-1 accounted=false
 t-1 [000] ..... 1.3: kmem_cache_alloc: call_site=z+0x1/0x2 ptr=ffff888100003000 name=filp bytes_req=184 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1 accounted=true
 t-1 [000] ..... 1.4: kfree: call_site=z+0x1/0x2 ptr=ffff888100003000
";
    let r = analyse(&parse(text).unwrap(), &[64]);
    assert_eq!(r.unmatched_frees, 1);
    assert_eq!(r.pairing.kfree_of_cache_object, 1);
    assert_eq!(
        r.kernel_class_match, 0.5,
        "100 bytes: class 128; the second says 104"
    );
    assert_eq!(r.named_caches, 1);
}

/// The seed's active objects as a trace: the same pages as `dmaslab report` (README: 3154,
/// 5946, 1893, 1893), computed here the report's way (`allocate_seed_workload`, kmalloc caches'
/// pages) as well.
#[test]
fn the_seed_workload_as_a_trace_gives_the_report_pages() {
    let mut text = String::new();
    let mut addr = 0xffff_8881_0000_0000u64;
    for (size, count) in SEED_ACTIVE {
        for _ in 0..count {
            addr += 0x1000;
            writeln!(text, " s-1 [000] ..... 1.0: kmalloc: call_site=seed+0x0/0x1 ptr={addr:x} bytes_req={size} bytes_alloc={size} gfp_flags=GFP_KERNEL node=-1 accounted=false").unwrap();
        }
    }
    let r = analyse(&parse(&text).unwrap(), &[64, 128]);
    let report_way = |policy: Policy, line: usize| {
        let mut mem = vec![MaybeUninit::<u8>::uninit(); 64 << 20];
        let k = Kmalloc::new(
            ArenaPageSource::new(&mut mem).unwrap(),
            Config::new(policy).dma_minalign(line),
        )
        .unwrap();
        allocate_seed_workload(&k);
        let mut pages = 0;
        k.for_each_cache(|id, info| {
            if k.is_kmalloc(id) {
                pages += info.pages();
            }
        });
        pages
    };
    for (policy, name, line, readme) in [
        (Policy::A, "A", 64, 3154),
        (Policy::A, "A", 128, 5946),
        (Policy::B, "B", 64, 1893),
        (Policy::C, "C", 64, 1893),
    ] {
        let (peak, _, fin) = pages(&r, name, line);
        assert_eq!(peak, readme, "{name} at {line}");
        assert_eq!(fin, readme, "nothing is freed");
        assert_eq!(peak, report_way(policy, line), "{name} at {line}");
    }
}
