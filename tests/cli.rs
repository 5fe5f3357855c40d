//! The `autopilot` binary as an operator uses it: simulate, policy test and eval, check-config.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn autopilot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autopilot"))
        .args(args)
        .current_dir(root())
        .env_remove("AUTOPILOT_LOG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

#[test]
fn simulate_json_shows_the_scale_up_with_its_rule_after_the_hold() {
    let out = autopilot(&["simulate", "--scenario", "tests/scenarios/scale-up-on-sustained-load.yaml", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let events = json_lines(&out);
    for e in &events {
        for field in ["at", "cluster", "type"] {
            assert!(e.get(field).is_some(), "{field} missing in {e}");
        }
    }
    let scale: Vec<&Value> = events.iter().filter(|e| e["type"] == "action" && e["kind"] == "scale_brokers").collect();
    assert_eq!(scale.len(), 1, "{scale:?}");
    let a = scale[0];
    assert_eq!((a["from"].as_u64(), a["to"].as_u64()), (Some(3), Some(5)));
    assert_eq!(a["reason"], "scale_up_sustained_load");
    assert_eq!(a["cluster"], "prod-kafka-01");
    let at = a["at"].as_f64().unwrap();
    assert!((300.0..=420.0).contains(&at), "acted at {at}s");
    let decision = events.iter().find(|e| e["type"] == "decision").unwrap();
    assert_eq!(decision["reason"], "scale_up_sustained_load");
    assert!(events
        .iter()
        .any(|e| e["type"] == "outcome" && e["kind"] == "scale_brokers" && e["result"] == "succeeded"));
}

#[test]
fn simulate_exits_non_zero_and_names_every_unmet_expectation() {
    let out = autopilot(&["simulate", "--scenario", "tests/fixtures/unmet-expectation.yaml", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(r#"{"kind":"scale_brokers","to":7}"#), "{err}");
    assert!(err.contains("1 of 2 expectations unmet"), "{err}");
    assert!(!err.contains(r#""from":3,"kind":"scale_brokers","to":5}"#) || err.contains("other actions seen"), "{err}");
}

#[test]
fn demo_runs_and_reports_in_plain_text() {
    let out = autopilot(&["demo", "--speed", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("ACTION     scale_brokers drain_timeout=\"30m\" from=3 to=5"), "{text}");
    assert!(text.contains("from=5 remove=[4,3] to=3"), "the scale-down names its brokers: {text}");
    assert!(text.contains("expectations met") && !text.contains("unmet"), "{text}");
}

#[test]
fn policy_test_runs_the_rego_unit_tests() {
    let out = autopilot(&["policy", "test", "policies"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("test_scales_3_to_5_once_load_held_5_minutes: PASS"), "{text}");
    assert!(text.contains(" passed, 0 failed"), "{text}");
}

#[test]
fn policy_test_fails_on_a_failing_rule() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["scaling.rego", "scaling_test.rego", "data.yaml"] {
        std::fs::copy(root().join("policies").join(f), dir.path().join(f)).unwrap();
    }
    // Make the policy wrong: scale after 4 minutes instead of 5.
    let data = std::fs::read_to_string(dir.path().join("data.yaml"))
        .unwrap()
        .replace("hold_seconds: 300", "hold_seconds: 240");
    std::fs::write(dir.path().join("data.yaml"), data).unwrap();
    let out = autopilot(&["policy", "test", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("test_no_scale_before_5_minutes: FAIL"), "{}", stdout(&out));
}

#[test]
fn policy_eval_prints_the_decisions_for_a_dumped_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.json");
    let out = autopilot(&[
        "simulate",
        "--scenario",
        "tests/scenarios/scale-up-on-sustained-load.yaml",
        "--json",
        "--dump-input",
        input.to_str().unwrap(),
        "--input-at",
        "5m30s",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&input).unwrap()).unwrap();
    assert!(doc["cluster"]["conditions"]["cpu_high"]["held_seconds"].as_f64().unwrap() >= 300.0, "{doc}");
    let out = autopilot(&["policy", "eval", "--input", input.to_str().unwrap(), "--policies", "policies"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let decisions = json_lines(&out);
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(decisions[0]["rule"], "scale_up_sustained_load");
    assert_eq!(decisions[0]["request"]["to"], 5);
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("autopilot.yaml");
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn check_config_accepts_a_good_file_and_names_the_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let policies = root().join("policies");
    let good = format!(
        "region: eu-west-1\npolicy: {{dir: {}}}\nclusters:\n  - {{name: prod-kafka-01, namespace: kafka, node_pool: brokers, backend: simulated}}\n",
        policies.display()
    );
    let out = autopilot(&["check-config", "--config", write_config(dir.path(), &good).to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("dry_run: true"), "new installs are dry-run: {}", stdout(&out));
    let bad = good.replace("region: eu-west-1", "region: eu-west-1\ninterval: often");
    let path = write_config(dir.path(), &bad);
    let out = autopilot(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("interval") && err.contains(path.to_str().unwrap()), "{err}");
}

/// Kafka's reassignment JSON and a broker list for a synthetic cluster, written to `dir`.
fn kafka_files(dir: &Path, brokers: u32, partitions: u32) -> (PathBuf, PathBuf) {
    use autopilot::planner::synthetic::{problem, Shape};
    let p = problem(&Shape::new(brokers, 3, partitions));
    let current = serde_json::json!({
        "version": 1,
        "partitions": p.partitions.iter().map(|x| serde_json::json!({"topic": x.topic, "partition": x.partition, "replicas": x.replicas})).collect::<Vec<_>>(),
    });
    let list: Vec<Value> = p.brokers.iter().map(|b| serde_json::json!({"id": b.id, "rack": b.rack})).collect();
    let (a, b) = (dir.join("current.json"), dir.join("brokers.json"));
    std::fs::write(&a, current.to_string()).unwrap();
    std::fs::write(&b, Value::Array(list).to_string()).unwrap();
    (a, b)
}

#[test]
fn plan_writes_a_kafka_reassignment_that_fills_new_brokers() {
    let dir = tempfile::tempdir().unwrap();
    let (current, brokers) = kafka_files(dir.path(), 6, 600);
    let output = dir.path().join("plan.json");
    let (c, b, o) = (current.to_str().unwrap(), brokers.to_str().unwrap(), output.to_str().unwrap());
    let out = autopilot(&["plan", "--assignment", c, "--brokers", b, "--add-brokers", "3", "--output", o]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "added brokers:     7 (rack-0), 8 (rack-1), 9 (rack-2)",
        "replica moves:     600 (lower bound 600)",
        "rack violations:   before 0, after 0",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(text.contains("replica spread:    before 300, after 0"), "{text}");
    let plan: Value = serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    assert_eq!(plan["version"], 1);
    let moved = plan["partitions"].as_array().unwrap();
    assert!(moved.iter().all(|p| p["replicas"].as_array().unwrap().len() == 3 && p["log_dirs"][0] == "any"));
    let on_new = moved.iter().flat_map(|p| p["replicas"].as_array().unwrap()).filter(|r| r.as_i64().unwrap() > 6);
    assert_eq!(on_new.count(), 600, "each new broker gets 200 of the 1800 replicas");

    let out = autopilot(&["plan", "--assignment", c, "--brokers", b, "--remove-brokers", "6", "--output", o, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let figures = json_lines(&out).remove(0);
    assert_eq!(figures["stats"]["replica_moves"], 300, "{figures}");
    assert_eq!(figures["stats"]["unplaced"], 0);
}

#[test]
fn plan_names_what_is_wrong_with_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let (current, brokers) = kafka_files(dir.path(), 3, 30);
    let output = dir.path().join("plan.json");
    let (c, b, o) = (current.to_str().unwrap(), brokers.to_str().unwrap(), output.to_str().unwrap());
    let out = autopilot(&["plan", "--assignment", c, "--brokers", b, "--remove-brokers", "9", "--output", o]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--remove-brokers: broker 9 is not in"), "{}", stderr(&out));
    std::fs::write(&brokers, r#"[{"id":1,"rack":"a"},{"id":2,"rack":"b"}]"#).unwrap();
    let out = autopilot(&["plan", "--assignment", c, "--brokers", b, "--output", o]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("replica on broker 3, which is not in the broker list"), "{}", stderr(&out));
    // Three brokers cannot give up one and keep three racks for replication factor 3.
    std::fs::write(&brokers, r#"[{"id":1,"rack":"a"},{"id":2,"rack":"b"},{"id":3,"rack":"c"}]"#).unwrap();
    let out = autopilot(&["plan", "--assignment", c, "--brokers", b, "--remove-brokers", "3", "--output", o]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("misses a hard goal: 30 replicas without a valid broker"), "{}", stderr(&out));
}
