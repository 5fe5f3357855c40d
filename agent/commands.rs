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

/// Progress of a long command: a bar on a terminal (stderr), a line at most every 2 s otherwise.
pub struct Bar {
    bar: Option<indicatif::ProgressBar>,
    label: String,
    last_line: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Bar {
    pub fn new(label: &str, total: Option<u64>) -> Arc<Self> {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = total.map_or_else(indicatif::ProgressBar::new_spinner, indicatif::ProgressBar::new);
            let style = indicatif::ProgressStyle::with_template(
                "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} records ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            b.set_style(style);
            b.set_message(label.to_owned());
            b
        });
        Arc::new(Self { bar, label: label.to_owned(), last_line: std::sync::Mutex::new(None) })
    }

    /// `done` of `total` records.
    pub fn set(&self, done: u64, total: Option<u64>) {
        if let Some(b) = &self.bar {
            if let Some(t) = total {
                b.set_length(t);
            }
            b.set_position(done);
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
            *last = Some(std::time::Instant::now());
            match total {
                Some(t) => println!("  {}: {done} of {t} records", self.label),
                None => println!("  {}: {done} records", self.label),
            }
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Submit a job to the agent's API and follow it to its end with a progress bar.
pub async fn submit_and_follow(api: &str, path: &str, body: &serde_json::Value) -> anyhow::Result<ExitCode> {
    let client = Client::new(api);
    let accepted = client.submit(path, body).await?;
    println!("accepted: job {} ({api}{})", accepted.job, accepted.status_url);
    follow(&client, &accepted.job).await
}

async fn follow(client: &Client, id: &str) -> anyhow::Result<ExitCode> {
    use autopilot::backup::jobs::JobStatus;
    let mut bar = None;
    loop {
        let j = client.job(id).await?;
        let b = bar.get_or_insert_with(|| Bar::new(&j.id, j.total));
        b.set(j.done, j.total);
        if j.finished() {
            b.finish();
            show_job(&j);
            return Ok(if j.status == JobStatus::Succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn show_job(j: &autopilot::backup::jobs::Job) {
    let status = serde_json::to_value(j.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let total = j.total.map_or_else(String::new, |t| format!(" of {t}"));
    println!(
        "{}  {}  {}  {status}  {}{total}  {}",
        j.id,
        j.spec.kind(),
        j.spec.cluster(),
        j.done,
        j.message.as_deref().unwrap_or("")
    );
}

/// `autopilot jobs [ID]`: list the agent's jobs, or follow one to its end.
pub async fn jobs(api: &str, id: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let client = Client::new(api);
    if let Some(id) = id {
        if json {
            println!("{}", serde_json::to_string(&client.job(id).await?)?);
            return Ok(ExitCode::SUCCESS);
        }
        return follow(&client, id).await;
    }
    for j in client.jobs().await? {
        if json {
            println!("{}", serde_json::to_string(&j)?);
        } else {
            show_job(&j);
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
    Ok((c.name.clone(), Endpoint::of(&c)))
}

pub async fn backup(command: BackupCommand) -> anyhow::Result<ExitCode> {
    use autopilot::backup::kafka::{self as bk, BackupRequest};
    use autopilot::backup::{Compression, FsStorage, Manifest, Storage};
    let storage = |dir: &PathBuf| -> Arc<dyn Storage> { Arc::new(FsStorage::new(dir.clone())) };
    let codec = |c: Codec| match c {
        Codec::None => Compression::None,
        Codec::Gzip => Compression::Gzip,
        Codec::Snappy => Compression::Snappy,
        Codec::Lz4 => Compression::Lz4,
        Codec::Zstd => Compression::Zstd,
    };
    match command {
        BackupCommand::Create { target, topic, compression, max_messages, api: Some(api), .. } => {
            let body =
                serde_json::json!({"topic": topic, "compression": codec(compression), "max_messages": max_messages});
            let path = format!("clusters/{}/backups", target.cluster.unwrap_or_default());
            submit_and_follow(&api, &path, &body).await
        }
        BackupCommand::Restore { id, target, to_topic, dry_run, api: Some(api), .. } => {
            let body = serde_json::json!({"to_topic": to_topic, "cluster": target.cluster, "dry_run": dry_run});
            submit_and_follow(&api, &format!("backups/{id}/restore"), &body).await
        }
        BackupCommand::Create { target, topic, compression, max_messages, id, dir, api: None } => {
            let (cluster, ep) = endpoint(&target)?;
            let s = storage(&dir);
            let now = autopilot::time::Timestamp::now();
            let id = id.unwrap_or_else(|| format!("{cluster}-{topic}-{}", now.as_millis() / 1000));
            let compression = codec(compression);
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
            let total = m.expected_records();
            let bar = Bar::new(&format!("backup {id}"), Some(total));
            let shown = Arc::clone(&bar);
            let started = std::time::Instant::now();
            let m = bk::run(&ep, s, m, Duration::from_secs(30), Arc::new(move |n| shown.set(n, Some(total)))).await;
            bar.finish();
            let m = m?;
            let (records, (raw, stored)) = (m.records(), m.bytes());
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
                let records = m.records();
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
        BackupCommand::Restore { id, target, to_topic, dry_run, dir, api: None } => {
            let (_, ep) = endpoint(&target)?;
            let s = storage(&dir);
            let m = Manifest::load(s.as_ref(), &id)?;
            let total = m.records();
            let bar = Bar::new(&format!("restore {id}"), Some(total));
            let shown = Arc::clone(&bar);
            let report =
                bk::restore(&ep, s, &m, &to_topic, dry_run, Arc::new(move |n| shown.set(n, Some(total)))).await;
            bar.finish();
            let report = report?;
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
    let bar = Bar::new(&format!("migration {id}"), None);
    let shown = Arc::clone(&bar);
    let progress = Arc::new(move |n| shown.set(n, None));
    let route = migrate::Route { id: id.to_owned(), source_topic, target_topic: target_topic.clone() };
    let m = migrate::run(&src, &dst, storage, &route, idle, progress).await;
    bar.finish();
    let m = m?;
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
    // A lag reading every few seconds is its own progress line (on a terminal or not).
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
