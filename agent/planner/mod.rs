//! The rebalance planner: from a current assignment, brokers (racks, capacities, roles) and
//! partition sizes, a target assignment and the ordered moves that reach it. Pure and
//! deterministic: the same problem always gives the same plan.
//!
//! Goals, in priority order:
//! 1. hard: a partition never holds two replicas on one broker, its replicas spread over as
//!    many racks as its replication factor allows, drained brokers end with nothing, and no
//!    broker ends above its disk capacity;
//! 2. replica counts balanced (within each rack to one replica; across racks as evenly as rack
//!    awareness allows), then preferred leaders balanced, then disk;
//! 3. as few replicas (and, among equals, bytes) moved as possible.
//!
//! Used by scale-up and scale-down, by healing (draining a dead broker) and offline through
//! `autopilot plan` on Kafka's own JSON files ([`files`]).

mod balance;
pub mod files;
mod leaders;
pub mod synthetic;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// What a broker may do in the plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Keeps and receives replicas.
    #[default]
    Active,
    /// Gives away every replica (scale-down, replacement).
    Drain,
    /// Neither gives nor receives (a broker that is down but not being drained).
    Frozen,
}

/// One broker as the planner sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BrokerSpec {
    pub id: i32,
    #[serde(default)]
    pub rack: Option<String>,
    /// Disk the broker's logs may use; none means unbounded.
    #[serde(default)]
    pub capacity_bytes: Option<u64>,
    #[serde(default)]
    pub role: Role,
}

/// One partition's current replicas (preferred leader first) and size on disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartitionSpec {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    #[serde(default)]
    pub size_bytes: u64,
}

/// The planner's input.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub brokers: Vec<BrokerSpec>,
    pub partitions: Vec<PartitionSpec>,
}

/// One partition whose replicas change, as Kafka's reassignment takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub from: Vec<i32>,
    pub to: Vec<i32>,
    /// Replicas placed on a broker that did not hold them (0 for a pure leader reorder).
    pub replicas_moved: u32,
    /// Bytes copied over the network: size times replicas moved.
    pub bytes: u64,
}

impl Move {
    /// Brokers that give or receive a replica (the ones a reassignment loads).
    pub fn brokers_involved(&self) -> impl Iterator<Item = i32> + '_ {
        let gone = self.from.iter().filter(|b| !self.to.contains(b));
        let new = self.to.iter().filter(|b| !self.from.contains(b));
        gone.chain(new).copied()
    }
}

/// Figures that say how good a plan is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub brokers: usize,
    pub partitions: usize,
    pub replicas: usize,
    /// Replicas placed on a new broker.
    pub replica_moves: u64,
    /// Fewest replica moves any plan reaching the balanced counts needs.
    pub lower_bound: u64,
    pub bytes_moved: u64,
    /// Partitions whose preferred leader changes.
    pub leader_changes: u64,
    /// Max - min replicas per active broker.
    pub spread_before: u64,
    pub spread_after: u64,
    /// The smallest spread rack awareness allows with these racks.
    pub reachable_spread: u64,
    /// Max - min replicas per active broker within one rack, worst rack.
    pub rack_spread_after: u64,
    pub leader_spread_before: u64,
    pub leader_spread_after: u64,
    /// Partitions spread over fewer racks than their replication factor allows.
    pub rack_violations_before: u64,
    pub rack_violations_after: u64,
    /// Replicas that had to move (drained broker, rack violation) but found no valid broker.
    pub unplaced: u64,
    /// Brokers above their capacity after the plan.
    pub over_capacity_after: Vec<i32>,
}

/// A planner's answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Partitions that change, cheapest data moves first, then pure leader reorders.
    pub moves: Vec<Move>,
    pub stats: Stats,
}

/// Why a problem cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("broker {id} is listed twice")]
    DuplicateBroker { id: i32 },
    #[error("partition {topic}-{partition} is listed twice")]
    DuplicatePartition { topic: String, partition: i32 },
    #[error("partition {topic}-{partition} has a replica on broker {broker}, which is not in the broker list")]
    UnknownBroker { topic: String, partition: i32, broker: i32 },
    #[error("partition {topic}-{partition} lists broker {broker} twice")]
    DuplicateReplica { topic: String, partition: i32, broker: i32 },
    #[error("partition {topic}-{partition} has no replicas")]
    NoReplicas { topic: String, partition: i32 },
    #[error("no active broker to place replicas on")]
    NoActiveBrokers,
}

impl Error {
    /// Bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::DuplicateBroker { .. } => "duplicate_broker",
            Error::DuplicatePartition { .. } => "duplicate_partition",
            Error::UnknownBroker { .. } => "unknown_broker",
            Error::DuplicateReplica { .. } => "duplicate_replica",
            Error::NoReplicas { .. } => "no_replicas",
            Error::NoActiveBrokers => "no_active_brokers",
        }
    }
}

/// Plan the moves that satisfy the hard goals and balance the cluster.
pub fn plan(problem: &Problem) -> Result<Plan, Error> {
    let mut m = balance::Model::new(problem)?;
    let before = m.summary();
    let violating = m.fix_racks();
    let lower_bound = m.set_targets().max(violating);
    m.move_excess();
    m.relieve_capacity();
    let leader_spread_before = leaders::spread(&m, true);
    leaders::balance(&mut m);
    let after = m.summary();
    let moves = m.moves(problem);
    let stats = Stats {
        brokers: problem.brokers.len(),
        partitions: problem.partitions.len(),
        replicas: m.replica_total(),
        replica_moves: moves.iter().map(|x| u64::from(x.replicas_moved)).sum(),
        lower_bound,
        bytes_moved: moves.iter().map(|x| x.bytes).sum(),
        leader_changes: moves.iter().filter(|x| x.from.first() != x.to.first()).count() as u64,
        spread_before: before.spread,
        spread_after: after.spread,
        reachable_spread: m.reachable_spread(),
        rack_spread_after: after.rack_spread,
        leader_spread_before,
        leader_spread_after: leaders::spread(&m, false),
        rack_violations_before: before.rack_violations,
        rack_violations_after: after.rack_violations,
        unplaced: m.unplaced(),
        over_capacity_after: m.over_capacity(),
    };
    Ok(Plan { moves, stats })
}

/// Validate a problem and index its brokers: id -> position.
fn index_brokers(problem: &Problem) -> Result<HashMap<i32, u32>, Error> {
    let mut index = HashMap::with_capacity(problem.brokers.len());
    for (i, b) in problem.brokers.iter().enumerate() {
        if index.insert(b.id, i as u32).is_some() {
            return Err(Error::DuplicateBroker { id: b.id });
        }
    }
    if !problem.brokers.iter().any(|b| b.role == Role::Active) {
        return Err(Error::NoActiveBrokers);
    }
    let mut seen = std::collections::HashSet::with_capacity(problem.partitions.len());
    for p in &problem.partitions {
        let named = || (p.topic.clone(), p.partition);
        if !seen.insert((p.topic.as_str(), p.partition)) {
            let (topic, partition) = named();
            return Err(Error::DuplicatePartition { topic, partition });
        }
        if p.replicas.is_empty() {
            let (topic, partition) = named();
            return Err(Error::NoReplicas { topic, partition });
        }
        for (i, r) in p.replicas.iter().enumerate() {
            if !index.contains_key(r) {
                let (topic, partition) = named();
                return Err(Error::UnknownBroker { topic, partition, broker: *r });
            }
            if p.replicas[..i].contains(r) {
                let (topic, partition) = named();
                return Err(Error::DuplicateReplica { topic, partition, broker: *r });
            }
        }
    }
    Ok(index)
}

#[cfg(test)]
mod tests;
