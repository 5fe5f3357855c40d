//! The Prometheus rules in `rules/`: `promtool check rules` on every rule file, `promtool test
//! rules` on every unit-test file, and checks of what the unit tests cover: every alert has a
//! case where it fires (for each of its severities) and one where it does not, every recording
//! rule is evaluated by a `promql_expr_test`, and every Kafka alert reaches Alertmanager with the
//! `strimzi_io_cluster` and `namespace` labels the agent's webhook maps alerts to clusters by.
//!
//! Needs `promtool` (Debian's `prometheus` package), which `scripts/stack.sh up` installs; the
//! stack itself need not be running.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_yaml::Value;

/// Labels the agent's Alertmanager webhook maps an alert to a Kafka cluster by (its default
/// `alertmanager.cluster_labels`).
const CLUSTER_LABELS: [&str; 2] = ["strimzi_io_cluster", "namespace"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Files directly in `dir` whose name ends with `suffix`, relative to the repository root, sorted.
fn files(dir: &str, suffix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(suffix))
        .map(|p| format!("{dir}/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    out.sort();
    out
}

fn rule_files() -> Vec<String> {
    let f = files("rules", ".yaml");
    assert!(!f.is_empty(), "no rule files rules/*.yaml");
    f
}

fn test_files() -> Vec<String> {
    let f = files("rules/tests", ".yml");
    assert!(!f.is_empty(), "no promtool test files rules/tests/*.yml");
    f
}

/// Run promtool from the repository root; panic with its output unless it succeeds.
fn promtool(args: &[&str], files: &[String]) -> String {
    let out = Command::new("promtool").args(args).args(files).current_dir(root()).output().unwrap_or_else(|e| {
        panic!(
            "cannot run promtool ({e}): it is not installed or not on PATH. Run `scripts/stack.sh up`, which installs \
             it (Debian's `prometheus` package), or `apt-get install prometheus`"
        )
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "`promtool {} {}` failed ({}):\n{text}", args.join(" "), files.join(" "), out.status);
    text
}

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn seq<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_sequence).map_or(&[], Vec::as_slice)
}

fn string(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// One alerting or recording rule of a rule file.
#[derive(Debug)]
struct Rule {
    file: String,
    alert: Option<String>,
    record: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn string_map(v: &Value, key: &str) -> BTreeMap<String, String> {
    v.get(key)
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
                    };
                    (k.as_str().unwrap().to_owned(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn rules() -> Vec<Rule> {
    let mut out = Vec::new();
    for file in rule_files() {
        let doc = load(&file);
        let groups = seq(&doc, "groups");
        assert!(!groups.is_empty(), "{file} has no rule groups");
        for group in groups {
            for r in seq(group, "rules") {
                out.push(Rule {
                    file: file.clone(),
                    alert: string(r, "alert"),
                    record: string(r, "record"),
                    labels: string_map(r, "labels"),
                    annotations: string_map(r, "annotations"),
                });
            }
        }
    }
    out
}

/// One expected alert of an `alert_rule_test` (exp_labels without `alertname`, which promtool
/// adds).
#[derive(Debug)]
struct Expected {
    labels: BTreeMap<String, String>,
}

/// What the unit tests check: per alert name, the cases (file, test, eval_time) and the alerts
/// they expect; and the expressions of the `promql_expr_test`s.
#[derive(Debug, Default)]
struct Coverage {
    cases: BTreeMap<String, Vec<(String, Vec<Expected>)>>,
    exprs: Vec<String>,
}

fn coverage() -> Coverage {
    let mut c = Coverage::default();
    for file in test_files() {
        let doc = load(&file);
        for test in seq(&doc, "tests") {
            let name = string(test, "name").unwrap_or_default();
            for case in seq(test, "alert_rule_test") {
                let alertname = string(case, "alertname")
                    .unwrap_or_else(|| panic!("{file}, {name}: an alert_rule_test without alertname"));
                let at = case.get("eval_time").and_then(Value::as_str).unwrap_or_default();
                let expected =
                    seq(case, "exp_alerts").iter().map(|e| Expected { labels: string_map(e, "exp_labels") }).collect();
                c.cases.entry(alertname).or_default().push((format!("{file}, {name}, at {at}"), expected));
            }
            for e in seq(test, "promql_expr_test") {
                c.exprs.push(string(e, "expr").unwrap_or_default());
            }
        }
    }
    c
}

#[test]
fn promtool_checks_every_rule_file() {
    let files = rule_files();
    let out = promtool(&["check", "rules"], &files);
    for f in &files {
        assert!(out.contains(&format!("Checking {f}")), "promtool did not check {f}:\n{out}");
    }
    println!("{out}");
}

#[test]
fn promtool_unit_tests_pass() {
    let files = test_files();
    let out = promtool(&["test", "rules"], &files);
    for f in &files {
        assert!(out.contains(&format!("Unit Testing:  {f}")), "promtool did not run {f}:\n{out}");
    }
    assert!(!out.contains("FAILED"), "promtool reported failures:\n{out}");
    println!("{out}");
}

#[test]
fn every_alert_has_a_case_where_it_fires_and_one_where_it_does_not() {
    let cov = coverage();
    let mut problems = Vec::new();
    let mut alerts = BTreeSet::new();
    for r in rules() {
        let Some(alert) = &r.alert else { continue };
        alerts.insert(alert.clone());
        let cases = cov.cases.get(alert).map_or(&[][..], Vec::as_slice);
        if !cases.iter().any(|(_, exp)| exp.is_empty()) {
            problems.push(format!("{alert} ({}): no alert_rule_test where it must not fire (exp_alerts: [])", r.file));
        }
        let severity = r.labels.get("severity").cloned().unwrap_or_default();
        let fires = cases.iter().flat_map(|(_, exp)| exp).any(|e| e.labels.get("severity") == Some(&severity));
        if !fires {
            problems
                .push(format!("{alert} ({}): no alert_rule_test where it fires with severity {severity:?}", r.file));
        }
    }
    for name in cov.cases.keys() {
        if !alerts.contains(name) {
            problems.push(format!("the unit tests test {name}, which no rule file defines"));
        }
    }
    assert!(!alerts.is_empty(), "no alerting rules in rules/*.yaml");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_recording_rule_is_evaluated_by_a_promql_expr_test_and_follows_the_naming_convention() {
    let cov = coverage();
    let mut problems = Vec::new();
    let mut records = 0;
    for r in rules() {
        let Some(record) = &r.record else { continue };
        records += 1;
        // level:metric:operations
        let parts: Vec<&str> = record.split(':').collect();
        let ok = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        if !ok {
            problems.push(format!("{record} ({}): not named level:metric:operations", r.file));
        }
        if !cov.exprs.iter().any(|e| e.contains(record.as_str())) {
            problems.push(format!("{record} ({}): no promql_expr_test evaluates it", r.file));
        }
    }
    assert!(records > 0, "no recording rules in rules/*.yaml");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Kafka-side alerts are named `Kafka...`; the others, about the agent, `Autopilot...`.
#[test]
fn every_kafka_alert_carries_the_cluster_labels_the_webhook_maps_by() {
    let cov = coverage();
    let mut problems = Vec::new();
    let mut kafka = 0;
    for r in rules() {
        let Some(alert) = &r.alert else { continue };
        if !alert.starts_with("Kafka") {
            if !alert.starts_with("Autopilot") {
                problems.push(format!(
                    "{alert} ({}): name it Kafka... (a Kafka cluster's) or Autopilot... (the agent's)",
                    r.file
                ));
            }
            continue;
        }
        kafka += 1;
        if !cov.cases.get(alert).into_iter().flatten().any(|(_, exp)| !exp.is_empty()) {
            problems.push(format!("{alert}: no unit test shows it firing, so its labels are unchecked"));
        }
        for (case, exp) in cov.cases.get(alert).into_iter().flatten() {
            for e in exp {
                for label in CLUSTER_LABELS {
                    if e.labels.get(label).is_none_or(String::is_empty) {
                        problems.push(format!("{alert} in {case}: fires without the {label} label: {:?}", e.labels));
                    }
                }
            }
        }
    }
    assert!(kafka > 0, "no Kafka alerts in rules/*.yaml");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_alert_has_a_severity_a_summary_a_description_and_a_runbook_in_the_readme() {
    let readme = std::fs::read_to_string(root().join("rules/README.md"))
        .unwrap_or_else(|e| panic!("cannot read rules/README.md: {e}"));
    // GitHub's anchors of the README's headings: lower case, spaces to '-', punctuation dropped.
    let anchors: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('#'))
        .map(|h| {
            h.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let mut problems = Vec::new();
    for r in rules() {
        let Some(alert) = &r.alert else { continue };
        match r.labels.get("severity").map(String::as_str) {
            Some("critical" | "warning" | "info") => {}
            other => problems.push(format!("{alert} ({}): severity {other:?}, want critical, warning or info", r.file)),
        }
        for a in ["summary", "description", "runbook_url"] {
            if r.annotations.get(a).is_none_or(|v| v.trim().is_empty()) {
                problems.push(format!("{alert} ({}): no {a} annotation", r.file));
            }
        }
        let want = format!("rules/README.md#{}", alert.to_lowercase());
        match r.annotations.get("runbook_url") {
            Some(url) if *url == want => {}
            other => problems.push(format!("{alert} ({}): runbook_url {other:?}, want {want:?}", r.file)),
        }
        if !anchors.contains(&alert.to_lowercase()) {
            problems.push(format!("{alert}: no heading `{alert}` in rules/README.md (its runbook)"));
        }
        if !readme.contains(&format!("| `{alert}` |")) {
            problems.push(format!("{alert}: not in the table of rules/README.md"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
