//! What a simulated cluster is made of, as written in scenario files.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::Bytes;

fn default_namespace() -> String {
    "kafka".into()
}
fn default_node_pool() -> String {
    "brokers".into()
}
const fn default_min_isr() -> u32 {
    1
}
fn default_partition_size() -> Bytes {
    Bytes(1 << 30)
}
const fn default_weight() -> f64 {
    1.0
}

/// Resources of every broker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerResources {
    pub cpu_cores: f64,
    pub memory: Bytes,
    pub disk: Bytes,
}

/// A topic of the simulated cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
    #[serde(default = "default_min_isr")]
    pub min_insync_replicas: u32,
    /// Initial size of each partition.
    #[serde(default = "default_partition_size")]
    pub partition_size: Bytes,
    /// Share of the offered load per partition, relative to other topics.
    #[serde(default = "default_weight")]
    pub weight: f64,
}

/// How fast the simulated cluster answers actions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// From the node pool patch to a new broker registered and ready.
    #[serde(with = "humantime_serde")]
    pub broker_join: Duration,
    /// From a pod deletion to the broker ready again.
    #[serde(with = "humantime_serde")]
    pub pod_restart: Duration,
    /// From an eviction to the pod rescheduled on another node.
    #[serde(with = "humantime_serde")]
    pub eviction_reschedule: Duration,
    /// Provisioning a new PVC, or growing one.
    #[serde(with = "humantime_serde")]
    pub volume_provision: Duration,
    /// From `strimzi.io/force-renew` to the renewed certificate.
    #[serde(with = "humantime_serde")]
    pub certificate_renewal: Duration,
    /// Replication throughput of the whole cluster, per second.
    pub reassignment_throughput: Bytes,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            broker_join: Duration::from_secs(90),
            pod_restart: Duration::from_secs(60),
            eviction_reschedule: Duration::from_secs(30),
            volume_provision: Duration::from_secs(45),
            certificate_renewal: Duration::from_secs(60),
            reassignment_throughput: Bytes(100 << 20),
        }
    }
}

/// A consumer group reading some topics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub name: String,
    pub topics: Vec<String>,
}

/// The simulated Strimzi cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default = "default_node_pool")]
    pub node_pool: String,
    pub brokers: u32,
    pub racks: Vec<String>,
    pub broker: BrokerResources,
    pub topics: Vec<TopicSpec>,
    #[serde(default)]
    pub consumer_groups: Vec<GroupSpec>,
    /// Data written to the cluster per hour (before replication).
    #[serde(default)]
    pub ingest_per_hour: Bytes,
    /// Days the CA certificates are valid at the start.
    #[serde(default = "default_cert_days")]
    pub certificate_days: f64,
    #[serde(default)]
    pub timing: Timing,
    /// Seed of the measurement noise; the same seed gives the same run.
    #[serde(default)]
    pub seed: u64,
    /// The node pool's `strimzi.io/remove-node-ids` annotation at the start.
    #[serde(default)]
    pub remove_node_ids: Vec<i32>,
    /// The cluster has backup storage: backups are simulated (each takes its topic's size
    /// over `backup_bytes_per_second`) and the backup policy can schedule them.
    #[serde(default)]
    pub backups: bool,
    #[serde(default = "default_backup_rate")]
    pub backup_bytes_per_second: Bytes,
}

fn default_backup_rate() -> Bytes {
    Bytes(100_000_000)
}

const fn default_cert_days() -> f64 {
    365.0
}

impl ClusterSpec {
    /// Check the spec makes a cluster; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers == 0 {
            return Err("cluster.brokers: must be at least 1".into());
        }
        if self.racks.is_empty() {
            return Err("cluster.racks: at least one rack is required".into());
        }
        if self.broker.cpu_cores <= 0.0 {
            return Err("cluster.broker.cpu_cores: must be positive".into());
        }
        for (i, t) in self.topics.iter().enumerate() {
            if t.partitions == 0 {
                return Err(format!("cluster.topics[{i}].partitions: must be at least 1"));
            }
            if t.replication_factor == 0 || t.replication_factor > self.brokers {
                return Err(format!(
                    "cluster.topics[{i}].replication_factor: {} does not fit {} brokers",
                    t.replication_factor, self.brokers
                ));
            }
            if t.min_insync_replicas == 0 || t.min_insync_replicas > t.replication_factor {
                return Err(format!(
                    "cluster.topics[{i}].min_insync_replicas: must be between 1 and the replication factor"
                ));
            }
        }
        Ok(())
    }

    /// A cluster of `brokers` brokers in three racks with `partitions_per_broker` partitions each
    /// (replication factor 3), for benchmarks and examples.
    pub fn uniform(name: &str, brokers: u32, partitions_per_broker: u32) -> Self {
        ClusterSpec {
            name: name.into(),
            namespace: default_namespace(),
            node_pool: default_node_pool(),
            brokers,
            racks: vec!["a".into(), "b".into(), "c".into()],
            broker: BrokerResources { cpu_cores: 8.0, memory: Bytes(32 << 30), disk: Bytes(2 << 40) },
            topics: vec![TopicSpec {
                name: "events".into(),
                partitions: brokers * partitions_per_broker,
                replication_factor: brokers.min(3),
                min_insync_replicas: brokers.min(2),
                partition_size: default_partition_size(),
                weight: 1.0,
            }],
            consumer_groups: Vec::new(),
            ingest_per_hour: Bytes(0),
            certificate_days: default_cert_days(),
            timing: Timing::default(),
            seed: 1,
            remove_node_ids: Vec::new(),
            backups: false,
            backup_bytes_per_second: default_backup_rate(),
        }
    }
}

/// Utilisation the offered load would cause at the cluster's initial size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    pub cpu: f64,
    pub memory: f64,
}

impl Default for Load {
    fn default() -> Self {
        Load { cpu: 0.40, memory: 0.50 }
    }
}

/// Something that goes wrong in the simulated cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// The broker process dies and its pod stops being ready; it recovers by itself after
    /// `duration` if given, otherwise when its pod is deleted.
    BrokerDown {
        broker: i32,
        #[serde(default, with = "humantime_serde")]
        duration: Option<Duration>,
    },
    /// The pod is evicted for node pressure and rescheduled elsewhere.
    PodEvicted { broker: i32 },
    /// The broker's PVC fails (`Lost`); the broker is down until the volume is replaced.
    PvcFailed { broker: i32 },
    /// The broker's replicas fall behind and drop out of ISR until it recovers.
    SlowReplica {
        broker: i32,
        #[serde(default, with = "humantime_serde")]
        duration: Option<Duration>,
    },
    /// A CA certificate gets close to its expiry.
    CertificateExpiring { secret: String, days: f64 },
    /// The metrics source (Prometheus) does not answer for `duration`; its history survives.
    MetricsOutage {
        #[serde(with = "humantime_serde")]
        duration: Duration,
    },
}
