//! The freed-object tag of the per-CPU layer: the allocated/free state of an object held in a
//! recent slot or a magazine, kept in the object's own first word (the word the slab free list
//! uses once the object is back in its slab), so it costs no memory and no shared write.
//!
//! - **At free into the per-CPU layer** the first word becomes `addr ^ tag_secret` (the secret
//!   is derived from the allocator's random free-list secret). A free that finds the tag already
//!   there is a double free, wherever the first free sits (recent slot, any magazine of any CPU,
//!   the depot).
//! - **At reuse** (an allocation from the recent slot or a magazine) the tag must still be there,
//!   else the object was written after it was freed (use after free); then the word is cleared,
//!   so a live object never holds its tag and the free-time test has no false positive short of
//!   a program storing its object's address XOR a 64-bit secret it never saw.
//! - **At a drain** (magazine objects back to their slabs, under the cache lock) each tagged
//!   object must still hold its tag: one whose first word decodes as a link of its slab's free
//!   list was freed to the slab meanwhile (a double free), anything else is a use after free.
//!
//! Objects that enter a magazine from a slab refill (fresh or free-list objects) carry no tag and
//! their memory is not touched: a magazine keeps them at the bottom and counts them
//! ([`Magazine::untagged`](crate::magazine::Magazine::untagged)).

use crate::debug::{Finding, FindingKind};
use crate::stats::CacheName;

/// The tag secret of an allocator whose free-list secret is `secret`: a mix of it (never the
/// identity, so an object holding a pointer to itself is not taken for a freed one, and not
/// one of the caches' link secrets, so a drained tag never decodes as a free-list link).
pub(crate) const fn tag_secret(secret: usize) -> usize {
    // splitmix64's finaliser over a constant-offset input (so secret 0 does not give 0).
    let mut z = (secret as u64) ^ 0x243F_6A88_85A3_08D3;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // Odd: `addr ^ tag` never equals `addr` nor any 2-aligned address.
    (z as usize) | 1
}

/// The tag of a freed object at `p`.
#[inline(always)]
pub(crate) fn tag_of(p: *const u8, secret: usize) -> usize {
    p as usize ^ secret
}

/// The first word of the object at `p`.
///
/// # Safety
/// `p` is an object start of a live slab (readable, aligned for `usize`).
#[inline(always)]
pub(crate) unsafe fn first_word(p: *const u8) -> usize {
    // SAFETY: forwarded from the caller.
    unsafe { p.cast::<usize>().read() }
}

/// May the object at `p` hold `tag`? The free fast path's filter: on 64-bit targets it loads
/// only the word's upper half, bytes 4..8, which a program's last byte or `int` store at the
/// object's start does not overlap (an 8-byte load over a narrower store still in flight cannot
/// be forwarded from it and waits for it: with a whole-word load here, a malloc/write-a-byte/free
/// pair took about 1.6 times as long, docs/hardening.md, "Normal-mode cost"). A match goes to the full path,
/// which compares the whole word before reporting.
///
/// # Safety
/// As for [`first_word`].
#[inline(always)]
pub(crate) unsafe fn may_hold(p: *const u8, tag: usize) -> bool {
    #[cfg(target_pointer_width = "64")]
    {
        let (at, half) = if cfg!(target_endian = "little") {
            (4, (tag as u64 >> 32) as u32)
        } else {
            (0, (tag as u64 >> 32) as u32)
        };
        // SAFETY: inside the object's first word (caller), aligned for `u32`.
        unsafe { p.add(at).cast::<u32>().read() == half }
    }
    #[cfg(not(target_pointer_width = "64"))]
    // SAFETY: forwarded from the caller.
    unsafe {
        first_word(p) == tag
    }
}

/// Writes `w` as the first word of the object at `p`.
///
/// # Safety
/// `p` is an object start of a live slab that the caller owns (free, in its CPU cache, or
/// being handed out).
#[inline(always)]
pub(crate) unsafe fn set_first_word(p: *mut u8, w: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { p.cast::<usize>().write(w) }
}

/// The one-line finding for object `p` of cache `cache` whose first word is `word` where its
/// tag `tag` was expected (`UseAfterFree`: the offset is the first byte that changed) or found
/// (`DoubleFree`).
pub(crate) fn finding(
    kind: FindingKind,
    cache: CacheName,
    p: usize,
    word: usize,
    tag: usize,
) -> Finding {
    let offset = match kind {
        FindingKind::UseAfterFree => first_changed_byte(word, tag),
        _ => 0,
    };
    Finding {
        kind,
        addr: p + offset,
        cache,
        object: p,
        offset,
        alloc_site: 0,
        free_site: 0,
    }
}

/// The offset of the first byte in which `word` differs from `tag` as stored in memory (0 when
/// they are equal).
fn first_changed_byte(word: usize, tag: usize) -> usize {
    let d = word ^ tag;
    if d == 0 {
        return 0;
    }
    let bit = if cfg!(target_endian = "little") {
        d.trailing_zeros()
    } else {
        d.leading_zeros()
    };
    bit as usize / 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_odd_and_not_the_identity() {
        for s in [0, 1, 0x5eed_d3a5, usize::MAX] {
            let t = tag_secret(s);
            assert_eq!(t & 1, 1);
            assert_ne!(t, s);
        }
        assert_ne!(tag_secret(1), tag_secret(2));
    }

    #[test]
    fn the_changed_byte_is_named() {
        let tag = 0x1122_3344_5566_7788_u64 as usize;
        assert_eq!(first_changed_byte(tag, tag), 0);
        let mut bytes = tag.to_ne_bytes();
        bytes[3] ^= 0x40;
        assert_eq!(first_changed_byte(usize::from_ne_bytes(bytes), tag), 3);
    }
}
