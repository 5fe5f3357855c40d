//! The API's security, on the real router served over loopback: bearer tokens (JWT) with the
//! viewer and operator roles, the webhook's own credential, the per-client rate limit, the
//! audit of every change, and HTTPS with mutual TLS (certificates made with openssl).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use autopilot::auth::Guard;
use autopilot::config::{ApiConfig, JwtAlgorithm, JwtConfig, RateLimit, TlsConfig};
use autopilot::events::{Body, Events, Recorder};
use autopilot::http::{router, AppState};
use autopilot::policy::PolicySet;
use jsonwebtoken::{encode, EncodingKey, Header};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

fn token(sub: &str, roles: &[&str], expires_in: i64, secret: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = serde_json::json!({"sub": sub, "roles": roles, "exp": now + expires_in, "iss": "tests"});
    encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

struct Served {
    url: String,
    audit: Arc<Recorder>,
    cancel: CancellationToken,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn serve(dir: &Path, rate: RateLimit, tls: Option<TlsConfig>) -> Served {
    std::fs::write(dir.join("jwt.key"), SECRET).unwrap();
    std::fs::write(dir.join("webhook.token"), "webhook-token-0123456789\n").unwrap();
    let api = ApiConfig {
        jwt: Some(JwtConfig {
            algorithm: JwtAlgorithm::HS256,
            key_file: dir.join("jwt.key"),
            issuer: Some("tests".into()),
            audience: None,
            roles_claim: "roles".into(),
        }),
        webhook_token_file: Some(dir.join("webhook.token")),
        tls: tls.clone(),
        rate_limit: rate,
    };
    let audit = Arc::new(Recorder::default());
    let guard = Guard::new(&api, Events::new(vec![audit.clone()])).unwrap();
    let policies = Arc::new(RwLock::new(Arc::new(PolicySet::embedded(None, Duration::from_secs(1)).unwrap())));
    let (triggers, _inboxes) = autopilot::agent::trigger_channels(&["eu-1".to_owned()]);
    let state = AppState { guard, ..AppState::basic(policies, triggers) };
    std::mem::forget(_inboxes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let acceptor = tls.as_ref().map(|t| autopilot::tls::acceptor(t).unwrap());
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let cancel = CancellationToken::new();
    tokio::spawn(autopilot::tls::serve(listener, router(Arc::new(state)), acceptor, cancel.clone()));
    Served { url: format!("{scheme}://localhost:{}", addr.port()), audit, cancel }
}

async fn call(method: reqwest::Method, url: &str, bearer: Option<&str>, body: &str) -> (u16, String) {
    let c = reqwest::Client::new();
    let mut r = c.request(method, url).header("content-type", "application/json").body(body.to_owned());
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_roles_the_webhook_credential_and_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), RateLimit { per_second: 100, burst: 100 }, None).await;
    let get = |path: &str, t: Option<String>| {
        let url = format!("{}{path}", s.url);
        async move { call(reqwest::Method::GET, &url, t.as_deref(), "").await }
    };
    let post = |path: &str, t: Option<String>, body: &'static str| {
        let url = format!("{}{path}", s.url);
        async move { call(reqwest::Method::POST, &url, t.as_deref(), body).await }
    };
    let viewer = token("alice", &["viewer"], 600, SECRET);
    let operator = token("bob", &["operator"], 600, SECRET);

    // Open: metrics path, probes and the OpenAPI document.
    assert_eq!(get("/healthz", None).await.0, 200);
    let (status, doc) = get("/api/v1/openapi.json", None).await;
    assert!(status == 200 && doc.contains("\"openapi\":\"3.1.0\""), "{doc}");

    // Reads need a token with a role; changes need the operator role.
    let (status, body) = get("/api/v1/clusters", None).await;
    assert_eq!((status, body.contains("a bearer token is required")), (401, true), "{body}");
    assert_eq!(get("/api/v1/clusters", Some(viewer.clone())).await.0, 200);
    let (status, body) = post("/api/v1/clusters/eu-1/scale", Some(viewer.clone()), r#"{"desired_brokers":4}"#).await;
    assert_eq!((status, body.contains("alice lacks the operator role")), (403, true), "{body}");
    let (status, body) =
        post("/api/v1/clusters/eu-1/scale", Some(operator.clone()), r#"{"desired_brokers":"x"}"#).await;
    assert_eq!(status, 400, "the operator reaches the handler: {body}");
    for (bad, why) in [
        (token("eve", &["operator"], -600, SECRET), "expired"),
        (token("eve", &["operator"], 600, "another-secret-that-is-long-enough-too"), "bad signature"),
        ("not.a.token".to_owned(), "malformed"),
        (token("eve", &[], 600, SECRET), "eve lacks the viewer or operator role"),
    ] {
        let (status, body) = get("/api/v1/operations", Some(bad.clone())).await;
        assert!(status == 401 || status == 403, "{why}: {status} {body}");
        assert!(body.contains(why), "{why}: {body}");
        assert!(!body.contains(&bad), "the token is never echoed");
    }

    // The webhook takes its own token, not a JWT.
    let payload = r#"{"version":"4","alerts":[{"status":"firing","fingerprint":"f1","labels":{"alertname":"KafkaOfflinePartitions","strimzi_io_cluster":"eu-1","namespace":"kafka"}}]}"#;
    assert_eq!(post("/api/v1/alertmanager", None, payload).await.0, 401);
    assert_eq!(post("/api/v1/alertmanager", Some(operator.clone()), payload).await.0, 401);
    let (status, body) = post("/api/v1/alertmanager", Some("webhook-token-0123456789".into()), payload).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"triggered\":[\"eu-1\"]"), "{body}");
    let (_, body) = post("/api/v1/alertmanager", Some("webhook-token-0123456789".into()), payload).await;
    assert!(body.contains("\"duplicates\":1") && body.contains("\"triggered\":[]"), "the repeat is dropped: {body}");

    // Every change is audited with its caller and answer; reads are not.
    let calls: Vec<(String, String, u16)> = s
        .audit
        .events()
        .into_iter()
        .filter_map(|e| match e.body {
            Body::ApiCall { path, caller, status, .. } => Some((caller, path, status)),
            _ => None,
        })
        .collect();
    assert!(calls.contains(&("bob".into(), "/api/v1/clusters/eu-1/scale".into(), 400)), "{calls:?}");
    assert!(calls.contains(&("alertmanager".into(), "/api/v1/alertmanager".into(), 200)), "{calls:?}");
    assert!(calls.iter().all(|(_, p, _)| !p.ends_with("/clusters")), "reads are not audited: {calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_has_its_own_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), RateLimit { per_second: 1, burst: 3 }, None).await;
    let url = format!("{}/api/v1/operations", s.url);
    let (a, b) = (token("alice", &["viewer"], 600, SECRET), token("bob", &["viewer"], 600, SECRET));
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(call(reqwest::Method::GET, &url, Some(&a), "").await.0);
    }
    assert_eq!(&codes[..3], &[200, 200, 200], "{codes:?}");
    assert_eq!(codes[4], 429, "{codes:?}");
    assert_eq!(call(reqwest::Method::GET, &url, Some(&b), "").await.0, 200, "another client is not limited");
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output();
    let out = out.expect("openssl is needed for the TLS test: run scripts/stack.sh up (installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("curl").args(args).output().expect("curl is needed: run scripts/stack.sh up");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate_of_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca = |name: &str| {
        let (subj, key, crt) = (format!("/CN={name}"), format!("{name}.key"), format!("{name}.crt"));
        let mut a = vec!["req", "-x509", "-days", "2", "-subj", &subj, "-keyout", &key, "-out", &crt];
        a.extend(ec);
        a.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
        openssl(d, &a);
    };
    ca("server-ca");
    ca("client-ca");
    ca("rogue-ca");
    let leaf = |name: &str, signer: &str, ext: &str| {
        let (key, csr, crt, extf) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
        std::fs::write(d.join(&extf), ext).unwrap();
        let subj = format!("/CN={name}");
        let mut a = vec!["req", "-new", "-subj", &subj, "-keyout", &key, "-out", &csr];
        a.extend(ec);
        openssl(d, &a);
        let (ca_crt, ca_key) = (format!("{signer}.crt"), format!("{signer}.key"));
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                &crt,
                "-extfile",
                &extf,
            ],
        );
    };
    leaf("server", "server-ca", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n");
    leaf("alice", "client-ca", "extendedKeyUsage=clientAuth\n");
    leaf("mallory", "rogue-ca", "extendedKeyUsage=clientAuth\n");
    let tls = TlsConfig {
        cert_file: d.join("server.crt"),
        key_file: d.join("server.key"),
        client_ca_file: Some(d.join("client-ca.crt")),
    };
    let s = serve(d, RateLimit::default(), Some(tls)).await;
    let url = format!("{}/healthz", s.url);
    let p = |f: &str| d.join(f).to_str().unwrap().to_owned();
    let (ca_crt, alice_crt, alice_key, m_crt, m_key) =
        (p("server-ca.crt"), p("alice.crt"), p("alice.key"), p("mallory.crt"), p("mallory.key"));
    let u = url.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        curl(&["-sS", "--cacert", &ca_crt, "--cert", &alice_crt, "--key", &alice_key, &u])
    })
    .await
    .unwrap();
    assert!(ok && out.contains("ok"), "a client of the client CA is served: {out}");
    let (u, ca_crt) = (url.clone(), p("server-ca.crt"));
    let (ok, out) = tokio::task::spawn_blocking(move || curl(&["-sS", "--cacert", &ca_crt, &u])).await.unwrap();
    assert!(!ok, "no client certificate, no answer: {out}");
    let (u, ca_crt) = (url.clone(), p("server-ca.crt"));
    let (ok, out) =
        tokio::task::spawn_blocking(move || curl(&["-sS", "--cacert", &ca_crt, "--cert", &m_crt, "--key", &m_key, &u]))
            .await
            .unwrap();
    assert!(!ok, "a certificate of another CA is refused: {out}");
}

#[test]
fn es256_tokens_verify_against_the_public_key_and_keys_are_checked_at_start() {
    use autopilot::auth::JwtVerifier;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(d, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec.pem"]);
    openssl(d, &["pkcs8", "-topk8", "-nocrypt", "-in", "ec.pem", "-out", "ec8.pem"]);
    openssl(d, &["ec", "-in", "ec.pem", "-pubout", "-out", "ec.pub"]);
    let cfg = |key: &str, alg| JwtConfig {
        algorithm: alg,
        key_file: d.join(key),
        issuer: Some("idp".into()),
        audience: Some("kafka-autopilot".into()),
        roles_claim: "groups".into(),
    };
    let v = JwtVerifier::new(&cfg("ec.pub", JwtAlgorithm::ES256)).unwrap();
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let sign = |claims: serde_json::Value| {
        let key = EncodingKey::from_ec_pem(&std::fs::read(d.join("ec8.pem")).unwrap()).unwrap();
        encode(&Header::new(jsonwebtoken::Algorithm::ES256), &claims, &key).unwrap()
    };
    let good = sign(
        serde_json::json!({"sub": "carol", "groups": "viewer operator", "exp": exp, "iss": "idp", "aud": "kafka-autopilot"}),
    );
    let caller = v.verify(&good).unwrap();
    assert_eq!((caller.id.as_str(), caller.roles.len()), ("carol", 2));
    let wrong_aud =
        sign(serde_json::json!({"sub": "carol", "groups": ["viewer"], "exp": exp, "iss": "idp", "aud": "other"}));
    assert_eq!(v.verify(&wrong_aud).unwrap_err(), "invalid token: wrong audience");
    let hs = token("carol", &["viewer"], 600, SECRET);
    assert!(v.verify(&hs).is_err(), "an HS256 token is refused where ES256 is configured");
    // Unusable keys stop the agent at start, naming the file.
    std::fs::write(d.join("short.key"), "too-short").unwrap();
    let err = JwtVerifier::new(&cfg("short.key", JwtAlgorithm::HS256)).unwrap_err().to_string();
    assert!(err.contains("short.key") && err.contains("at least 32 bytes"), "{err}");
    let err = JwtVerifier::new(&cfg("missing.pub", JwtAlgorithm::RS256)).unwrap_err().to_string();
    assert!(err.contains("missing.pub"), "{err}");
}
