//! The harness end to end at a tiny scale, on the debug binaries: every scenario it starts answers, and the
//! report carries the figures the README's table is made of.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::process::Command;

#[test]
fn a_small_run_reports_every_scenario_against_the_baseline() {
    let report = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_omadm-load"))
        .args(["--scenarios", "embedded,cluster", "--gateways", "1", "--devices", "20", "--connections", "4"])
        .args(["--seconds", "1", "--report"])
        .arg(report.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "omadm-load failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(report.path()).unwrap()).unwrap();
    let baseline = &report["baseline"];
    assert!(baseline["requests"].as_u64().unwrap() > 0, "{baseline}");
    assert_eq!(baseline["statuses"].as_object().unwrap().keys().collect::<Vec<_>>(), ["200"], "{baseline}");
    let minimal = &report["details"]["embedded"]["minimal"];
    assert!(minimal["requests"].as_u64().unwrap() > 0, "{minimal}");
    assert_eq!(
        minimal["statuses"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["200"],
        "only Package#2s: {minimal}"
    );
    let lines: Vec<&str> =
        report["lines"].as_array().unwrap().iter().map(|line| line["scenario"].as_str().unwrap()).collect();
    for scenario in
        ["1 minimal session, embedded", "2 typical session, embedded (devsim)", "3 minimal, 1 gateway(s) + Redis"]
    {
        assert!(lines.contains(&scenario), "{scenario} missing from {lines:?}");
    }
    for line in report["lines"].as_array().unwrap() {
        assert!(line["rate_per_s"].as_f64().unwrap() > 0.0, "{line}");
        assert!(line["ratio_to_baseline"].as_f64().unwrap() > 0.0, "{line}");
    }
    let cluster = &report["details"]["cluster"]["minimal_1_gateways"]["redis"];
    assert!(cluster["client_round_trips_per_exchange"].as_f64().unwrap() >= 1.0, "{cluster}");
    assert!(cluster["commands_per_exchange"].as_f64().unwrap() >= 1.0, "{cluster}");
    assert!(stdout.contains("ratio"), "the table is printed: {stdout}");
}
