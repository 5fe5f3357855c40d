//! Act: the single executor. This step only performs I/O (through the backends) and records
//! what it did.
//!
//! Per cluster, at most one operation is in flight; across clusters at most
//! `limits.concurrent_actions`. New operations pass a global rate limit (governor, on the tick's
//! clock), the cooldowns (in `plan`) and dry-run. Every operation is journaled before each
//! effect, so a restart resumes or rolls back instead of repeating.

pub mod journal;
pub mod kube_journal;
pub mod operation;

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::backend::{self, Backends};
use crate::config::Limits;
use crate::events::{Body, Event, Events, Result as Outcome};
use crate::leader::{AlwaysLeader, LeaderGate};
use crate::plan::{Action, ActionKind, History, Plan, Planned};
use crate::snapshot::Snapshot;
use crate::telemetry;
use crate::time::Timestamp;
pub use journal::{FileJournal, Journal, MemoryJournal};
pub use kube_journal::KubeJournal;
pub use operation::{Effect, Operation, Pacing, Progress, Step};

/// Transitions one tick may make on one operation (an immediate step chain, bounded).
const MAX_TRANSITIONS_PER_TICK: usize = 8;

/// The rate limiter's clock: the instant of the tick being executed, so virtual time works.
#[derive(Clone, Debug, Default)]
pub struct TickClock(Arc<AtomicU64>);

impl TickClock {
    fn set(&self, now: Timestamp) {
        self.0.fetch_max(now.as_millis(), Ordering::SeqCst);
    }
}

impl Clock for TickClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// State shared by the executors of all clusters.
pub struct Shared {
    limiter: RateLimiter<NotKeyed, InMemoryState, TickClock, NoOpMiddleware<Duration>>,
    clock: TickClock,
    in_flight: AtomicU32,
    limits: Limits,
    dry_run: bool,
    pacing: Pacing,
    journal: Arc<dyn Journal>,
    leader: Arc<dyn LeaderGate>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("dry_run", &self.dry_run)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Global limits and the journal, for every cluster's executor.
    pub fn new(limits: Limits, dry_run: bool, journal: Arc<dyn Journal>) -> Arc<Self> {
        Self::with_leader(limits, dry_run, journal, Arc::new(AlwaysLeader))
    }

    /// Global limits and the journal, acting only while `leader` says this agent leads.
    pub fn with_leader(
        limits: Limits,
        dry_run: bool,
        journal: Arc<dyn Journal>,
        leader: Arc<dyn LeaderGate>,
    ) -> Arc<Self> {
        let per_minute = NonZeroU32::new(limits.actions_per_minute).unwrap_or(NonZeroU32::MIN);
        let clock = TickClock::default();
        Arc::new(Shared {
            limiter: RateLimiter::direct_with_clock(Quota::per_minute(per_minute), clock.clone()),
            clock,
            in_flight: AtomicU32::new(0),
            pacing: Pacing::from_limits(&limits),
            limits,
            dry_run,
            journal,
            leader,
        })
    }

    fn try_reserve(&self) -> bool {
        let max = self.limits.concurrent_actions;
        self.in_flight.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1)).is_ok()
    }

    fn release(&self) {
        let _ = self.in_flight.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
}

/// The executor of one cluster.
#[derive(Debug)]
pub struct ClusterExecutor {
    cluster: String,
    backends: Backends,
    shared: Arc<Shared>,
    events: Events,
    history: History,
    operation: Option<Operation>,
    /// When each notification (rule and message) was last emitted.
    notified: BTreeMap<(String, String), Timestamp>,
}

impl ClusterExecutor {
    /// An executor for `cluster`, resuming whatever the journal holds for it.
    pub async fn new(
        cluster: &str,
        backends: Backends,
        shared: Arc<Shared>,
        events: Events,
    ) -> Result<Self, journal::Error> {
        let mut resumed = shared.journal.load().await?.into_iter().filter(|op| op.cluster == cluster);
        let operation = resumed.next().map(|mut op| {
            if op.effect_started {
                op.step = op.step.resumed();
                op.effect_started = false;
            }
            shared.in_flight.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(cluster, operation = %op.id, step = op.step.name(), "resuming operation from the journal");
            metrics::gauge!(telemetry::OPERATIONS_IN_FLIGHT, "cluster" => cluster.to_owned()).set(1.0);
            op
        });
        // One operation per cluster is the executor's invariant; a journal that holds more was
        // written by something else, and guessing which to resume would be unsafe.
        for extra in resumed {
            tracing::error!(cluster, operation = %extra.id, "journal holds a second operation for this cluster; left untouched");
        }
        let history = History { in_flight: operation.as_ref().map(Operation::kind), ..History::default() };
        Ok(Self {
            cluster: cluster.to_owned(),
            backends,
            shared,
            events,
            history,
            operation,
            notified: BTreeMap::new(),
        })
    }

    /// What this executor remembers of its actions.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The operation in flight, if any.
    pub fn operation(&self) -> Option<&Operation> {
        self.operation.as_ref()
    }

    fn emit(&self, now: Timestamp, body: Body) {
        self.events.emit(Event { at: now, cluster: self.cluster.clone(), body });
    }

    /// Admit what the plan asks for: all notifications, and the first operation the limits allow.
    pub async fn apply(&mut self, plan: &Plan, s: &Snapshot, now: Timestamp) {
        self.shared.clock.set(now);
        if !self.shared.leader.is_leader() {
            for p in &plan.actions {
                let why = "another agent holds the leader lease".to_owned();
                self.emit(now, Body::Deferred { kind: p.action.kind(), reason: p.rule.clone(), why });
            }
            return;
        }
        let mut started = false;
        for p in &plan.actions {
            if let Action::Notify { severity, message } = &p.action {
                self.notify(p, severity, message, now).await;
                continue;
            }
            if p.action.is_side_task() {
                self.backup_task(p, now).await;
                continue;
            }
            let refuse = |why: String| Body::Deferred { kind: p.action.kind(), reason: p.rule.clone(), why };
            if started {
                self.emit(now, refuse("another action of this plan was started first".into()));
                continue;
            }
            match self.admit() {
                Err(why) => self.emit(now, refuse(why)),
                Ok(Admission::DryRun) => {
                    self.dry_run(p, now);
                    started = true;
                }
                Ok(Admission::Start) => {
                    self.start(p, s, now).await;
                    started = true;
                }
            }
        }
    }

    /// Whether a new operation may start now: one per cluster, dry-run, the global concurrency
    /// and rate limits. On `Start` a concurrency slot and a rate-limit token are taken.
    fn admit(&self) -> Result<Admission, String> {
        if let Some(op) = &self.operation {
            return Err(format!("operation {} ({}) is in flight", op.id, op.kind()));
        }
        if self.shared.dry_run {
            return Ok(Admission::DryRun);
        }
        if !self.shared.try_reserve() {
            let max = self.shared.limits.concurrent_actions;
            return Err(format!("{max} operations already in flight across clusters"));
        }
        if self.shared.limiter.check().is_err() {
            // Only a start that passed every other check spends a token of the rate limit.
            self.shared.release();
            return Err("global action rate limit reached".into());
        }
        Ok(Admission::Start)
    }

    /// Start an operation an operator asked for (not a policy's decision): the same limits,
    /// but an answer now. Returns the operation id, or why it cannot start.
    pub async fn start_requested(&mut self, p: &Planned, s: &Snapshot, now: Timestamp) -> Result<String, String> {
        self.shared.clock.set(now);
        if !self.shared.leader.is_leader() {
            return Err("another agent holds the leader lease; ask the leader".into());
        }
        match self.admit()? {
            Admission::DryRun => Err("the agent runs in dry-run mode: nothing would be changed".into()),
            Admission::Start => {
                self.start(p, s, now).await;
                self.operation
                    .as_ref()
                    .map(|o| o.id.clone())
                    .or_else(|| self.history.last_operation.clone())
                    .ok_or_else(|| "the operation could not be journaled".into())
            }
        }
    }

    /// A notification: logged, counted, audited, sent to the webhooks (a sink) and recorded as
    /// a Kubernetes Event named after its rule (`IsrBelowMin`), a Warning unless `info`.
    async fn notify(&mut self, p: &Planned, severity: &str, message: &str, now: Timestamp) {
        let key = (p.rule.clone(), message.to_owned());
        let cooldown = self.shared.limits.cooldown(ActionKind::Notify);
        if self.notified.get(&key).is_some_and(|t| now - *t < cooldown) {
            return;
        }
        self.notified.insert(key, now);
        self.done_at_once(p, false, Outcome::Emitted, format!("[{severity}] {message}"), now);
        let reason = camel(&p.rule);
        self.backends.kube.record_outcome(&reason, severity == "info", format!("[{severity}] {message}")).await;
    }

    /// A backup job started, or a backup deleted by retention: no operation slot, no rate-limit
    /// token (they change nothing in the cluster), but dry-run holds them back like anything else.
    async fn backup_task(&mut self, p: &Planned, now: Timestamp) {
        if self.shared.dry_run {
            self.done_at_once(p, true, Outcome::DryRun, "dry-run: nothing was changed".into(), now);
            return;
        }
        let Some(store) = self.backends.backups.clone() else {
            let why = "this cluster has no backup storage".to_owned();
            self.emit(now, Body::Deferred { kind: p.action.kind(), reason: p.rule.clone(), why });
            return;
        };
        let (result, detail) = match &p.action {
            Action::BackupTopic { topic, compression } => match store.start_backup(topic, *compression, now).await {
                Ok(id) => (Outcome::Succeeded, format!("backup job {id} started for topic {topic}")),
                Err(e) => (Outcome::Failed, format!("backup of {topic} not started: {e}")),
            },
            Action::ExpireBackup { id, topic } => match store.expire(id).await {
                Ok(()) => (Outcome::Succeeded, format!("backup {id} of topic {topic} deleted")),
                Err(e) => (Outcome::Failed, format!("backup {id} not deleted: {e}")),
            },
            _ => return,
        };
        self.done_at_once(p, false, result, detail, now);
        self.history.last_finished.insert(p.action.kind(), now);
    }

    fn dry_run(&mut self, p: &Planned, now: Timestamp) {
        self.done_at_once(p, true, Outcome::DryRun, "dry-run: nothing was changed".into(), now);
        // The cooldown applies to what would have been done, so dry-run shows the real cadence.
        self.history.last_finished.insert(p.action.kind(), now);
    }

    /// Report an action that starts and ends in the same instant (a notification, a dry run).
    fn done_at_once(&self, p: &Planned, dry_run: bool, result: Outcome, detail: String, now: Timestamp) {
        let kind = p.action.kind();
        let operation = format!("{}-{}-{}", self.cluster, kind, now.as_millis());
        let (action, reason, message) = (p.action.clone(), p.rule.clone(), p.message.clone());
        self.emit(now, Body::Action { operation: operation.clone(), action, reason, message, dry_run });
        self.emit(now, Body::Outcome { operation, kind, result, reason: p.rule.clone(), detail });
    }

    async fn start(&mut self, p: &Planned, s: &Snapshot, now: Timestamp) {
        let kind = p.action.kind();
        let id = format!("{}-{}-{}", self.cluster, kind, now.as_millis());
        let op = Operation::start(id.clone(), p, s, now, self.shared.limits.operation_timeout);
        if let Err(e) = self.shared.journal.save(&op).await {
            self.shared.release();
            self.emit(now, Body::JournalError { operation: id, message: e.to_string() });
            return;
        }
        self.emit(
            now,
            Body::Action {
                operation: id,
                action: p.action.clone(),
                reason: p.rule.clone(),
                message: p.message.clone(),
                dry_run: false,
            },
        );
        self.history.in_flight = Some(kind);
        metrics::gauge!(telemetry::OPERATIONS_IN_FLIGHT, "cluster" => self.cluster.clone()).set(1.0);
        self.operation = Some(op);
        self.progress(s, now).await;
    }

    /// Advance the operation in flight as far as the cluster allows this tick.
    pub async fn progress(&mut self, s: &Snapshot, now: Timestamp) {
        // A follower leaves the operation where it is; the leader (or this agent, once it leads
        // again) resumes it from the journal.
        if !self.shared.leader.is_leader() {
            return;
        }
        self.check_approval(now).await;
        for _ in 0..MAX_TRANSITIONS_PER_TICK {
            let Some(op) = self.operation.clone() else {
                return;
            };
            match operation::progress(&op, s, now, &self.shared.pacing) {
                Progress::Wait => {
                    if let Step::AwaitReassignment { partitions, rest } = &op.step {
                        let pending = (partitions.len() + rest.len()) as f64;
                        metrics::gauge!(telemetry::REASSIGNMENTS_PENDING, "cluster" => self.cluster.clone())
                            .set(pending);
                    }
                    return;
                }
                Progress::Advance { effect, next, detail } => {
                    if !self.advance(op, effect, next, detail, now).await {
                        return;
                    }
                }
                Progress::Finish { result, detail } => {
                    self.finish(&op, result, detail, now).await;
                    return;
                }
                Progress::Abort { reason } => self.abort(op, reason, now).await,
            }
        }
    }

    /// An operation waiting for approval asks the journal whether an operator gave it.
    async fn check_approval(&mut self, now: Timestamp) {
        let Some(op) = self.operation.as_mut().filter(|o| matches!(o.step, Step::AwaitApproval { .. }) && !o.approved)
        else {
            return;
        };
        match self.shared.journal.approved(&op.id).await {
            Ok(true) => op.approved = true,
            Ok(false) => {}
            Err(e) => {
                let operation = op.id.clone();
                self.emit(now, Body::JournalError { operation, message: e.to_string() });
            }
        }
    }

    /// Perform one step; false when the operation must wait for the next tick.
    async fn advance(&mut self, mut op: Operation, effect: Effect, next: Step, detail: String, now: Timestamp) -> bool {
        if effect != Effect::None {
            op.effect_started = true;
            if let Err(e) = self.shared.journal.save(&op).await {
                self.emit(now, Body::JournalError { operation: op.id.clone(), message: e.to_string() });
                return false;
            }
            if let Err(e) = self.perform(&effect, &op).await {
                let transient = matches!(e, backend::Error::Unavailable { .. } | backend::Error::Timeout { .. });
                op.effect_started = false;
                self.operation = Some(op.clone());
                if transient {
                    self.emit(
                        now,
                        Body::Step {
                            operation: op.id.clone(),
                            kind: op.kind(),
                            step: op.step.name().into(),
                            detail: format!("will retry: {e}"),
                        },
                    );
                } else {
                    let reason = format!("{} failed: {e}", op.step.name());
                    self.abort(op, reason, now).await;
                }
                return false;
            }
        }
        if let Effect::Reassign { moves, .. } = &effect {
            op.submitted.extend(moves.iter().map(|m| (m.topic.clone(), m.partition)));
        }
        if matches!(op.step, Step::AwaitBrokers { .. }) {
            op.brokers_ready = true;
        }
        self.emit(now, Body::Step { operation: op.id.clone(), kind: op.kind(), step: next.name().into(), detail });
        op.step = next;
        op.step_started_at = now;
        op.effect_started = false;
        if let Err(e) = self.shared.journal.save(&op).await {
            // The effect is done; the journal still says "started", which resumes safely.
            self.emit(now, Body::JournalError { operation: op.id.clone(), message: e.to_string() });
        }
        self.operation = Some(op);
        true
    }

    async fn abort(&mut self, mut op: Operation, reason: String, now: Timestamp) {
        if op.rolling_back.is_some() {
            self.finish(&op, Outcome::Failed, format!("rollback failed: {reason}"), now).await;
            return;
        }
        match op.rollback_step() {
            Some(step) => {
                self.emit(
                    now,
                    Body::Step {
                        operation: op.id.clone(),
                        kind: op.kind(),
                        step: step.name().into(),
                        detail: format!("rolling back: {reason}"),
                    },
                );
                op.rolling_back = Some(reason);
                op.step = step;
                op.step_started_at = now;
                if let Err(e) = self.shared.journal.save(&op).await {
                    self.emit(now, Body::JournalError { operation: op.id.clone(), message: e.to_string() });
                }
                self.operation = Some(op);
            }
            None => self.finish(&op, Outcome::Failed, reason, now).await,
        }
    }

    async fn finish(&mut self, op: &Operation, result: Outcome, detail: String, now: Timestamp) {
        let detail = match (&op.action, result) {
            (Action::ReassignPartitions { sla: Some(sla), .. }, Outcome::Succeeded) => {
                let took = now - op.started_at;
                let met = took <= *sla;
                let verdict = if met { "met" } else { "missed" };
                metrics::counter!(telemetry::SLA, "cluster" => self.cluster.clone(), "kind" => op.kind().as_str(), "result" => verdict).increment(1);
                let (took, sla) = (crate::time::format_seconds(took), humantime::format_duration(*sla));
                format!("{detail}; replicas back in sync after {took}, SLA {sla} {verdict}")
            }
            _ => detail,
        };
        if !op.submitted.is_empty() {
            // Never leave a throttle behind, whatever the outcome.
            let _ = self.backends.kafka.set_replication_throttle(None, &topics_of(&op.submitted)).await;
        }
        if let Err(e) = self.shared.journal.remove(&op.id).await {
            self.emit(now, Body::JournalError { operation: op.id.clone(), message: e.to_string() });
        }
        let reason = event_reason(op.kind(), result);
        let note = format!("operation {} ({}): {} [{}]", op.id, op.reason, detail, result.as_str());
        self.backends.kube.record_outcome(&reason, result == Outcome::Succeeded, note).await;
        self.emit(
            now,
            Body::Outcome { operation: op.id.clone(), kind: op.kind(), result, reason: op.reason.clone(), detail },
        );
        self.history.last_finished.insert(op.kind(), now);
        self.history.last_operation = Some(op.id.clone());
        self.history.in_flight = None;
        self.operation = None;
        self.shared.release();
        metrics::gauge!(telemetry::OPERATIONS_IN_FLIGHT, "cluster" => self.cluster.clone()).set(0.0);
    }

    async fn perform(&self, effect: &Effect, op: &Operation) -> Result<(), backend::Error> {
        let kafka = &self.backends.kafka;
        let kube = &self.backends.kube;
        match effect {
            Effect::None => Ok(()),
            Effect::ScalePool { replicas, remove } => kube.scale_node_pool(*replicas, remove).await,
            Effect::Reassign { moves, throttle } => {
                if throttle.is_some() {
                    let topics: BTreeSet<String> = moves.iter().map(|m| m.topic.clone()).collect();
                    kafka.set_replication_throttle(*throttle, &topics.into_iter().collect::<Vec<_>>()).await?;
                }
                kafka.reassign(moves).await
            }
            Effect::Cancel(partitions) => {
                kafka.cancel_reassignments(partitions).await?;
                kafka.set_replication_throttle(None, &topics_of(partitions)).await
            }
            Effect::ClearThrottle => kafka.set_replication_throttle(None, &topics_of(&op.submitted)).await,
            Effect::ElectLeaders => kafka.elect_preferred_leaders(&[]).await,
            Effect::DeletePod(b) => kube.delete_pod(*b).await,
            Effect::DeletePvc(b) => kube.delete_pvc(*b).await,
            Effect::Resize(bytes) => kube.resize_storage(*bytes).await,
            Effect::Renew(secret) => kube.force_renew(secret).await,
        }
    }
}

/// Kubernetes Event reason for an operation's end: `ScaleBrokersSucceeded`, `ScaleBrokersRolledBack`, ...
fn event_reason(kind: ActionKind, result: Outcome) -> String {
    format!("{}{}", camel(kind.as_str()), camel(result.as_str()))
}

/// `isr_below_min` -> `IsrBelowMin`, as Kubernetes Event reasons are written.
fn camel(snake: &str) -> String {
    snake
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect()
}

/// What [`ClusterExecutor::admit`] allows.
enum Admission {
    DryRun,
    Start,
}

/// The distinct topics of some partitions.
fn topics_of(partitions: &[(String, i32)]) -> Vec<String> {
    partitions.iter().map(|(t, _)| t.clone()).collect::<BTreeSet<_>>().into_iter().collect()
}

#[cfg(test)]
mod tests;
