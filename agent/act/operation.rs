//! Multi-step operations as journaled state machines. Deciding the next step is pure
//! ([`progress`]): a function of the operation, the latest snapshot and `now`. The executor
//! performs the [`Effect`] it returns and records the new step.
//!
//! Every step is checked against what the cluster reports, so an operation resumed after a
//! restart re-reads the cluster instead of repeating blindly; steps whose effect cannot be
//! repeated safely (deleting a pod) resume at their waiting step ([`Step::resumed`]).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::PartitionTarget;
use crate::events::Result as Outcome;
use crate::plan::{Action, ActionKind, Planned};
use crate::rebalance;
use crate::snapshot::{BrokerState, Snapshot};
use crate::time::Timestamp;

/// Longest wait for brokers to join, leave or come back.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest wait for the cluster to be healthy after an operation.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest wait for a volume resize or a certificate renewal.
pub const RESOURCE_TIMEOUT: Duration = Duration::from_secs(600);

/// Where an operation is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Wait for an operator's approval, then go on with `then`.
    AwaitApproval {
        then: Box<Step>,
    },
    PatchReplicas {
        replicas: u32,
    },
    AwaitBrokers {
        replicas: u32,
    },
    /// Compute and submit moves that drain `drain` and balance the rest.
    Rebalance {
        drain: Vec<i32>,
    },
    /// Submit the next batch of these moves.
    Reassign {
        moves: Vec<PartitionTarget>,
    },
    /// Wait for the submitted batch; `rest` follows in later batches.
    AwaitReassignment {
        partitions: Vec<(String, i32)>,
        #[serde(default)]
        rest: Vec<PartitionTarget>,
    },
    VerifyDrained {
        brokers: Vec<i32>,
        replicas: u32,
    },
    ElectLeaders,
    DeletePod {
        broker: i32,
    },
    DeletePvc {
        broker: i32,
    },
    AwaitBroker {
        broker: i32,
    },
    /// The broker's pod is back on the volume it had.
    VerifyVolume {
        broker: i32,
    },
    ResizeStorage {
        bytes: u64,
    },
    AwaitCapacity {
        bytes: u64,
    },
    ForceRenew {
        secret: String,
    },
    AwaitRenewal {
        secret: String,
    },
    Verify,
    // Rollback.
    CancelReassignments {
        partitions: Vec<(String, i32)>,
    },
    RevertReplicas {
        replicas: u32,
    },
    AwaitRevert {
        replicas: u32,
    },
}

impl Step {
    /// Short name for events and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Step::AwaitApproval { .. } => "await_approval",
            Step::PatchReplicas { .. } => "patch_replicas",
            Step::AwaitBrokers { .. } => "await_brokers",
            Step::Rebalance { .. } => "rebalance",
            Step::Reassign { .. } => "reassign",
            Step::AwaitReassignment { .. } => "await_reassignment",
            Step::VerifyDrained { .. } => "verify_drained",
            Step::ElectLeaders => "elect_leaders",
            Step::DeletePod { .. } => "delete_pod",
            Step::DeletePvc { .. } => "delete_pvc",
            Step::AwaitBroker { .. } => "await_broker",
            Step::VerifyVolume { .. } => "verify_volume",
            Step::ResizeStorage { .. } => "resize_storage",
            Step::AwaitCapacity { .. } => "await_capacity",
            Step::ForceRenew { .. } => "force_renew",
            Step::AwaitRenewal { .. } => "await_renewal",
            Step::Verify => "verify",
            Step::CancelReassignments { .. } => "cancel_reassignments",
            Step::RevertReplicas { .. } => "revert_replicas",
            Step::AwaitRevert { .. } => "await_revert",
        }
    }

    /// Whether this step checks the cluster's reaction to an earlier step.
    pub fn waits(&self) -> bool {
        matches!(
            self,
            Step::AwaitBrokers { .. }
                | Step::AwaitReassignment { .. }
                | Step::VerifyDrained { .. }
                | Step::AwaitBroker { .. }
                | Step::VerifyVolume { .. }
                | Step::AwaitCapacity { .. }
                | Step::AwaitRenewal { .. }
                | Step::Verify
                | Step::AwaitRevert { .. }
        )
    }

    /// The step to resume at when this step's effect may or may not have been performed before
    /// a restart. Deleting a pod or a volume twice is never safe; everything else is declarative
    /// (patch to a value, reassign to a target, elect preferred leaders) and is simply redone.
    pub fn resumed(self) -> Step {
        match self {
            Step::DeletePod { broker } | Step::DeletePvc { broker } => Step::AwaitBroker { broker },
            other => other,
        }
    }
}

/// I/O the executor performs for a step.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    None,
    /// Patch the node pool's replicas; on scale-down, name the brokers that go.
    ScalePool {
        replicas: u32,
        remove: Vec<i32>,
    },
    /// Set the throttle, then submit the moves.
    Reassign {
        moves: Vec<PartitionTarget>,
        throttle: Option<u64>,
    },
    /// Cancel these reassignments and clear the throttle.
    Cancel(Vec<(String, i32)>),
    ClearThrottle,
    ElectLeaders,
    DeletePod(i32),
    DeletePvc(i32),
    Resize(u64),
    Renew(String),
}

/// What to do next with an operation.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    Advance {
        effect: Effect,
        next: Step,
        detail: String,
    },
    Wait,
    Finish {
        result: Outcome,
        detail: String,
    },
    /// A health check failed or time ran out: roll back (or fail, if nothing can be undone).
    Abort {
        reason: String,
    },
}

/// A multi-step operation on one cluster, as journaled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    pub cluster: String,
    pub action: Action,
    /// The policy rule that led to it.
    pub reason: String,
    pub message: String,
    pub started_at: Timestamp,
    pub deadline: Timestamp,
    pub step: Step,
    pub step_started_at: Timestamp,
    /// The current step's effect was begun; whether it completed is unknown until re-read.
    pub effect_started: bool,
    /// Why the operation is being rolled back.
    pub rolling_back: Option<String>,
    /// Partitions this operation submitted for reassignment.
    pub submitted: Vec<(String, i32)>,
    /// The brokers the operation waited for became ready.
    pub brokers_ready: bool,
    /// An operator approved the operation (when its policy required approval).
    #[serde(default)]
    pub approved: bool,
    /// Brokers a scale-down drains and removes.
    #[serde(default)]
    pub drain: Vec<i32>,
    /// A scaling operation whose partitions have not moved by then (brokers drained, or new
    /// brokers filled) rolls back.
    #[serde(default)]
    pub drain_deadline: Option<Timestamp>,
}

/// How reassignments are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pacing {
    /// Replication throttle, bytes per second per broker.
    pub throttle: Option<u64>,
    /// Reassignments in flight at once that load one broker.
    pub moves_per_broker: u32,
    /// Reassignments in flight at once on the cluster.
    pub moves_per_cluster: u32,
}

impl Pacing {
    /// The executor's pacing from its limits.
    pub fn from_limits(limits: &crate::config::Limits) -> Self {
        Pacing {
            throttle: limits.replication_throttle,
            moves_per_broker: limits.moves_per_broker,
            moves_per_cluster: limits.moves_per_cluster,
        }
    }
}

impl Operation {
    /// Start an operation for the planned action on the cluster as `s` shows it.
    pub fn start(id: String, planned: &Planned, s: &Snapshot, now: Timestamp, timeout: Duration) -> Self {
        let Planned { action, rule: reason, message, approval_required } = planned.clone();
        let first = first_step(&action);
        // Scaling moves data within its drain timeout, whichever the direction.
        let (drain, drain_deadline) = match &action {
            Action::ScaleBrokers { remove, drain_timeout, .. } => (remove.clone(), Some(now + *drain_timeout)),
            _ => (Vec::new(), None),
        };
        let step = if approval_required { Step::AwaitApproval { then: Box::new(first) } } else { first };
        Operation {
            id,
            cluster: s.cluster.clone(),
            action,
            reason,
            message,
            started_at: now,
            deadline: now + timeout,
            step,
            step_started_at: now,
            effect_started: false,
            rolling_back: None,
            submitted: Vec::new(),
            brokers_ready: false,
            approved: false,
            drain,
            drain_deadline,
        }
    }

    /// Kind of the action.
    pub fn kind(&self) -> ActionKind {
        self.action.kind()
    }

    /// Steps that undo what was done, first one returned; none when nothing can be undone.
    pub fn rollback_step(&self) -> Option<Step> {
        if !self.submitted.is_empty() {
            return Some(Step::CancelReassignments { partitions: self.submitted.clone() });
        }
        self.revert_step()
    }

    fn revert_step(&self) -> Option<Step> {
        match self.action {
            // New brokers that never became ready are removed again; ready ones stay (moving
            // data back would cost more than keeping them).
            Action::ScaleBrokers { from, to, .. } if to > from && !self.brokers_ready => {
                Some(Step::RevertReplicas { replicas: from })
            }
            _ => None,
        }
    }
}

fn first_step(action: &Action) -> Step {
    match action {
        Action::ScaleBrokers { from, to, .. } if to > from => Step::PatchReplicas { replicas: *to },
        Action::ScaleBrokers { remove, .. } => Step::Rebalance { drain: remove.clone() },
        Action::ReassignPartitions { moves, .. } => Step::Reassign { moves: moves.clone() },
        Action::RecoverPod { broker, .. } => Step::AwaitBroker { broker: *broker },
        Action::ElectLeaders {} => Step::ElectLeaders,
        Action::RestartPod { broker } | Action::ReplacePod { broker } => Step::DeletePod { broker: *broker },
        Action::ReplaceVolume { broker } => Step::DeletePvc { broker: *broker },
        Action::ResizeVolume { to_bytes, .. } => Step::ResizeStorage { bytes: *to_bytes },
        Action::RenewCertificate { secret, .. } => Step::ForceRenew { secret: secret.clone() },
        // Notifications and backup jobs are not operations; the executor never starts one for them.
        Action::Notify { .. } | Action::BackupTopic { .. } | Action::ExpireBackup { .. } => Step::Verify,
    }
}

/// What comes after the brokers reached the wanted count.
fn after_brokers(op: &Operation) -> Step {
    match op.action {
        Action::ScaleBrokers { from, to, .. } if to > from => Step::Rebalance { drain: Vec::new() },
        _ => Step::Verify,
    }
}

/// What comes after the submitted reassignments completed.
fn after_reassignment(op: &Operation, drain: &[i32]) -> Step {
    match op.action {
        Action::ScaleBrokers { from, to, .. } if to < from => {
            Step::VerifyDrained { brokers: drain.to_vec(), replicas: to }
        }
        _ => Step::ElectLeaders,
    }
}

/// The next batch of `moves`, in plan order: as many as the per-broker and per-cluster limits
/// allow, and the rest. Moves the cluster already shows done, of partitions that no longer
/// exist, are dropped; partitions someone else is reassigning wait for a later batch.
pub fn next_batch(
    moves: &[PartitionTarget],
    s: &Snapshot,
    pacing: &Pacing,
) -> (Vec<PartitionTarget>, Vec<PartitionTarget>) {
    let current: HashMap<(&str, i32), &[i32]> =
        s.all_partitions().map(|p| ((p.topic.as_str(), p.partition), p.replicas.as_slice())).collect();
    let busy: BTreeSet<(&str, i32)> = s.reassignments.iter().map(|r| (r.topic.as_str(), r.partition)).collect();
    let mut load: HashMap<i32, u32> = HashMap::new();
    let (mut batch, mut rest) = (Vec::new(), Vec::new());
    for m in moves {
        let key = (m.topic.as_str(), m.partition);
        let Some(now) = current.get(&key) else { continue };
        if *now == m.replicas.as_slice() {
            continue;
        }
        let involved: Vec<i32> = now
            .iter()
            .filter(|b| !m.replicas.contains(b))
            .chain(m.replicas.iter().filter(|b| !now.contains(b)))
            .copied()
            .collect();
        let fits = batch.len() < pacing.moves_per_cluster as usize
            && involved.iter().all(|b| load.get(b).copied().unwrap_or(0) < pacing.moves_per_broker);
        if fits && !busy.contains(&key) {
            for b in involved {
                *load.entry(b).or_default() += 1;
            }
            batch.push(m.clone());
        } else {
            rest.push(m.clone());
        }
    }
    (batch, rest)
}

/// Submit the next batch of `moves`, or go on once none is left.
fn submit(op: &Operation, s: &Snapshot, moves: &[PartitionTarget], pacing: &Pacing) -> Progress {
    let (batch, rest) = next_batch(moves, s, pacing);
    if batch.is_empty() && rest.is_empty() {
        let effect = if op.submitted.is_empty() { Effect::None } else { Effect::ClearThrottle };
        return advance(effect, after_reassignment(op, &op.drain), "every move complete");
    }
    if batch.is_empty() {
        // Everything left waits for partitions someone else is moving.
        return advance(
            Effect::None,
            Step::AwaitReassignment { partitions: Vec::new(), rest },
            "waiting for other reassignments",
        );
    }
    let partitions: Vec<(String, i32)> = batch.iter().map(|m| (m.topic.clone(), m.partition)).collect();
    let detail = format!("{} partition moves submitted, {} to follow", batch.len(), rest.len());
    advance(
        Effect::Reassign { moves: batch, throttle: pacing.throttle },
        Step::AwaitReassignment { partitions, rest },
        detail,
    )
}

/// Why the cluster is not healthy, if it is not.
pub fn unhealthy(s: &Snapshot) -> Option<String> {
    let mut problems = Vec::new();
    if s.partitions.offline > 0 {
        problems.push(format!("{} offline partitions", s.partitions.offline));
    }
    if s.partitions.under_replicated > 0 {
        problems.push(format!("{} under-replicated partitions", s.partitions.under_replicated));
    }
    // A broker that hosts nothing (drained, or a dead one whose replicas were re-replicated)
    // does not make the cluster unhealthy.
    let bad: Vec<String> = s
        .brokers
        .iter()
        .filter(|b| b.state != BrokerState::Healthy && b.replicas > 0)
        .map(|b| format!("broker {} {:?}", b.id, b.state))
        .collect();
    problems.extend(bad);
    (!problems.is_empty()).then(|| problems.join(", "))
}

/// Which moved partitions are not yet on their target replicas with all of them in sync.
fn lagging(moves: &[PartitionTarget], s: &Snapshot) -> Option<String> {
    let behind: Vec<String> = moves
        .iter()
        .filter(|m| {
            let p = s.all_partitions().find(|p| p.topic == m.topic && p.partition == m.partition);
            !p.is_some_and(|p| !p.reassigning && m.replicas.iter().all(|r| p.isr.contains(r)))
        })
        .map(|m| format!("{}-{}", m.topic, m.partition))
        .collect();
    (!behind.is_empty()).then(|| format!("partitions not in sync on their new replicas: {}", behind.join(", ")))
}

fn advance(effect: Effect, next: Step, detail: impl Into<String>) -> Progress {
    Progress::Advance { effect, next, detail: detail.into() }
}

/// Decide the next move of `op` from the latest snapshot.
pub fn progress(op: &Operation, s: &Snapshot, now: Timestamp, pacing: &Pacing) -> Progress {
    if now > op.deadline && op.rolling_back.is_none() {
        return Progress::Abort { reason: format!("operation exceeded its deadline ({})", op.deadline) };
    }
    let draining = matches!(
        op.step,
        Step::Rebalance { .. } | Step::Reassign { .. } | Step::AwaitReassignment { .. } | Step::VerifyDrained { .. }
    );
    if let Some(deadline) = op.drain_deadline.filter(|d| draining && now > *d && op.rolling_back.is_none()) {
        let took = humantime::format_duration(Duration::from_secs((deadline - op.started_at).as_secs()));
        let reason = if op.drain.is_empty() {
            format!("partitions not moved within the drain timeout of {took}")
        } else {
            format!("brokers {:?} not drained within the drain timeout of {took}", op.drain)
        };
        return Progress::Abort { reason };
    }
    let waited = now - op.step_started_at;
    // A waiting step must judge a snapshot taken after its effect was made, never the one the
    // effect was planned from.
    if op.step.waits() && s.at <= op.step_started_at {
        return Progress::Wait;
    }
    let live = u32::try_from(s.live_brokers().count()).unwrap_or(u32::MAX);
    let pool = s.node_pool.as_ref().map_or(0, |p| p.replicas);
    let brokers_at = |r: u32| pool == r && live == r && s.brokers.len() == r as usize;
    match &op.step {
        Step::AwaitApproval { then } if op.approved => {
            advance(Effect::None, (**then).clone(), "approved by an operator")
        }
        Step::AwaitApproval { .. } => Progress::Wait,
        Step::PatchReplicas { replicas } => advance(
            Effect::ScalePool { replicas: *replicas, remove: op.drain.clone() },
            Step::AwaitBrokers { replicas: *replicas },
            format!("node pool replicas {pool} -> {replicas}"),
        ),
        Step::AwaitBrokers { replicas } if brokers_at(*replicas) => {
            advance(Effect::None, after_brokers(op), format!("{replicas} brokers registered and ready"))
        }
        Step::AwaitBrokers { replicas } if waited > BROKER_TIMEOUT => Progress::Abort {
            reason: format!("only {live} of {replicas} brokers ready after {}", humantime::format_duration(waited)),
        },
        Step::AwaitBrokers { .. } => Progress::Wait,
        Step::Rebalance { drain } => match rebalance::plan_moves(s, drain) {
            Err(e) => Progress::Abort { reason: format!("cannot plan moves: {e}") },
            Ok(plan) if plan.stats.unplaced > 0 => Progress::Abort {
                reason: format!("{} replicas have no broker to go to (racks or capacity)", plan.stats.unplaced),
            },
            Ok(plan) if plan.moves.is_empty() => {
                advance(Effect::None, after_reassignment(op, drain), "assignment already balanced")
            }
            Ok(plan) => {
                let st = &plan.stats;
                let detail = format!(
                    "planned {} partition moves: {} replica moves (lower bound {}), {} bytes, {} leader changes, replica spread {} -> {}",
                    plan.moves.len(), st.replica_moves, st.lower_bound, st.bytes_moved, st.leader_changes, st.spread_before, st.spread_after
                );
                advance(Effect::None, Step::Reassign { moves: rebalance::targets(&plan) }, detail)
            }
        },
        Step::Reassign { moves } => submit(op, s, moves, pacing),
        Step::AwaitReassignment { partitions, rest } => {
            let ours: BTreeSet<(&str, i32)> = partitions.iter().map(|(t, p)| (t.as_str(), *p)).collect();
            // Scaling stops when any broker it keeps fails. A repair stops when a broker that
            // is to receive or keep replicas of its moves fails; the dead broker it drains, or
            // one not involved, does not stop it.
            let scaling = matches!(op.action, Action::ScaleBrokers { .. });
            let receiving: BTreeSet<i32> = s
                .reassignments
                .iter()
                .filter(|r| ours.contains(&(r.topic.as_str(), r.partition)))
                .flat_map(|r| r.target.iter().copied())
                .chain(rest.iter().flat_map(|m| m.replicas.iter().copied()))
                .collect();
            let failed = s.brokers.iter().find(|b| {
                b.state == BrokerState::Failed && !op.drain.contains(&b.id) && (scaling || receiving.contains(&b.id))
            });
            if let Some(b) = failed {
                return Progress::Abort {
                    reason: format!("broker {} failed its health check during reassignment", b.id),
                };
            }
            let left = s.reassignments.iter().filter(|r| ours.contains(&(r.topic.as_str(), r.partition))).count();
            if left > 0 {
                return Progress::Wait;
            }
            let detail = format!("{} reassignments complete, {} to follow", partitions.len(), rest.len());
            advance(Effect::None, Step::Reassign { moves: rest.clone() }, detail)
        }
        Step::VerifyDrained { brokers, replicas } => {
            let busy: Vec<i32> =
                brokers.iter().copied().filter(|b| s.broker(*b).is_some_and(|x| x.replicas > 0)).collect();
            if busy.is_empty() {
                advance(
                    Effect::None,
                    Step::PatchReplicas { replicas: *replicas },
                    format!("brokers {brokers:?} host no replicas"),
                )
            } else {
                Progress::Abort { reason: format!("brokers {busy:?} still host replicas after draining") }
            }
        }
        Step::ElectLeaders => advance(Effect::ElectLeaders, Step::Verify, "preferred leaders elected"),
        Step::DeletePod { broker } => advance(
            Effect::DeletePod(*broker),
            Step::AwaitBroker { broker: *broker },
            format!("pod of broker {broker} deleted"),
        ),
        Step::DeletePvc { broker } => advance(
            Effect::DeletePvc(*broker),
            Step::AwaitBroker { broker: *broker },
            format!("volume of broker {broker} deleted"),
        ),
        Step::AwaitBroker { broker } => {
            let back = s.broker(*broker).is_some_and(|b| b.registered && b.pod.as_ref().is_some_and(|p| p.ready));
            if back {
                let next = match op.action {
                    Action::RecoverPod { .. } => Step::VerifyVolume { broker: *broker },
                    _ => Step::Verify,
                };
                advance(Effect::None, next, format!("broker {broker} registered and ready"))
            } else if waited > BROKER_TIMEOUT {
                Progress::Abort {
                    reason: format!("broker {broker} not back after {}", humantime::format_duration(waited)),
                }
            } else {
                Progress::Wait
            }
        }
        Step::VerifyVolume { broker } => {
            let wanted = match &op.action {
                Action::RecoverPod { pvc, .. } => pvc.clone(),
                _ => None,
            };
            let pod = s.broker(*broker).and_then(|b| b.pod.as_ref());
            let (node, has) = (pod.and_then(|p| p.node.clone()).unwrap_or_default(), pod.and_then(|p| p.pvc.clone()));
            if wanted.is_none() || has == wanted {
                let volume = has.unwrap_or_else(|| "its volume".into());
                advance(Effect::None, Step::ElectLeaders, format!("broker {broker} back on node {node} with {volume}"))
            } else {
                Progress::Abort {
                    reason: format!("broker {broker} came back with volume {has:?}, expected {wanted:?}"),
                }
            }
        }
        Step::ResizeStorage { bytes } => {
            advance(Effect::Resize(*bytes), Step::AwaitCapacity { bytes: *bytes }, format!("storage -> {bytes} bytes"))
        }
        Step::AwaitCapacity { bytes } => {
            let grown =
                s.pvcs.iter().filter(|p| p.phase == "Bound").all(|p| p.capacity_bytes.is_some_and(|c| c >= *bytes));
            if grown {
                Progress::Finish { result: Outcome::Succeeded, detail: format!("every volume has {bytes} bytes") }
            } else if waited > RESOURCE_TIMEOUT {
                Progress::Abort { reason: "volumes did not grow".into() }
            } else {
                Progress::Wait
            }
        }
        Step::ForceRenew { secret } => advance(
            Effect::Renew(secret.clone()),
            Step::AwaitRenewal { secret: secret.clone() },
            format!("{secret} annotated strimzi.io/force-renew"),
        ),
        Step::AwaitRenewal { secret } => {
            let old = match &op.action {
                Action::RenewCertificate { not_after, .. } => *not_after,
                _ => Timestamp::default(),
            };
            match s.certificates.iter().find(|c| &c.secret == secret) {
                Some(c) if c.not_after > old => Progress::Finish {
                    result: Outcome::Succeeded,
                    detail: format!("{secret} valid until {}", c.not_after),
                },
                _ if waited > RESOURCE_TIMEOUT => Progress::Abort { reason: format!("{secret} not renewed") },
                _ => Progress::Wait,
            }
        }
        Step::Verify => {
            // A repair of some partitions is judged on them (another broker's trouble elsewhere
            // is another operation's business); everything else on the whole cluster.
            let why = match &op.action {
                Action::ReassignPartitions { moves, .. } => lagging(moves, s),
                _ => unhealthy(s),
            };
            let finished = if op.rolling_back.is_some() { Outcome::RolledBack } else { Outcome::Succeeded };
            match (why, &op.action) {
                (None, Action::ReassignPartitions { moves, .. }) => Progress::Finish {
                    result: finished,
                    detail: format!("{} partitions on their new replicas, all in sync", moves.len()),
                },
                (None, _) => {
                    Progress::Finish { result: finished, detail: format!("cluster healthy with {live} brokers") }
                }
                (Some(why), _) if waited > VERIFY_TIMEOUT => Progress::Finish {
                    result: Outcome::Failed,
                    detail: format!("not healthy after {}: {why}", humantime::format_duration(waited)),
                },
                (Some(_), _) => Progress::Wait,
            }
        }
        Step::CancelReassignments { partitions } => {
            let next = op.revert_step();
            let detail = format!("{} reassignments cancelled", partitions.len());
            match next {
                Some(step) => advance(Effect::Cancel(partitions.clone()), step, detail),
                None => advance(Effect::Cancel(partitions.clone()), Step::AwaitRevert { replicas: pool }, detail),
            }
        }
        Step::RevertReplicas { replicas } => advance(
            Effect::ScalePool { replicas: *replicas, remove: Vec::new() },
            Step::AwaitRevert { replicas: *replicas },
            format!("node pool replicas back to {replicas}"),
        ),
        Step::AwaitRevert { replicas } if pool == *replicas && s.brokers.len() == *replicas as usize => {
            let reason = op.rolling_back.clone().unwrap_or_default();
            Progress::Finish { result: Outcome::RolledBack, detail: reason }
        }
        Step::AwaitRevert { .. } if waited > BROKER_TIMEOUT => {
            Progress::Finish { result: Outcome::Failed, detail: "rollback did not complete".into() }
        }
        Step::AwaitRevert { .. } => Progress::Wait,
    }
}
