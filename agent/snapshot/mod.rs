//! Snapshot: the typed, validated view of one cluster at one instant. Pure.
//!
//! Built once per cluster per tick from [`Observations`] and `now`; policy and plan read it and
//! never re-derive anything from raw observations.

mod brokers;
pub mod window;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use brokers::{BrokerSignals, BrokerState, BrokerTracker};
pub use window::{Comparison, ConditionSpec, Held, Metric, Windowed};

use crate::collect::{
    BrokerSeries, CertificateObservation, GroupLag, KafkaObservation, KubeObservation, MetricsObservation,
    NodePoolObservation, Observations, PodObservation, PvcObservation, ReassignmentInProgress, Sample, Sourced,
};
use crate::time::Timestamp;

/// Settings the snapshot needs beyond the observations.
#[derive(Clone, Debug)]
pub struct SnapshotOptions {
    /// Threshold conditions whose holding time is computed (from the policies' data).
    pub conditions: Vec<ConditionSpec>,
    /// Older data is stale.
    pub max_data_age: Duration,
    /// A broker unseen for this long is Failed.
    pub heartbeat_timeout: Duration,
    /// Most brokers the cluster may have (configured), if limited.
    pub broker_quota: Option<u32>,
}

/// Whether a source answered, how old its answer is and whether it can be acted on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Freshness {
    pub observed: bool,
    pub age_seconds: Option<f64>,
    pub stale: bool,
    pub error: Option<String>,
}

/// Freshness of each source. Any stale source makes the snapshot incomplete.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataFreshness {
    pub metrics: Freshness,
    pub kafka: Freshness,
    pub kube: Freshness,
}

/// One broker, merged from metadata, its pod and its metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BrokerSnapshot {
    pub id: i32,
    pub rack: Option<String>,
    /// Listed in the Kafka metadata.
    pub registered: bool,
    /// Belongs to the node pool the agent manages (has a pod in it or a node ID of it).
    pub pool_member: bool,
    pub state: BrokerState,
    pub state_seconds: f64,
    pub pod: Option<PodObservation>,
    pub cpu: Windowed,
    pub memory: Windowed,
    pub disk: Windowed,
    pub network: Windowed,
    /// Each declared condition evaluated on this broker's own series.
    pub conditions: BTreeMap<String, Held>,
    pub metrics_stale: bool,
    pub leaders: u32,
    pub replicas: u32,
    /// Replicas it hosts that are out of their partition's ISR.
    pub out_of_sync_replicas: u32,
    /// Times it went down within the last hour (a flapping broker goes down often).
    pub outages_last_hour: u32,
    /// How long it has been up with replicas out of ISR (a slow broker), in seconds.
    pub out_of_sync_seconds: f64,
}

/// One partition with its replication status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: i32,
    pub leader: Option<i32>,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub size_bytes: Option<u64>,
    pub under_replicated: bool,
    pub under_min_isr: bool,
    pub offline: bool,
    pub reassigning: bool,
}

/// A topic with its partitions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicSnapshot {
    pub name: String,
    pub replication_factor: u32,
    /// Kafka's default (1) when the topic does not set it.
    pub min_insync_replicas: u32,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<i64>,
    pub partitions: Vec<PartitionSnapshot>,
}

/// Counts over all partitions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartitionSummary {
    pub total: u32,
    pub under_replicated: u32,
    pub under_min_isr: u32,
    pub offline: u32,
    pub reassigning: u32,
}

/// Cluster-wide mean utilisation over the brokers that report metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Utilisation {
    pub cpu: Windowed,
    pub memory: Windowed,
    pub disk: Windowed,
    pub network: Windowed,
}

/// A certificate and how long it has left.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CertificateSnapshot {
    pub secret: String,
    pub kind: String,
    pub not_after: Timestamp,
    pub days_to_expiry: f64,
}

/// The cluster at one instant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub cluster: String,
    pub at: Timestamp,
    pub data: DataFreshness,
    /// Every source answered with fresh data; policies and the planner act only when true.
    pub complete: bool,
    pub kafka_ready: bool,
    pub kafka_version: Option<String>,
    pub controller: Option<i32>,
    pub brokers: Vec<BrokerSnapshot>,
    pub utilisation: Utilisation,
    /// Each declared condition evaluated on the cluster-wide mean.
    pub conditions: BTreeMap<String, Held>,
    pub topics: Vec<TopicSnapshot>,
    pub partitions: PartitionSummary,
    pub reassignments: Vec<ReassignmentInProgress>,
    pub consumer_groups: Vec<GroupLag>,
    pub node_pool: Option<NodePoolObservation>,
    pub pvcs: Vec<PvcObservation>,
    pub certificates: Vec<CertificateSnapshot>,
    /// Most brokers the cluster may have (configured), if limited.
    pub broker_quota: Option<u32>,
    /// The backup catalog; none when the cluster has no backup storage or it could not be read.
    pub backups: Option<BackupCatalog>,
}

/// A cluster's backups as the backup policy sees them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupCatalog {
    /// Every backup, oldest first, with its age.
    pub entries: Vec<BackupAge>,
    /// Per topic: the newest complete backup and whether one is running.
    pub topics: BTreeMap<String, TopicBackups>,
}

/// One backup and how old it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupAge {
    #[serde(flatten)]
    pub entry: crate::collect::BackupEntry,
    pub age_seconds: f64,
    pub complete: bool,
}

/// The backups of one topic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TopicBackups {
    pub last_completed_at: Option<Timestamp>,
    /// Seconds since the newest complete backup; none when there is none.
    pub age_seconds: Option<f64>,
    pub complete: u32,
    pub running: bool,
}

fn catalog(entries: &[crate::collect::BackupEntry], now: Timestamp) -> BackupCatalog {
    let mut out = BackupCatalog::default();
    for e in entries {
        let age_seconds = (now - e.created_at).as_secs_f64();
        let t = out.topics.entry(e.topic.clone()).or_default();
        t.running |= e.running;
        if let Some(done) = e.completed_at {
            t.complete += 1;
            if t.last_completed_at.is_none_or(|l| done > l) {
                t.last_completed_at = Some(done);
                t.age_seconds = Some((now - done).as_secs_f64());
            }
        }
        out.entries.push(BackupAge { entry: e.clone(), age_seconds, complete: e.completed_at.is_some() });
    }
    out
}

impl Snapshot {
    /// The broker with this id.
    pub fn broker(&self, id: i32) -> Option<&BrokerSnapshot> {
        self.brokers.iter().find(|b| b.id == id)
    }

    /// Brokers registered with a ready pod.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerSnapshot> {
        self.brokers.iter().filter(|b| b.registered && b.pod.as_ref().is_some_and(|p| p.ready))
    }

    /// All partitions of all topics.
    pub fn all_partitions(&self) -> impl Iterator<Item = &PartitionSnapshot> {
        self.topics.iter().flat_map(|t| t.partitions.iter())
    }
}

fn freshness<T>(source: &Sourced<T>, max_age: Duration, now: Timestamp) -> Freshness {
    match source {
        Sourced::Ok { at, .. } => {
            let age = now - *at;
            Freshness { observed: true, age_seconds: Some(age.as_secs_f64()), stale: age > max_age, error: None }
        }
        Sourced::Failed { error, .. } => {
            Freshness { observed: false, age_seconds: None, stale: true, error: Some(error.clone()) }
        }
    }
}

/// Build the snapshot of one cluster. `tracker` carries broker states between ticks; it only
/// advances when both Kafka and Kubernetes answered, because missing data is not a failure.
pub fn build(obs: &Observations, opts: &SnapshotOptions, tracker: &mut BrokerTracker, now: Timestamp) -> Snapshot {
    let mut data = DataFreshness {
        metrics: freshness(&obs.metrics, opts.max_data_age, now),
        kafka: freshness(&obs.kafka, opts.max_data_age, now),
        kube: freshness(&obs.kube, opts.max_data_age, now),
    };
    let empty_kafka = KafkaObservation::default();
    let empty_kube = KubeObservation::default();
    let empty_metrics = MetricsObservation::default();
    let kafka = obs.kafka.ok().map_or(&empty_kafka, |(_, v)| v);
    let kube = obs.kube.ok().map_or(&empty_kube, |(_, v)| v);
    let metrics = obs.metrics.ok().map_or(&empty_metrics, |(_, v)| v);

    let topics = topics(kafka);
    let partitions = summarise(&topics);
    let can_track = data.kafka.observed && data.kube.observed;
    let brokers = brokers(kafka, kube, metrics, &topics, opts, tracker, can_track, now);
    // A live broker of this node pool whose metrics are missing or old makes the metrics stale.
    // Brokers of other node pools (listed in the metadata only) are not this pool's to judge.
    let live = |b: &BrokerSnapshot| b.pool_member && (b.registered || b.pod.as_ref().is_some_and(|p| p.ready));
    if data.metrics.observed && brokers.iter().any(|b| live(b) && b.metrics_stale) {
        data.metrics.stale = true;
    }
    let complete = !(data.metrics.stale || data.kafka.stale || data.kube.stale);
    let mean = |pick: fn(&BrokerSeries) -> &Vec<Sample>| {
        mean_series(brokers.iter().filter(|b| b.pool_member).filter_map(|b| metrics.brokers.get(&b.id)).map(pick))
    };
    let series: [(Metric, Vec<Sample>); 4] = [
        (Metric::Cpu, mean(|s| &s.cpu)),
        (Metric::Memory, mean(|s| &s.memory)),
        (Metric::Disk, mean(|s| &s.disk)),
        (Metric::Network, mean(|s| &s.network)),
    ];
    let conditions = opts
        .conditions
        .iter()
        .map(|c| {
            let s = series.iter().find(|(m, _)| *m == c.metric).map_or(&[][..], |(_, s)| s.as_slice());
            (c.name.clone(), window::held(s, c, now, opts.max_data_age))
        })
        .collect();
    let [cpu, memory, disk, network] = series.map(|(_, s)| window::windowed(&s, now));
    Snapshot {
        cluster: obs.cluster.clone(),
        at: now,
        data,
        complete,
        kafka_ready: kube.kafka_ready,
        kafka_version: kube.kafka_version.clone(),
        controller: kafka.controller,
        brokers,
        utilisation: Utilisation { cpu, memory, disk, network },
        conditions,
        topics,
        partitions,
        reassignments: kafka.reassignments.clone(),
        consumer_groups: kafka.groups.clone(),
        node_pool: kube.node_pool.clone(),
        pvcs: kube
            .pvcs
            .iter()
            .map(|p| {
                let mut p = p.clone();
                // Lost or Pending volumes are timed while both sources answer (like broker states).
                let available = p.phase == "Bound";
                p.unavailable_seconds = if can_track { tracker.pvc_unavailable(&p.name, available, now) } else { 0.0 };
                p
            })
            .collect(),
        certificates: kube.certificates.iter().map(|c| certificate(c, now)).collect(),
        broker_quota: opts.broker_quota,
        backups: obs.backups.as_ref().and_then(|b| b.ok()).map(|(_, entries)| catalog(entries, now)),
    }
}

fn certificate(c: &CertificateObservation, now: Timestamp) -> CertificateSnapshot {
    let left_ms = c.not_after.as_millis() as f64 - now.as_millis() as f64;
    CertificateSnapshot {
        secret: c.secret.clone(),
        kind: c.kind.clone(),
        not_after: c.not_after,
        days_to_expiry: left_ms / 86_400_000.0,
    }
}

fn topics(kafka: &KafkaObservation) -> Vec<TopicSnapshot> {
    let moving: BTreeSet<(&str, i32)> = kafka.reassignments.iter().map(|r| (r.topic.as_str(), r.partition)).collect();
    kafka
        .topics
        .iter()
        .map(|t| {
            let min_isr = t.min_insync_replicas.unwrap_or(1);
            let rf = t.partitions.iter().map(|p| p.replicas.len()).max().unwrap_or(0);
            let partitions = t
                .partitions
                .iter()
                .map(|p| PartitionSnapshot {
                    topic: t.name.clone(),
                    partition: p.partition,
                    leader: p.leader,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    size_bytes: p.size_bytes,
                    under_replicated: p.isr.len() < p.replicas.len(),
                    under_min_isr: p.isr.len() < min_isr as usize,
                    offline: p.leader.is_none(),
                    reassigning: moving.contains(&(t.name.as_str(), p.partition)),
                })
                .collect();
            TopicSnapshot {
                name: t.name.clone(),
                replication_factor: u32::try_from(rf).unwrap_or(u32::MAX),
                min_insync_replicas: min_isr,
                retention_ms: t.retention_ms,
                retention_bytes: t.retention_bytes,
                partitions,
            }
        })
        .collect()
}

fn summarise(topics: &[TopicSnapshot]) -> PartitionSummary {
    let mut s = PartitionSummary::default();
    for p in topics.iter().flat_map(|t| &t.partitions) {
        s.total += 1;
        s.under_replicated += u32::from(p.under_replicated);
        s.under_min_isr += u32::from(p.under_min_isr);
        s.offline += u32::from(p.offline);
        s.reassigning += u32::from(p.reassigning);
    }
    s
}

#[derive(Default)]
struct Hosting {
    leaders: u32,
    replicas: u32,
    out_of_sync: u32,
}

#[allow(clippy::too_many_arguments)]
fn brokers(
    kafka: &KafkaObservation,
    kube: &KubeObservation,
    metrics: &MetricsObservation,
    topics: &[TopicSnapshot],
    opts: &SnapshotOptions,
    tracker: &mut BrokerTracker,
    can_track: bool,
    now: Timestamp,
) -> Vec<BrokerSnapshot> {
    let mut hosting: BTreeMap<i32, Hosting> = BTreeMap::new();
    for p in topics.iter().flat_map(|t| &t.partitions) {
        for r in &p.replicas {
            let h = hosting.entry(*r).or_default();
            h.replicas += 1;
            h.out_of_sync += u32::from(!p.isr.contains(r));
        }
        if let Some(l) = p.leader {
            hosting.entry(l).or_default().leaders += 1;
        }
    }
    let mut ids: BTreeSet<i32> = kafka.brokers.iter().map(|b| b.id).collect();
    ids.extend(kube.pods.iter().map(|p| p.broker));
    ids.extend(kube.node_pool.iter().flat_map(|n| n.node_ids.iter().copied()));
    let empty = BrokerSeries::default();
    let out = ids
        .iter()
        .map(|&id| {
            let meta = kafka.brokers.iter().find(|b| b.id == id);
            let pod = kube.pods.iter().find(|p| p.broker == id).cloned();
            let h = hosting.remove(&id).unwrap_or_default();
            let signals = BrokerSignals {
                registered: meta.is_some(),
                pod_ready: pod.as_ref().is_some_and(|p| p.ready),
                replicas_in_sync: h.out_of_sync == 0,
            };
            let (state, since) = if can_track {
                tracker.observe(id, signals, opts.heartbeat_timeout, now)
            } else {
                tracker.current(id).unwrap_or((BrokerState::Suspect, now))
            };
            let series = metrics.brokers.get(&id).unwrap_or(&empty);
            let w = |s: &[Sample]| window::windowed(s, now);
            let (cpu, memory, disk, network) = (w(&series.cpu), w(&series.memory), w(&series.disk), w(&series.network));
            // A partial answer (any input missing or old) makes the broker's metrics stale.
            let max_age = opts.max_data_age.as_secs_f64();
            let metrics_stale =
                [&cpu, &memory, &disk, &network].iter().any(|x| x.age_seconds.is_none_or(|a| a > max_age));
            let conditions = opts
                .conditions
                .iter()
                .map(|c| {
                    let s = match c.metric {
                        Metric::Cpu => &series.cpu,
                        Metric::Memory => &series.memory,
                        Metric::Disk => &series.disk,
                        Metric::Network => &series.network,
                    };
                    (c.name.clone(), window::held(s, c, now, opts.max_data_age))
                })
                .collect();
            BrokerSnapshot {
                id,
                rack: meta.and_then(|m| m.rack.clone()),
                registered: meta.is_some(),
                pool_member: pod.is_some() || kube.node_pool.as_ref().is_some_and(|n| n.node_ids.contains(&id)),
                state,
                state_seconds: (now - since).as_secs_f64(),
                pod,
                cpu,
                memory,
                disk,
                network,
                conditions,
                metrics_stale,
                leaders: h.leaders,
                replicas: h.replicas,
                out_of_sync_replicas: h.out_of_sync,
                outages_last_hour: tracker.outages(id),
                out_of_sync_seconds: tracker.lagging_seconds(id, now),
            }
        })
        .collect();
    if can_track {
        tracker.retain(|id| ids.contains(&id));
    }
    out
}

/// Mean of several series at each timestamp present in any of them.
fn mean_series<'a>(series: impl Iterator<Item = &'a Vec<Sample>>) -> Vec<Sample> {
    let mut buckets: BTreeMap<Timestamp, (f64, u32)> = BTreeMap::new();
    for s in series.flat_map(|v| v.iter()).filter(|s| s.value.is_finite()) {
        let b = buckets.entry(s.at).or_insert((0.0, 0));
        b.0 += s.value;
        b.1 += 1;
    }
    buckets.into_iter().map(|(at, (sum, n))| Sample { at, value: sum / f64::from(n) }).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::backend::sim::{Fault, Load};
    use crate::{collect, fixtures};

    #[tokio::test]
    async fn a_healthy_cluster_is_complete_and_fully_described() {
        let sim = fixtures::sim(3, Load { cpu: 0.6, memory: 0.7 });
        let s = fixtures::snapshot(&sim, &mut BrokerTracker::default()).await;
        assert!(s.complete);
        assert_eq!(s.brokers.len(), 3);
        assert!(s.brokers.iter().all(|b| b.state == BrokerState::Healthy && b.rack.is_some() && b.replicas == 12));
        assert_eq!(s.partitions.total, 12);
        assert_eq!(s.partitions.under_replicated, 0);
        assert_eq!(s.topics[0].min_insync_replicas, 2);
        assert_eq!(s.node_pool.as_ref().unwrap().replicas, 3);
        assert_eq!(s.certificates.len(), 2);
        assert!((s.utilisation.cpu.current.unwrap() - 0.6).abs() < 0.05);
        assert!(s.data.metrics.age_seconds.is_some());
    }

    #[tokio::test]
    async fn a_down_broker_is_suspect_then_failed_and_its_partitions_under_replicated() {
        let sim = fixtures::sim(3, Load { cpu: 0.6, memory: 0.7 });
        let mut tracker = BrokerTracker::default();
        fixtures::snapshot(&sim, &mut tracker).await;
        sim.lock().unwrap().inject(&Fault::BrokerDown { broker: 2, duration: None }).unwrap();
        fixtures::advance(&sim, Duration::from_secs(10));
        let s = fixtures::snapshot(&sim, &mut tracker).await;
        let b = s.broker(2).unwrap();
        assert_eq!(b.state, BrokerState::Suspect);
        assert!(!b.registered && b.pod.as_ref().is_some_and(|p| !p.ready));
        assert_eq!(s.partitions.under_replicated, 12);
        assert!(s.complete, "a down broker is not missing data");
        fixtures::advance(&sim, Duration::from_secs(30));
        let s = fixtures::snapshot(&sim, &mut tracker).await;
        assert_eq!(s.broker(2).unwrap().state, BrokerState::Failed);
    }

    #[tokio::test]
    async fn a_failed_source_makes_the_snapshot_incomplete_without_failing_brokers() {
        let sim = fixtures::sim(3, Load { cpu: 0.6, memory: 0.7 });
        let mut tracker = BrokerTracker::default();
        fixtures::snapshot(&sim, &mut tracker).await;
        let now = sim.lock().unwrap().now();
        let mut obs = collect::collect("test", &sim.backends(), Duration::from_secs(900), now).await;
        obs.kafka = Sourced::Failed { at: now, category: "timeout".into(), error: "timed out".into() };
        let s = build(&obs, &fixtures::options(), &mut tracker, now + Duration::from_secs(60));
        assert!(!s.complete);
        assert!(s.data.kafka.stale && s.data.kafka.error.as_deref() == Some("timed out"));
        assert!(s.brokers.iter().all(|b| b.state == BrokerState::Healthy), "no data is not a failure");
    }

    #[tokio::test]
    async fn a_partial_metrics_answer_is_stale() {
        let sim = fixtures::sim(3, Load { cpu: 0.6, memory: 0.7 });
        let now = sim.lock().unwrap().now();
        let mut obs = collect::collect("test", &sim.backends(), Duration::from_secs(900), now).await;
        if let Sourced::Ok { value, .. } = &mut obs.metrics {
            value.brokers.get_mut(&1).unwrap().memory.clear();
        }
        let s = build(&obs, &fixtures::options(), &mut BrokerTracker::default(), now);
        assert!(s.broker(1).unwrap().metrics_stale && !s.broker(0).unwrap().metrics_stale);
        assert!(s.data.metrics.stale && !s.complete, "one missing input blocks action");
    }

    #[tokio::test]
    async fn old_data_is_stale() {
        let sim = fixtures::sim(3, Load { cpu: 0.6, memory: 0.7 });
        let now = sim.lock().unwrap().now();
        let obs = collect::collect("test", &sim.backends(), Duration::from_secs(900), now).await;
        let s = build(&obs, &fixtures::options(), &mut BrokerTracker::default(), now + Duration::from_secs(120));
        assert!(!s.complete && s.data.metrics.stale && s.data.kafka.stale);
    }
}
