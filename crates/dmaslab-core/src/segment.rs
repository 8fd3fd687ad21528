//! Segments: aligned runs of pages from the page source, with their page descriptors in front.
//!
//! A normal segment is `2^seg_order` pages aligned to its size. Its first `header_pages` pages
//! hold a [`SegmentHeader`] followed by one [`PageDesc`] per page (the header takes the place of
//! the descriptor of page 0, which is always a header page). The other pages are slabs, large
//! kmalloc runs, or free. So objects start at `slab_base + i * size` with no metadata in between,
//! and the descriptor of any pointer is found in O(1): mask to the segment, index by page.
//!
//! A huge segment serves one allocation too big for a normal segment (or aligned beyond half a
//! segment): a span of exactly the pages it needs, aligned to a segment. Its first page holds
//! only the header and a [`HugeInfo`]; the object starts at [`HugeInfo::object_off`] — the
//! second page, or the requested alignment up to a whole segment (then the object starts at the
//! next segment boundary, and the segment map finds the header one segment below).

use crate::buddy::{BuddyLink, Zone};
use crate::large::HugeDebug;
use core::mem::size_of;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU8, AtomicUsize, Ordering};

/// What a page is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum PageKind {
    /// Holds the segment header and descriptors.
    Header = 0,
    /// In the page layer's free lists (or inside a free block).
    Free = 1,
    /// First page of a slab.
    Slab = 2,
    /// Later page of a slab; `head` names the first.
    SlabTail = 3,
    /// First page of a large kmalloc run.
    Large = 4,
    /// Later page of a large run; `head` names the first.
    LargeTail = 5,
}

impl PageKind {
    pub(crate) fn from_u8(v: u8) -> PageKind {
        match v {
            1 => PageKind::Free,
            2 => PageKind::Slab,
            3 => PageKind::SlabTail,
            4 => PageKind::Large,
            5 => PageKind::LargeTail,
            _ => PageKind::Header,
        }
    }
}

/// The descriptor of one page (Linux's `struct page` / `struct slab`).
///
/// # Invariants
/// - `kind`, `cache` and `head` of a slab page change only while both the owning cache's lock and
///   the page-layer lock are held, so holding either makes them stable; they are atomics so that
///   a lookup may read them before it knows which lock to take.
/// - For a `Slab` head, `link` chains the slab on one of its cache's lists (`list` says which),
///   `link.order` is the slab order, `inuse` counts its objects in use, `freelist` is the
///   offset + 1 of the first object on its free list (0: none) and `fresh` the index of its
///   first never-used object; those fields belong to the cache lock.
/// - For a `SlabTail` of a cache that keeps live flags, the bytes of `link.next` and `link.prev`
///   are the flags of 16 of the slab's objects (`kmalloc/live.rs`), accessed only as bytes.
/// - For `Free` pages, `link` belongs to the page-layer lock (buddy lists). A `Large` head's
///   `freelist` holds the run's length in pages (under the page-layer lock) and its `cache` the
///   same length (atomic: read without the lock), or `META_CACHE` for debug metadata runs.
#[repr(C)]
pub(crate) struct PageDesc {
    pub(crate) link: BuddyLink,
    pub(crate) kind: AtomicU8,
    pub(crate) list: u8,
    pub(crate) cache: AtomicU16,
    pub(crate) inuse: u16,
    /// Slab head: objects from this index on were never handed out (see `slab.rs`).
    pub(crate) fresh: u16,
    pub(crate) head: AtomicU32,
    pub(crate) freelist: AtomicU32,
}

impl PageDesc {
    /// The descriptor of page `i`, of kind `k`, on no list.
    fn new(k: PageKind, i: usize) -> PageDesc {
        PageDesc {
            link: BuddyLink::UNLINKED,
            kind: AtomicU8::new(k as u8),
            list: 0,
            cache: AtomicU16::new(0),
            inuse: 0,
            fresh: 0,
            head: AtomicU32::new(i as u32),
            freelist: AtomicU32::new(0),
        }
    }

    /// The kind of the page `d` describes. Reads only the atomic field, never forming a
    /// reference to the whole descriptor (whose other fields another thread may be writing
    /// under its lock).
    ///
    /// # Safety
    /// `d` points to a live descriptor.
    #[inline]
    pub(crate) unsafe fn kind_of(d: *const PageDesc) -> PageKind {
        // SAFETY: `d` is live (caller); only the atomic field is borrowed.
        PageKind::from_u8(unsafe { (*d).kind.load(Ordering::Acquire) })
    }

    /// Sets the kind of the page `d` describes.
    ///
    /// # Safety
    /// As for [`kind_of`](Self::kind_of).
    #[inline]
    pub(crate) unsafe fn set_kind_of(d: *const PageDesc, k: PageKind) {
        // SAFETY: `d` is live (caller); only the atomic field is borrowed.
        unsafe { (*d).kind.store(k as u8, Ordering::Release) };
    }
}

/// Segment kinds.
pub(crate) const SEG_NORMAL: u8 = 1;
pub(crate) const SEG_HUGE: u8 = 2;
const SEG_MAGIC: u32 = 0xd3a5_1ab5;

/// The header at the start of every segment.
///
/// # Invariants
/// `magic` is [`SEG_MAGIC`] while the segment is live. For a normal segment `used_pages` counts
/// the pages handed out of its buddy (slabs and large runs), protected by the page-layer lock.
#[repr(C)]
pub(crate) struct SegmentHeader {
    magic: u32,
    pub(crate) kind: u8,
    /// log2 of the segment's pages (normal segments; 0 for huge ones, see [`HugeInfo`]).
    pub(crate) order: u8,
    pub(crate) header_pages: u16,
    pub(crate) used_pages: u32,
}

// The header overlays descriptor 0's link only (its kind must stay readable).
const _: () = assert!(size_of::<SegmentHeader>() <= size_of::<BuddyLink>());

/// What the header page of a huge segment holds after its [`SegmentHeader`].
///
/// # Invariants
/// `object_off` (at least one page, at most one segment; a multiple of the page size but in
/// debug mode, where the object ends next to its guard page, see `large/debug_run.rs`) and the
/// span's arguments (what [`PageSource::free_span`](crate::PageSource::free_span) needs) never
/// change while the segment is live; `object_len` is the object's usable bytes, to the span's
/// end. `cached` is set while the segment waits, with no object, in the page layer's cache of
/// freed huge segments (since `cached_at`). `object_len` and `cached` change only under the
/// page-layer lock and are atomics so that lookups read them without it. `resident` (at least
/// `object_len`, at most the room after `object_off`) bounds the bytes from the object's start
/// that may hold memory: a cached segment that served a smaller request keeps its tail's pages,
/// inaccessible, for the next larger one (`large.rs`, the cache's bound). `movable` bytes from
/// the object's start lie in one mapping of the source (one piece for
/// [`PageSource::move_pages`](crate::PageSource::move_pages); `large/gather.rs`).
#[repr(C)]
pub(crate) struct HugeInfo {
    pub(crate) object_off: usize,
    pub(crate) object_len: AtomicUsize,
    pub(crate) resident: usize,
    pub(crate) movable: usize,
    pub(crate) cached: AtomicBool,
    pub(crate) cached_at: u64,
    /// The span as taken from the page source: pages, alignment, offset.
    pub(crate) span_pages: usize,
    pub(crate) span_align: usize,
    pub(crate) span_offset: usize,
    /// Pages after the span, inaccessible (a guard page on sources that can protect pages),
    /// taken and given back with it; not counted in `span_pages`.
    pub(crate) guard_pages: usize,
    /// Debug mode's state of the object ([`HugeDebug::NONE`] for a plain huge segment).
    pub(crate) debug: HugeDebug,
}

/// Where a huge segment's [`HugeInfo`] lies after its header (the header page holds nothing
/// else; any page is larger than this).
const HUGE_INFO_OFF: usize = 64;
const _: () = assert!(size_of::<SegmentHeader>() <= HUGE_INFO_OFF);

/// Pages of header a normal segment of `2^order` pages needs.
pub(crate) fn header_pages(order: u32, page_size: usize) -> usize {
    (size_of::<PageDesc>() << order).div_ceil(page_size)
}

impl SegmentHeader {
    /// Writes a fresh header (and for a normal segment, descriptors) at `seg`.
    ///
    /// # Safety
    /// `seg` points to a run of `2^order` pages of `page_size` (a huge segment: at least one
    /// page, and `order` is 0), aligned to `page_size`, owned by the caller and not in use.
    pub(crate) unsafe fn init(seg: *mut u8, kind: u8, order: u32, page_size: usize) -> *mut Self {
        let hp = if kind == SEG_NORMAL {
            header_pages(order, page_size)
        } else {
            1
        };
        let h = seg.cast::<SegmentHeader>();
        // SAFETY: the run is ours and large enough for the header and all descriptors
        // (header_pages < 2^order is checked by the page layer's configuration).
        unsafe {
            if kind == SEG_NORMAL {
                // Descriptor 0 describes the first header page; the header overlays only its
                // link, so a lookup reading its kind sees `Header`.
                h.cast::<PageDesc>()
                    .write(PageDesc::new(PageKind::Header, 0));
            }
            h.write(SegmentHeader {
                magic: SEG_MAGIC,
                kind,
                order: order as u8,
                header_pages: hp as u16,
                used_pages: 0,
            });
            if kind == SEG_NORMAL {
                for i in 1..(1usize << order) {
                    let k = if i < hp {
                        PageKind::Header
                    } else {
                        PageKind::Free
                    };
                    Self::desc_ptr(h, i).write(PageDesc::new(k, i));
                }
            }
        }
        h
    }

    /// The [`HugeInfo`] of huge segment `h`.
    ///
    /// # Safety
    /// `h` is a huge segment, live or being set up by the caller.
    #[inline]
    pub(crate) unsafe fn huge_info(h: *mut SegmentHeader) -> *mut HugeInfo {
        // SAFETY: the header page holds the info at this offset (caller: a huge segment).
        unsafe { h.cast::<u8>().add(HUGE_INFO_OFF).cast() }
    }

    /// Does `h` hold a live segment header? Reads one field, forming no reference.
    ///
    /// # Safety
    /// `h` points to readable memory of a registered segment.
    pub(crate) unsafe fn is_live(h: *const SegmentHeader) -> bool {
        // SAFETY: readable (caller); field access only.
        unsafe { (*h).magic == SEG_MAGIC }
    }

    /// Marks the segment dead before it goes back to the page source.
    ///
    /// # Safety
    /// `h` is a segment header the caller owns under the page-layer lock.
    pub(crate) unsafe fn kill(h: *mut SegmentHeader) {
        // SAFETY: as the caller promises; field access only.
        unsafe { (*h).magic = 0 };
    }

    /// The descriptor of page `i` (1 <= i < pages) of the normal segment `h`.
    ///
    /// # Safety
    /// `h` is a live normal segment and `i` is in `1..2^order`.
    #[inline]
    pub(crate) unsafe fn desc_ptr(h: *mut SegmentHeader, i: usize) -> *mut PageDesc {
        // SAFETY: descriptors are laid out from the segment start, one per page (caller).
        unsafe { h.cast::<PageDesc>().add(i) }
    }

    /// The blocks of normal segment `h` populated and not discarded since (bit `b`: block `b`
    /// of `2^DISCARD_ORDER` pages), protected by the page-layer lock. Kept in descriptor 0's
    /// free-list word: descriptor 0 describes a header page, which is never a slab, and `init`
    /// zeroes it; the header itself has no room left on 32-bit targets.
    ///
    /// # Safety
    /// `h` is a live normal segment.
    #[inline]
    pub(crate) unsafe fn populated<'a>(h: *mut SegmentHeader) -> &'a AtomicU32 {
        // SAFETY: descriptor 0 lies at the segment start (caller: a live normal segment); the
        // header overlays only its link.
        unsafe { &(*h.cast::<PageDesc>()).freelist }
    }

    /// The buddy zone of normal segment `h`: its non-header pages.
    ///
    /// # Safety
    /// `h` is a live normal segment.
    pub(crate) unsafe fn zone(h: *mut SegmentHeader) -> Zone {
        // SAFETY: `h` is live (caller).
        let (order, hp) = unsafe { ((*h).order, (*h).header_pages) };
        Zone {
            nodes: h.cast::<u8>(),
            stride: size_of::<PageDesc>(),
            first: 0,
            end: 1 << order,
        }
        .with_first(hp as usize)
    }

    /// Address of page `i` of segment `h`.
    ///
    /// # Safety
    /// `i` is inside the segment.
    #[inline]
    pub(crate) unsafe fn page_ptr(h: *mut SegmentHeader, i: usize, page_shift: u32) -> *mut u8 {
        // SAFETY: inside the segment's run (caller).
        unsafe { h.cast::<u8>().add(i << page_shift) }
    }

    /// Index of the page holding `addr` in segment `h`.
    #[inline]
    pub(crate) fn page_index(h: *mut SegmentHeader, addr: usize, page_shift: u32) -> usize {
        (addr - h as usize) >> page_shift
    }
}

impl Zone {
    /// The same zone with descriptors starting at index `first` (the array still starts at 0).
    fn with_first(self, first: usize) -> Zone {
        // SAFETY: `first < end`, so the offset stays inside the descriptor array.
        let nodes = unsafe { self.nodes.add(first * self.stride) };
        Zone {
            nodes,
            first,
            ..self
        }
    }
}
