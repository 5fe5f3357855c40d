use std::collections::{BTreeMap, BTreeSet};

use super::synthetic::{problem, Shape};
use super::*;

/// The assignment after applying the plan.
fn after(p: &Problem, plan: &Plan) -> BTreeMap<(String, i32), Vec<i32>> {
    let mut a: BTreeMap<(String, i32), Vec<i32>> =
        p.partitions.iter().map(|x| ((x.topic.clone(), x.partition), x.replicas.clone())).collect();
    for m in &plan.moves {
        assert_eq!(a[&(m.topic.clone(), m.partition)], m.from, "a move starts from the current replicas");
        a.insert((m.topic.clone(), m.partition), m.to.clone());
    }
    a
}

/// Hard goals and bookkeeping every plan must satisfy.
fn check(p: &Problem, plan: &Plan) -> BTreeMap<i32, usize> {
    let role: BTreeMap<i32, Role> = p.brokers.iter().map(|b| (b.id, b.role)).collect();
    let rack: BTreeMap<i32, Option<&str>> = p.brokers.iter().map(|b| (b.id, b.rack.as_deref())).collect();
    let racks = p.brokers.iter().filter(|b| b.role == Role::Active).filter_map(|b| b.rack.as_deref());
    let k = racks.collect::<BTreeSet<_>>().len();
    let mut counts: BTreeMap<i32, usize> =
        p.brokers.iter().filter(|b| b.role == Role::Active).map(|b| (b.id, 0)).collect();
    let original: BTreeMap<(String, i32), &PartitionSpec> =
        p.partitions.iter().map(|x| ((x.topic.clone(), x.partition), x)).collect();
    for (key, replicas) in after(p, plan) {
        let distinct: BTreeSet<_> = replicas.iter().collect();
        assert_eq!(distinct.len(), replicas.len(), "{key:?} has a broker twice: {replicas:?}");
        assert_eq!(replicas.len(), original[&key].replicas.len(), "{key:?} changed replication factor");
        let in_racks: BTreeSet<_> = replicas.iter().map(|r| rack[r]).collect();
        assert!(in_racks.len() >= replicas.len().min(k), "{key:?} on racks {in_racks:?}");
        for r in &replicas {
            assert_ne!(role[r], Role::Drain, "{key:?} still on drained broker {r}");
            *counts.entry(*r).or_default() += 1;
        }
    }
    let moved: u64 = plan.moves.iter().map(|m| u64::from(m.replicas_moved)).sum();
    assert_eq!(plan.stats.replica_moves, moved);
    assert_eq!(plan.stats.rack_violations_after, 0);
    assert_eq!(plan.stats.unplaced, 0);
    counts
}

fn spread(counts: &BTreeMap<i32, usize>) -> usize {
    counts.values().max().unwrap() - counts.values().min().unwrap()
}

fn within_five_percent(plan: &Plan) {
    let s = &plan.stats;
    assert!(s.replica_moves >= s.lower_bound, "{s:?}");
    assert!(
        s.replica_moves as f64 <= s.lower_bound as f64 * 1.05,
        "moves {} vs bound {}",
        s.replica_moves,
        s.lower_bound
    );
}

#[test]
fn added_brokers_get_their_share_with_the_fewest_moves() {
    let mut p = problem(&Shape::new(12, 3, 1200));
    let new = files::add_brokers(&mut p.brokers, 3);
    assert_eq!(new, vec![13, 14, 15]);
    let plan = plan(&p).unwrap();
    let counts = check(&p, &plan);
    assert!(spread(&counts) <= 1, "15 brokers in 3 equal racks balance exactly: {counts:?}");
    assert_eq!(plan.stats.spread_after, spread(&counts) as u64);
    assert!(new.iter().all(|b| counts[b] >= 239), "{counts:?}");
    within_five_percent(&plan);
    assert!(plan.stats.leader_spread_after <= 1, "{:?}", plan.stats);
    assert_eq!(plan, super::plan(&p).unwrap(), "deterministic");
}

#[test]
fn unequal_racks_balance_within_each_rack() {
    let mut p = problem(&Shape::new(10, 3, 1000));
    files::add_brokers(&mut p.brokers, 2);
    let plan = plan(&p).unwrap();
    check(&p, &plan);
    assert!(plan.stats.rack_spread_after <= 1, "{:?}", plan.stats);
    assert_eq!(plan.stats.spread_after, plan.stats.reachable_spread, "{:?}", plan.stats);
    within_five_percent(&plan);
}

#[test]
fn draining_a_broker_moves_exactly_its_replicas() {
    let mut p = problem(&Shape::new(9, 3, 900));
    let hosted = p.partitions.iter().filter(|x| x.replicas.contains(&5)).count() as u64;
    p.brokers[4].role = Role::Drain;
    let plan = plan(&p).unwrap();
    let counts = check(&p, &plan);
    assert_eq!(plan.stats.replica_moves, hosted);
    assert_eq!(plan.stats.lower_bound, hosted);
    assert!(plan.stats.rack_spread_after <= 1, "{counts:?}");
}

#[test]
fn draining_a_whole_rack_keeps_two_racks_per_partition() {
    let mut p = problem(&Shape::new(9, 3, 300));
    for b in p.brokers.iter_mut().filter(|b| b.rack.as_deref() == Some("rack-2")) {
        b.role = Role::Drain;
    }
    let plan = plan(&p).unwrap();
    let counts = check(&p, &plan);
    assert!(spread(&counts) <= 1, "{counts:?}");
}

#[test]
fn a_skewed_assignment_is_evened_out() {
    let p = problem(&Shape::new(12, 3, 2400).skewed(4));
    let plan = plan(&p).unwrap();
    assert!(plan.stats.spread_before > 100, "the generator skews: {:?}", plan.stats);
    let counts = check(&p, &plan);
    assert!(spread(&counts) <= 1, "{counts:?}");
    within_five_percent(&plan);
    assert!(plan.stats.leader_spread_after <= 1, "{:?}", plan.stats);
}

#[test]
fn rack_violations_are_repaired() {
    let mut p = problem(&Shape::new(6, 3, 60));
    // Brokers 1 and 4 are both in rack-0.
    p.partitions[0].replicas = vec![1, 4, 2];
    let plan = plan(&p).unwrap();
    assert_eq!(plan.stats.rack_violations_before, 1);
    check(&p, &plan);
    assert!(plan.stats.lower_bound >= 1);
}

#[test]
fn a_balanced_cluster_needs_no_moves() {
    let p = problem(&Shape::new(6, 3, 600));
    let plan = plan(&p).unwrap();
    assert_eq!(plan.stats.replica_moves, 0, "{:?}", plan.stats);
    assert_eq!(plan.stats.lower_bound, 0);
}

#[test]
fn no_broker_ends_over_capacity() {
    let mut p = problem(&Shape::new(6, 3, 300));
    let used: u64 = p.partitions.iter().filter(|x| x.replicas.contains(&1)).map(|x| x.size_bytes).sum();
    p.brokers[0].capacity_bytes = Some(used / 2);
    let plan = plan(&p).unwrap();
    assert!(plan.stats.over_capacity_after.is_empty(), "{:?}", plan.stats);
    check(&p, &plan);
    let after = after(&p, &plan);
    let sizes: BTreeMap<(String, i32), u64> =
        p.partitions.iter().map(|x| ((x.topic.clone(), x.partition), x.size_bytes)).collect();
    let on_1: u64 = after.iter().filter(|(_, r)| r.contains(&1)).map(|(k, _)| sizes[k]).sum();
    assert!(on_1 <= used / 2, "{on_1} > {}", used / 2);
}

#[test]
fn without_racks_brokers_are_balanced_and_distinct() {
    let mut p = problem(&Shape::new(5, 1, 500));
    for b in &mut p.brokers {
        b.rack = None;
    }
    files::add_brokers(&mut p.brokers, 2);
    let plan = plan(&p).unwrap();
    let counts = check(&p, &plan);
    assert!(spread(&counts) <= 1, "{counts:?}");
}

#[test]
fn frozen_brokers_keep_their_replicas_and_lose_preferred_leadership() {
    let mut p = problem(&Shape::new(6, 3, 300));
    p.brokers[1].role = Role::Frozen;
    let plan = plan(&p).unwrap();
    for (key, r) in after(&p, &plan) {
        let was = p.partitions.iter().find(|x| (x.topic.clone(), x.partition) == key).unwrap();
        assert_eq!(was.replicas.contains(&2), r.contains(&2), "{key:?}");
        assert_ne!(r[0], 2, "{key:?} still prefers the frozen broker");
    }
}

#[rstest::rstest]
#[case::unknown(vec![1, 9], "broker 9, which is not in the broker list")]
#[case::twice(vec![1, 1], "lists broker 1 twice")]
#[case::empty(vec![], "has no replicas")]
fn bad_input_is_named(#[case] replicas: Vec<i32>, #[case] expected: &str) {
    let mut p = problem(&Shape::new(3, 3, 3));
    p.partitions[1].replicas = replicas;
    let err = plan(&p).unwrap_err().to_string();
    assert!(err.contains("topic-0000-1") && err.contains(expected), "{err}");
}

#[test]
fn no_active_broker_is_an_error() {
    let mut p = problem(&Shape::new(3, 3, 3));
    for b in &mut p.brokers {
        b.role = Role::Drain;
    }
    assert_eq!(plan(&p).unwrap_err(), Error::NoActiveBrokers);
}

mod kafka_files {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_kafka_formats_and_writes_a_reassignment() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            &dir,
            "current.json",
            r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2],"log_dirs":["any","any"]},
                {"topic":"t","partition":1,"replicas":[1,2]}]}"#,
        );
        let b = write(
            &dir,
            "brokers.json",
            r#"[{"id":1,"rack":"a"},{"id":2,"rack":"b"},{"id":3,"rack":"a","capacity_bytes":5}]"#,
        );
        let l = write(
            &dir,
            "dirs.json",
            "Querying brokers for log directories information\nReceived log directory information from brokers 1,2\n\
             {\"version\":1,\"brokers\":[{\"broker\":1,\"logDirs\":[{\"logDir\":\"/d\",\"error\":null,\"partitions\":[\
             {\"partition\":\"t-0\",\"size\":7,\"offsetLag\":0,\"isFuture\":false},{\"partition\":\"t-1\",\"size\":3,\"offsetLag\":0,\"isFuture\":false}]}]}]}\n",
        );
        let parts = files::read_assignment(&a).unwrap();
        assert_eq!(parts.len(), 2);
        let brokers = files::read_brokers(&b).unwrap();
        assert_eq!(brokers[2].capacity_bytes, Some(5));
        let sizes = files::read_log_dirs(&l).unwrap();
        assert_eq!(sizes[&("t".to_owned(), 0)], 7);
        let json = serde_json::to_value(files::reassignment(&[Move {
            topic: "t".into(),
            partition: 0,
            from: vec![1, 2],
            to: vec![3, 2],
            replicas_moved: 1,
            bytes: 7,
        }]))
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[3,2],"log_dirs":["any","any"]}]})
        );
    }

    #[test]
    fn bad_files_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(&dir, "current.json", r#"{"version":2,"partitions":[]}"#);
        assert!(files::read_assignment(&a).unwrap_err().to_string().contains("unsupported reassignment version 2"));
        let b = write(&dir, "brokers.json", r#"[{"id":1,"rac":"a"}]"#);
        let err = files::read_brokers(&b).unwrap_err();
        assert!(err.to_string().contains("brokers.json is not a valid broker list"), "{err}");
        let chain = format!("{:?}", anyhow::Error::from(err));
        assert!(chain.contains("unknown field `rac`"), "{chain}");
        let missing = dir.path().join("missing.json");
        assert!(files::read_brokers(&missing).unwrap_err().to_string().contains("cannot read"));
    }
}
