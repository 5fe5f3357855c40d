//! The Kafka adapter against the local stack's tansu broker: everything tansu answers is tested
//! here (metadata, topic configs, consumer groups and lag, DescribeCluster,
//! ListPartitionReassignments, IncrementalAlterConfigs). What tansu lacks
//! (AlterPartitionReassignments, ElectLeaders) is tested against the protocol responder in
//! `tests/kafka_wire.rs`. Needs `scripts/stack.sh up`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use autopilot::act::{MemoryJournal, Shared};
use autopilot::agent::{ClusterAgent, PipelineSettings};
use autopilot::backend::kafka::KafkaCluster;
use autopilot::backend::sim::{ClusterSpec, SimBackend, SimCluster};
use autopilot::backend::{Error, KafkaAdmin, PartitionTarget};
use autopilot::config::{KafkaClientConfig, Limits};
use autopilot::events::Events;
use autopilot::policy::PolicySet;
use autopilot::time::Timestamp;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use support::kafka::{batch_per_record_producer, create_topic, unique};
use support::stack::Stack;

fn adapter(bootstrap: &str, timeout: Duration) -> KafkaCluster {
    KafkaCluster::new(&[bootstrap.to_owned()], &KafkaClientConfig { timeout, properties: Default::default() }).unwrap()
}

/// Produce `n` records to partition 0, one record per batch (tansu's watermarks are right then).
fn produce(bootstrap: &str, topic: &str, n: usize) {
    let p = batch_per_record_producer(bootstrap);
    for i in 0..n {
        let key = i.to_string();
        p.send(BaseRecord::to(topic).partition(0).key(&key).payload("value")).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// Commit `offset` for `group` on partition 0, as a standalone consumer (no group join).
fn commit(bootstrap: &str, group: &str, topic: &str, offset: i64) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset)).unwrap();
    c.commit(&tpl, CommitMode::Sync).unwrap();
}

#[tokio::test]
async fn describes_brokers_topics_configs_and_group_lag() {
    let stack = Stack::get();
    let topic = unique("orders");
    let group = unique("billing");
    create_topic(&stack.kafka, &topic, 3, &[("min.insync.replicas", "1"), ("retention.ms", "3600000")]).await;
    let (b, t, g) = (stack.kafka.clone(), topic.clone(), group.clone());
    tokio::task::spawn_blocking(move || {
        produce(&b, &t, 10);
        commit(&b, &g, &t, 4);
    })
    .await
    .unwrap();
    let k = adapter(&stack.kafka, Duration::from_secs(10));
    let o = k.describe().await.unwrap();
    assert_eq!(o.brokers.len(), 1, "tansu is one broker: {:?}", o.brokers);
    let t = o.topics.iter().find(|x| x.name == topic).unwrap_or_else(|| panic!("{topic} not in {:?}", o.topics));
    assert_eq!(t.partitions.len(), 3);
    assert_eq!(t.min_insync_replicas, Some(1));
    assert_eq!(t.retention_ms, Some(3_600_000));
    let broker = o.brokers[0].id;
    assert!(t
        .partitions
        .iter()
        .all(|p| p.leader == Some(broker) && p.replicas == vec![broker] && p.isr == vec![broker]));
    assert!(
        o.reassignments.is_empty(),
        "tansu lists every partition as reassigning with nothing to add or remove: {:?}",
        o.reassignments
    );
    let lag = o.groups.iter().find(|x| x.group == group).unwrap_or_else(|| panic!("{group} not in {:?}", o.groups));
    assert_eq!(lag.topics.get(&topic), Some(&6), "10 records, committed at 4: {lag:?}");
}

#[tokio::test]
async fn describe_cluster_answers_without_racks() {
    let stack = Stack::get();
    let (controller, racks) = adapter(&stack.kafka, Duration::from_secs(10)).racks().await.unwrap();
    assert_eq!(racks.len(), 1, "{racks:?}");
    assert!(controller.is_some());
}

#[tokio::test]
async fn throttles_go_through_incremental_alter_configs() {
    let stack = Stack::get();
    let topic = unique("throttled");
    create_topic(&stack.kafka, &topic, 1, &[("min.insync.replicas", "1"), ("retention.ms", "3600000")]).await;
    let k = adapter(&stack.kafka, Duration::from_secs(10));
    match k.set_replication_throttle(Some(10 << 20), std::slice::from_ref(&topic)).await {
        Ok(()) => {}
        // tansu may refuse the cluster-wide broker default; the topic part is what it supports.
        Err(Error::Rejected { message }) => {
            assert!(!message.contains(&format!("2 \"{topic}\"")), "topic throttle refused: {message}")
        }
        Err(e) => panic!("{e}"),
    }
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &stack.kafka).create().unwrap();
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let r = admin.describe_configs(&[ResourceSpecifier::Topic(&topic)], &opts).await.unwrap();
    let configs = r.into_iter().next().unwrap().unwrap();
    assert_eq!(
        configs.get("follower.replication.throttled.replicas").and_then(|e| e.value.clone()).as_deref(),
        Some("*")
    );
}

#[tokio::test]
async fn reassignment_on_tansu_is_refused_with_a_clear_reason() {
    let stack = Stack::get();
    let e = adapter(&stack.kafka, Duration::from_secs(10))
        .reassign(&[PartitionTarget { topic: "t".into(), partition: 0, replicas: vec![1] }])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not support AlterPartitionReassignments"), "{e}");
}

#[tokio::test]
async fn a_stalled_broker_never_blocks_the_tick() {
    let _stack = Stack::get();
    // A "broker" that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let sim = SimBackend::new(SimCluster::new(ClusterSpec::uniform("stalled", 3, 2), Timestamp::now()).unwrap());
    let mut backends = sim.backends();
    backends.kafka = Arc::new(adapter(&addr, Duration::from_secs(2)));
    let shared = Shared::new(Limits::default(), false, Arc::new(MemoryJournal::default()));
    let settings = PipelineSettings::new("test", false, Limits::default());
    let mut agent = ClusterAgent::new("stalled", settings, backends, shared, Events::default()).await.unwrap();
    let policies = PolicySet::embedded(None, Duration::from_secs(1)).unwrap();
    let started = std::time::Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(10), agent.tick(&policies, &[], Timestamp::now()))
        .await
        .expect("tick blocked");
    assert!(started.elapsed() < Duration::from_secs(5), "tick took {:?}", started.elapsed());
    assert!(report.snapshot.data.kafka.stale && !report.snapshot.complete, "{:?}", report.snapshot.data);
    assert!(report.plan.actions.is_empty());
}
