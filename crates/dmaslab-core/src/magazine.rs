//! Magazines: small stacks of free objects of one cache (Bonwick & Adams 2001; Linux 6.18 calls
//! them sheaves).
//!
//! A magazine is itself a 512-byte kmalloc object, so magazines cost slab memory like anything
//! else and show up in `kmalloc-512` of the slabinfo table. Objects held in a magazine look
//! allocated to the core: its `active_objs` counts them.

use crate::freed_tag::{first_word, set_first_word, tag_of};
use core::ptr::{self, NonNull};

/// What [`Magazine::take`] found on top.
pub(crate) enum Take {
    /// Nothing: the magazine is empty.
    Empty,
    /// An object, now the caller's.
    Object(NonNull<u8>),
    /// A tagged object whose first word `word` is no longer its tag: written after free.
    Broken {
        /// The object.
        p: *mut u8,
        /// Its first word.
        word: usize,
    },
}

/// How many pops ahead a pop prefetches the object it will hand out (the object `PREFETCH_AHEAD`
/// slots below the new top; 1 would be the next pop's).
const PREFETCH_AHEAD: u32 = 4;

/// The most objects a magazine holds: 62 pointers plus the header make 512 bytes.
pub const MAG_MAX: usize = 62;

/// The smallest per-class capacity.
pub const MAG_MIN: usize = 4;

/// Bytes of objects a full magazine should hold at most (before clamping to
/// [`MAG_MIN`]..=[`MAG_MAX`]): keeps magazines of large classes from pinning much memory. 16 KiB,
/// so that a mid class moves as many objects per slab lock as a small one (at 8 KiB sh8bench's
/// 512-byte class, 16 to a magazine, took the most refill and drain locks of all).
pub const MAG_BYTES: usize = 16384;

/// The capacity of magazines for objects of `size` bytes:
/// `clamp(MAG_BYTES / size, MAG_MIN, MAG_MAX)` — 62 for 8..256, 32 for 512, 16 for 1k, 8 for
/// 2k, 4 from 4k up.
pub const fn capacity_for(size: usize) -> usize {
    let c = MAG_BYTES / if size == 0 { 1 } else { size };
    if c < MAG_MIN {
        MAG_MIN
    } else if c > MAG_MAX {
        MAG_MAX
    } else {
        c
    }
}

/// A magazine.
///
/// # Invariants
/// `untagged <= count <= cap <= MAG_MAX`; `objs[..count]` are free objects of one cache, each
/// owned by the magazine (nobody else uses them until popped); `objs[untagged..count]` hold
/// their freed-object tag ([`crate::freed_tag`]) in their first word, `objs[..untagged]` came
/// from a slab refill and their memory is not looked at. `floor` is always null (so
/// [`Magazine::top`] of an empty magazine is null).
#[repr(C)]
pub struct Magazine {
    /// Objects held.
    pub count: u32,
    /// Capacity (per class, see [`capacity_for`]).
    pub cap: u16,
    /// Objects at the bottom that carry no tag (a refill's).
    pub untagged: u16,
    /// The word below `objs[0]`, always null: what [`Magazine::top`] reads when empty.
    pub floor: *mut u8,
    /// The objects, `objs[..count]`.
    pub objs: [*mut u8; MAG_MAX],
}

/// Size of a magazine in bytes (512 on 64-bit targets, 260 on 32-bit ones such as Cortex-M).
pub const MAG_BYTES_SELF: usize = core::mem::size_of::<Magazine>();
#[cfg(target_pointer_width = "64")]
const _: () = assert!(MAG_BYTES_SELF == 512);
const _: () = assert!(MAG_BYTES_SELF <= 512);
// `top` reads `floor` as "objs[-1]": it must be the pointer-sized field right before `objs`.
const _: () = assert!(
    core::mem::offset_of!(Magazine, floor) + core::mem::size_of::<*mut u8>()
        == core::mem::offset_of!(Magazine, objs)
);

impl Magazine {
    /// Initialises the memory at `m` as an empty magazine of capacity `cap`.
    ///
    /// # Safety
    /// `m` is valid for writes of [`MAG_BYTES_SELF`] bytes and suitably aligned.
    pub unsafe fn init(m: *mut Magazine, cap: usize) {
        debug_assert!(cap <= MAG_MAX);
        // SAFETY: the caller gives a writable, aligned magazine-sized block.
        unsafe {
            (&raw mut (*m).count).write(0);
            (&raw mut (*m).cap).write(cap as u16);
            (&raw mut (*m).untagged).write(0);
            (&raw mut (*m).floor).write(ptr::null_mut());
        }
    }

    /// The object on top, `objs[count - 1]`; for an empty magazine the word below `objs[0]`,
    /// `floor`, which is null (invariant). One load and no branch: the free fast
    /// path compares it with the pointer being freed to catch `free(p); free(p)`.
    ///
    /// # Safety
    /// `m` is a valid magazine owned by the caller.
    #[inline(always)]
    pub unsafe fn top(m: *const Magazine) -> *mut u8 {
        // SAFETY: `count <= MAG_MAX`, so `objs - 1 + count` lies in `floor` or `objs[..MAG_MAX]`
        // (layout asserted above), inside the magazine; both hold pointers. The raw place keeps
        // the provenance of `m`, which covers the whole magazine.
        unsafe {
            (&raw const (*m).objs)
                .cast::<*mut u8>()
                .add((*m).count as usize)
                .sub(1)
                .read()
        }
    }

    /// The object `d` slots below the top (`d >= 1`; 1: the top), or null (the floor) when the
    /// magazine holds fewer than `d`.
    ///
    /// # Safety
    /// `m` is a valid magazine.
    #[inline(always)]
    pub unsafe fn below_top(m: *const Magazine, d: u32) -> *mut u8 {
        // SAFETY: `count <= MAG_MAX` and `d >= 1`, so the slot read is `floor` or one of
        // `objs[..count]`, inside the magazine (as in `top`).
        unsafe {
            let k = (*m).count.saturating_sub(d - 1) as usize;
            (&raw const (*m).objs)
                .cast::<*mut u8>()
                .add(k)
                .sub(1)
                .read()
        }
    }

    /// Pops the object on top, checking its tag: see [`Take`]. A tagged object is handed out
    /// with its first word cleared; one whose tag is broken is left in place (`keep_broken`, for
    /// a fast path that leaves the report to its slow path) or popped, out of circulation.
    ///
    /// # Safety
    /// `m` is a valid magazine owned by the caller; `tag_secret` is its allocator's.
    #[inline(always)]
    pub(crate) unsafe fn take(m: *mut Magazine, tag_secret: usize, keep_broken: bool) -> Take {
        // SAFETY: `count <= MAG_MAX` (invariant): slot `count - 1` exists when `count > 0`,
        // and holds an object, which lies in a slab: never null; entries at `untagged` and up
        // are free objects of ours holding their tag (invariant).
        unsafe {
            let Some(n) = (*m).count.checked_sub(1) else {
                return Take::Empty;
            };
            let p = *(*m).objs.get_unchecked(n as usize);
            if n < (*m).untagged as u32 {
                // A refill's object: not touched (it may be fresh memory).
                (*m).untagged = n as u16;
            } else {
                let tag = tag_of(p, tag_secret);
                let w = first_word(p);
                if w != tag {
                    if !keep_broken {
                        (*m).count = n;
                    }
                    return Take::Broken { p, word: w };
                }
                set_first_word(p, 0);
            }
            (*m).count = n;
            // An object a few pops ahead, on its way into the cache meanwhile: after a burst of
            // frees it was last written long ago, and its tag check is the pop's one cache
            // miss (tcmalloc prefetches its free list's next object too). Below the distance:
            // the floor's null.
            prefetch(Magazine::below_top(m, PREFETCH_AHEAD));
            Take::Object(NonNull::new_unchecked(p))
        }
    }

    /// Pushes `p`; false when the magazine is full.
    ///
    /// # Safety
    /// `m` is a valid magazine owned by the caller; `p` a free object of its cache that the
    /// caller gives to the magazine.
    #[inline(always)]
    pub unsafe fn push(m: *mut Magazine, p: *mut u8) -> bool {
        // SAFETY: `count < cap <= MAG_MAX` (invariant) when there is room: slot `count` exists.
        unsafe {
            let n = (*m).count;
            if n >= (*m).cap as u32 {
                return false;
            }
            *(*m).objs.get_unchecked_mut(n as usize) = p;
            (*m).count = n + 1;
        }
        true
    }

    /// Is it full?
    #[inline]
    pub fn is_full(&self) -> bool {
        self.count >= self.cap as u32
    }

    /// Is it empty?
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Asks the CPU to bring the line at `p` into its caches: a hint that never faults, whatever
/// `p` is (null included).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing architecturally and cannot fault.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities() {
        assert_eq!(capacity_for(8), 62);
        assert_eq!(capacity_for(128), 62);
        assert_eq!(capacity_for(256), 62);
        assert_eq!(capacity_for(512), 32);
        assert_eq!(capacity_for(1024), 16);
        assert_eq!(capacity_for(2048), 8);
        assert_eq!(capacity_for(4096), 4);
        assert_eq!(capacity_for(8192), 4);
    }

    #[test]
    fn below_top_reads_the_object_d_slots_down_or_null() {
        let mut mem = core::mem::MaybeUninit::<Magazine>::uninit();
        let m = mem.as_mut_ptr();
        // SAFETY: a magazine-sized, aligned block we own; slots written before being read.
        unsafe {
            Magazine::init(m, 8);
            assert!(Magazine::below_top(m, 4).is_null());
            for i in 0..5 {
                (*m).objs[i] = ((i + 1) << 12) as *mut u8;
            }
            (*m).count = 3;
            assert_eq!(Magazine::below_top(m, 1), Magazine::top(m));
            assert_eq!(Magazine::below_top(m, 3), 0x1000 as *mut u8);
            assert!(
                Magazine::below_top(m, 4).is_null(),
                "fewer than 4: the floor"
            );
            (*m).count = 5;
            assert_eq!(Magazine::below_top(m, 4), 0x2000 as *mut u8);
        }
    }

    #[test]
    fn top_is_the_last_object_or_null() {
        let mut mem = core::mem::MaybeUninit::<Magazine>::uninit();
        let m = mem.as_mut_ptr();
        // SAFETY: a magazine-sized, aligned block we own; slots written before being read.
        unsafe {
            Magazine::init(m, 4);
            assert!(Magazine::top(m).is_null());
            (*m).objs[0] = 0x1000 as *mut u8;
            (*m).count = 1;
            assert_eq!(Magazine::top(m), 0x1000 as *mut u8);
            (*m).objs[1] = 0x2000 as *mut u8;
            (*m).count = 2;
            assert_eq!(Magazine::top(m), 0x2000 as *mut u8);
        }
    }
}
