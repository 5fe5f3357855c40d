//! The commands of `autopilot` that are clients: offline planning and the operations API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use autopilot::client::Client;
use autopilot::operations::{OperationRecord, Status};
use autopilot::planner::{self, files, Role};

use crate::{BackupCommand, Codec, Target};

/// Arguments of `autopilot plan`.
pub struct PlanArgs {
    pub assignment: PathBuf,
    pub brokers: PathBuf,
    pub add_brokers: Option<u32>,
    pub remove_brokers: Vec<i32>,
    pub log_dirs: Option<PathBuf>,
    pub output: PathBuf,
    pub json: bool,
}

pub fn plan(a: &PlanArgs) -> anyhow::Result<ExitCode> {
    let mut partitions = files::read_assignment(&a.assignment)?;
    let mut brokers = files::read_brokers(&a.brokers)?;
    if let Some(path) = &a.log_dirs {
        let sizes = files::read_log_dirs(path)?;
        for p in &mut partitions {
            p.size_bytes = sizes.get(&(p.topic.clone(), p.partition)).copied().unwrap_or(0);
        }
    }
    let added = a.add_brokers.map(|n| files::add_brokers(&mut brokers, n)).unwrap_or_default();
    for id in &a.remove_brokers {
        let b = brokers.iter_mut().find(|b| b.id == *id);
        let b = b.with_context(|| format!("--remove-brokers: broker {id} is not in {}", a.brokers.display()))?;
        b.role = Role::Drain;
    }
    let problem = planner::Problem { brokers, partitions };
    let started = std::time::Instant::now();
    let plan = planner::plan(&problem)?;
    let took = started.elapsed();
    let text = serde_json::to_string_pretty(&files::reassignment(&plan.moves))?;
    std::fs::write(&a.output, text + "\n").with_context(|| format!("failed to write {}", a.output.display()))?;
    let s = &plan.stats;
    if a.json {
        println!(
            "{}",
            serde_json::to_string(
                &serde_json::json!({"added_brokers": added, "stats": s, "millis": took.as_millis()})
            )?
        );
    } else {
        if !added.is_empty() {
            let racks: Vec<String> = problem
                .brokers
                .iter()
                .filter(|b| added.contains(&b.id))
                .map(|b| format!("{} ({})", b.id, b.rack.as_deref().unwrap_or("no rack")))
                .collect();
            println!("added brokers:     {}", racks.join(", "));
        }
        println!("brokers:           {}, partitions {}, replicas {}", s.brokers, s.partitions, s.replicas);
        println!("replica moves:     {} (lower bound {})", s.replica_moves, s.lower_bound);
        println!("bytes moved:       {}", s.bytes_moved);
        println!("leader changes:    {}", s.leader_changes);
        println!(
            "replica spread:    before {}, after {} (best rack awareness allows: {}; within each rack: {})",
            s.spread_before, s.spread_after, s.reachable_spread, s.rack_spread_after
        );
        println!("leader spread:     before {}, after {}", s.leader_spread_before, s.leader_spread_after);
        println!("rack violations:   before {}, after {}", s.rack_violations_before, s.rack_violations_after);
        println!("planned in:        {took:.2?}");
        println!("wrote {} ({} partitions to reassign)", a.output.display(), plan.moves.len());
    }
    if s.unplaced > 0 || !s.over_capacity_after.is_empty() {
        bail!(
            "the plan misses a hard goal: {} replicas without a valid broker, brokers over capacity {:?}",
            s.unplaced,
            s.over_capacity_after
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(o: &OperationRecord) {
    let status = serde_json::to_value(o.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    println!("{}  {}  {}  {}  [{}] {}", o.id, o.cluster, o.kind, status, o.reason, o.detail.as_deref().unwrap_or(""));
}

pub async fn scale(
    api: &str,
    cluster: &str,
    to: u32,
    drain_timeout: Option<Duration>,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let client = Client::new(api);
    let accepted = client.scale(cluster, to, drain_timeout).await?;
    println!("accepted: operation {} ({api}{})", accepted.operation, accepted.status_url);
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    let mut shown = 0;
    loop {
        let o = client.operation(&accepted.operation).await?;
        for s in o.steps.iter().skip(shown) {
            println!("  {}  {}: {}", s.at, s.step, s.detail);
        }
        shown = o.steps.len();
        if o.finished() {
            show(&o);
            return Ok(if o.status == Status::Succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

pub async fn operations(api: &str, id: Option<&str>, cluster: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let client = Client::new(api);
    let list = match id {
        Some(id) => vec![client.operation(id).await?],
        None => client.operations(cluster).await?,
    };
    for o in &list {
        if json {
            println!("{}", serde_json::to_string(o)?);
            continue;
        }
        show(o);
        if id.is_some() {
            for s in &o.steps {
                println!("  {}  {}: {}", s.at, s.step, s.detail);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn endpoint(t: &Target) -> anyhow::Result<(String, autopilot::backup::kafka::Endpoint)> {
    use autopilot::backup::kafka::Endpoint;
    use autopilot::config::KafkaClientConfig;
    if let Some(b) = &t.bootstrap {
        let client = KafkaClientConfig { timeout: Duration::from_secs(10), properties: Default::default() };
        return Ok(("kafka".into(), Endpoint { bootstrap: b.split(',').map(str::to_owned).collect(), client }));
    }
    let (Some(path), Some(name)) = (&t.config, &t.cluster) else {
        bail!("name the cluster: --config FILE --cluster NAME, or --bootstrap HOST:PORT");
    };
    let config = autopilot::config::load(path)?;
    let c = config
        .clusters
        .into_iter()
        .find(|c| &c.name == name)
        .with_context(|| format!("no cluster {name:?} in {}", path.display()))?;
    if c.bootstrap_servers.is_empty() {
        bail!("cluster {name} has no bootstrap_servers in {}", path.display());
    }
    Ok((c.name, Endpoint { bootstrap: c.bootstrap_servers, client: c.kafka_client }))
}

pub async fn backup(command: BackupCommand) -> anyhow::Result<ExitCode> {
    use autopilot::backup::kafka::{self as bk, BackupRequest};
    use autopilot::backup::{Compression, FsStorage, Manifest, Storage};
    let storage = |dir: &PathBuf| -> Arc<dyn Storage> { Arc::new(FsStorage::new(dir.clone())) };
    match command {
        BackupCommand::Create { target, topic, compression, max_messages, id, dir } => {
            let (cluster, ep) = endpoint(&target)?;
            let s = storage(&dir);
            let now = autopilot::time::Timestamp::now();
            let id = id.unwrap_or_else(|| format!("{cluster}-{topic}-{}", now.as_millis() / 1000));
            let compression = match compression {
                Codec::None => Compression::None,
                Codec::Gzip => Compression::Gzip,
                Codec::Snappy => Compression::Snappy,
                Codec::Lz4 => Compression::Lz4,
                Codec::Zstd => Compression::Zstd,
            };
            let m = match Manifest::load(s.as_ref(), &id) {
                Ok(m) if m.completed_at.is_some() => bail!("backup {id} is already complete"),
                Ok(m) => {
                    println!("resuming backup {id}");
                    m
                }
                Err(_) => {
                    let req = BackupRequest { id: id.clone(), cluster, topic, compression, max_messages };
                    bk::start(&ep, s.as_ref(), &req, now).await?
                }
            };
            let total: u64 =
                m.partitions.values().map(|p| u64::try_from(p.end_offset - p.start_offset).unwrap_or(0)).sum();
            let progress = Arc::new(move |p: i32, n: u64| {
                println!("  partition {p}: {n} records stored (of about {total} in all)")
            });
            let started = std::time::Instant::now();
            let m = bk::run(&ep, s, m, Duration::from_secs(30), progress).await?;
            let records: u64 = m.partitions.values().map(|p| p.records()).sum();
            let (raw, stored): (u64, u64) = m
                .partitions
                .values()
                .flat_map(|p| &p.segments)
                .fold((0, 0), |(r, s), x| (r + x.summary.raw_bytes, s + x.summary.stored_bytes));
            let secs = started.elapsed().as_secs_f64();
            println!(
                "backup {} complete: {records} records, {raw} bytes raw, {stored} stored (ratio {:.2}), {secs:.1}s, {:.1} MB/s",
                m.id,
                raw as f64 / stored.max(1) as f64,
                raw as f64 / 1e6 / secs.max(1e-9)
            );
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::List { dir } => {
            for m in Manifest::list(storage(&dir).as_ref())? {
                let records: u64 = m.partitions.values().map(|p| p.records()).sum();
                let state = if m.completed_at.is_some() { "complete" } else { "incomplete" };
                println!(
                    "{}  {}/{}  {}  {} partitions  {records} records  {state}",
                    m.id,
                    m.cluster,
                    m.topic,
                    m.created_at,
                    m.partitions.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Verify { id, dir } => {
            let s = storage(&dir);
            let m = Manifest::load(s.as_ref(), &id)?;
            let counts = m.verify(s.as_ref())?;
            println!(
                "backup {id}: every checksum verified, {} records in {} partitions",
                counts.values().sum::<u64>(),
                counts.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Restore { id, target, to_topic, dry_run, dir } => {
            let (_, ep) = endpoint(&target)?;
            let s = storage(&dir);
            let m = Manifest::load(s.as_ref(), &id)?;
            let report = bk::restore(&ep, s, &m, &to_topic, dry_run).await?;
            let verb = if dry_run { "would write" } else { "wrote" };
            for (p, n) in &report.records {
                println!("  {to_topic}-{p}: {verb} {n} records");
            }
            for (group, offsets) in &report.translated_offsets {
                println!("  group {group}: offsets on {to_topic} {offsets:?}");
            }
            println!("restore of {id} {verb} {} records", report.records.values().sum::<u64>());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `CLUSTER/TOPIC`: a cluster of the config file, or host:port.
fn place(spec: &str, config: Option<&std::path::Path>) -> anyhow::Result<(autopilot::backup::kafka::Endpoint, String)> {
    let (cluster, topic) = spec.rsplit_once('/').with_context(|| format!("{spec:?} is not CLUSTER/TOPIC"))?;
    let target = if cluster.contains(':') {
        Target { config: None, cluster: None, bootstrap: Some(cluster.to_owned()) }
    } else {
        let config = config.with_context(|| format!("{spec:?}: a cluster name needs --config"))?;
        Target { config: Some(config.to_owned()), cluster: Some(cluster.to_owned()), bootstrap: None }
    };
    Ok((endpoint(&target)?.1, topic.to_owned()))
}

pub async fn migrate(
    from: &str,
    to: &str,
    config: Option<&std::path::Path>,
    idle: Duration,
    id: &str,
    dir: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    use autopilot::backup::{migrate, FsStorage, Storage};
    let (src, source_topic) = place(from, config)?;
    let (dst, target_topic) = place(to, config)?;
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::new(dir));
    let m = migrate::run(&src, &dst, storage, id, &source_topic, &target_topic, idle).await?;
    let copied = migrate::fingerprint(&dst, &target_topic, Duration::from_secs(2)).await?;
    let mut ok = true;
    for (p, state) in &m.partitions {
        let there = copied.get(p).copied().unwrap_or_default();
        let same = there == (state.records, state.checksum);
        ok &= same;
        let verdict = if same { "verified" } else { "MISMATCH" };
        println!(
            "  partition {p}: {} records, checksum {:#010x}: {verdict} (target {} records, {:#010x})",
            state.records, state.checksum, there.0, there.1
        );
    }
    println!(
        "migration {id}: {} records copied from {from} to {to}",
        m.partitions.values().map(|p| p.records).sum::<u64>()
    );
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub async fn drain(
    target: &Target,
    group: &str,
    max_lag: u64,
    timeout: Duration,
    every: Duration,
) -> anyhow::Result<ExitCode> {
    use autopilot::backup::drain::{self, Outcome};
    let (_, ep) = endpoint(target)?;
    let first = std::sync::Mutex::new(None::<u64>);
    let progress = |l: &drain::Lag| {
        let mut f = first.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let start = *f.get_or_insert(l.total);
        let done = if start == 0 { 100.0 } else { 100.0 * (start.saturating_sub(l.total)) as f64 / start as f64 };
        println!("  {group}: lag {} ({done:.0}% drained since the start, target {max_lag})", l.total);
    };
    match drain::watch(&ep, group, max_lag, timeout, every, &progress).await? {
        Outcome::Drained { lag, after_ms } => {
            println!("group {group} drained: lag {lag} <= {max_lag} after {:.1}s", after_ms as f64 / 1000.0);
            Ok(ExitCode::SUCCESS)
        }
        Outcome::TimedOut { lag, started_with } => {
            println!(
                "group {group} not drained after {}: lag {lag} (was {started_with}), target {max_lag}",
                humantime::format_duration(timeout)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
