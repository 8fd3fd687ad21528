//! What the work binary looks up in the preloaded allocator with `dlsym`: dmaslab's lock
//! counts (`dmaslab_lock_stats`, exported by a `lock-stats` build of `libdmaslab.so`) and the
//! C++ sized delete (`_ZdlPvm`) with its `operator new` (`_Znwm`).

use crate::Heap;
use std::sync::OnceLock;

type LockStatsFn = unsafe extern "C" fn(*mut u64);
type NewFn = unsafe extern "C" fn(usize) -> *mut u8;
type SizedDeleteFn = unsafe extern "C" fn(*mut u8, usize);

static LOCK_STATS: OnceLock<Option<LockStatsFn>> = OnceLock::new();

fn symbol(name: &std::ffi::CStr) -> Option<*mut libc::c_void> {
    // SAFETY: `name` is a NUL-terminated string; RTLD_DEFAULT searches the loaded objects.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

/// `(lock calls, contended calls)` so far, when the allocator exports `dmaslab_lock_stats`.
pub fn lock_counts() -> Option<(u64, u64)> {
    let f = (*LOCK_STATS.get_or_init(|| {
        // SAFETY: the symbol, where present, is `dmaslab_lock_stats(*mut u64)`
        // (crates/dmaslab-preload/src/lock_stats.rs).
        symbol(c"dmaslab_lock_stats").map(|p| unsafe { std::mem::transmute::<_, LockStatsFn>(p) })
    }))?;
    let mut out = [0u64; 2];
    // SAFETY: `out` has room for the two counts.
    unsafe { f(out.as_mut_ptr()) };
    Some((out[0], out[1]))
}

/// The C++ allocation functions of the preloaded allocator: `operator new(size_t)` and the
/// sized `operator delete(void *, size_t)`.
pub struct SizedDelete {
    new: NewFn,
    delete: SizedDeleteFn,
}

impl SizedDelete {
    /// Both symbols, or `None` when the process has no sized delete.
    pub fn find() -> Option<SizedDelete> {
        let new = symbol(c"_Znwm")?;
        let delete = symbol(c"_ZdlPvm")?;
        // SAFETY: the Itanium C++ ABI names: `_Znwm` is `operator new(unsigned long)`,
        // `_ZdlPvm` is `operator delete(void*, unsigned long)`.
        unsafe {
            Some(SizedDelete {
                new: std::mem::transmute::<*mut libc::c_void, NewFn>(new),
                delete: std::mem::transmute::<*mut libc::c_void, SizedDeleteFn>(delete),
            })
        }
    }
}

// SAFETY: `operator new` returns a fresh block of at least `size` bytes (it throws, i.e.
// aborts here, rather than returning null); sized delete takes such a block and its size.
unsafe impl Heap for SizedDelete {
    fn malloc(&self, size: usize) -> *mut u8 {
        // SAFETY: operator new has no preconditions.
        unsafe { (self.new)(size) }
    }
    fn memalign(&self, _align: usize, _size: usize) -> *mut u8 {
        unreachable!("the sized-delete workload allocates with operator new only")
    }
    unsafe fn free(&self, p: *mut u8, size: usize, _align: usize) {
        // SAFETY: the caller's contract: `p` came from `operator new(size)`.
        unsafe { (self.delete)(p, size) }
    }
    unsafe fn realloc(&self, _p: *mut u8, _old: usize, _new: usize) -> *mut u8 {
        unreachable!("the sized-delete workload does not realloc")
    }
}
