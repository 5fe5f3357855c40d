//! The small traits every source and actuator sits behind, and the backends that implement
//! them. The pipeline holds a [`Backends`] and never knows which implementation it has.

pub mod kafka;
pub mod kube;
pub mod prometheus;
pub mod sim;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::backup::Compression;
use crate::collect::{BackupEntry, KafkaObservation, KubeObservation, MetricsObservation};
use crate::time::Timestamp;

/// A failed read or write against a backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("backend unreachable: {message}")]
    Unavailable { message: String },
    #[error("request rejected: {message}")]
    Rejected { message: String },
    #[error("object not found: {what}")]
    NotFound { what: String },
    #[error("request timed out after {after:?}")]
    Timeout { after: Duration },
}

impl Error {
    /// Bounded label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Unavailable { .. } => "unavailable",
            Error::Rejected { .. } => "rejected",
            Error::NotFound { .. } => "not_found",
            Error::Timeout { .. } => "timeout",
        }
    }
}

/// A partition to move and the replicas it should end up on (first = preferred leader).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct PartitionTarget {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
}

/// Broker metrics over time (Prometheus in production).
#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// Per-broker utilisation series covering `window` up to `now`.
    async fn collect(&self, window: Duration, now: Timestamp) -> Result<MetricsObservation, Error>;
}

/// The Kafka admin API.
#[async_trait]
pub trait KafkaAdmin: Send + Sync {
    /// Brokers, topics, partitions, reassignments and consumer-group lag.
    async fn describe(&self) -> Result<KafkaObservation, Error>;
    /// Start moving partitions (AlterPartitionReassignments); idempotent for the same target.
    async fn reassign(&self, targets: &[PartitionTarget]) -> Result<(), Error>;
    /// Cancel reassignments of these partitions, leaving them on their original replicas.
    async fn cancel_reassignments(&self, partitions: &[(String, i32)]) -> Result<(), Error>;
    /// Preferred-leader election for these partitions (all when empty).
    async fn elect_preferred_leaders(&self, partitions: &[(String, i32)]) -> Result<(), Error>;
    /// Set or clear (`None`) the replication throttle, bytes per second per broker, on the
    /// replicas of `topics` (the topics being moved).
    async fn set_replication_throttle(&self, bytes_per_sec: Option<u64>, topics: &[String]) -> Result<(), Error>;
}

/// Kubernetes and Strimzi resources of a cluster.
#[async_trait]
pub trait ClusterOps: Send + Sync {
    /// Kafka resource, node pool, broker pods, PVCs and CA certificates.
    async fn observe(&self) -> Result<KubeObservation, Error>;
    /// Patch the node pool's `spec.replicas`; on scale-down, `remove` names the brokers that go
    /// (written to the `strimzi.io/remove-node-ids` annotation).
    async fn scale_node_pool(&self, replicas: u32, remove: &[i32]) -> Result<(), Error>;
    /// Delete a broker pod so Strimzi recreates it.
    async fn delete_pod(&self, broker: i32) -> Result<(), Error>;
    /// Delete a broker's PVC (and its pod) so Strimzi provisions a new volume.
    async fn delete_pvc(&self, broker: i32) -> Result<(), Error>;
    /// Grow the node pool's storage size (never shrinks).
    async fn resize_storage(&self, bytes: u64) -> Result<(), Error>;
    /// Annotate a CA secret with `strimzi.io/force-renew`.
    async fn force_renew(&self, secret: &str) -> Result<(), Error>;
    /// Record how an operation ended, or a notification, as a Kubernetes Event on the node pool
    /// (`Normal` or `Warning`). Best effort: a failure is logged, never returned.
    async fn record_outcome(&self, reason: &str, normal: bool, note: String);
}

/// A cluster's topic backups: the catalog the backup policy reads, and the jobs it starts.
#[async_trait]
pub trait BackupStore: Send + Sync {
    /// Every backup of the cluster (complete or not), oldest first.
    async fn catalog(&self) -> Result<Vec<BackupEntry>, Error>;
    /// Start, in the background, a backup of `topic` (or resume its incomplete one); its id.
    async fn start_backup(&self, topic: &str, compression: Compression, now: Timestamp) -> Result<String, Error>;
    /// Delete a backup (retention).
    async fn expire(&self, id: &str) -> Result<(), Error>;
}

/// The backends of one cluster.
#[derive(Clone)]
pub struct Backends {
    pub metrics: Arc<dyn MetricsSource>,
    pub kafka: Arc<dyn KafkaAdmin>,
    pub kube: Arc<dyn ClusterOps>,
    /// Topic backups; none when the agent has no backup storage for this cluster.
    pub backups: Option<Arc<dyn BackupStore>>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends").finish_non_exhaustive()
    }
}

/// The real backends of a cluster: Prometheus, the Kafka admin API and Kubernetes.
pub async fn real(cluster: &crate::config::ClusterConfig, instance: Option<String>) -> Result<Backends, Error> {
    let prometheus = cluster
        .prometheus
        .as_ref()
        .ok_or_else(|| Error::Rejected { message: format!("cluster {} has no prometheus section", cluster.name) })?;
    let metrics =
        prometheus::PrometheusMetrics::new(prometheus, &cluster.namespace, &cluster.kafka, &cluster.node_pool)?;
    let kafka = kafka::KafkaCluster::new(&cluster.bootstrap_servers, &cluster.kafka_client)?;
    let client = kube::client(&cluster.kubernetes).await?;
    let kube = kube::KubeCluster::new(client, &cluster.namespace, &cluster.kafka, &cluster.node_pool, instance);
    Ok(Backends { metrics: Arc::new(metrics), kafka: Arc::new(kafka), kube: Arc::new(kube), backups: None })
}
