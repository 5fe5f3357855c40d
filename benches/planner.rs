//! The rebalance planner at the size of a large cluster: 100 brokers in 3 racks, 100,000
//! partitions of replication factor 3 (300,000 replicas), for (a) adding 10 brokers,
//! (b) removing one broker and (c) evening out a skewed assignment.
//!
//! Before timing, each case is planned once and its quality printed and checked: no rack
//! violation, every hard goal met, replica spread within one per rack (and globally the best
//! rack awareness allows), replica moves within 5% of the lower bound. A plan that misses them
//! stops the bench.

use std::hint::black_box;

use autopilot::planner::synthetic::{problem, Shape};
use autopilot::planner::{self, files, Problem, Role};
use criterion::{criterion_group, criterion_main, Criterion};

const SHAPE: Shape = Shape::new(100, 3, 100_000);

fn cases() -> Vec<(&'static str, Problem)> {
    let mut add = problem(&SHAPE);
    files::add_brokers(&mut add.brokers, 10);
    let mut remove = problem(&SHAPE);
    remove.brokers[41].role = Role::Drain;
    let skewed = problem(&SHAPE.skewed(4));
    vec![("add_10_brokers", add), ("remove_1_broker", remove), ("rebalance_skewed", skewed)]
}

#[allow(clippy::print_stderr)]
fn check(name: &str, p: &Problem) {
    let started = std::time::Instant::now();
    let plan = planner::plan(p).unwrap_or_else(|e| panic!("{name}: {e}"));
    let s = &plan.stats;
    eprintln!(
        "{name}: {:.0?}; replica moves {} (lower bound {}, +{:.2}%), leader changes {}, spread {} -> {} (reachable {}, within racks {}), leader spread {} -> {}, rack violations {} -> {}",
        started.elapsed(),
        s.replica_moves,
        s.lower_bound,
        (s.replica_moves as f64 / s.lower_bound.max(1) as f64 - 1.0) * 100.0,
        s.leader_changes,
        s.spread_before,
        s.spread_after,
        s.reachable_spread,
        s.rack_spread_after,
        s.leader_spread_before,
        s.leader_spread_after,
        s.rack_violations_before,
        s.rack_violations_after,
    );
    assert_eq!(s.rack_violations_after, 0, "{name}");
    assert_eq!(s.unplaced, 0, "{name}");
    assert!(s.rack_spread_after <= 1, "{name}: {s:?}");
    assert!(s.spread_after <= s.reachable_spread.max(1), "{name}: {s:?}");
    assert!(s.replica_moves as f64 <= s.lower_bound as f64 * 1.05, "{name}: {s:?}");
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("planner_100_brokers_100k_partitions");
    group.sample_size(10);
    for (name, p) in cases() {
        check(name, &p);
        group.bench_function(name, |b| b.iter(|| planner::plan(black_box(&p))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
