//! Scheduled backups on the real backend: the agent, configured with backup storage, reads the
//! catalog, `policies/backup.rego` finds the topic due (it has no backup yet), and the executor
//! starts a backup job against the stack's broker (tansu) that completes and lands in the
//! catalog; nothing runs twice. Only the backup policy is loaded, with a schedule that selects
//! this test's topic alone, so nothing else on the stack is touched. Needs `scripts/stack.sh up`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::agent::{free_port, http, start_config, wait_until};
use support::kafka::{batch_per_record_producer, create_topic, unique};
use support::stack::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_policy_schedules_a_backup_that_the_agent_runs_against_the_broker() {
    let stack = Stack::get();
    let topic = unique("sched-orders");
    create_topic(&stack.kafka, &topic, 3, &[]).await;
    let (b, t) = (stack.kafka.clone(), topic.clone());
    tokio::task::spawn_blocking(move || {
        use rdkafka::producer::{BaseRecord, Producer};
        let p = batch_per_record_producer(&b);
        for i in 0..300 {
            let (k, v) = (format!("k{i}"), format!("v{i}"));
            p.send(BaseRecord::to(&t).partition(i % 3).key(&k).payload(&v)).unwrap();
        }
        p.flush(Duration::from_secs(10)).unwrap();
    })
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(repo.join("policies/backup.rego"), policies.join("backup.rego")).unwrap();
    let data = format!(
        "autopilot:\n  backup:\n    schedules:\n      - {{name: test, topics: [\"{topic}\"], every_seconds: 86400, keep_last: 2, max_age_seconds: 864000, compression: zstd}}\n"
    );
    std::fs::write(policies.join("data.yaml"), data).unwrap();
    let backups = dir.path().join("backups");
    let extra = format!("backups: {{dir: \"{}\", concurrency: 1, idle_timeout: 5s}}", backups.display());
    let port = free_port();
    let agent = start_config(&stack, dir.path(), &policies, port, "", &extra);

    let listed = wait_until("a complete backup of the topic in the catalog", Duration::from_secs(60), || {
        let r = http("GET", &format!("http://127.0.0.1:{port}/api/v1/backups"), "").unwrap_or_default();
        (
            r.contains(&format!("\"topic\":\"{topic}\""))
                && r.contains("\"completed_at\":\"")
                && r.contains("\"records\":300"),
            r,
        )
    });
    assert!(listed.contains("\"compression\":\"zstd\""), "{listed}");
    let jobs = wait_until("the scheduled job to succeed", Duration::from_secs(10), || {
        let r = http("GET", &format!("http://127.0.0.1:{port}/api/v1/jobs"), "").unwrap_or_default();
        (r.contains("\"source\":\"schedule\"") && r.contains("\"status\":\"succeeded\""), r)
    });
    // The next ticks find the topic backed up: no second backup.
    std::thread::sleep(Duration::from_secs(5));
    let count = std::fs::read_dir(&backups)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("manifest.json").exists())
        .count();
    let now = http("GET", &format!("http://127.0.0.1:{port}/api/v1/jobs"), "").unwrap();
    assert_eq!(count, 1, "one backup, not one per tick: {jobs}\n{now}\n{}", agent.log());
    let audit = agent.audit();
    assert!(
        audit.iter().any(|e| e["type"] == "outcome" && e["kind"] == "backup_topic" && e["result"] == "succeeded"),
        "{audit:?}"
    );
    assert!(
        agent
            .metric(&format!(
                "autopilot_backup_last_success_timestamp_seconds{{cluster=\"prod-kafka-01\",topic=\"{topic}\"}} "
            ))
            .is_some(),
        "{}",
        agent.metrics()
    );
}
