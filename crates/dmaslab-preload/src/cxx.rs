//! C++'s `operator new` and `operator delete` (Itanium ABI names, x86-64/AArch64 `size_t` =
//! `m`) and C23's `free_sized` / `free_aligned_sized`, so that `new`/`delete` pairs go through
//! the heap with call sites and sized deletes are checked ([`Heap::free_sized_at`]: a size that
//! does not round to the object's class is reported and aborts). In normal mode a sized free
//! that the thread's magazine takes (the fast path) is not checked: only those that reach the
//! heap's whole path are — page runs, huge segments, magazine exchanges; debug mode has no
//! fast path and checks every one.
//!
//! # Out of memory in `operator new`
//! Rust cannot throw. The throwing forms are naked trampolines (x86-64) that call the heap and,
//! on null, tail-jump to the *next* definition of the same operator (libstdc++'s, found with
//! `dlsym(RTLD_NEXT)`), with the arguments as they came: it retries `malloc` (ours), runs the
//! `std::new_handler` loop and throws `std::bad_alloc`, exactly as the standard says, with no
//! Rust frame on the stack. Without a next definition the library prints `dmaslab: out of
//! memory in operator new (N bytes)` and aborts. Elsewhere than x86-64 that line and abort are
//! the answer. The `nothrow` forms return null (no `new_handler` loop).
//!
//! [`Heap::free_sized_at`]: dmaslab_heap::Heap::free_sized_at

use crate::{aligned, enomem_if_null, trace};
use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering};
use dmaslab_heap::{fast_free_sized, fast_malloc, heap};

/// The next definitions of the throwing `operator new` forms, resolved on the first failure of
/// each (0: not yet). Read by the trampolines' failure branch.
static NEXT_NEW: AtomicUsize = AtomicUsize::new(0);
static NEXT_NEW_ARRAY: AtomicUsize = AtomicUsize::new(0);
static NEXT_NEW_ALIGNED: AtomicUsize = AtomicUsize::new(0);
static NEXT_NEW_ARRAY_ALIGNED: AtomicUsize = AtomicUsize::new(0);

/// Defines a throwing `operator new`: `$imp(args..., site)` allocates; on null the trampoline
/// jumps to the address in `$next` with the original arguments (see the module's text).
/// `$imp` returns null only after storing a callable address in `$next`. Exported as `$name`,
/// or (with `miss of $entry`) the miss of `$entry`'s inline fast path, reached by a tail jump;
/// as in `site_trampoline!`, a return address inside `$entry` (a build that calls instead)
/// passes site 0, "unknown".
macro_rules! new_trampoline {
    ($name:ident($($a:ident: $t:ty),*) => $imp:ident, $next:ident, $x86:literal, [$($save:literal),*], [$($restore:literal),*]) => {
        new_trampoline!(@def [#[unsafe(no_mangle)] pub] $name, $name($($a: $t),*) => $imp, $next, $x86, [$($save),*], [$($restore),*]);
    };
    (miss of $entry:ident: $name:ident($($a:ident: $t:ty),*) => $imp:ident, $next:ident, $x86:literal, [$($save:literal),*], [$($restore:literal),*]) => {
        new_trampoline!(@def [] $entry, $name($($a: $t),*) => $imp, $next, $x86, [$($save),*], [$($restore),*]);
    };
    (@def [$($vis:tt)*] $entry:ident, $name:ident($($a:ident: $t:ty),*) => $imp:ident, $next:ident, $x86:literal, [$($save:literal),*], [$($restore:literal),*]) => {
        /// A throwing `operator new` (see the module's text).
        ///
        /// # Safety
        /// None beyond C++'s.
        #[cfg(target_arch = "x86_64")]
        #[unsafe(naked)]
        $($vis)* unsafe extern "C" fn $name($($a: $t),*) -> *mut c_void {
            core::arch::naked_asm!(
                site_or_zero!($x86),
                // Keep the arguments for the failure branch; the pushes also realign the
                // stack to 16 bytes for the call.
                $($save,)*
                "call {imp}",
                $($restore,)*
                "test rax, rax",
                "jz 2f",
                "ret",
                "2:",
                "mov rax, qword ptr [rip + {next}@GOTPCREL]",
                "jmp qword ptr [rax]",
                entry = sym $entry,
                imp = sym $imp,
                next = sym $next,
            )
        }
        /// A throwing `operator new`: out of memory aborts with one line.
        ///
        /// # Safety
        /// None beyond C++'s.
        #[cfg(not(target_arch = "x86_64"))]
        $($vis)* unsafe extern "C" fn $name($($a: $t),*) -> *mut c_void {
            let p = $imp($($a,)* 0);
            if p.is_null() {
                out_of_memory(new_size!($($a),*));
            }
            p
        }
    };
}

/// Defines a throwing `operator new` of a plain size with the thread's magazine inline, as in
/// `malloc`; its miss is `$miss`, a `new_trampoline!` the fast path tail-jumps to.
macro_rules! new_with_fast_path {
    ($name:ident => $miss:ident) => {
        /// A throwing `operator new` (see the module's text): the thread's magazine when it
        /// can, else the heap's whole path.
        ///
        /// # Safety
        /// None beyond C++'s.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(size: usize) -> *mut c_void {
            match fast_malloc(size) {
                Some(p) => p.as_ptr().cast(),
                // SAFETY: none beyond C++'s.
                None => unsafe { $miss(size) },
            }
        }
    };
}

/// The size argument of a `new_trampoline!` (its first).
#[cfg(not(target_arch = "x86_64"))]
macro_rules! new_size {
    ($size:ident $(, $rest:ident)*) => {
        $size
    };
}

new_with_fast_path!(_Znwm => new_miss);
new_with_fast_path!(_Znam => new_array_miss);
new_trampoline!(miss of _Znwm: new_miss(size: usize) => new_at, NEXT_NEW, "rsi", ["push rdi"], ["pop rdi"]);
new_trampoline!(miss of _Znam: new_array_miss(size: usize) => new_array_at, NEXT_NEW_ARRAY, "rsi", ["push rdi"], ["pop rdi"]);
new_trampoline!(
    _ZnwmSt11align_val_t(size: usize, align: usize) => new_aligned_at, NEXT_NEW_ALIGNED, "rdx",
    ["push rdi", "push rsi", "sub rsp, 8"], ["add rsp, 8", "pop rsi", "pop rdi"]
);
new_trampoline!(
    _ZnamSt11align_val_t(size: usize, align: usize) => new_array_aligned_at, NEXT_NEW_ARRAY_ALIGNED, "rdx",
    ["push rdi", "push rsi", "sub rsp, 8"], ["add rsp, 8", "pop rsi", "pop rdi"]
);

/// The allocation of a throwing form, or null once `next` holds the next definition of
/// `symbol` (a NUL-terminated name); aborts with one line when there is none.
fn new_or_next(p: *mut c_void, size: usize, next: &AtomicUsize, symbol: &[u8]) -> *mut c_void {
    if !p.is_null() {
        return p;
    }
    if next.load(Ordering::Acquire) == 0 {
        // SAFETY: `symbol` is NUL-terminated; RTLD_NEXT searches the objects after this one.
        let f = unsafe { libc::dlsym(libc::RTLD_NEXT, symbol.as_ptr().cast()) };
        if f.is_null() {
            out_of_memory(size);
        }
        next.store(f as usize, Ordering::Release);
    }
    p
}

#[cold]
fn out_of_memory(size: usize) -> ! {
    use core::fmt::Write;
    let mut b = dmaslab_heap::platform::FixedBuf::<96>::new();
    let _ = write!(b, "dmaslab: out of memory in operator new ({size} bytes)");
    dmaslab_heap::platform::stderr_line(b.as_bytes());
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// `malloc`'s two paths: the thread's magazine ([`fast_malloc`]), else the heap's whole path.
fn plain(size: usize, site: usize) -> *mut c_void {
    if let Some(p) = fast_malloc(size) {
        return p.as_ptr().cast();
    }
    slow(size, site)
}

/// The heap's whole path of a plain allocation, traced.
fn slow(size: usize, site: usize) -> *mut c_void {
    let p = heap().malloc_at(size, site).cast();
    trace::record(trace::MALLOC, size, 0, p);
    p
}

/// The miss of `_Znwm`'s fast path: the heap's whole path.
#[cold]
extern "C" fn new_at(size: usize, site: usize) -> *mut c_void {
    new_or_next(slow(size, site), size, &NEXT_NEW, b"_Znwm\0")
}

/// The miss of `_Znam`'s fast path.
#[cold]
extern "C" fn new_array_at(size: usize, site: usize) -> *mut c_void {
    new_or_next(slow(size, site), size, &NEXT_NEW_ARRAY, b"_Znam\0")
}

extern "C" fn new_aligned_at(size: usize, align: usize, site: usize) -> *mut c_void {
    let p = aligned_new(size, align, site);
    new_or_next(p, size, &NEXT_NEW_ALIGNED, b"_ZnwmSt11align_val_t\0")
}

extern "C" fn new_array_aligned_at(size: usize, align: usize, site: usize) -> *mut c_void {
    let p = aligned_new(size, align, site);
    new_or_next(p, size, &NEXT_NEW_ARRAY_ALIGNED, b"_ZnamSt11align_val_t\0")
}

/// `align` must be a power of two (C++); anything else is null, which the next definition
/// (libstdc++: `aligned_alloc`, `EINVAL`) turns into `bad_alloc`.
fn aligned_new(size: usize, align: usize, site: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        return core::ptr::null_mut();
    }
    aligned(align, size, site)
}

with_site! {
    /// `operator new(size_t, const std::nothrow_t&)`: null when out of memory.
    ///
    /// # Safety
    /// None beyond C++'s.
    fn _ZnwmRKSt9nothrow_t(size: usize, nt: *const c_void) -> *mut c_void => new_nothrow_at, "rdx"
}
with_site! {
    /// `operator new[](size_t, const std::nothrow_t&)`: null when out of memory.
    ///
    /// # Safety
    /// None beyond C++'s.
    fn _ZnamRKSt9nothrow_t(size: usize, nt: *const c_void) -> *mut c_void => new_nothrow_at, "rdx"
}
with_site! {
    /// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`: null when out of memory.
    ///
    /// # Safety
    /// None beyond C++'s.
    fn _ZnwmSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, nt: *const c_void) -> *mut c_void => new_aligned_nothrow_at, "rcx"
}
with_site! {
    /// `operator new[](size_t, std::align_val_t, const std::nothrow_t&)`: null when out of
    /// memory.
    ///
    /// # Safety
    /// None beyond C++'s.
    fn _ZnamSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, nt: *const c_void) -> *mut c_void => new_aligned_nothrow_at, "rcx"
}

extern "C" fn new_nothrow_at(size: usize, _nt: *const c_void, site: usize) -> *mut c_void {
    enomem_if_null(plain(size, site).cast())
}

extern "C" fn new_aligned_nothrow_at(
    size: usize,
    align: usize,
    _nt: *const c_void,
    site: usize,
) -> *mut c_void {
    aligned_new(size, align, site)
}

/// Defines unsized deletes: they are `free` (a tail jump, so `free`'s miss still finds the
/// caller's return address on top of the stack); the other arguments are ignored.
macro_rules! delete_is_free {
    ($($name:ident($($a:ident: $t:ty),*);)*) => {$(
        /// An unsized `operator delete`: `free(p)`.
        ///
        /// # Safety
        /// `p` is null or a live allocation of this library.
        #[cfg(target_arch = "x86_64")]
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(p: *mut c_void $(, $a: $t)*) {
            core::arch::naked_asm!("jmp {free}", free = sym crate::free)
        }
        /// An unsized `operator delete`: `free(p)`.
        ///
        /// # Safety
        /// `p` is null or a live allocation of this library.
        #[cfg(not(target_arch = "x86_64"))]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(p: *mut c_void $(, $a: $t)*) {
            // SAFETY: the caller's contract is free's.
            unsafe { crate::free(p) }
        }
    )*};
}

delete_is_free! {
    _ZdlPv();
    _ZdaPv();
    _ZdlPvRKSt9nothrow_t(nt: *const c_void);
    _ZdaPvRKSt9nothrow_t(nt: *const c_void);
    _ZdlPvSt11align_val_t(align: usize);
    _ZdaPvSt11align_val_t(align: usize);
    _ZdlPvSt11align_val_tRKSt9nothrow_t(align: usize, nt: *const c_void);
    _ZdaPvSt11align_val_tRKSt9nothrow_t(align: usize, nt: *const c_void);
}

/// Defines a sized free with the thread's magazine inline (as `free`), its miss going to
/// `$miss`, a `site_trampoline!` to [`sized_slow_at`].
macro_rules! sized_free_with_fast_path {
    ($(#[$m:meta])* $name:ident => $miss:ident) => {
        $(#[$m])*
        ///
        /// # Safety
        /// `p` is null or a live allocation of this library of `size` bytes.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(p: *mut c_void, size: usize) {
            // The fast path takes only an object of the class `size` maps to; anything else
            // (a mismatch included) goes to the checked full path.
            // SAFETY: the caller gives `p` up.
            if unsafe { fast_free_sized(p.cast(), size, 1) } {
                return;
            }
            // SAFETY: as above.
            unsafe { $miss(p, size) }
        }
        site_trampoline!($name: $miss(p: *mut c_void, size: usize) => sized_slow_at, "rdx");
    };
}

sized_free_with_fast_path!(
    /// `operator delete(void*, size_t)`: checked against the object's class.
    _ZdlPvm => sized_delete_miss
);
sized_free_with_fast_path!(
    /// `operator delete[](void*, size_t)`: checked against the object's class.
    _ZdaPvm => sized_delete_array_miss
);
sized_free_with_fast_path!(
    /// C23 `free_sized(3)`: checked against the object's class.
    free_sized => free_sized_miss
);
with_site! {
    /// `operator delete(void*, size_t, std::align_val_t)`: checked against the object's class.
    ///
    /// # Safety
    /// `p` is null or a live allocation of this library of `size` bytes aligned to `align`.
    fn _ZdlPvmSt11align_val_t(p: *mut c_void, size: usize, align: usize) => sized_aligned_free_at, "rcx"
}
with_site! {
    /// `operator delete[](void*, size_t, std::align_val_t)`: checked against the object's
    /// class.
    ///
    /// # Safety
    /// As for [`_ZdlPvmSt11align_val_t`].
    fn _ZdaPvmSt11align_val_t(p: *mut c_void, size: usize, align: usize) => sized_aligned_free_at, "rcx"
}
with_site! {
    /// C23 `free_aligned_sized(3)` (`ptr, alignment, size`): checked against the object's
    /// class.
    ///
    /// # Safety
    /// `p` is null or a live allocation of this library of `size` bytes aligned to `align`.
    fn free_aligned_sized(p: *mut c_void, align: usize, size: usize) => aligned_sized_free_at, "rcx"
}

/// The miss of a sized free's fast path: the heap's whole path, checked.
///
/// # Safety
/// As for [`_ZdlPvm`].
#[cold]
unsafe extern "C" fn sized_slow_at(p: *mut c_void, size: usize, site: usize) {
    if !p.is_null() {
        trace::record(trace::FREE, 0, p as usize, core::ptr::null_mut());
    }
    // SAFETY: the caller's contract.
    unsafe { heap().free_sized_at(p.cast(), size, 1, site) }
}

/// # Safety
/// As for [`free_aligned_sized`].
unsafe extern "C" fn aligned_sized_free_at(p: *mut c_void, align: usize, size: usize, site: usize) {
    // SAFETY: forwarded.
    unsafe { sized_aligned_free_at(p, size, align, site) }
}

/// # Safety
/// As for [`_ZdlPvmSt11align_val_t`].
unsafe extern "C" fn sized_aligned_free_at(p: *mut c_void, size: usize, align: usize, site: usize) {
    // As in the unaligned sized frees: a mismatch goes to the checked full path.
    // SAFETY: the caller gives `p` up.
    if unsafe { fast_free_sized(p.cast(), size, align) } {
        return;
    }
    if !p.is_null() {
        trace::record(trace::FREE, 0, p as usize, core::ptr::null_mut());
    }
    // SAFETY: the caller's contract.
    unsafe { heap().free_sized_at(p.cast(), size, align, site) }
}
