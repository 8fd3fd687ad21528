//! `dmaslab_lock_stats`: the core's lock counts, for a benchmark that runs under this library
//! (`lock-stats` feature; `dmaslab-bench-work` finds the symbol with `dlsym`).

/// Writes the lock calls so far to `out[0]` and the contended ones to `out[1]`.
///
/// # Safety
/// `out` points to two writable `u64`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dmaslab_lock_stats(out: *mut u64) {
    let s = dmaslab_core::lock_stats();
    // SAFETY: the caller passes room for two u64s.
    unsafe {
        out.write(s.acquisitions);
        out.add(1).write(s.contended);
    }
}
