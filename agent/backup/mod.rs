//! Topic backups: the on-disk format (segments of framed, compressed, checksummed record
//! batches, described by a manifest) and where backups live. This part is pure data handling
//! and file I/O; reading from and writing to Kafka builds on it (issue #6, in progress).

pub mod drain;
pub mod format;
pub mod kafka;
pub mod manifest;
pub mod migrate;
pub mod storage;

pub use format::{Compression, Record, SegmentReader, SegmentSummary, SegmentWriter};
pub use manifest::{Manifest, PartitionBackup, SegmentEntry};
pub use storage::{FsStorage, Storage};

#[cfg(test)]
mod tests;
