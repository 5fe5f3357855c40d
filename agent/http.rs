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
use crate::health::{self, HealthReport};
use crate::operations::{OperationLog, OperationRecord};

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Option<PrometheusHandle>,
    pub policies: SharedPolicies,
    /// The clusters' tasks, for requests.
    pub triggers: Triggers,
    pub operations: Arc<OperationLog>,
    /// Each cluster's latest snapshot.
    pub snapshots: SharedSnapshots,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The router; tests drive it with `tower::ServiceExt::oneshot`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/api/v1/clusters", get(clusters))
        .route("/api/v1/clusters/{name}/health", get(cluster_health))
        .route("/api/v1/clusters/{name}/scale", post(scale))
        .route("/api/v1/operations", get(operations))
        .route("/api/v1/operations/{id}", get(operation))
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
    Ok(Json(health::report(&snapshot, &s.operations.list(Some(&name)))))
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
        router(Arc::new(AppState {
            metrics: None,
            policies: Arc::new(RwLock::new(Arc::new(set))),
            triggers: Triggers::default(),
            operations: Arc::default(),
            snapshots: SharedSnapshots::default(),
        }))
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
