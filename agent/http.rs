//! The agent's HTTP endpoints: `/metrics`, `/healthz`, `/readyz`, the health API
//! (`GET /api/v1/clusters`, `GET /api/v1/clusters/{name}/health`) and the operations API
//! (`POST /api/v1/clusters/{name}/scale`, `GET /api/v1/operations[/{id}]`). Handlers read state
//! or hand a request to the cluster's task; they never act themselves.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};

use crate::agent::{ScaleRequest, SharedPolicies, SharedSnapshots, Triggers};
use crate::alertmanager;
use crate::auth::Guard;
use crate::backup::jobs::{Job, JobSpec, Jobs, Refused};
use crate::backup::{Compression, Manifest};
use crate::config::AlertmanagerConfig;
use crate::health::{self, HealthReport};
use crate::operations::{OperationLog, OperationRecord};
use crate::recent::Recent;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    /// Authentication, rate limits and the audit of changes.
    pub guard: Arc<Guard>,
    /// Recent events and trends of every cluster.
    pub recent: Arc<Recent>,
    /// Maps Alertmanager's alerts to clusters and remembers which were seen.
    pub alerts: Arc<alertmanager::Router>,
    pub metrics: Option<PrometheusHandle>,
    pub policies: SharedPolicies,
    /// The clusters' tasks, for requests.
    pub triggers: Triggers,
    pub operations: Arc<OperationLog>,
    /// Each cluster's latest snapshot.
    pub snapshots: SharedSnapshots,
    /// Backup, restore, migration and drain jobs; none when `backups` is not configured.
    pub jobs: Option<Arc<Jobs>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// An open API (no tokens, no limits) with nothing but policies and clusters' tasks: for
    /// tests and benchmarks; the daemon fills in the rest.
    pub fn basic(policies: SharedPolicies, triggers: Triggers) -> Self {
        let clusters = triggers
            .clusters()
            .map(|c| alertmanager::ClusterKey { name: c.to_owned(), kafka: c.to_owned(), namespace: "kafka".into() })
            .collect();
        let labels =
            AlertmanagerConfig { kafka_label: "strimzi_io_cluster".into(), namespace_label: Some("namespace".into()) };
        Self {
            guard: Guard::open(crate::events::Events::default()),
            recent: Arc::default(),
            alerts: Arc::new(alertmanager::Router::new(labels, clusters)),
            metrics: None,
            policies,
            triggers,
            operations: Arc::default(),
            snapshots: SharedSnapshots::default(),
            jobs: None,
        }
    }
}

/// Every route: method and path, as the OpenAPI document lists them.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/metrics"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/clusters"),
    ("get", "/api/v1/clusters/{name}/health"),
    ("post", "/api/v1/clusters/{name}/scale"),
    ("get", "/api/v1/operations"),
    ("get", "/api/v1/operations/{id}"),
    ("get", "/api/v1/decisions"),
    ("post", "/api/v1/alertmanager"),
    ("post", "/api/v1/clusters/{name}/backups"),
    ("get", "/api/v1/backups"),
    ("get", "/api/v1/backups/{id}"),
    ("post", "/api/v1/backups/{id}/restore"),
    ("post", "/api/v1/migrations"),
    ("post", "/api/v1/clusters/{name}/drain"),
    ("get", "/api/v1/jobs"),
    ("get", "/api/v1/jobs/{id}"),
];

/// The router; tests drive it with `tower::ServiceExt::oneshot`.
pub fn router(state: Arc<AppState>) -> Router {
    let guard = Arc::clone(&state.guard);
    Router::new()
        .route("/api/v1/openapi.json", get(|| async { Json(crate::openapi::document()) }))
        .route("/api/v1/decisions", get(decisions))
        .route("/api/v1/alertmanager", post(alertmanager_webhook))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/api/v1/clusters", get(clusters))
        .route("/api/v1/clusters/{name}/health", get(cluster_health))
        .route("/api/v1/clusters/{name}/scale", post(scale))
        .route("/api/v1/operations", get(operations))
        .route("/api/v1/operations/{id}", get(operation))
        .route("/api/v1/clusters/{name}/backups", post(backup))
        .route("/api/v1/backups", get(backups))
        .route("/api/v1/backups/{id}", get(backup_manifest))
        .route("/api/v1/backups/{id}/restore", post(restore))
        .route("/api/v1/migrations", post(migration))
        .route("/api/v1/clusters/{name}/drain", post(drain))
        .route("/api/v1/jobs", get(jobs))
        .route("/api/v1/jobs/{id}", get(job))
        .layer(axum::middleware::from_fn_with_state(guard, crate::auth::guard))
        .with_state(state)
}

/// An API error: a status and a message meant for the caller, as `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({"error": self.message}))).into_response()
    }
}

async fn metrics(State(s): State<Arc<AppState>>) -> (StatusCode, String) {
    match &s.metrics {
        Some(h) => (StatusCode::OK, h.render()),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed\n".into()),
    }
}

async fn ready(State(s): State<Arc<AppState>>) -> (StatusCode, String) {
    match s.policies.read() {
        Ok(p) => (StatusCode::OK, format!("policies: {}\n", p.packages().join(", "))),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "policy state poisoned\n".into()),
    }
}

/// Body of `POST /api/v1/clusters/{name}/scale`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    desired_brokers: u32,
    #[serde(default)]
    drain_timeout: Option<String>,
}

/// Answer to an accepted request.
#[derive(Debug, Serialize, Deserialize)]
pub struct Accepted {
    pub operation: String,
    /// Where to follow it.
    pub status_url: String,
}

fn parse_scale(body: &[u8]) -> Result<ScaleRequest, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let body: ScaleBody = serde_json::from_slice(body).map_err(|e| bad(format!("invalid request body: {e}")))?;
    let drain_timeout = body
        .drain_timeout
        .map(|t| humantime::parse_duration(&t).map_err(|e| bad(format!("drain_timeout {t:?} is not a duration: {e}"))))
        .transpose()?;
    if drain_timeout.is_some_and(|d: Duration| d.is_zero()) {
        return Err(bad("drain_timeout must be greater than zero".into()));
    }
    Ok(ScaleRequest { to: body.desired_brokers, drain_timeout })
}

async fn scale(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let request = parse_scale(&body)?;
    match s.triggers.scale(&name, request, "api").await {
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no cluster named {name:?}"))),
        Some(Err(why)) => Err(ApiError::new(StatusCode::CONFLICT, format!("scaling {name} refused: {why}"))),
        Some(Ok(operation)) => {
            let status_url = format!("/api/v1/operations/{operation}");
            Ok((StatusCode::ACCEPTED, Json(Accepted { operation, status_url })))
        }
    }
}

/// One line per cluster: its status and when it was last seen.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterLine {
    pub name: String,
    /// None until the cluster's first tick.
    pub status: Option<health::Status>,
    pub at: Option<crate::time::Timestamp>,
}

async fn clusters(State(s): State<Arc<AppState>>) -> Json<Vec<ClusterLine>> {
    let snapshots = s.snapshots.read().map(|m| m.clone()).unwrap_or_default();
    let lines = s
        .triggers
        .clusters()
        .map(|name| {
            let snap = snapshots.get(name);
            ClusterLine {
                name: name.to_owned(),
                status: snap.map(|x| health::report(x, &[]).status),
                at: snap.map(|x| x.at),
            }
        })
        .collect();
    Json(lines)
}

async fn cluster_health(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<HealthReport>, ApiError> {
    if !s.triggers.clusters().any(|c| c == name) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no cluster named {name:?}")));
    }
    let snapshot = s.snapshots.read().ok().and_then(|m| m.get(&name).cloned());
    let snapshot = snapshot.ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("cluster {name} has not been observed yet"))
    })?;
    let mut report = health::report(&snapshot, &s.operations.list(Some(&name)));
    report.recent_events = s.recent.events(&name, RECENT_EVENTS);
    report.trends = s.recent.trends(&name);
    Ok(Json(report))
}

/// Events listed in a health report.
const RECENT_EVENTS: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionsQuery {
    cluster: Option<String>,
    limit: Option<usize>,
}

/// What the policies decided and why, and what came of it (deferred and why, actions,
/// outcomes), newest first.
async fn decisions(State(s): State<Arc<AppState>>, Query(q): Query<DecisionsQuery>) -> Json<Vec<crate::events::Event>> {
    Json(s.recent.decisions(q.cluster.as_deref(), q.limit.unwrap_or(100).min(1000)))
}

/// What the webhook did with a payload.
#[derive(Debug, Serialize, Deserialize)]
pub struct WebhookAnswer {
    /// Clusters whose evaluation was queued now.
    pub triggered: Vec<String>,
    /// Clusters with an evaluation already queued (it covers these alerts).
    pub already_queued: Vec<String>,
    pub duplicates: usize,
    pub unmatched: usize,
}

/// `POST /api/v1/alertmanager`: queue an evaluation of each cluster with new alert states.
async fn alertmanager_webhook(State(s): State<Arc<AppState>>, body: Bytes) -> Result<Json<WebhookAnswer>, ApiError> {
    let payload = alertmanager::parse(&body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let routed = s.alerts.route(&payload, crate::time::Timestamp::now());
    let mut answer = WebhookAnswer {
        triggered: Vec::new(),
        already_queued: Vec::new(),
        duplicates: routed.duplicates,
        unmatched: routed.unmatched,
    };
    for (cluster, alerts) in routed.triggered {
        let names: Vec<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
        tracing::info!(cluster = %cluster, alerts = ?names, "alerts received: evaluating now");
        if s.triggers.trigger(&cluster, crate::agent::Trigger { alerts }) {
            answer.triggered.push(cluster);
        } else {
            answer.already_queued.push(cluster);
        }
    }
    for (result, n) in [("duplicate", answer.duplicates), ("unmatched", answer.unmatched)] {
        metrics::counter!(crate::telemetry::ALERTS, "result" => result).increment(n as u64);
    }
    metrics::counter!(crate::telemetry::ALERTS, "result" => "triggered").increment(answer.triggered.len() as u64);
    Ok(Json(answer))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    cluster: Option<String>,
}

async fn operations(State(s): State<Arc<AppState>>, Query(q): Query<ListQuery>) -> Json<Vec<OperationRecord>> {
    Json(s.operations.list(q.cluster.as_deref()))
}

async fn operation(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<OperationRecord>, ApiError> {
    s.operations.get(&id).map(Json).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no operation {id:?}")))
}

// ---------------------------------------------------------------------------------------------
// Jobs: backups, restores, migrations, drains.

/// Answer to an accepted job.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobAccepted {
    pub job: String,
    /// Where to follow it.
    pub status_url: String,
}

fn jobs_of(s: &AppState) -> Result<&Arc<Jobs>, ApiError> {
    s.jobs.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backups are not configured: set backups.dir in the agent config",
        )
    })
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid request body: {e}")))
}

fn submit(s: &AppState, spec: JobSpec) -> Result<(StatusCode, Json<JobAccepted>), ApiError> {
    let jobs = jobs_of(s)?;
    match jobs.submit(spec, "api", crate::time::Timestamp::now()) {
        Ok(job) => {
            let status_url = format!("/api/v1/jobs/{job}");
            Ok((StatusCode::ACCEPTED, Json(JobAccepted { job, status_url })))
        }
        Err(e @ Refused::NotFound(_)) => Err(ApiError::new(StatusCode::NOT_FOUND, e.to_string())),
        Err(e @ Refused::Invalid(_)) => Err(ApiError::new(StatusCode::BAD_REQUEST, e.to_string())),
        Err(e @ Refused::Conflict(_)) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
    }
}

/// Body of `POST /api/v1/clusters/{name}/backups`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    topic: String,
    #[serde(default)]
    compression: Compression,
    #[serde(default)]
    max_messages: Option<u64>,
}

async fn backup(
    State(s): State<Arc<AppState>>,
    Path(cluster): Path<String>,
    bytes: Bytes,
) -> Result<(StatusCode, Json<JobAccepted>), ApiError> {
    let BackupBody { topic, compression, max_messages } = body(&bytes)?;
    submit(&s, JobSpec::Backup { cluster, topic, compression, max_messages })
}

/// A backup as listed: its manifest without the segment list.
#[derive(Debug, Serialize, Deserialize)]
pub struct BackupLine {
    pub id: String,
    pub cluster: String,
    pub topic: String,
    pub created_at: crate::time::Timestamp,
    pub completed_at: Option<crate::time::Timestamp>,
    pub compression: Compression,
    pub partitions: usize,
    pub records: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
}

fn line(m: &Manifest) -> BackupLine {
    let (raw_bytes, stored_bytes) = m.bytes();
    BackupLine {
        id: m.id.clone(),
        cluster: m.cluster.clone(),
        topic: m.topic.clone(),
        created_at: m.created_at,
        completed_at: m.completed_at,
        compression: m.compression,
        partitions: m.partitions.len(),
        records: m.records(),
        raw_bytes,
        stored_bytes,
    }
}

async fn backups(State(s): State<Arc<AppState>>) -> Result<Json<Vec<BackupLine>>, ApiError> {
    let storage = Arc::clone(jobs_of(&s)?.storage());
    let list = tokio::task::spawn_blocking(move || Manifest::list(storage.as_ref()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{:#}", anyhow::Error::new(e))))?;
    Ok(Json(list.iter().map(line).collect()))
}

/// A backup's manifest from storage (off the async threads); 404 naming what is wrong.
async fn load_manifest(s: &AppState, id: &str) -> Result<Manifest, ApiError> {
    let (storage, id) = (Arc::clone(jobs_of(s)?.storage()), id.to_owned());
    tokio::task::spawn_blocking(move || Manifest::load(storage.as_ref(), &id))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, format!("{:#}", anyhow::Error::new(e))))
}

async fn backup_manifest(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Manifest>, ApiError> {
    load_manifest(&s, &id).await.map(Json)
}

/// Body of `POST /api/v1/backups/{id}/restore`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    to_topic: String,
    /// Default: the cluster the backup was taken from.
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

async fn restore(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<(StatusCode, Json<JobAccepted>), ApiError> {
    let RestoreBody { to_topic, cluster, dry_run } = body(&bytes)?;
    let cluster = match cluster {
        Some(c) => c,
        None => load_manifest(&s, &id).await?.cluster,
    };
    submit(&s, JobSpec::Restore { backup: id, cluster, to_topic, dry_run })
}

/// Body of `POST /api/v1/migrations`: `CLUSTER/TOPIC` on each side.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrationBody {
    from: String,
    to: String,
}

fn place(what: &str, spec: &str) -> Result<(String, String), ApiError> {
    spec.split_once('/')
        .map(|(c, t)| (c.to_owned(), t.to_owned()))
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("{what} {spec:?} is not CLUSTER/TOPIC")))
}

async fn migration(State(s): State<Arc<AppState>>, bytes: Bytes) -> Result<(StatusCode, Json<JobAccepted>), ApiError> {
    let MigrationBody { from, to } = body(&bytes)?;
    let ((from_cluster, from_topic), (to_cluster, to_topic)) = (place("from", &from)?, place("to", &to)?);
    submit(&s, JobSpec::Migrate { from_cluster, from_topic, to_cluster, to_topic })
}

/// Body of `POST /api/v1/clusters/{name}/drain`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainBody {
    group: String,
    #[serde(default)]
    max_lag: u64,
    timeout: String,
}

async fn drain(
    State(s): State<Arc<AppState>>,
    Path(cluster): Path<String>,
    bytes: Bytes,
) -> Result<(StatusCode, Json<JobAccepted>), ApiError> {
    let DrainBody { group, max_lag, timeout } = body(&bytes)?;
    let timeout = humantime::parse_duration(&timeout)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("timeout {timeout:?} is not a duration: {e}")))?;
    submit(&s, JobSpec::Drain { cluster, group, max_lag, timeout })
}

async fn jobs(State(s): State<Arc<AppState>>) -> Result<Json<Vec<Job>>, ApiError> {
    Ok(Json(jobs_of(&s)?.list()))
}

async fn job(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    jobs_of(&s)?.get(&id).map(Json).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no job {id:?}")))
}

#[cfg(test)]
mod tests {
    use std::sync::RwLock;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::policy::PolicySet;

    fn app() -> Router {
        let set = PolicySet::embedded(None, Duration::from_secs(1)).unwrap();
        router(Arc::new(AppState::basic(Arc::new(RwLock::new(Arc::new(set))), Triggers::default())))
    }

    async fn get(path: &str) -> (StatusCode, String) {
        let response = app().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn health_and_readiness() {
        assert_eq!(get("/healthz").await, (StatusCode::OK, "ok".into()));
        let (status, body) = get("/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("data.kafka.autopilot.scaling"), "{body}");
        assert_eq!(get("/metrics").await.0, StatusCode::NOT_FOUND, "no recorder installed in this test");
        assert_eq!(get("/nope").await.0, StatusCode::NOT_FOUND);
    }

    async fn post(path: &str, body: &str) -> (StatusCode, String) {
        let request = Request::post(path).body(Body::from(body.to_owned())).unwrap();
        let response = app().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn scale_requests_are_validated_before_reaching_a_cluster() {
        let (status, body) = post("/api/v1/clusters/c/scale", r#"{"desired":8}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("unknown field `desired`"), "{body}");
        let (status, body) = post("/api/v1/clusters/c/scale", r#"{"desired_brokers":8,"drain_timeout":"soon"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("drain_timeout \\\"soon\\\" is not a duration"), "{body}");
        let (status, body) = post("/api/v1/clusters/c/scale", "not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, body) = post("/api/v1/clusters/c/scale", r#"{"desired_brokers":8,"drain_timeout":"300s"}"#).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, r#"{"error":"no cluster named \"c\""}"#);
        assert_eq!(get("/api/v1/operations").await, (StatusCode::OK, "[]".into()));
    }
}
