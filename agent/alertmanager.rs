//! The Alertmanager webhook (payload version 4): validate it, map each alert to a cluster by its
//! labels, drop alerts already seen in the same state (by fingerprint), and name the clusters to
//! evaluate now with their firing alerts. Pure apart from the dedup memory; the HTTP handler
//! hands the result to the clusters' tasks and never acts itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::AlertmanagerConfig;
use crate::policy::Alert;
use crate::time::Timestamp;

/// How long a (fingerprint, status) pair is remembered: Alertmanager re-sends firing alerts
/// every `repeat_interval` (default 4h); a repeat within this window triggers nothing.
const REMEMBER: Duration = Duration::from_secs(6 * 3600);

/// The webhook body (only what the agent reads; unknown fields are allowed, as Alertmanager
/// adds some between releases).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Payload {
    pub version: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    pub alerts: Vec<PayloadAlert>,
}

/// One alert of the payload.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct PayloadAlert {
    pub status: String,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub fingerprint: String,
}

/// Why a payload was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Invalid {
    #[error("invalid Alertmanager payload: {0}")]
    Body(String),
    #[error("unsupported Alertmanager payload version {0:?} (version 4 is supported)")]
    Version(String),
    #[error("alert {index}: {what}")]
    Alert { index: usize, what: String },
}

/// A cluster as alerts name it.
#[derive(Clone, Debug)]
pub struct ClusterKey {
    /// The agent's name for it.
    pub name: String,
    /// The Strimzi `Kafka` resource's name and namespace.
    pub kafka: String,
    pub namespace: String,
}

/// What one payload leads to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Routed {
    /// Clusters to evaluate now, with every alert currently firing for them.
    pub triggered: BTreeMap<String, Vec<Alert>>,
    pub duplicates: usize,
    /// Alerts that name no cluster of this agent (missing or unknown labels).
    pub unmatched: usize,
}

/// The webhook's memory: which alert states were seen, and which alerts fire per cluster.
#[derive(Debug)]
pub struct Router {
    config: AlertmanagerConfig,
    clusters: Vec<ClusterKey>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// (fingerprint, status) -> when last seen.
    seen: BTreeMap<(String, String), Timestamp>,
    /// cluster -> fingerprint -> the firing alert.
    firing: BTreeMap<String, BTreeMap<String, Alert>>,
}

/// Parse and check a payload.
pub fn parse(body: &[u8]) -> Result<Payload, Invalid> {
    let p: Payload = serde_json::from_slice(body).map_err(|e| Invalid::Body(e.to_string()))?;
    if p.version != "4" {
        return Err(Invalid::Version(p.version));
    }
    for (index, a) in p.alerts.iter().enumerate() {
        if a.status != "firing" && a.status != "resolved" {
            return Err(Invalid::Alert {
                index,
                what: format!("status {:?} is neither firing nor resolved", a.status),
            });
        }
        if !a.labels.contains_key("alertname") {
            return Err(Invalid::Alert { index, what: "has no alertname label".into() });
        }
        if a.fingerprint.is_empty() {
            return Err(Invalid::Alert { index, what: "has no fingerprint".into() });
        }
    }
    Ok(p)
}

impl Router {
    pub fn new(config: AlertmanagerConfig, clusters: Vec<ClusterKey>) -> Self {
        Self { config, clusters, state: Mutex::default() }
    }

    fn cluster_of(&self, labels: &BTreeMap<String, String>) -> Option<&ClusterKey> {
        let kafka = labels.get(&self.config.kafka_label)?;
        let namespace = match &self.config.namespace_label {
            Some(l) => Some(labels.get(l)?),
            None => None,
        };
        let mut matching =
            self.clusters.iter().filter(|c| &c.kafka == kafka && namespace.is_none_or(|n| &c.namespace == n));
        let first = matching.next()?;
        // Without a namespace label, a name used in two namespaces is ambiguous: no guess.
        matching.next().is_none().then_some(first)
    }

    /// Route a valid payload received at `now`.
    pub fn route(&self, p: &Payload, now: Timestamp) -> Routed {
        let mut out = Routed::default();
        let mut changed: BTreeSet<String> = BTreeSet::new();
        let mut st = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        st.seen.retain(|_, at| now - *at < REMEMBER);
        // An alert that stopped being sent (Alertmanager restarted, the rule was deleted) without
        // a resolution is forgotten with its last sighting, so memory stays bounded.
        let State { seen, firing } = &mut *st;
        for alerts in firing.values_mut() {
            alerts.retain(|fp, _| seen.contains_key(&(fp.clone(), "firing".to_owned())));
        }
        for a in &p.alerts {
            let Some(cluster) = self.cluster_of(&a.labels) else {
                out.unmatched += 1;
                continue;
            };
            let key = (a.fingerprint.clone(), a.status.clone());
            if st.seen.insert(key, now).is_some() {
                out.duplicates += 1;
                continue;
            }
            let firing = st.firing.entry(cluster.name.clone()).or_default();
            if a.status == "firing" {
                let name = a.labels.get("alertname").cloned().unwrap_or_default();
                let alert = Alert { name, status: a.status.clone(), labels: a.labels.clone() };
                firing.insert(a.fingerprint.clone(), alert);
            } else {
                firing.remove(&a.fingerprint);
                // A later firing of the same alert is news again.
                st.seen.remove(&(a.fingerprint.clone(), "firing".to_owned()));
            }
            changed.insert(cluster.name.clone());
        }
        for name in changed {
            let alerts = st.firing.get(&name).map(|f| f.values().cloned().collect()).unwrap_or_default();
            out.triggered.insert(name, alerts);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(namespace_label: Option<&str>) -> Router {
        let cfg = AlertmanagerConfig {
            kafka_label: "strimzi_io_cluster".into(),
            namespace_label: namespace_label.map(str::to_owned),
        };
        let key = |name: &str, kafka: &str, ns: &str| ClusterKey {
            name: name.into(),
            kafka: kafka.into(),
            namespace: ns.into(),
        };
        Router::new(
            cfg,
            vec![key("eu-1", "main", "kafka"), key("eu-2", "main", "kafka-b"), key("eu-3", "other", "kafka")],
        )
    }

    fn payload(alerts: &[(&str, &str, &str, &str)]) -> Vec<u8> {
        let alerts: Vec<_> = alerts
            .iter()
            .map(|(status, name, cluster, fp)| {
                serde_json::json!({"status": status, "fingerprint": fp,
                    "labels": {"alertname": name, "strimzi_io_cluster": cluster, "namespace": "kafka"}})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"version": "4", "status": "firing", "receiver": "agent",
            "groupKey": "{}:{}", "alerts": alerts}))
        .unwrap()
    }

    #[test]
    fn alerts_map_to_clusters_by_labels_and_repeats_trigger_nothing() {
        let r = router(Some("namespace"));
        let now = Timestamp::from_millis(1_000_000);
        let body = payload(&[("firing", "KafkaOfflinePartitions", "main", "a1"), ("firing", "X", "nowhere", "b1")]);
        let got = r.route(&parse(&body).unwrap(), now);
        assert_eq!(got.unmatched, 1);
        assert_eq!(got.triggered.keys().collect::<Vec<_>>(), ["eu-1"]);
        assert_eq!(got.triggered["eu-1"][0].name, "KafkaOfflinePartitions");
        // Alertmanager re-sends the group: nothing new, nothing triggered.
        let again = r.route(&parse(&body).unwrap(), now + Duration::from_secs(60));
        assert_eq!((again.triggered.len(), again.duplicates), (0, 1));
        // A second alert of the same cluster: evaluated with both firing.
        let more = payload(&[
            ("firing", "KafkaOfflinePartitions", "main", "a1"),
            ("firing", "KafkaUnderMinIsr", "main", "a2"),
        ]);
        let got = r.route(&parse(&more).unwrap(), now + Duration::from_secs(61));
        assert_eq!(got.triggered["eu-1"].len(), 2);
        // Resolved: evaluated again with what still fires.
        let resolved = payload(&[("resolved", "KafkaOfflinePartitions", "main", "a1")]);
        let got = r.route(&parse(&resolved).unwrap(), now + Duration::from_secs(90));
        assert_eq!(got.triggered["eu-1"].iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["KafkaUnderMinIsr"]);
        // And firing anew after the resolution is news.
        let refire = payload(&[("firing", "KafkaOfflinePartitions", "main", "a1")]);
        assert_eq!(r.route(&parse(&refire).unwrap(), now + Duration::from_secs(120)).triggered.len(), 1);
    }

    #[test]
    fn alerts_no_longer_sent_are_forgotten() {
        let r = router(Some("namespace"));
        let t0 = Timestamp::from_millis(0);
        r.route(&parse(&payload(&[("firing", "Old", "main", "o1")])).unwrap(), t0);
        let later = t0 + REMEMBER + Duration::from_secs(1);
        let got = r.route(&parse(&payload(&[("firing", "New", "main", "n1")])).unwrap(), later);
        let names: Vec<&str> = got.triggered["eu-1"].iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["New"], "the alert unseen for {REMEMBER:?} is gone");
    }

    #[test]
    fn without_a_namespace_label_an_ambiguous_name_matches_nothing() {
        let r = router(None);
        let got = r.route(&parse(&payload(&[("firing", "A", "main", "f")])).unwrap(), Timestamp::from_millis(0));
        assert_eq!((got.unmatched, got.triggered.len()), (1, 0), "main is in two namespaces");
        let got = r.route(&parse(&payload(&[("firing", "A", "other", "g")])).unwrap(), Timestamp::from_millis(0));
        assert_eq!(got.triggered.keys().collect::<Vec<_>>(), ["eu-3"]);
    }

    #[test]
    fn invalid_payloads_say_what_is_wrong() {
        assert!(matches!(parse(b"{}"), Err(Invalid::Body(_))));
        let v3 = br#"{"version":"3","alerts":[]}"#;
        assert_eq!(parse(v3).unwrap_err(), Invalid::Version("3".into()));
        let bad = br#"{"version":"4","alerts":[{"status":"pending","labels":{"alertname":"A"},"fingerprint":"x"}]}"#;
        assert_eq!(parse(bad).unwrap_err().to_string(), "alert 0: status \"pending\" is neither firing nor resolved");
        let nameless = br#"{"version":"4","alerts":[{"status":"firing","labels":{},"fingerprint":"x"}]}"#;
        assert_eq!(parse(nameless).unwrap_err().to_string(), "alert 0: has no alertname label");
    }
}
