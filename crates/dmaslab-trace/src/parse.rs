//! A whole trace: every line read, events kept in timestamp order.

use crate::error::ParseError;
use crate::event::{DmaRange, EventKind, Interner, Tables};
use crate::line::{split, Line};
use std::collections::BTreeMap;

/// The comment `dmaslab trace record` ends its file with: the kernel's own count of events it
/// overwrote or dropped (per-CPU `overrun` + `dropped events`).
pub const LOST_TRAILER: &str = "# dmaslab: lost_events=";

/// One event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Timestamp, nanoseconds.
    pub ts: u64,
    /// Line number in the input.
    pub line: u32,
    /// What.
    pub kind: EventKind,
}

/// A parsed trace.
#[derive(Debug, Default)]
pub struct Trace {
    /// Events dmaslab replays, sorted by timestamp (lines with equal timestamps keep their order).
    pub events: Vec<Event>,
    /// Call sites as printed (`alloc_pipe_info+0x3d/0x190`).
    pub sites: Interner,
    /// Cache names of `kmem_cache_*` events.
    pub names: Interner,
    /// DMA device names.
    pub devices: Interner,
    /// Ranges of DMA events.
    pub ranges: Vec<DmaRange>,
    /// Events the kernel lost: the sum of `LOST N EVENTS` lines, or the recorder's trailer if
    /// larger; a notice without a count adds 1 (at least one was lost).
    pub lost_events: u64,
    /// Events of other kinds, skipped, by name.
    pub unknown: BTreeMap<String, u64>,
    /// Pointers look hashed (`%p` with `hash-ptr` on): pairing works, DMA matching cannot.
    pub hashed_pointers: bool,
    /// Lines read.
    pub lines: usize,
}

impl Trace {
    /// Skipped events, all kinds.
    pub fn unknown_events(&self) -> u64 {
        self.unknown.values().sum()
    }

    /// Does the trace hold any DMA mapping event?
    pub fn has_dma(&self) -> bool {
        self.events.iter().any(|e| {
            matches!(
                e.kind,
                EventKind::DmaMap { .. } | EventKind::DmaUnmap { .. } | EventKind::DmaSync { .. }
            )
        })
    }

    /// Seconds from the first event to the last.
    pub fn duration_s(&self) -> f64 {
        match (self.events.first(), self.events.last()) {
            (Some(a), Some(b)) => (b.ts - a.ts) as f64 / 1e9,
            _ => 0.0,
        }
    }
}

/// Parses ftrace text (kernel `trace`/`trace_pipe` layout or `trace-cmd report`'s). The first
/// malformed line is the error; unknown events are counted, not errors.
pub fn parse(text: &str) -> Result<Trace, ParseError> {
    let mut t = Tables::default();
    let mut events = Vec::new();
    let mut unknown: BTreeMap<String, u64> = BTreeMap::new();
    let (mut lost_lines, mut trailer) = (0u64, 0u64);
    let mut lines = 0;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        lines = n;
        if let Some(v) = raw.trim().strip_prefix(LOST_TRAILER) {
            trailer += crate::fields::dec(v.trim(), "lost_events", n)?;
            continue;
        }
        match split(raw, n)? {
            Line::Skip => {}
            Line::Lost(c) => lost_lines += c.unwrap_or(1),
            Line::Event { ts, name, body } => match t.event(name, body, n)? {
                Some(kind) => events.push(Event {
                    ts,
                    line: n as u32,
                    kind,
                }),
                None => *unknown.entry(name.to_string()).or_default() += 1,
            },
        }
    }
    // trace_pipe merges the CPUs' buffers in order already; trace-cmd and saved `trace` files
    // may not. Stable, so equal timestamps keep file order.
    if events.windows(2).any(|w| w[0].ts > w[1].ts) {
        events.sort_by_key(|e| e.ts);
    }
    Ok(Trace {
        events,
        sites: t.sites,
        names: t.names,
        devices: t.devices,
        ranges: t.ranges,
        lost_events: lost_lines.max(trailer),
        unknown,
        hashed_pointers: t.small_wide_ptr && !t.big_ptr,
        lines,
    })
}
