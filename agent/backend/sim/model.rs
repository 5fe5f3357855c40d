//! The simulated Strimzi cluster: brokers in racks, partitions with replicas, leaders and ISR,
//! load spread over the brokers that host leaders and followers, disk growth, faults, and the
//! cluster's answers to actions after realistic delays. Deterministic; time only moves when
//! [`SimCluster::advance_to`] is called.

use std::collections::BTreeMap;
use std::time::Duration;

use super::spec::{ClusterSpec, Load};
use crate::collect::{BrokerSeries, Sample};
use crate::time::Timestamp;

const STEP: Duration = Duration::from_secs(5);
const SAMPLE_EVERY: Duration = Duration::from_secs(15);
const HISTORY: Duration = Duration::from_secs(3600);
const CATCH_UP: Duration = Duration::from_secs(20);
const IDLE_CPU: f64 = 0.05;
const BASE_MEMORY: f64 = 0.30;
/// Work of a follower replica relative to its leader (replication fetches).
const FOLLOWER_WORK: f64 = 0.5;

/// Life of a broker process and its pod.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Life {
    Running,
    Starting {
        ready_at: Timestamp,
    },
    Crashed {
        recover_at: Option<Timestamp>,
    },
    Evicted {
        reschedule_at: Timestamp,
    },
    /// Its volume failed or is being replaced: the pod cannot start.
    NoVolume,
}

#[derive(Clone, Debug)]
pub(super) struct Broker {
    pub rack: String,
    pub life: Life,
    pub restarts: u32,
    pub node: String,
    /// In sync again from this instant (after a restart it must catch up).
    pub in_sync_from: Timestamp,
    /// Slow until this instant (`Some(None)`: until it is restarted).
    pub slow: Option<Option<Timestamp>>,
}

#[derive(Clone, Debug)]
pub(super) struct Partition {
    pub id: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: Option<i32>,
    pub size: f64,
}

#[derive(Clone, Debug)]
pub(super) struct Topic {
    pub name: String,
    pub min_isr: u32,
    pub weight: f64,
    pub partitions: Vec<Partition>,
}

#[derive(Clone, Debug)]
pub(super) struct Pvc {
    pub phase: &'static str,
    pub capacity: u64,
}

#[derive(Clone, Debug)]
pub(super) struct Cert {
    pub secret: String,
    pub kind: &'static str,
    pub not_after: Timestamp,
}

/// A linear change of the offered load.
#[derive(Clone, Copy, Debug)]
struct Ramp {
    from: Load,
    to: Load,
    start: Timestamp,
    end: Timestamp,
}

#[derive(Clone, Debug)]
pub(super) struct Move {
    pub target: Vec<i32>,
    pub bytes_left: f64,
}

#[derive(Clone, Debug)]
pub(super) enum Pending {
    CertRenewed { secret: String },
    VolumesResized { bytes: u64 },
    PvcBound { broker: i32 },
}

/// The simulated cluster.
#[derive(Clone, Debug)]
pub struct SimCluster {
    pub(super) spec: ClusterSpec,
    pub(super) now: Timestamp,
    pub(super) brokers: BTreeMap<i32, Broker>,
    pub(super) topics: Vec<Topic>,
    pub(super) pool_replicas: u32,
    /// The node pool's `strimzi.io/remove-node-ids` annotation.
    pub(super) remove_node_ids: Vec<i32>,
    pub(super) storage: u64,
    pub(super) pvcs: BTreeMap<i32, Pvc>,
    pub(super) certs: Vec<Cert>,
    pub(super) moves: BTreeMap<(String, i32), Move>,
    pub(super) throttle: Option<u64>,
    pub(super) lag: BTreeMap<String, f64>,
    /// The metrics source is unreachable until then.
    pub(super) metrics_down_until: Option<Timestamp>,
    ramp: Option<Ramp>,
    calls: Vec<String>,
    load: Load,
    reference_brokers: u32,
    pub(super) samples: BTreeMap<i32, BrokerSeries>,
    next_sample: Timestamp,
    pub(super) pending: Vec<(Timestamp, Pending)>,
    /// Simulated backups and when each finishes.
    pub(super) backups: Vec<(crate::collect::BackupEntry, Timestamp)>,
}

/// Deterministic noise in [-1, 1] from a seed and coordinates (splitmix64).
fn noise(seed: u64, a: u64, b: u64) -> f64 {
    let mut z = seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    #[allow(clippy::cast_precision_loss)]
    let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
    unit * 2.0 - 1.0
}

impl SimCluster {
    /// A healthy cluster as `spec` describes it, at instant `start`.
    pub fn new(spec: ClusterSpec, start: Timestamp) -> Result<Self, String> {
        spec.validate()?;
        let mut sim = SimCluster {
            now: start,
            brokers: BTreeMap::new(),
            topics: Vec::new(),
            pool_replicas: spec.brokers,
            remove_node_ids: spec.remove_node_ids.clone(),
            storage: spec.broker.disk.0,
            pvcs: BTreeMap::new(),
            certs: Vec::new(),
            moves: BTreeMap::new(),
            throttle: None,
            lag: spec.consumer_groups.iter().map(|g| (g.name.clone(), 0.0)).collect(),
            metrics_down_until: None,
            ramp: None,
            calls: Vec::new(),
            load: Load::default(),
            reference_brokers: spec.brokers,
            samples: BTreeMap::new(),
            next_sample: start,
            pending: Vec::new(),
            backups: Vec::new(),
            spec,
        };
        for id in 0..i32::try_from(sim.spec.brokers).map_err(|_| "cluster.brokers: too many".to_string())? {
            sim.add_broker(id, Life::Running);
        }
        sim.assign_topics();
        let days = Duration::from_secs_f64(sim.spec.certificate_days.max(0.0) * 86_400.0);
        let name = sim.spec.name.clone();
        sim.certs = vec![
            Cert { secret: format!("{name}-cluster-ca-cert"), kind: "cluster-ca", not_after: start + days },
            Cert { secret: format!("{name}-clients-ca-cert"), kind: "clients-ca", not_after: start + days },
        ];
        sim.record_samples();
        Ok(sim)
    }

    pub(super) fn add_broker(&mut self, id: i32, life: Life) {
        let racks = &self.spec.racks;
        let rack = racks[usize::try_from(id).unwrap_or(0) % racks.len()].clone();
        let node = format!("node-{rack}-{id}");
        let broker = Broker { rack, life, restarts: 0, node, in_sync_from: self.now, slow: None };
        self.brokers.insert(id, broker);
        self.pvcs.insert(id, Pvc { phase: "Bound", capacity: self.storage });
    }

    /// Kafka's rack-aware placement: brokers interleaved by rack, replicas on consecutive ones.
    fn assign_topics(&mut self) {
        let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (id, b) in &self.brokers {
            by_rack.entry(b.rack.as_str()).or_default().push(*id);
        }
        let mut order = Vec::new();
        let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
        for i in 0..deepest {
            order.extend(by_rack.values().filter_map(|ids| ids.get(i).copied()));
        }
        let n = order.len();
        let mut global = 0usize;
        let specs = self.spec.topics.clone();
        for t in specs {
            let partitions = (0..t.partitions)
                .map(|p| {
                    let rf = t.replication_factor as usize;
                    let replicas: Vec<i32> = (0..rf).map(|j| order[(global + j) % n]).collect();
                    global += 1;
                    #[allow(clippy::cast_precision_loss)]
                    let size = t.partition_size.0 as f64;
                    Partition {
                        id: i32::try_from(p).unwrap_or(i32::MAX),
                        isr: replicas.clone(),
                        leader: replicas.first().copied(),
                        replicas,
                        size,
                    }
                })
                .collect();
            self.topics.push(Topic { name: t.name, min_isr: t.min_insync_replicas, weight: t.weight, partitions });
        }
    }

    /// Virtual now.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The node pool's `spec.replicas`.
    pub fn node_pool_replicas(&self) -> u32 {
        self.pool_replicas
    }

    /// The replication throttle in force, if any.
    pub fn replication_throttle(&self) -> Option<u64> {
        self.throttle
    }

    /// Partitions being reassigned.
    pub fn reassignments(&self) -> usize {
        self.moves.len()
    }

    /// Every actuator call received, in order (`scale_node_pool(5)`, `delete_pod(1)`, ...).
    pub fn calls(&self) -> &[String] {
        &self.calls
    }

    pub(super) fn record_call(&mut self, call: String) {
        self.calls.push(call);
    }

    /// Change the offered load (utilisation it would cause at the initial cluster size).
    pub fn set_load(&mut self, load: Load) {
        self.load = load;
        self.ramp = None;
    }

    /// Move the offered load linearly from where it is now to `to` over `over`.
    pub fn ramp_load(&mut self, to: Load, over: Duration) {
        if over.is_zero() {
            return self.set_load(to);
        }
        self.ramp = Some(Ramp { from: self.load, to, start: self.now, end: self.now + over });
    }

    fn follow_ramp(&mut self) {
        let Some(r) = self.ramp else { return };
        let total = (r.end - r.start).as_secs_f64();
        let f = ((self.now - r.start).as_secs_f64() / total).clamp(0.0, 1.0);
        self.load = Load {
            cpu: r.from.cpu + (r.to.cpu - r.from.cpu) * f,
            memory: r.from.memory + (r.to.memory - r.from.memory) * f,
        };
        if self.now >= r.end {
            self.ramp = None;
        }
    }

    /// Run the cluster forward to `t`.
    pub fn advance_to(&mut self, t: Timestamp) {
        while self.now < t {
            let dt = STEP.min(t - self.now);
            self.now = self.now + dt;
            self.step(dt);
        }
    }

    fn step(&mut self, dt: Duration) {
        self.follow_ramp();
        self.lifecycle();
        self.pending_events();
        self.progress_moves(dt);
        self.update_isr();
        self.grow(dt);
        self.update_lag(dt);
        if self.now >= self.next_sample {
            self.record_samples();
        }
    }

    fn lifecycle(&mut self) {
        let now = self.now;
        let restart = self.spec.timing.pod_restart;
        for (id, b) in &mut self.brokers {
            match b.life {
                Life::Starting { ready_at } if ready_at <= now => {
                    b.life = Life::Running;
                    b.in_sync_from = now + CATCH_UP;
                }
                Life::Crashed { recover_at: Some(at) } if at <= now => {
                    b.life = Life::Starting { ready_at: now + restart };
                }
                Life::Evicted { reschedule_at } if reschedule_at <= now => {
                    b.node = format!("node-{}-{id}-r{}", b.rack, b.restarts + 1);
                    b.life = Life::Starting { ready_at: now + restart };
                }
                _ => {}
            }
            if matches!(b.slow, Some(Some(until)) if until <= now) {
                b.slow = None;
            }
        }
    }

    fn pending_events(&mut self) {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|(at, _)| *at <= now);
        self.pending = later;
        for (_, event) in due {
            match event {
                Pending::CertRenewed { secret } => {
                    if let Some(c) = self.certs.iter_mut().find(|c| c.secret == secret) {
                        c.not_after = now + Duration::from_secs(365 * 86_400);
                    }
                }
                Pending::VolumesResized { bytes } => {
                    for p in self.pvcs.values_mut() {
                        p.capacity = p.capacity.max(bytes);
                    }
                }
                Pending::PvcBound { broker } => {
                    if let Some(p) = self.pvcs.get_mut(&broker) {
                        p.phase = "Bound";
                        p.capacity = self.storage;
                    }
                    let restart = self.spec.timing.pod_restart;
                    if let Some(b) = self.brokers.get_mut(&broker) {
                        b.life = Life::Starting { ready_at: now + restart };
                    }
                }
            }
        }
    }

    fn is_up(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|b| b.life == Life::Running)
    }

    fn in_sync(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|b| b.life == Life::Running && b.in_sync_from <= self.now && b.slow.is_none())
    }

    fn progress_moves(&mut self, dt: Duration) {
        if self.moves.is_empty() {
            return;
        }
        #[allow(clippy::cast_precision_loss)]
        let mut rate = self.spec.timing.reassignment_throughput.0 as f64;
        if let Some(t) = self.throttle {
            #[allow(clippy::cast_precision_loss)]
            let cap = t as f64 * self.brokers.len() as f64;
            rate = rate.min(cap);
        }
        #[allow(clippy::cast_precision_loss)]
        let per_move = rate * dt.as_secs_f64() / self.moves.len() as f64;
        let ready: Vec<(String, i32)> = self
            .moves
            .iter()
            .filter(|(_, m)| m.target.iter().all(|b| self.is_up(*b)))
            .map(|(k, _)| k.clone())
            .collect();
        let mut done = Vec::new();
        for key in ready {
            if let Some(m) = self.moves.get_mut(&key) {
                m.bytes_left -= per_move;
                if m.bytes_left <= 0.0 {
                    done.push(key);
                }
            }
        }
        for key in done {
            if let Some(m) = self.moves.remove(&key) {
                self.complete_move(&key.0, key.1, m.target);
            }
        }
    }

    pub(super) fn complete_move(&mut self, topic: &str, partition: i32, target: Vec<i32>) {
        let Some(p) = self.partition_mut(topic, partition) else {
            return;
        };
        p.replicas = target;
        p.isr.retain(|r| p.replicas.contains(r));
        for r in &p.replicas {
            if !p.isr.contains(r) {
                p.isr.push(*r);
            }
        }
        if p.leader.is_none_or(|l| !p.replicas.contains(&l)) {
            p.leader = p.replicas.first().copied();
        }
    }

    pub(super) fn partition_mut(&mut self, topic: &str, partition: i32) -> Option<&mut Partition> {
        self.topics.iter_mut().find(|t| t.name == topic)?.partitions.iter_mut().find(|p| p.id == partition)
    }

    pub(super) fn update_isr(&mut self) {
        let in_sync: BTreeMap<i32, bool> = self.brokers.keys().map(|id| (*id, self.in_sync(*id))).collect();
        let up: BTreeMap<i32, bool> = self.brokers.keys().map(|id| (*id, self.is_up(*id))).collect();
        let ok = |m: &BTreeMap<i32, bool>, id: &i32| m.get(id).copied().unwrap_or(false);
        for p in self.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
            let leader_alive = p.leader.is_some_and(|l| ok(&up, &l));
            // A live leader stays in ISR even when slow; followers must be caught up.
            p.isr = p
                .replicas
                .iter()
                .copied()
                .filter(|r| ok(&in_sync, r) || (leader_alive && Some(*r) == p.leader))
                .collect();
            if !leader_alive {
                p.leader = p.isr.first().copied();
            }
        }
    }

    fn grow(&mut self, dt: Duration) {
        #[allow(clippy::cast_precision_loss)]
        let per_second = self.spec.ingest_per_hour.0 as f64 / 3600.0;
        if per_second <= 0.0 {
            return;
        }
        let total_weight: f64 = self.topics.iter().map(|t| t.weight * t.partitions.len() as f64).sum();
        for t in &mut self.topics {
            let share = per_second * dt.as_secs_f64() * t.weight / total_weight.max(f64::MIN_POSITIVE);
            for p in &mut t.partitions {
                p.size += share;
            }
        }
    }

    fn update_lag(&mut self, dt: Duration) {
        let hottest = self.utilisation().values().map(|u| u.0).fold(0.0, f64::max);
        for lag in self.lag.values_mut() {
            if hottest > 0.9 {
                *lag += (hottest - 0.9) * 20_000.0 * dt.as_secs_f64();
            } else {
                *lag *= 0.8f64.powf(dt.as_secs_f64() / 60.0);
            }
        }
    }

    /// (cpu, memory, network, disk) utilisation of each running broker.
    pub(super) fn utilisation(&self) -> BTreeMap<i32, (f64, f64, f64, f64)> {
        let mut work: BTreeMap<i32, f64> = BTreeMap::new();
        let mut disk: BTreeMap<i32, f64> = BTreeMap::new();
        let mut reference = 0.0;
        for t in &self.topics {
            for p in &t.partitions {
                #[allow(clippy::cast_precision_loss)]
                let followers = p.replicas.len().saturating_sub(1) as f64;
                reference += t.weight * (1.0 + FOLLOWER_WORK * followers);
                for r in &p.replicas {
                    *disk.entry(*r).or_default() += p.size;
                    if Some(*r) == p.leader {
                        *work.entry(*r).or_default() += t.weight;
                    } else if p.isr.contains(r) {
                        *work.entry(*r).or_default() += t.weight * FOLLOWER_WORK;
                    }
                }
            }
        }
        let mut moving: BTreeMap<i32, f64> = BTreeMap::new();
        for ((topic, partition), m) in &self.moves {
            let leader = self
                .topics
                .iter()
                .find(|t| &t.name == topic)
                .and_then(|t| t.partitions.iter().find(|p| p.id == *partition))
                .and_then(|p| p.leader);
            for b in m.target.iter().chain(leader.iter()) {
                *moving.entry(*b).or_default() += 0.02;
            }
        }
        let n0 = f64::from(self.reference_brokers);
        self.brokers
            .iter()
            .filter(|(_, b)| b.life == Life::Running)
            .map(|(id, _)| {
                let share = work.get(id).copied().unwrap_or(0.0) * n0 / reference.max(f64::MIN_POSITIVE);
                let extra = moving.get(id).copied().unwrap_or(0.0).min(0.15);
                let cpu = IDLE_CPU + (self.load.cpu - IDLE_CPU).max(0.0) * share + extra;
                let memory = BASE_MEMORY + (self.load.memory - BASE_MEMORY).max(0.0) * share;
                let network = 0.02 + 0.8 * self.load.cpu * share;
                #[allow(clippy::cast_precision_loss)]
                let capacity = self.pvcs.get(id).map_or(self.storage, |p| p.capacity).max(1) as f64;
                let used = disk.get(id).copied().unwrap_or(0.0) / capacity;
                (*id, (cpu, memory, network, used))
            })
            .collect()
    }

    fn record_samples(&mut self) {
        let now = self.now;
        let tick = now.as_millis() / 1000;
        let seed = self.spec.seed;
        for (id, (cpu, memory, network, disk)) in self.utilisation() {
            let s = self.samples.entry(id).or_default();
            let id64 = u64::from(id.unsigned_abs());
            let jitter =
                |v: f64, metric: u64, scale: f64| (v + scale * noise(seed, id64 * 8 + metric, tick)).clamp(0.0, 1.0);
            s.cpu.push(Sample { at: now, value: jitter(cpu, 0, 0.015) });
            s.memory.push(Sample { at: now, value: jitter(memory, 1, 0.005) });
            s.network.push(Sample { at: now, value: jitter(network, 2, 0.015) });
            s.disk.push(Sample { at: now, value: jitter(disk, 3, 0.0) });
        }
        let oldest = now.saturating_sub(HISTORY);
        for s in self.samples.values_mut() {
            for series in [&mut s.cpu, &mut s.memory, &mut s.network, &mut s.disk] {
                series.retain(|x| x.at >= oldest);
            }
        }
        self.next_sample = now + SAMPLE_EVERY;
    }

    /// Series of every broker within `window` up to now.
    pub(super) fn series(&self, window: Duration) -> BTreeMap<i32, BrokerSeries> {
        let from = self.now.saturating_sub(window);
        let cut = |v: &Vec<Sample>| v.iter().filter(|s| s.at >= from && s.at <= self.now).copied().collect();
        self.samples
            .iter()
            .map(|(id, s)| {
                (
                    *id,
                    BrokerSeries {
                        cpu: cut(&s.cpu),
                        memory: cut(&s.memory),
                        disk: cut(&s.disk),
                        network: cut(&s.network),
                    },
                )
            })
            .filter(|(_, s)| !s.cpu.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::sim::spec::{ClusterSpec, Fault};
    use crate::backend::{Error, PartitionTarget};

    fn sim(brokers: u32) -> SimCluster {
        let mut s = SimCluster::new(ClusterSpec::uniform("t", brokers, 4), Timestamp::from_millis(0)).unwrap();
        s.set_load(Load { cpu: 0.8, memory: 0.85 });
        s.advance_to(Timestamp::from_millis(60_000));
        s
    }

    fn mean_cpu(s: &SimCluster) -> f64 {
        let u = s.utilisation();
        u.values().map(|v| v.0).sum::<f64>() / u.len() as f64
    }

    #[test]
    fn offered_load_gives_the_stated_utilisation_at_initial_size() {
        let s = sim(3);
        for (cpu, memory, _, _) in s.utilisation().values() {
            assert!((cpu - 0.8).abs() < 1e-9 && (memory - 0.85).abs() < 1e-9, "{cpu} {memory}");
        }
    }

    #[test]
    fn adding_brokers_lowers_cpu_only_once_partitions_move() {
        let mut s = sim(3);
        s.scale(5).unwrap();
        s.advance_to(Timestamp::from_millis(200_000));
        assert_eq!(s.utilisation().len(), 5);
        assert!((s.utilisation()[&0].0 - 0.8).abs() < 0.01, "nothing moved yet");
        // Move a third of broker 0's partitions to broker 3 (same rack as 0).
        let moves: Vec<PartitionTarget> = s.topics[0]
            .partitions
            .iter()
            .filter(|p| p.replicas[0] == 0)
            .map(|p| PartitionTarget {
                topic: "events".into(),
                partition: p.id,
                replicas: p.replicas.iter().map(|r| if *r == 0 { 3 } else { *r }).collect(),
            })
            .collect();
        s.reassign(&moves).unwrap();
        s.advance_to(Timestamp::from_millis(3_600_000));
        assert!(s.moves.is_empty(), "reassignments finish at the configured throughput");
        assert!(s.utilisation()[&0].0 < 0.5, "broker 0 shed its leaders: {:?}", s.utilisation()[&0]);
        assert!(mean_cpu(&s) < 0.6);
    }

    #[test]
    fn a_down_broker_loses_leadership_and_isr() {
        let mut s = sim(3);
        s.inject(&Fault::BrokerDown { broker: 2, duration: None }).unwrap();
        s.advance_to(Timestamp::from_millis(70_000));
        let parts: Vec<&Partition> = s.topics.iter().flat_map(|t| &t.partitions).collect();
        assert!(parts.iter().all(|p| p.leader != Some(2) && !p.isr.contains(&2)));
        assert!(!s.utilisation().contains_key(&2));
        s.delete_pod(2).unwrap();
        s.advance_to(Timestamp::from_millis(200_000));
        assert!(s.topics.iter().flat_map(|t| &t.partitions).all(|p| p.isr.len() == 3));
    }

    #[test]
    fn a_ramp_moves_the_load_linearly() {
        let mut s = sim(3);
        s.set_load(Load { cpu: 0.2, memory: 0.4 });
        s.ramp_load(Load { cpu: 0.8, memory: 0.7 }, Duration::from_secs(600));
        s.advance_to(s.now() + Duration::from_secs(300));
        let cpu = s.utilisation()[&0].0;
        assert!((cpu - 0.5).abs() < 0.02, "half way: {cpu}");
        s.advance_to(s.now() + Duration::from_secs(600));
        assert!((s.utilisation()[&0].0 - 0.8).abs() < 1e-9);
    }

    #[test]
    fn scale_down_is_refused_while_brokers_host_replicas() {
        let mut s = sim(3);
        assert!(matches!(s.scale(2), Err(Error::Rejected { .. })));
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let (a, b) = (sim(3), sim(3));
        assert_eq!(a.series(Duration::from_secs(600)), b.series(Duration::from_secs(600)));
    }
}
