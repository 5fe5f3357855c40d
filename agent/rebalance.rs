//! A rack-aware partition rebalance: which replicas to move so that replicas and preferred
//! leaders spread evenly over the live brokers, moving as few bytes as it can. Pure and
//! deterministic.
//!
//! Hard goals: a partition never has two replicas on one broker and never loses rack
//! diversity; replicas on `drain` brokers all move. Then: replica counts within one of each
//! other where racks allow it, smallest partitions moved first, preferred leaders balanced.

use std::collections::{BTreeMap, BTreeSet};

use crate::backend::PartitionTarget;
use crate::snapshot::Snapshot;

struct Part {
    topic: String,
    partition: i32,
    size: u64,
    replicas: Vec<i32>,
    original: Vec<i32>,
}

struct State<'a> {
    racks: BTreeMap<i32, Option<&'a str>>,
    counts: BTreeMap<i32, usize>,
}

impl State<'_> {
    fn rack(&self, b: i32) -> Option<&str> {
        self.racks.get(&b).copied().flatten()
    }

    /// Whether `to` may replace `from` in `replicas` without losing rack diversity.
    fn rack_ok(&self, replicas: &[i32], from: i32, to: i32) -> bool {
        if replicas.contains(&to) {
            return false;
        }
        let Some(to_rack) = self.rack(to) else {
            return true;
        };
        if self.rack(from) == Some(to_rack) {
            return true;
        }
        !replicas.iter().filter(|r| **r != from).any(|r| self.rack(*r) == Some(to_rack))
    }

    fn least_loaded(&self, replicas: &[i32], from: i32) -> Option<i32> {
        self.counts
            .iter()
            .filter(|(b, _)| self.rack_ok(replicas, from, **b))
            .min_by_key(|(b, c)| (**c, **b))
            .map(|(b, _)| *b)
    }
}

/// Moves that drain `drain` (if any) and balance the cluster's live brokers.
pub fn plan_moves(s: &Snapshot, drain: &[i32]) -> Vec<PartitionTarget> {
    let live: Vec<_> = s.live_brokers().filter(|b| !drain.contains(&b.id)).collect();
    if live.is_empty() {
        return Vec::new();
    }
    let mut st = State {
        racks: live.iter().map(|b| (b.id, b.rack.as_deref())).collect(),
        counts: live.iter().map(|b| (b.id, 0)).collect(),
    };
    for b in drain {
        st.racks.entry(*b).or_insert_with(|| s.broker(*b).and_then(|x| x.rack.as_deref()));
    }
    let mut parts: Vec<Part> = s
        .all_partitions()
        .filter(|p| !p.reassigning && !p.offline)
        .map(|p| Part {
            topic: p.topic.clone(),
            partition: p.partition,
            size: p.size_bytes.unwrap_or(0),
            replicas: p.replicas.clone(),
            original: p.replicas.clone(),
        })
        .collect();
    // Smallest first: every choice below prefers the partition that is cheapest to move.
    parts.sort_by(|a, b| (a.size, &a.topic, a.partition).cmp(&(b.size, &b.topic, b.partition)));
    for r in parts.iter().flat_map(|p| &p.replicas) {
        if let Some(c) = st.counts.get_mut(r) {
            *c += 1;
        }
    }
    drain_brokers(&mut parts, &mut st, drain);
    balance_replicas(&mut parts, &mut st);
    balance_leaders(&mut parts, &st);
    parts
        .into_iter()
        .filter(|p| p.replicas != p.original)
        .map(|p| PartitionTarget { topic: p.topic, partition: p.partition, replicas: p.replicas })
        .collect()
}

fn drain_brokers(parts: &mut [Part], st: &mut State<'_>, drain: &[i32]) {
    for p in parts.iter_mut() {
        for i in 0..p.replicas.len() {
            let from = p.replicas[i];
            if !drain.contains(&from) {
                continue;
            }
            if let Some(to) = st.least_loaded(&p.replicas, from) {
                p.replicas[i] = to;
                *st.counts.entry(to).or_default() += 1;
            }
        }
    }
}

fn balance_replicas(parts: &mut [Part], st: &mut State<'_>) {
    // Each pass moves at most one replica per broker pair; stop when no move helps.
    let limit = parts.iter().map(|p| p.replicas.len()).sum::<usize>();
    for _ in 0..limit {
        let Some(moved) = one_balancing_move(parts, st) else {
            break;
        };
        if !moved {
            break;
        }
    }
}

fn one_balancing_move(parts: &mut [Part], st: &mut State<'_>) -> Option<bool> {
    let mut by_load: Vec<(usize, i32)> = st.counts.iter().map(|(b, c)| (*c, *b)).collect();
    by_load.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(max_count, from) in &by_load {
        for &(to_count, to) in by_load.iter().rev() {
            if to_count + 1 >= max_count {
                break;
            }
            let candidate = parts.iter_mut().find_map(|p| {
                let i = p.replicas.iter().position(|r| *r == from)?;
                st.rack_ok(&p.replicas, from, to).then_some((p, i))
            });
            if let Some((p, i)) = candidate {
                p.replicas[i] = to;
                *st.counts.entry(from).or_default() -= 1;
                *st.counts.entry(to).or_default() += 1;
                return Some(true);
            }
        }
    }
    Some(false)
}

fn balance_leaders(parts: &mut [Part], st: &State<'_>) {
    let mut leads: BTreeMap<i32, usize> = st.counts.keys().map(|b| (*b, 0)).collect();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    // Partitions whose replicas did not change first: keep their leader unless it is overloaded.
    order.sort_by_key(|i| (parts[*i].replicas == parts[*i].original, *i));
    let fair = parts.len().div_ceil(leads.len().max(1));
    for i in order {
        let p = &mut parts[i];
        let current = p.replicas[0];
        let keep = leads.get(&current).is_some_and(|c| *c < fair);
        let chosen = if keep {
            current
        } else {
            let members: BTreeSet<i32> = p.replicas.iter().copied().collect();
            match members.iter().filter_map(|b| leads.get(b).map(|c| (*c, *b))).min() {
                Some((_, b)) => b,
                None => current,
            }
        };
        if let Some(pos) = p.replicas.iter().position(|r| *r == chosen) {
            p.replicas.swap(0, pos);
        }
        *leads.entry(chosen).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::backend::sim::{ClusterSpec, Load, SimBackend, SimCluster};
    use crate::fixtures;
    use crate::snapshot::BrokerTracker;

    async fn grown(brokers: u32, to: u32) -> Snapshot {
        let mut c = SimCluster::new(ClusterSpec::uniform("t", brokers, 4), fixtures::T0).unwrap();
        c.set_load(Load { cpu: 0.5, memory: 0.5 });
        let sim = SimBackend::new(c);
        sim.backends().kube.scale_node_pool(to).await.unwrap();
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
        let moves = plan_moves(&s, &[]);
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
        assert_eq!(plan_moves(&s, &[]), moves, "deterministic");
    }

    #[tokio::test]
    async fn draining_moves_every_replica_off() {
        let s = grown(5, 5).await;
        let moves = plan_moves(&s, &[4, 3]);
        let after = apply(&s, &moves);
        assert!(after.values().all(|r| !r.contains(&4) && !r.contains(&3)), "{after:?}");
    }

    #[tokio::test]
    async fn a_balanced_cluster_needs_no_moves() {
        let s = grown(3, 3).await;
        assert!(plan_moves(&s, &[]).is_empty());
    }
}
