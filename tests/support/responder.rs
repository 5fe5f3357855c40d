//! A Kafka protocol responder for the admin APIs no broker installable here answers
//! (AlterPartitionReassignments, ElectLeaders) and the ones the agent's wire client uses
//! (ApiVersions, DescribeCluster, ListPartitionReassignments, IncrementalAlterConfigs). Built
//! from the `kafka-protocol` crate's own request and response types, on 127.0.0.1, with a small
//! partition model: reassignments stay in progress until the test completes them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{
    decode_request_header_from_buffer, Decodable, Encodable, HeaderVersion, Message, StrBytes,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

type Key = (String, i32);

/// What the responder's cluster looks like.
#[derive(Debug, Default)]
pub struct State {
    /// Replicas of each partition (first = preferred leader).
    pub replicas: BTreeMap<Key, Vec<i32>>,
    pub leaders: BTreeMap<Key, i32>,
    /// Reassignments in progress: target replicas.
    pub moving: BTreeMap<Key, Vec<i32>>,
    /// Configs set with IncrementalAlterConfigs: (resource type, name, key) -> value.
    pub configs: BTreeMap<(i8, String, String), String>,
    pub racks: BTreeMap<i32, String>,
    /// Size on disk of each partition's replicas, answered by DescribeLogDirs.
    pub sizes: BTreeMap<Key, i64>,
    /// The port every broker advertises (this responder's own).
    pub port: i32,
    /// Every request received, by API key name.
    pub requests: Vec<String>,
}

/// A running responder.
#[derive(Clone, Debug)]
pub struct Responder {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

impl Responder {
    /// Start a responder with `brokers` brokers in racks a, b, c and one topic.
    pub async fn start(brokers: i32, topic: &str, partitions: i32) -> Responder {
        Self::start_with(brokers, topic, partitions, None).await
    }

    /// The same, behind TLS with this acceptor.
    pub async fn start_with(
        brokers: i32,
        topic: &str,
        partitions: i32,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Responder {
        let mut state = State::default();
        for b in 0..brokers {
            state.racks.insert(b, ["a", "b", "c"][usize::try_from(b).unwrap() % 3].to_owned());
        }
        for p in 0..partitions {
            let replicas: Vec<i32> = (0..3.min(brokers)).map(|i| (p + i) % brokers).collect();
            state.leaders.insert((topic.to_owned(), p), replicas[0]);
            state.sizes.insert((topic.to_owned(), p), i64::from(p + 1) << 20);
            state.replicas.insert((topic.to_owned(), p), replicas);
        }
        let state = Arc::new(Mutex::new(state));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        state.lock().unwrap().port = i32::from(addr.port());
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                match tls.clone() {
                    None => {
                        tokio::spawn(serve(stream, shared));
                    }
                    Some(acceptor) => {
                        tokio::spawn(async move {
                            if let Ok(s) = acceptor.accept(stream).await {
                                serve(s, shared).await;
                            }
                        });
                    }
                }
            }
        });
        Responder { addr, state }
    }

    /// Finish every reassignment in progress, as the controller would once replicas caught up.
    pub fn complete_reassignments(&self) {
        let mut s = self.state.lock().unwrap();
        let moving = std::mem::take(&mut s.moving);
        for (k, target) in moving {
            if !target.contains(s.leaders.get(&k).unwrap_or(&-1)) {
                s.leaders.insert(k.clone(), target[0]);
            }
            s.replicas.insert(k, target);
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, state: Arc<Mutex<State>>) {
    loop {
        let Ok(len) = stream.read_i32().await else { return };
        let mut buf = vec![0u8; usize::try_from(len).unwrap()];
        if stream.read_exact(&mut buf).await.is_err() {
            return;
        }
        let mut frame = Bytes::from(buf);
        let header = decode_request_header_from_buffer(&mut frame).unwrap();
        let version = header.request_api_version;
        let key = ApiKey::try_from(header.request_api_key).unwrap();
        state.lock().unwrap().requests.push(format!("{key:?}"));
        let mut out = BytesMut::new();
        let correlation = header.correlation_id;
        macro_rules! reply {
            ($req:ty, $handler:expr) => {{
                let req = <$req>::decode(&mut frame, version).unwrap();
                let resp = $handler(req, &mut state.lock().unwrap());
                write_response(&mut out, correlation, version, &resp);
            }};
        }
        match key {
            ApiKey::ApiVersions => reply!(ApiVersionsRequest, api_versions),
            ApiKey::DescribeCluster => reply!(DescribeClusterRequest, describe_cluster),
            ApiKey::AlterPartitionReassignments => reply!(AlterPartitionReassignmentsRequest, alter),
            ApiKey::ListPartitionReassignments => reply!(ListPartitionReassignmentsRequest, list),
            ApiKey::ElectLeaders => reply!(ElectLeadersRequest, elect),
            ApiKey::IncrementalAlterConfigs => reply!(IncrementalAlterConfigsRequest, alter_configs),
            ApiKey::DescribeLogDirs => reply!(DescribeLogDirsRequest, log_dirs),
            other => panic!("the responder does not answer {other:?}"),
        }
        let len = i32::try_from(out.len()).unwrap();
        if stream.write_all(&len.to_be_bytes()).await.is_err() || stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn write_response<R: Encodable + HeaderVersion>(out: &mut BytesMut, correlation: i32, version: i16, resp: &R) {
    ResponseHeader::default().with_correlation_id(correlation).encode(out, R::header_version(version)).unwrap();
    resp.encode(out, version).unwrap();
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn version<M: Message>(key: ApiKey) -> ApiVersion {
    ApiVersion::default().with_api_key(key as i16).with_min_version(M::VERSIONS.min).with_max_version(M::VERSIONS.max)
}

fn api_versions(_: ApiVersionsRequest, _: &mut State) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(vec![
        version::<ApiVersionsRequest>(ApiKey::ApiVersions),
        version::<DescribeClusterRequest>(ApiKey::DescribeCluster),
        version::<AlterPartitionReassignmentsRequest>(ApiKey::AlterPartitionReassignments),
        version::<ListPartitionReassignmentsRequest>(ApiKey::ListPartitionReassignments),
        version::<ElectLeadersRequest>(ApiKey::ElectLeaders),
        version::<IncrementalAlterConfigsRequest>(ApiKey::IncrementalAlterConfigs),
        version::<DescribeLogDirsRequest>(ApiKey::DescribeLogDirs),
    ])
}

/// Every broker shares this responder's address, so each answers for the whole cluster: the
/// sizes of every partition (a replica's size is its partition's).
fn log_dirs(_: DescribeLogDirsRequest, st: &mut State) -> DescribeLogDirsResponse {
    let mut topics: BTreeMap<&str, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for ((topic, partition), size) in &st.sizes {
        let p = DescribeLogDirsPartition::default().with_partition_index(*partition).with_partition_size(*size);
        topics.entry(topic).or_default().push(p);
    }
    let topics = topics
        .into_iter()
        .map(|(t, ps)| DescribeLogDirsTopic::default().with_name(TopicName(s(t))).with_partitions(ps))
        .collect();
    let dir = DescribeLogDirsResult::default().with_log_dir(s("/var/lib/kafka/data")).with_topics(topics);
    DescribeLogDirsResponse::default().with_results(vec![dir])
}

fn describe_cluster(_: DescribeClusterRequest, st: &mut State) -> DescribeClusterResponse {
    let brokers = st
        .racks
        .iter()
        .map(|(id, rack)| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(*id))
                .with_host(s("127.0.0.1"))
                .with_port(st.port)
                .with_rack(Some(s(rack)))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(s("responder"))
        .with_controller_id(BrokerId(0))
        .with_brokers(brokers)
}

fn alter(req: AlterPartitionReassignmentsRequest, st: &mut State) -> AlterPartitionReassignmentsResponse {
    let mut responses = Vec::new();
    for t in req.topics {
        let topic = t.name.0.as_str().to_owned();
        let mut partitions = Vec::new();
        for p in t.partitions {
            let key = (topic.clone(), p.partition_index);
            let code = match p.replicas {
                _ if !st.replicas.contains_key(&key) => 3, // UNKNOWN_TOPIC_OR_PARTITION
                Some(r) if r.iter().any(|b| !st.racks.contains_key(&b.0)) => 39, // INVALID_REPLICA_ASSIGNMENT
                Some(r) => {
                    st.moving.insert(key, r.into_iter().map(|b| b.0).collect());
                    0
                }
                None if st.moving.remove(&key).is_some() => 0,
                None => 85, // NO_REASSIGNMENT_IN_PROGRESS
            };
            partitions.push(
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index).with_error_code(code),
            );
        }
        responses.push(ReassignableTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    AlterPartitionReassignmentsResponse::default().with_responses(responses)
}

fn list(_: ListPartitionReassignmentsRequest, st: &mut State) -> ListPartitionReassignmentsResponse {
    let mut topics: BTreeMap<String, Vec<OngoingPartitionReassignment>> = BTreeMap::new();
    for ((topic, p), target) in &st.moving {
        let current = &st.replicas[&(topic.clone(), *p)];
        let adding: Vec<BrokerId> = target.iter().filter(|b| !current.contains(b)).map(|b| BrokerId(*b)).collect();
        let removing: Vec<BrokerId> = current.iter().filter(|b| !target.contains(b)).map(|b| BrokerId(*b)).collect();
        let mut all: Vec<BrokerId> = target.iter().map(|b| BrokerId(*b)).collect();
        all.extend(removing.iter().copied());
        topics.entry(topic.clone()).or_default().push(
            OngoingPartitionReassignment::default()
                .with_partition_index(*p)
                .with_replicas(all)
                .with_adding_replicas(adding)
                .with_removing_replicas(removing),
        );
    }
    let topics = topics
        .into_iter()
        .map(|(t, ps)| OngoingTopicReassignment::default().with_name(TopicName(s(&t))).with_partitions(ps))
        .collect();
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

fn elect(req: ElectLeadersRequest, st: &mut State) -> ElectLeadersResponse {
    let keys: Vec<Key> = match req.topic_partitions {
        Some(tps) => tps
            .into_iter()
            .flat_map(|t| t.partitions.into_iter().map(move |p| (t.topic.0.as_str().to_owned(), p)))
            .collect(),
        None => st.replicas.keys().cloned().collect(),
    };
    let mut results: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for k in keys {
        let preferred = st.replicas[&k][0];
        let code = if st.leaders.get(&k) == Some(&preferred) { 84 } else { 0 }; // ELECTION_NOT_NEEDED
        st.leaders.insert(k.clone(), preferred);
        results
            .entry(k.0.clone())
            .or_default()
            .push(PartitionResult::default().with_partition_id(k.1).with_error_code(code));
    }
    let results = results
        .into_iter()
        .map(|(t, ps)| ReplicaElectionResult::default().with_topic(TopicName(s(&t))).with_partition_result(ps))
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}

fn alter_configs(req: IncrementalAlterConfigsRequest, st: &mut State) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for r in req.resources {
        let name = r.resource_name.as_str().to_owned();
        for c in r.configs {
            let key = (r.resource_type, name.clone(), c.name.as_str().to_owned());
            match (c.config_operation, c.value) {
                (0, Some(v)) => {
                    st.configs.insert(key, v.as_str().to_owned());
                }
                _ => {
                    st.configs.remove(&key);
                }
            }
        }
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
