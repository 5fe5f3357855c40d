//! The simulated backend: one [`SimCluster`] behind the same traits as the real backends.

mod backups;
mod model;
mod ops;
pub mod spec;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

pub use model::SimCluster;
pub use spec::{ClusterSpec, Fault, Load};

use super::{Backends, ClusterOps, Error, KafkaAdmin, MetricsSource, PartitionTarget};
use crate::collect::{
    CertificateObservation, GroupLag, KafkaObservation, KubeObservation, MetadataBroker, MetricsObservation,
    NodePoolObservation, PartitionMetadata, PodObservation, PvcObservation, ReassignmentInProgress, TopicMetadata,
};
use crate::time::Timestamp;
use model::Life;

/// A shared handle on a simulated cluster; clones see the same cluster.
#[derive(Clone, Debug)]
pub struct SimBackend {
    cluster: Arc<Mutex<SimCluster>>,
}

impl SimBackend {
    /// Wrap a simulated cluster.
    pub fn new(cluster: SimCluster) -> Self {
        Self { cluster: Arc::new(Mutex::new(cluster)) }
    }

    /// The three backends, all answered by this cluster.
    pub fn backends(&self) -> Backends {
        let backups =
            self.lock().is_ok_and(|c| c.spec.backups).then(|| Arc::new(self.clone()) as Arc<dyn super::BackupStore>);
        Backends {
            metrics: Arc::new(self.clone()),
            kafka: Arc::new(self.clone()),
            kube: Arc::new(self.clone()),
            backups,
        }
    }

    /// Lock the cluster, to advance it, inject faults or inspect it.
    pub fn lock(&self) -> Result<MutexGuard<'_, SimCluster>, Error> {
        self.cluster.lock().map_err(|_| Error::Unavailable { message: "simulated cluster poisoned by a panic".into() })
    }
}

#[async_trait]
impl MetricsSource for SimBackend {
    async fn collect(&self, window: Duration, _now: Timestamp) -> Result<MetricsObservation, Error> {
        let sim = self.lock()?;
        if sim.metrics_down_until.is_some_and(|until| sim.now() < until) {
            return Err(Error::Unavailable { message: "metrics source not answering (simulated outage)".into() });
        }
        Ok(MetricsObservation { window, brokers: sim.series(window) })
    }
}

fn describe(sim: &SimCluster) -> KafkaObservation {
    let registered = |id: &i32| sim.brokers.get(id).is_some_and(|b| b.life == Life::Running);
    let brokers: Vec<MetadataBroker> = sim
        .brokers
        .iter()
        .filter(|(id, _)| registered(id))
        .map(|(id, b)| MetadataBroker { id: *id, rack: Some(b.rack.clone()) })
        .collect();
    let topics = sim
        .topics
        .iter()
        .map(|t| TopicMetadata {
            name: t.name.clone(),
            min_insync_replicas: Some(t.min_isr),
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: Some(-1),
            partitions: t
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    partition: p.id,
                    leader: p.leader,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    // Sizes are whole bytes on a real broker.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    size_bytes: Some(p.size.max(0.0) as u64),
                })
                .collect(),
        })
        .collect();
    let reassignments = sim
        .moves
        .iter()
        .map(|((topic, partition), m)| ReassignmentInProgress {
            topic: topic.clone(),
            partition: *partition,
            target: m.target.clone(),
        })
        .collect();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let groups = sim
        .spec
        .consumer_groups
        .iter()
        .map(|g| {
            let lag = sim.lag.get(&g.name).copied().unwrap_or(0.0).max(0.0) as u64;
            GroupLag {
                group: g.name.clone(),
                lag,
                topics: g.topics.iter().map(|t| (t.clone(), lag / g.topics.len().max(1) as u64)).collect(),
            }
        })
        .collect();
    KafkaObservation { controller: brokers.first().map(|b| b.id), brokers, topics, reassignments, groups }
}

#[async_trait]
impl KafkaAdmin for SimBackend {
    async fn describe(&self) -> Result<KafkaObservation, Error> {
        Ok(describe(&*self.lock()?))
    }

    async fn reassign(&self, targets: &[PartitionTarget]) -> Result<(), Error> {
        let mut sim = self.lock()?;
        sim.record_call(format!("reassign({})", targets.len()));
        sim.reassign(targets)
    }

    async fn cancel_reassignments(&self, partitions: &[(String, i32)]) -> Result<(), Error> {
        let mut sim = self.lock()?;
        sim.record_call(format!("cancel_reassignments({})", partitions.len()));
        for key in partitions {
            sim.moves.remove(key);
        }
        Ok(())
    }

    async fn elect_preferred_leaders(&self, partitions: &[(String, i32)]) -> Result<(), Error> {
        let mut sim = self.lock()?;
        sim.record_call("elect_preferred_leaders".into());
        sim.elect_preferred(partitions);
        Ok(())
    }

    async fn set_replication_throttle(&self, bytes_per_sec: Option<u64>, _topics: &[String]) -> Result<(), Error> {
        let mut sim = self.lock()?;
        sim.record_call(format!("set_replication_throttle({bytes_per_sec:?})"));
        sim.throttle = bytes_per_sec;
        Ok(())
    }
}

fn observe(sim: &SimCluster) -> KubeObservation {
    let spec = &sim.spec;
    let pod_name = |id: i32| format!("{}-{}-{id}", spec.name, spec.node_pool);
    let pods: Vec<PodObservation> = sim
        .brokers
        .iter()
        .map(|(id, b)| {
            let (phase, ready, reason) = match b.life {
                Life::Running => ("Running", true, None),
                Life::Starting { .. } | Life::Crashed { .. } => ("Running", false, None),
                Life::Evicted { .. } => ("Failed", false, Some("Evicted".to_owned())),
                Life::NoVolume => ("Pending", false, None),
            };
            PodObservation {
                name: pod_name(*id),
                broker: *id,
                phase: phase.into(),
                ready,
                reason,
                node: Some(b.node.clone()),
                restarts: b.restarts,
                pvc: Some(format!("data-0-{}", pod_name(*id))),
            }
        })
        .collect();
    let pvcs = sim
        .pvcs
        .iter()
        .map(|(id, p)| PvcObservation {
            name: format!("data-0-{}", pod_name(*id)),
            broker: *id,
            phase: p.phase.into(),
            capacity_bytes: (p.phase == "Bound").then_some(p.capacity),
            requested_bytes: sim.storage,
            unavailable_seconds: 0.0,
            conditions: if p.capacity < sim.storage && p.phase == "Bound" {
                vec!["Resizing".into()]
            } else {
                Vec::new()
            },
        })
        .collect();
    KubeObservation {
        kafka_ready: pods.iter().all(|p| p.ready) && sim.pool_replicas as usize == pods.len(),
        kafka_version: Some("3.9.0".into()),
        node_pool: Some(NodePoolObservation {
            name: spec.node_pool.clone(),
            replicas: sim.pool_replicas,
            storage_bytes: sim.storage,
            node_ids: sim.brokers.keys().copied().collect(),
            remove_node_ids: sim.remove_node_ids.clone(),
        }),
        pods,
        pvcs,
        certificates: sim
            .certs
            .iter()
            .map(|c| CertificateObservation { secret: c.secret.clone(), kind: c.kind.into(), not_after: c.not_after })
            .collect(),
    }
}

#[async_trait]
impl ClusterOps for SimBackend {
    async fn observe(&self) -> Result<KubeObservation, Error> {
        Ok(observe(&*self.lock()?))
    }

    async fn scale_node_pool(&self, replicas: u32, remove: &[i32]) -> Result<(), Error> {
        let mut sim = self.lock()?;
        if remove.is_empty() {
            sim.record_call(format!("scale_node_pool({replicas})"));
        } else {
            sim.record_call(format!("scale_node_pool({replicas}, remove {remove:?})"));
            sim.remove_node_ids = remove.to_vec();
        }
        sim.scale(replicas)
    }

    async fn record_outcome(&self, reason: &str, normal: bool, note: String) {
        // Not an actuator: kept out of the call log the tests compare.
        tracing::debug!(reason, normal, note = %note, "simulated Kubernetes Event");
    }

    async fn delete_pod(&self, broker: i32) -> Result<(), Error> {
        let mut sim = self.lock()?;
        sim.record_call(format!("delete_pod({broker})"));
        sim.delete_pod(broker)
    }

    async fn delete_pvc(&self, broker: i32) -> Result<(), Error> {
        let mut sim = self.lock()?;
        sim.record_call(format!("delete_pvc({broker})"));
        sim.delete_pvc(broker)
    }

    async fn resize_storage(&self, bytes: u64) -> Result<(), Error> {
        let mut sim = self.lock()?;
        sim.record_call(format!("resize_storage({bytes})"));
        sim.resize(bytes)
    }

    async fn force_renew(&self, secret: &str) -> Result<(), Error> {
        let mut sim = self.lock()?;
        sim.record_call(format!("force_renew({secret})"));
        sim.renew(secret)
    }
}
