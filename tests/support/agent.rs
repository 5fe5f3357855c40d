//! Running `autopilot run` against the local stack.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::stack::Stack;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// HTTP request on loopback; the response with headers.
pub fn http(method: &str, url: &str, body: &str) -> Option<String> {
    let rest = url.trim_start_matches("http://");
    let (addr, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Poll `check` until it holds or `limit` passes; the last value is in the panic message.
pub fn wait_until<T: std::fmt::Debug>(what: &str, limit: Duration, mut check: impl FnMut() -> (bool, T)) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let (ok, seen) = check();
        if ok {
            return seen;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}; last seen: {seen:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A running agent, killed when dropped.
pub struct RunningAgent {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RunningAgent {
    pub fn metrics(&self) -> String {
        http("GET", &format!("http://127.0.0.1:{}/metrics", self.port), "").unwrap_or_default()
    }

    pub fn metric(&self, line_prefix: &str) -> Option<f64> {
        self.metrics().lines().find_map(|l| l.strip_prefix(line_prefix)).and_then(|v| v.trim().parse().ok())
    }

    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }
}

/// Start `autopilot run` on the stack's real components with `policies` as its policy directory.
pub fn start(stack: &Stack, dir: &Path, policies: &Path) -> RunningAgent {
    start_with(stack, dir, policies, free_port(), "")
}

/// [`start`] on a given port, with `api` appended to the `api:` mapping (`, auth: {...}`).
pub fn start_with(stack: &Stack, dir: &Path, policies: &Path, port: u16, api: &str) -> RunningAgent {
    start_config(stack, dir, policies, port, api, "")
}

/// [`start_with`], with `extra` top-level config lines (`backups: {...}`).
pub fn start_config(stack: &Stack, dir: &Path, policies: &Path, port: u16, api: &str, extra: &str) -> RunningAgent {
    let config = format!(
        r#"region: e2e
interval: 2s
dry_run: false
journal_path: journal.json
audit_log: audit.jsonl
policy: {{dir: "{policies}", reload_interval: 500ms}}
limits: {{max_data_age: 60s, metrics_window: 15m}}
api: {{listen: "127.0.0.1:{port}"{api}}}
{extra}
clusters:
  - name: prod-kafka-01
    namespace: kafka
    node_pool: brokers
    backend: real
    bootstrap_servers: ["{kafka}"]
    kafka_client: {{timeout: 5s}}
    prometheus: {{url: "{prometheus}", timeout: 5s}}
    kubernetes: {{url: "{kube}"}}
"#,
        policies = policies.display(),
        kafka = stack.kafka,
        prometheus = stack.prometheus,
        kube = stack.kube,
    );
    std::fs::write(dir.join("config.yaml"), config).unwrap();
    let log = std::fs::File::create(dir.join("agent.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_autopilot"))
        .args(["--log-format", "json", "--log", "info", "run", "--config"])
        .arg(dir.join("config.yaml"))
        .env("POD_NAME", "autopilot-e2e")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    RunningAgent { child, port, dir: dir.to_owned() }
}

/// Reset the Kubernetes emulator to its fixtures.
pub fn reset_kube(stack: &Stack) {
    let r = http("POST", &format!("{}/_test/reset", stack.kube), "").unwrap_or_default();
    assert!(r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"), "emulator reset failed: {r}");
}

/// `spec.replicas` of the node pool in the emulator.
pub fn pool_replicas(stack: &Stack) -> Option<u64> {
    let r = http(
        "GET",
        &format!("{}/apis/kafka.strimzi.io/v1beta2/namespaces/kafka/kafkanodepools/brokers", stack.kube),
        "",
    )?;
    let body = r.split_once("\r\n\r\n")?.1;
    let body = body.trim_start_matches(|c: char| c.is_ascii_hexdigit() || c.is_whitespace());
    let start = body.find('{')?;
    let end = body.rfind('}')?;
    let v: serde_json::Value = serde_json::from_str(&body[start..=end]).ok()?;
    v.pointer("/spec/replicas")?.as_u64()
}

/// Reasons of the Events in namespace `kafka`.
pub fn event_reasons(stack: &Stack) -> Vec<String> {
    let Some(r) = http("GET", &format!("{}/apis/events.k8s.io/v1/namespaces/kafka/events", stack.kube), "") else {
        return Vec::new();
    };
    let Some((_, body)) = r.split_once("\r\n\r\n") else { return Vec::new() };
    let (Some(start), Some(end)) = (body.find('{'), body.rfind('}')) else { return Vec::new() };
    let v: serde_json::Value = serde_json::from_str(&body[start..=end]).unwrap_or_default();
    v["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|e| e["reason"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Set every broker of the exporter's values file to this load.
pub fn set_load(stack: &Stack, cpu: f64, memory: f64) {
    let text = std::fs::read_to_string(&stack.exporter_values).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for c in v["clusters"].as_array_mut().unwrap() {
        for (_, b) in c["brokers"].as_object_mut().unwrap() {
            b["cpu"] = cpu.into();
            b["memory"] = memory.into();
        }
    }
    std::fs::write(&stack.exporter_values, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}
