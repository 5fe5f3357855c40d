//! The planner's working model: brokers and partitions as dense indices over flat arrays, so a
//! plan over 100,000 partitions touches a few megabytes and no hash map in its inner loops.

use std::collections::{BTreeMap, BTreeSet};

use super::{index_brokers, Error, Move, Problem, Role};

/// Per-partition rack bounds: with `k` racks and replication factor `r`, every rack holds
/// between `floor(r/k)` and `ceil(r/k)` of the partition's replicas.
fn rack_bounds(r: u32, k: u32) -> (u32, u32) {
    let k = k.max(1);
    (r / k, r.div_ceil(k))
}

/// Counts and rack spread of one state of the model.
pub(super) struct Summary {
    pub spread: u64,
    pub rack_spread: u64,
    pub rack_violations: u64,
}

pub(super) struct Model {
    pub role: Vec<Role>,
    /// Rack index of each broker; active racks are `0..k`.
    pub rack: Vec<u32>,
    pub k: u32,
    /// Active brokers of each active rack.
    pub members: Vec<Vec<u32>>,
    cap: Vec<Option<u64>>,
    used: Vec<u64>,
    pub count: Vec<u32>,
    original_count: Vec<u32>,
    target: Vec<u32>,
    /// Partition `p`'s replicas are `reps[start[p]..start[p + 1]]`, preferred leader first.
    pub start: Vec<u32>,
    pub reps: Vec<u32>,
    pub original_leader: Vec<u32>,
    size: Vec<u64>,
    /// Partitions by size, then name: every "first" below is the cheapest to move.
    order: Vec<u32>,
    /// Active brokers still below their target, per active rack.
    wanting: Vec<Vec<u32>>,
}

impl Model {
    pub fn new(problem: &Problem) -> Result<Self, Error> {
        let index = index_brokers(problem)?;
        let role: Vec<Role> = problem.brokers.iter().map(|b| b.role).collect();
        let (rack, k) = rack_indices(problem);
        let mut members = vec![Vec::new(); k as usize];
        for (b, r) in rack.iter().enumerate() {
            if role[b] == Role::Active {
                members[*r as usize].push(b as u32);
            }
        }
        let n = problem.brokers.len();
        let parts = &problem.partitions;
        let mut m = Model {
            role,
            rack,
            k,
            members,
            cap: problem.brokers.iter().map(|b| b.capacity_bytes).collect(),
            used: vec![0; n],
            count: vec![0; n],
            original_count: Vec::new(),
            target: vec![0; n],
            start: Vec::with_capacity(parts.len() + 1),
            reps: Vec::with_capacity(parts.len() * 3),
            original_leader: Vec::with_capacity(parts.len()),
            size: parts.iter().map(|p| p.size_bytes).collect(),
            order: (0..parts.len() as u32).collect(),
            wanting: Vec::new(),
        };
        for p in parts {
            m.start.push(m.reps.len() as u32);
            for r in &p.replicas {
                // Validated by index_brokers.
                let b = index.get(r).copied().unwrap_or_default();
                m.reps.push(b);
                m.count[b as usize] += 1;
                m.used[b as usize] += p.size_bytes;
            }
            m.original_leader.push(m.reps[*m.start.last().unwrap_or(&0) as usize]);
        }
        m.start.push(m.reps.len() as u32);
        m.original_count = m.count.clone();
        m.order.sort_unstable_by(|a, b| {
            let (x, y) = (&parts[*a as usize], &parts[*b as usize]);
            (x.size_bytes, &x.topic, x.partition).cmp(&(y.size_bytes, &y.topic, y.partition))
        });
        Ok(m)
    }

    pub fn partitions(&self) -> usize {
        self.start.len() - 1
    }

    pub fn replicas(&self, p: usize) -> &[u32] {
        &self.reps[self.start[p] as usize..self.start[p + 1] as usize]
    }

    pub fn replica_total(&self) -> usize {
        self.reps.len()
    }

    fn active(&self, b: u32) -> bool {
        self.role[b as usize] == Role::Active
    }

    /// Replicas of partition `p` in rack `rack`.
    fn in_rack(&self, p: usize, rack: u32) -> u32 {
        self.replicas(p).iter().filter(|b| self.rack[**b as usize] == rack).count() as u32
    }

    fn violates_racks(&self, p: usize) -> bool {
        let reps = self.replicas(p);
        let r = reps.len() as u32;
        let (_, most) = rack_bounds(r, self.k);
        let racks: BTreeSet<u32> = reps.iter().map(|b| self.rack[*b as usize]).collect();
        (racks.len() as u32) < r.min(self.k) || racks.iter().any(|x| self.in_rack(p, *x) > most)
    }

    fn fits(&self, b: u32, bytes: u64) -> bool {
        self.cap[b as usize].is_none_or(|c| self.used[b as usize] + bytes <= c)
    }

    fn fill(&self, b: u32) -> f64 {
        let used = self.used[b as usize] as f64;
        match self.cap[b as usize] {
            Some(c) if c > 0 => used / c as f64,
            _ => used,
        }
    }

    fn relocate(&mut self, p: usize, slot: usize, to: u32) {
        let i = self.start[p] as usize + slot;
        let from = self.reps[i] as usize;
        let bytes = self.size[p];
        self.count[from] -= 1;
        self.used[from] -= bytes;
        self.count[to as usize] += 1;
        self.used[to as usize] += bytes;
        self.reps[i] = to;
    }

    /// Whether the replica of `p` on a broker in rack `from_rack` may move to rack `to_rack`.
    fn rack_move_ok(&self, p: usize, from_rack: u32, to_rack: u32) -> bool {
        if from_rack == to_rack {
            return true;
        }
        let (least, most) = rack_bounds(self.replicas(p).len() as u32, self.k);
        let leaves_enough = from_rack >= self.k || self.in_rack(p, from_rack) > least;
        leaves_enough && self.in_rack(p, to_rack) < most
    }

    /// Bring every partition within its rack bounds; returns how many partitions violated them.
    pub fn fix_racks(&mut self) -> u64 {
        let mut violating = 0;
        for p in 0..self.partitions() {
            if !self.violates_racks(p) {
                continue;
            }
            violating += 1;
            for _ in 0..self.replicas(p).len() {
                if !self.violates_racks(p) || !self.fix_one(p) {
                    break;
                }
            }
        }
        violating
    }

    /// Move one replica of `p` from its most crowded rack to its emptiest active rack.
    fn fix_one(&mut self, p: usize) -> bool {
        let reps = self.replicas(p);
        let movable = (0..reps.len()).filter(|s| self.role[reps[*s] as usize] != Role::Frozen);
        let Some(slot) = movable.max_by_key(|s| {
            let b = reps[*s];
            (self.in_rack(p, self.rack[b as usize]), self.count[b as usize], std::cmp::Reverse(b))
        }) else {
            return false;
        };
        let to_rack = (0..self.k).filter(|r| !self.members[*r as usize].is_empty()).min_by_key(|r| self.in_rack(p, *r));
        let Some(to_rack) = to_rack else { return false };
        let bytes = self.size[p];
        let dest = self.members[to_rack as usize]
            .iter()
            .copied()
            .filter(|d| !self.replicas(p).contains(d) && self.fits(*d, bytes))
            .min_by_key(|d| (self.count[*d as usize], *d));
        match dest {
            Some(d) if self.rack[reps[slot] as usize] != to_rack => {
                self.relocate(p, slot, d);
                true
            }
            _ => false,
        }
    }

    /// Set every broker's target replica count and return the lower bound on replica moves:
    /// replicas that must leave their broker for the counts to reach the targets.
    pub fn set_targets(&mut self) -> u64 {
        let totals = self.rack_totals();
        for (r, total) in totals.iter().enumerate() {
            let mut brokers = self.members[r].clone();
            // The brokers holding most get the extra replica: fewest moves.
            brokers.sort_by_key(|b| (std::cmp::Reverse(self.original_count[*b as usize]), *b));
            let n = brokers.len() as u64;
            for (i, b) in brokers.iter().enumerate() {
                let extra = u64::from((i as u64) < total % n);
                self.target[*b as usize] = (total / n + extra) as u32;
            }
        }
        for b in 0..self.role.len() {
            match self.role[b] {
                Role::Drain => self.target[b] = 0,
                Role::Frozen => self.target[b] = self.count[b],
                Role::Active => {}
            }
        }
        self.wanting = self
            .members
            .iter()
            .map(|ms| ms.iter().copied().filter(|b| self.count[*b as usize] < self.target[*b as usize]).collect())
            .collect();
        (0..self.role.len())
            .filter(|b| self.role[*b] != Role::Frozen)
            .map(|b| u64::from(self.original_count[b].saturating_sub(self.target[b])))
            .sum()
    }

    /// Replicas each active rack should hold: as close to proportional to its brokers as the
    /// per-partition rack bounds allow (water-filling), rounded by largest remainder.
    fn rack_totals(&self) -> Vec<u64> {
        let k = self.k as usize;
        let mut by_rf: BTreeMap<u32, u64> = BTreeMap::new();
        let mut total = 0u64;
        for p in 0..self.partitions() {
            let movable = self.replicas(p).iter().filter(|b| self.role[**b as usize] != Role::Frozen).count();
            *by_rf.entry(self.replicas(p).len() as u32).or_default() += 1;
            total += movable as u64;
        }
        let n: Vec<f64> = self.members.iter().map(|m| m.len() as f64).collect();
        let (lo, hi): (Vec<f64>, Vec<f64>) = (0..k)
            .map(|r| {
                let mut lo = 0u64;
                let mut hi = 0u64;
                for (rf, parts) in &by_rf {
                    let (least, most) = rack_bounds(*rf, self.k);
                    lo += u64::from(least.min(self.members[r].len() as u32)) * parts;
                    hi += u64::from(most.min(self.members[r].len() as u32)) * parts;
                }
                (lo as f64, hi as f64)
            })
            .unzip();
        let fill = |level: f64| -> Vec<f64> { (0..k).map(|r| (n[r] * level).clamp(lo[r], hi[r])).collect() };
        let (mut low, mut high) = (0.0, total as f64 + 1.0);
        for _ in 0..100 {
            let mid = (low + high) / 2.0;
            if fill(mid).iter().sum::<f64>() < total as f64 {
                low = mid;
            } else {
                high = mid;
            }
        }
        let share = fill(high);
        let mut totals: Vec<u64> = share.iter().map(|x| (x + 1e-9).floor() as u64).collect();
        let mut left = total.saturating_sub(totals.iter().sum());
        let mut by_remainder: Vec<usize> = (0..k).collect();
        let held =
            |r: usize| -> u64 { self.members[r].iter().map(|b| u64::from(self.original_count[*b as usize])).sum() };
        by_remainder.sort_by(|a, b| {
            let (fa, fb) = (share[*a] - share[*a].floor(), share[*b] - share[*b].floor());
            fb.total_cmp(&fa).then(held(*b).cmp(&held(*a))).then(a.cmp(b))
        });
        for r in by_remainder {
            if left == 0 {
                break;
            }
            if (totals[r] as f64) < hi[r] {
                totals[r] += 1;
                left -= 1;
            }
        }
        totals
    }

    /// Move every replica above its broker's target to a broker below its target, smallest
    /// partitions first, same rack when possible, never breaking rack bounds or capacity.
    pub fn move_excess(&mut self) {
        for chained in [false, true] {
            for i in 0..self.order.len() {
                let p = self.order[i] as usize;
                for slot in 0..self.replicas(p).len() {
                    let b = self.replicas(p)[slot] as usize;
                    if self.role[b] == Role::Frozen || self.count[b] <= self.target[b] {
                        continue;
                    }
                    if chained {
                        self.chain(p, slot);
                    } else if let Some(d) = self.destination(p, b as u32) {
                        self.place(p, slot, d);
                    }
                }
            }
        }
    }

    /// Relocate and keep the lists of wanting brokers current.
    fn place(&mut self, p: usize, slot: usize, to: u32) {
        self.relocate(p, slot, to);
        if self.count[to as usize] >= self.target[to as usize] {
            let r = self.rack[to as usize] as usize;
            self.wanting[r].retain(|x| *x != to);
        }
    }

    /// The end game, when every broker below target already holds a replica of `p`: move the
    /// replica to an intermediate broker that in turn gives one of its replicas to a broker
    /// below target. One extra move, so only for what the direct pass left.
    fn chain(&mut self, p: usize, slot: usize) -> bool {
        let from = self.replicas(p)[slot];
        let home = self.rack[from as usize];
        let bytes = self.size[p];
        let mut via: Vec<u32> = (0..self.role.len() as u32)
            .filter(|d| self.active(*d) && !self.replicas(p).contains(d) && self.fits(*d, bytes))
            .filter(|d| self.rack_move_ok(p, home, self.rack[*d as usize]))
            .collect();
        via.sort_by_key(|d| (self.rack[*d as usize] != home, self.count[*d as usize], *d));
        for d in via {
            for &q in &self.order {
                let q = q as usize;
                let Some(sd) = self.replicas(q).iter().position(|b| *b == d) else { continue };
                if q == p {
                    continue;
                }
                if let Some(w) = self.destination(q, d) {
                    self.place(q, sd, w);
                    self.relocate(p, slot, d);
                    return true;
                }
            }
        }
        false
    }

    /// The broker below its target that best takes `p`'s replica from `from`.
    fn destination(&self, p: usize, from: u32) -> Option<u32> {
        let home = self.rack[from as usize];
        let bytes = self.size[p];
        let mut racks: Vec<u32> = (0..self.k).filter(|r| !self.wanting[*r as usize].is_empty()).collect();
        // Own rack first (always rack-safe), then the racks that want the most.
        racks.sort_by_key(|r| (*r != home, std::cmp::Reverse(self.wanting[*r as usize].len()), *r));
        racks.into_iter().filter(|r| self.rack_move_ok(p, home, *r)).find_map(|r| {
            self.wanting[r as usize]
                .iter()
                .copied()
                .filter(|d| !self.replicas(p).contains(d) && self.fits(*d, bytes))
                .min_by(|a, b| {
                    let want = |x: u32| self.target[x as usize] - self.count[x as usize];
                    self.fill(*a).total_cmp(&self.fill(*b)).then(want(*b).cmp(&want(*a))).then(a.cmp(b))
                })
        })
    }

    /// Move replicas off brokers above their disk capacity, largest first, to the emptiest
    /// brokers that can take them. Capacity outranks count balance.
    pub fn relieve_capacity(&mut self) {
        let over: Vec<u32> = (0..self.role.len() as u32).filter(|b| self.active(*b) && !self.fits(*b, 0)).collect();
        for o in over {
            let mut hosted: Vec<(usize, usize)> = (0..self.partitions())
                .filter_map(|p| self.replicas(p).iter().position(|b| *b == o).map(|s| (p, s)))
                .collect();
            hosted.sort_by_key(|(p, _)| (std::cmp::Reverse(self.size[*p]), *p));
            for (p, slot) in hosted {
                if self.fits(o, 0) {
                    break;
                }
                let home = self.rack[o as usize];
                let dest = (0..self.role.len() as u32)
                    .filter(|d| self.active(*d) && !self.replicas(p).contains(d) && self.fits(*d, self.size[p]))
                    .filter(|d| self.rack_move_ok(p, home, self.rack[*d as usize]))
                    .min_by(|a, b| self.fill(*a).total_cmp(&self.fill(*b)).then(a.cmp(b)));
                if let Some(d) = dest {
                    self.relocate(p, slot, d);
                }
            }
        }
    }

    pub fn summary(&self) -> Summary {
        let active: Vec<u32> = (0..self.role.len() as u32).filter(|b| self.active(*b)).collect();
        let spread = |bs: &[u32]| -> u64 {
            let counts = bs.iter().map(|b| self.count[*b as usize]);
            u64::from(counts.clone().max().unwrap_or(0) - counts.min().unwrap_or(0))
        };
        Summary {
            spread: spread(&active),
            rack_spread: self.members.iter().map(|m| spread(m)).max().unwrap_or(0),
            rack_violations: (0..self.partitions()).filter(|p| self.violates_racks(*p)).count() as u64,
        }
    }

    /// Max - min of the targets: the best spread rack awareness allows.
    pub fn reachable_spread(&self) -> u64 {
        let targets = (0..self.role.len()).filter(|b| self.role[*b] == Role::Active).map(|b| self.target[b]);
        u64::from(targets.clone().max().unwrap_or(0) - targets.min().unwrap_or(0))
    }

    /// Replicas left on drained brokers plus partitions still violating rack bounds.
    pub fn unplaced(&self) -> u64 {
        let drained: u64 =
            (0..self.role.len()).filter(|b| self.role[*b] == Role::Drain).map(|b| u64::from(self.count[b])).sum();
        drained + self.summary().rack_violations
    }

    pub fn over_capacity(&self) -> Vec<i32> {
        (0..self.role.len() as u32).filter(|b| self.active(*b) && !self.fits(*b, 0)).map(|b| b as i32).collect()
    }

    pub fn broker_ids(&self, problem: &Problem, reps: &[u32]) -> Vec<i32> {
        reps.iter().map(|b| problem.brokers[*b as usize].id).collect()
    }

    /// The partitions that change: data moves cheapest first, then pure reorders.
    pub fn moves(&self, problem: &Problem) -> Vec<Move> {
        let mut data = Vec::new();
        let mut reorders = Vec::new();
        for &p in &self.order {
            let spec = &problem.partitions[p as usize];
            let to = self.broker_ids(problem, self.replicas(p as usize));
            if to == spec.replicas {
                continue;
            }
            let moved = to.iter().filter(|b| !spec.replicas.contains(b)).count() as u32;
            let m = Move {
                topic: spec.topic.clone(),
                partition: spec.partition,
                from: spec.replicas.clone(),
                to,
                replicas_moved: moved,
                bytes: spec.size_bytes * u64::from(moved),
            };
            if moved > 0 {
                data.push(m);
            } else {
                reorders.push(m);
            }
        }
        data.sort_by_key(|m| m.bytes);
        data.extend(reorders);
        data
    }
}

/// Rack index per broker and the number of active racks (`0..k`). When some active broker has
/// no rack, rack awareness is off and every broker is its own rack.
fn rack_indices(problem: &Problem) -> (Vec<u32>, u32) {
    let active = |b: &super::BrokerSpec| b.role == Role::Active;
    let aware = problem.brokers.iter().filter(|b| active(b)).all(|b| b.rack.is_some());
    let mut names: BTreeMap<String, u32> = BTreeMap::new();
    if aware {
        let active_racks: BTreeSet<&str> =
            problem.brokers.iter().filter(|b| active(b)).filter_map(|b| b.rack.as_deref()).collect();
        for r in active_racks {
            let next = names.len() as u32;
            names.insert(r.to_owned(), next);
        }
    }
    let k = if aware { names.len() as u32 } else { problem.brokers.iter().filter(|b| active(b)).count() as u32 };
    let mut next = k;
    let mut own = 0u32;
    let racks = problem
        .brokers
        .iter()
        .map(|b| match (&b.rack, aware, active(b)) {
            (Some(r), true, _) => *names.entry(r.clone()).or_insert_with(|| {
                next += 1;
                next - 1
            }),
            (_, false, true) => {
                own += 1;
                own - 1
            }
            _ => {
                next += 1;
                next - 1
            }
        })
        .collect();
    (racks, k)
}
