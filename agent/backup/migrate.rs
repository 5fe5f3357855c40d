//! Streaming copy of a topic to another topic or cluster, partition by partition, with the
//! same keys, values, headers and timestamps. Each partition is verified by record count and a
//! rolling CRC32C over the copied records on both sides. Progress is checkpointed, so an
//! interrupted migration resumes; because this copy is the target partition's only writer, the
//! target's high watermark says exactly how much of the last stretch already landed, and
//! nothing is written twice. This module only performs I/O.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::kafka::{headers, kafka, partitions, Endpoint, Error};
use super::storage::Storage;

/// Where one partition's copy stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionCopy {
    /// Next source offset to copy.
    pub next_offset: i64,
    /// Records copied so far.
    pub records: u64,
    /// Rolling CRC32C of the copied records (key, value, headers, timestamp).
    pub checksum: u32,
    /// Key and value bytes copied so far.
    #[serde(default)]
    pub bytes: u64,
}

/// A migration's checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    pub id: String,
    pub source_topic: String,
    pub target_topic: String,
    pub partitions: BTreeMap<i32, PartitionCopy>,
}

/// The rolling checksum: the previous value extended with one record's content.
pub fn roll(
    crc: u32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, Option<&[u8]>)],
    timestamp: i64,
) -> u32 {
    let mut c = crc32c::crc32c_append(crc, &timestamp.to_be_bytes());
    for part in [key, value] {
        c = match part {
            None => crc32c::crc32c_append(c, &[0]),
            Some(b) => crc32c::crc32c_append(crc32c::crc32c_append(c, &[1]), b),
        };
    }
    for (k, v) in headers {
        c = crc32c::crc32c_append(c, k.as_bytes());
        c = match v {
            None => crc32c::crc32c_append(c, &[0]),
            Some(b) => crc32c::crc32c_append(crc32c::crc32c_append(c, &[1]), b),
        };
    }
    c
}

fn state_file(id: &str) -> String {
    format!("migrations/{id}.json")
}

fn save(storage: &dyn Storage, m: &Migration) -> Result<(), Error> {
    let text = serde_json::to_vec_pretty(m).map_err(|e| Error::Task(format!("migration state: {e}")))?;
    storage
        .put(&state_file(&m.id), &mut |w| w.write_all(&text))
        .map_err(|e| Error::Task(format!("saving migration {}: {e}", m.id)))
}

/// Load a migration's checkpoint, if it exists.
pub fn load(storage: &dyn Storage, id: &str) -> Option<Migration> {
    let mut text = Vec::new();
    storage.get(&state_file(id)).ok()?.read_to_end(&mut text).ok()?;
    serde_json::from_slice(&text).ok()
}

fn consumer(ep: &Endpoint, id: &str) -> Result<BaseConsumer, Error> {
    ep.config()
        .set("group.id", format!("kafka-autopilot-migrate-{id}"))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(kafka("consumer"))
}

/// What to copy: a checkpoint id (the same id resumes) and the topics on each side.
#[derive(Clone, Debug)]
pub struct Route {
    pub id: String,
    pub source_topic: String,
    pub target_topic: String,
}

/// Copy `route.source_topic` on `from` to `route.target_topic` on `to` until every partition
/// has been idle (no new records) for `idle`; resumes from the checkpoint of `route.id`.
pub async fn run(
    from: &Endpoint,
    to: &Endpoint,
    storage: Arc<dyn Storage>,
    route: &Route,
    idle: Duration,
    progress: super::Progress,
) -> Result<Migration, Error> {
    let (from, to, r) = (from.clone(), to.clone(), route.clone());
    tokio::task::spawn_blocking(move || {
        copy(&from, &to, storage.as_ref(), (&r.id, &r.source_topic, &r.target_topic), idle, progress.as_ref())
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))?
}

fn copy(
    from: &Endpoint,
    to: &Endpoint,
    storage: &dyn Storage,
    (id, source_topic, target_topic): (&str, &str, &str),
    idle: Duration,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<Migration, Error> {
    let copied = |m: &Migration, p: i32, now: &PartitionCopy| {
        m.partitions.iter().filter(|(q, _)| **q != p).map(|(_, c)| c.records).sum::<u64>() + now.records
    };
    let timeout = from.client.timeout;
    let src = consumer(from, id)?;
    let parts = partitions(&src, source_topic, timeout)?;
    let mut m = load(storage, id).unwrap_or_else(|| Migration {
        id: id.to_owned(),
        source_topic: source_topic.to_owned(),
        target_topic: target_topic.to_owned(),
        partitions: BTreeMap::new(),
    });
    let probe = consumer(to, id)?;
    let producer: ThreadedProducer<DefaultProducerContext> =
        to.config().set("enable.idempotence", "true").set("acks", "all").create().map_err(kafka("producer"))?;
    for p in parts {
        let low = src.fetch_watermarks(source_topic, p, timeout).map_err(kafka("watermarks"))?.0;
        let mut state =
            m.partitions.get(&p).cloned().unwrap_or(PartitionCopy { next_offset: low, ..Default::default() });
        // Records of the last stretch that landed before an interruption: the target holds
        // more than the checkpoint says. Skip exactly those.
        let landed = probe.fetch_watermarks(target_topic, p, timeout).map_err(kafka("target watermarks"))?;
        let mut skip = u64::try_from(landed.1 - landed.0).unwrap_or(0).saturating_sub(state.records);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(source_topic, p, Offset::Offset(state.next_offset)).map_err(kafka("assign"))?;
        src.assign(&tpl).map_err(kafka("assign"))?;
        let mut last_seen = Instant::now();
        let mut since_checkpoint = 0u32;
        loop {
            match src.poll(Duration::from_millis(200)) {
                Some(Ok(msg)) => {
                    last_seen = Instant::now();
                    let headers = headers(&msg);
                    let ts = msg.timestamp().to_millis().unwrap_or(-1);
                    state.checksum = roll(state.checksum, msg.key(), msg.payload(), &headers, ts);
                    state.next_offset = msg.offset() + 1;
                    state.records += 1;
                    state.bytes += (msg.key().map_or(0, <[u8]>::len) + msg.payload().map_or(0, <[u8]>::len)) as u64;
                    if skip > 0 {
                        skip -= 1;
                        continue;
                    }
                    let mut out = OwnedHeaders::new();
                    for (k, v) in &headers {
                        out = out.insert(Header { key: k, value: *v });
                    }
                    let mut rec: BaseRecord<'_, [u8], [u8]> =
                        BaseRecord::to(target_topic).partition(p).timestamp(ts).headers(out);
                    if let Some(k) = msg.key() {
                        rec = rec.key(k);
                    }
                    if let Some(v) = msg.payload() {
                        rec = rec.payload(v);
                    }
                    let mut rec = rec;
                    loop {
                        match producer.send(rec) {
                            Ok(()) => break,
                            Err((
                                rdkafka::error::KafkaError::MessageProduction(
                                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                                ),
                                back,
                            )) => {
                                producer.poll(Duration::from_millis(50));
                                rec = back;
                            }
                            Err((e, _)) => {
                                return Err(Error::Kafka { what: format!("copy to {target_topic}-{p}"), source: e })
                            }
                        }
                    }
                    since_checkpoint += 1;
                    if since_checkpoint >= 10_000 {
                        producer.flush(timeout).map_err(kafka("flush"))?;
                        m.partitions.insert(p, state.clone());
                        save(storage, &m)?;
                        since_checkpoint = 0;
                        progress(copied(&m, p, &state));
                    }
                }
                Some(Err(e)) => return Err(Error::Kafka { what: format!("read {source_topic}-{p}"), source: e }),
                None if last_seen.elapsed() >= idle => break,
                None => {}
            }
        }
        producer.flush(timeout).map_err(kafka("flush"))?;
        progress(copied(&m, p, &state));
        m.partitions.insert(p, state);
        save(storage, &m)?;
    }
    Ok(m)
}

/// Count and checksum the records of `topic` on `ep`, per partition, as the copy computes them.
pub async fn fingerprint(ep: &Endpoint, topic: &str, idle: Duration) -> Result<BTreeMap<i32, (u64, u32)>, Error> {
    let (ep, topic) = (ep.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let c = consumer(&ep, &format!("verify-{}", std::process::id()))?;
        let mut out = BTreeMap::new();
        for p in partitions(&c, &topic, ep.client.timeout)? {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, p, Offset::Beginning).map_err(kafka("assign"))?;
            c.assign(&tpl).map_err(kafka("assign"))?;
            let (mut n, mut crc, mut last) = (0u64, 0u32, Instant::now());
            while last.elapsed() < idle {
                if let Some(Ok(msg)) = c.poll(Duration::from_millis(200)) {
                    last = Instant::now();
                    let headers = headers(&msg);
                    crc = roll(crc, msg.key(), msg.payload(), &headers, msg.timestamp().to_millis().unwrap_or(-1));
                    n += 1;
                }
            }
            out.insert(p, (n, crc));
        }
        Ok(out)
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))?
}

use std::io::Read;
