//! The Kubernetes adapter against the local stack's Kubernetes API emulator, holding objects
//! shaped like Strimzi's (a `Kafka`, a 3-broker `KafkaNodePool`, pods, PVCs, CA secrets).
//! Needs `scripts/stack.sh up`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use autopilot::backend::kube::{client, KubeCluster};
use autopilot::backend::{ClusterOps, Error};
use autopilot::config::KubernetesConfig;
use autopilot::leader::{LeaderGate, LeaseElector};
use autopilot::time::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, ListParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use support::stack::Stack;

/// The emulator is shared state: these tests take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn reset(stack: &Stack) -> kube::Client {
    let url = format!("{}/_test/reset", stack.kube);
    let status = tokio::task::spawn_blocking(move || {
        let addr = url.trim_start_matches("http://").split('/').next().unwrap().to_owned();
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        use std::io::{Read, Write};
        write!(s, "POST /_test/reset HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(
        status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200"),
        "emulator reset failed: {status}"
    );
    client(&KubernetesConfig { url: Some(stack.kube.clone()) }).await.unwrap()
}

fn cluster(c: &kube::Client) -> KubeCluster {
    KubeCluster::new(c.clone(), "kafka", "prod-kafka-01", "brokers", Some("test".into()))
}

fn pools(c: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kafka.strimzi.io", "v1beta2", "KafkaNodePool"),
        "kafkanodepools",
    );
    Api::namespaced_with(c.clone(), "kafka", &ar)
}

async fn event_reasons(c: &kube::Client) -> Vec<String> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.clone(), "kafka");
    api.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|e| e.reason).collect()
}

#[tokio::test]
async fn reads_the_strimzi_cluster() {
    let stack = Stack::get();
    let _turn = SERIAL.lock().await;
    let c = reset(&stack).await;
    let o = cluster(&c).observe().await.unwrap();
    assert!(o.kafka_ready);
    assert_eq!(o.kafka_version.as_deref(), Some("3.9.0"));
    let pool = o.node_pool.unwrap();
    assert_eq!((pool.replicas, pool.storage_bytes, pool.node_ids.clone()), (3, 100 << 30, vec![0, 1, 2]));
    assert_eq!(o.pods.len(), 3);
    assert!(o.pods.iter().all(|p| p.ready
        && p.phase == "Running"
        && p.node.is_some()
        && p.pvc.as_deref() == Some(&format!("data-0-prod-kafka-01-brokers-{}", p.broker))));
    assert_eq!(o.pvcs.len(), 3);
    assert!(o.pvcs.iter().all(|p| p.phase == "Bound" && p.capacity_bytes == Some(100 << 30)));
    let now = Timestamp::now();
    let days = |secret: &str| {
        let c = o.certificates.iter().find(|c| c.secret == secret).unwrap();
        (c.not_after.as_millis() as f64 - now.as_millis() as f64) / 86_400_000.0
    };
    assert!((days("prod-kafka-01-cluster-ca-cert") - 200.0).abs() < 3.0, "{:?}", o.certificates);
    assert!((days("prod-kafka-01-clients-ca-cert") - 20.0).abs() < 3.0, "{:?}", o.certificates);
}

#[tokio::test]
async fn scaling_patches_the_node_pool_and_records_events() {
    let stack = Stack::get();
    let _turn = SERIAL.lock().await;
    let c = reset(&stack).await;
    let k = cluster(&c);
    k.scale_node_pool(5, &[]).await.unwrap();
    let pool = pools(&c).get("brokers").await.unwrap();
    assert_eq!(pool.data["spec"]["replicas"], 5);
    assert!(event_reasons(&c).await.contains(&"ScaleNodePool".to_owned()));
    k.scale_node_pool(2, &[1]).await.unwrap();
    let pool = pools(&c).get("brokers").await.unwrap();
    assert_eq!(pool.data["spec"]["replicas"], 2);
    assert_eq!(pool.metadata.annotations.unwrap()["strimzi.io/remove-node-ids"], "[1]", "the drained broker goes");
    let seen = k.observe().await.unwrap().node_pool.unwrap();
    assert_eq!(seen.remove_node_ids, vec![1], "the annotation is read back");
    k.record_outcome("ScaleBrokersRolledBack", false, "drain timeout".into()).await;
    assert!(event_reasons(&c).await.contains(&"ScaleBrokersRolledBack".to_owned()));
}

#[tokio::test]
async fn pods_volumes_storage_and_certificates() {
    let stack = Stack::get();
    let _turn = SERIAL.lock().await;
    let c = reset(&stack).await;
    let k = cluster(&c);
    k.delete_pod(1).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(c.clone(), "kafka");
    assert!(pods.get_opt("prod-kafka-01-brokers-1").await.unwrap().is_none());
    assert!(matches!(k.delete_pod(1).await, Err(Error::NotFound { .. })));

    k.delete_pvc(2).await.unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), "kafka");
    assert!(pvcs.get_opt("data-0-prod-kafka-01-brokers-2").await.unwrap().is_none());
    assert!(pods.get_opt("prod-kafka-01-brokers-2").await.unwrap().is_none());

    k.resize_storage(200 << 30).await.unwrap();
    let pool = pools(&c).get("brokers").await.unwrap();
    assert_eq!(pool.data["spec"]["storage"]["volumes"][0]["size"], "200Gi");
    let refused = k.resize_storage(50 << 30).await.unwrap_err();
    assert!(refused.to_string().contains("never shrinks"), "{refused}");

    k.force_renew("prod-kafka-01-cluster-ca-cert").await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "kafka");
    let s = secrets.get("prod-kafka-01-cluster-ca-cert").await.unwrap();
    assert_eq!(s.metadata.annotations.unwrap()["strimzi.io/force-renew"], "true");

    let reasons = event_reasons(&c).await;
    for r in ["DeletePod", "ReplaceVolume", "ResizeStorage", "RenewCertificate"] {
        assert!(reasons.contains(&r.to_owned()), "no {r} event in {reasons:?}");
    }
}

#[tokio::test]
async fn one_agent_holds_the_lease() {
    let stack = Stack::get();
    let _turn = SERIAL.lock().await;
    let c = reset(&stack).await;
    let a = LeaseElector::new(c.clone(), "kafka", "kafka-autopilot-test", "agent-a", Duration::from_secs(15));
    let b = LeaseElector::new(c.clone(), "kafka", "kafka-autopilot-test", "agent-b", Duration::from_secs(15));
    let now = Timestamp::now();
    assert!(a.try_acquire_or_renew(now).await.unwrap());
    assert!(!b.try_acquire_or_renew(now).await.unwrap(), "held by a");
    assert!(a.try_acquire_or_renew(now + Duration::from_secs(5)).await.unwrap(), "a renews");
    assert!(a.is_leader() && !b.is_leader());
    // a stops renewing; once the lease expired b takes over and a stays out.
    let later = now + Duration::from_secs(30);
    assert!(b.try_acquire_or_renew(later).await.unwrap());
    assert!(!a.try_acquire_or_renew(later).await.unwrap());
    assert!(!a.is_leader() && b.is_leader());
}

mod journal {
    use std::sync::Arc;
    use std::time::Duration;

    use autopilot::act::kube_journal::{api_resource, object_name, ANNOTATION_APPROVE};
    use autopilot::act::{ClusterExecutor, Journal, KubeJournal, Shared, Step};
    use autopilot::backend::sim::{ClusterSpec, Load, SimBackend, SimCluster};
    use autopilot::config::Limits;
    use autopilot::events::Events;
    use autopilot::plan::{Action, Plan, Planned};
    use autopilot::snapshot::{self, BrokerTracker, SnapshotOptions};
    use autopilot::time::Timestamp;
    use kube::api::{Api, Patch, PatchParams};
    use kube::core::DynamicObject;
    use serde_json::json;

    use super::{reset, Stack, SERIAL};

    async fn snapshot(sim: &SimBackend) -> autopilot::snapshot::Snapshot {
        let now = sim.lock().unwrap().now();
        let obs = autopilot::collect::collect("test", &sim.backends(), Duration::from_secs(900), now).await;
        let opts = SnapshotOptions {
            conditions: Vec::new(),
            max_data_age: Duration::from_secs(90),
            heartbeat_timeout: Duration::from_secs(30),
            broker_quota: None,
        };
        snapshot::build(&obs, &opts, &mut BrokerTracker::default(), now)
    }

    fn scale(approval_required: bool) -> Plan {
        Plan {
            actions: vec![Planned {
                action: Action::ScaleBrokers {
                    from: 3,
                    to: 5,
                    remove: vec![],
                    drain_timeout: Duration::from_secs(1800),
                },
                rule: "r".into(),
                message: "m".into(),
                approval_required,
            }],
            deferred: Vec::new(),
        }
    }

    #[tokio::test]
    async fn operations_live_in_kubernetes_and_survive_the_agent_moving() {
        let stack = Stack::get();
        let _turn = SERIAL.lock().await;
        let client = reset(&stack).await;
        let mut c = SimCluster::new(ClusterSpec::uniform("test", 3, 4), Timestamp::now()).unwrap();
        c.set_load(Load { cpu: 0.8, memory: 0.85 });
        c.advance_to(Timestamp::now() + Duration::from_secs(60));
        let sim = SimBackend::new(c);
        let journal: Arc<dyn Journal> = Arc::new(KubeJournal::new(client.clone(), "kafka", "e2e"));
        let shared = Shared::new(Limits::default(), false, journal.clone());
        let mut first = ClusterExecutor::new("test", sim.backends(), shared, Events::default()).await.unwrap();
        let s = snapshot(&sim).await;
        first.apply(&scale(true), &s, s.at).await;
        let id = first.operation().unwrap().id.clone();

        // What `kubectl get autopilotoperations` shows.
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "kafka", &api_resource());
        let o = api.get(&object_name(&id)).await.unwrap();
        assert_eq!(o.data["spec"]["kind"], "scale_brokers");
        assert_eq!(o.data["status"]["phase"], "AwaitingApproval");
        assert_eq!(o.data["status"]["step"], "await_approval");
        assert!(!journal.approved(&id).await.unwrap());

        // The agent's pod moves: a new process, a new client, the same operation.
        drop(first);
        let client2 =
            autopilot::backend::kube::client(&autopilot::config::KubernetesConfig { url: Some(stack.kube.clone()) })
                .await
                .unwrap();
        let journal2: Arc<dyn Journal> = Arc::new(KubeJournal::new(client2, "kafka", "e2e"));
        let shared2 = Shared::new(Limits::default(), false, journal2.clone());
        let mut second = ClusterExecutor::new("test", sim.backends(), shared2, Events::default()).await.unwrap();
        let resumed = second.operation().expect("resumed from Kubernetes").clone();
        assert_eq!(resumed.id, id);
        assert!(matches!(resumed.step, Step::AwaitApproval { .. }));

        // An operator approves, like `strimzi.io/rebalance=approve`.
        let patch = json!({"metadata": {"annotations": {ANNOTATION_APPROVE: "true"}}});
        api.patch(&object_name(&id), &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let s = snapshot(&sim).await;
        second.progress(&s, s.at + Duration::from_secs(1)).await;
        assert_eq!(sim.lock().unwrap().node_pool_replicas(), 5, "acted once approved");
        let o = api.get(&object_name(&id)).await.unwrap();
        assert_eq!(o.data["status"]["phase"], "Running");
        assert_eq!(o.data["status"]["step"], "await_brokers");

        // Finished operations leave the journal.
        journal2.remove(&id).await.unwrap();
        assert!(api.get_opt(&object_name(&id)).await.unwrap().is_none());
        assert!(journal2.load().await.unwrap().is_empty());
    }
}
