//! Plan: turn the policies' decisions into concrete actions. Pure: a function of the snapshot,
//! the decisions, the agent's history and `now`.
//!
//! The plan is data; the executor (`act`) is the only thing that applies it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::PartitionTarget;
use crate::backup::Compression;
use crate::config::Limits;
use crate::rebalance;
use crate::snapshot::Snapshot;
use crate::time::Timestamp;

macro_rules! action_kinds {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// The kinds of action the agent can take.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ActionKind { $($variant),+ }

        impl ActionKind {
            /// Every kind, in priority order (healing before scaling, notifications last).
            pub const ALL: &'static [ActionKind] = &[$(ActionKind::$variant),+];

            /// The snake_case name used in config, Rego and events.
            pub const fn as_str(self) -> &'static str {
                match self { $(ActionKind::$variant => $name),+ }
            }
        }

        impl FromStr for ActionKind {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($name => Ok(ActionKind::$variant),)+ _ => Err(()) }
            }
        }
    };
}

action_kinds! {
    ReplaceVolume => "replace_volume",
    ResizeVolume => "resize_volume",
    ReplacePod => "replace_pod",
    RestartPod => "restart_pod",
    ElectLeaders => "elect_leaders",
    RecoverPod => "recover_pod",
    ReassignPartitions => "reassign_partitions",
    RenewCertificate => "renew_certificate",
    ScaleBrokers => "scale_brokers",
    BackupTopic => "backup_topic",
    ExpireBackup => "expire_backup",
    Notify => "notify",
}

impl ActionKind {
    /// All names, comma separated, for error messages.
    pub fn names() -> String {
        Self::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a policy asks for, as the policy wrote it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    ScaleBrokers {
        to: u32,
        /// Longest a scale-down may spend draining brokers (default `limits.drain_timeout`).
        #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
        drain_timeout: Option<Duration>,
    },
    /// Move replicas off these brokers; none means rebalance the whole cluster.
    ReassignPartitions {
        #[serde(default)]
        from_brokers: Vec<i32>,
    },
    /// Move the replicas these partitions have on `broker` (slow or dead) to healthy brokers
    /// in suitable racks; the outcome is judged against `sla`.
    ReplaceReplicas {
        broker: i32,
        partitions: Vec<TopicPartition>,
        #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
        sla: Option<Duration>,
    },
    ElectLeaders {},
    /// Follow a rescheduled (evicted) broker pod until it is back on its volume, then restore
    /// leadership.
    RecoverPod {
        broker: i32,
    },
    RestartPod {
        broker: i32,
    },
    ReplacePod {
        broker: i32,
    },
    ResizeVolume {
        broker: i32,
        to_bytes: u64,
    },
    ReplaceVolume {
        broker: i32,
    },
    RenewCertificate {
        secret: String,
    },
    /// Back up a topic now (a background job; not an operation).
    BackupTopic {
        topic: String,
        #[serde(default)]
        compression: Compression,
    },
    /// Delete a backup that retention no longer keeps.
    ExpireBackup {
        id: String,
    },
    /// Tell a human; the text is the decision's `message`.
    Notify {
        severity: String,
    },
}

impl Request {
    /// The kind of action requested.
    pub fn kind(&self) -> ActionKind {
        match self {
            Request::ScaleBrokers { .. } => ActionKind::ScaleBrokers,
            Request::ReassignPartitions { .. } | Request::ReplaceReplicas { .. } => ActionKind::ReassignPartitions,
            Request::ElectLeaders {} => ActionKind::ElectLeaders,
            Request::RecoverPod { .. } => ActionKind::RecoverPod,
            Request::RestartPod { .. } => ActionKind::RestartPod,
            Request::ReplacePod { .. } => ActionKind::ReplacePod,
            Request::ResizeVolume { .. } => ActionKind::ResizeVolume,
            Request::ReplaceVolume { .. } => ActionKind::ReplaceVolume,
            Request::RenewCertificate { .. } => ActionKind::RenewCertificate,
            Request::BackupTopic { .. } => ActionKind::BackupTopic,
            Request::ExpireBackup { .. } => ActionKind::ExpireBackup,
            Request::Notify { .. } => ActionKind::Notify,
        }
    }
}

/// One decision of one policy rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Rego package, such as `kafka.autopilot.scaling`.
    pub package: String,
    /// The rule that produced it; reported as the reason of every resulting action.
    pub rule: String,
    /// Human explanation written by the policy.
    pub message: String,
    pub request: Request,
    /// The operation waits for an operator's approval before its first effect.
    #[serde(default)]
    pub approval_required: bool,
}

/// A concrete action, with everything the executor needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    ScaleBrokers {
        from: u32,
        to: u32,
        /// Brokers a scale-down drains and removes (empty when scaling up).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        remove: Vec<i32>,
        #[serde(with = "humantime_serde")]
        drain_timeout: Duration,
    },
    ReassignPartitions {
        moves: Vec<PartitionTarget>,
        /// How long the moves may take (ISR repair); the outcome says whether it was met.
        #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
        sla: Option<Duration>,
    },
    ElectLeaders {},
    RecoverPod {
        broker: i32,
        /// The volume the pod must come back with.
        pvc: Option<String>,
    },
    RestartPod {
        broker: i32,
    },
    ReplacePod {
        broker: i32,
    },
    ResizeVolume {
        broker: i32,
        from_bytes: u64,
        to_bytes: u64,
    },
    ReplaceVolume {
        broker: i32,
    },
    RenewCertificate {
        secret: String,
        not_after: Timestamp,
    },
    BackupTopic {
        topic: String,
        compression: Compression,
    },
    ExpireBackup {
        id: String,
        topic: String,
    },
    Notify {
        severity: String,
        message: String,
    },
}

impl Action {
    /// The kind of this action.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::ScaleBrokers { .. } => ActionKind::ScaleBrokers,
            Action::ReassignPartitions { .. } => ActionKind::ReassignPartitions,
            Action::ElectLeaders {} => ActionKind::ElectLeaders,
            Action::RecoverPod { .. } => ActionKind::RecoverPod,
            Action::RestartPod { .. } => ActionKind::RestartPod,
            Action::ReplacePod { .. } => ActionKind::ReplacePod,
            Action::ResizeVolume { .. } => ActionKind::ResizeVolume,
            Action::ReplaceVolume { .. } => ActionKind::ReplaceVolume,
            Action::RenewCertificate { .. } => ActionKind::RenewCertificate,
            Action::BackupTopic { .. } => ActionKind::BackupTopic,
            Action::ExpireBackup { .. } => ActionKind::ExpireBackup,
            Action::Notify { .. } => ActionKind::Notify,
        }
    }

    /// Work the executor runs beside operations: notifications and backup jobs, which change
    /// nothing in the cluster and take no operation slot.
    pub const fn is_side_task(&self) -> bool {
        matches!(self, Action::Notify { .. } | Action::BackupTopic { .. } | Action::ExpireBackup { .. })
    }
}

/// An action and the decision that led to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    pub action: Action,
    pub rule: String,
    pub message: String,
    #[serde(default)]
    pub approval_required: bool,
}

/// A decision the planner did not turn into an action, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deferred {
    pub kind: ActionKind,
    pub rule: String,
    pub why: String,
}

/// What to do this tick: at most one operation (the first of `actions` the executor admits),
/// any number of notifications.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub actions: Vec<Planned>,
    pub deferred: Vec<Deferred>,
}

/// What the agent remembers of its own actions on one cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// When the last operation of each kind finished (whatever its outcome).
    pub last_finished: BTreeMap<ActionKind, Timestamp>,
    /// Kind of the operation in flight, if any.
    pub in_flight: Option<ActionKind>,
    /// Id of the last operation that finished.
    #[serde(default)]
    pub last_operation: Option<String>,
}

impl History {
    /// Seconds since the last operation of each kind finished, for the policy input.
    pub fn seconds_since_last(&self, now: Timestamp) -> BTreeMap<ActionKind, f64> {
        self.last_finished.iter().map(|(k, t)| (*k, (now - *t).as_secs_f64())).collect()
    }

    fn cooldown_left(&self, kind: ActionKind, limits: &Limits, now: Timestamp) -> Option<Duration> {
        let last = self.last_finished.get(&kind)?;
        let until = *last + limits.cooldown(kind);
        (until > now).then(|| until - now)
    }
}

/// Plan the actions for one cluster.
pub fn plan(snapshot: &Snapshot, decisions: &[Decision], history: &History, limits: &Limits, now: Timestamp) -> Plan {
    let mut ordered: Vec<&Decision> = decisions.iter().collect();
    // Priority by kind, then a stable order so the same input always gives the same plan.
    ordered.sort_by(|a, b| (a.request.kind(), &a.rule, &a.message).cmp(&(b.request.kind(), &b.rule, &b.message)));
    let mut out = Plan::default();
    let mut seen = std::collections::BTreeSet::new();
    for d in ordered {
        let kind = d.request.kind();
        let defer = |why: String| Deferred { kind, rule: d.rule.clone(), why };
        if !seen.insert((kind, d.rule.clone(), serde_json::to_string(&d.request).unwrap_or_default())) {
            continue;
        }
        if matches!(kind, ActionKind::BackupTopic | ActionKind::ExpireBackup) {
            // Backups read Kafka and the catalog only; they need those fresh, and no cooldown
            // (the schedule is their pace).
            if snapshot.data.kafka.stale || snapshot.backups.is_none() {
                out.deferred.push(defer("the Kafka metadata or the backup catalog is missing or stale".into()));
                continue;
            }
        } else if kind != ActionKind::Notify {
            if !snapshot.complete {
                out.deferred.push(defer("data is stale or missing; no action on incomplete data".into()));
                continue;
            }
            if let Some(left) = history.cooldown_left(kind, limits, now) {
                out.deferred.push(defer(format!("cooldown: {} left", crate::time::format_seconds(left))));
                continue;
            }
        }
        match concretise(d, snapshot, limits) {
            Ok(action) => out.actions.push(Planned {
                action,
                rule: d.rule.clone(),
                message: d.message.clone(),
                approval_required: d.approval_required,
            }),
            Err(why) => out.deferred.push(defer(why)),
        }
    }
    out
}

/// Check a request against the snapshot and fill in what the executor needs.
fn concretise(d: &Decision, s: &Snapshot, limits: &Limits) -> Result<Action, String> {
    let request = &d.request;
    let broker_exists =
        |b: i32| s.broker(b).map(|_| ()).ok_or_else(|| format!("broker {b} is not part of cluster {}", s.cluster));
    match request {
        Request::ScaleBrokers { to, drain_timeout } => {
            let from = validate_scale(s, *to)?;
            let remove =
                s.node_pool.as_ref().map(|p| brokers_to_remove(p, from.saturating_sub(*to))).unwrap_or_default();
            Ok(Action::ScaleBrokers {
                from,
                to: *to,
                remove,
                drain_timeout: drain_timeout.unwrap_or(limits.drain_timeout),
            })
        }
        Request::ReassignPartitions { from_brokers } => {
            for b in from_brokers {
                broker_exists(*b)?;
            }
            let plan = rebalance::plan_moves(s, from_brokers).map_err(|e| format!("cannot plan moves: {e}"))?;
            if plan.stats.unplaced > 0 {
                return Err(format!("{} replicas have no broker to go to (racks or capacity)", plan.stats.unplaced));
            }
            let moves = rebalance::targets(&plan);
            if moves.is_empty() {
                return Err("assignment is already balanced".into());
            }
            Ok(Action::ReassignPartitions { moves, sla: None })
        }
        Request::ReplaceReplicas { broker, partitions, sla } => {
            broker_exists(*broker)?;
            let moves = replacements(s, *broker, partitions)?;
            Ok(Action::ReassignPartitions { moves, sla: *sla })
        }
        Request::RecoverPod { broker } => {
            let b = s.broker(*broker).ok_or_else(|| format!("broker {broker} is not part of cluster {}", s.cluster))?;
            Ok(Action::RecoverPod { broker: *broker, pvc: b.pod.as_ref().and_then(|p| p.pvc.clone()) })
        }
        Request::ElectLeaders {} => Ok(Action::ElectLeaders {}),
        Request::RestartPod { broker } => broker_exists(*broker).map(|()| Action::RestartPod { broker: *broker }),
        Request::ReplacePod { broker } => broker_exists(*broker).map(|()| Action::ReplacePod { broker: *broker }),
        Request::ReplaceVolume { broker } => broker_exists(*broker).map(|()| Action::ReplaceVolume { broker: *broker }),
        Request::ResizeVolume { broker, to_bytes } => {
            broker_exists(*broker)?;
            let from = s.node_pool.as_ref().map(|p| p.storage_bytes).ok_or("no node pool observed")?;
            if *to_bytes <= from {
                return Err(format!("volumes never shrink: {to_bytes} bytes is not more than {from}"));
            }
            Ok(Action::ResizeVolume { broker: *broker, from_bytes: from, to_bytes: *to_bytes })
        }
        Request::RenewCertificate { secret } => s
            .certificates
            .iter()
            .find(|c| &c.secret == secret)
            .map(|c| Action::RenewCertificate { secret: secret.clone(), not_after: c.not_after })
            .ok_or_else(|| format!("no certificate in secret {secret}")),
        Request::BackupTopic { topic, compression } => {
            if !s.topics.iter().any(|t| &t.name == topic) {
                return Err(format!("no topic {topic} in cluster {}", s.cluster));
            }
            if s.backups.as_ref().and_then(|b| b.topics.get(topic)).is_some_and(|t| t.running) {
                return Err(format!("a backup of {topic} is already running"));
            }
            Ok(Action::BackupTopic { topic: topic.clone(), compression: *compression })
        }
        Request::ExpireBackup { id } => expirable(s, id),
        Request::Notify { severity } => Ok(Action::Notify { severity: severity.clone(), message: d.message.clone() }),
    }
}

/// A backup retention may delete: it exists, nothing writes it, and it is not the newest
/// complete backup of its topic (retention never leaves a topic without one).
fn expirable(s: &Snapshot, id: &str) -> Result<Action, String> {
    let catalog = s.backups.as_ref().ok_or("no backup catalog")?;
    let b = catalog.entries.iter().find(|b| b.entry.id == id).ok_or_else(|| format!("no backup {id}"))?;
    if b.entry.running {
        return Err(format!("backup {id} is being written"));
    }
    let newest = catalog.topics.get(&b.entry.topic).and_then(|t| t.last_completed_at);
    if b.complete && b.entry.completed_at == newest {
        return Err(format!("backup {id} is the newest complete backup of {}; it is kept", b.entry.topic));
    }
    Ok(Action::ExpireBackup { id: id.to_owned(), topic: b.entry.topic.clone() })
}

/// A partition, as policies name one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// For each partition, its replica on `from` replaced by a healthy broker that does not hold
/// it: the same rack when one is free, else a rack the partition does not use yet, else any;
/// the least loaded first. Errors name a partition that cannot be placed.
fn replacements(s: &Snapshot, from: i32, partitions: &[TopicPartition]) -> Result<Vec<PartitionTarget>, String> {
    use crate::snapshot::BrokerState;
    let rack_of = |b: i32| s.broker(b).and_then(|x| x.rack.clone());
    let mut load: BTreeMap<i32, u32> = s
        .brokers
        .iter()
        .filter(|b| b.id != from && b.registered && b.state == BrokerState::Healthy)
        .map(|b| (b.id, b.replicas))
        .collect();
    let mut moves = Vec::new();
    for tp in partitions {
        let p = s
            .all_partitions()
            .find(|p| p.topic == tp.topic && p.partition == tp.partition)
            .ok_or_else(|| format!("no partition {}-{}", tp.topic, tp.partition))?;
        let Some(slot) = p.replicas.iter().position(|r| *r == from) else {
            return Err(format!("broker {from} holds no replica of {}-{}", tp.topic, tp.partition));
        };
        let used: Vec<Option<String>> = p.replicas.iter().filter(|r| **r != from).map(|r| rack_of(*r)).collect();
        let home = rack_of(from);
        let to = load
            .iter()
            .filter(|(b, _)| !p.replicas.contains(b))
            .min_by_key(|(b, n)| {
                let rack = rack_of(**b);
                let fit = if rack == home {
                    0
                } else if !used.contains(&rack) {
                    1
                } else {
                    2
                };
                (fit, **n, **b)
            })
            .map(|(b, _)| *b)
            .ok_or_else(|| format!("no healthy broker can take {}-{} from broker {from}", tp.topic, tp.partition))?;
        *load.entry(to).or_default() += 1;
        let mut replicas = p.replicas.clone();
        replicas[slot] = to;
        moves.push(PartitionTarget { topic: p.topic.clone(), partition: p.partition, replicas });
    }
    Ok(moves)
}

/// Fewest brokers the topics allow: every replica on its own broker, and one broker to spare
/// above `min.insync.replicas` so that losing a broker keeps producers writing.
pub fn broker_floor(s: &Snapshot) -> u32 {
    let (rf, min_isr) = replication_needs(s);
    rf.max(min_isr + 1).max(1)
}

/// The largest replication factor and `min.insync.replicas` of the cluster's topics.
fn replication_needs(s: &Snapshot) -> (u32, u32) {
    let rf = s.topics.iter().map(|t| t.replication_factor).max().unwrap_or(1);
    let min_isr = s.topics.iter().map(|t| t.min_insync_replicas).max().unwrap_or(0);
    (rf, min_isr)
}

/// Whether the cluster may be scaled to `to` brokers now; the current size, or why not.
/// The same checks serve the policies' decisions and an operator's request.
pub fn validate_scale(s: &Snapshot, to: u32) -> Result<u32, String> {
    if !s.complete {
        return Err("cluster data is stale or incomplete".into());
    }
    let pool = s.node_pool.as_ref().ok_or("no node pool observed")?;
    let from = pool.replicas;
    if to == from {
        return Err(format!("node pool already has {from} replicas"));
    }
    if let Some(quota) = s.broker_quota.filter(|q| to > *q) {
        return Err(format!("{to} brokers exceeds the cluster's broker quota of {quota}"));
    }
    let floor = broker_floor(s);
    if to < floor {
        let (rf, min_isr) = replication_needs(s);
        return Err(format!(
            "{to} brokers is below the minimum of {floor} (replication factor {rf}, min.insync.replicas {min_isr} plus one spare)"
        ));
    }
    if s.partitions.under_replicated > 0 {
        return Err(format!("{} partitions are under-replicated", s.partitions.under_replicated));
    }
    if s.partitions.offline > 0 {
        return Err(format!("{} partitions are offline", s.partitions.offline));
    }
    if !s.reassignments.is_empty() {
        return Err(format!("{} partition reassignments are in progress", s.reassignments.len()));
    }
    if let Some(b) = s.brokers.iter().find(|b| b.pool_member && b.state != crate::snapshot::BrokerState::Healthy) {
        return Err(format!("broker {} is {:?}", b.id, b.state));
    }
    Ok(from)
}

/// The `n` brokers a scale-down removes: those named by the node pool's
/// `strimzi.io/remove-node-ids` annotation first (in its order), then the highest node IDs, as
/// Strimzi itself chooses.
pub fn brokers_to_remove(pool: &crate::collect::NodePoolObservation, n: u32) -> Vec<i32> {
    let mut chosen: Vec<i32> = pool.remove_node_ids.iter().copied().filter(|b| pool.node_ids.contains(b)).collect();
    chosen.dedup();
    let mut highest = pool.node_ids.clone();
    highest.sort_unstable_by(|a, b| b.cmp(a));
    chosen.extend(highest.into_iter().filter(|b| !pool.remove_node_ids.contains(b)));
    chosen.truncate(n as usize);
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::sim::Load;
    use crate::fixtures;
    use crate::snapshot::BrokerTracker;

    fn decision(request: Request) -> Decision {
        Decision {
            package: "kafka.autopilot.test".into(),
            rule: "r".into(),
            message: String::new(),
            request,
            approval_required: false,
        }
    }

    async fn snapshot() -> Snapshot {
        let sim = fixtures::sim(3, Load { cpu: 0.5, memory: 0.5 });
        fixtures::snapshot(&sim, &mut BrokerTracker::default()).await
    }

    fn pool(ids: &[i32], annotated: &[i32]) -> crate::collect::NodePoolObservation {
        crate::collect::NodePoolObservation {
            name: "brokers".into(),
            replicas: ids.len() as u32,
            storage_bytes: 0,
            node_ids: ids.to_vec(),
            remove_node_ids: annotated.to_vec(),
        }
    }

    #[test]
    fn removal_honours_the_annotation_then_takes_the_highest_ids() {
        assert_eq!(brokers_to_remove(&pool(&[0, 1, 2, 3, 4], &[]), 2), vec![4, 3]);
        assert_eq!(brokers_to_remove(&pool(&[0, 1, 2, 3, 4], &[1]), 2), vec![1, 4]);
        assert_eq!(brokers_to_remove(&pool(&[0, 1, 2, 3, 4], &[2, 0, 7]), 1), vec![2], "unknown ids are ignored");
        assert_eq!(brokers_to_remove(&pool(&[0, 1, 2], &[]), 0), Vec::<i32>::new());
    }

    #[tokio::test]
    async fn scaling_is_refused_with_the_reason() {
        let mut s = snapshot().await;
        assert!(validate_scale(&s, 2).unwrap_err().contains("below the minimum of 3"));
        s.broker_quota = Some(4);
        assert_eq!(validate_scale(&s, 5).unwrap_err(), "5 brokers exceeds the cluster's broker quota of 4");
        assert_eq!(validate_scale(&s, 4), Ok(3));
        s.complete = false;
        assert_eq!(validate_scale(&s, 4).unwrap_err(), "cluster data is stale or incomplete");
    }

    #[tokio::test]
    async fn a_scale_decision_becomes_an_action_with_its_origin() {
        let s = snapshot().await;
        let p = plan(
            &s,
            &[decision(Request::ScaleBrokers { to: 5, drain_timeout: None })],
            &History::default(),
            &Limits::default(),
            s.at,
        );
        assert_eq!(
            p.actions[0].action,
            Action::ScaleBrokers { from: 3, to: 5, remove: vec![], drain_timeout: Limits::default().drain_timeout }
        );
        assert_eq!(p.actions[0].rule, "r");
    }

    #[tokio::test]
    async fn cooldown_defers_with_the_time_left() {
        let s = snapshot().await;
        let mut h = History::default();
        h.last_finished.insert(ActionKind::ScaleBrokers, s.at.saturating_sub(Duration::from_secs(60)));
        let p =
            plan(&s, &[decision(Request::ScaleBrokers { to: 5, drain_timeout: None })], &h, &Limits::default(), s.at);
        assert!(p.actions.is_empty());
        assert_eq!(p.deferred[0].why, "cooldown: 9m left");
    }

    #[tokio::test]
    async fn stale_data_defers_everything_but_notifications() {
        let mut s = snapshot().await;
        s.complete = false;
        let ds = [
            decision(Request::ScaleBrokers { to: 5, drain_timeout: None }),
            decision(Request::Notify { severity: "warning".into() }),
        ];
        let p = plan(&s, &ds, &History::default(), &Limits::default(), s.at);
        assert_eq!(p.actions.len(), 1);
        assert_eq!(p.actions[0].action.kind(), ActionKind::Notify);
        assert!(p.deferred[0].why.contains("stale"));
    }

    #[rstest::rstest]
    #[case::same_size(Request::ScaleBrokers { to: 3, drain_timeout: None }, "already has 3")]
    #[case::below_rf(Request::ScaleBrokers { to: 2, drain_timeout: None }, "replication factor 3")]
    #[case::unknown_broker(Request::RestartPod { broker: 42 }, "broker 42 is not part")]
    #[case::shrink_volume(Request::ResizeVolume { broker: 0, to_bytes: 1 }, "never shrink")]
    #[case::unknown_secret(Request::RenewCertificate { secret: "nope".into() }, "no certificate")]
    #[tokio::test]
    async fn invalid_requests_are_deferred_with_a_reason(#[case] request: Request, #[case] why: &str) {
        let s = snapshot().await;
        let p = plan(&s, &[decision(request)], &History::default(), &Limits::default(), s.at);
        assert!(p.actions.is_empty());
        assert!(p.deferred[0].why.contains(why), "{:?}", p.deferred);
    }

    #[tokio::test]
    async fn healing_comes_before_scaling_and_duplicates_collapse() {
        let s = snapshot().await;
        let ds = [
            decision(Request::ScaleBrokers { to: 5, drain_timeout: None }),
            decision(Request::RestartPod { broker: 1 }),
            decision(Request::RestartPod { broker: 1 }),
        ];
        let p = plan(&s, &ds, &History::default(), &Limits::default(), s.at);
        let kinds: Vec<ActionKind> = p.actions.iter().map(|a| a.action.kind()).collect();
        assert_eq!(kinds, vec![ActionKind::RestartPod, ActionKind::ScaleBrokers]);
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in ActionKind::ALL {
            assert_eq!(k.as_str().parse::<ActionKind>(), Ok(*k));
        }
        assert!("scale".parse::<ActionKind>().is_err());
    }
}
