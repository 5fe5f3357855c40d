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
