//! `dmaslab-bench-rs ALLOC WORKLOAD [SCALE] [TRACE]`: one workload on a Rust global allocator
//! called directly: `mimalloc`, `jemalloc` (tikv-jemallocator), `dmaslab` (`DmaSlab`) or
//! `system` (`std::alloc::System`). Built with the `rust-peers` feature.

use dmaslab_bench::{print_rows, run, Global};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: dmaslab-bench-rs ALLOC WORKLOAD [SCALE] [TRACE]");
        std::process::exit(2)
    }
    let w = args[2].as_str();
    let scale = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let trace = args.get(4).map(|s| s.as_str());
    let rows = match args[1].as_str() {
        "mimalloc" => run(&Global(mimalloc::MiMalloc), w, scale, trace),
        "jemalloc" => run(&Global(tikv_jemallocator::Jemalloc), w, scale, trace),
        "dmaslab" => run(&Global(dmaslab::DmaSlab), w, scale, trace),
        "system" => run(&Global(std::alloc::System), w, scale, trace),
        a => {
            eprintln!("unknown allocator {a}");
            std::process::exit(2)
        }
    };
    print_rows(&rows);
}
