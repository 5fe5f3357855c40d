//! Policy: evaluate the operator's Rego policies with regorus. Pure apart from reading the
//! policy directory on (re)load.
//!
//! Policies are compiled once into a [`PolicySet`]; each evaluation clones its engine and runs
//! under a time limit. [`PolicyStore`] reloads on change and keeps the last good set when a
//! change does not compile.

pub mod input;
pub mod testing;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;
use serde::Serialize;

use crate::plan::{Decision, Request};
use crate::snapshot::{Comparison, ConditionSpec, Metric};
pub use input::{input, Alert, PolicyInput};

/// Prefix of the packages whose `decisions` the agent evaluates.
pub const PACKAGE_ROOT: &str = "data.kafka.autopilot.";

/// What went wrong loading or evaluating policies.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read policy file {}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("no policy files (*.rego) in {}", dir.display())]
    NoPolicies { dir: PathBuf },
    #[error("policy does not compile: {message}")]
    Compile { message: String },
    #[error("policy data file {}: {message}", path.display())]
    Data { path: PathBuf, message: String },
    #[error("policy data `autopilot.{field}`: {message}")]
    Settings { field: String, message: String },
    #[error("failed to build policy input: {message}")]
    Input { message: String },
    #[error("evaluation of {package}.decisions failed: {message}")]
    Evaluate { package: String, message: String },
    #[error("{package}: a decision of rule {rule:?} is malformed: {message}")]
    Decision { package: String, rule: String, message: String },
}

impl Error {
    /// Bounded label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Read { .. } => "read",
            Error::NoPolicies { .. } => "no_policies",
            Error::Compile { .. } => "compile",
            Error::Data { .. } => "data",
            Error::Settings { .. } => "settings",
            Error::Input { .. } => "input",
            Error::Evaluate { .. } => "evaluate",
            Error::Decision { .. } => "decision",
        }
    }
}

/// Settings the Rust side reads from the policy data (under `data.autopilot`).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Conditions whose holding time the snapshot computes.
    pub conditions: Vec<ConditionSpec>,
    /// A broker unseen this long is Failed.
    pub heartbeat_timeout: Duration,
}

/// Policy sources read from a directory.
#[derive(Debug, Default)]
struct Sources {
    rego: Vec<(PathBuf, String)>,
    data: Vec<(PathBuf, String)>,
}

impl Sources {
    fn read(dir: &Path, with_tests: bool) -> Result<Self, Error> {
        let read_err = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Read { path, source }
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read_err(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        let mut out = Sources::default();
        for path in entries {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            let is_test = name.ends_with("_test.rego");
            if name.ends_with(".rego") && (with_tests || !is_test) {
                let text = std::fs::read_to_string(&path).map_err(read_err(&path))?;
                out.rego.push((path, text));
            } else if name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json") {
                let text = std::fs::read_to_string(&path).map_err(read_err(&path))?;
                out.data.push((path, text));
            }
        }
        if out.rego.is_empty() {
            return Err(Error::NoPolicies { dir: dir.to_owned() });
        }
        Ok(out)
    }

    fn embedded() -> Self {
        let mut out = Sources::default();
        for (name, text) in EMBEDDED {
            let entry = (PathBuf::from(name), (*text).to_owned());
            if name.ends_with(".rego") {
                out.rego.push(entry);
            } else {
                out.data.push(entry);
            }
        }
        out
    }

    fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.rego.hash(&mut h);
        self.data.hash(&mut h);
        h.finish()
    }
}

/// The policies of `policies/`, built into the binary (used by `demo` and when no policy
/// directory is given to `simulate`).
pub const EMBEDDED: &[(&str, &str)] = &[
    ("policies/scaling.rego", include_str!("../../policies/scaling.rego")),
    ("policies/healing.rego", include_str!("../../policies/healing.rego")),
    ("policies/certs.rego", include_str!("../../policies/certs.rego")),
    ("policies/backup.rego", include_str!("../../policies/backup.rego")),
    ("policies/data.yaml", include_str!("../../policies/data.yaml")),
];

/// Merge `overlay` into `base`, objects key by key, anything else replaced.
pub fn merge(base: &mut serde_json::Value, overlay: &serde_json::Value) {
    match (base, overlay) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn load_data(sources: &Sources, overrides: Option<&serde_json::Value>) -> Result<serde_json::Value, Error> {
    let mut data = serde_json::Value::Object(serde_json::Map::new());
    for (path, text) in &sources.data {
        let doc: serde_json::Value = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(text).map_err(|e| Error::Data { path: path.clone(), message: e.to_string() })?
        } else {
            serde_yaml::from_str(text).map_err(|e| Error::Data { path: path.clone(), message: e.to_string() })?
        };
        if !doc.is_object() {
            return Err(Error::Data { path: path.clone(), message: "top level must be a mapping".into() });
        }
        merge(&mut data, &doc);
    }
    if let Some(o) = overrides {
        merge(&mut data, o);
    }
    Ok(data)
}

fn settings(data: &serde_json::Value) -> Result<Settings, Error> {
    let bad = |field: &str, message: String| Error::Settings { field: field.to_owned(), message };
    let root = data.get("autopilot");
    let mut conditions = Vec::new();
    if let Some(map) = root.and_then(|r| r.get("conditions")) {
        let map = map.as_object().ok_or_else(|| bad("conditions", "must be a mapping of name to condition".into()))?;
        for (name, spec) in map {
            let field = format!("conditions.{name}");
            let metric: Metric = spec
                .get("metric")
                .cloned()
                .and_then(|m| serde_json::from_value(m).ok())
                .ok_or_else(|| bad(&field, "`metric` must be one of cpu, memory, disk, network".into()))?;
            let (comparison, threshold) = match (spec.get("above"), spec.get("below")) {
                (Some(v), None) => (Comparison::Above, v),
                (None, Some(v)) => (Comparison::Below, v),
                _ => return Err(bad(&field, "needs exactly one of `above` or `below`".into())),
            };
            let threshold = threshold.as_f64().ok_or_else(|| bad(&field, "threshold must be a number".into()))?;
            conditions.push(ConditionSpec { name: name.clone(), metric, comparison, threshold });
        }
    }
    let heartbeat = root
        .and_then(|r| r.get("brokers"))
        .and_then(|b| b.get("heartbeat_timeout_seconds"))
        .map(|v| {
            v.as_f64()
                .filter(|s| *s > 0.0)
                .ok_or_else(|| bad("brokers.heartbeat_timeout_seconds", "must be a positive number".into()))
        })
        .transpose()?
        .unwrap_or(30.0);
    Ok(Settings { conditions, heartbeat_timeout: Duration::from_secs_f64(heartbeat) })
}

fn timer(limit: Duration) -> ExecutionTimerConfig {
    // Check the clock every 64 work units: cheap, and a runaway rule stops within the limit.
    ExecutionTimerConfig { limit, check_interval: NonZeroU32::MIN.saturating_add(63) }
}

fn regorus_value(json: &serde_json::Value) -> Result<regorus::Value, String> {
    use serde::Deserialize;
    regorus::Value::deserialize(json).map_err(|e| e.to_string())
}

fn compile(sources: &Sources, data: &serde_json::Value) -> Result<(regorus::Engine, Vec<String>), Error> {
    let mut engine = regorus::Engine::new();
    let mut packages = Vec::new();
    for (path, text) in &sources.rego {
        let package = engine
            .add_policy(path.display().to_string(), text.clone())
            .map_err(|e| Error::Compile { message: e.to_string() })?;
        packages.push(package);
    }
    let value = regorus_value(data).map_err(|message| Error::Data { path: PathBuf::from("<data>"), message })?;
    engine.add_data(value).map_err(|e| Error::Compile { message: e.to_string() })?;
    packages.sort();
    packages.dedup();
    Ok((engine, packages))
}

/// A compiled, immutable set of policies with their data.
#[derive(Clone)]
pub struct PolicySet {
    engine: regorus::Engine,
    /// Packages under [`PACKAGE_ROOT`] that declare `decisions`.
    packages: Vec<String>,
    settings: Settings,
    fingerprint: u64,
    eval_timeout: Duration,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet").field("packages", &self.packages).field("fingerprint", &self.fingerprint).finish()
    }
}

/// Decisions of one evaluation, and the problems met on the way (which produced no decision).
#[derive(Debug, Default)]
pub struct Evaluation {
    pub decisions: Vec<Decision>,
    pub errors: Vec<Error>,
}

impl PolicySet {
    /// Read and compile the policies in `dir` (test files excluded), with `overrides` merged over
    /// their data.
    pub fn load(dir: &Path, overrides: Option<&serde_json::Value>, eval_timeout: Duration) -> Result<Self, Error> {
        let sources = Sources::read(dir, false)?;
        Self::compile(&sources, overrides, eval_timeout)
    }

    /// The policies built into the binary, with `overrides` merged over their data.
    pub fn embedded(overrides: Option<&serde_json::Value>, eval_timeout: Duration) -> Result<Self, Error> {
        Self::compile(&Sources::embedded(), overrides, eval_timeout)
    }

    fn compile(
        sources: &Sources,
        overrides: Option<&serde_json::Value>,
        eval_timeout: Duration,
    ) -> Result<Self, Error> {
        let data = load_data(sources, overrides)?;
        let settings = settings(&data)?;
        let (mut engine, packages) = compile(sources, &data)?;
        engine.set_execution_timer_config(timer(eval_timeout));
        let mut with_decisions = Vec::new();
        for p in packages.into_iter().filter(|p| p.starts_with(PACKAGE_ROOT)) {
            // Evaluating once on an empty input surfaces semantic errors (unknown functions,
            // undefined references) at load time rather than on the first real tick.
            engine.set_input(regorus::Value::new_object());
            match engine.eval_rule(format!("{p}.decisions")) {
                Ok(_) => with_decisions.push(p),
                Err(e) => {
                    let message = e.to_string();
                    if !message.contains("not a valid rule path") && !message.contains("not found") {
                        return Err(Error::Compile { message });
                    }
                }
            }
        }
        Ok(Self { engine, packages: with_decisions, settings, fingerprint: sources.fingerprint(), eval_timeout })
    }

    /// Settings the snapshot needs from the policy data.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Packages whose decisions are evaluated.
    pub fn packages(&self) -> &[String] {
        &self.packages
    }

    /// Serialise an input document for [`PolicySet::evaluate`].
    pub fn to_input(input: &impl Serialize) -> Result<serde_json::Value, Error> {
        serde_json::to_value(input).map_err(|e| Error::Input { message: e.to_string() })
    }

    /// Evaluate every package's `decisions` on `input` (an input document as JSON).
    pub fn evaluate(&self, json: &serde_json::Value) -> Result<Evaluation, Error> {
        let value = regorus_value(json).map_err(|message| Error::Input { message })?;
        let mut out = Evaluation::default();
        for package in &self.packages {
            let mut engine = self.engine.clone();
            engine.set_execution_timer_config(timer(self.eval_timeout));
            engine.set_input(value.clone());
            let short = package.trim_start_matches("data.").to_owned();
            match engine.eval_rule(format!("{package}.decisions")) {
                Ok(v) => decisions(&short, &v, &mut out),
                Err(e) => out.errors.push(Error::Evaluate { package: short, message: e.to_string() }),
            }
        }
        Ok(out)
    }
}

fn decisions(package: &str, value: &regorus::Value, out: &mut Evaluation) {
    if *value == regorus::Value::Undefined {
        return;
    }
    let json = match serde_json::to_value(value) {
        Ok(serde_json::Value::Array(items)) => items,
        Ok(other) => {
            let message = format!("`decisions` must be a set of objects, got {other}");
            out.errors.push(Error::Decision { package: package.to_owned(), rule: "decisions".into(), message });
            return;
        }
        Err(e) => {
            out.errors.push(Error::Decision {
                package: package.to_owned(),
                rule: "decisions".into(),
                message: e.to_string(),
            });
            return;
        }
    };
    for item in json {
        match decision(package, item) {
            Ok(d) => out.decisions.push(d),
            Err(e) => out.errors.push(e),
        }
    }
}

fn decision(package: &str, item: serde_json::Value) -> Result<Decision, Error> {
    let serde_json::Value::Object(mut map) = item else {
        return Err(Error::Decision {
            package: package.to_owned(),
            rule: "decisions".into(),
            message: "not an object".into(),
        });
    };
    let rule = match map.remove("rule") {
        Some(serde_json::Value::String(r)) => r,
        _ => {
            let message = "every decision needs a string `rule` naming the rule that made it".into();
            return Err(Error::Decision { package: package.to_owned(), rule: "?".into(), message });
        }
    };
    let message = match map.remove("message") {
        Some(serde_json::Value::String(m)) => m,
        _ => String::new(),
    };
    let approval_required = match map.remove("approval_required") {
        None | Some(serde_json::Value::Bool(false)) => false,
        Some(serde_json::Value::Bool(true)) => true,
        Some(other) => {
            let message = format!("`approval_required` must be true or false, not {other}");
            return Err(Error::Decision { package: package.to_owned(), rule, message });
        }
    };
    let request: Request = serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| Error::Decision {
        package: package.to_owned(),
        rule: rule.clone(),
        message: e.to_string(),
    })?;
    Ok(Decision { package: package.to_owned(), rule, message, request, approval_required })
}

/// Result of checking the policy directory for changes.
#[derive(Debug)]
pub enum Reload {
    Unchanged,
    Reloaded,
    /// The new files did not load; the previous set stays in force.
    Failed(Error),
}

/// The policies in force, reloaded when their files change.
#[derive(Debug)]
pub struct PolicyStore {
    dir: PathBuf,
    overrides: Option<serde_json::Value>,
    eval_timeout: Duration,
    current: Arc<PolicySet>,
    /// Fingerprint of the last contents tried, good or bad, so a broken file is reported once.
    last_tried: u64,
    /// Why the files on disk are not the set in force, while that lasts.
    error: Option<String>,
}

impl PolicyStore {
    /// Load the policies; the first load must succeed.
    pub fn open(dir: &Path, overrides: Option<serde_json::Value>, eval_timeout: Duration) -> Result<Self, Error> {
        let set = PolicySet::load(dir, overrides.as_ref(), eval_timeout)?;
        let last_tried = set.fingerprint;
        Ok(Self { dir: dir.to_owned(), overrides, eval_timeout, current: Arc::new(set), last_tried, error: None })
    }

    /// The set in force.
    pub fn current(&self) -> Arc<PolicySet> {
        Arc::clone(&self.current)
    }

    /// Directory the policies are read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-read the directory; compile and swap in the new set if anything changed.
    pub fn refresh(&mut self) -> Reload {
        let sources = match Sources::read(&self.dir, false) {
            Ok(s) => s,
            Err(e) => return self.failed(0, e),
        };
        let fingerprint = sources.fingerprint();
        if fingerprint == self.last_tried {
            return Reload::Unchanged;
        }
        match PolicySet::compile(&sources, self.overrides.as_ref(), self.eval_timeout) {
            Ok(set) => {
                self.last_tried = fingerprint;
                self.current = Arc::new(set);
                self.error = None;
                Reload::Reloaded
            }
            Err(e) => self.failed(fingerprint, e),
        }
    }

    /// Why the policy files on disk are not in force, if they are not.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    fn failed(&mut self, fingerprint: u64, e: Error) -> Reload {
        if fingerprint != 0 && fingerprint == self.last_tried {
            return Reload::Unchanged;
        }
        self.last_tried = fingerprint;
        self.error = Some(e.to_string());
        Reload::Failed(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "package kafka.autopilot.t\nimport rego.v1\n\
        decisions contains {\"kind\": \"scale_brokers\", \"to\": data.autopilot.t.to, \"rule\": \"r\"} if input.go\n";

    fn dir_with(policy: &str, to: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.rego"), policy).unwrap();
        std::fs::write(dir.path().join("data.yaml"), format!("autopilot: {{t: {{to: {to}}}}}\n")).unwrap();
        dir
    }

    fn decided(set: &PolicySet) -> Vec<Request> {
        set.evaluate(&serde_json::json!({"go": true})).unwrap().decisions.into_iter().map(|d| d.request).collect()
    }

    #[test]
    fn a_broken_change_keeps_the_last_good_set_and_a_fix_is_picked_up() {
        let dir = dir_with(POLICY, 5);
        let mut store = PolicyStore::open(dir.path(), None, Duration::from_secs(1)).unwrap();
        assert_eq!(decided(&store.current()), vec![Request::ScaleBrokers { to: 5, drain_timeout: None }]);
        assert!(matches!(store.refresh(), Reload::Unchanged));

        std::fs::write(dir.path().join("t.rego"), format!("{POLICY}broken if {{\n")).unwrap();
        let Reload::Failed(e) = store.refresh() else { panic!("broken policy accepted") };
        assert!(e.to_string().contains("t.rego:5:"), "names file and line: {e}");
        assert!(store.error().is_some());
        assert_eq!(
            decided(&store.current()),
            vec![Request::ScaleBrokers { to: 5, drain_timeout: None }],
            "old policy in force"
        );
        assert!(matches!(store.refresh(), Reload::Unchanged), "reported once");

        std::fs::write(dir.path().join("t.rego"), POLICY).unwrap();
        std::fs::write(dir.path().join("data.yaml"), "autopilot: {t: {to: 7}}\n").unwrap();
        assert!(matches!(store.refresh(), Reload::Reloaded));
        assert!(store.error().is_none());
        assert_eq!(decided(&store.current()), vec![Request::ScaleBrokers { to: 7, drain_timeout: None }]);
    }

    #[test]
    fn malformed_decisions_are_reported_not_acted_on() {
        let bad = "package kafka.autopilot.t\nimport rego.v1\n\
            decisions contains {\"kind\": \"scale_brokers\", \"to\": \"many\", \"rule\": \"r\"} if input.go\n\
            decisions contains {\"kind\": \"launch_rockets\", \"rule\": \"s\"} if input.go\n\
            decisions contains {\"kind\": \"elect_leaders\"} if input.go\n";
        let dir = dir_with(bad, 5);
        let set = PolicySet::load(dir.path(), None, Duration::from_secs(1)).unwrap();
        let e = set.evaluate(&serde_json::json!({"go": true})).unwrap();
        assert!(e.decisions.is_empty());
        let messages: Vec<String> = e.errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("rule \"s\"") && m.contains("launch_rockets")), "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("needs a string `rule`")), "{messages:?}");
    }

    #[test]
    fn a_runaway_policy_is_stopped_by_the_time_limit() {
        let slow = "package kafka.autopilot.t\nimport rego.v1\n\
            decisions contains {\"kind\": \"elect_leaders\", \"rule\": \"r\"} if {\n\
              count([x | some x in numbers.range(1, 3000); some y in numbers.range(1, 3000); x = y]) > 0\n}\n";
        let dir = dir_with(slow, 5);
        let set = PolicySet::load(dir.path(), None, Duration::from_millis(50));
        // Either the load-time trial evaluation or the real one must be cut short.
        let stopped = match set {
            Err(e) => e.to_string().to_lowercase().contains("time"),
            Ok(set) => {
                let started = std::time::Instant::now();
                let e = set.evaluate(&serde_json::json!({})).unwrap();
                started.elapsed() < Duration::from_secs(5) && !e.errors.is_empty()
            }
        };
        assert!(stopped, "evaluation was not bounded");
    }

    #[test]
    fn settings_come_from_data_and_bad_ones_are_named() {
        let data = serde_json::json!({"autopilot": {"conditions": {"hot": {"metric": "cpu", "above": 0.9}}, "brokers": {"heartbeat_timeout_seconds": 45}}});
        let s = settings(&data).unwrap();
        assert_eq!(s.conditions[0].threshold, 0.9);
        assert_eq!(s.heartbeat_timeout, Duration::from_secs(45));
        let bad =
            serde_json::json!({"autopilot": {"conditions": {"hot": {"metric": "cpu", "above": 0.9, "below": 0.1}}}});
        assert!(settings(&bad).unwrap_err().to_string().contains("conditions.hot"));
    }
}
