//! Every scenario under `tests/scenarios/` runs on the simulated backend, on virtual time, with
//! the policies in `policies/`, and meets all its expectations.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use autopilot::scenario::{self, RunOptions, Scenario};

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn every_scenario_meets_its_expectations() {
    let files = scenario_files();
    assert!(files.len() >= 6, "expected the scenario files in tests/scenarios, found {files:?}");
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut failures = Vec::new();
    for f in &files {
        let s = Scenario::load(f).unwrap_or_else(|e| panic!("{e}"));
        assert!(!s.expect.is_empty(), "{} has no expectations", f.display());
        let opts = RunOptions { policy_dir: Some(policies.clone()), ..RunOptions::default() };
        let report = scenario::run(&s, opts).await.unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        failures.extend(report.unmet.iter().map(|u| format!("{}: {u}", f.display())));
    }
    assert!(failures.is_empty(), "unmet expectations:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn the_built_in_demo_meets_its_expectations() {
    let s = Scenario::parse(scenario::DEMO, "demo").unwrap();
    let report = scenario::run(&s, RunOptions::default()).await.unwrap();
    assert!(report.unmet.is_empty(), "{:?}", report.unmet);
}

#[tokio::test]
async fn runs_are_deterministic() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/scale-up-on-sustained-load.yaml");
    let s = Scenario::load(&path).unwrap();
    let a = scenario::run(&s, RunOptions::default()).await.unwrap();
    let b = scenario::run(&s, RunOptions::default()).await.unwrap();
    assert_eq!(a.events, b.events);
}

#[tokio::test]
async fn policy_data_overrides_change_the_outcome() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/scale-up-on-sustained-load.yaml");
    let mut s = Scenario::load(&path).unwrap();
    s.policy_data = Some(serde_json::json!({"autopilot": {"scaling": {"max_brokers": 4}}}));
    let report = scenario::run(&s, RunOptions::default()).await.unwrap();
    let actions: Vec<_> =
        report.events.iter().filter(|e| e["type"] == "action" && e["kind"] == "scale_brokers").collect();
    assert_eq!(actions[0]["to"], 4, "capped by max_brokers: {actions:?}");
    assert!(!report.unmet.is_empty(), "the file's expectation of 5 brokers must now fail");
}

/// Detection to first action on the poll path: from a fault to the agent's first action (a
/// notification counts: it is how a failure is first acted on) within one interval plus the
/// heartbeat timeout, on virtual time. The figures go to benches/README.md.
#[tokio::test]
#[allow(clippy::print_stderr)]
async fn healing_acts_within_one_interval_plus_the_heartbeat_timeout() {
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let bound = 30.0 + 30.0;
    let mut measured = Vec::new();
    for f in scenario_files().iter().filter(|f| f.file_name().unwrap().to_string_lossy().starts_with("heal-")) {
        let s = Scenario::load(f).unwrap();
        let opts = RunOptions { policy_dir: Some(policies.clone()), ..RunOptions::default() };
        let report = scenario::run(&s, opts).await.unwrap();
        let at = |e: &serde_json::Value| e["at"].as_f64().unwrap();
        let Some(fault) = report.events.iter().find(|e| e["type"] == "fault").map(at) else { continue };
        let first = report.events.iter().filter(|e| e["type"] == "action" && at(e) >= fault).map(at).next();
        let first = first.unwrap_or_else(|| panic!("{}: no action after the fault at {fault}s", s.name));
        measured.push((s.name.clone(), first - fault));
    }
    assert!(measured.len() >= 7, "{measured:?}");
    for (name, latency) in &measured {
        eprintln!("{name}: first action {latency}s after the fault");
        assert!(*latency <= bound, "{name}: {latency}s > {bound}s");
    }
}
