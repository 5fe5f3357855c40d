//! `autopilot policy test`: run the `test_*` rules of `*_test.rego` files, as `opa test` does,
//! with the same engine the agent uses.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{compile, load_data, Error, Sources};

/// How one test ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    /// The rule was false or undefined.
    Fail,
    Error {
        message: String,
    },
}

/// One test rule and its outcome.
#[derive(Clone, Debug, Serialize)]
pub struct TestResult {
    pub file: PathBuf,
    pub package: String,
    pub name: String,
    pub outcome: Outcome,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// Names of the test rules declared in a Rego source: rule heads at the start of a line whose
/// name begins with `test_`.
fn test_rules(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|line| {
            let name: String = line.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let rest = line[name.len()..].trim_start();
            let is_head =
                rest.starts_with("if") || rest.starts_with('{') || rest.starts_with(":=") || rest.starts_with('=');
            (name.starts_with("test_") && is_head).then_some(name)
        })
        .collect();
    names.dedup();
    names
}

fn package_of(text: &str) -> Option<String> {
    text.lines().find_map(|l| l.trim().strip_prefix("package ").map(|p| p.trim().to_owned()))
}

/// Run every test in `dir` whose `package.name` contains `filter` (all when none).
pub fn run(dir: &Path, filter: Option<&str>) -> Result<Vec<TestResult>, Error> {
    let sources = Sources::read(dir, true)?;
    let data = load_data(&sources, None)?;
    let (engine, _) = compile(&sources, &data)?;
    let mut results = Vec::new();
    for (file, text) in sources.rego.iter().filter(|(p, _)| p.to_string_lossy().ends_with("_test.rego")) {
        let Some(package) = package_of(text) else {
            continue;
        };
        for name in test_rules(text) {
            let full = format!("{package}.{name}");
            if filter.is_some_and(|f| !full.contains(f)) {
                continue;
            }
            let mut e = engine.clone();
            e.set_input(regorus::Value::Undefined);
            let started = Instant::now();
            let outcome = match e.eval_rule(format!("data.{full}")) {
                Ok(regorus::Value::Bool(true)) => Outcome::Pass,
                Ok(_) => Outcome::Fail,
                Err(err) => Outcome::Error { message: err.to_string() },
            };
            results.push(TestResult {
                file: file.clone(),
                package: package.clone(),
                name,
                outcome,
                duration: started.elapsed(),
            });
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_rule_heads_only() {
        let text = "package x_test\ntest_a if {\n  true\n}\ntest_b := true\n  test_not_head if\n# test_comment if\ntest_c {\n}\n";
        assert_eq!(test_rules(text), vec!["test_a", "test_b", "test_c"]);
    }

    #[test]
    fn reports_pass_fail_and_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.rego"), "package kafka.autopilot.p\nimport rego.v1\nx := input.v + 1\n")
            .unwrap();
        std::fs::write(
            dir.path().join("p_test.rego"),
            "package kafka.autopilot.p_test\nimport rego.v1\nimport data.kafka.autopilot.p\n\
             test_pass if { p.x == 2 with input as {\"v\": 1} }\n\
             test_fail if { p.x == 3 with input as {\"v\": 1} }\n\
             test_error if { p.x == 2 with input as {\"v\": \"s\"} }\n",
        )
        .unwrap();
        let results = run(dir.path(), None).unwrap();
        let by_name = |n: &str| results.iter().find(|r| r.name == n).map(|r| r.outcome.clone());
        assert_eq!(by_name("test_pass"), Some(Outcome::Pass));
        assert_eq!(by_name("test_fail"), Some(Outcome::Fail));
        assert!(matches!(by_name("test_error"), Some(Outcome::Error { .. }) | Some(Outcome::Fail)));
        assert_eq!(run(dir.path(), Some("test_pass")).unwrap().len(), 1);
    }
}
