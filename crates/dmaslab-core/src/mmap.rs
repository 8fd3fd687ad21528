//! A page source that maps pages from the OS (`std` feature).

use crate::page_source::{PageSource, DEFAULT_PAGE_SIZE};
use core::ptr::NonNull;

/// Page runs from anonymous `mmap`, aligned to their size, and spans of any page count at any
/// alignment ([`PageSource::alloc_span`]: exactly the pages asked for). Each is first asked for
/// right below the previous one (an address hint, no `MAP_FIXED`): one system call, and segments
/// side by side, which keeps a [`CpuCache`](crate::CpuCache)'s segment hint free of
/// collisions. When the kernel places it elsewhere, a mapping over-sized by the alignment is
/// trimmed to it. Freed runs are unmapped; [`PageSource::discard`] returns pages with
/// `MADV_DONTNEED`, and [`PageSource::populate`] maps them in with `MADV_POPULATE_WRITE`.
#[derive(Debug)]
pub struct MmapPageSource {
    page_size: usize,
    /// The start of the last run mapped (0: none yet).
    last: usize,
}

impl Default for MmapPageSource {
    fn default() -> Self {
        Self::new()
    }
}

impl MmapPageSource {
    /// A source of the system's pages (4 KiB unless the OS says otherwise).
    pub fn new() -> Self {
        // SAFETY: sysconf has no preconditions.
        let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page_size = if ps > 0 {
            ps as usize
        } else {
            DEFAULT_PAGE_SIZE
        };
        MmapPageSource { page_size, last: 0 }
    }

    /// Maps `len` bytes, at `hint` if the kernel agrees; null on failure.
    fn map(hint: usize, len: usize) -> *mut libc::c_void {
        // SAFETY: an anonymous private mapping without MAP_FIXED touches no existing memory
        // (the address is only a hint).
        let raw = unsafe {
            libc::mmap(
                core::ptr::without_provenance_mut(hint),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            core::ptr::null_mut()
        } else {
            raw
        }
    }
}

impl PageSource for MmapPageSource {
    fn page_size(&self) -> usize {
        self.page_size
    }

    fn alloc_pages(&mut self, order: u32) -> Option<NonNull<u8>> {
        let pages = 1usize.checked_shl(order)?;
        self.alloc_span(pages, self.page_size.checked_shl(order)?, 0)
    }

    unsafe fn free_pages(&mut self, ptr: NonNull<u8>, order: u32) {
        // SAFETY: the caller returns a run this source mapped with this order.
        unsafe { libc::munmap(ptr.as_ptr().cast(), self.page_size << order) };
    }

    fn alloc_span(&mut self, pages: usize, align: usize, offset: usize) -> Option<NonNull<u8>> {
        let len = pages.checked_mul(self.page_size)?;
        // The highest start below the previous run with `start + offset` aligned.
        let below = self
            .last
            .checked_sub(len)
            .and_then(|top| (top.checked_add(offset)? & !(align - 1)).checked_sub(offset));
        if let Some(below) = below.filter(|&b| b != 0) {
            let raw = Self::map(below, len);
            if raw as usize == below {
                self.last = below;
                return NonNull::new(raw.cast());
            }
            if !raw.is_null() {
                // SAFETY: the mapping just made, unused.
                unsafe { libc::munmap(raw, len) };
            }
        }
        // Over-reserve by the alignment and trim both ends.
        let span = len.checked_add(align - self.page_size)?;
        let raw = Self::map(0, span);
        if raw.is_null() {
            return None;
        }
        let first = raw as usize;
        let start = (first + offset).next_multiple_of(align) - offset;
        let head = start - first;
        let tail = span - head - len;
        // SAFETY: both trimmed pieces lie inside the mapping just made and are not used.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap(raw.cast::<u8>().add(head + len).cast(), tail);
            }
        }
        self.last = start;
        // SAFETY: `head + len <= span`, so the pointer stays in the mapping.
        NonNull::new(unsafe { raw.cast::<u8>().add(head) })
    }

    unsafe fn free_span(&mut self, ptr: NonNull<u8>, pages: usize, _align: usize, _offset: usize) {
        // SAFETY: the caller returns a span this source mapped with `pages` pages.
        unsafe { libc::munmap(ptr.as_ptr().cast(), pages * self.page_size) };
    }

    fn now_ms(&self) -> Option<u64> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        #[cfg(target_os = "linux")]
        let clock = libc::CLOCK_MONOTONIC_COARSE;
        #[cfg(not(target_os = "linux"))]
        let clock = libc::CLOCK_MONOTONIC;
        // SAFETY: `ts` is a valid out-parameter.
        let ok = unsafe { libc::clock_gettime(clock, &mut ts) } == 0;
        ok.then(|| ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000)
    }

    fn protect(&mut self, ptr: NonNull<u8>, len: usize, access: bool) -> bool {
        let prot = if access {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_NONE
        };
        // SAFETY: the range lies in a run this source handed out (caller); changing its
        // protection touches no other mapping.
        unsafe { libc::mprotect(ptr.as_ptr().cast(), len, prot) == 0 }
    }

    #[cfg(target_os = "linux")]
    unsafe fn move_pages(&mut self, from: NonNull<u8>, to: NonNull<u8>, len: usize) -> bool {
        // SAFETY: both ranges lie in spans this source mapped, owned by the caller and unused
        // (caller); MREMAP_FIXED replaces only the pages at `to`.
        let moved = unsafe {
            libc::mremap(
                from.as_ptr().cast(),
                len,
                len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                to.as_ptr(),
            )
        };
        if moved != libc::MAP_FAILED {
            return true;
        }
        // Some kernels unmap the target before they find they cannot move (`from` across two
        // mappings, say): map fresh pages there again, so the caller's span stays whole.
        // SAFETY: `to` lies in the caller's span, unused; MAP_FIXED replaces only that range.
        let again = unsafe {
            libc::mmap(
                to.as_ptr().cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if again == libc::MAP_FAILED {
            // Only exhaustion of the kernel's mapping count fails a fixed mapping over our own
            // span; the span would keep a hole the caller is about to hand out.
            const MSG: &[u8] = b"dmaslab: cannot map a span's pages again after a failed move\n";
            // SAFETY: writing a static buffer to stderr, then aborting: no memory is touched.
            unsafe {
                libc::write(2, MSG.as_ptr().cast(), MSG.len());
                libc::abort();
            }
        }
        false
    }

    fn discard(&mut self, ptr: NonNull<u8>, len: usize) {
        // SAFETY: the range lies in a run this source handed out; its contents are dead.
        unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_DONTNEED) };
    }

    fn populate(&mut self, ptr: NonNull<u8>, len: usize) {
        // Linux 5.14 and later; older kernels answer EINVAL and the pages fault in as before.
        #[cfg(target_os = "linux")]
        // SAFETY: the range lies in a private anonymous run this source handed out; populating
        // it for writing changes no contents (fresh pages read as zero either way).
        unsafe {
            libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_POPULATE_WRITE)
        };
        #[cfg(not(target_os = "linux"))]
        let _ = (ptr, len);
    }
}
