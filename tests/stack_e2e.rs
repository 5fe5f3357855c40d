//! End to end on the local stack: Prometheus holding 10 minutes of high CPU and memory for a
//! 3-broker node pool, tansu with topics and a consumer group, the Kubernetes emulator holding
//! the Strimzi objects. Needs `scripts/stack.sh up`.
//!
//! The stack is not a coherent cluster: the emulator's node pool has brokers 0, 1 and 2 (pods
//! ready), while Kafka's metadata has only tansu's node 111. A real cluster in that state has
//! three brokers whose pods run but which never registered, so the agent must not scale it: the
//! scaling policy decides on the real metrics, and the executor refuses with the reason. The node
//! pool patch itself is exercised against the emulator in `stack_kube.rs`.
//!
//! The same run shows a healing action on real components: the fixtures' clients CA expires in
//! 20 days, so the certificate policy renews it and the agent annotates the secret in the
//! emulator with `strimzi.io/force-renew`; with the alert threshold raised to 30 days, the
//! certificate alert is a Kubernetes Event.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::agent::{event_reasons, http, pool_replicas, reset_kube, set_load, start, wait_until};

/// The repository's policies, with the certificate alert threshold raised to 30 days.
fn policies(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".rego") && !name.ends_with("_test.rego") {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
    let data = std::fs::read_to_string(from.join("data.yaml")).unwrap();
    assert!(data.contains("critical_days: 7"));
    std::fs::write(to.join("data.yaml"), data.replace("critical_days: 7", "critical_days: 30")).unwrap();
}
use support::stack::Stack;

#[test]
fn real_components_drive_a_scaling_decision_that_unhealthy_brokers_hold_back() {
    let stack = Stack::get();
    reset_kube(&stack);
    set_load(&stack, 0.80, 0.85);
    assert_eq!(pool_replicas(&stack), Some(3));
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policies");
    policies(&policy_dir);
    let agent = start(&stack, dir.path(), &policy_dir);

    // Brokers absent from the metadata become Failed after the 30 s heartbeat timeout.
    let audit = wait_until("a scale-up decision held back by failed brokers", Duration::from_secs(90), || {
        let audit = agent.audit();
        let held = audit.iter().any(|e| {
            e["type"] == "deferred"
                && e["kind"] == "scale_brokers"
                && e["why"].as_str().is_some_and(|w| w.starts_with("broker 0 is"))
        });
        (held, audit.into_iter().rev().take(6).collect::<Vec<_>>())
    });
    assert!(!audit.is_empty());
    let all = agent.audit();
    let decision = all.iter().find(|e| e["type"] == "decision" && e["kind"] == "scale_brokers").unwrap();
    assert_eq!((decision["reason"].as_str(), decision["to"].as_u64()), (Some("scale_up_sustained_load"), Some(5)));
    let scaled = all.iter().any(|e| e["type"] == "action" && e["kind"] == "scale_brokers");
    assert!(!scaled, "no scaling on a cluster with unregistered brokers: {all:?}");
    assert_eq!(pool_replicas(&stack), Some(3), "the node pool is untouched");

    let renewal = all
        .iter()
        .find(|e| e["type"] == "action" && e["kind"] == "renew_certificate")
        .unwrap_or_else(|| panic!("the clients CA (20 days left) is renewed: {all:?}"));
    assert_eq!(renewal["secret"], "prod-kafka-01-clients-ca-cert");
    assert_eq!(renewal["reason"], "renew_before_expiry");
    let url = format!("{}/api/v1/namespaces/kafka/secrets/prod-kafka-01-clients-ca-cert", stack.kube);
    let secret = wait_until("the force-renew annotation", Duration::from_secs(10), || {
        let body = http("GET", &url, "").unwrap_or_default();
        let json: serde_json::Value =
            body.find('{').and_then(|i| serde_json::from_str(&body[i..]).ok()).unwrap_or_default();
        let annotations = json["metadata"]["annotations"].clone();
        (annotations["strimzi.io/force-renew"] == "true", annotations.to_string())
    });
    assert!(!secret.is_empty());
    let reasons = wait_until("the certificate alert as an Event", Duration::from_secs(10), || {
        let r = event_reasons(&stack);
        (r.contains(&"CertificateExpiring".to_owned()), r)
    });
    assert!(reasons.contains(&"CertificateExpiring".to_owned()));
    assert!(agent.metric("autopilot_data_stale{cluster=\"prod-kafka-01\",source=\"metrics\"}") == Some(0.0));
}
