//! `dmaslab trace record`: stream the kernel's kmem and DMA events to a file, from a tracefs
//! instance of our own (`instances/dmaslab-<pid>`, never the global buffer), with pointer
//! hashing off in it so kmalloc pointers can be matched to DMA physical addresses.
//!
//! The instance is removed on every way out: normal end, error (the guard's `Drop`), and
//! SIGINT/SIGTERM/SIGHUP (the handler only sets a flag; the loop ends and the guard runs).
//! SIGKILL cannot be caught: `rmdir /sys/kernel/tracing/instances/dmaslab-*` cleans up then.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The kmem events a replay needs: one missing is an error.
pub const KMEM_EVENTS: [&str; 4] = [
    "kmem/kmalloc",
    "kmem/kfree",
    "kmem/kmem_cache_alloc",
    "kmem/kmem_cache_free",
];

/// DMA events (Linux 6.10 and later): missing ones are only warned about.
pub const DMA_EVENTS: [&str; 9] = [
    "dma/dma_map_phys",
    "dma/dma_unmap_phys",
    "dma/dma_map_sg",
    "dma/dma_unmap_sg",
    "dma/dma_sync_single_for_cpu",
    "dma/dma_sync_single_for_device",
    "dma/dma_sync_sg_for_cpu",
    "dma/dma_sync_sg_for_device",
    "swiotlb/swiotlb_bounced",
];

/// Where tracefs is usually mounted.
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Per-CPU ring buffer of the instance, KiB: large enough that a busy 2-core machine rarely
/// overruns while the file is written.
const BUFFER_KB: u32 = 16384;

/// What to record.
#[derive(Clone, Debug)]
pub struct Options {
    /// The output file.
    pub output: PathBuf,
    /// Stop after this long (with a command: at most this long).
    pub seconds: Option<f64>,
    /// Run this and record while it runs.
    pub command: Vec<String>,
}

/// How a recording went.
#[derive(Debug)]
pub struct Outcome {
    /// Bytes written.
    pub bytes: u64,
    /// Events the kernel lost (per-CPU `overrun` + `dropped events` of the instance).
    pub lost_events: u64,
    /// `LOST` notices in the stream itself, summed.
    pub lost_in_stream: u64,
    /// DMA events this kernel does not have.
    pub missing_dma: Vec<String>,
    /// The command's exit status, if one ran.
    pub status: Option<ExitStatus>,
    /// Stopped by a signal.
    pub interrupted: bool,
    /// Seconds recorded.
    pub seconds: f64,
    /// The instance's name.
    pub instance: String,
}

/// Why recording could not start or finish.
#[derive(Debug)]
pub enum Error {
    /// Not root, no tracefs, or a kmem event missing: exit status 2.
    Setup(String),
    /// Anything else (I/O, the command could not start): exit status 1.
    Failed(String),
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Sets the stop flag on SIGINT, SIGTERM and SIGHUP (no `SA_RESTART`: `poll` returns).
fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is a valid empty one; the handler only stores to an
        // atomic, which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The tracefs root, mounting it at /sys/kernel/tracing if nothing is mounted.
pub fn tracefs() -> Result<PathBuf, Error> {
    if let Some(p) = TRACEFS
        .iter()
        .find(|p| Path::new(p).join("instances").is_dir())
    {
        return Ok(PathBuf::from(p));
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 || !Path::new(TRACEFS[0]).join("instances").is_dir() {
        return Err(Error::Setup(format!(
            "no tracefs: not mounted at {} and mounting it failed ({})",
            TRACEFS[0],
            io::Error::last_os_error()
        )));
    }
    Ok(PathBuf::from(TRACEFS[0]))
}

/// Our instance; removed when dropped.
struct Instance {
    dir: PathBuf,
}

impl Instance {
    fn create(root: &Path) -> Result<Self, Error> {
        let dir = root
            .join("instances")
            .join(format!("dmaslab-{}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| {
            Error::Setup(format!(
                "cannot create trace instance {}: {e}",
                dir.display()
            ))
        })?;
        Ok(Instance { dir })
    }

    fn write(&self, file: &str, value: &str) -> io::Result<()> {
        fs::write(self.dir.join(file), value)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.write("tracing_on", "0");
        // rmdir fails with EBUSY while a reader still has a file open; ours are closed by now,
        // but give a slow close a moment.
        for _ in 0..50 {
            if fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "dmaslab: could not remove trace instance {}; remove it with rmdir",
            self.dir.display()
        );
    }
}

/// Sums `overrun:` and `dropped events:` over the instance's CPUs.
fn lost_in_stats(dir: &Path) -> u64 {
    let Ok(cpus) = fs::read_dir(dir.join("per_cpu")) else {
        return 0;
    };
    let mut n = 0;
    for cpu in cpus.flatten() {
        let stats = fs::read_to_string(cpu.path().join("stats")).unwrap_or_default();
        for l in stats.lines() {
            if let Some(v) = l
                .strip_prefix("overrun:")
                .or_else(|| l.strip_prefix("dropped events:"))
            {
                n += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    n
}

/// The count of a `CPU:N [LOST M EVENTS]` line (1 when it prints none).
fn lost_notice(line: &str) -> Option<u64> {
    let rest = line.split_once("[LOST")?.1;
    let n = rest.split_whitespace().next()?;
    Some(n.parse().unwrap_or(1))
}

fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Records. `warn` gets one line per warning (missing DMA events).
pub fn record(opts: &Options, warn: &mut dyn FnMut(&str)) -> Result<Outcome, Error> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::Setup(
            "trace record needs root (it creates a tracefs instance)".into(),
        ));
    }
    let root = tracefs()?;
    let events = root.join("events");
    if let Some(missing) = KMEM_EVENTS
        .iter()
        .find(|e| !events.join(e).join("enable").exists())
    {
        return Err(Error::Setup(format!(
            "this kernel has no trace event {}",
            missing.replace('/', ":")
        )));
    }
    let missing_dma: Vec<String> = DMA_EVENTS
        .iter()
        .filter(|e| !events.join(e).join("enable").exists())
        .map(|e| e.replace('/', ":"))
        .collect();
    if !missing_dma.is_empty() {
        warn(&format!(
            "this kernel lacks {}; DMA mappings will not be traced in full",
            missing_dma.join(", ")
        ));
    }
    STOP.store(false, Ordering::SeqCst);
    catch_signals();
    let inst = Instance::create(&root)?;
    let setup = |e: io::Error, what: &str| Error::Failed(format!("{what}: {e}"));
    inst.write("tracing_on", "0")
        .map_err(|e| setup(e, "tracing_on"))?;
    if inst.write("options/hash-ptr", "0").is_err() {
        warn("the instance has no options/hash-ptr: pointers stay hashed; DMA matching will not work");
    }
    let _ = inst.write("buffer_size_kb", &BUFFER_KB.to_string());
    let enabled: Vec<&str> = KMEM_EVENTS
        .iter()
        .chain(DMA_EVENTS.iter())
        .copied()
        .filter(|e| !missing_dma.contains(&e.replace('/', ":")))
        .collect();
    for e in &enabled {
        inst.write(&format!("events/{e}/enable"), "1")
            .map_err(|err| setup(err, &format!("enable {e}")))?;
    }
    let mut out = File::create(&opts.output)
        .map_err(|e| Error::Failed(format!("cannot create {}: {e}", opts.output.display())))?;
    let io_err = |e: io::Error| Error::Failed(format!("writing {}: {e}", opts.output.display()));
    writeln!(
        out,
        "# dmaslab trace record: Linux {}, instance {}, hash-ptr off\n# events: {}\n# command: {}",
        kernel_release(),
        inst.dir.display(),
        enabled
            .iter()
            .map(|e| e.replace('/', ":"))
            .collect::<Vec<_>>()
            .join(" "),
        if opts.command.is_empty() {
            "(none)".to_string()
        } else {
            opts.command.join(" ")
        }
    )
    .map_err(io_err)?;
    let mut pipe = fs::OpenOptions::new()
        .read(true)
        .custom_flags_nonblock()
        .open(inst.dir.join("trace_pipe"))
        .map_err(|e| setup(e, "open trace_pipe"))?;
    inst.write("tracing_on", "1")
        .map_err(|e| setup(e, "tracing_on"))?;
    let start = Instant::now();
    let mut child: Option<Child> = match opts.command.split_first() {
        Some((prog, args)) => Some(
            Command::new(prog)
                .args(args)
                .spawn()
                .map_err(|e| Error::Failed(format!("cannot run {prog}: {e}")))?,
        ),
        None => None,
    };
    let mut status = None;
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    let deadline = opts
        .seconds
        .map(|s| start + Duration::from_secs_f64(s.max(0.0)));
    loop {
        if STOP.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if let Some(c) = child.as_mut() {
            if let Some(s) = c
                .try_wait()
                .map_err(|e| Error::Failed(format!("wait: {e}")))?
            {
                status = Some(s);
                break;
            }
        }
        bytes += pump(&mut pipe, &mut out, &mut buf, 200).map_err(io_err)?;
    }
    let _ = inst.write("tracing_on", "0");
    // What the buffer still holds.
    loop {
        let n = pump(&mut pipe, &mut out, &mut buf, 0).map_err(io_err)?;
        if n == 0 {
            break;
        }
        bytes += n;
    }
    let seconds = start.elapsed().as_secs_f64();
    let lost_events = lost_in_stats(&inst.dir);
    drop(pipe);
    writeln!(out, "{}{lost_events}", crate::parse::LOST_TRAILER).map_err(io_err)?;
    out.flush().map_err(io_err)?;
    drop(inst);
    let interrupted = STOP.load(Ordering::SeqCst);
    if let Some(mut c) = child {
        if status.is_none() {
            if interrupted {
                // The terminal's SIGINT reached it too; a SIGTERM sent to us alone did not.
                // SAFETY: kill(2) on our own child's pid.
                unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            }
            status = c.wait().ok();
        }
    }
    let text = fs::read_to_string(&opts.output).unwrap_or_default();
    let lost_in_stream = text.lines().filter_map(lost_notice).sum();
    Ok(Outcome {
        bytes,
        lost_events,
        lost_in_stream,
        missing_dma,
        status,
        interrupted,
        seconds,
        instance: format!("dmaslab-{}", std::process::id()),
    })
}

/// Copies what `pipe` has (waiting up to `wait_ms` for data) into `out`; returns the bytes.
fn pump(pipe: &mut File, out: &mut File, buf: &mut [u8], wait_ms: i32) -> io::Result<u64> {
    let mut fds = libc::pollfd {
        fd: pipe.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut fds, 1, wait_ms) };
    if rc <= 0 {
        return Ok(0); // timeout, or EINTR from our own signal handler
    }
    let mut total = 0u64;
    loop {
        match pipe.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                out.write_all(&buf[..n])?;
                total += n as u64;
                if total >= 1 << 22 {
                    return Ok(total);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(total),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(total),
            Err(e) => return Err(e),
        }
    }
}

/// `O_NONBLOCK` on open, so reads of an empty `trace_pipe` return at once.
trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}
