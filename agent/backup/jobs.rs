//! Backup, restore, migration and drain jobs: submitted by the API or by the backup schedule,
//! run in the background (backups, restores and migrations under one concurrency limit), and
//! followed through their progress. Every job ends with its per-operation metrics: duration,
//! records, bytes, compression ratio, throughput and errors. This module only performs I/O.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::format::Compression;
use super::kafka::{self as bk, BackupRequest, Endpoint};
use super::manifest::Manifest;
use super::storage::Storage;
use super::{drain, migrate, Progress};
use crate::backend::BackupStore;
use crate::collect::BackupEntry;
use crate::telemetry;
use crate::time::Timestamp;

/// Finished jobs kept for `GET /api/v1/jobs`.
const KEEP_FINISHED: usize = 500;

/// What a job does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum JobSpec {
    /// Back up `topic` of `cluster` (resuming an incomplete backup of the same topic).
    Backup {
        cluster: String,
        topic: String,
        #[serde(default = "default_compression")]
        compression: Compression,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_messages: Option<u64>,
    },
    /// Restore backup `backup` into `to_topic` on `cluster`.
    Restore {
        backup: String,
        cluster: String,
        to_topic: String,
        #[serde(default)]
        dry_run: bool,
    },
    /// Copy `from_topic` on `from_cluster` to `to_topic` on `to_cluster`, verified per partition.
    Migrate { from_cluster: String, from_topic: String, to_cluster: String, to_topic: String },
    /// Watch `group` on `cluster` until its lag is at most `max_lag` or `timeout` passes.
    Drain {
        cluster: String,
        group: String,
        #[serde(default)]
        max_lag: u64,
        #[serde(with = "humantime_serde")]
        timeout: Duration,
    },
}

const fn default_compression() -> Compression {
    Compression::Lz4
}

impl JobSpec {
    /// `backup`, `restore`, `migrate` or `drain`.
    pub const fn kind(&self) -> &'static str {
        match self {
            JobSpec::Backup { .. } => "backup",
            JobSpec::Restore { .. } => "restore",
            JobSpec::Migrate { .. } => "migrate",
            JobSpec::Drain { .. } => "drain",
        }
    }

    /// The cluster the job reads from (the target for a restore).
    pub fn cluster(&self) -> &str {
        match self {
            JobSpec::Backup { cluster, .. } | JobSpec::Restore { cluster, .. } | JobSpec::Drain { cluster, .. } => {
                cluster
            }
            JobSpec::Migrate { from_cluster, .. } => from_cluster,
        }
    }
}

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

/// One job, as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub spec: JobSpec,
    /// Who asked: `api`, `schedule`.
    pub source: String,
    pub status: JobStatus,
    pub submitted_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Records done so far (lag for a drain).
    pub done: u64,
    /// Records to do, when known (the lag at the start for a drain).
    pub total: Option<u64>,
    /// The outcome in a sentence, or why it failed.
    pub message: Option<String>,
    /// The outcome's details (a restore report, a migration's verification, a drain outcome).
    pub result: Option<serde_json::Value>,
}

impl Job {
    /// Whether the job has ended.
    pub fn finished(&self) -> bool {
        matches!(self.status, JobStatus::Succeeded | JobStatus::Failed)
    }
}

/// Why a job was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
}

/// The job runner's settings.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // holds a storage trait object
pub struct JobsConfig {
    pub storage: Arc<dyn Storage>,
    /// Backups, restores and migrations running at once.
    pub concurrency: usize,
    /// A partition with no new record for this long has ended (migration) or stalled (backup).
    pub idle: Duration,
    /// Kafka endpoints of the clusters, by name.
    pub endpoints: BTreeMap<String, Endpoint>,
}

/// The jobs of one agent.
pub struct Jobs {
    cfg: JobsConfig,
    jobs: Mutex<BTreeMap<String, Job>>,
    permits: Arc<Semaphore>,
    seq: AtomicU64,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").field("clusters", &self.cfg.endpoints.keys()).finish_non_exhaustive()
    }
}

/// Summary of a finished job, for its metrics.
#[derive(Default)]
struct Tally {
    records: u64,
    raw_bytes: u64,
    stored_bytes: Option<u64>,
    message: String,
    result: Option<serde_json::Value>,
}

impl Jobs {
    pub fn new(cfg: JobsConfig) -> Arc<Self> {
        let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
        Arc::new(Self { cfg, jobs: Mutex::default(), permits, seq: AtomicU64::new(0) })
    }

    /// Where backups are stored.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.cfg.storage
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Job>> {
        self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn endpoint(&self, cluster: &str) -> Result<Endpoint, Refused> {
        self.cfg.endpoints.get(cluster).cloned().ok_or_else(|| {
            Refused::NotFound(format!("no cluster {cluster:?} with Kafka bootstrap servers in the config"))
        })
    }

    /// Check `spec`, record it as queued and start it; the job id. A backup's job id is the
    /// backup id, and an incomplete backup of the same topic is resumed rather than restarted.
    pub fn submit(self: &Arc<Self>, spec: JobSpec, source: &str, now: Timestamp) -> Result<String, Refused> {
        let id = self.validate(&spec, now)?;
        let job = Job {
            id: id.clone(),
            spec: spec.clone(),
            source: source.to_owned(),
            status: JobStatus::Queued,
            submitted_at: now,
            started_at: None,
            finished_at: None,
            done: 0,
            total: None,
            message: None,
            result: None,
        };
        {
            let mut jobs = self.lock();
            if let Some(busy) = jobs.values().find(|j| !j.finished() && same_work(&j.spec, &spec)) {
                return Err(Refused::Conflict(format!("job {} is already {} for this", busy.id, status(busy.status))));
            }
            jobs.insert(id.clone(), job);
            let finished: Vec<String> = jobs.values().filter(|j| j.finished()).map(|j| j.id.clone()).collect();
            for old in finished.iter().take(finished.len().saturating_sub(KEEP_FINISHED)) {
                jobs.remove(old);
            }
        }
        let (me, job_id) = (Arc::clone(self), id.clone());
        tokio::spawn(async move { me.run(job_id, spec).await });
        Ok(id)
    }

    fn validate(&self, spec: &JobSpec, now: Timestamp) -> Result<String, Refused> {
        let stamp = now.as_millis() / 1000;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let name_ok = |what: &str, v: &str| {
            if v.is_empty() || v.contains('/') || v.chars().any(char::is_whitespace) {
                Err(Refused::Invalid(format!("{what} {v:?} is not a valid name")))
            } else {
                Ok(())
            }
        };
        match spec {
            JobSpec::Backup { cluster, topic, max_messages, .. } => {
                self.endpoint(cluster)?;
                name_ok("topic", topic)?;
                if *max_messages == Some(0) {
                    return Err(Refused::Invalid("max_messages must be at least 1".into()));
                }
                let incomplete = Manifest::list(self.cfg.storage.as_ref())
                    .unwrap_or_default()
                    .into_iter()
                    .rev()
                    .find(|m| &m.cluster == cluster && &m.topic == topic && m.completed_at.is_none());
                Ok(incomplete.map_or_else(|| format!("{cluster}-{topic}-{stamp}"), |m| m.id))
            }
            JobSpec::Restore { backup, cluster, to_topic, .. } => {
                self.endpoint(cluster)?;
                name_ok("to_topic", to_topic)?;
                let m = Manifest::load(self.cfg.storage.as_ref(), backup)
                    .map_err(|e| Refused::NotFound(format!("backup {backup:?}: {e}")))?;
                if m.completed_at.is_none() {
                    return Err(Refused::Conflict(format!(
                        "backup {backup} is incomplete; finish it before restoring"
                    )));
                }
                Ok(format!("restore-{backup}-{stamp}-{seq}"))
            }
            JobSpec::Migrate { from_cluster, from_topic, to_cluster, to_topic } => {
                self.endpoint(from_cluster)?;
                self.endpoint(to_cluster)?;
                name_ok("from_topic", from_topic)?;
                name_ok("to_topic", to_topic)?;
                if from_cluster == to_cluster && from_topic == to_topic {
                    return Err(Refused::Invalid("a topic cannot be migrated onto itself".into()));
                }
                // The id is the checkpoint: the same copy resumes where an interrupted one stopped.
                Ok(format!("migrate-{from_cluster}-{from_topic}-to-{to_cluster}-{to_topic}"))
            }
            JobSpec::Drain { cluster, group, timeout, .. } => {
                self.endpoint(cluster)?;
                name_ok("group", group)?;
                if timeout.is_zero() {
                    return Err(Refused::Invalid("timeout must be greater than zero".into()));
                }
                Ok(format!("drain-{cluster}-{group}-{stamp}-{seq}"))
            }
        }
    }

    /// One job.
    pub fn get(&self, id: &str) -> Option<Job> {
        self.lock().get(id).cloned()
    }

    /// Every job known, oldest first.
    pub fn list(&self) -> Vec<Job> {
        let mut out: Vec<Job> = self.lock().values().cloned().collect();
        out.sort_by(|a, b| (a.submitted_at, &a.id).cmp(&(b.submitted_at, &b.id)));
        out
    }

    /// Delete a backup (retention); refused while a job uses it.
    pub fn expire(&self, id: &str) -> Result<(), Refused> {
        let busy = self.lock().values().any(|j| {
            !j.finished() && (j.id == id || matches!(&j.spec, JobSpec::Restore { backup, .. } if backup == id))
        });
        if busy {
            return Err(Refused::Conflict(format!("backup {id} is in use by a running job")));
        }
        self.cfg.storage.remove_all(id).map_err(|e| Refused::Invalid(format!("deleting backup {id}: {e}")))
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Job)) {
        if let Some(j) = self.lock().get_mut(id) {
            f(j);
        }
    }

    fn progress(self: &Arc<Self>, id: &str) -> Progress {
        let (me, id) = (Arc::clone(self), id.to_owned());
        Arc::new(move |n| me.update(&id, |j| j.done = n))
    }

    async fn run(self: Arc<Self>, id: String, spec: JobSpec) {
        let _permit = match spec {
            JobSpec::Drain { .. } => None,
            _ => Arc::clone(&self.permits).acquire_owned().await.ok(),
        };
        let started = Instant::now();
        self.update(&id, |j| {
            j.status = JobStatus::Running;
            j.started_at = Some(Timestamp::now());
        });
        metrics::gauge!(telemetry::BACKUP_JOBS_RUNNING, "kind" => spec.kind()).increment(1.0);
        let outcome = self.execute(&id, &spec).await;
        metrics::gauge!(telemetry::BACKUP_JOBS_RUNNING, "kind" => spec.kind()).decrement(1.0);
        let secs = started.elapsed().as_secs_f64();
        let (cluster, kind) = (spec.cluster().to_owned(), spec.kind());
        let result = if outcome.is_ok() { "succeeded" } else { "failed" };
        metrics::counter!(telemetry::BACKUP_JOBS, "cluster" => cluster.clone(), "kind" => kind, "result" => result)
            .increment(1);
        metrics::histogram!(telemetry::BACKUP_DURATION, "kind" => kind).record(secs);
        match outcome {
            Ok(t) => {
                metrics::counter!(telemetry::BACKUP_MESSAGES, "cluster" => cluster.clone(), "kind" => kind)
                    .increment(t.records);
                metrics::counter!(telemetry::BACKUP_BYTES, "cluster" => cluster.clone(), "kind" => kind)
                    .increment(t.raw_bytes);
                if t.raw_bytes > 0 {
                    metrics::gauge!(telemetry::BACKUP_THROUGHPUT, "cluster" => cluster.clone(), "kind" => kind)
                        .set(t.raw_bytes as f64 / secs.max(1e-6));
                }
                if let Some(stored) = t.stored_bytes {
                    metrics::counter!(telemetry::BACKUP_STORED_BYTES, "cluster" => cluster.clone()).increment(stored);
                    metrics::gauge!(telemetry::BACKUP_RATIO, "cluster" => cluster.clone())
                        .set(t.raw_bytes as f64 / stored.max(1) as f64);
                }
                tracing::info!(job = %id, kind, cluster, seconds = secs, "{}", t.message);
                self.update(&id, |j| {
                    j.status = JobStatus::Succeeded;
                    j.message = Some(t.message);
                    j.result = t.result;
                    j.finished_at = Some(Timestamp::now());
                });
            }
            Err(e) => {
                let category = e.category();
                metrics::counter!(telemetry::BACKUP_ERRORS, "cluster" => cluster.clone(), "kind" => kind, "category" => category)
                    .increment(1);
                let message = format!("{:#}", anyhow::Error::new(e));
                tracing::warn!(job = %id, kind, cluster, error = %message, "job failed");
                self.update(&id, |j| {
                    j.status = JobStatus::Failed;
                    j.message = Some(message);
                    j.finished_at = Some(Timestamp::now());
                });
            }
        }
    }

    async fn execute(self: &Arc<Self>, id: &str, spec: &JobSpec) -> Result<Tally, bk::Error> {
        let storage = Arc::clone(&self.cfg.storage);
        let endpoint = |c: &str| self.endpoint(c).map_err(|e| bk::Error::Task(e.to_string()));
        match spec {
            JobSpec::Backup { cluster, topic, compression, max_messages } => {
                let ep = endpoint(cluster)?;
                let m = match Manifest::load(storage.as_ref(), id) {
                    Ok(m) => m,
                    Err(_) => {
                        let req = BackupRequest {
                            id: id.to_owned(),
                            cluster: cluster.clone(),
                            topic: topic.clone(),
                            compression: *compression,
                            max_messages: *max_messages,
                        };
                        bk::start(&ep, storage.as_ref(), &req, Timestamp::now()).await?
                    }
                };
                let total = m.expected_records();
                self.update(id, |j| j.total = Some(total));
                let m = bk::run(&ep, storage, m, self.cfg.idle, self.progress(id)).await?;
                let records = m.records();
                let (raw, stored) = m.bytes();
                let message = format!("backup {id} complete: {records} records, {raw} bytes raw, {stored} stored");
                let result =
                    serde_json::json!({"backup": id, "records": records, "raw_bytes": raw, "stored_bytes": stored});
                Ok(Tally { records, raw_bytes: raw, stored_bytes: Some(stored), message, result: Some(result) })
            }
            JobSpec::Restore { backup, cluster, to_topic, dry_run } => {
                let ep = endpoint(cluster)?;
                let m = Manifest::load(storage.as_ref(), backup)?;
                self.update(id, |j| j.total = Some(m.records()));
                let r = bk::restore(&ep, storage, &m, to_topic, *dry_run, self.progress(id)).await?;
                let written: u64 = r.records.values().sum();
                let raw = if *dry_run { 0 } else { m.bytes().0 };
                let verb = if *dry_run { "would write" } else { "wrote" };
                let message = format!("restore of {backup} into {to_topic} {verb} {written} records");
                let records = if *dry_run { 0 } else { written };
                let result = serde_json::to_value(&r).ok();
                Ok(Tally { records, raw_bytes: raw, stored_bytes: None, message, result })
            }
            JobSpec::Migrate { from_cluster, from_topic, to_cluster, to_topic } => {
                let (src, dst) = (endpoint(from_cluster)?, endpoint(to_cluster)?);
                let route = migrate::Route {
                    id: id.to_owned(),
                    source_topic: from_topic.clone(),
                    target_topic: to_topic.clone(),
                };
                let m = migrate::run(&src, &dst, storage, &route, self.cfg.idle, self.progress(id)).await?;
                let there = migrate::fingerprint(&dst, to_topic, Duration::from_secs(2)).await?;
                let mismatched: Vec<i32> = m
                    .partitions
                    .iter()
                    .filter(|(p, s)| there.get(p).copied().unwrap_or_default() != (s.records, s.checksum))
                    .map(|(p, _)| *p)
                    .collect();
                let records = m.partitions.values().map(|p| p.records).sum();
                let bytes = m.partitions.values().map(|p| p.bytes).sum();
                if !mismatched.is_empty() {
                    return Err(bk::Error::Task(format!(
                        "migration {id}: partitions {mismatched:?} of {to_topic} do not match the source (count or checksum)"
                    )));
                }
                let message = format!("migration {id}: {records} records copied and verified in every partition");
                let result = serde_json::to_value(&m).ok();
                Ok(Tally { records, raw_bytes: bytes, stored_bytes: None, message, result })
            }
            JobSpec::Drain { cluster, group, max_lag, timeout } => {
                let ep = endpoint(cluster)?;
                let me = Arc::clone(self);
                let job = id.to_owned();
                let progress = move |l: &drain::Lag| {
                    me.update(&job, |j| {
                        j.total.get_or_insert(l.total);
                        j.done = l.total;
                    });
                };
                let every = Duration::from_secs(2).min(*timeout);
                let outcome = drain::watch(&ep, group, *max_lag, *timeout, every, &progress).await?;
                let result = serde_json::to_value(&outcome).ok();
                match outcome {
                    drain::Outcome::Drained { lag, after_ms } => Ok(Tally {
                        message: format!("group {group} drained: lag {lag} <= {max_lag} after {after_ms} ms"),
                        result,
                        ..Tally::default()
                    }),
                    drain::Outcome::TimedOut { lag, started_with } => Err(bk::Error::Task(format!(
                        "group {group} not drained within {}: lag {lag} (was {started_with}), target {max_lag}",
                        humantime::format_duration(*timeout)
                    ))),
                }
            }
        }
    }
}

fn status(s: JobStatus) -> &'static str {
    match s {
        JobStatus::Queued => "queued",
        JobStatus::Running => "running",
        JobStatus::Succeeded => "succeeded",
        JobStatus::Failed => "failed",
    }
}

/// Two jobs that must not run at once: the same backup, restore target, migration or drain.
fn same_work(a: &JobSpec, b: &JobSpec) -> bool {
    match (a, b) {
        (JobSpec::Backup { cluster: c1, topic: t1, .. }, JobSpec::Backup { cluster: c2, topic: t2, .. }) => {
            c1 == c2 && t1 == t2
        }
        (JobSpec::Restore { cluster: c1, to_topic: t1, .. }, JobSpec::Restore { cluster: c2, to_topic: t2, .. }) => {
            c1 == c2 && t1 == t2
        }
        (
            JobSpec::Migrate { to_cluster: c1, to_topic: t1, .. },
            JobSpec::Migrate { to_cluster: c2, to_topic: t2, .. },
        ) => c1 == c2 && t1 == t2,
        (JobSpec::Drain { cluster: c1, group: g1, .. }, JobSpec::Drain { cluster: c2, group: g2, .. }) => {
            c1 == c2 && g1 == g2
        }
        _ => false,
    }
}

/// One cluster's backups as the pipeline sees them (its [`BackupStore`]): the catalog read
/// from storage, with the running jobs marked, and backups started as `schedule` jobs.
#[derive(Debug)]
pub struct ClusterBackups {
    jobs: Arc<Jobs>,
    cluster: String,
}

impl ClusterBackups {
    pub fn new(jobs: Arc<Jobs>, cluster: &str) -> Self {
        Self { jobs, cluster: cluster.to_owned() }
    }
}

fn backend_error(e: impl std::fmt::Display) -> crate::backend::Error {
    crate::backend::Error::Unavailable { message: e.to_string() }
}

#[async_trait::async_trait]
impl BackupStore for ClusterBackups {
    async fn catalog(&self) -> Result<Vec<BackupEntry>, crate::backend::Error> {
        let storage = Arc::clone(self.jobs.storage());
        let manifests = tokio::task::spawn_blocking(move || Manifest::list(storage.as_ref()))
            .await
            .map_err(backend_error)?
            .map_err(backend_error)?;
        let running: Vec<Job> = self
            .jobs
            .list()
            .into_iter()
            .filter(|j| !j.finished() && matches!(&j.spec, JobSpec::Backup { cluster, .. } if *cluster == self.cluster))
            .collect();
        let mut entries: Vec<BackupEntry> = manifests
            .into_iter()
            .filter(|m| m.cluster == self.cluster)
            .map(|m| BackupEntry {
                running: running.iter().any(|j| j.id == m.id),
                records: m.records(),
                stored_bytes: m.bytes().1,
                id: m.id,
                topic: m.topic,
                created_at: m.created_at,
                completed_at: m.completed_at,
            })
            .collect();
        // A job that has not written its manifest yet is running all the same: without it, the
        // policy would find the topic without a backup and ask for another.
        let known: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        for j in running.iter().filter(|j| !known.contains(&j.id)) {
            if let JobSpec::Backup { topic, .. } = &j.spec {
                entries.push(BackupEntry {
                    id: j.id.clone(),
                    topic: topic.clone(),
                    created_at: j.submitted_at,
                    completed_at: None,
                    running: true,
                    records: 0,
                    stored_bytes: 0,
                });
            }
        }
        Ok(entries)
    }

    async fn start_backup(
        &self,
        topic: &str,
        compression: Compression,
        now: Timestamp,
    ) -> Result<String, crate::backend::Error> {
        let spec =
            JobSpec::Backup { cluster: self.cluster.clone(), topic: topic.to_owned(), compression, max_messages: None };
        self.jobs.submit(spec, "schedule", now).map_err(|e| crate::backend::Error::Rejected { message: e.to_string() })
    }

    async fn expire(&self, id: &str) -> Result<(), crate::backend::Error> {
        self.jobs.expire(id).map_err(|e| crate::backend::Error::Rejected { message: e.to_string() })
    }
}
