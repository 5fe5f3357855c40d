//! Who may call the API, how often, and the audit of every call that changes something.
//!
//! - `/api/v1/*` takes bearer tokens (JWT, verified with `jsonwebtoken`): `viewer` may read,
//!   `operator` may also ask for changes. Without `api.auth.jwt` the API is open (the agent
//!   warns unless it listens on loopback).
//! - The Alertmanager webhook has its own credential (`api.auth.webhook_token_file`).
//! - `/metrics`, `/healthz`, `/readyz` and `/api/v1/openapi.json` are open.
//! - Every client (token subject, else address) has a rate limit (governor); over it, 429.
//! - Every request that is not a read is written to the audit trail with its caller and answer.
//!
//! Tokens and secrets are never logged: failures say what was wrong, not what was sent.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::{ApiConfig, JwtAlgorithm, JwtConfig};
use crate::events::{Body, Event, Events};
use crate::time::Timestamp;

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
}

/// An authenticated (or anonymous) caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Token subject, `alertmanager`, or the client address when unauthenticated.
    pub id: String,
    pub roles: Vec<Role>,
}

/// Verifies bearer tokens.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    roles_claim: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier").field("roles_claim", &self.roles_claim).finish_non_exhaustive()
    }
}

/// Why the API security could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read {what} {path}")]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{what} {path} is not a usable key: {message}")]
    Key { what: &'static str, path: PathBuf, message: String },
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|source| SetupError::Read { what, path: path.to_owned(), source })
}

impl JwtVerifier {
    pub fn new(cfg: &JwtConfig) -> Result<Self, SetupError> {
        let bytes = read("api.auth.jwt.key_file", &cfg.key_file)?;
        let bad =
            |message: String| SetupError::Key { what: "api.auth.jwt.key_file", path: cfg.key_file.clone(), message };
        let (key, algorithm) = match cfg.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = String::from_utf8_lossy(&bytes).trim().as_bytes().to_vec();
                if secret.len() < 32 {
                    return Err(bad("an HS256 secret needs at least 32 bytes".into()));
                }
                (DecodingKey::from_secret(&secret), Algorithm::HS256)
            }
            JwtAlgorithm::RS256 => {
                (DecodingKey::from_rsa_pem(&bytes).map_err(|e| bad(e.to_string()))?, Algorithm::RS256)
            }
            JwtAlgorithm::ES256 => {
                (DecodingKey::from_ec_pem(&bytes).map_err(|e| bad(e.to_string()))?, Algorithm::ES256)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        match &cfg.issuer {
            Some(i) => validation.set_issuer(&[i]),
            None => validation.iss = None,
        }
        match &cfg.audience {
            Some(a) => validation.set_audience(&[a]),
            None => validation.validate_aud = false,
        }
        Ok(Self { key, validation, roles_claim: cfg.roles_claim.clone() })
    }

    /// The caller a token names, or why it is not accepted.
    pub fn verify(&self, token: &str) -> Result<Caller, String> {
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &self.key, &self.validation)
                .map_err(|e| format!("invalid token: {}", describe(&e)))?;
        let claims = data.claims;
        let id = claims.get("sub").and_then(|s| s.as_str()).unwrap_or_default().to_owned();
        let names: Vec<String> = match claims.get(&self.roles_claim) {
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            Some(serde_json::Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let roles = names
            .iter()
            .filter_map(|n| match n.as_str() {
                "viewer" => Some(Role::Viewer),
                "operator" => Some(Role::Operator),
                _ => None,
            })
            .collect();
        Ok(Caller { id, roles })
    }
}

/// A token error in words, without the token.
fn describe(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "expired",
        K::InvalidSignature => "bad signature",
        K::InvalidIssuer => "wrong issuer",
        K::InvalidAudience => "wrong audience",
        K::InvalidAlgorithm => "wrong algorithm",
        K::MissingRequiredClaim(_) => "a required claim (exp, sub) is missing",
        K::ImmatureSignature => "not valid yet",
        _ => "malformed",
    }
}

/// The API's security: token verification, the webhook credential, rate limits, audit.
pub struct Guard {
    jwt: Option<JwtVerifier>,
    webhook_token_file: Option<PathBuf>,
    limiter: DefaultKeyedRateLimiter<String>,
    events: Events,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("jwt", &self.jwt).finish_non_exhaustive()
    }
}

impl Guard {
    /// From the config; an unreadable or unusable key stops the agent at start.
    pub fn new(cfg: &ApiConfig, events: Events) -> Result<Arc<Self>, SetupError> {
        let jwt = cfg.jwt.as_ref().map(JwtVerifier::new).transpose()?;
        if let Some(path) = &cfg.webhook_token_file {
            let token = read("api.auth.webhook_token_file", path)?;
            if String::from_utf8_lossy(&token).trim().len() < 16 {
                return Err(SetupError::Key {
                    what: "api.auth.webhook_token_file",
                    path: path.clone(),
                    message: "the webhook token needs at least 16 characters".into(),
                });
            }
        }
        let per_second = NonZeroU32::new(cfg.rate_limit.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(cfg.rate_limit.burst).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst));
        Ok(Arc::new(Self { jwt, webhook_token_file: cfg.webhook_token_file.clone(), limiter, events }))
    }

    /// Open API, no limits worth mentioning (tests, loopback use).
    pub fn open(events: Events) -> Arc<Self> {
        let limiter = RateLimiter::keyed(Quota::per_second(NonZeroU32::MAX));
        Arc::new(Self { jwt: None, webhook_token_file: None, limiter, events })
    }

    /// Whether tokens are required.
    pub fn requires_tokens(&self) -> bool {
        self.jwt.is_some()
    }

    fn webhook_token_matches(&self, presented: &str) -> Result<bool, String> {
        let Some(path) = &self.webhook_token_file else { return Ok(false) };
        // Read on each call, so a rotated Secret takes effect without a restart.
        let expected = std::fs::read(path).map_err(|e| format!("webhook token file unreadable: {e}"))?;
        let expected = String::from_utf8_lossy(&expected);
        Ok(constant_time_eq(expected.trim().as_bytes(), presented.as_bytes()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn deny(status: StatusCode, message: &str) -> Response {
    let mut r = (status, Json(serde_json::json!({"error": message}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    r
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The cluster a path names (`/api/v1/clusters/{name}/...`), for the audit trail.
fn cluster_in(path: &str) -> String {
    path.strip_prefix("/api/v1/clusters/").and_then(|r| r.split('/').next()).unwrap_or_default().to_owned()
}

/// The middleware: authenticate, authorise, rate-limit, call, audit.
pub async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let open = !path.starts_with("/api/v1/") || path == "/api/v1/openapi.json";
    if open {
        return next.run(req).await;
    }
    let address = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    let anonymous = || Caller { id: address.clone().unwrap_or_else(|| "unknown".into()), roles: vec![Role::Operator] };
    let webhook = path == "/api/v1/alertmanager";
    let caller = match (webhook, bearer(&req)) {
        (true, Some(token)) if g.webhook_token_file.is_some() => match g.webhook_token_matches(token) {
            Ok(true) => Caller { id: "alertmanager".into(), roles: vec![Role::Operator] },
            Ok(false) => return deny(StatusCode::UNAUTHORIZED, "the webhook token is not the configured one"),
            Err(e) => {
                tracing::error!(error = %e, "webhook credential unavailable");
                return deny(StatusCode::SERVICE_UNAVAILABLE, "the webhook credential cannot be read");
            }
        },
        (true, None) if g.webhook_token_file.is_some() => {
            return deny(StatusCode::UNAUTHORIZED, "the webhook needs its bearer token")
        }
        (_, token) => match (&g.jwt, token) {
            (None, _) => anonymous(),
            (Some(_), None) => return deny(StatusCode::UNAUTHORIZED, "a bearer token is required"),
            (Some(v), Some(t)) => match v.verify(t) {
                Ok(c) => c,
                Err(why) => return deny(StatusCode::UNAUTHORIZED, &why),
            },
        },
    };
    let mutating = req.method() != Method::GET && req.method() != Method::HEAD;
    let needed = if mutating { Role::Operator } else { Role::Viewer };
    if !caller.roles.iter().any(|r| *r >= needed) {
        let what = if mutating { "the operator role" } else { "the viewer or operator role" };
        return deny(StatusCode::FORBIDDEN, &format!("{} lacks {what}", caller.id));
    }
    if g.limiter.check_key(&caller.id).is_err() {
        let mut r = deny(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded; slow down");
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    }
    let method = req.method().to_string();
    let response = next.run(req).await;
    if mutating {
        let body = Body::ApiCall { method, path: path.clone(), caller: caller.id, status: response.status().as_u16() };
        g.events.emit(Event { at: Timestamp::now(), cluster: cluster_in(&path), body });
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn clusters_named_in_paths() {
        assert_eq!(cluster_in("/api/v1/clusters/eu-1/scale"), "eu-1");
        assert_eq!(cluster_in("/api/v1/migrations"), "");
    }
}
