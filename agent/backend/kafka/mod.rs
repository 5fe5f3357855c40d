//! Kafka through its admin API. This module only performs I/O.
//!
//! Reads use librdkafka (`rdkafka`): metadata, topic configs, consumer groups, committed
//! offsets and watermarks. Its calls block, so each runs in `spawn_blocking` under the
//! configured timeout and a stalled broker turns into a timed-out (stale) datum, never a stuck
//! runtime. librdkafka has no KIP-455 reassignment API, so reassignments, preferred-leader
//! elections, replication throttles and racks (DescribeCluster) go through [`wire`], a small
//! client built on the `kafka-protocol` crate.

pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, DescribeClusterRequest, DescribeLogDirsRequest, ElectLeadersRequest,
    IncrementalAlterConfigsRequest, ListPartitionReassignmentsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{Error, KafkaAdmin, PartitionTarget};
use crate::collect::{
    GroupLag, KafkaObservation, MetadataBroker, PartitionMetadata, ReassignmentInProgress, TopicMetadata,
};
use crate::config::KafkaClientConfig;
use wire::{error_text, Wire};

/// ELECTION_NOT_NEEDED and PREFERRED_LEADER_NOT_AVAILABLE: nothing to do for that partition.
const ELECTION_FINE: [i16; 2] = [84, 80];
const THROTTLED_RATES: [&str; 2] = ["leader.replication.throttled.rate", "follower.replication.throttled.rate"];
const THROTTLED_REPLICAS: [&str; 2] =
    ["leader.replication.throttled.replicas", "follower.replication.throttled.replicas"];

/// One Kafka cluster's admin API.
#[derive(Clone)]
pub struct KafkaCluster {
    config: ClientConfig,
    timeout: Duration,
    wire: Wire,
    admin: Arc<AdminClient<DefaultClientContext>>,
}

impl std::fmt::Debug for KafkaCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaCluster").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

fn kafka_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable { message: format!("{what}: {e}") }
}

/// Run a blocking librdkafka call off the async workers, bounded by `timeout`.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    timeout: Duration,
    f: impl FnOnce() -> Result<T, rdkafka::error::KafkaError> + Send + 'static,
) -> Result<T, Error> {
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(f)).await {
        Err(_) => Err(Error::Timeout { after: timeout }),
        Ok(Err(join)) => Err(kafka_error(what, join)),
        Ok(Ok(result)) => result.map_err(|e| kafka_error(what, e)),
    }
}

/// What DescribeCluster says of the brokers.
#[derive(Debug, Default)]
pub struct ClusterDescription {
    pub controller: Option<i32>,
    pub racks: BTreeMap<i32, Option<String>>,
    /// `host:port` each broker advertises.
    pub addresses: BTreeMap<i32, String>,
}

/// `Ok` when a request failed for no partition or resource, else one error naming them all.
fn all_ok(what: &str, failed: &[String]) -> Result<(), Error> {
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Rejected { message: format!("{what} {}", failed.join("; ")) })
    }
}

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

impl KafkaCluster {
    /// A client for `bootstrap` with the configured librdkafka properties.
    pub fn new(bootstrap: &[String], config: &KafkaClientConfig) -> Result<Self, Error> {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", bootstrap.join(",")).set("client.id", wire::CLIENT_ID);
        for (k, v) in &config.properties {
            client.set(k, v);
        }
        let admin = client.create().map_err(|e| Error::Rejected { message: format!("Kafka client config: {e}") })?;
        let tls = wire::Tls::from_properties(&config.properties)?;
        Ok(Self {
            config: client,
            timeout: config.timeout,
            wire: Wire::new(bootstrap.to_vec(), config.timeout, tls),
            admin: Arc::new(admin),
        })
    }

    /// The protocol client, for requests librdkafka does not wrap.
    pub fn wire(&self) -> &Wire {
        &self.wire
    }

    async fn metadata(&self) -> Result<(Vec<i32>, Vec<TopicMetadata>), Error> {
        let (config, timeout) = (self.config.clone(), self.timeout);
        blocking("metadata", timeout, move || {
            let consumer: BaseConsumer = config.create()?;
            let m = consumer.fetch_metadata(None, timeout)?;
            let brokers = m.brokers().iter().map(|b| b.id()).collect();
            let topics = m
                .topics()
                .iter()
                .filter(|t| !t.name().starts_with("__"))
                .map(|t| TopicMetadata {
                    name: t.name().to_owned(),
                    min_insync_replicas: None,
                    retention_ms: None,
                    retention_bytes: None,
                    partitions: t
                        .partitions()
                        .iter()
                        .map(|p| PartitionMetadata {
                            partition: p.id(),
                            leader: (p.leader() >= 0).then_some(p.leader()),
                            replicas: p.replicas().to_vec(),
                            isr: p.isr().to_vec(),
                            size_bytes: None,
                        })
                        .collect(),
                })
                .collect();
            Ok((brokers, topics))
        })
        .await
    }

    async fn min_insync_replicas(&self, topics: &mut [TopicMetadata]) -> Result<(), Error> {
        if topics.is_empty() {
            return Ok(());
        }
        let specs: Vec<ResourceSpecifier<'_>> = topics.iter().map(|t| ResourceSpecifier::Topic(&t.name)).collect();
        let opts = AdminOptions::new().request_timeout(Some(self.timeout));
        let results = tokio::time::timeout(self.timeout, self.admin.describe_configs(&specs, &opts))
            .await
            .map_err(|_| Error::Timeout { after: self.timeout })?
            .map_err(|e| kafka_error("describe topic configs", e))?;
        for (topic, result) in topics.iter_mut().zip(results) {
            let resource = result.map_err(|e| kafka_error(&format!("configs of topic {}", topic.name), e))?;
            let value =
                |key: &str| resource.get(key).and_then(|e| e.value.as_deref()).and_then(|v| v.parse::<i64>().ok());
            // A broker that leaves the key out uses Kafka's default of 1.
            topic.min_insync_replicas =
                Some(value("min.insync.replicas").and_then(|v| u32::try_from(v).ok()).unwrap_or(1));
            topic.retention_ms = value("retention.ms");
            topic.retention_bytes = value("retention.bytes");
        }
        Ok(())
    }

    /// Controller and rack of each broker (DescribeCluster).
    pub async fn racks(&self) -> Result<(Option<i32>, BTreeMap<i32, Option<String>>), Error> {
        self.describe_cluster().await.map(|c| (c.controller, c.racks))
    }

    /// Controller, racks and addresses of the brokers (DescribeCluster).
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, Error> {
        let r = self.wire.call(&DescribeClusterRequest::default()).await?;
        if r.error_code != 0 {
            return Err(Error::Rejected {
                message: format!("DescribeCluster: {}", error_text(r.error_code, r.error_message.as_ref())),
            });
        }
        let racks = r.brokers.iter().map(|b| (b.broker_id.0, b.rack.as_ref().map(|r| r.as_str().to_owned()))).collect();
        let addresses = r.brokers.iter().map(|b| (b.broker_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect();
        Ok(ClusterDescription { controller: (r.controller_id.0 >= 0).then_some(r.controller_id.0), racks, addresses })
    }

    /// Size on disk of every partition (DescribeLogDirs, asked of each broker, since each
    /// answers for its own disks): the largest of its replicas, future replicas aside.
    pub async fn partition_sizes(
        &self,
        addresses: &BTreeMap<i32, String>,
    ) -> Result<BTreeMap<(String, i32), u64>, Error> {
        let mut sizes: BTreeMap<(String, i32), u64> = BTreeMap::new();
        for (id, addr) in addresses {
            let r = self.wire.call_at(addr, &DescribeLogDirsRequest::default().with_topics(None)).await?;
            if r.error_code != 0 {
                return Err(Error::Rejected {
                    message: format!("DescribeLogDirs of broker {id}: {}", error_text(r.error_code, None)),
                });
            }
            for dir in r.results.iter().filter(|d| d.error_code == 0) {
                for t in &dir.topics {
                    for p in t.partitions.iter().filter(|p| !p.is_future_key) {
                        let size = sizes.entry((t.name.0.as_str().to_owned(), p.partition_index)).or_default();
                        *size = (*size).max(u64::try_from(p.partition_size).unwrap_or(0));
                    }
                }
            }
        }
        Ok(sizes)
    }

    /// Reassignments in progress (ListPartitionReassignments).
    pub async fn reassignments(&self) -> Result<Vec<ReassignmentInProgress>, Error> {
        let req = ListPartitionReassignmentsRequest::default().with_timeout_ms(self.timeout_ms()).with_topics(None);
        let r = self.wire.call(&req).await?;
        if r.error_code != 0 {
            return Err(Error::Rejected {
                message: format!("ListPartitionReassignments: {}", error_text(r.error_code, r.error_message.as_ref())),
            });
        }
        let mut out = Vec::new();
        for t in &r.topics {
            for p in &t.partitions {
                // An entry that adds and removes nothing is not a reassignment (tansu lists those).
                if p.adding_replicas.is_empty() && p.removing_replicas.is_empty() {
                    continue;
                }
                let removing: BTreeSet<i32> = p.removing_replicas.iter().map(|b| b.0).collect();
                let target = p.replicas.iter().map(|b| b.0).filter(|b| !removing.contains(b)).collect();
                out.push(ReassignmentInProgress {
                    topic: t.name.0.as_str().to_owned(),
                    partition: p.partition_index,
                    target,
                });
            }
        }
        Ok(out)
    }

    async fn groups(&self, topics: &[TopicMetadata]) -> Result<Vec<GroupLag>, Error> {
        let (config, timeout) = (self.config.clone(), self.timeout);
        let partitions: Vec<(String, i32)> =
            topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.name.clone(), p.partition))).collect();
        blocking("consumer groups", timeout, move || {
            let admin: BaseConsumer = config.create()?;
            let groups = admin.fetch_group_list(None, timeout)?;
            let mut high = BTreeMap::new();
            for (t, p) in &partitions {
                high.insert((t.clone(), *p), admin.fetch_watermarks(t, *p, timeout)?.1);
            }
            let mut out = Vec::new();
            for g in groups.groups().iter().filter(|g| g.protocol_type() == "consumer" || g.protocol_type().is_empty())
            {
                let mut tpl = TopicPartitionList::new();
                for (t, p) in &partitions {
                    tpl.add_partition(t, *p);
                }
                let member: BaseConsumer =
                    config.clone().set("group.id", g.name()).set("enable.auto.commit", "false").create()?;
                let committed = member.committed_offsets(tpl, timeout)?;
                let mut lag = GroupLag { group: g.name().to_owned(), lag: 0, topics: BTreeMap::new() };
                for e in committed.elements() {
                    let (Offset::Offset(at), Some(end)) =
                        (e.offset(), high.get(&(e.topic().to_owned(), e.partition())))
                    else {
                        continue;
                    };
                    let behind = u64::try_from(end - at).unwrap_or(0);
                    lag.lag += behind;
                    *lag.topics.entry(e.topic().to_owned()).or_default() += behind;
                }
                out.push(lag);
            }
            Ok(out)
        })
        .await
    }

    fn timeout_ms(&self) -> i32 {
        i32::try_from(self.timeout.as_millis()).unwrap_or(i32::MAX)
    }

    async fn alter_reassignments(&self, targets: Vec<(String, i32, Option<Vec<i32>>)>) -> Result<(), Error> {
        let mut by_topic: BTreeMap<String, Vec<ReassignablePartition>> = BTreeMap::new();
        for (topic, partition, replicas) in targets {
            let p = ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(replicas.map(|r| r.into_iter().map(BrokerId).collect()));
            by_topic.entry(topic).or_default().push(p);
        }
        let topics = by_topic
            .into_iter()
            .map(|(t, ps)| ReassignableTopic::default().with_name(TopicName(name(&t))).with_partitions(ps))
            .collect();
        let req = AlterPartitionReassignmentsRequest::default().with_timeout_ms(self.timeout_ms()).with_topics(topics);
        let r = self.wire.call(&req).await?;
        if r.error_code != 0 {
            return Err(Error::Rejected {
                message: format!("AlterPartitionReassignments: {}", error_text(r.error_code, r.error_message.as_ref())),
            });
        }
        let failed: Vec<String> = r
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter().filter(|p| p.error_code != 0).map(move |p| (t, p)))
            .map(|(t, p)| {
                format!(
                    "{}-{}: {}",
                    t.name.0.as_str(),
                    p.partition_index,
                    error_text(p.error_code, p.error_message.as_ref())
                )
            })
            .collect();
        all_ok("reassignment refused for", &failed)
    }
}

#[async_trait]
impl KafkaAdmin for KafkaCluster {
    async fn describe(&self) -> Result<KafkaObservation, Error> {
        let (ids, mut topics) = self.metadata().await?;
        self.min_insync_replicas(&mut topics).await?;
        // DescribeCluster (racks, controller) and reassignments need newer brokers; a broker that
        // does not offer them has no racks and can run no reassignments.
        let cluster = match self.describe_cluster().await {
            Ok(c) => c,
            Err(Error::Rejected { message }) if message.contains("does not support") => ClusterDescription::default(),
            Err(e) => return Err(e),
        };
        let ClusterDescription { controller, racks, addresses } = cluster;
        // Sizes weigh the rebalance; without them it balances counts only, so a broker that
        // cannot tell is no reason to call the whole datum stale.
        match self.partition_sizes(&addresses).await {
            Ok(sizes) => {
                for t in &mut topics {
                    for p in &mut t.partitions {
                        p.size_bytes = sizes.get(&(t.name.clone(), p.partition)).copied();
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "partition sizes unavailable"),
        }
        let reassignments = match self.reassignments().await {
            Ok(r) => r,
            Err(Error::Rejected { message }) if message.contains("does not support") => Vec::new(),
            Err(e) => return Err(e),
        };
        let groups = self.groups(&topics).await?;
        let brokers =
            ids.into_iter().map(|id| MetadataBroker { id, rack: racks.get(&id).cloned().flatten() }).collect();
        Ok(KafkaObservation { controller, brokers, topics, reassignments, groups })
    }

    async fn reassign(&self, targets: &[PartitionTarget]) -> Result<(), Error> {
        self.alter_reassignments(
            targets.iter().map(|t| (t.topic.clone(), t.partition, Some(t.replicas.clone()))).collect(),
        )
        .await
    }

    async fn cancel_reassignments(&self, partitions: &[(String, i32)]) -> Result<(), Error> {
        match self.alter_reassignments(partitions.iter().map(|(t, p)| (t.clone(), *p, None)).collect()).await {
            // NO_REASSIGNMENT_IN_PROGRESS: already finished or never started; nothing to cancel.
            Err(Error::Rejected { message }) if message.contains("NoReassignmentInProgress") => Ok(()),
            other => other,
        }
    }

    async fn elect_preferred_leaders(&self, partitions: &[(String, i32)]) -> Result<(), Error> {
        let topic_partitions = (!partitions.is_empty()).then(|| {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (t, p) in partitions {
                by_topic.entry(t).or_default().push(*p);
            }
            by_topic
                .into_iter()
                .map(|(t, ps)| TopicPartitions::default().with_topic(TopicName(name(t))).with_partitions(ps))
                .collect()
        });
        let req = ElectLeadersRequest::default()
            .with_election_type(0)
            .with_topic_partitions(topic_partitions)
            .with_timeout_ms(self.timeout_ms());
        let r = self.wire.call(&req).await?;
        if r.error_code != 0 {
            return Err(Error::Rejected { message: format!("ElectLeaders: {}", error_text(r.error_code, None)) });
        }
        let failed: Vec<String> = r
            .replica_election_results
            .iter()
            .flat_map(|t| {
                t.partition_result
                    .iter()
                    .filter(|p| p.error_code != 0 && !ELECTION_FINE.contains(&p.error_code))
                    .map(move |p| (t, p))
            })
            .map(|(t, p)| {
                format!(
                    "{}-{}: {}",
                    t.topic.0.as_str(),
                    p.partition_id,
                    error_text(p.error_code, p.error_message.as_ref())
                )
            })
            .collect();
        all_ok("leader election failed for", &failed)
    }

    async fn set_replication_throttle(&self, bytes_per_sec: Option<u64>, topics: &[String]) -> Result<(), Error> {
        // SET = 0, DELETE = 1; BROKER = 4 (empty name: the cluster-wide default), TOPIC = 2.
        let (op, rate, replicas) = match bytes_per_sec {
            Some(b) => (0, Some(name(&b.to_string())), Some(name("*"))),
            None => (1, None, None),
        };
        let configs = |keys: [&str; 2], value: Option<StrBytes>| -> Vec<AlterableConfig> {
            keys.iter()
                .map(|k| {
                    AlterableConfig::default().with_name(name(k)).with_config_operation(op).with_value(value.clone())
                })
                .collect()
        };
        let mut resources = vec![AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(name(""))
            .with_configs(configs(THROTTLED_RATES, rate))];
        for t in topics {
            resources.push(
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(name(t))
                    .with_configs(configs(THROTTLED_REPLICAS, replicas.clone())),
            );
        }
        let r = self.wire.call(&IncrementalAlterConfigsRequest::default().with_resources(resources)).await?;
        let failed: Vec<String> = r
            .responses
            .iter()
            .filter(|x| x.error_code != 0)
            .map(|x| {
                format!(
                    "{} {:?}: {}",
                    x.resource_type,
                    x.resource_name.as_str(),
                    error_text(x.error_code, x.error_message.as_ref())
                )
            })
            .collect();
        all_ok("throttle not set:", &failed)
    }
}
