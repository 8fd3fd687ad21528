//! `libdmaslab.so`: the C `malloc` family on the dmaslab heap, for `LD_PRELOAD`.
//!
//! ```sh
//! cargo build --release
//! DMASLAB_POLICY=A DMASLAB_STATS=stderr LD_PRELOAD=$PWD/target/release/libdmaslab.so python3 -c 'print(1)'
//! ```
//!
//! C semantics as glibc: `errno = ENOMEM` on failure, `EINVAL` for bad alignments
//! (`posix_memalign` returns it), `free(NULL)` does nothing, `realloc(p, 0)` frees `p` and returns
//! null, `calloc` and `reallocarray` check for overflow. Locks are taken before `fork()` and
//! released in parent and child (`pthread_atfork`). At exit the slabinfo table is written where
//! `DMASLAB_STATS` says. An invalid or double free prints `dmaslab: invalid free of 0x...` /
//! `dmaslab: double free of 0x...` and aborts; `DMASLAB_DEBUG=1` turns on debug mode (red
//! zones, poison, full double-free checks), whose reports name the cache, the object and the
//! allocation and free call sites.
//!
//! C++'s `operator new`/`operator delete` (all forms: sized, aligned, nothrow) and C23's
//! `free_sized`/`free_aligned_sized` are exported too (`cxx.rs`): a sized delete whose size
//! does not round to the object's class prints `dmaslab: sized delete mismatch of 0x...` and
//! aborts.
//!
//! # Call sites
//! On x86-64 each exported function other than `malloc` and `free` is a two-instruction naked
//! trampoline: it loads its return address (the caller's call site) into the next argument
//! register and tail-jumps to the Rust implementation (`calloc` → `calloc_at(n, size, site)`).
//! `malloc` and `free` are their fast paths themselves, without a frame, and only a miss goes
//! through such a trampoline ([`site_trampoline!`]) on its way to the whole path: at that tail
//! jump the caller's return address is still on top of the stack, and the pair's hot path
//! takes two taken jumps fewer (BENCHMARKS.md, fourth round). Elsewhere the exported functions
//! pass 0 ("unknown").
//!
//! No function here unwinds: the release profile aborts on panic, and `extern "C"` functions
//! abort on an unwinding panic in any profile.
#![deny(unsafe_op_in_unsafe_fn)]

use core::ffi::c_void;
use core::ptr;
use dmaslab_heap::{fast_free, fast_malloc, heap};

#[cfg(feature = "lock-stats")]
mod lock_stats;
mod trace;

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

/// Defines an exported C function that passes its caller's address as an extra last argument
/// to `$imp` (see "Call sites" above). `$x86` is the register of that argument on x86-64.
macro_rules! with_site {
    ($(#[$m:meta])* fn $name:ident($($a:ident: $t:ty),*) $(-> $r:ty)? => $imp:ident, $x86:literal) => {
        $(#[$m])*
        #[cfg(target_arch = "x86_64")]
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($a: $t),*) $(-> $r)? {
            // The return address is at [rsp] on entry; the arguments stay in their registers.
            core::arch::naked_asm!(
                concat!("mov ", $x86, ", qword ptr [rsp]"),
                "jmp {imp}",
                imp = sym $imp,
            )
        }
        $(#[$m])*
        #[cfg(not(target_arch = "x86_64"))]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($a: $t),*) $(-> $r)? {
            // SAFETY: forwarded from the caller; 0 is "site unknown".
            unsafe { $imp($($a,)* 0) }
        }
    };
}

with_site! {
    /// `calloc(3)`: overflow of `n * size` is `ENOMEM`.
    ///
    /// # Safety
    /// None beyond C's.
    fn calloc(n: usize, size: usize) -> *mut c_void => calloc_at, "rdx"
}
with_site! {
    /// `realloc(3)`, glibc semantics: null `p` allocates, `size == 0` frees and returns null.
    ///
    /// # Safety
    /// `p` is null or a live allocation of this library.
    fn realloc(p: *mut c_void, size: usize) -> *mut c_void => realloc_at, "rdx"
}
with_site! {
    /// `reallocarray(3)`: `realloc(p, n * size)` with overflow reported as `ENOMEM`.
    ///
    /// # Safety
    /// As for [`realloc`].
    fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void => reallocarray_at, "rcx"
}
with_site! {
    /// `memalign(3)`, as glibc: a non-power-of-two alignment is rounded up; one above
    /// `SIZE_MAX / 2 + 1` is `EINVAL`.
    ///
    /// # Safety
    /// None beyond C's.
    fn memalign(align: usize, size: usize) -> *mut c_void => memalign_at, "rdx"
}
with_site! {
    /// `posix_memalign(3)`: `EINVAL` unless `align` is a power of two multiple of
    /// `sizeof(void *)`; `ENOMEM` when out of memory. `errno` is left alone.
    ///
    /// # Safety
    /// `out` is valid for a pointer write.
    fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> libc::c_int => posix_memalign_at, "rcx"
}
with_site! {
    /// `aligned_alloc(3)`: `EINVAL` unless `align` is a power of two (glibc 2.38).
    ///
    /// # Safety
    /// None beyond C's.
    fn aligned_alloc(align: usize, size: usize) -> *mut c_void => aligned_alloc_at, "rdx"
}
with_site! {
    /// `valloc(3)`: page-aligned.
    ///
    /// # Safety
    /// None beyond C's.
    fn valloc(size: usize) -> *mut c_void => valloc_at, "rsi"
}
with_site! {
    /// `pvalloc(3)`: page-aligned, size rounded up to whole pages (0 gives one page).
    ///
    /// # Safety
    /// None beyond C's.
    fn pvalloc(size: usize) -> *mut c_void => pvalloc_at, "rsi"
}

/// Defines `$name`, the naked tail of an exported fast path's miss (`malloc`, `free`): it
/// passes its return address as the extra last argument (register `$x86`) of `$imp`. The fast
/// path reaches it by a tail jump, so that address is the fast path's caller. Should a build
/// reach it by a call instead (an unoptimised one, whose fast path has a frame), the address
/// lies inside `$entry` itself, and the site passed is 0, "unknown".
/// The start of a site trampoline: its return address into register `$x86`, or 0 where that
/// address lies within 64 KiB after `{entry}` (a call from the fast path itself, not a tail
/// jump: 64 KiB is more than any build of the fast path, unoptimised `free` is 4.4 KiB, and
/// less than the library's code that follows it, so no caller outside the library is taken for
/// a call from inside). Uses rax and rcx, scratch in the C ABI and no trampoline's arguments.
macro_rules! site_or_zero {
    ($x86:literal) => {
        concat!(
            "mov ",
            $x86,
            ", qword ptr [rsp]\n",
            "mov rax, qword ptr [rip + {entry}@GOTPCREL]\n",
            "mov rcx, ",
            $x86,
            "\n",
            "sub rcx, rax\n",
            "cmp rcx, 65536\n",
            "jae 3f\n",
            "xor ",
            $x86,
            ", ",
            $x86,
            "\n",
            "3:"
        )
    };
}

macro_rules! site_trampoline {
    ($entry:ident: $name:ident($($a:ident: $t:ty),*) $(-> $r:ty)? => $imp:ident, $x86:literal) => {
        #[cfg(target_arch = "x86_64")]
        #[unsafe(naked)]
        unsafe extern "C" fn $name($($a: $t),*) $(-> $r)? {
            core::arch::naked_asm!(
                site_or_zero!($x86),
                "jmp {imp}",
                entry = sym $entry,
                imp = sym $imp,
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        unsafe extern "C" fn $name($($a: $t),*) $(-> $r)? {
            // SAFETY: forwarded from the caller; 0 is "site unknown".
            unsafe { $imp($($a,)* 0) }
        }
    };
}

// After `with_site!` and `site_trampoline!`, which it uses: C++ `operator new`/`delete`,
// `free_sized`.
mod cxx;

/// `malloc(3)`: the thread's magazine when it can ([`fast_malloc`]; no errno, no trace hook:
/// tracing turns magazines off), else the whole path.
///
/// # Safety
/// None beyond C's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    match fast_malloc(size) {
        Some(p) => p.as_ptr().cast(),
        // SAFETY: none needed beyond C's.
        None => unsafe { malloc_miss(size) },
    }
}

/// `free(3)`: into the thread's magazine when it can ([`fast_free`]), else the whole path.
///
/// # Safety
/// `p` is null or a live allocation of this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: the C contract of free.
    if unsafe { fast_free(p.cast()) } {
        return;
    }
    // SAFETY: as above.
    unsafe { free_miss(p) }
}

site_trampoline!(malloc: malloc_miss(size: usize) -> *mut c_void => malloc_slow, "rsi");
site_trampoline!(free: free_miss(p: *mut c_void) => free_slow, "rsi");

#[cold]
#[inline(never)]
extern "C" fn malloc_slow(size: usize, site: usize) -> *mut c_void {
    let p = enomem_if_null(heap().malloc_at(size, site));
    trace::record(trace::MALLOC, size, 0, p);
    p
}

/// # Safety
/// As for [`free`].
#[cold]
#[inline(never)]
unsafe extern "C" fn free_slow(p: *mut c_void, site: usize) {
    if p.is_null() {
        return;
    }
    trace::record(trace::FREE, 0, p as usize, ptr::null_mut());
    // SAFETY: the C contract of free.
    unsafe { heap().free_at(p.cast(), site) }
}

/// # Safety
/// None beyond C's.
unsafe extern "C" fn calloc_at(n: usize, size: usize, site: usize) -> *mut c_void {
    let Some(bytes) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    let p = heap().malloc_at(bytes, site);
    if p.is_null() {
        set_errno(libc::ENOMEM);
    } else {
        // SAFETY: a fresh block of at least `bytes` bytes.
        unsafe { p.write_bytes(0, bytes) };
    }
    trace::record(trace::CALLOC, size, n, p.cast());
    p.cast()
}

/// # Safety
/// `p` is null or a live allocation of this library.
unsafe extern "C" fn realloc_at(p: *mut c_void, size: usize, site: usize) -> *mut c_void {
    // SAFETY: forwarded from the caller.
    let r = unsafe { realloc_untraced(p, size, site) };
    trace::record(trace::REALLOC, size, p as usize, r);
    r
}

/// # Safety
/// As for [`realloc`].
unsafe fn realloc_untraced(p: *mut c_void, size: usize, site: usize) -> *mut c_void {
    let h = heap();
    if p.is_null() {
        return enomem_if_null(h.malloc_at(size, site));
    }
    if size == 0 {
        // SAFETY: the C contract of realloc.
        unsafe { h.free_at(p.cast(), site) };
        return ptr::null_mut();
    }
    // SAFETY: the C contract of realloc.
    enomem_if_null(unsafe { h.realloc_aligned_at(p.cast(), size, 1, site) })
}

/// # Safety
/// As for [`realloc`].
unsafe extern "C" fn reallocarray_at(
    p: *mut c_void,
    n: usize,
    size: usize,
    site: usize,
) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded.
        Some(bytes) => unsafe { realloc_at(p, bytes, site) },
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

fn aligned(align: usize, size: usize, site: usize) -> *mut c_void {
    let p = if align <= MALLOC_ALIGNMENT && size >= align {
        enomem_if_null(heap().malloc_at(size, site))
    } else {
        enomem_if_null(heap().malloc_aligned_at(size, align, site))
    };
    trace::record(trace::MEMALIGN, size, align, p);
    p
}

/// # Safety
/// None beyond C's.
unsafe extern "C" fn memalign_at(align: usize, size: usize, site: usize) -> *mut c_void {
    if align > usize::MAX / 2 + 1 {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    aligned(align.max(1).next_power_of_two(), size, site)
}

/// # Safety
/// `out` is valid for a pointer write.
unsafe extern "C" fn posix_memalign_at(
    out: *mut *mut c_void,
    align: usize,
    size: usize,
    site: usize,
) -> libc::c_int {
    // A power of two is a multiple of `sizeof(void *)` (itself a power of two) iff not smaller.
    if !align.is_power_of_two() || align < core::mem::size_of::<*mut c_void>() {
        return libc::EINVAL;
    }
    // SAFETY: errno is this thread's.
    let saved = unsafe { *libc::__errno_location() };
    let p = aligned(align, size, site);
    if p.is_null() {
        set_errno(saved);
        return libc::ENOMEM;
    }
    // SAFETY: the caller gives a writable pointer slot.
    unsafe { out.write(p) };
    0
}

/// # Safety
/// None beyond C's.
unsafe extern "C" fn aligned_alloc_at(align: usize, size: usize, site: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    aligned(align, size, site)
}

/// # Safety
/// None beyond C's.
unsafe extern "C" fn valloc_at(size: usize, site: usize) -> *mut c_void {
    aligned(page_size(), size, site)
}

/// # Safety
/// None beyond C's.
unsafe extern "C" fn pvalloc_at(size: usize, site: usize) -> *mut c_void {
    let ps = page_size();
    match size.max(1).checked_next_multiple_of(ps) {
        Some(s) => aligned(ps, s, site),
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
    trace::child_after_fork();
    // SAFETY: runs once after `atfork_prepare` in the child's only thread.
    unsafe { heap().postfork() };
}

/// Library constructor: builds the heap (if no `malloc` has yet) and registers the fork
/// handlers. Runs outside any `malloc`, so `pthread_atfork` may allocate.
extern "C" fn on_load() {
    let _ = heap();
    trace::init();
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

/// Library destructor: writes the statistics where `DMASLAB_STATS` says. In debug mode it
/// first walks every slab and aborts if a free object was written or a red zone overwritten
/// (misuse no later allocation happened to catch).
extern "C" fn on_unload() {
    trace::flush();
    if let Some(h) = dmaslab_heap::try_heap() {
        h.dump_stats();
        if h.debug() && h.validate() > 0 {
            // SAFETY: abort has no preconditions; the findings are on stderr.
            unsafe { libc::abort() }
        }
    }
}

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;

#[used]
#[link_section = ".fini_array"]
static ON_UNLOAD: extern "C" fn() = on_unload;
