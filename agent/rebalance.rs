//! The planner applied to a live cluster: builds the planner's problem from a snapshot (live
//! brokers active, the ones to drain draining, the rest frozen; partitions being reassigned or
//! offline left alone) and returns the partitions to reassign. Pure.

use crate::backend::PartitionTarget;
use crate::planner::{self, BrokerSpec, PartitionSpec, Problem, Role};
use crate::snapshot::{BrokerState, Snapshot};

/// The planner's problem for `s`, draining `drain`.
pub fn problem(s: &Snapshot, drain: &[i32]) -> Problem {
    let mut brokers: Vec<BrokerSpec> = s
        .brokers
        .iter()
        .map(|b| BrokerSpec {
            id: b.id,
            rack: b.rack.clone(),
            capacity_bytes: None,
            role: if drain.contains(&b.id) {
                Role::Drain
            } else if b.registered && b.state == BrokerState::Healthy {
                Role::Active
            } else {
                Role::Frozen
            },
        })
        .collect();
    let partitions: Vec<PartitionSpec> = s
        .all_partitions()
        .filter(|p| !p.reassigning && !p.offline)
        .map(|p| PartitionSpec {
            topic: p.topic.clone(),
            partition: p.partition,
            replicas: p.replicas.clone(),
            size_bytes: p.size_bytes.unwrap_or(0),
        })
        .collect();
    // Replicas on brokers the snapshot does not list (gone from metadata and Kubernetes) stay.
    for r in partitions.iter().flat_map(|p| &p.replicas) {
        if !brokers.iter().any(|b| b.id == *r) {
            brokers.push(BrokerSpec { id: *r, rack: None, capacity_bytes: None, role: Role::Frozen });
        }
    }
    Problem { brokers, partitions }
}

/// Moves that drain `drain` (if any) and balance the cluster's live brokers, cheapest first.
pub fn plan_moves(s: &Snapshot, drain: &[i32]) -> Result<planner::Plan, planner::Error> {
    planner::plan(&problem(s, drain))
}

/// The reassignment targets of a plan, in its order.
pub fn targets(plan: &planner::Plan) -> Vec<PartitionTarget> {
    plan.moves
        .iter()
        .map(|m| PartitionTarget { topic: m.topic.clone(), partition: m.partition, replicas: m.to.clone() })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use super::*;
    use crate::backend::sim::{ClusterSpec, Load, SimBackend, SimCluster};
    use crate::fixtures;
    use crate::snapshot::BrokerTracker;

    async fn grown(brokers: u32, to: u32) -> Snapshot {
        let mut c = SimCluster::new(ClusterSpec::uniform("t", brokers, 4), fixtures::T0).unwrap();
        c.set_load(Load { cpu: 0.5, memory: 0.5 });
        let sim = SimBackend::new(c);
        sim.backends().kube.scale_node_pool(to, &[]).await.unwrap();
        fixtures::advance(&sim, Duration::from_secs(300));
        fixtures::snapshot(&sim, &mut BrokerTracker::default()).await
    }

    fn apply(s: &Snapshot, moves: &[PartitionTarget]) -> BTreeMap<(String, i32), Vec<i32>> {
        let mut a: BTreeMap<(String, i32), Vec<i32>> =
            s.all_partitions().map(|p| ((p.topic.clone(), p.partition), p.replicas.clone())).collect();
        for m in moves {
            a.insert((m.topic.clone(), m.partition), m.replicas.clone());
        }
        a
    }

    fn racks_of(s: &Snapshot, replicas: &[i32]) -> BTreeSet<String> {
        replicas.iter().filter_map(|r| s.broker(*r).and_then(|b| b.rack.clone())).collect()
    }

    #[tokio::test]
    async fn new_brokers_get_their_share_without_losing_rack_diversity() {
        let s = grown(3, 6).await;
        let moves = targets(&plan_moves(&s, &[]).unwrap());
        let after = apply(&s, &moves);
        let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
        for (key, replicas) in &after {
            let before = s.all_partitions().find(|p| (p.topic.clone(), p.partition) == *key).unwrap();
            assert_eq!(racks_of(&s, replicas).len(), racks_of(&s, &before.replicas).len(), "{key:?} lost a rack");
            let distinct: BTreeSet<_> = replicas.iter().collect();
            assert_eq!(distinct.len(), replicas.len());
            for r in replicas {
                *counts.entry(*r).or_default() += 1;
            }
        }
        let (lo, hi) = (counts.values().min().unwrap(), counts.values().max().unwrap());
        assert!(hi - lo <= 1, "6 brokers in 3 racks balance exactly: {counts:?}");
        assert_eq!(targets(&plan_moves(&s, &[]).unwrap()), moves, "deterministic");
    }

    #[tokio::test]
    async fn draining_moves_every_replica_off() {
        let s = grown(5, 5).await;
        let moves = targets(&plan_moves(&s, &[4, 3]).unwrap());
        let after = apply(&s, &moves);
        assert!(after.values().all(|r| !r.contains(&4) && !r.contains(&3)), "{after:?}");
    }

    #[tokio::test]
    async fn a_balanced_cluster_needs_no_moves() {
        let s = grown(3, 3).await;
        assert!(plan_moves(&s, &[]).unwrap().moves.is_empty());
    }
}
