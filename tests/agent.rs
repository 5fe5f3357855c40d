//! The agent as a running process (`autopilot run` on a simulated cluster): its metrics
//! endpoint, policy hot reload that keeps the last good policy, and graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::cli::run as cli;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// Poll until `check` holds on the body of `path`, or fail with what was last seen.
fn wait_for(port: u16, path: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some(body) = get(port, path) {
            if check(&body) {
                return body;
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what} on {path}; last answer:\n{last}");
}

struct Agent {
    child: Child,
    log: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn start(dir: &Path, port: u16) -> Agent {
    start_with(dir, port, true)
}

fn start_with(dir: &Path, port: u16, dry_run: bool) -> Agent {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for f in ["scaling.rego", "data.yaml"] {
        std::fs::copy(root.join("policies").join(f), policies.join(f)).unwrap();
    }
    let config = format!(
        "region: test\ninterval: 1s\ndry_run: {dry_run}\njournal_path: journal.json\naudit_log: audit.jsonl\n\
         policy: {{dir: policies, reload_interval: 200ms}}\nlimits: {{max_data_age: 30s}}\n\
         api: {{listen: \"127.0.0.1:{port}\"}}\n\
         clusters:\n  - {{name: prod-kafka-01, namespace: kafka, node_pool: brokers, backend: simulated}}\n"
    );
    std::fs::write(dir.join("config.yaml"), config).unwrap();
    let log = dir.join("agent.log");
    let child = Command::new(env!("CARGO_BIN_EXE_autopilot"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(dir.join("config.yaml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Agent { child, log }
}

fn metric(body: &str, line_prefix: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(line_prefix)).and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_broken_policy_keeps_the_last_good_one_and_a_fix_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut agent = start(dir.path(), port);
    wait_for(port, "/readyz", "the agent to be ready", |b| b.contains("data.kafka.autopilot.scaling"));
    wait_for(port, "/metrics", "a first tick", |b| {
        metric(b, "autopilot_ticks_total{cluster=\"prod-kafka-01\",cause=\"interval\"}").is_some_and(|n| n >= 1.0)
    });

    let rego = dir.path().join("policies/scaling.rego");
    let good = std::fs::read_to_string(&rego).unwrap();
    let broken = format!("{good}\ndecisions contains d if {{ d := }}\n");
    std::fs::write(&rego, &broken).unwrap();
    let body = wait_for(port, "/metrics", "the policy error", |b| {
        metric(b, "autopilot_policy_healthy").is_some_and(|v| v == 0.0)
    });
    assert!(metric(&body, "autopilot_policy_errors_total{category=\"compile\"}").is_some_and(|v| v >= 1.0), "{body}");
    // The last good policy is still in force and ticks go on with it.
    let ready = get(port, "/readyz").unwrap();
    assert!(ready.contains("200 OK") && ready.contains("data.kafka.autopilot.scaling"), "{ready}");
    let ticks = metric(&body, "autopilot_ticks_total{cluster=\"prod-kafka-01\",cause=\"interval\"}").unwrap();
    wait_for(port, "/metrics", "ticks with the old policy", |b| {
        metric(b, "autopilot_ticks_total{cluster=\"prod-kafka-01\",cause=\"interval\"}").is_some_and(|n| n > ticks)
    });
    let log = std::fs::read_to_string(&agent.log).unwrap();
    let line = good.lines().count() + 2;
    assert!(log.contains(&format!("scaling.rego:{line}:")), "the log names the file and line {line}:\n{log}");

    std::fs::write(&rego, &good).unwrap();
    let body = wait_for(port, "/metrics", "the fixed policy", |b| {
        metric(b, "autopilot_policy_healthy").is_some_and(|v| v == 1.0)
    });
    assert!(metric(&body, "autopilot_policy_reloads_total{result=\"ok\"}").is_some_and(|v| v >= 1.0), "{body}");

    // SIGTERM stops it cleanly.
    let status = Command::new("kill").args(["-TERM", &agent.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = agent.child.try_wait().unwrap() {
            assert!(s.success(), "exit status {s}");
            break;
        }
        assert!(Instant::now() < deadline, "agent did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(&agent.log).unwrap();
    assert!(log.contains("agent stopped"), "{log}");
}

#[test]
fn manual_scaling_is_validated_started_and_followed_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _agent = start_with(dir.path(), port, false);
    let api = format!("http://127.0.0.1:{port}");
    // Requests are checked against fresh data: wait until no source is stale.
    wait_for(port, "/metrics", "fresh data from every source", |b| {
        ["metrics", "kafka", "kube"].iter().all(|s| {
            metric(b, &format!("autopilot_data_stale{{cluster=\"prod-kafka-01\",source=\"{s}\"}}")) == Some(0.0)
        })
    });

    // The health API reports the cluster as the last tick saw it.
    let clusters = get(port, "/api/v1/clusters").unwrap();
    assert!(clusters.contains("{\"name\":\"prod-kafka-01\",\"status\":\"healthy\""), "{clusters}");
    let health = get(port, "/api/v1/clusters/prod-kafka-01/health").unwrap();
    let body: serde_json::Value = serde_json::from_str(&health[health.find('{').unwrap()..]).unwrap();
    assert_eq!(body["status"], "healthy", "{body}");
    assert_eq!(body["brokers"].as_array().unwrap().len(), 3);
    assert!(body["brokers"].as_array().unwrap().iter().all(|b| b["state"] == "healthy"), "{body}");
    assert!(get(port, "/api/v1/clusters/nope/health").unwrap().starts_with("HTTP/1.1 404"));

    let (ok, _, err) = cli(&["scale", "--cluster", "prod-kafka-01", "--to", "2", "--api", &api]);
    assert!(!ok && err.contains("409") && err.contains("below the minimum of 3"), "{err}");
    let (ok, _, err) = cli(&["scale", "--cluster", "nope", "--to", "4", "--api", &api]);
    assert!(!ok && err.contains("404") && err.contains("no cluster named \"nope\""), "{err}");

    let (ok, out, err) = cli(&[
        "scale",
        "--cluster",
        "prod-kafka-01",
        "--to",
        "4",
        "--drain-timeout",
        "300s",
        "--no-wait",
        "--api",
        &api,
    ]);
    assert!(ok, "{out}{err}");
    let id = out.split_whitespace().nth(2).unwrap().to_owned();
    assert!(id.starts_with("prod-kafka-01-scale_brokers-"), "{out}");

    let (ok, out, err) = cli(&["operations", &id, "--api", &api]);
    assert!(ok, "{err}");
    assert!(out.contains("scale_brokers") && out.contains("manual_scale") && out.contains("await_brokers"), "{out}");
    let (ok, _, err) = cli(&["scale", "--cluster", "prod-kafka-01", "--to", "5", "--api", &api]);
    assert!(!ok && err.contains(&format!("operation {id} (scale_brokers) is in flight")), "{err}");

    let list = get(port, "/api/v1/operations?cluster=prod-kafka-01").unwrap();
    assert!(list.contains(&id) && list.contains("\"status\":\"running\""), "{list}");
    let missing = get(port, "/api/v1/operations/nope").unwrap();
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let requests: Vec<&str> = audit.lines().filter(|l| l.contains("\"type\":\"request\"")).collect();
    assert_eq!(requests.len(), 3, "every request that reached a cluster is audited, accepted or refused: {requests:?}");
    let calls = audit.lines().filter(|l| l.contains("\"type\":\"api_call\"")).count();
    assert_eq!(calls, 4, "every API call that asks for a change is audited with its answer: {audit}");

    // The health report now also lists what happened (newest first) and the trends of the hour.
    let health = get(port, "/api/v1/clusters/prod-kafka-01/health").unwrap();
    let body: serde_json::Value = serde_json::from_str(&health[health.find('{').unwrap()..]).unwrap();
    let events = body["recent_events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["type"] == "request" && e["source"] == "api"), "{body}");
    assert!(events.iter().any(|e| e["type"] == "action" && e["kind"] == "scale_brokers"), "{body}");
    let cpu = &body["trends"]["cpu"];
    assert!(cpu["samples"].as_u64().unwrap() >= 2 && cpu["current"].is_number(), "{body}");
    assert!(body["trends"]["under_replicated_partitions"]["max"].is_number(), "{body}");
    let decisions = get(port, "/api/v1/decisions?cluster=prod-kafka-01&limit=5").unwrap();
    assert!(decisions.starts_with("HTTP/1.1 200") && decisions.contains("scale_brokers"), "{decisions}");
}
