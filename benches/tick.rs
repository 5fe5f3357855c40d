//! One whole tick of the pure pipeline (snapshot -> policy -> plan) at 3, 30 and 300 brokers,
//! and its stages on their own. Inputs come from the simulated cluster after 15 minutes of
//! sustained load, so every series holds 60 samples per metric and the scaling policy fires.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use autopilot::backend::sim::{ClusterSpec, Load, SimBackend, SimCluster};
use autopilot::collect::{self, Observations};
use autopilot::config::Limits;
use autopilot::plan::{self, History};
use autopilot::policy::{self, PolicySet};
use autopilot::rebalance;
use autopilot::snapshot::{self, BrokerTracker, SnapshotOptions};
use autopilot::time::Timestamp;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const SIZES: [u32; 3] = [3, 30, 300];
/// Partitions per broker (replication factor 3): 3 000 partitions at 300 brokers.
const PARTITIONS_PER_BROKER: u32 = 10;
const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

struct Fixture {
    obs: Observations,
    now: Timestamp,
    opts: SnapshotOptions,
}

fn fixture(brokers: u32, policies: &PolicySet) -> Fixture {
    let mut c = SimCluster::new(ClusterSpec::uniform("bench", brokers, PARTITIONS_PER_BROKER), T0)
        .unwrap_or_else(|e| panic!("{e}"));
    c.set_load(Load { cpu: 0.8, memory: 0.85 });
    let now = T0 + Duration::from_secs(900);
    c.advance_to(now);
    let sim = SimBackend::new(c);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap_or_else(|e| panic!("{e}"));
    let obs = rt.block_on(collect::collect("bench", &sim.backends(), Duration::from_secs(900), now));
    let settings = policies.settings();
    let opts = SnapshotOptions {
        conditions: settings.conditions.clone(),
        max_data_age: Duration::from_secs(90),
        heartbeat_timeout: settings.heartbeat_timeout,
        broker_quota: None,
    };
    Fixture { obs, now, opts }
}

fn policies() -> PolicySet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    // Room to grow at every size, so each tick plans a real scale_brokers action.
    let overrides = serde_json::json!({"autopilot": {"scaling": {"max_brokers": 1000}}});
    PolicySet::load(&dir, Some(&overrides), Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"))
}

fn one_tick(f: &Fixture, policies: &PolicySet, limits: &Limits) -> usize {
    let mut tracker = BrokerTracker::default();
    let s = snapshot::build(&f.obs, &f.opts, &mut tracker, f.now);
    let history = History::default();
    let input = PolicySet::to_input(&policy::input(&s, &history, "bench", false, &[])).unwrap_or_default();
    let eval = policies.evaluate(&input).unwrap_or_default();
    let p = plan::plan(&s, &eval.decisions, &history, limits, f.now);
    p.actions.len()
}

fn bench_tick(c: &mut Criterion) {
    let policies = policies();
    let limits = Limits::default();
    let mut group = c.benchmark_group("tick");
    for brokers in SIZES {
        let f = fixture(brokers, &policies);
        let s = snapshot::build(&f.obs, &f.opts, &mut BrokerTracker::default(), f.now);
        let input =
            PolicySet::to_input(&policy::input(&s, &History::default(), "bench", false, &[])).unwrap_or_default();
        let eval = policies.evaluate(&input).unwrap_or_default();
        assert_eq!(
            one_tick(&f, &policies, &limits),
            1,
            "the scaling policy must fire: complete={} data={:?} conditions={:?} errors={:?} decisions={:?}",
            s.complete,
            s.data,
            s.conditions,
            eval.errors,
            eval.decisions
        );
        group.bench_with_input(BenchmarkId::from_parameter(brokers), &f, |b, f| {
            b.iter(|| one_tick(black_box(f), &policies, &limits))
        });
    }
    group.finish();
}

fn bench_stages(c: &mut Criterion) {
    let policies = policies();
    let mut group = c.benchmark_group("stage");
    for brokers in SIZES {
        let f = fixture(brokers, &policies);
        group.bench_with_input(BenchmarkId::new("snapshot", brokers), &f, |b, f| {
            b.iter(|| snapshot::build(black_box(&f.obs), &f.opts, &mut BrokerTracker::default(), f.now))
        });
        let s = snapshot::build(&f.obs, &f.opts, &mut BrokerTracker::default(), f.now);
        let input =
            PolicySet::to_input(&policy::input(&s, &History::default(), "bench", false, &[])).unwrap_or_default();
        group.bench_with_input(BenchmarkId::new("policy", brokers), &input, |b, input| {
            b.iter(|| policies.evaluate(black_box(input)))
        });
        group.bench_with_input(BenchmarkId::new("rebalance_drain_one", brokers), &s, |b, s| {
            b.iter(|| rebalance::plan_moves(black_box(s), &[0]))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_tick, bench_stages);
criterion_main!(benches);
