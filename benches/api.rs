//! The operator surface under load, over real HTTP on loopback, with JWT verification on:
//! - `GET /api/v1/clusters/{name}/health` with 100 clusters loaded (each a 6-broker simulated
//!   cluster with its snapshot, an hour of trend samples and 200 recent events): p50 and p99
//!   of 2,000 sequential requests, and criterion's mean;
//! - Alertmanager webhook receipt to evaluation queued: from sending a new alert to the
//!   cluster's task holding the trigger, p50 and p99 over 1,000 alerts.
//!
//! Targets (issue #7): health p99 under 50 ms; webhook to queued under 10 ms.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use autopilot::agent::{trigger_channels, Inbox, SharedSnapshots};
use autopilot::auth::Guard;
use autopilot::backend::sim::{ClusterSpec, SimBackend, SimCluster};
use autopilot::config::{ApiConfig, JwtAlgorithm, JwtConfig, RateLimit};
use autopilot::events::{Body, Event, Events, Sink};
use autopilot::http::{router, AppState};
use autopilot::policy::PolicySet;
use autopilot::recent::Recent;
use autopilot::snapshot::{self, BrokerTracker};
use autopilot::time::Timestamp;
use criterion::{criterion_group, criterion_main, Criterion};

const CLUSTERS: usize = 100;
const SECRET: &str = "a-bench-secret-that-is-long-enough-for-hs256";
const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

struct Served {
    url: String,
    token: String,
    inboxes: BTreeMap<String, Inbox>,
}

async fn serve(dir: &std::path::Path) -> Served {
    std::fs::write(dir.join("jwt.key"), SECRET).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = (0..CLUSTERS).map(|i| format!("c{i:03}")).collect();
    let (triggers, inboxes) = trigger_channels(&names);
    let snapshots = SharedSnapshots::default();
    let recent = Arc::new(Recent::default());
    for name in &names {
        let sim =
            SimBackend::new(SimCluster::new(ClusterSpec::uniform(name, 6, 10), T0).unwrap_or_else(|e| panic!("{e}")));
        let mut tracker = BrokerTracker::default();
        let options = autopilot::snapshot::SnapshotOptions {
            conditions: Vec::new(),
            max_data_age: Duration::from_secs(90),
            heartbeat_timeout: Duration::from_secs(30),
            broker_quota: None,
        };
        for minute in 0..60u64 {
            let now = T0 + Duration::from_secs(60 * minute);
            sim.lock().unwrap_or_else(|e| panic!("{e}")).advance_to(now);
            let obs = autopilot::collect::collect(name, &sim.backends(), Duration::from_secs(900), now).await;
            let s = snapshot::build(&obs, &options, &mut tracker, now);
            recent.sample(&s);
            if minute == 59 {
                snapshots.write().unwrap_or_else(|e| panic!("{e}")).insert(name.clone(), Arc::new(s));
            }
        }
        for i in 0..200u64 {
            let body = Body::Deferred {
                kind: autopilot::plan::ActionKind::ScaleBrokers,
                reason: "scale_up_sustained_load".into(),
                why: format!("cooldown: {i}s left"),
            };
            recent.record(&Event { at: T0 + Duration::from_secs(i), cluster: name.clone(), body });
        }
    }
    let api = ApiConfig {
        jwt: Some(JwtConfig {
            algorithm: JwtAlgorithm::HS256,
            key_file: dir.join("jwt.key"),
            issuer: None,
            audience: None,
            roles_claim: "roles".into(),
        }),
        webhook_token_file: None,
        tls: None,
        rate_limit: RateLimit { per_second: 1_000_000, burst: 1_000_000 },
    };
    let guard = Guard::new(&api, Events::default()).unwrap_or_else(|e| panic!("{e}"));
    let policies = Arc::new(RwLock::new(Arc::new(
        PolicySet::embedded(None, Duration::from_secs(1)).unwrap_or_else(|e| panic!("{e}")),
    )));
    let state = AppState { guard, recent, snapshots, ..AppState::basic(policies, triggers) };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
    tokio::spawn(autopilot::tls::serve(
        listener,
        router(Arc::new(state)),
        None,
        tokio_util::sync::CancellationToken::new(),
    ));
    let exp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) + 3600;
    let claims = serde_json::json!({"sub": "bench", "roles": ["operator"], "exp": exp});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Served { url, token, inboxes }
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (at(0.5), at(0.99), v[v.len() - 1])
}

#[allow(clippy::print_stderr)]
fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut served = rt.block_on(serve(dir.path()));
    let client = reqwest::Client::new();
    let health = |i: usize| {
        let (client, url, token) = (
            client.clone(),
            format!("{}/api/v1/clusters/c{:03}/health", served.url, i % CLUSTERS),
            served.token.clone(),
        );
        async move {
            let r = client.get(url).bearer_auth(token).send().await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.status(), 200);
            let body = r.bytes().await.unwrap_or_else(|e| panic!("{e}"));
            assert!(body.len() > 1000);
        }
    };

    let n = if full_run() { 2000 } else { 20 };
    let times: Vec<Duration> = rt.block_on(async {
        let mut t = Vec::with_capacity(n);
        for i in 0..n {
            let started = Instant::now();
            health(i).await;
            t.push(started.elapsed());
        }
        t
    });
    let (p50, p99, max) = percentiles(times);
    eprintln!("health report, {CLUSTERS} clusters, {n} requests: p50 {p50:.2?}, p99 {p99:.2?}, max {max:.2?}");

    let mut i = 0usize;
    c.bench_function("health_report_100_clusters", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(health(i));
        });
    });

    // Webhook receipt to the trigger queued for the cluster's task.
    let n = if full_run() { 1000 } else { 10 };
    let url = format!("{}/api/v1/alertmanager", served.url);
    let inbox = served.inboxes.get_mut("c007").unwrap_or_else(|| panic!("no inbox"));
    let times: Vec<Duration> = rt.block_on(async {
        let mut t = Vec::with_capacity(n);
        for k in 0..n {
            let payload = serde_json::json!({"version": "4", "status": "firing", "receiver": "agent", "alerts": [{
                "status": "firing", "fingerprint": format!("bench-{k}"),
                "labels": {"alertname": "KafkaOfflinePartitions", "strimzi_io_cluster": "c007", "namespace": "kafka"}}]});
            let started = Instant::now();
            let send = tokio::spawn(client.post(&url).bearer_auth(&served.token).json(&payload).send());
            let got = inbox.triggers.recv().await;
            t.push(started.elapsed());
            let sent = send.await.unwrap_or_else(|e| panic!("{e}"));
            assert!(sent.is_ok_and(|r| r.status() == 200) && got.is_some());
        }
        t
    });
    let (p50, p99, max) = percentiles(times);
    eprintln!("webhook to evaluation queued, {n} alerts: p50 {p50:.2?}, p99 {p99:.2?}, max {max:.2?}");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
