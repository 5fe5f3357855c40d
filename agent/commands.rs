//! The commands of `autopilot` that are clients: offline planning and the operations API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use autopilot::client::Client;
use autopilot::operations::{OperationRecord, Status};
use autopilot::planner::{self, files, Role};

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
