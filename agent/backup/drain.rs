//! Watching a consumer group drain: its lag (high watermark minus committed offset, over every
//! partition it has committed on) polled until it is at most `max_lag` (drained) or `timeout`
//! passes (not drained), with progress reported on the way. This module only performs I/O.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::kafka::{kafka, Endpoint, Error};

/// A group's lag now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lag {
    pub total: u64,
    /// (topic, partition) -> records behind.
    pub partitions: BTreeMap<(String, i32), u64>,
}

/// How a watch ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Drained { lag: u64, after_ms: u64 },
    TimedOut { lag: u64, started_with: u64 },
}

/// The lag of `group` on every partition of every topic it has committed offsets on.
pub fn lag(ep: &Endpoint, group: &str) -> Result<Lag, Error> {
    let timeout = ep.client.timeout;
    let c: BaseConsumer =
        ep.config().set("group.id", group).set("enable.auto.commit", "false").create().map_err(kafka("consumer"))?;
    let meta = c.fetch_metadata(None, timeout).map_err(kafka("metadata"))?;
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics().iter().filter(|t| !t.name().starts_with("__")) {
        for p in t.partitions() {
            tpl.add_partition(t.name(), p.id());
        }
    }
    let committed = c.committed_offsets(tpl, timeout).map_err(kafka("committed offsets"))?;
    let mut out = Lag::default();
    for e in committed.elements() {
        let Offset::Offset(at) = e.offset() else { continue };
        let high = c.fetch_watermarks(e.topic(), e.partition(), timeout).map_err(kafka("watermarks"))?.1;
        let behind = u64::try_from(high - at).unwrap_or(0);
        out.total += behind;
        out.partitions.insert((e.topic().to_owned(), e.partition()), behind);
    }
    Ok(out)
}

/// Poll `group`'s lag every `every` until it is at most `max_lag` or `timeout` passes;
/// `progress` sees each reading.
pub async fn watch(
    ep: &Endpoint,
    group: &str,
    max_lag: u64,
    timeout: Duration,
    every: Duration,
    progress: &(dyn Fn(&Lag) + Send + Sync),
) -> Result<Outcome, Error> {
    let started = Instant::now();
    let mut first = None;
    loop {
        let (ep2, g) = (ep.clone(), group.to_owned());
        let now =
            tokio::task::spawn_blocking(move || lag(&ep2, &g)).await.map_err(|e| Error::Task(e.to_string()))??;
        progress(&now);
        let started_with = *first.get_or_insert(now.total);
        if now.total <= max_lag {
            let after_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            return Ok(Outcome::Drained { lag: now.total, after_ms });
        }
        if started.elapsed() >= timeout {
            return Ok(Outcome::TimedOut { lag: now.total, started_with });
        }
        tokio::time::sleep(every.min(timeout.saturating_sub(started.elapsed())).max(Duration::from_millis(10))).await;
    }
}
