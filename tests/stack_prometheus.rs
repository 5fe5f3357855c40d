//! The Prometheus adapter against the local stack's Prometheus, which holds 15 minutes of
//! backfilled history and scrapes a live exporter serving Strimzi-shaped series (cAdvisor,
//! kube-state-metrics limits, kubelet volume stats). Needs `scripts/stack.sh up`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use autopilot::backend::prometheus::PrometheusMetrics;
use autopilot::backend::MetricsSource;
use autopilot::config::PrometheusConfig;
use autopilot::snapshot::window::{held, windowed, Comparison, ConditionSpec, Metric};
use autopilot::time::Timestamp;
use support::stack::Stack;

fn config(url: &str, queries: &[(&str, &str)]) -> PrometheusConfig {
    PrometheusConfig {
        url: url.to_owned(),
        timeout: Duration::from_secs(5),
        step: Duration::from_secs(15),
        network_bytes_per_second: 1_250_000_000,
        queries: queries.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
    }
}

#[tokio::test]
async fn ten_minutes_of_history_for_every_broker_and_input() {
    let stack = Stack::get();
    let p = PrometheusMetrics::new(&config(&stack.prometheus, &[]), "kafka", "prod-kafka-01", "brokers").unwrap();
    let now = Timestamp::now();
    let m = p.collect(Duration::from_secs(900), now).await.unwrap();
    assert_eq!(m.brokers.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2], "{:?}", m.brokers.keys());
    let cpu_high =
        ConditionSpec { name: "cpu_high".into(), metric: Metric::Cpu, comparison: Comparison::Above, threshold: 0.75 };
    for (id, s) in &m.brokers {
        let cpu = windowed(&s.cpu, now);
        assert!(cpu.window_seconds >= 600.0, "broker {id}: only {}s of history", cpu.window_seconds);
        assert!((cpu.avg_10m.unwrap() - 0.80).abs() < 0.05 && cpu.min_10m.unwrap() > 0.70, "broker {id} cpu {cpu:?}");
        assert!(cpu.age_seconds.unwrap() < 90.0, "live samples follow the backfill: {cpu:?}");
        let h = held(&s.cpu, &cpu_high, now, Duration::from_secs(90));
        assert!(h.holds && h.held_seconds >= 600.0, "broker {id}: {h:?}");
        for (name, series, want) in
            [("memory", &s.memory, 0.85), ("disk", &s.disk, 0.30), ("network", &s.network, 0.20)]
        {
            let w = windowed(series, now);
            assert!((w.avg_5m.unwrap() - want).abs() < 0.05, "broker {id} {name} {w:?}");
        }
    }
}

#[tokio::test]
async fn an_empty_answer_leaves_the_input_missing() {
    let stack = Stack::get();
    let overrides = [("memory", r#"no_such_metric{namespace="$namespace",pod=~"$pods"}"#)];
    let p =
        PrometheusMetrics::new(&config(&stack.prometheus, &overrides), "kafka", "prod-kafka-01", "brokers").unwrap();
    let m = p.collect(Duration::from_secs(600), Timestamp::now()).await.unwrap();
    assert!(m.brokers.values().all(|s| s.memory.is_empty() && !s.cpu.is_empty()));
    // The snapshot marks such brokers stale (see snapshot::tests::a_partial_metrics_answer_is_stale).
}

#[tokio::test]
async fn a_bad_query_is_an_error_naming_the_input() {
    let stack = Stack::get();
    let p =
        PrometheusMetrics::new(&config(&stack.prometheus, &[("disk", "sum(")]), "kafka", "prod-kafka-01", "brokers")
            .unwrap();
    let e = p.collect(Duration::from_secs(600), Timestamp::now()).await.unwrap_err();
    assert!(e.to_string().contains("`disk`"), "{e}");
}
