//! The agent's HTTP endpoints: `/metrics`, `/healthz`, `/readyz`. Handlers only read state.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::agent::SharedPolicies;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Option<PrometheusHandle>,
    pub policies: SharedPolicies,
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
        .with_state(state)
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
        router(Arc::new(AppState { metrics: None, policies: Arc::new(RwLock::new(Arc::new(set))) }))
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
}
