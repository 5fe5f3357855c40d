//! Alertmanager drives the agent, end to end on the local stack: a rule from `rules/` fires in
//! the real Prometheus (offline partitions reported by the exporter), the real Alertmanager
//! posts it to the agent's webhook with its bearer token, and the agent evaluates that cluster
//! at once with the alert in the policy input (the healing policy relays critical alerts).
//! Prometheus runs with `--rules.alert.resend-delay=2s` and `evaluation_interval: 1s`;
//! Alertmanager with `group_wait: 1s` (scripts/stack.sh). Needs `scripts/stack.sh up`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::agent::{http, start_with, wait_until};
use support::stack::Stack;

/// Puts the exporter's values file back however the test ends.
struct Restore {
    path: PathBuf,
    text: String,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, &self.text);
    }
}

fn webhook_port() -> u16 {
    let env = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".stack/env")).unwrap();
    let url = env.lines().find_map(|l| l.strip_prefix("AUTOPILOT_TEST_ALERTMANAGER_WEBHOOK_URL=")).unwrap();
    let port = url.trim_start_matches("http://").split(['/', ':']).nth(1).unwrap();
    port.parse().unwrap()
}

#[test]
fn a_rule_firing_in_prometheus_reaches_the_agent_through_alertmanager_and_is_evaluated_at_once() {
    let stack = Stack::get();
    let port = webhook_port();
    let dir = tempfile::tempdir().unwrap();
    // Alertmanager sends the webhook token of the stack's config; the agent requires it.
    let token = stack.dir.join("alertmanager/webhook-token");
    assert!(token.exists(), "{} is missing: run scripts/stack.sh up", token.display());
    let api = format!(", auth: {{webhook_token_file: \"{}\"}}", token.display());
    let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    let agent = start_with(&stack, dir.path(), &policies, port, &api);
    wait_until("the agent answers", Duration::from_secs(30), || {
        let r = http("GET", &format!("http://127.0.0.1:{port}/readyz"), "").unwrap_or_default();
        (r.starts_with("HTTP/1.1 200"), r)
    });
    // Evaluations with cause "trigger" come only from the webhook (the interval's are "interval").
    let ticks =
        |cause: &str| agent.metric(&format!("autopilot_ticks_total{{cluster=\"prod-kafka-01\",cause=\"{cause}\"}} "));

    let text = std::fs::read_to_string(&stack.exporter_values).unwrap();
    let _restore = Restore { path: stack.exporter_values.clone(), text: text.clone() };
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["clusters"][0]["brokers"]["0"]["offline"] = 2.into();
    let started = Instant::now();
    std::fs::write(&stack.exporter_values, serde_json::to_vec_pretty(&v).unwrap()).unwrap();

    let decisions = wait_until("the relayed alert among the agent's decisions", Duration::from_secs(45), || {
        let r = http("GET", &format!("http://127.0.0.1:{port}/api/v1/decisions?cluster=prod-kafka-01"), "")
            .unwrap_or_default();
        (r.contains("alert_firing") && r.contains("KafkaOfflinePartitions is firing for prod-kafka-01"), r)
    });
    let took = started.elapsed();
    assert!(ticks("trigger").unwrap_or(0.0) >= 1.0, "an evaluation caused by the webhook: {}", agent.metrics());
    let received = agent.metric("autopilot_alerts_received_total{result=\"triggered\"} ").unwrap_or(0.0);
    assert!(received >= 1.0, "{}", agent.metrics());
    assert!(agent.log().contains("alerts received: evaluating now"), "{}", agent.log());
    eprintln!("exporter value changed -> rule fired -> Alertmanager -> webhook -> decision in {took:.1?}");
    assert!(decisions.contains("\"severity\":\"critical\""), "{decisions}");
    let anonymous = http("POST", &format!("http://127.0.0.1:{port}/api/v1/alertmanager"), "{}").unwrap();
    assert!(anonymous.starts_with("HTTP/1.1 401"), "the webhook refuses a post without its token: {anonymous}");

    // While nothing changes, nothing more is triggered (repeats are deduplicated: unit tests).
    let after = ticks("trigger").unwrap_or(0.0);
    std::thread::sleep(Duration::from_secs(3));
    assert!(ticks("trigger").unwrap_or(0.0) <= after + 1.0, "no stream of evaluations from one alert");
}
