//! The policy input document: the snapshot as Rego sees it, plus what the agent itself knows
//! (operation in flight, time since its last actions, firing alerts). Pure.
//!
//! Partitions are summarised, and only problem partitions are listed one by one, so the input
//! stays small on large clusters.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::collect::{GroupLag, NodePoolObservation, PvcObservation, ReassignmentInProgress};
use crate::plan::{ActionKind, History};
use crate::snapshot::{
    BackupCatalog, BrokerSnapshot, CertificateSnapshot, DataFreshness, Held, PartitionSnapshot, PartitionSummary,
    Snapshot, Utilisation,
};
use crate::time::Timestamp;

/// An alert that triggered or accompanies this evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Alert {
    pub name: String,
    pub status: String,
    pub labels: BTreeMap<String, String>,
}

/// A topic without its partition list.
#[derive(Debug, Serialize)]
pub struct TopicInput<'a> {
    pub name: &'a str,
    pub replication_factor: u32,
    pub min_insync_replicas: u32,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<i64>,
    pub partitions: usize,
}

/// The cluster part of the input.
#[derive(Debug, Serialize)]
pub struct ClusterInput<'a> {
    pub name: &'a str,
    pub complete: bool,
    pub data: &'a DataFreshness,
    pub kafka_ready: bool,
    pub controller: Option<i32>,
    pub brokers: &'a [BrokerSnapshot],
    pub utilisation: &'a Utilisation,
    pub conditions: &'a BTreeMap<String, Held>,
    pub topics: Vec<TopicInput<'a>>,
    pub max_replication_factor: u32,
    pub max_min_insync_replicas: u32,
    pub partitions: &'a PartitionSummary,
    pub problem_partitions: Vec<&'a PartitionSnapshot>,
    pub reassignments: &'a [ReassignmentInProgress],
    pub consumer_groups: &'a [GroupLag],
    pub node_pool: Option<&'a NodePoolObservation>,
    pub pvcs: &'a [PvcObservation],
    pub certificates: &'a [CertificateSnapshot],
    /// Most brokers the cluster may have; null when unlimited.
    pub broker_quota: Option<u32>,
}

/// The agent part of the input.
#[derive(Debug, Serialize)]
pub struct AgentInput<'a> {
    pub region: &'a str,
    pub dry_run: bool,
    /// Kind of the operation in flight on this cluster, if any.
    pub operation: Option<ActionKind>,
    pub seconds_since_last: BTreeMap<ActionKind, f64>,
}

/// The whole input document.
#[derive(Debug, Serialize)]
pub struct PolicyInput<'a> {
    pub now: Timestamp,
    pub cluster: ClusterInput<'a>,
    pub agent: AgentInput<'a>,
    pub alerts: &'a [Alert],
    /// The backup catalog: null when unknown (no storage, or unreadable), so the backup policy
    /// decides nothing on missing data.
    pub backups: Option<&'a BackupCatalog>,
}

/// Project a snapshot and the agent's state into the input document.
pub fn input<'a>(
    s: &'a Snapshot,
    history: &History,
    region: &'a str,
    dry_run: bool,
    alerts: &'a [Alert],
) -> PolicyInput<'a> {
    let problem_partitions =
        s.all_partitions().filter(|p| p.under_replicated || p.under_min_isr || p.offline).collect();
    PolicyInput {
        now: s.at,
        cluster: ClusterInput {
            name: &s.cluster,
            complete: s.complete,
            data: &s.data,
            kafka_ready: s.kafka_ready,
            controller: s.controller,
            brokers: &s.brokers,
            utilisation: &s.utilisation,
            conditions: &s.conditions,
            topics: s
                .topics
                .iter()
                .map(|t| TopicInput {
                    name: &t.name,
                    replication_factor: t.replication_factor,
                    min_insync_replicas: t.min_insync_replicas,
                    retention_ms: t.retention_ms,
                    retention_bytes: t.retention_bytes,
                    partitions: t.partitions.len(),
                })
                .collect(),
            max_replication_factor: s.topics.iter().map(|t| t.replication_factor).max().unwrap_or(0),
            max_min_insync_replicas: s.topics.iter().map(|t| t.min_insync_replicas).max().unwrap_or(0),
            partitions: &s.partitions,
            problem_partitions,
            reassignments: &s.reassignments,
            consumer_groups: &s.consumer_groups,
            node_pool: s.node_pool.as_ref(),
            pvcs: &s.pvcs,
            certificates: &s.certificates,
            broker_quota: s.broker_quota,
        },
        agent: AgentInput {
            region,
            dry_run,
            operation: history.in_flight,
            seconds_since_last: history.seconds_since_last(s.at),
        },
        alerts,
        backups: s.backups.as_ref(),
    }
}
