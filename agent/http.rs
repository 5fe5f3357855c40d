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
