//! The heap's settings, read from the environment without allocating.
//!
//! `DMASLAB_POLICY=A|B|C` (default C), `DMASLAB_DMA_MINALIGN=32|64|128|256` (default 64),
//! `DMASLAB_STATS=stderr|PATH` (`%p` in PATH becomes the pid; unset: no statistics),
//! `DMASLAB_DEBUG=0|1` (default 0: debug mode, see docs/hardening.md),
//! `DMASLAB_QUARANTINE=BYTES` (debug mode's quarantine of freed objects, a decimal byte count,
//! 0: off; default 4 MiB, `Config::DEFAULT_QUARANTINE`). An unknown
//! value is reported on stderr once (the environment is read once per process) and the default
//! used.
//!
//! The environment is read with `getenv(3)`, which does not allocate, because the heap is built
//! inside the first `malloc` of the process.
//!
//! Settings chosen in code ([`CodeSettings`], e.g. `DmaSlab::with_policy(Policy::A)`) take
//! precedence over their environment variables; the others still apply.

use crate::platform::{stderr_line, FixedBuf};
use core::ffi::CStr;
use dmaslab_core::{Config, Policy, SpinLock, DMA_MINALIGNS};

/// Longest `DMASLAB_STATS` path kept (bytes, before `%p` expansion).
pub const STATS_PATH_MAX: usize = 512;

/// Where the statistics go at exit. (Inline path bytes: the heap never allocates for it.)
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsTarget {
    /// Nowhere (the default).
    None,
    /// Standard error.
    Stderr,
    /// A file; `%p` is replaced by the pid when it is opened.
    Path {
        /// The path bytes (no NUL).
        bytes: [u8; STATS_PATH_MAX],
        /// Used length of `bytes`.
        len: usize,
    },
}

/// The heap's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The DMA alignment policy.
    pub policy: Policy,
    /// The DMA cache line.
    pub dma_minalign: usize,
    /// Where statistics go at exit.
    pub stats: StatsTarget,
    /// Debug mode (`DMASLAB_DEBUG=1`): red zones, poison, full double-free checks and call
    /// sites in the core; magazines are bypassed so every operation is checked.
    pub debug: bool,
    /// Debug mode's quarantine in bytes (`DMASLAB_QUARANTINE`; 0: freed objects go back at
    /// once).
    pub quarantine: usize,
    /// `DMASLAB_TRACE` is set: `libdmaslab.so` records every call, which its fast paths have no
    /// hook for, so the process-wide heap runs without thread magazines.
    pub trace: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            policy: Policy::C,
            dma_minalign: 64,
            stats: StatsTarget::None,
            debug: false,
            quarantine: Config::DEFAULT_QUARANTINE,
            trace: false,
        }
    }
}

/// Parses a `DMASLAB_POLICY` value.
pub fn parse_policy(s: &[u8]) -> Option<Policy> {
    core::str::from_utf8(s).ok().and_then(Policy::parse)
}

/// Parses a `DMASLAB_DMA_MINALIGN` value.
pub fn parse_minalign(s: &[u8]) -> Option<usize> {
    let n: usize = core::str::from_utf8(s).ok()?.trim().parse().ok()?;
    DMA_MINALIGNS.contains(&n).then_some(n)
}

/// Parses a `DMASLAB_DEBUG` value: `0` or `1`.
pub fn parse_debug(s: &[u8]) -> Option<bool> {
    match s {
        b"0" => Some(false),
        b"1" => Some(true),
        _ => None,
    }
}

/// Parses a `DMASLAB_QUARANTINE` value: a decimal byte count (no sign, no suffix).
pub fn parse_quarantine(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0usize, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add((b - b'0') as usize))?
    })
}

/// Parses a `DMASLAB_STATS` value: `stderr`, or a non-empty path that fits [`STATS_PATH_MAX`].
pub fn parse_stats(s: &[u8]) -> Option<StatsTarget> {
    if s == b"stderr" {
        return Some(StatsTarget::Stderr);
    }
    if s.is_empty() || s.len() > STATS_PATH_MAX {
        return None;
    }
    let mut bytes = [0u8; STATS_PATH_MAX];
    bytes[..s.len()].copy_from_slice(s);
    Some(StatsTarget::Path {
        bytes,
        len: s.len(),
    })
}

fn getenv(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; getenv returns null or a NUL-terminated string that
    // lives as long as the environment is not modified (we copy what we keep right away).
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        None
    } else {
        // SAFETY: non-null result of getenv: a valid C string.
        Some(unsafe { CStr::from_ptr(p) }.to_bytes())
    }
}

fn warn(var: &str, value: &[u8], default: &str) {
    let mut b = FixedBuf::<256>::new();
    b.push(b"dmaslab: unknown ");
    b.push(var.as_bytes());
    b.push(b" value '");
    b.push(&value[..value.len().min(64)]);
    b.push(b"', using ");
    b.push(default.as_bytes());
    stderr_line(b.as_bytes());
}

impl Settings {
    /// Turns debug mode on or off (builder style), e.g.
    /// `Heap::new(Settings::default().debug(true))`.
    pub const fn debug(mut self, on: bool) -> Self {
        self.debug = on;
        self
    }

    /// Reads the settings from the environment, reporting unknown values on stderr.
    pub fn from_env() -> Settings {
        let mut s = Settings::default();
        if let Some(v) = getenv(c"DMASLAB_POLICY") {
            match parse_policy(v) {
                Some(p) => s.policy = p,
                None => warn("DMASLAB_POLICY", v, "C"),
            }
        }
        if let Some(v) = getenv(c"DMASLAB_DMA_MINALIGN") {
            match parse_minalign(v) {
                Some(l) => s.dma_minalign = l,
                None => warn("DMASLAB_DMA_MINALIGN", v, "64"),
            }
        }
        if let Some(v) = getenv(c"DMASLAB_STATS") {
            match parse_stats(v) {
                Some(t) => s.stats = t,
                None => warn("DMASLAB_STATS", v, "no statistics"),
            }
        }
        s.trace = getenv(c"DMASLAB_TRACE").is_some();
        if let Some(v) = getenv(c"DMASLAB_DEBUG") {
            match parse_debug(v) {
                Some(d) => s.debug = d,
                None => warn("DMASLAB_DEBUG", v, "0"),
            }
        }
        if let Some(v) = getenv(c"DMASLAB_QUARANTINE") {
            match parse_quarantine(v) {
                Some(q) => s.quarantine = q,
                None => warn("DMASLAB_QUARANTINE", v, "4194304"),
            }
        }
        s
    }
}

/// Settings chosen in code for the process-wide heap: each one set takes precedence over its
/// environment variable. Built in `const` context, for a `#[global_allocator]` static.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodeSettings {
    /// Overrides `DMASLAB_POLICY`.
    pub policy: Option<Policy>,
    /// Overrides `DMASLAB_DMA_MINALIGN` (32, 64, 128 or 256; another value is reported on
    /// stderr and ignored).
    pub dma_minalign: Option<usize>,
    /// Overrides `DMASLAB_DEBUG`.
    pub debug: Option<bool>,
}

impl CodeSettings {
    /// Nothing chosen: the environment decides.
    pub const NONE: CodeSettings = CodeSettings {
        policy: None,
        dma_minalign: None,
        debug: None,
    };

    /// Chooses the policy.
    pub const fn policy(mut self, p: Policy) -> Self {
        self.policy = Some(p);
        self
    }

    /// Chooses the DMA cache line.
    pub const fn dma_minalign(mut self, line: usize) -> Self {
        self.dma_minalign = Some(line);
        self
    }

    /// Chooses debug mode.
    pub const fn debug(mut self, on: bool) -> Self {
        self.debug = Some(on);
        self
    }

    /// `s` with the settings chosen here put over it.
    pub fn over(self, mut s: Settings) -> Settings {
        if let Some(p) = self.policy {
            s.policy = p;
        }
        match self.dma_minalign {
            Some(l) if DMA_MINALIGNS.contains(&l) => s.dma_minalign = l,
            Some(l) => {
                let mut b = FixedBuf::<32>::new();
                let _ = core::fmt::Write::write_fmt(&mut b, format_args!("{l}"));
                warn("DmaSlab dma_minalign", b.as_bytes(), "the environment's");
            }
            None => {}
        }
        if let Some(d) = self.debug {
            s.debug = d;
        }
        s
    }
}

/// The settings chosen in code for the process-wide heap: the first offer made before the heap
/// is built.
static OFFERED: SpinLock<Option<CodeSettings>> = SpinLock::new(None);

/// Offers `c` for the process-wide heap, which has not been built yet; the first offer stays.
pub(crate) fn offer(c: CodeSettings) {
    let mut o = OFFERED.lock();
    if o.is_none() {
        *o = Some(c);
    }
}

impl Settings {
    /// The process-wide heap's settings: the environment ([`Settings::from_env`]) with the
    /// settings offered in code (by the `#[global_allocator]`'s first allocation) over it.
    pub fn for_process() -> Settings {
        let env = Settings::from_env();
        match *OFFERED.lock() {
            Some(c) => c.over(env),
            None => env,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values() {
        assert_eq!(parse_policy(b"A"), Some(Policy::A));
        assert_eq!(parse_policy(b"b"), Some(Policy::B));
        assert_eq!(parse_policy(b"D"), None);
        assert_eq!(parse_minalign(b"128"), Some(128));
        assert_eq!(parse_minalign(b"48"), None);
        assert_eq!(parse_minalign(b"x"), None);
        assert_eq!(parse_stats(b"stderr"), Some(StatsTarget::Stderr));
        assert_eq!(parse_stats(b""), None);
        assert_eq!(parse_debug(b"1"), Some(true));
        assert_eq!(parse_debug(b"0"), Some(false));
        assert_eq!(parse_debug(b"yes"), None);
        assert_eq!(parse_quarantine(b"0"), Some(0));
        assert_eq!(parse_quarantine(b"1048576"), Some(1 << 20));
        for bad in [&b""[..], b"1M", b"-1", b" 1", b"99999999999999999999"] {
            assert_eq!(parse_quarantine(bad), None, "{bad:?}");
        }
        let code = CodeSettings::NONE.policy(Policy::A).dma_minalign(48);
        let s = code.over(Settings::default().debug(true));
        assert_eq!(
            (s.policy, s.dma_minalign, s.debug),
            (Policy::A, 64, true),
            "set fields win, a bad line is ignored, unset fields stay"
        );
        assert_eq!(
            CodeSettings::NONE.over(Settings::default()),
            Settings::default()
        );
        match parse_stats(b"/tmp/s.%p") {
            Some(StatsTarget::Path { bytes, len }) => assert_eq!(&bytes[..len], b"/tmp/s.%p"),
            other => panic!("{other:?}"),
        }
    }
}
