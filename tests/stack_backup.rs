//! Backups against a real broker (tansu from the local stack): records with keys, headers and
//! timestamps over 6 partitions are backed up, verified, and restored to another topic, which
//! then equals the original record for record. The backup is interrupted (its process "dies"
//! after two partitions) and resumed from its manifest. A damaged backup is refused before
//! anything is written. Needs `scripts/stack.sh up`.
//!
//! tansu reports a partition's high watermark as the base offset of its last batch plus one,
//! so the test produces one record per batch (`batch.num.messages=1`), with which it is right.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use autopilot::backup::kafka::{self, BackupRequest, Endpoint};
use autopilot::backup::{Compression, FsStorage, Manifest, Storage};
use autopilot::config::KafkaClientConfig;
use autopilot::time::Timestamp;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use support::cli::run as autopilot;
use support::kafka::{batch_per_record_producer, create_topic, unique};
use support::stack::Stack;

const PARTITIONS: i32 = 6;
const RECORDS: usize = 100_000;
const TOPIC_CONFIGS: &[(&str, &str)] = &[("retention.ms", "7200000")];

type Seen = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>, i64);

fn endpoint(stack: &Stack) -> Endpoint {
    Endpoint {
        bootstrap: vec![stack.kafka.clone()],
        client: KafkaClientConfig { timeout: Duration::from_secs(10), properties: Default::default() },
    }
}

fn produce(bootstrap: &str, topic: &str, records: usize) {
    let p = batch_per_record_producer(bootstrap);
    for i in 0..records {
        let key = format!("customer-{}", i % 977);
        let value = format!("{{\"order\":{i},\"amount\":{}}}", i * 31 % 10_000);
        let trace = format!("{i:016x}");
        let headers = OwnedHeaders::new()
            .insert(Header { key: "trace-id", value: Some(trace.as_bytes()) })
            .insert(Header { key: "empty", value: None::<&[u8]> });
        let mut r = BaseRecord::to(topic)
            .partition((i % PARTITIONS as usize) as i32)
            .payload(&value)
            .timestamp(1_767_225_600_000 + i as i64 * 3);
        if i % 10 != 0 {
            r = r.key(&key);
        }
        if i % 2 == 0 {
            r = r.headers(headers);
        }
        let mut r = r;
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    std::thread::sleep(Duration::from_millis(5));
                    r = back;
                }
            }
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// Every record of every partition of `topic`: (key, value, headers, timestamp) in order.
fn consume(bootstrap: &str, topic: &str, expect: usize) -> BTreeMap<i32, Vec<Seen>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("verify"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out: BTreeMap<i32, Vec<Seen>> = BTreeMap::new();
    let mut n = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while n < expect && std::time::Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(500)) {
            let m = m.unwrap();
            let headers = m
                .headers()
                .map(|hs| hs.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect())
                .unwrap_or_default();
            let seen = (
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
                headers,
                m.timestamp().to_millis().unwrap(),
            );
            out.entry(m.partition()).or_default().push(seen);
            n += 1;
        }
    }
    assert_eq!(n, expect, "consumed {n} of {expect} records of {topic}");
    out
}

#[tokio::test]
async fn a_backup_restores_record_for_record_and_damage_is_refused() {
    let stack = Stack::get();
    let (source, target, untouched) = (unique("orders"), unique("orders-restored"), unique("orders-refused"));
    for t in [&source, &target, &untouched] {
        create_topic(&stack.kafka, t, PARTITIONS, TOPIC_CONFIGS).await;
    }
    let (b, s) = (stack.kafka.clone(), source.clone());
    let group = unique("billing");
    let g = group.clone();
    tokio::task::spawn_blocking(move || {
        produce(&b, &s, RECORDS);
        // A consumer group that has read 1,000 records of partition 0.
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .set("group.id", &g)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&s, 0, Offset::Offset(1000)).unwrap();
        c.commit(&tpl, rdkafka::consumer::CommitMode::Sync).unwrap();
    })
    .await
    .unwrap();

    let ep = endpoint(&stack);
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::new(dir.path()));
    let req = BackupRequest {
        id: "b1".into(),
        cluster: "local".into(),
        topic: source.clone(),
        compression: Compression::Lz4,
        max_messages: None,
    };
    let m = kafka::start(&ep, storage.as_ref(), &req, Timestamp::now()).await.unwrap();
    assert_eq!(m.partitions.len(), PARTITIONS as usize);
    // tansu reports the topic's own retention.ms as a broker default (source DEFAULT), so the
    // backup, which keeps only non-default configs, records none there; on Kafka it would.
    assert!(!m.topic_configs.contains_key("retention.ms"), "tansu's DescribeConfigs changed: {:?}", m.topic_configs);
    assert_eq!(m.consumer_offsets.get(&group), Some(&BTreeMap::from([(0, 1000)])), "{:?}", m.consumer_offsets);
    // The first run dies after finishing two partitions.
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let f = finished.clone();
    let dies: autopilot::backup::Progress = Arc::new(move |_| {
        if f.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == 2 {
            panic!("backup process killed");
        }
    });
    let killed = kafka::run(&ep, storage.clone(), m, Duration::from_secs(20), dies).await.unwrap_err();
    assert!(killed.to_string().contains("blocking Kafka task failed"), "{killed}");
    let partial = Manifest::load(storage.as_ref(), "b1").unwrap();
    let done = partial.partitions.values().filter(|p| p.done()).count();
    assert_eq!(done, 2, "two partitions were stored before the process died");
    assert!(partial.completed_at.is_none());
    // A new run resumes from the manifest and stores only what is missing.
    let m = kafka::run(&ep, storage.clone(), partial, Duration::from_secs(20), Arc::new(|_| {})).await.unwrap();
    assert!(m.completed_at.is_some());
    let counts = m.verify(storage.as_ref()).unwrap();
    assert_eq!(counts.values().sum::<u64>(), RECORDS as u64, "{counts:?}");
    assert_eq!(Manifest::load(storage.as_ref(), "b1").unwrap(), m, "the manifest on disk is the final one");

    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = Arc::clone(&written);
    let progress: autopilot::backup::Progress = Arc::new(move |n| seen.store(n, std::sync::atomic::Ordering::SeqCst));
    let dry = kafka::restore(&ep, storage.clone(), &m, &target, true, Arc::clone(&progress)).await.unwrap();
    assert!(dry.dry_run && dry.records.values().sum::<u64>() == RECORDS as u64);
    assert_eq!(written.load(std::sync::atomic::Ordering::SeqCst), 0, "a dry run writes nothing");
    let report = kafka::restore(&ep, storage.clone(), &m, &target, false, progress).await.unwrap();
    assert_eq!(report.records, counts);
    assert_eq!(written.load(std::sync::atomic::Ordering::SeqCst), RECORDS as u64, "progress reached the total");
    // The target was empty: the group's offset 1000 on partition 0 is the 1,000th record there.
    assert_eq!(report.translated_offsets[&group], BTreeMap::from([(0, 1000)]));

    let (b, s, t) = (stack.kafka.clone(), source.clone(), target.clone());
    let (original, restored) =
        tokio::task::spawn_blocking(move || (consume(&b, &s, RECORDS), consume(&b, &t, RECORDS))).await.unwrap();
    assert_eq!(restored, original, "the restored topic equals the original, partition by partition");
    assert!(original[&0].iter().any(|r| r.2.iter().any(|(k, v)| k == "empty" && v.is_none())), "null headers kept");
    assert!(original[&0].iter().any(|r| r.0.is_none()), "null keys kept");

    // Damage one segment: verify names it and restore writes nothing.
    let seg = &m.partitions[&3].segments[0].file;
    let path = dir.path().join(seg);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
    let err = m.verify(storage.as_ref()).unwrap_err().to_string();
    assert!(err.contains(seg.as_str()), "{err}");
    let refused = kafka::restore(&ep, storage.clone(), &m, &untouched, false, Arc::new(|_| {})).await.unwrap_err();
    assert!(refused.to_string().contains("backup"), "{refused}");
    let (b, u) = (stack.kafka.clone(), untouched.clone());
    let written = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &b).create().unwrap();
        (0..PARTITIONS).map(|p| c.fetch_watermarks(&u, p, Duration::from_secs(10)).unwrap().1).sum::<i64>()
    })
    .await
    .unwrap();
    assert_eq!(written, 0, "nothing restored from a damaged backup");
}

#[tokio::test]
async fn the_backup_commands_create_list_verify_and_restore() {
    let stack = Stack::get();
    let (topic, copy) = (unique("payments"), unique("payments-copy"));
    create_topic(&stack.kafka, &topic, PARTITIONS, TOPIC_CONFIGS).await;
    create_topic(&stack.kafka, &copy, PARTITIONS, TOPIC_CONFIGS).await;
    let (b, t) = (stack.kafka.clone(), topic.clone());
    tokio::task::spawn_blocking(move || produce(&b, &t, 600)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let k = stack.kafka.as_str();

    let (ok, out, err) = autopilot(&[
        "backup",
        "create",
        "--bootstrap",
        k,
        "--topic",
        &topic,
        "--id",
        "cli-1",
        "--compression",
        "zstd",
        "--dir",
        d,
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("backup cli-1 complete: 600 records"), "{out}");
    let (ok, out, _) = autopilot(&["backup", "list", "--dir", d]);
    assert!(ok && out.contains("cli-1") && out.contains("600 records  complete"), "{out}");
    let (ok, out, err) = autopilot(&["backup", "verify", "cli-1", "--dir", d]);
    assert!(ok && out.contains("every checksum verified, 600 records in 6 partitions"), "{out}{err}");
    let (ok, out, err) =
        autopilot(&["backup", "restore", "cli-1", "--bootstrap", k, "--to-topic", &copy, "--dry-run", "--dir", d]);
    assert!(ok && out.contains("restore of cli-1 would write 600 records"), "{out}{err}");
    let (ok, out, err) = autopilot(&["backup", "restore", "cli-1", "--bootstrap", k, "--to-topic", &copy, "--dir", d]);
    assert!(ok && out.contains("restore of cli-1 wrote 600 records"), "{out}{err}");
    let (b, c) = (stack.kafka.clone(), copy.clone());
    let restored = tokio::task::spawn_blocking(move || consume(&b, &c, 600)).await.unwrap();
    assert_eq!(restored.values().map(Vec::len).sum::<usize>(), 600);

    let (ok, _, err) =
        autopilot(&["backup", "create", "--bootstrap", k, "--topic", &topic, "--id", "cli-1", "--dir", d]);
    assert!(!ok && err.contains("backup cli-1 is already complete"), "{err}");
    let seg = std::fs::read_dir(dir.path().join("cli-1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&seg, bytes).unwrap();
    let (ok, _, err) = autopilot(&["backup", "verify", "cli-1", "--dir", d]);
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    assert!(!ok && err.contains(&name), "verify names the damaged segment: {err}");
    let (ok, _, err) = autopilot(&["backup", "restore", "cli-1", "--bootstrap", k, "--to-topic", &copy, "--dir", d]);
    assert!(!ok && err.contains(&name), "{err}");
}

#[tokio::test]
async fn migration_under_a_concurrent_producer_loses_nothing() {
    use autopilot::backup::migrate;
    let stack = Stack::get();
    let (source, target) = (unique("events"), unique("events-migrated"));
    create_topic(&stack.kafka, &source, PARTITIONS, TOPIC_CONFIGS).await;
    create_topic(&stack.kafka, &target, PARTITIONS, TOPIC_CONFIGS).await;
    let (b, s) = (stack.kafka.clone(), source.clone());
    // The producer keeps writing while the migration runs.
    let producing = tokio::task::spawn_blocking(move || produce(&b, &s, 12_000));
    let ep = endpoint(&stack);
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::new(dir.path()));
    let route = migrate::Route { id: "m1".into(), source_topic: source.clone(), target_topic: target.clone() };
    let m = migrate::run(&ep, &ep, storage.clone(), &route, Duration::from_secs(3), Arc::new(|_| {})).await.unwrap();
    producing.await.unwrap();
    assert_eq!(m.partitions.values().map(|p| p.records).sum::<u64>(), 12_000, "{m:?}");
    assert_eq!(migrate::load(storage.as_ref(), "m1").unwrap(), m, "checkpoint saved");
    let src = migrate::fingerprint(&ep, &source, Duration::from_secs(1)).await.unwrap();
    let dst = migrate::fingerprint(&ep, &target, Duration::from_secs(1)).await.unwrap();
    assert_eq!(dst, src, "every partition: same count and rolling checksum");
    for (p, state) in &m.partitions {
        assert_eq!((state.records, state.checksum), src[p], "the copy's own tally of partition {p}");
    }
}

#[tokio::test]
async fn the_migrate_command_copies_and_verifies_each_partition() {
    let stack = Stack::get();
    let (source, target) = (unique("clicks"), unique("clicks-copy"));
    create_topic(&stack.kafka, &source, PARTITIONS, TOPIC_CONFIGS).await;
    create_topic(&stack.kafka, &target, PARTITIONS, TOPIC_CONFIGS).await;
    let (b, s) = (stack.kafka.clone(), source.clone());
    tokio::task::spawn_blocking(move || produce(&b, &s, 300)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (format!("{}/{source}", stack.kafka), format!("{}/{target}", stack.kafka));
    let (ok, out, err) = autopilot(&[
        "migrate",
        "--from",
        &from,
        "--to",
        &to,
        "--idle",
        "2s",
        "--id",
        "cli-m",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.matches(": verified").count(), PARTITIONS as usize, "{out}");
    assert!(out.contains("migration cli-m: 300 records copied"), "{out}");
    let (ok, _, err) = autopilot(&["migrate", "--from", "nope/x", "--to", &to]);
    assert!(!ok && err.contains("a cluster name needs --config"), "{err}");
}

fn commit_at(bootstrap: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o)).unwrap();
    }
    c.commit(&tpl, rdkafka::consumer::CommitMode::Sync).unwrap();
}

#[tokio::test]
async fn a_drain_watch_ends_drained_or_timed_out() {
    use autopilot::backup::drain::{self, Outcome};
    let stack = Stack::get();
    let topic = unique("jobs");
    create_topic(&stack.kafka, &topic, PARTITIONS, TOPIC_CONFIGS).await;
    let (b, t) = (stack.kafka.clone(), topic.clone());
    tokio::task::spawn_blocking(move || produce(&b, &t, 600)).await.unwrap();
    let group = unique("workers");
    // 100 records per partition; the group has read 20 of each: lag 480.
    let all: Vec<(i32, i64)> = (0..PARTITIONS).map(|p| (p, 20)).collect();
    commit_at(&stack.kafka, &group, &topic, &all);
    let ep = endpoint(&stack);
    let (e2, g2) = (ep.clone(), group.clone());
    assert_eq!(tokio::task::spawn_blocking(move || drain::lag(&e2, &g2)).await.unwrap().unwrap().total, 480);

    let stuck =
        drain::watch(&ep, &group, 50, Duration::from_secs(2), Duration::from_millis(500), &|_| {}).await.unwrap();
    assert_eq!(stuck, Outcome::TimedOut { lag: 480, started_with: 480 });

    // The consumers catch up while the watch runs.
    let (b, g, t) = (stack.kafka.clone(), group.clone(), topic.clone());
    let catching_up = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let near: Vec<(i32, i64)> = (0..PARTITIONS).map(|p| (p, 95)).collect();
        tokio::task::spawn_blocking(move || commit_at(&b, &g, &t, &near)).await.unwrap();
    });
    let seen = std::sync::Mutex::new(Vec::new());
    let outcome = drain::watch(&ep, &group, 50, Duration::from_secs(30), Duration::from_millis(300), &|l| {
        seen.lock().unwrap().push(l.total);
    })
    .await
    .unwrap();
    catching_up.await.unwrap();
    assert!(matches!(outcome, Outcome::Drained { lag: 30, .. }), "{outcome:?}");
    let seen = seen.into_inner().unwrap();
    assert_eq!((seen.first(), seen.last()), (Some(&480), Some(&30)), "progress reported: {seen:?}");

    let (ok, out, err) =
        autopilot(&["drain", "--bootstrap", &stack.kafka, "--group", &group, "--max-lag", "30", "--timeout", "5s"]);
    assert!(ok && out.contains(&format!("group {group} drained: lag 30 <= 30")), "{out}{err}");
    let (ok, out, _) = autopilot(&[
        "drain",
        "--bootstrap",
        &stack.kafka,
        "--group",
        &group,
        "--max-lag",
        "0",
        "--timeout",
        "1s",
        "--every",
        "300ms",
    ]);
    assert!(!ok && out.contains("not drained after 1s: lag 30 (was 30), target 0"), "{out}");
}

/// The agent's API with jobs on the stack's broker, served in-process on a free port.
async fn serve_jobs(stack: &Stack, dir: &std::path::Path) -> (String, Arc<autopilot::backup::jobs::Jobs>) {
    use autopilot::backup::jobs::{Jobs, JobsConfig};
    use autopilot::http::{router, AppState};
    let jobs = Jobs::new(JobsConfig {
        storage: Arc::new(FsStorage::new(dir)),
        concurrency: 2,
        idle: Duration::from_secs(1),
        endpoints: BTreeMap::from([("stack".to_owned(), endpoint(stack))]),
    });
    let policies = autopilot::policy::PolicySet::embedded(None, Duration::from_secs(1)).unwrap();
    let state = AppState {
        jobs: Some(Arc::clone(&jobs)),
        ..AppState::basic(Arc::new(std::sync::RwLock::new(Arc::new(policies))), autopilot::agent::Triggers::default())
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(Arc::new(state))).await.unwrap() });
    (url, jobs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_restores_migrations_and_drains_run_as_jobs_of_the_api() {
    use autopilot::backup::jobs::JobStatus;
    let stack = Stack::get();
    let (topic, copy, moved) = (unique("api-orders"), unique("api-orders-restored"), unique("api-orders-moved"));
    for t in [&topic, &copy, &moved] {
        create_topic(&stack.kafka, t, PARTITIONS, TOPIC_CONFIGS).await;
    }
    let (b, t) = (stack.kafka.clone(), topic.clone());
    tokio::task::spawn_blocking(move || produce(&b, &t, 1200)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (api, jobs) = serve_jobs(&stack, dir.path()).await;
    let cli = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || autopilot(&args.iter().map(String::as_str).collect::<Vec<_>>()))
            .await
            .unwrap()
    };
    let s = |x: &str| x.to_owned();

    // A backup through the API, followed by the command line to its end.
    let (ok, out, err) = cli(vec![
        s("backup"),
        s("create"),
        s("--api"),
        api.clone(),
        s("--cluster"),
        s("stack"),
        s("--topic"),
        topic.clone(),
    ])
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("accepted: job stack-") && out.contains("complete: 1200 records"), "{out}");
    let backup = jobs.list().into_iter().find(|j| j.spec.kind() == "backup").unwrap();
    assert_eq!((backup.status, backup.done, backup.total), (JobStatus::Succeeded, 1200, Some(1200)), "{backup:?}");
    let listed = support::agent::http("GET", &format!("{api}/api/v1/backups"), "").unwrap();
    assert!(listed.contains(&format!("\"id\":\"{}\"", backup.id)) && listed.contains("\"records\":1200"), "{listed}");

    // Restore it into another topic: the same records land there.
    let (ok, out, err) =
        cli(vec![s("backup"), s("restore"), backup.id.clone(), s("--api"), api.clone(), s("--to-topic"), copy.clone()])
            .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("into {copy} wrote 1200 records")), "{out}");

    // Migrate the topic; the job verifies every partition by count and checksum.
    let (from, to) = (format!("stack/{topic}"), format!("stack/{moved}"));
    let (ok, out, err) = cli(vec![s("migrate"), s("--api"), api.clone(), s("--from"), from, s("--to"), to]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("1200 records copied and verified in every partition"), "{out}");
    let ep = endpoint(&stack);
    let src = autopilot::backup::migrate::fingerprint(&ep, &topic, Duration::from_secs(1)).await.unwrap();
    let restored = autopilot::backup::migrate::fingerprint(&ep, &copy, Duration::from_secs(1)).await.unwrap();
    assert_eq!(src, restored, "restored topic equals the original (count and checksum per partition)");

    // A drain job for a group with nothing committed: drained at once.
    let (ok, out, err) = cli(vec![
        s("drain"),
        s("--api"),
        api.clone(),
        s("--cluster"),
        s("stack"),
        s("--group"),
        unique("nobody"),
        s("--timeout"),
        s("10s"),
    ])
    .await;
    assert!(ok && out.contains("drained: lag 0 <= 0"), "{out}{err}");

    // Bad requests are refused with what is wrong, before any job exists.
    let before = jobs.list().len();
    for (path, body, want) in [
        ("clusters/nowhere/backups", r#"{"topic":"t"}"#, "404 Not Found"),
        ("clusters/stack/backups", r#"{"topic":"t","compression":"brotli"}"#, "unknown variant `brotli`"),
        ("backups/no-such-backup/restore", r#"{"to_topic":"x"}"#, "404 Not Found"),
        ("migrations", r#"{"from":"stack","to":"stack/x"}"#, "is not CLUSTER/TOPIC"),
        ("clusters/stack/drain", r#"{"group":"g","timeout":"soon"}"#, "timeout \\\"soon\\\" is not a duration"),
    ] {
        let answer = support::agent::http("POST", &format!("{api}/api/v1/{path}"), body).unwrap();
        assert!(answer.contains(want), "POST {path} {body}: {answer}");
    }
    assert_eq!(jobs.list().len(), before);
    let (ok, _, err) = cli(vec![s("jobs"), s("--api"), api.clone()]).await;
    assert!(ok, "{err}");
}

/// The high watermark of each partition of `topic`.
fn high_watermarks(bootstrap: &str, topic: &str) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    (0..PARTITIONS).map(|p| c.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap().1).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_killed_mid_partition_resumes_without_duplicates_or_loss() {
    use autopilot::backup::migrate;
    let stack = Stack::get();
    let (source, target) = (unique("killed-src"), unique("killed-dst"));
    create_topic(&stack.kafka, &source, PARTITIONS, TOPIC_CONFIGS).await;
    create_topic(&stack.kafka, &target, PARTITIONS, TOPIC_CONFIGS).await;
    // 3,000 records a partition: partition 0 has no checkpoint until it is done (every 10,000).
    let total = 6 * 3_000;
    let (b, s) = (stack.kafka.clone(), source.clone());
    tokio::task::spawn_blocking(move || produce(&b, &s, total)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_owned();
    // tansu reports a partition's high watermark as its last batch's base offset plus one; the
    // copy's resumption reads the target's watermark, so the copy sends one record per batch
    // here (a Kafka broker needs no such setting).
    let config = dir.path().join("autopilot.yaml");
    std::fs::write(
        &config,
        format!(
            "region: test\nclusters:\n  - {{name: stack, namespace: kafka, kafka: stack, node_pool: brokers, backend: simulated, bootstrap_servers: [\"{}\"], kafka_client: {{properties: {{batch.num.messages: \"1\", linger.ms: \"0\"}}}}}}\n",
            stack.kafka
        ),
    )
    .unwrap();
    let (from, to) = (format!("stack/{source}"), format!("stack/{target}"));
    let c = config.to_str().unwrap().to_owned();
    let args: Vec<String> =
        ["migrate", "--config", &c, "--from", &from, "--to", &to, "--id", "k1", "--idle", "2s", "--dir", &d]
            .iter()
            .map(|x| (*x).to_owned())
            .collect();
    let (b, t, a) = (stack.kafka.clone(), target.clone(), args.clone());
    let landed = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_autopilot"))
            .args(&a)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill the copy (SIGKILL: no flush, no checkpoint) once partition 0 is partly copied.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while high_watermarks(&b, &t)[0] < 300 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let killed = child.kill();
        let waited = child.wait();
        assert!(killed.is_ok() && waited.is_ok(), "{killed:?} {waited:?}");
        high_watermarks(&b, &t)
    })
    .await
    .unwrap();
    let storage = FsStorage::new(dir.path());
    let checkpoint = migrate::load(&storage, "k1").map(|m| m.partitions.get(&0).map_or(0, |p| p.records)).unwrap_or(0);
    assert!(
        landed[0] > 0 && (landed[0] as u64) > checkpoint && landed[0] < 3_000,
        "killed mid-partition with records past the checkpoint: landed {landed:?}, checkpoint of partition 0 {checkpoint}"
    );

    // The same id resumes: the records that landed after the checkpoint are skipped, not re-sent.
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || autopilot(&args.iter().map(String::as_str).collect::<Vec<_>>()))
            .await
            .unwrap();
    assert!(ok, "{out}{err}");
    let ep = endpoint(&stack);
    let src = migrate::fingerprint(&ep, &source, Duration::from_secs(1)).await.unwrap();
    let dst = migrate::fingerprint(&ep, &target, Duration::from_secs(1)).await.unwrap();
    assert_eq!(src.values().map(|v| v.0).sum::<u64>(), total as u64);
    assert_eq!(dst, src, "every partition has the same records in the same order, none twice");
}
