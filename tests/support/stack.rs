//! The local stack started by `scripts/stack.sh up`: where its components listen.
//!
//! A test that needs the stack calls [`Stack::get`], which fails the test (never skips it) with
//! the command to run when the stack, or one of its components, is not up.

use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Where the stack's components are.
#[derive(Clone, Debug)]
pub struct Stack {
    pub prometheus: String,
    pub alertmanager: String,
    pub kafka: String,
    pub kube: String,
    pub exporter: String,
    pub exporter_values: PathBuf,
    pub dir: PathBuf,
    pub prometheus_pid: Option<u32>,
}

const HOW: &str = "start it with `scripts/stack.sh up` (or run everything with `scripts/test.sh`)";

fn env_file() -> PathBuf {
    std::env::var_os("AUTOPILOT_TEST_STACK_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".stack/env"))
}

fn answers(name: &str, url_or_addr: &str) {
    let addr =
        url_or_addr.trim_start_matches("http://").trim_start_matches("https://").split('/').next().unwrap_or_default();
    let reachable = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    assert!(reachable, "the local stack's {name} does not answer at {url_or_addr}: {HOW}");
}

impl Stack {
    /// The running stack; fails the test, saying how to start it, when it is not running.
    pub fn get() -> Stack {
        let path = env_file();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the local stack is not running (no {}: {e}): {HOW}", path.display()));
        let vars: BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("export ").or(Some(l.trim())))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
            .collect();
        let var = |k: &str| vars.get(k).cloned().unwrap_or_else(|| panic!("{} has no {k}: {HOW}", path.display()));
        let stack = Stack {
            prometheus: var("AUTOPILOT_TEST_PROMETHEUS_URL"),
            alertmanager: var("AUTOPILOT_TEST_ALERTMANAGER_URL"),
            kafka: var("AUTOPILOT_TEST_KAFKA_BOOTSTRAP"),
            kube: var("AUTOPILOT_TEST_KUBE_URL"),
            exporter: var("AUTOPILOT_TEST_EXPORTER_URL"),
            exporter_values: PathBuf::from(var("AUTOPILOT_TEST_EXPORTER_VALUES")),
            dir: PathBuf::from(var("AUTOPILOT_TEST_STACK_DIR")),
            prometheus_pid: vars.get("AUTOPILOT_TEST_PROMETHEUS_PID").and_then(|p| p.parse().ok()),
        };
        answers("Prometheus", &stack.prometheus);
        answers("Kafka broker (tansu)", &stack.kafka);
        answers("Kubernetes emulator", &stack.kube);
        answers("metrics exporter", &stack.exporter);
        stack
    }
}
