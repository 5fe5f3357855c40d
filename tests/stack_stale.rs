//! Stopping Prometheus while the agent runs: it reports the metrics stale and takes no action,
//! although its policy would act; once Prometheus is back, the decision passes the freshness
//! check and is judged on the cluster (where the local stack's unregistered brokers hold it
//! back: see `stack_e2e.rs`). Needs `scripts/stack.sh up` (this test stops the stack's
//! Prometheus and starts it again with `scripts/stack.sh up`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::agent::{pool_replicas, reset_kube, set_load, start, wait_until};
use support::stack::Stack;

const STALE: &str = "autopilot_data_stale{cluster=\"prod-kafka-01\",source=\"metrics\"}";
const TICKS: &str = "autopilot_ticks_total{cluster=\"prod-kafka-01\",cause=\"interval\"}";

fn copy_policies(to: &Path, hold_seconds: u64) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join("scaling.rego"), to.join("scaling.rego")).unwrap();
    let data = std::fs::read_to_string(from.join("data.yaml"))
        .unwrap()
        .replace("hold_seconds: 300", &format!("hold_seconds: {hold_seconds}"));
    std::fs::write(to.join("data.yaml"), data).unwrap();
}

#[test]
fn stale_metrics_mean_no_action_until_prometheus_is_back() {
    let stack = Stack::get();
    let pid = stack.prometheus_pid.expect("the stack env names Prometheus' PID");
    reset_kube(&stack);
    set_load(&stack, 0.80, 0.85);
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    // First a policy that would not scale yet: the agent runs on fresh data and does nothing.
    copy_policies(&policies, 100_000);
    let agent = start(&stack, dir.path(), &policies);
    wait_until("ticks on fresh metrics", Duration::from_secs(30), || {
        let (stale, ticks) = (agent.metric(STALE), agent.metric(TICKS));
        (stale == Some(0.0) && ticks.is_some_and(|t| t >= 2.0), (stale, ticks))
    });

    // Prometheus goes away mid-run.
    assert!(Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
    wait_until("the metrics reported stale", Duration::from_secs(30), || {
        (agent.metric(STALE) == Some(1.0), agent.metric(STALE))
    });
    // Now the policy would scale (the load has held for 10 minutes), but the data is stale.
    copy_policies(&policies, 300);
    let ticks = agent.metric(TICKS).unwrap();
    wait_until("several ticks with the new policy", Duration::from_secs(30), || {
        let t = agent.metric(TICKS).unwrap_or(0.0);
        (t >= ticks + 3.0, t)
    });
    assert_eq!(pool_replicas(&stack), Some(3), "no action on stale data");
    assert!(!agent.audit().iter().any(|e| e["type"] == "action"), "{:?}", agent.audit());
    assert!(
        agent
            .metric(
                "autopilot_source_errors_total{cluster=\"prod-kafka-01\",source=\"metrics\",category=\"unavailable\"}"
            )
            .is_some_and(|n| n >= 1.0)
            || agent
                .metric(
                    "autopilot_source_errors_total{cluster=\"prod-kafka-01\",source=\"metrics\",category=\"timeout\"}"
                )
                .is_some_and(|n| n >= 1.0),
        "{}",
        agent.metrics()
    );

    // The policy itself refuses to decide on stale data.
    let while_stale = agent.audit();
    assert!(!while_stale.iter().any(|e| e["type"] == "decision"), "no decision on stale data: {while_stale:?}");

    // Prometheus back (with its history): fresh data, and the decision is judged on the cluster.
    let up = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/stack.sh")).arg("up").output().unwrap();
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let seen = while_stale.len();
    wait_until("a decision judged on fresh data", Duration::from_secs(90), || {
        let audit = agent.audit();
        let later = &audit[seen.min(audit.len())..];
        let decided = later.iter().any(|e| e["type"] == "decision" && e["kind"] == "scale_brokers");
        let judged = decided
            && later.iter().any(|e| {
                e["type"] == "deferred"
                    && e["kind"] == "scale_brokers"
                    && e["why"].as_str().is_some_and(|w| w.starts_with("broker "))
            });
        (judged && agent.metric(STALE) == Some(0.0), later.iter().rev().take(4).cloned().collect::<Vec<_>>())
    });
    assert_eq!(pool_replicas(&stack), Some(3));
}
