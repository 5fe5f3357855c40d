//! The operations the agent started, as the API and `autopilot operations` show them: built
//! from the same events as the log, the metrics and the audit trail (a [`Sink`]), so they can
//! never disagree. Bounded: the newest finished operations are kept.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::events::{Body, Event, Result as Outcome, Sink};
use crate::plan::{Action, ActionKind};
use crate::time::Timestamp;

/// Finished operations kept for the API.
const KEEP: usize = 500;

/// Where an operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    RolledBack,
    DryRun,
    Emitted,
}

impl From<Outcome> for Status {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Succeeded => Status::Succeeded,
            Outcome::Failed => Status::Failed,
            Outcome::RolledBack => Status::RolledBack,
            Outcome::DryRun => Status::DryRun,
            Outcome::Emitted => Status::Emitted,
        }
    }
}

/// One step an operation took.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub at: Timestamp,
    pub step: String,
    pub detail: String,
}

/// An operation as reported by the API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationRecord {
    pub id: String,
    pub cluster: String,
    pub kind: ActionKind,
    pub action: Action,
    /// The policy rule (or `manual_scale`) that started it.
    pub reason: String,
    pub message: String,
    pub status: Status,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// The current (or last) step.
    pub step: Option<String>,
    pub steps: Vec<StepRecord>,
    /// How it ended.
    pub detail: Option<String>,
}

impl OperationRecord {
    pub fn finished(&self) -> bool {
        self.status != Status::Running
    }
}

/// Every operation of this agent's lifetime, newest last, bounded.
#[derive(Debug, Default)]
pub struct OperationLog {
    records: Mutex<VecDeque<OperationRecord>>,
}

impl OperationLog {
    /// All operations, newest first, optionally of one cluster.
    pub fn list(&self, cluster: Option<&str>) -> Vec<OperationRecord> {
        let Ok(r) = self.records.lock() else { return Vec::new() };
        r.iter().rev().filter(|o| cluster.is_none_or(|c| o.cluster == c)).cloned().collect()
    }

    /// One operation.
    pub fn get(&self, id: &str) -> Option<OperationRecord> {
        self.records.lock().ok()?.iter().find(|o| o.id == id).cloned()
    }

    fn trim(records: &mut VecDeque<OperationRecord>) {
        while records.iter().filter(|o| o.finished()).count() > KEEP {
            match records.iter().position(OperationRecord::finished) {
                Some(i) => records.remove(i),
                None => break,
            };
        }
    }
}

impl Sink for OperationLog {
    fn record(&self, event: &Event) {
        let Ok(mut records) = self.records.lock() else { return };
        match &event.body {
            Body::Action { operation, action, reason, message, .. } => {
                records.push_back(OperationRecord {
                    id: operation.clone(),
                    cluster: event.cluster.clone(),
                    kind: action.kind(),
                    action: action.clone(),
                    reason: reason.clone(),
                    message: message.clone(),
                    status: Status::Running,
                    started_at: event.at,
                    finished_at: None,
                    step: None,
                    steps: Vec::new(),
                    detail: None,
                });
                Self::trim(&mut records);
            }
            Body::Step { operation, step, detail, .. } => {
                if let Some(o) = records.iter_mut().rev().find(|o| &o.id == operation) {
                    o.step = Some(step.clone());
                    o.steps.push(StepRecord { at: event.at, step: step.clone(), detail: detail.clone() });
                }
            }
            Body::Outcome { operation, result, detail, .. } => {
                if let Some(o) = records.iter_mut().rev().find(|o| &o.id == operation) {
                    o.status = (*result).into();
                    o.finished_at = Some(event.at);
                    o.detail = Some(detail.clone());
                }
            }
            _ => {}
        }
    }
}
