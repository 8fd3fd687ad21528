//! A page source that maps pages from the OS (`std` feature).

use crate::page_source::{PageSource, DEFAULT_PAGE_SIZE};
use core::ptr::NonNull;

/// Page runs from anonymous `mmap`, aligned to their size. Each run is first asked for right
/// below the previous one (an address hint, no `MAP_FIXED`): one system call, and segments
/// side by side, which keeps a [`CpuCache`](crate::CpuCache)'s segment hint free of
/// collisions. When the kernel places it elsewhere, an over-sized mapping is trimmed to
/// alignment. Freed runs are unmapped; [`PageSource::discard`] returns pages with
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
        let size = self.page_size.checked_shl(order)?;
        let span = size.checked_mul(2)?;
        if let Some(below) = (self.last & !(size - 1)).checked_sub(size) {
            if below != 0 {
                let raw = Self::map(below, size);
                if raw as usize == below {
                    self.last = below;
                    return NonNull::new(raw.cast());
                }
                if !raw.is_null() {
                    // SAFETY: the mapping just made, unused.
                    unsafe { libc::munmap(raw, size) };
                }
            }
        }
        let raw = Self::map(0, span);
        if raw.is_null() {
            return None;
        }
        let start = raw as usize;
        let aligned = start.next_multiple_of(size);
        let head = aligned - start;
        let tail = span - head - size;
        // SAFETY: both trimmed pieces lie inside the mapping just made and are not used.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap(raw.cast::<u8>().add(head + size).cast(), tail);
            }
        }
        self.last = aligned;
        // SAFETY: `head < span`, so the pointer stays in the mapping.
        NonNull::new(unsafe { raw.cast::<u8>().add(head) })
    }

    unsafe fn free_pages(&mut self, ptr: NonNull<u8>, order: u32) {
        // SAFETY: the caller returns a run this source mapped with this order.
        unsafe { libc::munmap(ptr.as_ptr().cast(), self.page_size << order) };
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
