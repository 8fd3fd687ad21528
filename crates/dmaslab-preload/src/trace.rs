//! `DMASLAB_TRACE=PATH`: a record of every `malloc`-family call, for replay by the benchmarks
//! (`crates/dmaslab-bench/src/trace.rs`).
//!
//! Format: the 8-byte magic `DMSTRC01`, then 32-byte little-endian records
//! `op: u8, pad: [u8; 7], size: u64, arg: u64, ret: u64`:
//!
//! | op | call | size | arg | ret |
//! |---|---|---|---|---|
//! | 1 | `malloc` | size | 0 | result |
//! | 2 | `free` | 0 | pointer | 0 |
//! | 3 | `calloc` | size | count | result |
//! | 4 | `realloc` (and `reallocarray`) | new size | old pointer | result |
//! | 5 | `memalign` family | size | alignment | result |
//!
//! Recording never allocates: records go into a static 64 KiB buffer under a spin lock and reach
//! the file with `write(2)` when it fills and at exit. A free is recorded before it happens and
//! an allocation after, so an address is never in two live records at once. The file is opened
//! by the library constructor; calls before that (the dynamic loader's) are not recorded, and a
//! forked child stops recording (its parent's file is not its own).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// `malloc`.
pub const MALLOC: u8 = 1;
/// `free`.
pub const FREE: u8 = 2;
/// `calloc`.
pub const CALLOC: u8 = 3;
/// `realloc`.
pub const REALLOC: u8 = 4;
/// `memalign` and friends.
pub const MEMALIGN: u8 = 5;

const BUF: usize = 64 * 1024;
const REC: usize = 32;

static ON: AtomicBool = AtomicBool::new(false);
static FD: AtomicI32 = AtomicI32::new(-1);
static LOCK: AtomicBool = AtomicBool::new(false);

/// The record buffer.
///
/// # Invariants
/// Only the holder of `LOCK` touches it; `len <= BUF` and `len` is a multiple of `REC`.
struct Buffer(UnsafeCell<([u8; BUF], usize)>);

// SAFETY: accessed only under `LOCK` (invariant).
unsafe impl Sync for Buffer {}

static BUFFER: Buffer = Buffer(UnsafeCell::new(([0; BUF], 0)));

/// Opens `DMASLAB_TRACE` if set (the library constructor calls this once).
pub fn init() {
    // SAFETY: the name is NUL-terminated; getenv does not allocate.
    let path = unsafe { libc::getenv(c"DMASLAB_TRACE".as_ptr()) };
    if path.is_null() {
        return;
    }
    // SAFETY: `path` is a NUL-terminated string from the environment.
    let fd = unsafe {
        libc::open(
            path,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        return;
    }
    write_all(fd, b"DMSTRC01");
    FD.store(fd, Ordering::Relaxed);
    ON.store(true, Ordering::Release);
}

fn write_all(fd: i32, mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: `b` is a valid buffer of `b.len()` bytes.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            return;
        }
        b = &b[n as usize..];
    }
}

/// Records one call (a load and a branch when tracing is off).
#[inline(always)]
pub fn record(op: u8, size: usize, arg: usize, ret: *mut core::ffi::c_void) {
    if ON.load(Ordering::Relaxed) {
        record_slow(op, size, arg, ret as usize);
    }
}

fn lock() {
    while LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
}

#[cold]
#[inline(never)]
fn record_slow(op: u8, size: usize, arg: usize, ret: usize) {
    lock();
    // SAFETY: we hold `LOCK` (the buffer's invariant).
    let (buf, len) = unsafe { &mut *BUFFER.0.get() };
    if *len + REC > BUF {
        write_all(FD.load(Ordering::Relaxed), &buf[..*len]);
        *len = 0;
    }
    let r = &mut buf[*len..*len + REC];
    r[..8].copy_from_slice(&(op as u64).to_le_bytes());
    r[8..16].copy_from_slice(&(size as u64).to_le_bytes());
    r[16..24].copy_from_slice(&(arg as u64).to_le_bytes());
    r[24..32].copy_from_slice(&(ret as u64).to_le_bytes());
    *len += REC;
    LOCK.store(false, Ordering::Release);
}

/// Writes what is buffered (at exit).
pub fn flush() {
    if !ON.load(Ordering::Acquire) {
        return;
    }
    lock();
    // SAFETY: we hold `LOCK`.
    let (buf, len) = unsafe { &mut *BUFFER.0.get() };
    write_all(FD.load(Ordering::Relaxed), &buf[..*len]);
    *len = 0;
    LOCK.store(false, Ordering::Release);
}

/// Stops recording in a forked child (without writing the parent's buffered records).
pub fn child_after_fork() {
    ON.store(false, Ordering::Relaxed);
}
