//! A spin lock that spins briefly, then asks the host to let the holder run.
//!
//! The core runs without an OS, so it cannot block; but a waiter that only spins burns the whole
//! time slice of a holder preempted on the same CPU (4 threads on 2 cores: the profile of issue
//! 13 had 70 % of the time in that loop). So after [`SPIN_ROUNDS`] rounds of exponential backoff
//! a waiter calls the *relax hook* between tries: by default one more `spin_loop` hint (a kernel
//! with preemption off has no holder to make room for), `sched_yield` in the hosted heap
//! ([`set_relax_hook`]). Hosted users that can fork reset held locks in the child with
//! [`SpinLock::force_unlock`].

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// Backoff rounds a waiter spins (1, 2, 4, ... `spin_loop` hints between tries: about 2^6 - 1
/// hints in all, a few microseconds) before it calls the relax hook between tries.
pub const SPIN_ROUNDS: u32 = 6;

/// The relax hook as a function pointer (null: the default, a `spin_loop` hint).
static RELAX_HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Sets what a waiter does between tries once brief spinning has not got a lock of this crate:
/// the host's way to let a preempted holder run (`sched_yield`, a futex wait with timeout, a
/// scheduler call). It must not take any lock of this crate or allocate from it. Process-wide,
/// for every lock; set it before contention matters (the hosted heap sets it when it is built).
pub fn set_relax_hook(hook: fn()) {
    RELAX_HOOK.store(hook as *mut (), Ordering::Release);
}

/// Runs the relax hook once.
#[cold]
fn relax() {
    let h = RELAX_HOOK.load(Ordering::Acquire);
    if h.is_null() {
        core::hint::spin_loop();
    } else {
        // SAFETY: only `set_relax_hook` stores into `RELAX_HOOK`, and it stores a `fn()`.
        let f: fn() = unsafe { core::mem::transmute::<*mut (), fn()>(h) };
        f();
    }
}

/// A spin lock guarding a `T`.
///
/// # Invariants
/// `data` is accessed only through a [`SpinGuard`], and at most one guard exists at a time:
/// a guard is created only by the thread that swapped `locked` from false to true.
pub struct SpinLock<T> {
    locked: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `T` to one thread at a time, so sharing the lock between
// threads is sound whenever `T` itself may be sent between threads.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the `T`; allowed when `T: Send`.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A new, unlocked lock.
    pub const fn new(data: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            data: UnsafeCell::new(data),
        }
    }

    /// Takes the lock: spins briefly while it is held, then calls the relax hook between tries
    /// (see the module documentation).
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        #[cfg(feature = "lock-stats")]
        stats::count(self.locked.load(Ordering::Relaxed));
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return SpinGuard { lock: self };
        }
        self.lock_contended()
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) -> SpinGuard<'_, T> {
        let mut round = 0;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if round < SPIN_ROUNDS {
                    for _ in 0..1u32 << round {
                        core::hint::spin_loop();
                    }
                    round += 1;
                } else {
                    relax();
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return SpinGuard { lock: self };
            }
        }
    }

    /// Takes the lock if it is free.
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        #[cfg(feature = "lock-stats")]
        stats::count(self.locked.load(Ordering::Relaxed));
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| SpinGuard { lock: self })
    }

    /// Marks the lock free without a guard.
    ///
    /// # Safety
    /// No guard of this lock may be in use by a running thread: the intended caller is the only
    /// thread of a freshly forked child, where a guard held by another thread at fork time will
    /// never be used again. The protected data must be in a consistent state, which holds when
    /// the parent took this lock itself before `fork()` (a `pthread_atfork` prepare handler).
    pub unsafe fn force_unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Mutable access without locking: `&mut self` proves no guard exists.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

/// Access to the data of a held [`SpinLock`]; unlocks on drop.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a guard exists only while its thread holds the lock (type invariant).
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only access through the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod relax_tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    static RELAXED: AtomicUsize = AtomicUsize::new(0);

    fn count_and_yield() {
        RELAXED.fetch_add(1, Ordering::Relaxed);
        std::thread::yield_now();
    }

    /// A waiter on a lock held long past the spinning budget calls the hook, and still gets the
    /// lock once it is released.
    #[test]
    fn a_waiter_calls_the_relax_hook_then_gets_the_lock() {
        set_relax_hook(count_and_yield);
        let lock = SpinLock::new(0u32);
        let g = lock.lock();
        std::thread::scope(|s| {
            let w = s.spawn(|| {
                *lock.lock() += 1;
            });
            while RELAXED.load(Ordering::Relaxed) == 0 {
                std::thread::yield_now();
            }
            drop(g);
            w.join().unwrap();
        });
        assert_eq!(*lock.lock(), 1);
        assert!(RELAXED.load(Ordering::Relaxed) > 0);
    }
}

/// Lock counts for benchmarks (`lock-stats` feature): every [`SpinLock::lock`] and
/// [`SpinLock::try_lock`] call, and those that found the lock held. Off, the feature costs
/// nothing: the counting lines are not compiled.
#[cfg(feature = "lock-stats")]
mod stats {
    use core::sync::atomic::{AtomicU64, Ordering};

    static ACQUISITIONS: AtomicU64 = AtomicU64::new(0);
    static CONTENDED: AtomicU64 = AtomicU64::new(0);

    /// Counts one lock call; `held` says the lock was taken by someone else at the call.
    #[inline]
    pub(super) fn count(held: bool) {
        ACQUISITIONS.fetch_add(1, Ordering::Relaxed);
        if held {
            CONTENDED.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Totals since the process started.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct LockStats {
        /// `lock` and `try_lock` calls on any [`super::SpinLock`].
        pub acquisitions: u64,
        /// Of those, the calls that found the lock held (a `lock` that had to wait, or a
        /// `try_lock` that most likely failed).
        pub contended: u64,
    }

    /// The counts so far, over every lock of the process.
    pub fn lock_stats() -> LockStats {
        LockStats {
            acquisitions: ACQUISITIONS.load(Ordering::Relaxed),
            contended: CONTENDED.load(Ordering::Relaxed),
        }
    }
}
#[cfg(feature = "lock-stats")]
pub use stats::{lock_stats, LockStats};

#[cfg(all(test, feature = "lock-stats"))]
mod tests {
    use super::*;

    #[test]
    fn counts_lock_and_contended_try_lock() {
        let l = SpinLock::new(0u32);
        let before = lock_stats();
        let g = l.lock();
        assert!(l.try_lock().is_none());
        drop(g);
        let after = lock_stats();
        // Other tests may lock in parallel: at least ours are counted.
        assert!(after.acquisitions - before.acquisitions >= 2);
        assert!(after.contended - before.contended >= 1);
    }
}
