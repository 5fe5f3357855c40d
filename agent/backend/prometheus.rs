//! Metrics from Prometheus: one range query per input over the collection window. This module
//! only performs I/O.
//!
//! The default queries match what a Strimzi installation on Kubernetes exports: cAdvisor's
//! `container_cpu_usage_seconds_total` and `container_memory_working_set_bytes` against the
//! pod's limits from kube-state-metrics, kubelet's `kubelet_volume_stats_*` per PVC, and
//! cAdvisor's network counters against the configured link speed. Each is overridable per
//! cluster; every query must return one series per broker pod, labelled `pod`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use prometheus_http_query::Client;

use super::{Error, MetricsSource};
use crate::collect::{BrokerSeries, MetricsObservation, Sample};
use crate::config::PrometheusConfig;
use crate::time::Timestamp;

/// Default PromQL per input. `$namespace`, `$pods` (regex of the node pool's broker pods),
/// `$pvcs` (regex of their volumes) and `$network_bytes_per_second` are filled in per cluster.
pub const DEFAULT_QUERIES: [(&str, &str); 4] = [
    (
        "cpu",
        r#"sum by (pod) (rate(container_cpu_usage_seconds_total{namespace="$namespace",pod=~"$pods",container="kafka"}[1m])) / sum by (pod) (kube_pod_container_resource_limits{namespace="$namespace",pod=~"$pods",container="kafka",resource="cpu"})"#,
    ),
    (
        "memory",
        r#"sum by (pod) (container_memory_working_set_bytes{namespace="$namespace",pod=~"$pods",container="kafka"}) / sum by (pod) (kube_pod_container_resource_limits{namespace="$namespace",pod=~"$pods",container="kafka",resource="memory"})"#,
    ),
    (
        "disk",
        r#"max by (pod) (label_replace(kubelet_volume_stats_used_bytes{namespace="$namespace",persistentvolumeclaim=~"$pvcs"} / kubelet_volume_stats_capacity_bytes{namespace="$namespace",persistentvolumeclaim=~"$pvcs"}, "pod", "$1", "persistentvolumeclaim", "data-[0-9]+-(.+)"))"#,
    ),
    (
        "network",
        r#"sum by (pod) (rate(container_network_receive_bytes_total{namespace="$namespace",pod=~"$pods"}[1m]) + rate(container_network_transmit_bytes_total{namespace="$namespace",pod=~"$pods"}[1m])) / $network_bytes_per_second"#,
    ),
];

/// A cluster's metrics in Prometheus.
#[derive(Clone)]
pub struct PrometheusMetrics {
    client: Client,
    url: String,
    /// Broker pods are `<prefix><id>`.
    pod_prefix: String,
    queries: BTreeMap<String, String>,
    timeout: Duration,
    step: Duration,
}

impl std::fmt::Debug for PrometheusMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusMetrics")
            .field("url", &self.url)
            .field("queries", &self.queries)
            .finish_non_exhaustive()
    }
}

impl PrometheusMetrics {
    /// Metrics of the node pool `pool` of Kafka cluster `kafka` in `namespace`.
    pub fn new(config: &PrometheusConfig, namespace: &str, kafka: &str, pool: &str) -> Result<Self, Error> {
        let client: Client = config
            .url
            .parse()
            .map_err(|e| Error::Rejected { message: format!("Prometheus URL {}: {e}", config.url) })?;
        let pod_prefix = format!("{kafka}-{pool}-");
        let pods = format!("{}[0-9]+", regex_escape(&pod_prefix));
        let pvcs = format!("data-[0-9]+-{pods}");
        let queries = DEFAULT_QUERIES
            .iter()
            .map(|(input, default)| {
                let template = config.queries.get(*input).map_or(*default, String::as_str);
                let q = template
                    .replace("$namespace", namespace)
                    .replace("$pods", &pods)
                    .replace("$pvcs", &pvcs)
                    .replace("$network_bytes_per_second", &config.network_bytes_per_second.to_string());
                ((*input).to_owned(), q)
            })
            .collect();
        Ok(Self { client, url: config.url.clone(), pod_prefix, queries, timeout: config.timeout, step: config.step })
    }

    /// The PromQL run for each input, after substitution.
    pub fn queries(&self) -> &BTreeMap<String, String> {
        &self.queries
    }

    fn broker_of(&self, labels: &std::collections::HashMap<String, String>) -> Option<i32> {
        labels.get("pod")?.strip_prefix(&self.pod_prefix)?.parse().ok()
    }

    async fn range(
        &self,
        input: &str,
        query: &str,
        window: Duration,
        now: Timestamp,
    ) -> Result<Vec<(i32, Vec<Sample>)>, Error> {
        let end = i64::try_from(now.as_millis() / 1000).unwrap_or(i64::MAX);
        let start = end - i64::try_from(window.as_secs()).unwrap_or(0);
        let timeout_ms = i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX);
        let request = self.client.query_range(query, start, end, self.step.as_secs_f64()).timeout(timeout_ms).get();
        let response = tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| Error::Timeout { after: self.timeout })?
            .map_err(|e| Error::Unavailable { message: format!("Prometheus {} query `{input}`: {e}", self.url) })?;
        let Some(matrix) = response.data().as_matrix() else {
            return Err(Error::Rejected { message: format!("query `{input}` did not return a range vector") });
        };
        let mut out = Vec::new();
        for series in matrix {
            let Some(broker) = self.broker_of(series.metric()) else { continue };
            let samples = series
                .samples()
                .iter()
                .filter(|s| s.value().is_finite())
                .map(|s| Sample {
                    at: Timestamp::from_millis((s.timestamp() * 1000.0).round().max(0.0) as u64),
                    value: s.value(),
                })
                .collect();
            out.push((broker, samples));
        }
        Ok(out)
    }
}

fn regex_escape(s: &str) -> String {
    s.chars().fold(String::new(), |mut out, c| {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

#[async_trait]
impl MetricsSource for PrometheusMetrics {
    async fn collect(&self, window: Duration, now: Timestamp) -> Result<MetricsObservation, Error> {
        let mut brokers: BTreeMap<i32, BrokerSeries> = BTreeMap::new();
        let (cpu, memory, disk, network) = tokio::join!(
            self.range("cpu", &self.queries["cpu"], window, now),
            self.range("memory", &self.queries["memory"], window, now),
            self.range("disk", &self.queries["disk"], window, now),
            self.range("network", &self.queries["network"], window, now),
        );
        for (series, pick) in [
            (cpu?, (|b: &mut BrokerSeries| &mut b.cpu) as fn(&mut BrokerSeries) -> &mut Vec<Sample>),
            (memory?, |b| &mut b.memory),
            (disk?, |b| &mut b.disk),
            (network?, |b| &mut b.network),
        ] {
            for (broker, samples) in series {
                *pick(brokers.entry(broker).or_default()) = samples;
            }
        }
        Ok(MetricsObservation { window, brokers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(queries: &[(&str, &str)]) -> PrometheusConfig {
        PrometheusConfig {
            url: "http://127.0.0.1:9".into(),
            timeout: Duration::from_secs(1),
            step: Duration::from_secs(15),
            network_bytes_per_second: 1_250_000_000,
            queries: queries.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    #[test]
    fn queries_are_scoped_to_the_node_pool_and_overridable() {
        let p = PrometheusMetrics::new(
            &config(&[("memory", r#"my_mem{ns="$namespace",pod=~"$pods"}"#)]),
            "kafka",
            "prod.kafka",
            "brokers",
        )
        .unwrap();
        assert!(
            p.queries()["cpu"].contains(r#"namespace="kafka",pod=~"prod\.kafka-brokers-[0-9]+""#),
            "{}",
            p.queries()["cpu"]
        );
        assert!(p.queries()["disk"].contains(r#"persistentvolumeclaim=~"data-[0-9]+-prod\.kafka-brokers-[0-9]+""#));
        assert!(p.queries()["network"].ends_with("/ 1250000000"));
        assert_eq!(p.queries()["memory"], r#"my_mem{ns="kafka",pod=~"prod\.kafka-brokers-[0-9]+"}"#);
    }

    #[test]
    fn broker_ids_come_from_the_pod_name() {
        let p = PrometheusMetrics::new(&config(&[]), "kafka", "prod-kafka-01", "brokers").unwrap();
        let labels = |pod: &str| [("pod".to_owned(), pod.to_owned())].into_iter().collect();
        assert_eq!(p.broker_of(&labels("prod-kafka-01-brokers-12")), Some(12));
        assert_eq!(p.broker_of(&labels("prod-kafka-01-controllers-3")), None);
        assert_eq!(p.broker_of(&labels("prod-kafka-01-brokers-x")), None);
    }

    #[tokio::test]
    async fn an_unreachable_prometheus_is_an_error_not_empty_data() {
        let p = PrometheusMetrics::new(&config(&[]), "kafka", "k", "brokers").unwrap();
        let e = p.collect(Duration::from_secs(600), Timestamp::now()).await.unwrap_err();
        assert!(matches!(e, Error::Unavailable { .. } | Error::Timeout { .. }), "{e}");
    }
}
