//! Topic backups: the on-disk format (segments of framed, compressed, checksummed record
//! batches, described by a manifest) and where backups live. This part is pure data handling
//! and file I/O; reading from and writing to Kafka builds on it ([`kafka`], [`migrate`],
//! [`drain`]), and [`jobs`] runs those as followable jobs for the API and the scheduler.

pub mod drain;
pub mod format;
pub mod jobs;
pub mod kafka;
pub mod manifest;
pub mod migrate;
pub mod storage;

pub use format::{Compression, Record, SegmentReader, SegmentSummary, SegmentWriter};
pub use manifest::{Manifest, PartitionBackup, SegmentEntry};
pub use storage::{FsStorage, Storage};

/// Told how many records are done so far (backed up, restored or copied).
pub type Progress = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

#[cfg(test)]
mod tests;
