//! dmaslab-trace: a real kernel's slab stream, replayed under dmaslab's policies.
//!
//! Reads ftrace text (the kernel's `trace`/`trace_pipe` files or `trace-cmd report`) of the
//! `kmem:kmalloc`, `kmem:kfree`, `kmem:kmem_cache_alloc`, `kmem:kmem_cache_free`, `dma:*` and
//! `swiotlb:swiotlb_bounced` events; pairs allocations with frees by pointer; replays every
//! object into fresh `dmaslab-core` allocators under A at each DMA line, B and C; and reports
//! pages over time, who pays for A, and which DMA mappings C would bounce. [`record`] makes such
//! a trace on a live Linux machine (root, tracefs), in a trace instance of its own.
//!
//! ```
//! let text = "\
//!  sh-1 [000] ..... 1.000000: kmalloc: call_site=f+0x1/0x9 ptr=ffff888100000000 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_KERNEL node=-1 accounted=false
//!  sh-1 [000] ..... 2.000000: kfree: call_site=g+0x1/0x9 ptr=ffff888100000000
//! ";
//! let trace = dmaslab_trace::parse(text).unwrap();
//! let report = dmaslab_trace::analyse(&trace, &[64]);
//! assert_eq!(report.events, 2);
//! assert_eq!(report.policies.len(), 3); // A at 64, B, C
//! // One 8-byte object: one slab page; freed, its slab stays as the cache's one kept empty slab.
//! assert!(report.policies.iter().all(|p| p.peak_pages == 1 && p.final_pages == 1));
//! ```

mod analysis;
mod dma;
mod error;
mod event;
mod fields;
mod lifetime;
mod line;
mod parse;
pub mod record;
mod render;
mod replay;
mod svg;

pub use analysis::{
    analyse, DmaReport, KernelBounced, PairCountsJson, PolicyRow, Report, SiteCost,
    DEFAULT_MINALIGNS, TOP_SITES,
};
pub use dma::{infer_offset, Offset, Row, OFFSET_GRANULE, VOTE_RANGES};
pub use error::ParseError;
pub use event::{DmaRange, EventKind, Interner, MAX_OBJECT_BYTES};
pub use lifetime::{pair, Lifetimes, NamedCache, ObjKind, Object, Op, PairCounts};
pub use parse::{parse, Event, Trace, LOST_TRAILER};
pub use render::{json, text};
pub use replay::{replay, OutOfArena, PolicyRun, Setup, SAMPLES};
pub use svg::svg;

/// The committed real kernel stream (gzipped ftrace text) that `dmaslab report` replays; its
/// folder's README says how it was recorded. Embedded here so that it ships inside this crate's
/// package and any user of the crate replays the same bytes.
pub const REAL_STREAM: &[u8] = include_bytes!("../fixtures/real-fs-pipe-tcp.trace.gz");
/// Where [`REAL_STREAM`] lives in the repository.
pub const REAL_STREAM_PATH: &str = "crates/dmaslab-trace/fixtures/real-fs-pipe-tcp.trace.gz";

/// The text of a trace file: gunzipped when it starts with gzip's magic bytes, invalid UTF-8
/// replaced. The error is one line.
pub fn text_of(bytes: &[u8]) -> Result<String, String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(bytes), &mut out)
            .map_err(|e| format!("not a valid gzip file: {e}"))?;
        return Ok(String::from_utf8_lossy(&out).into_owned());
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}
