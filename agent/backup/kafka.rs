//! Backups from and restores to Kafka through librdkafka. This module only performs I/O: it
//! reads partitions into segments (through [`Manifest::append`], so a backup resumes where it
//! stopped) and writes records back with an idempotent producer, partition, key, value, headers
//! and timestamp preserved, after every checksum of the backup has been checked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::format::{Compression, Record};
use super::manifest::{self, Manifest, PartitionBackup};
use super::storage::Storage;
use crate::config::KafkaClientConfig;
use crate::time::Timestamp;

/// Records per segment.
const SEGMENT_RECORDS: usize = 50_000;

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kafka: {what}")]
    Kafka { what: String, source: rdkafka::error::KafkaError },
    #[error("topic {topic} not found")]
    NoTopic { topic: String },
    #[error("partition {partition} stopped at offset {at} before its end offset {end} (no records for {idle:?})")]
    Stalled { partition: i32, at: i64, end: i64, idle: Duration },
    #[error("backup")]
    Backup(#[from] manifest::Error),
    #[error("target topic {topic} has {has} partitions, the backup needs {needs}")]
    Partitions { topic: String, has: usize, needs: usize },
    #[error("the blocking Kafka task failed: {0}")]
    Task(String),
}

impl Error {
    /// A bounded label for metrics: `kafka`, `storage`, `stalled`, `invalid`, `internal`.
    pub const fn category(&self) -> &'static str {
        match self {
            Error::Kafka { .. } => "kafka",
            Error::Backup(_) => "storage",
            Error::Stalled { .. } => "stalled",
            Error::NoTopic { .. } | Error::Partitions { .. } => "invalid",
            Error::Task(_) => "internal",
        }
    }
}

/// Wrap a librdkafka error with what was being done.
pub(super) fn kafka(what: &str) -> impl FnOnce(rdkafka::error::KafkaError) -> Error + '_ {
    move |source| Error::Kafka { what: what.to_owned(), source }
}

/// Where to reach a cluster.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub bootstrap: Vec<String>,
    pub client: KafkaClientConfig,
}

impl Endpoint {
    /// Where the config says `cluster` is.
    pub fn of(cluster: &crate::config::ClusterConfig) -> Self {
        Self { bootstrap: cluster.bootstrap_servers.clone(), client: cluster.kafka_client.clone() }
    }

    /// A librdkafka client configuration for this cluster.
    pub(super) fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap.join(",")).set("client.id", "kafka-autopilot-backup");
        for (k, v) in &self.client.properties {
            c.set(k, v);
        }
        c
    }
}

/// The partitions of `topic`; an error when it does not exist.
pub(super) fn partitions(c: &BaseConsumer, topic: &str, timeout: Duration) -> Result<Vec<i32>, Error> {
    let m = c.fetch_metadata(Some(topic), timeout).map_err(kafka("metadata"))?;
    let t = m.topics().iter().find(|t| t.name() == topic && !t.partitions().is_empty());
    let t = t.ok_or_else(|| Error::NoTopic { topic: topic.to_owned() })?;
    Ok(t.partitions().iter().map(|p| p.id()).collect())
}

/// Partitions of `topic` and their (low, high) watermarks.
fn watermarks(c: &BaseConsumer, topic: &str, timeout: Duration) -> Result<BTreeMap<i32, (i64, i64)>, Error> {
    let mut out = BTreeMap::new();
    for p in partitions(c, topic, timeout)? {
        out.insert(p, c.fetch_watermarks(topic, p, timeout).map_err(kafka("watermarks"))?);
    }
    Ok(out)
}

/// A message's headers as (name, value) pairs, borrowed.
pub(super) fn headers<'a>(m: &'a rdkafka::message::BorrowedMessage<'_>) -> Vec<(&'a str, Option<&'a [u8]>)> {
    m.headers().map(|hs| hs.iter().map(|h| (h.key, h.value)).collect()).unwrap_or_default()
}

/// What to back up.
#[derive(Clone, Debug)]
pub struct BackupRequest {
    pub id: String,
    pub cluster: String,
    pub topic: String,
    pub compression: Compression,
    /// At most this many records in all, shared evenly over the partitions.
    pub max_messages: Option<u64>,
}

/// Begin a backup: one partition entry per partition of the topic, from its log start to its
/// high watermark now, saved as the manifest.
pub async fn start(
    ep: &Endpoint,
    storage: &dyn Storage,
    req: &BackupRequest,
    now: Timestamp,
) -> Result<Manifest, Error> {
    let BackupRequest { id, cluster, topic, compression, max_messages } = req.clone();
    let (config, timeout, t) = (ep.config(), ep.client.timeout, topic.clone());
    let (marks, consumer_offsets) = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = config.create().map_err(kafka("client"))?;
        let marks = watermarks(&c, &t, timeout)?;
        let offsets = committed(&config, &c, &t, marks.keys().copied().collect(), timeout)?;
        Ok::<_, Error>((marks, offsets))
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    let topic_configs = topic_configs(ep, &topic).await?;
    let share = max_messages.map(|m| i64::try_from(m.div_ceil(marks.len().max(1) as u64)).unwrap_or(i64::MAX));
    let partitions = marks
        .into_iter()
        .map(|(p, (low, high))| {
            let end = share.map_or(high, |s| high.min(low.saturating_add(s)));
            (p, PartitionBackup { start_offset: low, end_offset: end, segments: Vec::new() })
        })
        .collect();
    let m = Manifest {
        id,
        cluster,
        topic,
        created_at: now,
        completed_at: None,
        compression,
        topic_configs,
        consumer_offsets,
        partitions,
    };
    m.save(storage)?;
    Ok(m)
}

/// Committed offsets of every consumer group on `topic`'s partitions (groups with none left out).
fn committed(
    config: &ClientConfig,
    c: &BaseConsumer,
    topic: &str,
    partitions: Vec<i32>,
    timeout: Duration,
) -> Result<BTreeMap<String, BTreeMap<i32, i64>>, Error> {
    let groups = c.fetch_group_list(None, timeout).map_err(kafka("list groups"))?;
    let mut out = BTreeMap::new();
    for g in groups.groups() {
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition(topic, *p);
        }
        let member: BaseConsumer = config
            .clone()
            .set("group.id", g.name())
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka("group client"))?;
        let got = member.committed_offsets(tpl, timeout).map_err(kafka("committed offsets"))?;
        let offsets: BTreeMap<i32, i64> = got
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect();
        if !offsets.is_empty() {
            out.insert(g.name().to_owned(), offsets);
        }
    }
    Ok(out)
}

/// The topic's configuration entries that are not broker defaults.
async fn topic_configs(ep: &Endpoint, topic: &str) -> Result<BTreeMap<String, String>, Error> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ep.config().create().map_err(kafka("admin"))?;
    let opts = AdminOptions::new().request_timeout(Some(ep.client.timeout));
    let results =
        admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &opts).await.map_err(kafka("describe configs"))?;
    let mut out = BTreeMap::new();
    for r in results {
        let resource = r.map_err(|code| Error::Kafka {
            what: "topic configs".into(),
            source: rdkafka::error::KafkaError::AdminOp(code),
        })?;
        for e in resource.entries.iter().filter(|e| !e.is_default && !e.is_sensitive) {
            if let Some(v) = &e.value {
                out.insert(e.name.clone(), v.clone());
            }
        }
    }
    Ok(out)
}

fn record(m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    Record {
        offset: m.offset(),
        timestamp: m.timestamp().to_millis().unwrap_or(-1),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers: headers(m).into_iter().map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec))).collect(),
    }
}

/// Copy every partition that is not done into segments; resumes an interrupted backup.
/// `progress` is told the records stored so far in the whole backup, after each segment.
///
/// Every pending partition is read at once, and a writer thread compresses, checksums and
/// stores full batches while the reader goes on fetching (a bounded channel between them keeps
/// memory bounded): reading never waits for compression, and the broker never waits for a
/// partition switch.
pub async fn run(
    ep: &Endpoint,
    storage: Arc<dyn Storage>,
    m: Manifest,
    idle: Duration,
    progress: super::Progress,
) -> Result<Manifest, Error> {
    let mut config = ep.config();
    // librdkafka's defaults wait up to 500 ms for data at each fetch and back off 1 s whenever
    // its queue is full; a backup reads as fast as it can, so both are short unless set.
    for (key, value) in [("fetch.wait.max.ms", "100"), ("fetch.queue.backoff.ms", "10")] {
        if config.get(key).is_none() {
            config.set(key, value);
        }
    }
    tokio::task::spawn_blocking(move || read_all(&config, storage, m, idle, progress))
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

/// A segment is cut at this many records or this many raw bytes, whichever comes first.
const SEGMENT_BYTES: usize = 64 << 20;
/// Raw bytes held in batches across all partitions; above it the largest batch is stored early
/// (a shorter segment), so many partitions read at once never hold more than this.
const BUFFERED_BYTES: usize = 256 << 20;

fn read_all(
    config: &ClientConfig,
    storage: Arc<dyn Storage>,
    mut m: Manifest,
    idle: Duration,
    progress: super::Progress,
) -> Result<Manifest, Error> {
    let c: BaseConsumer = config
        .clone()
        .set("group.id", format!("kafka-autopilot-backup-{}", m.id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(kafka("consumer"))?;
    let ends: BTreeMap<i32, i64> =
        m.partitions.iter().filter(|(_, p)| !p.done()).map(|(id, p)| (*id, p.end_offset)).collect();
    let mut at: BTreeMap<i32, i64> = ends.keys().map(|p| (*p, m.partitions[p].next_offset())).collect();
    let mut tpl = TopicPartitionList::new();
    for (p, next) in &at {
        tpl.add_partition_offset(&m.topic, *p, Offset::Offset(*next)).map_err(kafka("assign"))?;
    }
    if !at.is_empty() {
        c.assign(&tpl).map_err(kafka("assign"))?;
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<(i32, Vec<Record>)>(4);
    let store = Arc::clone(&storage);
    let writer = std::thread::spawn(move || -> Result<Manifest, Error> {
        for (p, batch) in rx {
            m.append(store.as_ref(), p, &batch)?;
            progress(m.records());
        }
        Ok(m)
    });
    let mut batches: BTreeMap<i32, (Vec<Record>, usize)> = BTreeMap::new();
    let mut open: Vec<i32> = ends.iter().filter(|(p, end)| at[p] < **end).map(|(p, _)| *p).collect();
    let mut last_seen = Instant::now();
    // Hand a partition's batch to the writer; false when the writer has stopped (its error wins).
    let held = std::cell::Cell::new(0usize);
    let flush = |p: i32, batches: &mut BTreeMap<i32, (Vec<Record>, usize)>| match batches.remove(&p) {
        Some((b, bytes)) if !b.is_empty() => {
            held.set(held.get() - bytes);
            tx.send((p, b)).is_ok()
        }
        _ => true,
    };
    let read: Result<(), Error> = loop {
        if open.is_empty() {
            break Ok(());
        }
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(msg)) => {
                last_seen = Instant::now();
                let p = msg.partition();
                let Some(pos) = open.iter().position(|x| *x == p) else { continue };
                let end = ends[&p];
                if msg.offset() < end {
                    at.insert(p, msg.offset() + 1);
                    let r = record(&msg);
                    let size = r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len);
                    let (batch, bytes) = batches.entry(p).or_insert_with(|| (Vec::with_capacity(1024), 0));
                    batch.push(r);
                    *bytes += size;
                    held.set(held.get() + size);
                    let full = batch.len() >= SEGMENT_RECORDS || *bytes >= SEGMENT_BYTES;
                    let cut = if full {
                        Some(p)
                    } else if held.get() >= BUFFERED_BYTES {
                        batches.iter().max_by_key(|(_, b)| b.1).map(|(q, _)| *q)
                    } else {
                        None
                    };
                    if cut.is_some_and(|q| !flush(q, &mut batches)) {
                        break Ok(());
                    }
                }
                if msg.offset() + 1 >= end {
                    open.swap_remove(pos);
                    if !flush(p, &mut batches) {
                        break Ok(());
                    }
                }
            }
            Some(Err(e)) => break Err(Error::Kafka { what: format!("partition {}", open[0]), source: e }),
            None if last_seen.elapsed() > idle => {
                let p = open[0];
                break Err(Error::Stalled { partition: p, at: at[&p], end: ends[&p], idle });
            }
            None => {}
        }
    };
    // Whatever was read is stored, so an interrupted backup resumes after it.
    let partial: Vec<i32> = batches.keys().copied().collect();
    for p in partial {
        if !flush(p, &mut batches) {
            break;
        }
    }
    drop(tx);
    let mut written = writer.join().map_err(|_| Error::Task("the backup writer panicked".into()))??;
    read?;
    for (p, entry) in written.partitions.iter_mut() {
        // Offsets compacted or deleted at the end of the range still count as covered.
        if ends.contains_key(p) {
            entry.end_offset = entry.end_offset.min(entry.next_offset());
        }
    }
    written.completed_at = Some(Timestamp::now());
    written.save(storage.as_ref())?;
    Ok(written)
}

/// What a restore wrote, or would write.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub target_topic: String,
    pub dry_run: bool,
    /// Records per partition.
    pub records: BTreeMap<i32, u64>,
    /// Each consumer group's committed offsets, translated to the target topic's offsets.
    pub translated_offsets: BTreeMap<String, BTreeMap<i32, i64>>,
}

/// Restore backup `m` into `target` (which must have at least as many partitions): every
/// segment is verified first; then records go to the same partition with key, value, headers
/// and timestamp, through an idempotent producer (a retried send is not duplicated).
pub async fn restore(
    ep: &Endpoint,
    storage: Arc<dyn Storage>,
    m: &Manifest,
    target: &str,
    dry_run: bool,
    progress: super::Progress,
) -> Result<RestoreReport, Error> {
    let verified = m.verify(storage.as_ref())?;
    let mut report =
        RestoreReport { target_topic: target.to_owned(), dry_run, records: verified, ..Default::default() };
    let (config, timeout, t) = (ep.config(), ep.client.timeout, target.to_owned());
    let marks = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = config.create().map_err(kafka("client"))?;
        watermarks(&c, &t, timeout)
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    let needs = m.partitions.keys().max().map_or(0, |p| *p as usize + 1);
    if marks.len() < needs {
        return Err(Error::Partitions { topic: target.to_owned(), has: marks.len(), needs });
    }
    // Records land after whatever the target partition holds: translate committed offsets.
    for (group, offsets) in &m.consumer_offsets {
        let mut translated = BTreeMap::new();
        for (p, committed) in offsets {
            let base = marks.get(p).map_or(0, |w| w.1);
            let records = m.read_partition(storage.as_ref(), *p)?;
            let before = records.iter().take_while(|r| r.offset < *committed).count() as i64;
            translated.insert(*p, base + before);
        }
        report.translated_offsets.insert(group.clone(), translated);
    }
    if dry_run {
        return Ok(report);
    }
    let (config, storage, m, target) = (ep.config(), Arc::clone(&storage), m.clone(), target.to_owned());
    tokio::task::spawn_blocking(move || send_all(&config, storage.as_ref(), &m, &target, progress.as_ref()))
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
    Ok(report)
}

/// Counts deliveries and keeps the first failure (librdkafka calls it from its poll thread).
#[derive(Default)]
struct Deliveries {
    delivered: std::sync::atomic::AtomicU64,
    failed: std::sync::Mutex<Option<rdkafka::error::KafkaError>>,
}

impl rdkafka::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, (): ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err((e, _)) => {
                let mut f = self.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                f.get_or_insert_with(|| e.clone());
            }
        }
    }
}

/// Send every record of `m` to `target` through one idempotent producer, pipelined: sends only
/// wait when librdkafka's queue is full; a failed delivery fails the restore.
fn send_all(
    config: &ClientConfig,
    storage: &dyn Storage,
    m: &Manifest,
    target: &str,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<(), Error> {
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    let mut config = config.clone();
    config.set("enable.idempotence", "true").set("acks", "all").set("message.timeout.ms", "60000");
    if config.get("linger.ms").is_none() {
        config.set("linger.ms", "5");
    }
    let producer: ThreadedProducer<Deliveries> =
        config.create_with_context(Deliveries::default()).map_err(kafka("producer"))?;
    let failed = |what: &str| {
        let f = producer.context().failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        f.map_or(Ok(()), |source| Err(Error::Kafka { what: what.to_owned(), source }))
    };
    let delivered = || producer.context().delivered.load(std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0u64;
    for p in m.partitions.keys() {
        let what = format!("restore to {target}-{p}");
        for r in m.read_partition(storage, *p)? {
            let mut headers = OwnedHeaders::new();
            for (k, v) in &r.headers {
                headers = headers.insert(Header { key: k, value: v.as_deref() });
            }
            let mut rec: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(target).partition(*p).headers(headers).timestamp(r.timestamp);
            if let Some(k) = &r.key {
                rec = rec.key(k.as_slice());
            }
            if let Some(v) = &r.value {
                rec = rec.payload(v.as_slice());
            }
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        back,
                    )) => {
                        // The local queue is full: let deliveries drain it, then go on.
                        failed(&what)?;
                        std::thread::sleep(Duration::from_millis(2));
                        rec = back;
                    }
                    Err((e, _)) => return Err(Error::Kafka { what, source: e }),
                }
            }
            sent += 1;
            if sent % 20_000 == 0 {
                failed(&what)?;
                progress(delivered());
            }
        }
        failed(&what)?;
    }
    producer.flush(Duration::from_secs(120)).map_err(kafka("flush"))?;
    failed(&format!("restore to {target}"))?;
    let done = delivered();
    progress(done);
    if done != sent {
        return Err(Error::Task(format!("{sent} records sent to {target} but {done} delivered")));
    }
    Ok(())
}
