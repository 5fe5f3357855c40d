//! Observable events: one struct per thing that happened, whose [`Events::emit`] logs it,
//! counts it and hands it to the sinks (audit log, scenario recorder), so logs, metrics and the
//! audit trail never drift apart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::backend::sim::{Fault, Load};
use crate::plan::{Action, ActionKind, Request};
use crate::telemetry;
use crate::time::Timestamp;

/// How an action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Result {
    Succeeded,
    Failed,
    RolledBack,
    DryRun,
    /// A notification was emitted (logged, counted, audited).
    Emitted,
}

impl Result {
    /// Label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Result::Succeeded => "succeeded",
            Result::Failed => "failed",
            Result::RolledBack => "rolled_back",
            Result::DryRun => "dry_run",
            Result::Emitted => "emitted",
        }
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// A policy rule decided something.
    Decision {
        package: String,
        /// The rule that made the decision.
        reason: String,
        message: String,
        #[serde(flatten)]
        request: Request,
    },
    /// A decision was not acted on.
    Deferred { kind: ActionKind, reason: String, why: String },
    /// An action started (or, in dry-run, would have).
    Action {
        operation: String,
        #[serde(flatten)]
        action: Action,
        reason: String,
        message: String,
        dry_run: bool,
    },
    /// A multi-step operation moved to its next step.
    Step { operation: String, kind: ActionKind, step: String, detail: String },
    /// An action ended.
    Outcome { operation: String, kind: ActionKind, result: Result, reason: String, detail: String },
    /// An operator asked for an action (API or command line): accepted with the operation it
    /// started, or refused and why.
    Request {
        /// Who asked (`api`, `scenario`, ...).
        source: String,
        #[serde(flatten)]
        request: Request,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operation: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
    },
    /// A broker's health state changed (Healthy, Suspect, Failed, Recovering).
    BrokerState {
        broker: i32,
        state: crate::snapshot::BrokerState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<crate::snapshot::BrokerState>,
    },
    /// Policies failed to load or evaluate; the last good set stays in force.
    PolicyError { category: String, message: String },
    /// New policies are in force.
    PolicyReloaded { packages: Vec<String> },
    /// A source could not be read.
    SourceError { source: String, category: String, message: String },
    /// The journal could not be written; the operation waits.
    JournalError { operation: String, message: String },
    /// A request to the API that changes something, whoever made it and the answer.
    ApiCall { method: String, path: String, caller: String, status: u16 },
    /// Simulation only: a fault was injected.
    Fault {
        #[serde(flatten)]
        fault: Fault,
    },
    /// Simulation only: the offered load changed.
    Load {
        #[serde(flatten)]
        load: Load,
        /// Reached linearly over this long.
        #[serde(default, skip_serializing_if = "Option::is_none", with = "humantime_serde")]
        ramp: Option<std::time::Duration>,
    },
}

/// An event about one cluster at one instant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: Timestamp,
    pub cluster: String,
    #[serde(flatten)]
    pub body: Body,
}

/// Where events go besides the log and the metrics.
pub trait Sink: Send + Sync {
    fn record(&self, event: &Event);
}

/// The emitter every stage uses.
#[derive(Clone, Default)]
pub struct Events {
    sinks: Vec<Arc<dyn Sink>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("sinks", &self.sinks.len()).finish()
    }
}

impl Events {
    /// An emitter that also feeds `sinks`.
    pub fn new(sinks: Vec<Arc<dyn Sink>>) -> Self {
        Self { sinks }
    }

    /// Log, count and record one event.
    pub fn emit(&self, event: Event) {
        log_and_count(&event);
        for s in &self.sinks {
            s.record(&event);
        }
    }
}

fn log_and_count(e: &Event) {
    let cluster = e.cluster.clone();
    match &e.body {
        Body::Decision { package, reason, message, request } => {
            tracing::info!(cluster = %e.cluster, package = %package, rule = %reason, kind = %request.kind(), message = %message, "decision");
            metrics::counter!(telemetry::DECISIONS, "cluster" => cluster, "package" => package.clone(), "rule" => reason.clone(), "kind" => request.kind().as_str()).increment(1);
        }
        Body::Deferred { kind, reason, why } => {
            tracing::info!(cluster = %e.cluster, kind = %kind, rule = %reason, why = %why, "decision deferred");
            metrics::counter!(telemetry::DEFERRED, "cluster" => cluster, "kind" => kind.as_str()).increment(1);
        }
        Body::Action { operation, action, reason, dry_run, .. } => {
            tracing::info!(cluster = %e.cluster, operation = %operation, kind = %action.kind(), rule = %reason, dry_run, "action");
        }
        Body::Step { operation, kind, step, detail } => {
            tracing::info!(cluster = %e.cluster, operation = %operation, kind = %kind, step = %step, detail = %detail, "step");
        }
        Body::Outcome { operation, kind, result, detail, .. } => {
            tracing::info!(cluster = %e.cluster, operation = %operation, kind = %kind, result = result.as_str(), detail = %detail, "outcome");
            metrics::counter!(telemetry::ACTIONS, "cluster" => cluster, "kind" => kind.as_str(), "outcome" => result.as_str()).increment(1);
        }
        Body::Request { source, request, operation, refused } => {
            let accepted = refused.is_none();
            tracing::info!(cluster = %e.cluster, source = %source, kind = %request.kind(), operation = ?operation, refused = ?refused, "operator request");
            let result = if accepted { "accepted" } else { "refused" };
            metrics::counter!(telemetry::REQUESTS, "cluster" => cluster, "kind" => request.kind().as_str(), "result" => result).increment(1);
        }
        Body::BrokerState { broker, state, previous } => {
            tracing::info!(cluster = %e.cluster, broker, state = ?state, previous = ?previous, "broker state");
        }
        Body::PolicyError { category, message } => {
            tracing::error!(category = %category, error = %message, "policy error; the last good policies stay in force");
            metrics::counter!(telemetry::POLICY_ERRORS, "category" => category.clone()).increment(1);
        }
        Body::PolicyReloaded { packages } => {
            tracing::info!(packages = ?packages, "policies reloaded");
        }
        Body::SourceError { source, category, message } => {
            tracing::warn!(cluster = %e.cluster, source = %source, category = %category, error = %message, "source read failed");
            metrics::counter!(telemetry::SOURCE_ERRORS, "cluster" => cluster, "source" => source.clone(), "category" => category.clone()).increment(1);
        }
        Body::ApiCall { method, path, caller, status } => {
            tracing::info!(cluster = %e.cluster, method = %method, path = %path, caller = %caller, status, "API request");
        }
        Body::JournalError { operation, message } => {
            tracing::error!(cluster = %e.cluster, operation = %operation, error = %message, "journal write failed; operation paused");
            metrics::counter!(telemetry::JOURNAL_ERRORS, "cluster" => cluster).increment(1);
        }
        Body::Fault { fault } => {
            tracing::info!(cluster = %e.cluster, fault = ?fault, "fault injected")
        }
        Body::Load { load, .. } => {
            tracing::info!(cluster = %e.cluster, cpu = load.cpu, memory = load.memory, "load changed")
        }
    }
}

/// The audit trail: every decision, action, step and outcome as a JSON line, appended.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    /// Open (or create) the audit log for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { path: path.to_owned(), file: Mutex::new(file) })
    }
}

impl Sink for AuditLog {
    fn record(&self, event: &Event) {
        let audited = matches!(
            event.body,
            Body::Decision { .. }
                | Body::Request { .. }
                | Body::BrokerState { .. }
                | Body::Deferred { .. }
                | Body::Action { .. }
                | Body::Step { .. }
                | Body::Outcome { .. }
                | Body::ApiCall { .. }
        );
        if !audited {
            return;
        }
        let Ok(mut line) = serde_json::to_vec(event) else {
            return;
        };
        line.push(b'\n');
        let written = match self.file.lock() {
            Ok(mut f) => f.write_all(&line).and_then(|()| f.flush()),
            Err(_) => Err(std::io::Error::other("audit log lock poisoned")),
        };
        if let Err(e) = written {
            tracing::error!(path = %self.path.display(), error = %e, "failed to append to the audit log");
        }
    }
}

/// Keeps every event in memory (scenario runs and tests).
#[derive(Debug, Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    /// Everything recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Sink for Recorder {
    fn record(&self, event: &Event) {
        if let Ok(mut e) = self.events.lock() {
            e.push(event.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Action;

    fn event(body: Body) -> Event {
        Event { at: Timestamp::from_millis(1_767_225_600_000), cluster: "c1".into(), body }
    }

    #[test]
    fn the_audit_log_appends_what_why_and_outcome_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/audit.jsonl");
        let audit = AuditLog::open(&path).unwrap();
        let action =
            Action::ScaleBrokers { from: 3, to: 5, remove: vec![], drain_timeout: std::time::Duration::from_secs(60) };
        audit.record(&event(Body::Action {
            operation: "op-1".into(),
            action,
            reason: "scale_up_sustained_load".into(),
            message: "cpu high".into(),
            dry_run: false,
        }));
        audit.record(&event(Body::PolicyReloaded { packages: vec![] }));
        audit.record(&event(Body::Outcome {
            operation: "op-1".into(),
            kind: ActionKind::ScaleBrokers,
            result: Result::Succeeded,
            reason: "scale_up_sustained_load".into(),
            detail: "healthy".into(),
        }));
        drop(audit);
        // Reopening appends rather than truncating.
        AuditLog::open(&path).unwrap().record(&event(Body::Deferred {
            kind: ActionKind::ScaleBrokers,
            reason: "r".into(),
            why: "cooldown".into(),
        }));
        let lines: Vec<serde_json::Value> =
            std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3, "policy reloads are not audited: {lines:?}");
        assert_eq!(lines[0]["type"], "action");
        assert_eq!(lines[0]["kind"], "scale_brokers");
        assert_eq!(lines[0]["to"], 5);
        assert_eq!(lines[0]["reason"], "scale_up_sustained_load");
        assert_eq!(lines[0]["at"], "2026-01-01T00:00:00.000Z");
        assert_eq!(lines[1]["result"], "succeeded");
        assert_eq!(lines[2]["why"], "cooldown");
    }
}
