//! Replay of an allocation trace written by `libdmaslab.so` with `DMASLAB_TRACE=PATH`.
//!
//! Format (crates/dmaslab-preload/src/trace.rs): the 8-byte magic `DMSTRC01`, then 32-byte
//! little-endian records `op: u8, pad: [u8; 7], size: u64, arg: u64, ret: u64`, where `op` is
//! 1 malloc(size)→ret, 2 free(arg), 3 calloc(arg, size)→ret, 4 realloc(arg, size)→ret,
//! 5 memalign(arg = alignment, size)→ret.
//!
//! Loading turns addresses into dense ids (a block's id lives from its allocation to its free),
//! so the timed replay indexes a vector and does no hashing.

use crate::{Heap, Row, Timer};
use std::collections::HashMap;

/// The file's magic.
pub const MAGIC: &[u8; 8] = b"DMSTRC01";

/// One replayed event.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// Allocate `size` bytes aligned to `align` (zeroed for calloc) into slot `id`.
    Alloc {
        /// Slot.
        id: u32,
        /// Bytes.
        size: u32,
        /// Alignment (8 for plain malloc).
        align: u32,
        /// calloc.
        zero: bool,
    },
    /// Free slot `id`.
    Free {
        /// Slot.
        id: u32,
    },
    /// Reallocate slot `from` to `size` bytes into slot `to`.
    Realloc {
        /// Old slot.
        from: u32,
        /// New slot.
        to: u32,
        /// New size.
        size: u32,
    },
}

/// A loaded trace.
pub struct Trace {
    /// The events in order.
    pub events: Vec<Event>,
    /// Slots needed.
    pub slots: usize,
}

/// Reads and preprocesses a trace file.
pub fn load(path: &str) -> std::io::Result<Trace> {
    let data = std::fs::read(path)?;
    if data.len() < 8 || &data[..8] != MAGIC {
        return Err(std::io::Error::other("not a dmaslab trace"));
    }
    let mut live: HashMap<u64, u32> = HashMap::new();
    let mut next = 0u32;
    let mut events = Vec::with_capacity((data.len() - 8) / 32);
    let clamp = |s: u64| s.min(u32::MAX as u64) as u32;
    let word = |r: &[u8], i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&r[i..i + 8]);
        u64::from_le_bytes(b)
    };
    for r in data[8..].chunks_exact(32) {
        let (op, size, arg, ret) = (r[0], word(r, 8), word(r, 16), word(r, 24));
        let mut alloc = |ret: u64, live: &mut HashMap<u64, u32>| {
            let id = next;
            next += 1;
            live.insert(ret, id);
            id
        };
        match op {
            1 | 3 | 5 if ret != 0 => {
                let id = alloc(ret, &mut live);
                let (size, align) = match op {
                    3 => (size.saturating_mul(arg), 8),
                    5 => (size, arg.max(8)),
                    _ => (size, 8),
                };
                events.push(Event::Alloc {
                    id,
                    size: clamp(size),
                    align: clamp(align),
                    zero: op == 3,
                });
            }
            2 => {
                if let Some(id) = live.remove(&arg) {
                    events.push(Event::Free { id });
                }
            }
            4 => {
                let from = if arg == 0 { None } else { live.remove(&arg) };
                match (from, ret) {
                    (Some(from), 0) if size == 0 => events.push(Event::Free { id: from }),
                    (Some(from), 0) => {
                        // Failed realloc: the block stays.
                        live.insert(arg, from);
                    }
                    (Some(from), ret) => {
                        let to = alloc(ret, &mut live);
                        events.push(Event::Realloc {
                            from,
                            to,
                            size: clamp(size),
                        });
                    }
                    (None, 0) => {}
                    (None, ret) => {
                        let id = alloc(ret, &mut live);
                        events.push(Event::Alloc {
                            id,
                            size: clamp(size),
                            align: 8,
                            zero: false,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Trace {
        events,
        slots: next as usize,
    })
}

/// Replays `t` on `h` (blocks still live at the end are then freed, untimed).
pub fn replay<H: Heap>(h: &H, t: &Trace) -> Vec<Row> {
    let mut slots: Vec<(*mut u8, u32, u32)> = vec![(std::ptr::null_mut(), 0, 8); t.slots];
    let start = Timer::start();
    for e in &t.events {
        match *e {
            Event::Alloc {
                id,
                size,
                align,
                zero,
            } => {
                let p = if align <= 16 {
                    h.malloc(size as usize)
                } else {
                    h.memalign(align as usize, size as usize)
                };
                if zero && !p.is_null() {
                    // SAFETY: a fresh block of `size` bytes.
                    unsafe { p.write_bytes(0, size as usize) };
                }
                slots[id as usize] = (p, size, align);
            }
            Event::Free { id } => {
                let (p, s, a) = slots[id as usize];
                slots[id as usize].0 = std::ptr::null_mut();
                if !p.is_null() {
                    // SAFETY: slot `id` holds a live block, freed once.
                    unsafe { h.free(p, s as usize, a as usize) };
                }
            }
            Event::Realloc { from, to, size } => {
                let (p, s, _) = slots[from as usize];
                let q = if p.is_null() {
                    h.malloc(size as usize)
                } else {
                    // SAFETY: a live block, replaced by the result.
                    unsafe { h.realloc(p, s as usize, size.max(1) as usize) }
                };
                slots[from as usize] = (std::ptr::null_mut(), 0, 8);
                slots[to as usize] = (q, size, 8);
            }
        }
    }
    let n = t.events.len() as u64;
    let row = start.row("python-trace", n, n);
    for &(p, s, a) in &slots {
        if !p.is_null() {
            // SAFETY: blocks the trace never freed, freed once here.
            unsafe { h.free(p, s as usize, a as usize) };
        }
    }
    vec![row]
}
