//! A backup as a set: its manifest (what was backed up, from where, up to which offsets, in
//! which segments with which checksums) and the operations on it that need no broker: append a
//! segment (resumable: the manifest says where each partition stopped), complete, list, and
//! verify every checksum against the manifest.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

use super::format::{self, Compression, Record, SegmentReader, SegmentSummary, SegmentWriter};
use super::storage::Storage;
use crate::time::Timestamp;

/// Raw bytes per frame.
const FRAME_BYTES: usize = 1 << 20;

/// One segment of a partition, as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    pub file: String,
    #[serde(flatten)]
    pub summary: SegmentSummary,
}

/// One partition of a backup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionBackup {
    /// First offset to back up (the log start when the backup began).
    pub start_offset: i64,
    /// Offset after the last one to back up (the high watermark when the backup began).
    pub end_offset: i64,
    pub segments: Vec<SegmentEntry>,
}

impl PartitionBackup {
    /// Where a (resumed) backup of this partition goes on.
    pub fn next_offset(&self) -> i64 {
        self.segments.last().map_or(self.start_offset, |s| s.summary.last_offset + 1)
    }

    pub fn records(&self) -> u64 {
        self.segments.iter().map(|s| s.summary.records).sum()
    }

    /// Whether everything up to the end offset is stored (compacted or deleted offsets count as
    /// stored once a later one is).
    pub fn done(&self) -> bool {
        self.next_offset() >= self.end_offset
    }
}

/// The manifest of one backup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: String,
    pub cluster: String,
    pub topic: String,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub compression: Compression,
    /// The topic's configuration at backup time (restored onto a new topic).
    pub topic_configs: BTreeMap<String, String>,
    /// Committed offsets of the consumer groups reading the topic, per partition.
    pub consumer_offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    pub partitions: BTreeMap<i32, PartitionBackup>,
}

/// Why a backup could not be written, read or verified; names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage: {file}")]
    Io { file: String, source: std::io::Error },
    #[error("{file} is not a valid manifest")]
    Manifest { file: String, source: serde_json::Error },
    #[error("{file}")]
    Segment { file: String, source: format::Error },
    #[error("{file} does not match the manifest: {what}")]
    Mismatch { file: String, what: String },
    #[error("backup {id} has no partition {partition}")]
    NoPartition { id: String, partition: i32 },
}

fn manifest_file(id: &str) -> String {
    format!("{id}/manifest.json")
}

impl Manifest {
    /// Records stored so far, over every partition.
    pub fn records(&self) -> u64 {
        self.partitions.values().map(PartitionBackup::records).sum()
    }

    /// Records the backup covers (end minus start offsets): the goal of a running backup.
    pub fn expected_records(&self) -> u64 {
        self.partitions.values().map(|p| u64::try_from(p.end_offset - p.start_offset).unwrap_or(0)).sum()
    }

    /// Bytes of every segment: (raw, stored).
    pub fn bytes(&self) -> (u64, u64) {
        let segments = self.partitions.values().flat_map(|p| &p.segments);
        segments.fold((0, 0), |(r, s), x| (r + x.summary.raw_bytes, s + x.summary.stored_bytes))
    }

    /// Write the manifest (atomically).
    pub fn save(&self, storage: &dyn Storage) -> Result<(), Error> {
        let file = manifest_file(&self.id);
        let text = serde_json::to_vec_pretty(self).map_err(|source| Error::Manifest { file: file.clone(), source })?;
        storage.put(&file, &mut |w| w.write_all(&text)).map_err(|source| Error::Io { file, source })
    }

    /// Read the manifest of backup `id`.
    pub fn load(storage: &dyn Storage, id: &str) -> Result<Self, Error> {
        let file = manifest_file(id);
        let mut text = Vec::new();
        storage
            .get(&file)
            .and_then(|mut r| r.read_to_end(&mut text))
            .map_err(|source| Error::Io { file: file.clone(), source })?;
        serde_json::from_slice(&text).map_err(|source| Error::Manifest { file, source })
    }

    /// Every backup in `storage`, oldest first (unreadable manifests are skipped and logged).
    pub fn list(storage: &dyn Storage) -> Result<Vec<Self>, Error> {
        let ids = storage.list("").map_err(|source| Error::Io { file: String::new(), source })?;
        let mut out: Vec<Self> = ids
            .iter()
            .filter(|id| storage.exists(&manifest_file(id)))
            .filter_map(|id| match Self::load(storage, id) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(backup = %id, error = %e, "unreadable backup manifest skipped");
                    None
                }
            })
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    /// Store `records` (next in offset order) as one segment of `partition`, then the manifest,
    /// so an interruption between segments resumes at [`PartitionBackup::next_offset`].
    pub fn append(&mut self, storage: &dyn Storage, partition: i32, records: &[Record]) -> Result<(), Error> {
        let Some(first) = records.first() else { return Ok(()) };
        let id = self.id.clone();
        let p = self.partitions.get_mut(&partition).ok_or(Error::NoPartition { id: id.clone(), partition })?;
        let file = format!("{id}/p{partition:05}-{:020}.seg", first.offset);
        if first.offset < p.next_offset() {
            let what = format!("offset {} is before the partition's next offset {}", first.offset, p.next_offset());
            return Err(Error::Mismatch { file, what });
        }
        let mut summary = SegmentSummary::default();
        let compression = self.compression;
        storage
            .put(&file, &mut |w| {
                let mut seg = SegmentWriter::new(w, compression, FRAME_BYTES)?;
                for r in records {
                    seg.push(r)?;
                }
                summary = seg.finish()?.1;
                Ok(())
            })
            .map_err(|source| Error::Io { file: file.clone(), source })?;
        p.segments.push(SegmentEntry { file, summary });
        self.save(storage)
    }

    /// Every record of `partition`, every checksum checked.
    pub fn read_partition(&self, storage: &dyn Storage, partition: i32) -> Result<Vec<Record>, Error> {
        let p = self.partitions.get(&partition).ok_or(Error::NoPartition { id: self.id.clone(), partition })?;
        let mut all = Vec::new();
        for s in &p.segments {
            all.extend(read_segment(storage, s)?);
        }
        Ok(all)
    }

    /// Check every segment against its checksums and the manifest; the records per partition.
    pub fn verify(&self, storage: &dyn Storage) -> Result<BTreeMap<i32, u64>, Error> {
        let mut counts = BTreeMap::new();
        for (partition, p) in &self.partitions {
            let mut n = 0;
            for s in &p.segments {
                n += read_segment(storage, s)?.len() as u64;
            }
            counts.insert(*partition, n);
        }
        Ok(counts)
    }
}

fn read_segment(storage: &dyn Storage, s: &SegmentEntry) -> Result<Vec<Record>, Error> {
    let file = s.file.clone();
    let input = storage.get(&file).map_err(|source| Error::Io { file: file.clone(), source })?;
    let (records, crc) = SegmentReader::new(input)
        .and_then(SegmentReader::read_verified)
        .map_err(|source| Error::Segment { file: file.clone(), source })?;
    let (first, last) = (records.first().map(|r| r.offset), records.last().map(|r| r.offset));
    let m = &s.summary;
    let what = if crc != m.crc32c {
        Some(format!("segment checksum {crc:#010x}, the manifest says {:#010x}", m.crc32c))
    } else if records.len() as u64 != m.records {
        Some(format!("{} records, the manifest says {}", records.len(), m.records))
    } else if m.records > 0 && (first != Some(m.first_offset) || last != Some(m.last_offset)) {
        Some(format!("offsets {first:?}..{last:?}, the manifest says {}..{}", m.first_offset, m.last_offset))
    } else {
        None
    };
    match what {
        Some(what) => Err(Error::Mismatch { file, what }),
        None => Ok(records),
    }
}
