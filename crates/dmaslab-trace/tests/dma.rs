//! The synthetic DMA fixture (fixtures/synthetic-dma.trace) and its hand-worked answers.
//!
//! Under C at DMA line L, each FROM_DEVICE mapping of slab memory (our layout: slab objects start
//! at `base + i * size`, the first object of a fresh slab at its base):
//!
//! | mapping | size (roundup) | exact bounces at 32/64/128/256 | Linux bounces at 32/64/128/256 |
//! |---|---|---|---|
//! | kmalloc(4), all of it | 4 (8) | y y y y (neighbours in every line) | y y y y |
//! | kmalloc(64), all | 64 (64) | n n y y | n n y y |
//! | kmalloc(96) slot 0, all | 96 (96) | n y y y (slot 1 in line [64,128)) | n y y y |
//! | the same, bytes 32..96 | 64 (64) | n y y y | n n y y: a false negative at 64 |
//! | kmalloc(128), bytes 0..24 | 24 (32) | n n n y (own bytes only below 256) | n y y y: false positives at 64, 128 |
//! | kmalloc(512) (scatterlist entry) | 512 | n n n n | n n n n |
//! | skbuff_head_cache (256) | 256 | n n n n | n n n n |
//!
//! Bytes copied: 2 × size per bounced mapping (in at map, out at unmap) plus 4 for the one
//! `dma_sync_single_for_cpu` of the bounced 4-byte mapping. Offset: seven distinct physical
//! addresses land in live objects under 0xffff888000000000; the scatterlist's page entry
//! (0x180001000) lands in the 4-byte object under one other offset: votes 7 and 1.

use dmaslab_trace::{analyse, parse};

#[test]
fn synthetic_dma_trace_gives_the_hand_worked_answers() {
    let text = include_str!("../fixtures/synthetic-dma.trace");
    let r = analyse(&parse(text).unwrap(), &[32, 64, 128, 256]);
    assert_eq!(r.unknown_events, 1, "dma_alloc is skipped and counted");
    let d = r.dma.expect("DMA events");
    assert_eq!(d.mappings, 10);
    assert_eq!(
        d.offset.linear_map_offset.as_deref(),
        Some("0xffff888000000000")
    );
    assert_eq!((d.offset.offset_votes, d.offset.runner_up_votes), (7, 1));
    assert!((d.offset.confidence - 0.875).abs() < 1e-12);
    assert_eq!(d.kernel_bounced.len(), 1);
    assert_eq!(
        (d.kernel_bounced[0].events, d.kernel_bounced[0].bytes),
        (1, 4)
    );
    type Want = (
        &'static str,
        usize,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
    );
    // (direction, line, kmalloc, cache, exact, linux, FP, FN, exact bytes, linux bytes, other)
    let want: [Want; 8] = [
        ("TO_DEVICE", 32, 1, 0, 0, 0, 0, 0, 0, 0, 1),
        ("TO_DEVICE", 64, 1, 0, 0, 0, 0, 0, 0, 0, 1),
        ("TO_DEVICE", 128, 1, 0, 0, 0, 0, 0, 0, 0, 1),
        ("TO_DEVICE", 256, 1, 0, 0, 0, 0, 0, 0, 0, 1),
        ("FROM_DEVICE", 32, 6, 1, 1, 1, 0, 0, 12, 12, 1),
        (
            "FROM_DEVICE",
            64,
            6,
            1,
            3,
            3,
            1,
            1,
            12 + 192 + 128,
            12 + 192 + 48,
            1,
        ),
        (
            "FROM_DEVICE",
            128,
            6,
            1,
            4,
            5,
            1,
            0,
            12 + 128 + 192 + 128,
            12 + 128 + 192 + 128 + 48,
            1,
        ),
        ("FROM_DEVICE", 256, 6, 1, 5, 5, 0, 0, 508, 508, 1),
    ];
    assert_eq!(d.rows.len(), want.len());
    for (row, w) in d.rows.iter().zip(want) {
        let got = (
            row.direction,
            row.dma_minalign,
            row.kmalloc_mappings,
            row.cache_mappings,
            row.exact_bounces,
            row.linux_bounces,
            row.false_positives,
            row.false_negatives,
            row.exact_bytes_copied,
            row.linux_bytes_copied,
            row.other_mappings,
        );
        assert_eq!(got, w);
        assert_eq!(
            (row.device.as_str(), row.spanning, row.other_linux_bounces),
            ("0000:00:04.0", 0, 0)
        );
    }
}

#[test]
fn without_dma_events_there_is_no_dma_section() {
    let text = include_str!("../fixtures/synthetic-dma.trace");
    let kmem_only: String = text
        .lines()
        .filter(|l| !l.contains(": dma_") && !l.contains("swiotlb"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(analyse(&parse(&kmem_only).unwrap(), &[64]).dma.is_none());
}

#[test]
fn hashed_pointers_give_no_offset() {
    let text =
        include_str!("../fixtures/synthetic-dma.trace").replace("ptr=ffff88810", "ptr=000000000");
    let d = analyse(&parse(&text).unwrap(), &[64]).dma.unwrap();
    assert!(d.offset.linear_map_offset.is_none());
    assert!(d.offset.note.unwrap().contains("hashed"));
    assert!(d.rows.iter().all(|r| r.kmalloc_mappings == 0));
}
