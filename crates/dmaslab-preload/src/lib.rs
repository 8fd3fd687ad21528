//! `libdmaslab.so`: the C `malloc` family on the dmaslab heap, for `LD_PRELOAD`.
//!
//! ```sh
//! cargo build --release
//! DMASLAB_POLICY=A DMASLAB_STATS=stderr LD_PRELOAD=target/release/libdmaslab.so python3 -c 'print(1)'
//! ```
//!
//! C semantics as glibc: `errno = ENOMEM` on failure, `EINVAL` for bad alignments
//! (`posix_memalign` returns it), `free(NULL)` does nothing, `realloc(p, 0)` frees `p` and returns
//! null, `calloc` and `reallocarray` check for overflow. Locks are taken before `fork()` and
//! released in parent and child (`pthread_atfork`). At exit the slabinfo table is written where
//! `DMASLAB_STATS` says. An invalid or double free prints `dmaslab: invalid free of 0x...` /
//! `dmaslab: double free of 0x...` and aborts.
//!
//! No function here unwinds: the release profile aborts on panic, and `extern "C"` functions
//! abort on an unwinding panic in any profile.
#![deny(unsafe_op_in_unsafe_fn)]

use core::ffi::c_void;
use core::ptr;
use dmaslab_heap::heap;

/// glibc's `MALLOC_ALIGNMENT` on 64-bit targets.
const MALLOC_ALIGNMENT: usize = 16;

fn set_errno(e: i32) {
    // SAFETY: errno is this thread's; writing it is always allowed.
    unsafe { *libc::__errno_location() = e };
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

#[inline]
fn enomem_if_null(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p.cast()
}

/// `malloc(3)`.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    enomem_if_null(heap().malloc(size))
}

/// `free(3)`.
///
/// # Safety
/// `p` is null or a live allocation of this library.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: the C contract of free.
    unsafe { heap().free(p.cast()) }
}

/// `calloc(3)`: overflow of `n * size` is `ENOMEM`.
#[no_mangle]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(bytes) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    let p = heap().malloc(bytes);
    if p.is_null() {
        set_errno(libc::ENOMEM);
    } else {
        // SAFETY: a fresh block of at least `bytes` bytes.
        unsafe { p.write_bytes(0, bytes) };
    }
    p.cast()
}

/// `realloc(3)`, glibc semantics: null `p` allocates, `size == 0` frees and returns null.
///
/// # Safety
/// `p` is null or a live allocation of this library.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    let h = heap();
    if p.is_null() {
        return enomem_if_null(h.malloc(size));
    }
    if size == 0 {
        // SAFETY: the C contract of realloc.
        unsafe { h.free(p.cast()) };
        return ptr::null_mut();
    }
    // SAFETY: the C contract of realloc.
    enomem_if_null(unsafe { h.realloc(p.cast(), size) })
}

/// `reallocarray(3)`: `realloc(p, n * size)` with overflow reported as `ENOMEM`.
///
/// # Safety
/// As for [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded.
        Some(bytes) => unsafe { realloc(p, bytes) },
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

fn aligned(align: usize, size: usize) -> *mut c_void {
    if align <= MALLOC_ALIGNMENT && size >= align {
        return enomem_if_null(heap().malloc(size));
    }
    enomem_if_null(heap().malloc_aligned(size, align))
}

/// `memalign(3)`, as glibc: a non-power-of-two alignment is rounded up; one above
/// `SIZE_MAX / 2 + 1` is `EINVAL`.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    if align > usize::MAX / 2 + 1 {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    aligned(align.max(1).next_power_of_two(), size)
}

/// `posix_memalign(3)`: `EINVAL` unless `align` is a power of two multiple of
/// `sizeof(void *)`; `ENOMEM` when out of memory. `errno` is left alone.
///
/// # Safety
/// `out` is valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(
    out: *mut *mut c_void,
    align: usize,
    size: usize,
) -> libc::c_int {
    // A power of two is a multiple of `sizeof(void *)` (itself a power of two) iff not smaller.
    if !align.is_power_of_two() || align < core::mem::size_of::<*mut c_void>() {
        return libc::EINVAL;
    }
    // SAFETY: errno is this thread's.
    let saved = unsafe { *libc::__errno_location() };
    let p = aligned(align, size);
    if p.is_null() {
        set_errno(saved);
        return libc::ENOMEM;
    }
    // SAFETY: the caller gives a writable pointer slot.
    unsafe { out.write(p) };
    0
}

/// `aligned_alloc(3)`: `EINVAL` unless `align` is a power of two (glibc 2.38).
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    aligned(align, size)
}

/// `valloc(3)`: page-aligned.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    aligned(page_size(), size)
}

/// `pvalloc(3)`: page-aligned, size rounded up to whole pages (0 gives one page).
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let ps = page_size();
    match size.max(1).checked_next_multiple_of(ps) {
        Some(s) => aligned(ps, s),
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// `malloc_usable_size(3)`: 0 for null.
#[no_mangle]
pub extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    heap().usable_size(p.cast())
}

extern "C" fn atfork_prepare() {
    heap().prefork();
}

extern "C" fn atfork_parent() {
    // SAFETY: runs once after `atfork_prepare` in the forking thread.
    unsafe { heap().postfork() };
}

extern "C" fn atfork_child() {
    // SAFETY: runs once after `atfork_prepare` in the child's only thread.
    unsafe { heap().postfork() };
}

/// Library constructor: builds the heap (if no `malloc` has yet) and registers the fork
/// handlers. Runs outside any `malloc`, so `pthread_atfork` may allocate.
extern "C" fn on_load() {
    let _ = heap();
    // SAFETY: the handlers are `extern "C"` functions that live as long as the process (this
    // library is never unloaded while preloaded).
    unsafe {
        libc::pthread_atfork(
            Some(atfork_prepare),
            Some(atfork_parent),
            Some(atfork_child),
        )
    };
}

/// Library destructor: writes the statistics where `DMASLAB_STATS` says.
extern "C" fn on_unload() {
    if let Some(h) = dmaslab_heap::try_heap() {
        h.dump_stats();
    }
}

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;

#[used]
#[link_section = ".fini_array"]
static ON_UNLOAD: extern "C" fn() = on_unload;
