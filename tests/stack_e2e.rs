//! End to end on the local stack: Prometheus holding 10 minutes of high CPU and memory for a
//! 3-broker node pool, tansu with topics and a consumer group, the Kubernetes emulator holding
//! the Strimzi objects. One `autopilot run` tick with dry-run off patches the node pool to 5
//! brokers and records an Event. Needs `scripts/stack.sh up`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::agent::{event_reasons, pool_replicas, reset_kube, set_load, start, wait_until};
use support::stack::Stack;

#[test]
fn a_tick_on_real_components_scales_the_node_pool_to_5() {
    let stack = Stack::get();
    reset_kube(&stack);
    set_load(&stack, 0.80, 0.85);
    assert_eq!(pool_replicas(&stack), Some(3));
    let dir = tempfile::tempdir().unwrap();
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let agent = start(&stack, dir.path(), &policies);

    let replicas = wait_until("the node pool patched to 5", Duration::from_secs(60), || {
        let r = pool_replicas(&stack);
        let log: Vec<String> = agent.log().lines().rev().take(5).map(str::to_owned).collect();
        (r == Some(5), (r, log))
    });
    assert_eq!(replicas.0, Some(5));
    let reasons = wait_until("a ScaleNodePool Event", Duration::from_secs(10), || {
        let r = event_reasons(&stack);
        (r.contains(&"ScaleNodePool".to_owned()), r)
    });
    assert!(reasons.contains(&"ScaleNodePool".to_owned()));
    let audit = agent.audit();
    let action = audit
        .iter()
        .find(|e| e["type"] == "action" && e["kind"] == "scale_brokers")
        .unwrap_or_else(|| panic!("{audit:?}"));
    assert_eq!((action["from"].as_u64(), action["to"].as_u64()), (Some(3), Some(5)));
    assert_eq!(action["reason"], "scale_up_sustained_load");
    assert_eq!(action["dry_run"], false);
    assert!(agent.metric("autopilot_data_stale{cluster=\"prod-kafka-01\",source=\"metrics\"}") == Some(0.0));
}
