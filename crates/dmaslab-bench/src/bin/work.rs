//! `dmaslab-bench-work WORKLOAD [SCALE] [TRACE]`: one workload on the C library's `malloc`
//! family (so `LD_PRELOAD` chooses the allocator). Prints `RESULT`, `LOCKS` and `CHECK` lines
//! (`dmaslab_bench::print_rows`); run by `dmaslab-bench`. `larson-sized-2t` allocates with
//! `operator new` and frees with the sized `operator delete` of the preloaded allocator, or
//! with malloc and free (and a note) where the process has no sized delete.

use dmaslab_bench::probe::SizedDelete;
use dmaslab_bench::{run, shapes, Libc};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(name) = args.get(1) else {
        eprintln!("usage: dmaslab-bench-work WORKLOAD [SCALE] [TRACE]");
        std::process::exit(2)
    };
    let scale = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let trace = args.get(3).map(|s| s.as_str());
    let rows = match (name.as_str(), SizedDelete::find()) {
        ("larson-sized-2t", Some(cpp)) => shapes::larson::run(&cpp, scale, 2, true, name),
        ("larson-sized-2t", None) => {
            eprintln!("dmaslab-bench-work: note: no _Znwm/_ZdlPvm in this process; larson-sized-2t frees with free()");
            run(&Libc, name, scale, trace)
        }
        _ => run(&Libc, name, scale, trace),
    };
    dmaslab_bench::print_rows(&rows);
}
