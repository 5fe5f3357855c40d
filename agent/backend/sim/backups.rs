//! Simulated backup storage: a backup of a topic takes the topic's size over the configured
//! rate, on the simulation's clock, so scenarios see backups running, completing and expiring.

use async_trait::async_trait;

use super::SimBackend;
use crate::backend::{BackupStore, Error};
use crate::backup::Compression;
use crate::collect::BackupEntry;
use crate::time::Timestamp;

#[async_trait]
impl BackupStore for SimBackend {
    async fn catalog(&self) -> Result<Vec<BackupEntry>, Error> {
        let c = self.lock()?;
        let now = c.now;
        Ok(c.backups
            .iter()
            .map(|(e, done)| {
                let finished = now >= *done;
                BackupEntry { completed_at: finished.then_some(*done), running: !finished, ..e.clone() }
            })
            .collect())
    }

    async fn start_backup(&self, topic: &str, compression: Compression, now: Timestamp) -> Result<String, Error> {
        let mut c = self.lock()?;
        let t = c
            .topics
            .iter()
            .find(|t| t.name == topic)
            .ok_or_else(|| Error::NotFound { what: format!("topic {topic}") })?;
        let bytes = t.partitions.iter().map(|p| p.size).sum::<f64>().max(0.0) as u64;
        let rate = c.spec.backup_bytes_per_second.0.max(1);
        let done = now + std::time::Duration::from_secs(bytes.div_ceil(rate).max(1));
        let id = format!("{}-{topic}-{}", c.spec.name, now.as_millis() / 1000);
        let entry = BackupEntry {
            id: id.clone(),
            topic: topic.to_owned(),
            created_at: now,
            completed_at: None,
            running: true,
            records: bytes / 1024,
            stored_bytes: bytes / 2,
        };
        c.record_call(format!("backup_topic {topic} {compression:?}"));
        c.backups.push((entry, done));
        Ok(id)
    }

    async fn expire(&self, id: &str) -> Result<(), Error> {
        let mut c = self.lock()?;
        let before = c.backups.len();
        c.backups.retain(|(e, _)| e.id != id);
        if c.backups.len() == before {
            return Err(Error::NotFound { what: format!("backup {id}") });
        }
        c.record_call(format!("expire_backup {id}"));
        Ok(())
    }
}
