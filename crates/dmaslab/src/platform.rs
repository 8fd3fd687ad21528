//! The hosted heap's platform code, in one place: the thread cache in TLS (and the fast paths'
//! way to it without `__tls_get_addr`), and OS helpers that never allocate (they run inside
//! `malloc`): stack buffers, `write(2)`, `getrandom`, `sched_yield`.

use crate::heap::ThreadCache;
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::Ordering;

/// A fixed-capacity byte buffer; pushes beyond the capacity are cut off.
///
/// # Invariants
/// `len <= N`.
pub struct FixedBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for FixedBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FixedBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        FixedBuf {
            buf: [0; N],
            len: 0,
        }
    }

    /// Appends as much of `b` as fits.
    pub fn push(&mut self, b: &[u8]) {
        let n = b.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Forgets the contents.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Free room left.
    pub fn room(&self) -> usize {
        N - self.len
    }
}

impl<const N: usize> fmt::Write for FixedBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() > self.room() {
            return Err(fmt::Error);
        }
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Writes all of `b` to file descriptor `fd`, retrying on short writes and `EINTR`.
pub fn write_all(fd: i32, mut b: &[u8]) -> bool {
    while !b.is_empty() {
        // SAFETY: `b` is a valid readable slice for its length.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n < 0 {
            // SAFETY: reading errno has no preconditions.
            if unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return false;
        }
        if n == 0 {
            return false;
        }
        b = &b[n as usize..];
    }
    true
}

/// Writes `line` and a newline to stderr in one `write(2)` when it fits.
pub fn stderr_line(line: &[u8]) {
    let mut b = FixedBuf::<512>::new();
    b.push(line);
    b.push(b"\n");
    write_all(2, b.as_bytes());
}

/// A `fmt::Write` that buffers on the stack and flushes to a file descriptor.
pub struct FdWriter {
    fd: i32,
    buf: FixedBuf<4096>,
    /// Set when a write(2) failed.
    pub failed: bool,
}

impl FdWriter {
    /// A writer to `fd`.
    pub fn new(fd: i32) -> Self {
        FdWriter {
            fd,
            buf: FixedBuf::new(),
            failed: false,
        }
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) {
        if !write_all(self.fd, self.buf.as_bytes()) {
            self.failed = true;
        }
        self.buf.clear();
    }
}

impl fmt::Write for FdWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut b = s.as_bytes();
        while !b.is_empty() {
            if self.buf.room() == 0 {
                self.flush();
            }
            let n = b.len().min(self.buf.room());
            self.buf.push(&b[..n]);
            b = &b[n..];
        }
        Ok(())
    }
}

impl Drop for FdWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// 64 random bits from the kernel, or a mix of addresses and the clock if that fails.
pub fn random_u64() -> u64 {
    let mut v = 0u64;
    // SAFETY: writes at most 8 bytes into `v`.
    let n = unsafe {
        libc::getrandom(
            (&raw mut v).cast(),
            core::mem::size_of::<u64>(),
            libc::GRND_NONBLOCK,
        )
    };
    if n == 8 {
        return v;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let local = 0u8;
    ((&raw const local as u64).rotate_left(17) ^ ts.tv_nsec as u64 ^ (ts.tv_sec as u64) << 32)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Lets another thread run: the core's locks call this once brief spinning has not got them
/// (`dmaslab_core::set_relax_hook`), so that a holder preempted on this CPU can finish.
pub fn yield_cpu() {
    // SAFETY: sched_yield has no preconditions.
    unsafe { libc::sched_yield() };
}

thread_local! {
    // Const-initialised and without `Drop`: access is a plain TLS address computation, with no
    // lazy initialisation or destructor registration (thread exit goes through a pthread key).
    static TCACHE: UnsafeCell<ThreadCache> = const { UnsafeCell::new(ThreadCache::NEW) };
}

/// `TCACHE`'s offset from the thread pointer when this module's thread-locals sit in glibc's
/// static TLS block (a preloaded or linked library, or the executable): the same for every
/// thread, so the fast path adds it to `fs:0` instead of calling `__tls_get_addr` (stable Rust
/// has no initial-exec TLS model for a cdylib). 0: unknown, use `TCACHE.with`. Measured once
/// by the thread that builds the heap ([`learn_tls_offset`]).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
static TLS_OFFSET: core::sync::atomic::AtomicIsize = core::sync::atomic::AtomicIsize::new(0);

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline(always)]
fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: on x86-64 Linux `fs:0` holds the thread control block's own address (the TLS ABI).
    unsafe {
        core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp,
            options(nostack, readonly, preserves_flags, pure));
    }
    tp
}

/// Records `TLS_OFFSET` if `TCACHE` lies in the static TLS block: variant II puts that block
/// just below the thread pointer, so the offset is negative and small. A dynamically
/// allocated block (a `dlopen` without static TLS room) is anywhere else and is left to
/// `__tls_get_addr`.
pub(crate) fn learn_tls_offset() {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let off = (TCACHE.with(|c| c.get()) as usize).wrapping_sub(thread_pointer()) as isize;
        if off < 0 && off > -(1 << 16) {
            TLS_OFFSET.store(off, Ordering::Relaxed);
        }
    }
}

#[inline(always)]
pub(crate) fn tcache() -> *mut ThreadCache {
    match tcache_fast() {
        Some(tc) => tc,
        None => TCACHE.with(|c| c.get()),
    }
}

/// This thread's cache when finding it takes no call: on x86-64 Linux once `TLS_OFFSET` is
/// known (`None` before, and when the library's TLS is not static); elsewhere always. The fast
/// paths ([`crate::fast_path`]) give up on `None`, so they never call `__tls_get_addr` and
/// need no stack frame.
#[inline(always)]
pub(crate) fn tcache_fast() -> Option<*mut ThreadCache> {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let off = TLS_OFFSET.load(Ordering::Relaxed);
        if off == 0 {
            return None;
        }
        Some(core::ptr::with_exposed_provenance_mut(
            thread_pointer().wrapping_add_signed(off),
        ))
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        Some(TCACHE.with(|c| c.get()))
    }
}
