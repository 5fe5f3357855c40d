//! Kafka's own file formats for offline planning: the reassignment JSON that
//! `kafka-reassign-partitions.sh` reads and writes, the output of `kafka-log-dirs.sh --describe`
//! for partition sizes, and a broker list `[{"id": 1, "rack": "a"}, ...]`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{BrokerSpec, Move, PartitionSpec, Role};

/// A file could not be used; says which and why.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid {what}")]
    Parse { path: PathBuf, what: &'static str, source: serde_json::Error },
    #[error("{path}: unsupported reassignment version {version} (expected 1)")]
    Version { path: PathBuf, version: i64 },
    #[error("{path}: partition name {name:?} is not <topic>-<number>")]
    PartitionName { path: PathBuf, name: String },
}

/// `{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2,3]}]}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reassignment {
    pub version: i64,
    pub partitions: Vec<ReassignmentEntry>,
}

/// One partition of a reassignment file. Kafka's `log_dirs` is read and ignored; written as
/// `any` for every replica, as Kafka's own tool does.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReassignmentEntry {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_dirs: Vec<String>,
}

fn read(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|source| FileError::Read { path: path.to_owned(), source })
}

fn parse<T: for<'de> Deserialize<'de>>(path: &Path, what: &'static str, text: &str) -> Result<T, FileError> {
    serde_json::from_str(text).map_err(|source| FileError::Parse { path: path.to_owned(), what, source })
}

/// The partitions of a reassignment file (the current assignment).
pub fn read_assignment(path: &Path) -> Result<Vec<PartitionSpec>, FileError> {
    let file: Reassignment = parse(path, "reassignment JSON", &read(path)?)?;
    if file.version != 1 {
        return Err(FileError::Version { path: path.to_owned(), version: file.version });
    }
    Ok(file
        .partitions
        .into_iter()
        .map(|e| PartitionSpec { topic: e.topic, partition: e.partition, replicas: e.replicas, size_bytes: 0 })
        .collect())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BrokerEntry {
    id: i32,
    #[serde(default)]
    rack: Option<String>,
    #[serde(default)]
    capacity_bytes: Option<u64>,
}

/// `[{"id": 1, "rack": "a", "capacity_bytes": 1000000}, ...]`; rack and capacity optional.
pub fn read_brokers(path: &Path) -> Result<Vec<BrokerSpec>, FileError> {
    let entries: Vec<BrokerEntry> = parse(path, "broker list", &read(path)?)?;
    Ok(entries
        .into_iter()
        .map(|e| BrokerSpec { id: e.id, rack: e.rack, capacity_bytes: e.capacity_bytes, role: Role::Active })
        .collect())
}

#[derive(Deserialize)]
struct LogDirs {
    brokers: Vec<LogDirBroker>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogDirBroker {
    log_dirs: Vec<LogDir>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogDir {
    #[serde(default)]
    partitions: Vec<LogDirPartition>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogDirPartition {
    partition: String,
    size: u64,
    #[serde(default)]
    is_future: bool,
}

/// Partition sizes from `kafka-log-dirs.sh --describe` output (its JSON line; the tool's
/// chatter before it is skipped): the largest replica of each partition.
pub fn read_log_dirs(path: &Path) -> Result<HashMap<(String, i32), u64>, FileError> {
    let text = read(path)?;
    let json = text.lines().find(|l| l.trim_start().starts_with('{')).unwrap_or(&text);
    let dirs: LogDirs = parse(path, "kafka-log-dirs.sh --describe output", json)?;
    let mut sizes = HashMap::new();
    for p in dirs.brokers.iter().flat_map(|b| &b.log_dirs).flat_map(|d| &d.partitions) {
        if p.is_future {
            continue;
        }
        let (topic, number) = p
            .partition
            .rsplit_once('-')
            .and_then(|(t, n)| Some((t, n.parse::<i32>().ok()?)))
            .ok_or_else(|| FileError::PartitionName { path: path.to_owned(), name: p.partition.clone() })?;
        let size = sizes.entry((topic.to_owned(), number)).or_insert(0);
        *size = (*size).max(p.size);
    }
    Ok(sizes)
}

/// The reassignment file for the partitions that change.
pub fn reassignment(moves: &[Move]) -> Reassignment {
    Reassignment {
        version: 1,
        partitions: moves
            .iter()
            .map(|m| ReassignmentEntry {
                topic: m.topic.clone(),
                partition: m.partition,
                replicas: m.to.clone(),
                log_dirs: vec!["any".to_owned(); m.to.len()],
            })
            .collect(),
    }
}

/// Add `n` brokers with the next free ids, each in the rack that has fewest brokers (ties by
/// rack name), as an operator adding brokers evenly would. Returns the new ids.
pub fn add_brokers(brokers: &mut Vec<BrokerSpec>, n: u32) -> Vec<i32> {
    let mut per_rack: BTreeMap<String, usize> = BTreeMap::new();
    for b in brokers.iter() {
        if let Some(r) = &b.rack {
            *per_rack.entry(r.clone()).or_default() += 1;
        }
    }
    let first = brokers.iter().map(|b| b.id).max().unwrap_or(0) + 1;
    let added: Vec<i32> = (first..).take(n as usize).collect();
    for id in &added {
        let rack = per_rack.iter().min_by_key(|(name, count)| (**count, (*name).clone())).map(|(r, _)| r.clone());
        if let Some(r) = &rack {
            *per_rack.entry(r.clone()).or_default() += 1;
        }
        brokers.push(BrokerSpec { id: *id, rack, capacity_bytes: None, role: Role::Active });
    }
    added
}
