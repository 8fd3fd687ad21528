//! The machine's RAM: one heap region that the allocator's arena carves up, read and written
//! directly by devices and through the cache model by the CPU.

use crate::cache_model::Backing;
use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use alloc::sync::Arc;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

/// The owned region behind a [`Ram`]; freed when the last [`Ram`] (the machine's, or one held
/// by a [`crate::CoherentBuffer`]) goes away.
///
/// # Invariants
/// `base` is the start of a live allocation of `layout`, zero-initialised at creation.
struct Region {
    base: NonNull<u8>,
    layout: Layout,
}

// SAFETY: a `Region` never reads or writes the memory behind `base`; it only frees it, once, in
// `drop`. Moving or sharing the handle between threads therefore races with nothing.
unsafe impl Send for Region {}
// SAFETY: as for `Send`: `&Region` gives no access to the memory.
unsafe impl Sync for Region {}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `base` was allocated with `layout` (type invariant) and is freed only here.
        unsafe { dealloc(self.base.as_ptr(), self.layout) };
    }
}

/// A handle on the RAM region, with byte access for devices and the cache model.
///
/// Accesses go through `anchor`, a pointer the allocator handed out: it carries the provenance
/// of the whole region (the arena derives every pointer from the region's own pointer), so
/// offsetting it to any address of the region is sound while the allocator holds the region.
///
/// # Invariants
/// `lo .. hi` is the region of `region`; `anchor` points into it and was derived from the
/// arena's pointer to the whole region.
#[derive(Clone)]
pub struct Ram {
    _region: Arc<Region>,
    anchor: *mut u8,
    lo: usize,
    hi: usize,
}

impl Ram {
    /// A fresh zeroed region of `len` bytes aligned to `align` (a power of two), and the slice
    /// the arena is to manage.
    ///
    /// The slice is `'static` only within this crate: the [`crate::Machine`] drops its allocator
    /// (the slice's only user) before its `Ram`, and the region lives until the last `Ram`.
    pub(crate) fn allocate(
        len: usize,
        align: usize,
    ) -> Option<(RegionHandle, &'static mut [MaybeUninit<u8>])> {
        let layout = Layout::from_size_align(len, align).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: `layout` has a non-zero size.
        let base = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        // SAFETY: `base` points to `len` fresh bytes that nothing else references; the slice is
        // handed to the arena only, and the region outlives it (see above).
        let slice = unsafe {
            core::slice::from_raw_parts_mut(base.as_ptr().cast::<MaybeUninit<u8>>(), len)
        };
        Some((RegionHandle(Arc::new(Region { base, layout })), slice))
    }

    /// Makes the access handle once the allocator has handed out `anchor` (any pointer it
    /// returned from the region).
    pub(crate) fn new(region: RegionHandle, anchor: NonNull<u8>) -> Self {
        let lo = region.0.base.as_ptr() as usize;
        let hi = lo + region.0.layout.size();
        assert!((lo..hi).contains(&(anchor.as_ptr() as usize)));
        Ram {
            _region: region.0,
            anchor: anchor.as_ptr(),
            lo,
            hi,
        }
    }

    /// First address of the RAM.
    pub fn base(&self) -> usize {
        self.lo
    }

    /// Bytes of RAM.
    pub fn len(&self) -> usize {
        self.hi - self.lo
    }

    /// Always false: a RAM has at least one page.
    pub fn is_empty(&self) -> bool {
        self.hi == self.lo
    }

    /// Is `addr .. addr + len` inside the RAM?
    pub fn contains(&self, addr: usize, len: usize) -> bool {
        addr >= self.lo && addr.checked_add(len).is_some_and(|e| e <= self.hi)
    }

    /// A pointer to `addr` with the region's provenance.
    pub(crate) fn ptr(&self, addr: usize) -> *mut u8 {
        assert!(self.contains(addr, 0), "address {addr:#x} outside RAM");
        self.anchor
            .wrapping_offset((addr as isize).wrapping_sub(self.anchor as usize as isize))
    }

    /// A pointer to `addr`: with the region's provenance inside the RAM, with none outside
    /// (only its address is used: the map path refuses memory that is not the heap's).
    pub(crate) fn ptr_or_foreign(&self, addr: usize) -> *mut u8 {
        if self.contains(addr, 0) {
            self.ptr(addr)
        } else {
            core::ptr::without_provenance_mut(addr)
        }
    }

    /// Copies `buf.len()` bytes at `addr` out of RAM.
    ///
    /// # Panics
    /// If the range is not inside the RAM (callers check user input first).
    pub fn read(&self, addr: usize, buf: &mut [u8]) {
        assert!(self.contains(addr, buf.len()), "read {addr:#x} outside RAM");
        // SAFETY: the range is inside the region (checked), which is live while `self` holds
        // it; `ptr` carries the region's provenance (type invariant). The bytes are plain
        // memory: no Rust reference to them exists outside this call.
        unsafe { core::ptr::copy_nonoverlapping(self.ptr(addr), buf.as_mut_ptr(), buf.len()) };
    }

    /// Copies `data` into RAM at `addr`.
    ///
    /// # Panics
    /// If the range is not inside the RAM.
    pub fn write(&self, addr: usize, data: &[u8]) {
        assert!(
            self.contains(addr, data.len()),
            "write {addr:#x} outside RAM"
        );
        // SAFETY: as in `read`; the allocator does not hold references into object memory.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr(addr), data.len()) };
    }
}

/// The region before the allocator has handed out its first pointer.
pub(crate) struct RegionHandle(Arc<Region>);

impl Backing for Ram {
    fn fetch(&self, addr: usize, buf: &mut [u8]) {
        self.read(addr, buf);
    }
    fn store(&self, addr: usize, data: &[u8]) {
        self.write(addr, data);
    }
}
