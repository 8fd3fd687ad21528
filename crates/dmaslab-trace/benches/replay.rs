//! Replay speed: events per second of `analyse` (pairing, offset-free replay under A at 32, 64,
//! 128 and 256, B and C, two worker threads at most) and of `parse`, on the committed real
//! fixture and on a synthetic stream of 1 M events shaped like it (kmalloc sizes 8..8k, named
//! caches, lifetimes of a few hundred events). Run: `cargo bench -p dmaslab-trace`.

use dmaslab_core::Policy;
use dmaslab_trace::{analyse, pair, parse, replay, Setup, DEFAULT_MINALIGNS};
use std::fmt::Write;
use std::time::Instant;

/// A deterministic trace of `n` events: allocations (kmalloc 2/3, named caches 1/3) freed
/// later in a random order, as the kernel's lines.
fn synthetic(n: usize) -> String {
    let mut s = String::with_capacity(n * 170);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut live: Vec<(u64, Option<&str>)> = Vec::new();
    let sizes = [
        8u64, 16, 24, 32, 40, 64, 96, 100, 128, 192, 256, 500, 1000, 2048, 4000, 8192,
    ];
    let caches = [("filp", 256u64), ("dentry", 192), ("vm_area_struct", 176)];
    let mut addr = 0xffff_8881_0000_0000u64;
    for i in 0..n {
        let ts = i as u64;
        let (sec, us) = (ts / 1_000_000, ts % 1_000_000);
        if live.len() > 200 && (rnd() % 2 == 0 || live.len() > 4000) {
            let j = (rnd() as usize) % live.len();
            let (p, name) = live.swap_remove(j);
            match name {
                None => writeln!(s, " sh-1 [000] ..... {sec}.{us:06}: kfree: call_site=f+0x1/0x2 ptr={p:016x}"),
                Some(c) => writeln!(s, " sh-1 [000] ..... {sec}.{us:06}: kmem_cache_free: call_site=f+0x1/0x2 ptr={p:016x} name={c}"),
            }
            .unwrap();
            continue;
        }
        addr += 8192;
        if rnd() % 3 == 0 {
            let (c, size) = caches[(rnd() % 3) as usize];
            writeln!(s, " sh-1 [000] ..... {sec}.{us:06}: kmem_cache_alloc: call_site=g+0x1/0x2 ptr={addr:016x} name={c} bytes_req={size} bytes_alloc={size} gfp_flags=GFP_KERNEL node=-1 accounted=false").unwrap();
            live.push((addr, Some(c)));
        } else {
            let req = sizes[(rnd() % sizes.len() as u64) as usize];
            let site = rnd() % 50;
            writeln!(s, " sh-1 [000] ..... {sec}.{us:06}: kmalloc: call_site=site{site}+0x1/0x2 ptr={addr:016x} bytes_req={req} bytes_alloc={req} gfp_flags=GFP_KERNEL node=-1 accounted=false").unwrap();
            live.push((addr, None));
        }
    }
    s
}

fn measure(label: &str, text: &str) {
    let t = Instant::now();
    let trace = parse(text).expect("bench trace parses");
    let parse_s = t.elapsed().as_secs_f64();
    let n = trace.events.len() as f64;
    let t = Instant::now();
    let report = analyse(&trace, &DEFAULT_MINALIGNS);
    let all_s = t.elapsed().as_secs_f64();
    // One policy alone, on one thread: the replay loop's own speed.
    let lt = pair(&trace);
    let t = Instant::now();
    let one = replay(
        &trace,
        &lt,
        Setup {
            policy: Policy::C,
            dma_minalign: 64,
        },
        1 << 30,
        false,
        None,
    )
    .expect("1 GiB arenas hold the bench trace");
    let one_s = t.elapsed().as_secs_f64();
    println!(
        "{label:<28} {:>9} events  parse {:>6.2} M events/s  analyse (6 policies) {:>6.2} M events/s  one policy {:>6.2} M events/s  (C peak {} pages, report {} policies)",
        trace.events.len(),
        n / parse_s / 1e6,
        n / all_s / 1e6,
        n / one_s / 1e6,
        one.peak_pages,
        report.policies.len()
    );
}

fn main() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/real-fs-pipe-tcp.trace.gz"
    );
    match std::fs::read(fixture)
        .map_err(|e| e.to_string())
        .and_then(|b| dmaslab_trace::text_of(&b))
    {
        Ok(text) => measure("fixture real-fs-pipe-tcp", &text),
        Err(e) => println!("SKIPPED: fixture {fixture}: {e}"),
    }
    measure("synthetic 1M", &synthetic(1_000_000));
}
