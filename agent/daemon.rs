//! `autopilot run`: wire the configuration into running tasks. This is the I/O edge where the
//! system clock is read and tasks are spawned.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::act::{FileJournal, Journal, KubeJournal, Shared};
use crate::agent::{self, ClusterAgent, PipelineSettings, SharedPolicies};
use crate::alertmanager;
use crate::auth::Guard;
use crate::backend::{Backends, BackupStore};
use crate::backup::jobs::{ClusterBackups, Jobs, JobsConfig};
use crate::backup::kafka::Endpoint;
use crate::backup::FsStorage;
use crate::config::{BackendKind, ClusterConfig, Config};
use crate::events::{AuditLog, Events, Sink};
use crate::http::{self, AppState};
use crate::leader::{AlwaysLeader, LeaderGate, LeaseElector};
use crate::notify::Notifier;
use crate::operations::OperationLog;
use crate::policy::PolicyStore;
use crate::recent::Recent;
use crate::scenario::{self, Driver, Scenario};
use crate::time::Timestamp;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to load policies")]
    Policy { source: crate::policy::Error },
    #[error("failed to open the journal")]
    Journal { source: crate::act::journal::Error },
    #[error("failed to open the audit log {path}")]
    Audit { path: String, source: std::io::Error },
    #[error("cluster {cluster}: simulated cluster")]
    Simulation { cluster: String, source: scenario::Error },
    #[error("cluster {cluster}: cannot set up its Prometheus, Kafka or Kubernetes client")]
    RealBackend { cluster: String, source: crate::backend::Error },
    #[error("failed to listen on {addr}")]
    Listen { addr: String, source: std::io::Error },
    #[error("Kubernetes client for leader election or the journal")]
    Leader { source: crate::backend::Error },
    #[error("failed to install the metrics recorder: {message}")]
    Metrics { message: String },
    #[error("API security (api.auth)")]
    Security { source: crate::auth::SetupError },
    #[error("API TLS (api.tls)")]
    Tls { source: crate::tls::Error },
}

fn simulated(cluster: &ClusterConfig) -> Result<Driver, Error> {
    let err = |source| Error::Simulation { cluster: cluster.name.clone(), source };
    let mut s = match &cluster.simulation {
        Some(path) => Scenario::load(path).map_err(err)?,
        None => Scenario::parse(scenario::DEMO, "built-in demo").map_err(err)?,
    };
    s.cluster.name.clone_from(&cluster.name);
    s.cluster.namespace.clone_from(&cluster.namespace);
    s.cluster.node_pool.clone_from(&cluster.node_pool);
    Driver::new(&s, Timestamp::now())
        .map_err(|message| err(scenario::Error::Invalid { path: cluster.name.clone(), message }))
}

/// Run the agent until `cancel` fires (SIGTERM or Ctrl-C in `main`).
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), Error> {
    let handle = crate::telemetry::install().map_err(|e| Error::Metrics { message: e.to_string() })?;
    let Config {
        region,
        interval,
        policy,
        dry_run,
        limits,
        listen,
        journal_path,
        audit_log,
        leader_election,
        kubernetes_journal,
        notifications,
        api,
        alertmanager,
        backups,
        clusters,
    } = config;
    let jobs = backups.as_ref().map(|b| {
        let endpoints = clusters
            .iter()
            .filter(|c| !c.bootstrap_servers.is_empty())
            .map(|c| (c.name.clone(), Endpoint::of(c)))
            .collect();
        Jobs::new(JobsConfig {
            storage: Arc::new(FsStorage::new(&b.dir)),
            concurrency: b.concurrency,
            idle: b.idle_timeout,
            endpoints,
        })
    });
    let mut store =
        PolicyStore::open(&policy.dir, None, policy.eval_timeout).map_err(|source| Error::Policy { source })?;
    let policies: SharedPolicies = Arc::new(RwLock::new(store.current()));
    let journal: Arc<dyn Journal> = match &kubernetes_journal {
        Some(k) => {
            let client =
                crate::backend::kube::client(&k.kubernetes).await.map_err(|source| Error::Leader { source })?;
            Arc::new(KubeJournal::new(client, &k.namespace, &region))
        }
        None => Arc::new(FileJournal::open(&journal_path).map_err(|source| Error::Journal { source })?),
    };
    let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
    if let Some(path) = &audit_log {
        let audit = AuditLog::open(path).map_err(|source| Error::Audit { path: path.display().to_string(), source })?;
        sinks.push(Arc::new(audit));
    }
    let operations = Arc::new(OperationLog::default());
    sinks.push(operations.clone());
    let recent = Arc::new(Recent::default());
    sinks.push(recent.clone());
    let mut tasks = JoinSet::new();
    if !notifications.is_empty() {
        let (notifier, post) = Notifier::new(notifications);
        sinks.push(Arc::new(notifier));
        let stop = cancel.clone();
        // The poster waits for notifications as long as anything can emit one; at shutdown it
        // gets a few seconds to deliver what is queued, then stops (the agent must exit).
        tasks.spawn(async move {
            tokio::pin!(post);
            tokio::select! {
                () = &mut post => {}
                () = stop.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_secs(3), post).await;
                }
            }
        });
    }
    let events = Events::new(sinks);
    // Events and the Lease name this agent instance: the pod name in Kubernetes, else the host.
    let instance = std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).ok();
    let leader: Arc<dyn LeaderGate> = match &leader_election {
        None => Arc::new(AlwaysLeader),
        Some(l) => {
            let client =
                crate::backend::kube::client(&l.kubernetes).await.map_err(|source| Error::Leader { source })?;
            let identity = instance.clone().unwrap_or_else(|| format!("kafka-autopilot-{}", std::process::id()));
            let elector = LeaseElector::new(client, &l.namespace, &l.lease, &identity, l.duration);
            tasks.spawn(elector.clone().run(cancel.clone()));
            Arc::new(elector)
        }
    };
    let shared = Shared::with_leader(limits.clone(), dry_run, journal, leader);
    let names: Vec<String> = clusters.iter().map(|c| c.name.clone()).collect();
    let (triggers, mut receivers) = agent::trigger_channels(&names);
    let snapshots = agent::SharedSnapshots::default();
    for cluster in &clusters {
        let backends: Backends = match cluster.backend {
            BackendKind::Real => {
                let mut b = crate::backend::real(cluster, instance.clone())
                    .await
                    .map_err(|source| Error::RealBackend { cluster: cluster.name.clone(), source })?;
                b.backups = jobs
                    .as_ref()
                    .map(|j| Arc::new(ClusterBackups::new(Arc::clone(j), &cluster.name)) as Arc<dyn BackupStore>);
                b
            }
            BackendKind::Simulated => {
                let driver = simulated(cluster)?;
                let backends = driver.backend().backends();
                tasks.spawn(drive_simulation(
                    driver,
                    cluster.name.clone(),
                    triggers.clone(),
                    events.clone(),
                    cancel.clone(),
                ));
                backends
            }
        };
        let settings = PipelineSettings {
            broker_quota: cluster.broker_quota,
            cost_per_broker_hour: cluster.cost_per_broker_hour,
            ..PipelineSettings::new(&region, dry_run, limits.clone())
        };
        let mut pipeline = ClusterAgent::new(&cluster.name, settings, backends, shared.clone(), events.clone())
            .await
            .map_err(|source| Error::Journal { source })?;
        pipeline.publish_to(snapshots.clone());
        pipeline.sample_trends_to(recent.clone());
        let Some(rx) = receivers.remove(&cluster.name) else {
            continue;
        };
        tasks.spawn(agent::run_cluster(pipeline, policies.clone(), interval, rx, cancel.clone()));
    }
    let reload = {
        let (policies, events, cancel) = (policies.clone(), events.clone(), cancel.clone());
        let check = policy.reload_interval;
        async move {
            let mut every = tokio::time::interval(check);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = every.tick() => agent::reload_policies(&mut store, &policies, &events, Timestamp::now()),
                }
            }
        }
    };
    tasks.spawn(reload);
    let guard = Guard::new(&api, events.clone()).map_err(|source| Error::Security { source })?;
    if !guard.requires_tokens() && !listen.ip().is_loopback() {
        tracing::warn!(%listen, "the API takes no tokens (api.auth.jwt is not set) and listens beyond loopback");
    }
    let tls = api.tls.as_ref().map(crate::tls::acceptor).transpose().map_err(|source| Error::Tls { source })?;
    let keys = clusters
        .iter()
        .map(|c| alertmanager::ClusterKey {
            name: c.name.clone(),
            kafka: c.kafka.clone(),
            namespace: c.namespace.clone(),
        })
        .collect();
    let alerts = Arc::new(alertmanager::Router::new(alertmanager, keys));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Listen { addr: listen.to_string(), source })?;
    tracing::info!(%listen, region = %region, clusters = names.len(), dry_run, tls = tls.is_some(), "agent running");
    let state =
        AppState { guard, recent, alerts, metrics: Some(handle), policies, triggers, operations, snapshots, jobs };
    let app = http::router(Arc::new(state));
    tasks.spawn(crate::tls::serve(listener, app, tls, cancel.clone()));
    while tasks.join_next().await.is_some() {}
    tracing::info!("agent stopped");
    Ok(())
}

/// Keep a simulated cluster in step with the wall clock; its timeline's operator requests go
/// to the cluster's task like the API's.
async fn drive_simulation(
    mut driver: Driver,
    cluster: String,
    triggers: agent::Triggers,
    events: Events,
    cancel: CancellationToken,
) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = every.tick() => {
                for request in driver.advance_to(Timestamp::now(), &events) {
                    let (triggers, cluster) = (triggers.clone(), cluster.clone());
                    tokio::spawn(async move { triggers.scale(&cluster, request, "simulation").await });
                }
            }
        }
    }
}
