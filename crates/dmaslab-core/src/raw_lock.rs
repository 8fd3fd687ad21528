//! The locks a [`crate::StaticHeap`] can be built with: `lock_api::RawMutex` implementations.
//!
//! - [`RawSpinLock`] (the default): the core's [`SpinLock`]. Threads and cores may share the
//!   heap; an interrupt handler that allocates while the code it interrupted holds the lock
//!   spins forever on a single core.
//! - [`CriticalSectionRawMutex`] (feature `critical-section`): holds the platform's critical
//!   section (interrupts off on a single-core Cortex-M) for the whole allocation, so interrupt
//!   handlers may allocate.

use crate::spin::SpinLock;
use lock_api::{GuardSend, RawMutex};

/// A `lock_api::RawMutex` over the core's [`SpinLock`].
pub struct RawSpinLock(SpinLock<()>);

// SAFETY: `lock`/`try_lock` succeed only for the caller that takes the inner spin lock (its guard
// is forgotten, not dropped), and `unlock` releases it; so at most one holder at a time.
unsafe impl RawMutex for RawSpinLock {
    #[allow(clippy::declare_interior_mutable_const)] // lock_api's pattern: a fresh lock per use.
    const INIT: Self = RawSpinLock(SpinLock::new(()));
    type GuardMarker = GuardSend;

    #[inline]
    fn lock(&self) {
        core::mem::forget(self.0.lock());
    }

    #[inline]
    fn try_lock(&self) -> bool {
        self.0.try_lock().map(core::mem::forget).is_some()
    }

    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: the caller holds the lock (RawMutex contract), whose guard was forgotten, so
        // no guard is in use; the protected data is `()`, always consistent.
        unsafe { self.0.force_unlock() }
    }
}

#[cfg(feature = "critical-section")]
pub use cs::CriticalSectionRawMutex;

#[cfg(feature = "critical-section")]
mod cs {
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicBool, Ordering};
    use critical_section::RestoreState;
    use lock_api::{GuardNoSend, RawMutex};

    /// A `lock_api::RawMutex` that holds the platform's critical section while locked.
    ///
    /// Taking it again from the context that holds it (an allocation made while allocating)
    /// panics rather than deadlocking. Needs a `critical-section` implementation in the final
    /// binary (on a single-core Cortex-M: the `cortex-m` crate's `critical-section-single-core`
    /// feature).
    ///
    /// # Invariants
    /// `held` is true exactly while some context holds the lock, and then that context holds
    /// the critical section, entered with the state saved in `restore`; only the holder reads
    /// or writes `restore`.
    pub struct CriticalSectionRawMutex {
        held: AtomicBool,
        restore: UnsafeCell<RestoreState>,
    }

    // SAFETY: `restore` is touched only by the holder, inside the critical section, which
    // excludes every other context (invariant).
    unsafe impl Sync for CriticalSectionRawMutex {}

    // SAFETY: a successful `try_lock` leaves `held` true and the critical section entered, which
    // keeps every other context out until `unlock`; a context that finds `held` true fails.
    unsafe impl RawMutex for CriticalSectionRawMutex {
        #[allow(clippy::declare_interior_mutable_const)] // lock_api's pattern.
        const INIT: Self = CriticalSectionRawMutex {
            held: AtomicBool::new(false),
            restore: UnsafeCell::new(RestoreState::invalid()),
        };
        // The critical section must be left by the context that entered it.
        type GuardMarker = GuardNoSend;

        fn lock(&self) {
            assert!(
                self.try_lock(),
                "CriticalSectionRawMutex: locked again by the context that holds it"
            );
        }

        fn try_lock(&self) -> bool {
            // SAFETY: released below or, once `held` is set, by `unlock` with this state.
            let state = unsafe { critical_section::acquire() };
            // Inside the critical section nothing else runs: load then store is atomic enough
            // (and needs no compare-and-swap, which thumbv6m lacks).
            if self.held.load(Ordering::Acquire) {
                // SAFETY: `state` is the one `acquire` just returned, released once.
                unsafe { critical_section::release(state) };
                return false;
            }
            self.held.store(true, Ordering::Relaxed);
            // SAFETY: we are the holder now (invariant).
            unsafe { *self.restore.get() = state };
            true
        }

        unsafe fn unlock(&self) {
            // SAFETY: the caller holds the lock (RawMutex contract), so `restore` is ours.
            let state = unsafe { *self.restore.get() };
            self.held.store(false, Ordering::Release);
            // SAFETY: `state` came from the `acquire` of the matching `try_lock`; released once.
            unsafe { critical_section::release(state) };
        }
    }
}
