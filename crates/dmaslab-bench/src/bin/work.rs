//! `dmaslab-bench-work WORKLOAD [SCALE] [TRACE]`: one workload on the C library's `malloc`
//! family (so `LD_PRELOAD` chooses the allocator). Prints `RESULT name ops nanos` lines; run by
//! `dmaslab-bench`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(name) = args.get(1) else {
        eprintln!("usage: dmaslab-bench-work WORKLOAD [SCALE] [TRACE]");
        std::process::exit(2)
    };
    let scale = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let rows = dmaslab_bench::run(
        &dmaslab_bench::Libc,
        name,
        scale,
        args.get(3).map(|s| s.as_str()),
    );
    dmaslab_bench::print_rows(&rows);
}
