//! The agent's own metrics: names, help texts and the Prometheus exporter.
//!
//! Names follow `autopilot_<subsystem>_<thing>_<unit>`; labels are bounded (cluster names from
//! the config, rule names from the policies, kinds and categories from enums).

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const TICKS: &str = "autopilot_ticks_total";
pub const TICK_DURATION: &str = "autopilot_tick_duration_seconds";
pub const DECISIONS: &str = "autopilot_decisions_total";
pub const DEFERRED: &str = "autopilot_decisions_deferred_total";
pub const ACTIONS: &str = "autopilot_actions_total";
pub const OPERATIONS_IN_FLIGHT: &str = "autopilot_operations_in_flight";
pub const POLICY_ERRORS: &str = "autopilot_policy_errors_total";
pub const POLICY_RELOADS: &str = "autopilot_policy_reloads_total";
pub const POLICY_HEALTHY: &str = "autopilot_policy_healthy";
pub const POLICY_EVAL_DURATION: &str = "autopilot_policy_evaluation_duration_seconds";
pub const DATA_AGE: &str = "autopilot_data_age_seconds";
pub const DATA_STALE: &str = "autopilot_data_stale";
pub const SOURCE_ERRORS: &str = "autopilot_source_errors_total";
pub const JOURNAL_ERRORS: &str = "autopilot_journal_errors_total";
pub const TRIGGERS: &str = "autopilot_triggers_total";
pub const REASSIGNMENTS_PENDING: &str = "autopilot_reassignments_pending";
pub const BROKERS: &str = "autopilot_scaling_brokers";
pub const SAVINGS_PER_HOUR: &str = "autopilot_scaling_savings_per_hour";
pub const COST_SAVED: &str = "autopilot_scaling_cost_saved";
pub const BROKER_HOURS_SAVED: &str = "autopilot_scaling_broker_hours_saved";
pub const NOTIFICATIONS: &str = "autopilot_notifications_total";
pub const REQUESTS: &str = "autopilot_requests_total";
pub const SLA: &str = "autopilot_repair_sla_total";
pub const BROKER_STATE: &str = "autopilot_broker_state";
pub const CERT_DAYS: &str = "autopilot_certificate_days_to_expiry";
pub const ALERTS: &str = "autopilot_alerts_received_total";
pub const BACKUP_JOBS: &str = "autopilot_backup_jobs_total";
pub const BACKUP_JOBS_RUNNING: &str = "autopilot_backup_jobs_running";
pub const BACKUP_DURATION: &str = "autopilot_backup_job_duration_seconds";
pub const BACKUP_MESSAGES: &str = "autopilot_backup_messages_total";
pub const BACKUP_BYTES: &str = "autopilot_backup_bytes_total";
pub const BACKUP_STORED_BYTES: &str = "autopilot_backup_stored_bytes_total";
pub const BACKUP_RATIO: &str = "autopilot_backup_compression_ratio";
pub const BACKUP_THROUGHPUT: &str = "autopilot_backup_throughput_bytes_per_second";
pub const BACKUP_ERRORS: &str = "autopilot_backup_errors_total";
pub const BACKUP_LAST_SUCCESS: &str = "autopilot_backup_last_success_timestamp_seconds";

/// Register help texts for every metric.
pub fn describe() {
    describe_counter!(TICKS, "Evaluations of a cluster, by cluster and trigger (interval or alert).");
    describe_histogram!(TICK_DURATION, Unit::Seconds, "Duration of one tick: collect, snapshot, policy, plan, act.");
    describe_counter!(DECISIONS, "Decisions made by policy rules, by cluster, package, rule and kind.");
    describe_counter!(
        DEFERRED,
        "Decisions not acted on (cooldown, stale data, operation in flight, rate limit), by kind."
    );
    describe_counter!(
        ACTIONS,
        "Actions finished, by cluster, kind and outcome (succeeded, failed, rolled_back, dry_run, emitted)."
    );
    describe_gauge!(OPERATIONS_IN_FLIGHT, "Multi-step operations in flight, by cluster.");
    describe_counter!(POLICY_ERRORS, "Policy load, evaluation and decision errors, by category.");
    describe_counter!(POLICY_RELOADS, "Policy reloads, by result (ok, failed).");
    describe_gauge!(
        POLICY_HEALTHY,
        "1 when the policy files on disk are the set in force, 0 while a broken change is kept out."
    );
    describe_histogram!(POLICY_EVAL_DURATION, Unit::Seconds, "Duration of one policy evaluation.");
    describe_gauge!(DATA_AGE, Unit::Seconds, "Age of each source's data at the last tick, by cluster and source.");
    describe_gauge!(DATA_STALE, "1 when a source's data was stale or missing at the last tick, by cluster and source.");
    describe_counter!(SOURCE_ERRORS, "Failed reads of a source, by cluster, source and category.");
    describe_counter!(
        JOURNAL_ERRORS,
        "Failed journal writes; an operation does not advance while its journal cannot be written."
    );
    describe_counter!(TRIGGERS, "Immediate evaluations requested, by cluster.");
    describe_gauge!(REASSIGNMENTS_PENDING, "Partition moves of the operation in flight not yet complete, by cluster.");
    describe_gauge!(BROKERS, "Brokers in the node pool (spec.replicas) at the last tick, by cluster.");
    describe_gauge!(
        SAVINGS_PER_HOUR,
        "Cost per hour saved against the largest node pool the agent has seen (brokers fewer times cost_per_broker_hour), by cluster."
    );
    describe_gauge!(
        COST_SAVED,
        "Cost saved since the agent started by running below the largest node pool seen, by cluster."
    );
    describe_gauge!(
        BROKER_HOURS_SAVED,
        "Broker-hours saved since the agent started by running below the largest node pool seen, by cluster."
    );
    describe_counter!(SLA, "Repairs with an SLA (ISR restoration), by cluster, kind and result (met, missed).");
    describe_gauge!(
        BROKER_STATE,
        "1 for each broker's current health state (healthy, suspect, failed, recovering), 0 for the others, by cluster, broker and state."
    );
    describe_gauge!(CERT_DAYS, "Days until each certificate expires, by cluster, secret and kind.");
    describe_counter!(
        REQUESTS,
        "Operator requests (API, command line), by cluster, kind and result (accepted, refused)."
    );
    describe_counter!(
        ALERTS,
        "Alerts posted by Alertmanager, by result (triggered: clusters evaluated at once; duplicate; unmatched)."
    );
    describe_counter!(
        BACKUP_JOBS,
        "Backup, restore, migration and drain jobs finished, by cluster, kind and result (succeeded, failed)."
    );
    describe_gauge!(BACKUP_JOBS_RUNNING, "Jobs running now, by kind.");
    describe_histogram!(BACKUP_DURATION, Unit::Seconds, "Duration of finished jobs, by kind.");
    describe_counter!(BACKUP_MESSAGES, "Records backed up, restored or copied by finished jobs, by cluster and kind.");
    describe_counter!(
        BACKUP_BYTES,
        Unit::Bytes,
        "Key and value bytes backed up, restored or copied by finished jobs (uncompressed), by cluster and kind."
    );
    describe_counter!(BACKUP_STORED_BYTES, Unit::Bytes, "Bytes written to backup storage (compressed), by cluster.");
    describe_gauge!(BACKUP_RATIO, "Compression ratio (raw / stored) of the last finished backup, by cluster.");
    describe_gauge!(BACKUP_THROUGHPUT, "Uncompressed bytes per second of the last finished job, by cluster and kind.");
    describe_counter!(
        BACKUP_ERRORS,
        "Failed jobs, by cluster, kind and category (kafka, storage, stalled, invalid, internal)."
    );
    describe_gauge!(
        BACKUP_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of each cluster's and topic's newest complete backup (from the catalog), by cluster and topic."
    );
    describe_counter!(
        NOTIFICATIONS,
        "Notifications posted to webhook receivers, by receiver and result (sent, failed)."
    );
}

/// Install the Prometheus recorder and return the handle that renders `/metrics`.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let buckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)?
        .install_recorder()?;
    describe();
    Ok(handle)
}
