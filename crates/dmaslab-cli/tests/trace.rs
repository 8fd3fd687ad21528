//! `dmaslab trace` end to end: replay's output and JSON fields, bad input (exit 2, one line
//! naming line and field, nothing on stdout), and a live recording where root and tracefs are
//! available (otherwise a `SKIPPED:` line).

mod cli;

use cli::{assert_rejected, dmaslab, text};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn fixture(name: &str) -> String {
    format!(
        "{}/../dmaslab-trace/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn skip(why: &str) {
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {why}");
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("dmaslab-cli-trace-{}-{name}", std::process::id()))
}

const GOOD: &str = " t-1 [000] ..... 1.000000: kmalloc: call_site=f+0x1/0x9 ptr=ffff888100001000 bytes_req=8 bytes_alloc=8 gfp_flags=GFP_KERNEL node=-1 accounted=false\n";

#[test]
fn replay_json_has_the_issue_fields() {
    let input = format!(
        "{GOOD} t-1 [000] ..... 1.500000: sched_switch: prev_comm=a\n t-1 [000] ..... 2.000000: kfree: call_site=g+0x1/0x9 ptr=ffff888100009000\n"
    );
    let out = dmaslab(
        &["trace", "replay", "-", "--json", "--minalign", "64,128"],
        &input,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "events",
        "lost_events",
        "unmatched_frees",
        "duration_s",
        "kernel_class_match",
        "policies",
        "a_cost_call_sites",
        "dma",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["events"], 2);
    assert_eq!(v["unmatched_frees"], 1);
    assert_eq!(
        v["unknown_events"], 1,
        "sched_switch is skipped and counted"
    );
    assert_eq!(v["duration_s"], 1.0);
    assert!(v["dma"].is_null());
    let policies = v["policies"].as_array().unwrap();
    let names: Vec<(String, u64)> = policies
        .iter()
        .map(|p| {
            for k in [
                "policy",
                "dma_minalign",
                "peak_pages",
                "mean_pages",
                "final_pages",
            ] {
                assert!(p.get(k).is_some(), "policy entry lacks {k}");
            }
            (
                p["policy"].as_str().unwrap().to_string(),
                p["dma_minalign"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("A".into(), 64),
            ("A".into(), 128),
            ("B".into(), 64),
            ("C".into(), 64)
        ]
    );
}

#[test]
fn replay_text_svg_and_gzip_fixture() {
    let svg = tmp("pages.svg");
    let gz = fixture("real-fs-pipe-tcp.trace.gz");
    let out = dmaslab(
        &["trace", "replay", &gz, "--svg", svg.to_str().unwrap()],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("policy  line  peak pages"), "{stdout}");
    assert!(stdout.contains("DMA: no dma:* events in this trace."));
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("A, 64-byte lines: peak"));
    let _ = std::fs::remove_file(svg);
    let out = dmaslab(&["trace", "replay", &fixture("synthetic-dma.trace")], "");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("linear-map offset 0xffff888000000000"),
        "{stdout}"
    );
}

#[test]
fn malformed_traces_exit_2_with_one_line_naming_line_and_field() {
    let cases = [
        (
            format!("{GOOD}{}", &GOOD[..60]),
            "stdin: line 2: field `bytes_req`: missing",
        ),
        (
            format!("{GOOD}{}", GOOD.replace("bytes_req=8", "bytes_req=eight")),
            "stdin: line 2: field `bytes_req`: not a number: \"eight\"",
        ),
        (
            format!("{GOOD}{}", GOOD.replace(" bytes_alloc=8", "")),
            "stdin: line 2: field `bytes_alloc`: missing",
        ),
        (
            format!("# c\n{GOOD} t-1 [000] ..... 1.0x: kfree: ptr=0\n"),
            "stdin: line 3: field `timestamp`",
        ),
    ];
    for (input, want) in cases {
        let out = dmaslab(&["trace", "replay", "-", "--json"], &input);
        assert_rejected(&out, want);
    }
    assert_rejected(
        &dmaslab(&["trace", "replay", "-", "--minalign", "48"], GOOD),
        "--minalign: 48 is not one of 32, 64, 128, 256",
    );
    assert_rejected(
        &dmaslab(&["trace", "replay", "/nonexistent/trace"], ""),
        "cannot read /nonexistent/trace",
    );
}

fn live_prerequisites() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root");
    }
    let has_tracefs = Path::new("/sys/kernel/tracing/instances").is_dir()
        || Command::new("mount")
            .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
            .status()
            .is_ok_and(|s| s.success());
    (!has_tracefs).then_some("no tracefs")
}

fn our_instances() -> Vec<String> {
    std::fs::read_dir("/sys/kernel/tracing/instances")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("dmaslab-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn record_a_short_command_then_replay_it() {
    if let Some(why) = live_prerequisites() {
        return skip(&format!("trace record live test: {why}"));
    }
    let file = tmp("live.trace");
    let out = dmaslab(
        &[
            "trace",
            "record",
            "-o",
            file.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "ls -R /usr/share/doc > /dev/null; echo x | gzip | gzip -d",
        ],
        "",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("lost events:"), "{stderr}");
    let rec = std::fs::read_to_string(&file).unwrap();
    assert!(rec.starts_with("# dmaslab trace record: Linux "));
    assert!(rec.contains("# dmaslab: lost_events="));
    assert!(
        rec.contains(": kmalloc: call_site="),
        "no kmalloc event recorded"
    );
    let out = dmaslab(&["trace", "replay", file.to_str().unwrap(), "--json"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["events"].as_u64().unwrap() > 0);
    assert_eq!(
        v["hashed_pointers"], false,
        "hash-ptr is off in the instance"
    );
    let _ = std::fs::remove_file(&file);
}

#[test]
fn record_stops_on_sigint_and_removes_its_instance() {
    if let Some(why) = live_prerequisites() {
        return skip(&format!("trace record SIGINT test: {why}"));
    }
    let file = tmp("sigint.trace");
    let child = Command::new(env!("CARGO_BIN_EXE_dmaslab"))
        .args([
            "trace",
            "record",
            "-o",
            file.to_str().unwrap(),
            "--seconds",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let name = format!("dmaslab-{}", child.id());
    let dir = Path::new("/sys/kernel/tracing/instances").join(&name);
    for _ in 0..100 {
        if dir.is_dir() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // hash-ptr is turned off right after the instance appears; give it a moment.
    let mut hash_ptr = String::new();
    for _ in 0..100 {
        hash_ptr = std::fs::read_to_string(dir.join("options/hash-ptr")).unwrap_or_default();
        if hash_ptr.trim() == "0" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(hash_ptr.trim(), "0", "pointer hashing off in the instance");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopped by a signal"), "{stderr}");
    assert!(!dir.exists(), "instance {name} removed");
    assert!(!our_instances().contains(&name));
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("# dmaslab: lost_events="));
    let _ = std::fs::remove_file(&file);
}
