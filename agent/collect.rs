//! Collect: the raw, timestamped observations of one cluster. This step only performs I/O.
//!
//! Each source is read independently; a source that fails leaves its part empty with the
//! error recorded, so the snapshot can mark that data missing rather than guess.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::Backends;
use crate::time::Timestamp;

/// One sample of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub at: Timestamp,
    pub value: f64,
}

/// Utilisation series (ratios 0..1) of one broker over the collection window, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BrokerSeries {
    pub cpu: Vec<Sample>,
    pub memory: Vec<Sample>,
    pub disk: Vec<Sample>,
    pub network: Vec<Sample>,
}

/// What the metrics source (Prometheus) answered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsObservation {
    /// Window the series cover, ending at collection time.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    pub brokers: BTreeMap<i32, BrokerSeries>,
}

/// A broker as the Kafka metadata lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetadataBroker {
    pub id: i32,
    pub rack: Option<String>,
}

/// One partition as the Kafka metadata describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartitionMetadata {
    pub partition: i32,
    /// None when the partition is offline.
    pub leader: Option<i32>,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Bytes on the leader, when known (DescribeLogDirs).
    pub size_bytes: Option<u64>,
}

/// A topic, its partitions and the configs that matter to the agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    pub partitions: Vec<PartitionMetadata>,
    pub min_insync_replicas: Option<u32>,
    /// `retention.ms`; -1 keeps records forever; none when the broker did not say.
    pub retention_ms: Option<i64>,
    /// `retention.bytes` per partition; -1 is unlimited.
    pub retention_bytes: Option<i64>,
}

/// A partition reassignment in progress (KIP-455).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReassignmentInProgress {
    pub topic: String,
    pub partition: i32,
    pub target: Vec<i32>,
}

/// Lag of one consumer group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupLag {
    pub group: String,
    pub lag: u64,
    pub topics: BTreeMap<String, u64>,
}

/// What the Kafka admin API answered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KafkaObservation {
    pub controller: Option<i32>,
    pub brokers: Vec<MetadataBroker>,
    pub topics: Vec<TopicMetadata>,
    pub reassignments: Vec<ReassignmentInProgress>,
    pub groups: Vec<GroupLag>,
}

/// A broker pod as Kubernetes reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodObservation {
    pub name: String,
    pub broker: i32,
    /// Pending, Running, Succeeded, Failed, Unknown.
    pub phase: String,
    pub ready: bool,
    /// Status reason, such as `Evicted`.
    pub reason: Option<String>,
    pub node: Option<String>,
    pub restarts: u32,
    pub pvc: Option<String>,
}

/// A broker's PersistentVolumeClaim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PvcObservation {
    pub name: String,
    pub broker: i32,
    /// Pending, Bound or Lost.
    pub phase: String,
    pub capacity_bytes: Option<u64>,
    pub requested_bytes: u64,
    /// Conditions that are true, such as `Resizing` or `FileSystemResizePending`.
    pub conditions: Vec<String>,
    /// How long the volume has been unavailable (not Bound); set by the snapshot from its
    /// history, 0 in a raw observation.
    #[serde(default)]
    pub unavailable_seconds: f64,
}

/// The Strimzi `KafkaNodePool` holding the brokers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodePoolObservation {
    pub name: String,
    pub replicas: u32,
    pub storage_bytes: u64,
    /// Node IDs Strimzi assigned (`status.nodeIds`).
    pub node_ids: Vec<i32>,
    /// Brokers an operator asked Strimzi to remove first on scale-down
    /// (`strimzi.io/remove-node-ids`).
    #[serde(default)]
    pub remove_node_ids: Vec<i32>,
}

/// A certificate read from a Strimzi secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CertificateObservation {
    pub secret: String,
    /// cluster-ca, clients-ca or listener.
    pub kind: String,
    pub not_after: Timestamp,
}

/// What the Kubernetes API answered about the cluster's resources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KubeObservation {
    /// The `Kafka` resource reports Ready.
    pub kafka_ready: bool,
    pub kafka_version: Option<String>,
    pub node_pool: Option<NodePoolObservation>,
    pub pods: Vec<PodObservation>,
    pub pvcs: Vec<PvcObservation>,
    pub certificates: Vec<CertificateObservation>,
}

/// The result of reading one source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Sourced<T> {
    Ok { at: Timestamp, value: T },
    Failed { at: Timestamp, category: String, error: String },
}

impl<T> Sourced<T> {
    /// The value and when it was read, if the read succeeded.
    pub fn ok(&self) -> Option<(Timestamp, &T)> {
        match self {
            Sourced::Ok { at, value } => Some((*at, value)),
            Sourced::Failed { .. } => None,
        }
    }
}

/// One backup in a cluster's backup catalog.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupEntry {
    pub id: String,
    pub topic: String,
    pub created_at: Timestamp,
    /// None while the backup is running or was interrupted.
    pub completed_at: Option<Timestamp>,
    /// A job is writing it now.
    pub running: bool,
    pub records: u64,
    pub stored_bytes: u64,
}

/// Everything read about one cluster in one tick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observations {
    pub cluster: String,
    pub metrics: Sourced<MetricsObservation>,
    pub kafka: Sourced<KafkaObservation>,
    pub kube: Sourced<KubeObservation>,
    /// The backup catalog; none when the cluster has no backup storage.
    pub backups: Option<Sourced<Vec<BackupEntry>>>,
}

fn sourced<T>(at: Timestamp, result: Result<T, crate::backend::Error>) -> Sourced<T> {
    match result {
        Ok(value) => Sourced::Ok { at, value },
        // Reported (logged and counted) by the pipeline as a SourceError event.
        Err(e) => Sourced::Failed { at, category: e.category().to_owned(), error: e.to_string() },
    }
}

/// Read all sources of a cluster concurrently.
pub async fn collect(cluster: &str, backends: &Backends, window: Duration, now: Timestamp) -> Observations {
    let catalog = async {
        match &backends.backups {
            Some(b) => Some(b.catalog().await),
            None => None,
        }
    };
    let (metrics, kafka, kube, backups) = tokio::join!(
        backends.metrics.collect(window, now),
        backends.kafka.describe(),
        backends.kube.observe(),
        catalog
    );
    Observations {
        cluster: cluster.to_owned(),
        metrics: sourced(now, metrics),
        kafka: sourced(now, kafka),
        kube: sourced(now, kube),
        backups: backups.map(|b| sourced(now, b)),
    }
}
