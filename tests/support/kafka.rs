//! Topics on the local stack's broker for the Kafka tests.

use std::time::Duration;

use autopilot::time::Timestamp;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{DefaultProducerContext, ThreadedProducer};

/// A name no earlier run used.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), Timestamp::now().as_millis() % 1_000_000)
}

/// Create `topic` with `partitions` partitions, one replica, and these configs.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let r =
        admin.create_topics(&[new], &AdminOptions::new().request_timeout(Some(Duration::from_secs(10)))).await.unwrap();
    r.into_iter().for_each(|x| {
        x.unwrap();
    });
}

/// A producer that sends every record as its own batch. tansu reports a partition's high
/// watermark as its last batch's base offset plus one, which is only right then.
pub fn batch_per_record_producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .create()
        .unwrap()
}
