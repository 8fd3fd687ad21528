//! `dmaslab demo` end to end: the table, and `--json` with the interface's fields and outcomes.

use serde_json::Value;
use std::process::Command;

fn dmaslab(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dmaslab"))
        .args(args)
        .output()
        .expect("run dmaslab");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn json_has_every_field_and_only_b_direct_corrupts() {
    let (code, stdout, stderr) = dmaslab(&["demo", "--json"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("valid JSON");
    let scenarios = v["scenarios"].as_array().expect("scenarios array");
    assert_eq!(scenarios.len(), 10);
    let mut policies = std::collections::BTreeSet::new();
    for s in scenarios {
        for field in [
            "name",
            "policy",
            "coherent",
            "corrupted",
            "value_expected",
            "value_read",
            "neighbour_intact",
            "bounced",
            "findings",
        ] {
            assert!(s.get(field).is_some(), "missing {field} in {s}");
        }
        let name = s["name"].as_str().unwrap();
        let policy = s["policy"].as_str().unwrap();
        policies.insert(policy.to_string());
        let bug = name.starts_with("B-kmalloc-direct/");
        assert_eq!(s["corrupted"], bug, "{name}");
        let findings = s["findings"].as_array().unwrap();
        assert_eq!(!findings.is_empty(), bug, "{name}: {findings:?}");
        for f in findings {
            assert_eq!(f["kind"], "a", "{name}: {f}");
            assert!(f["subject"]["addr"].is_string() && f["other"]["addr"].is_string());
        }
        if !bug {
            assert_eq!(s["value_read"], s["value_expected"], "{name}");
            assert_eq!(s["neighbour_intact"], true, "{name}");
        }
        assert_eq!(s["bounced"], policy == "C", "{name}");
        assert_eq!(s["coherent"], name.starts_with("coherent"), "{name}");
    }
    assert_eq!(
        policies.into_iter().collect::<Vec<_>>(),
        ["A", "B", "C"],
        "every policy appears"
    );
    // Both directions of corruption.
    let b = |suffix: &str| {
        scenarios
            .iter()
            .find(|s| s["name"] == format!("B-kmalloc-direct/{suffix}"))
            .unwrap()
            .clone()
    };
    assert_ne!(
        b("stale-writeback")["value_read"],
        b("stale-writeback")["value_expected"]
    );
    assert_eq!(b("lost-neighbour-write")["neighbour_intact"], false);
}

#[test]
fn table_names_every_scenario() {
    let (code, stdout, stderr) = dmaslab(&["demo"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    for name in [
        "B-kmalloc-direct",
        "B-dma-interface",
        "A/",
        "C/",
        "coherent-device",
    ] {
        assert!(stdout.contains(name), "{name} missing:\n{stdout}");
    }
    assert_eq!(stdout.matches("CORRUPTED").count(), 2, "{stdout}");
    assert!(stdout.contains("(a) shared-cache-line"), "{stdout}");
}
