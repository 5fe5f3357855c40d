//! The health report of a cluster, as `GET /api/v1/clusters/{name}/health` returns it. Pure: a
//! function of the cluster's latest snapshot and its operations.

use serde::{Deserialize, Serialize};

use crate::operations::OperationRecord;
use crate::snapshot::{BrokerState, DataFreshness, PartitionSummary, Snapshot};
use crate::time::Timestamp;

/// Overall status, worst first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Partitions offline or below min ISR, or a broker failed.
    Critical,
    /// A broker suspect or recovering, or partitions under-replicated.
    Degraded,
    /// The data is stale or missing: nothing can be said.
    Unknown,
    Healthy,
}

/// One broker in the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BrokerHealth {
    pub id: i32,
    pub rack: Option<String>,
    pub state: BrokerState,
    pub state_seconds: f64,
    pub registered: bool,
    pub pod_ready: bool,
    pub leaders: u32,
    pub replicas: u32,
    pub out_of_sync_replicas: u32,
    pub outages_last_hour: u32,
}

/// A partition with a replication problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartitionProblem {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub under_replicated: bool,
    pub under_min_isr: bool,
    pub offline: bool,
}

/// A certificate and how long it has left.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CertificateHealth {
    pub secret: String,
    pub kind: String,
    pub days_to_expiry: f64,
}

/// The health report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub cluster: String,
    pub status: Status,
    /// Why the status is not healthy, one line each.
    pub reasons: Vec<String>,
    pub at: Timestamp,
    pub data: DataFreshness,
    pub brokers: Vec<BrokerHealth>,
    pub partitions: PartitionSummary,
    /// At most [`MAX_PROBLEMS`] of them, worst first.
    pub problem_partitions: Vec<PartitionProblem>,
    pub certificates: Vec<CertificateHealth>,
    /// The newest operations on this cluster, the one in flight first.
    pub operations: Vec<OperationRecord>,
    /// The newest decisions, actions, outcomes, broker state changes and errors, newest first.
    #[serde(default)]
    pub recent_events: Vec<crate::events::Event>,
    /// How the cluster-wide metrics moved over the last hour.
    #[serde(default)]
    pub trends: std::collections::BTreeMap<String, crate::recent::Trend>,
}

/// Problem partitions listed one by one.
pub const MAX_PROBLEMS: usize = 100;

/// Recent operations listed.
const RECENT: usize = 10;

/// The report of `s`, with the cluster's operations (newest first).
pub fn report(s: &Snapshot, operations: &[OperationRecord]) -> HealthReport {
    let mut reasons: Vec<(Status, String)> = Vec::new();
    if !s.complete {
        reasons.push((Status::Unknown, "data is stale or missing".into()));
    }
    for b in s.brokers.iter().filter(|b| b.pool_member) {
        match b.state {
            BrokerState::Failed => reasons.push((Status::Critical, format!("broker {} failed", b.id))),
            BrokerState::Suspect | BrokerState::Recovering => {
                reasons.push((Status::Degraded, format!("broker {} {:?}", b.id, b.state).to_lowercase()))
            }
            BrokerState::Healthy => {}
        }
    }
    let p = &s.partitions;
    for (n, status, what) in [
        (p.offline, Status::Critical, "offline"),
        (p.under_min_isr, Status::Critical, "below min.insync.replicas"),
        (p.under_replicated, Status::Degraded, "under-replicated"),
    ] {
        if n > 0 {
            reasons.push((status, format!("{n} partitions {what}")));
        }
    }
    reasons.sort_by_key(|r| r.0);
    let status = reasons.first().map_or(Status::Healthy, |r| r.0);
    let mut problems: Vec<PartitionProblem> = s
        .all_partitions()
        .filter(|p| p.under_replicated || p.under_min_isr || p.offline)
        .map(|p| PartitionProblem {
            topic: p.topic.clone(),
            partition: p.partition,
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
            under_replicated: p.under_replicated,
            under_min_isr: p.under_min_isr,
            offline: p.offline,
        })
        .collect();
    problems.sort_by_key(|p| (!p.offline, !p.under_min_isr, p.topic.clone(), p.partition));
    problems.truncate(MAX_PROBLEMS);
    let mut ops: Vec<OperationRecord> = operations.to_vec();
    ops.sort_by_key(|o| o.finished());
    ops.truncate(RECENT);
    HealthReport {
        cluster: s.cluster.clone(),
        status,
        reasons: reasons.into_iter().map(|r| r.1).collect(),
        at: s.at,
        data: s.data.clone(),
        brokers: s
            .brokers
            .iter()
            .filter(|b| b.pool_member || b.registered)
            .map(|b| BrokerHealth {
                id: b.id,
                rack: b.rack.clone(),
                state: b.state,
                state_seconds: b.state_seconds,
                registered: b.registered,
                pod_ready: b.pod.as_ref().is_some_and(|p| p.ready),
                leaders: b.leaders,
                replicas: b.replicas,
                out_of_sync_replicas: b.out_of_sync_replicas,
                outages_last_hour: b.outages_last_hour,
            })
            .collect(),
        partitions: s.partitions.clone(),
        problem_partitions: problems,
        certificates: s
            .certificates
            .iter()
            .map(|c| CertificateHealth {
                secret: c.secret.clone(),
                kind: c.kind.clone(),
                days_to_expiry: c.days_to_expiry,
            })
            .collect(),
        operations: ops,
        recent_events: Vec::new(),
        trends: std::collections::BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::backend::sim::{Fault, Load};
    use crate::fixtures;
    use crate::snapshot::BrokerTracker;

    #[tokio::test]
    async fn a_failed_broker_makes_the_cluster_critical() {
        let sim = fixtures::sim(3, Load { cpu: 0.5, memory: 0.5 });
        let mut tracker = BrokerTracker::default();
        let healthy = report(&fixtures::snapshot(&sim, &mut tracker).await, &[]);
        assert_eq!((healthy.status, healthy.reasons.len()), (Status::Healthy, 0), "{healthy:?}");
        assert_eq!(healthy.brokers.len(), 3);
        sim.lock().unwrap().inject(&Fault::BrokerDown { broker: 2, duration: None }).unwrap();
        fixtures::advance(&sim, Duration::from_secs(5));
        let suspect = report(&fixtures::snapshot(&sim, &mut tracker).await, &[]);
        assert_eq!(suspect.status, Status::Degraded, "{:?}", suspect.reasons);
        assert!(suspect.reasons.contains(&"broker 2 suspect".to_owned()), "{:?}", suspect.reasons);
        fixtures::advance(&sim, Duration::from_secs(40));
        let failed = report(&fixtures::snapshot(&sim, &mut tracker).await, &[]);
        assert_eq!(failed.status, Status::Critical, "{:?}", failed.reasons);
        assert_eq!(failed.reasons[0], "broker 2 failed");
        assert!(!failed.problem_partitions.is_empty() && failed.problem_partitions.iter().all(|p| p.under_replicated));
        assert_eq!(failed.brokers.iter().find(|b| b.id == 2).unwrap().state, BrokerState::Failed);
    }
}
