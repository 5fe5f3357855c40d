use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::backend::sim::{Fault, Load};
use crate::backend::PartitionTarget;
use crate::events::{Recorder, Sink};
use crate::fixtures::{self, advance};
use crate::plan::Planned;
use crate::snapshot::BrokerTracker;

const HOT: Load = Load { cpu: 0.8, memory: 0.85 };

fn scale(from: u32, to: u32) -> Plan {
    Plan {
        actions: vec![Planned {
            // Simulated brokers have ids 0..n: a scale-down removes the highest.
            action: Action::ScaleBrokers {
                from,
                to,
                remove: (to as i32..from as i32).rev().collect(),
                drain_timeout: Duration::from_secs(1800),
            },
            rule: "test_rule".into(),
            message: String::new(),
            approval_required: false,
        }],
        deferred: Vec::new(),
    }
}

fn limits() -> Limits {
    Limits { actions_per_minute: 60, ..Limits::default() }
}

struct Harness {
    sim: crate::backend::sim::SimBackend,
    exec: ClusterExecutor,
    tracker: BrokerTracker,
    recorder: Arc<Recorder>,
}

impl Harness {
    async fn new(shared: Arc<Shared>) -> Self {
        let sim = fixtures::sim(3, HOT);
        let recorder = Arc::new(Recorder::default());
        let events = Events::new(vec![recorder.clone() as Arc<dyn Sink>]);
        let exec = ClusterExecutor::new("test", sim.backends(), shared, events).await.unwrap();
        Self { sim, exec, tracker: BrokerTracker::default(), recorder }
    }

    async fn tick(&mut self, plan: &Plan) -> Snapshot {
        let s = fixtures::snapshot(&self.sim, &mut self.tracker).await;
        self.exec.progress(&s, s.at).await;
        self.exec.apply(plan, &s, s.at).await;
        s
    }

    /// Run ticks every 30 s until the operation ends or `limit` passes.
    async fn run_until_idle(&mut self, limit: Duration) {
        let mut waited = Duration::ZERO;
        while self.exec.operation().is_some() && waited < limit {
            advance(&self.sim, Duration::from_secs(30));
            waited += Duration::from_secs(30);
            self.tick(&Plan::default()).await;
        }
    }

    fn outcomes(&self) -> Vec<Outcome> {
        self.recorder
            .events()
            .into_iter()
            .filter_map(|e| match e.body {
                Body::Outcome { result, .. } => Some(result),
                _ => None,
            })
            .collect()
    }

    fn deferred(&self) -> Vec<String> {
        self.recorder
            .events()
            .into_iter()
            .filter_map(|e| match e.body {
                Body::Deferred { why, .. } => Some(why),
                _ => None,
            })
            .collect()
    }
}

#[tokio::test]
async fn scale_up_runs_every_step_and_succeeds() {
    let mut h = Harness::new(Shared::new(limits(), false, Arc::new(MemoryJournal::default()))).await;
    h.tick(&scale(3, 5)).await;
    assert!(h.exec.operation().is_some());
    h.run_until_idle(Duration::from_secs(3600)).await;
    assert_eq!(h.outcomes(), vec![Outcome::Succeeded]);
    let c = h.sim.lock().unwrap();
    assert_eq!(c.node_pool_replicas(), 5);
    assert!(c.replication_throttle().is_none(), "throttle cleared");
    let calls = c.calls().join(" ");
    for call in [
        "scale_node_pool(5)",
        "set_replication_throttle(Some(",
        "reassign(",
        "set_replication_throttle(None)",
        "elect_preferred_leaders",
    ] {
        assert!(calls.contains(call), "{call} missing from {calls}");
    }
    assert!(h.exec.history().last_finished.contains_key(&ActionKind::ScaleBrokers));
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let mut h = Harness::new(Shared::new(limits(), true, Arc::new(MemoryJournal::default()))).await;
    h.tick(&scale(3, 5)).await;
    assert!(h.exec.operation().is_none());
    assert_eq!(h.outcomes(), vec![Outcome::DryRun]);
    assert_eq!(h.sim.lock().unwrap().node_pool_replicas(), 3);
    assert!(h.sim.lock().unwrap().calls().is_empty());
}

#[tokio::test]
async fn one_operation_per_cluster() {
    let mut h = Harness::new(Shared::new(limits(), false, Arc::new(MemoryJournal::default()))).await;
    h.tick(&scale(3, 5)).await;
    advance(&h.sim, Duration::from_secs(30));
    h.tick(&scale(3, 4)).await;
    assert!(h.deferred().iter().any(|w| w.contains("in flight")), "{:?}", h.deferred());
}

#[tokio::test]
async fn the_global_rate_limit_and_concurrency_hold_across_clusters() {
    let limited = Limits { actions_per_minute: 1, concurrent_actions: 5, ..Limits::default() };
    let shared = Shared::new(limited, false, Arc::new(MemoryJournal::default()));
    let mut a = Harness::new(shared.clone()).await;
    let mut b = Harness::new(shared.clone()).await;
    a.tick(&scale(3, 5)).await;
    b.tick(&scale(3, 5)).await;
    assert!(b.deferred().iter().any(|w| w.contains("rate limit")), "{:?}", b.deferred());

    let one_at_a_time = Limits { actions_per_minute: 60, concurrent_actions: 1, ..Limits::default() };
    let shared = Shared::new(one_at_a_time, false, Arc::new(MemoryJournal::default()));
    let mut a = Harness::new(shared.clone()).await;
    let mut b = Harness::new(shared.clone()).await;
    a.tick(&scale(3, 5)).await;
    b.tick(&scale(3, 5)).await;
    assert!(b.deferred().iter().any(|w| w.contains("already in flight across clusters")), "{:?}", b.deferred());
    a.run_until_idle(Duration::from_secs(3600)).await;
    b.tick(&scale(3, 5)).await;
    assert!(b.exec.operation().is_some(), "the slot is released when the first operation ends");
}

#[tokio::test]
async fn a_restart_resumes_from_the_journal_without_repeating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.json");
    let journal: Arc<dyn Journal> = Arc::new(FileJournal::open(&path).unwrap());
    let mut h = Harness::new(Shared::new(limits(), false, journal)).await;
    h.tick(&scale(3, 5)).await;
    let id = h.exec.operation().unwrap().id.clone();
    // The agent dies here; a new one opens the same journal file.
    let reopened: Arc<dyn Journal> = Arc::new(FileJournal::open(&path).unwrap());
    let recorder = Arc::new(Recorder::default());
    let events = Events::new(vec![recorder.clone() as Arc<dyn Sink>]);
    let exec =
        ClusterExecutor::new("test", h.sim.backends(), Shared::new(limits(), false, reopened), events).await.unwrap();
    let op = exec.operation().expect("operation resumed");
    assert_eq!(op.id, id);
    assert_eq!(op.step, Step::AwaitBrokers { replicas: 5 });
    h.exec = exec;
    h.recorder = recorder;
    h.run_until_idle(Duration::from_secs(3600)).await;
    assert_eq!(h.outcomes(), vec![Outcome::Succeeded]);
    let calls = h.sim.lock().unwrap().calls().to_vec();
    assert_eq!(calls.iter().filter(|c| c.starts_with("scale_node_pool")).count(), 1, "patched once: {calls:?}");
    let left = FileJournal::open(&path).unwrap().load().await.unwrap();
    assert!(left.is_empty(), "finished operations leave the journal: {left:?}");
}

#[tokio::test]
async fn an_interrupted_pod_deletion_is_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.json");
    let s = {
        let sim = fixtures::sim(3, HOT);
        fixtures::snapshot(&sim, &mut BrokerTracker::default()).await
    };
    let mut op = Operation::start(
        "op-1".into(),
        &Planned {
            action: Action::RestartPod { broker: 1 },
            rule: "r".into(),
            message: String::new(),
            approval_required: false,
        },
        &s,
        s.at,
        Duration::from_secs(600),
    );
    op.effect_started = true;
    FileJournal::open(&path).unwrap().save(&op).await.unwrap();
    let shared = Shared::new(limits(), false, Arc::new(FileJournal::open(&path).unwrap()));
    let exec = ClusterExecutor::new("test", fixtures::sim(3, HOT).backends(), shared, Events::default()).await.unwrap();
    assert_eq!(exec.operation().unwrap().step, Step::AwaitBroker { broker: 1 });
}

#[tokio::test]
async fn a_failed_broker_during_reassignment_rolls_back() {
    let mut h = Harness::new(Shared::new(limits(), false, Arc::new(MemoryJournal::default()))).await;
    h.tick(&scale(3, 5)).await;
    // Let the brokers join and the moves start, then kill a broker.
    for _ in 0..4 {
        advance(&h.sim, Duration::from_secs(30));
        h.tick(&Plan::default()).await;
    }
    assert!(matches!(h.exec.operation().unwrap().step, Step::AwaitReassignment { .. }), "{:?}", h.exec.operation());
    h.sim.lock().unwrap().inject(&Fault::BrokerDown { broker: 1, duration: None }).unwrap();
    h.run_until_idle(Duration::from_secs(600)).await;
    assert_eq!(h.outcomes(), vec![Outcome::RolledBack]);
    let c = h.sim.lock().unwrap();
    assert_eq!(c.reassignments(), 0, "in-flight reassignments cancelled");
    assert!(c.replication_throttle().is_none());
    assert!(c.calls().iter().any(|x| x.starts_with("cancel_reassignments")));
    assert_eq!(c.node_pool_replicas(), 5, "ready brokers are kept");
}

#[tokio::test]
async fn a_rejected_request_fails_the_operation() {
    let mut h = Harness::new(Shared::new(limits(), false, Arc::new(MemoryJournal::default()))).await;
    h.tick(&Plan {
        actions: vec![Planned {
            action: Action::RestartPod { broker: 9 },
            rule: "r".into(),
            message: String::new(),
            approval_required: false,
        }],
        deferred: Vec::new(),
    })
    .await;
    assert_eq!(h.outcomes(), vec![Outcome::Failed], "a rejected request (unknown pod) fails the operation");
}

#[derive(Debug)]
struct Follower;

impl LeaderGate for Follower {
    fn is_leader(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn a_follower_never_acts() {
    let shared = Shared::with_leader(limits(), false, Arc::new(MemoryJournal::default()), Arc::new(Follower));
    let mut h = Harness::new(shared).await;
    h.tick(&scale(3, 5)).await;
    assert!(h.exec.operation().is_none());
    assert!(h.deferred().iter().any(|w| w.contains("leader lease")), "{:?}", h.deferred());
    assert!(h.sim.lock().unwrap().calls().is_empty());
}

#[tokio::test]
async fn an_operation_needing_approval_waits_for_it() {
    let journal = Arc::new(MemoryJournal::default());
    let mut h = Harness::new(Shared::new(limits(), false, journal.clone())).await;
    let mut plan = scale(3, 5);
    plan.actions[0].approval_required = true;
    h.tick(&plan).await;
    for _ in 0..3 {
        advance(&h.sim, Duration::from_secs(30));
        h.tick(&Plan::default()).await;
    }
    let op = h.exec.operation().unwrap().clone();
    assert!(matches!(op.step, Step::AwaitApproval { .. }), "{:?}", op.step);
    assert!(h.sim.lock().unwrap().calls().is_empty(), "nothing done before approval");
    journal.approve(&op.id).unwrap();
    h.run_until_idle(Duration::from_secs(3600)).await;
    assert_eq!(h.outcomes(), vec![Outcome::Succeeded]);
    assert_eq!(h.sim.lock().unwrap().node_pool_replicas(), 5);
}

#[tokio::test]
async fn batches_respect_the_per_broker_and_per_cluster_limits() {
    let sim = fixtures::sim(3, HOT);
    let s = fixtures::snapshot(&sim, &mut BrokerTracker::default()).await;
    // Every partition moves its first replica to a new broker 9 (the target need not exist for
    // batching, which only looks at who gives and who receives).
    let moves: Vec<PartitionTarget> = s
        .all_partitions()
        .map(|p| {
            let mut replicas = p.replicas.clone();
            replicas[0] = 9;
            PartitionTarget { topic: p.topic.clone(), partition: p.partition, replicas }
        })
        .collect();
    let pacing = Pacing { throttle: None, moves_per_broker: 2, moves_per_cluster: 100 };
    let (batch, rest) = operation::next_batch(&moves, &s, &pacing);
    assert_eq!(batch.len(), 2, "broker 9 receives every move: two at a time");
    assert_eq!(batch.len() + rest.len(), moves.len());
    let wide = Pacing { moves_per_broker: 100, moves_per_cluster: 3, ..pacing };
    assert_eq!(operation::next_batch(&moves, &s, &wide).0.len(), 3, "the cluster limit");
    // Moves the cluster already shows done are dropped.
    let done: Vec<PartitionTarget> = s
        .all_partitions()
        .map(|p| PartitionTarget { topic: p.topic.clone(), partition: p.partition, replicas: p.replicas.clone() })
        .collect();
    assert_eq!(operation::next_batch(&done, &s, &pacing), (Vec::new(), Vec::new()));
}

#[tokio::test]
async fn a_scale_down_drains_exactly_the_brokers_it_names() {
    let shared = Shared::new(limits(), false, Arc::new(MemoryJournal::default()));
    let mut h = Harness::new(shared).await;
    h.sim.backends().kube.scale_node_pool(5, &[]).await.unwrap();
    advance(&h.sim, Duration::from_secs(600));
    h.tick(&Plan::default()).await;
    let mut plan = scale(5, 3);
    if let Action::ScaleBrokers { remove, .. } = &mut plan.actions[0].action {
        *remove = vec![1, 4];
    }
    h.tick(&plan).await;
    h.run_until_idle(Duration::from_secs(3600)).await;
    assert_eq!(h.outcomes(), vec![Outcome::Succeeded]);
    let calls = h.sim.lock().unwrap().calls().to_vec();
    assert!(calls.contains(&"scale_node_pool(3, remove [1, 4])".to_owned()), "{calls:?}");
    let left: Vec<i32> =
        fixtures::snapshot(&h.sim, &mut BrokerTracker::default()).await.brokers.iter().map(|b| b.id).collect();
    assert_eq!(left, vec![0, 2, 3]);
}
