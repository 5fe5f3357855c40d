//! `autopilot`: the command line of kafka-autopilot.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use autopilot::policy::testing::{self, Outcome};
use autopilot::policy::PolicySet;
use autopilot::scenario::{self, Format, Printer, RunOptions, Scenario};

mod commands;

/// Policy-driven autoscaling and self-healing for Strimzi Kafka.
#[derive(Debug, Parser)]
#[command(name = "autopilot", version, about)]
struct Cli {
    /// Log format.
    #[arg(long, env = "AUTOPILOT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "AUTOPILOT_LOG", default_value = "warn,autopilot=info", global = true)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent.
    Run {
        #[arg(long, env = "AUTOPILOT_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration file and print it with defaults filled in.
    CheckConfig {
        #[arg(long, env = "AUTOPILOT_CONFIG")]
        config: PathBuf,
    },
    /// Watch the agent handle a built-in scenario on a simulated cluster, at accelerated time.
    Demo {
        /// Virtual seconds per real second (0: as fast as possible).
        #[arg(long, default_value_t = 360.0)]
        speed: f64,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a scenario file on the simulated backend on virtual time and check its expectations.
    Simulate {
        #[arg(long)]
        scenario: PathBuf,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
        /// Policy directory (default: the policies built into the binary).
        #[arg(long, env = "AUTOPILOT_POLICIES")]
        policies: Option<PathBuf>,
        /// Virtual seconds per real second (default: as fast as possible).
        #[arg(long)]
        speed: Option<f64>,
        /// Write the policy input document of the tick at `--input-at` to this file.
        #[arg(long, requires = "input_at")]
        dump_input: Option<PathBuf>,
        /// Offset of the tick whose input `--dump-input` writes, e.g. 5m.
        #[arg(long, value_parser = humantime::parse_duration)]
        input_at: Option<Duration>,
    },
    /// Plan a partition rebalance offline from Kafka's own files, and write the reassignment
    /// JSON that `kafka-reassign-partitions.sh --execute` takes.
    Plan {
        /// Current assignment, as `kafka-reassign-partitions.sh` writes it.
        #[arg(long)]
        assignment: PathBuf,
        /// Brokers: `[{"id": 1, "rack": "a"}, ...]`, optional `capacity_bytes`.
        #[arg(long)]
        brokers: PathBuf,
        /// Add this many brokers (next ids, racks filled evenly) and move replicas onto them.
        #[arg(long, conflicts_with = "remove_brokers")]
        add_brokers: Option<u32>,
        /// Move every replica off these brokers, e.g. `4,5`.
        #[arg(long, value_delimiter = ',')]
        remove_brokers: Vec<i32>,
        /// Partition sizes: the output of `kafka-log-dirs.sh --describe`.
        #[arg(long)]
        log_dirs: Option<PathBuf>,
        /// Where to write the proposed reassignment.
        #[arg(long)]
        output: PathBuf,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running agent to scale a cluster (through its API) and follow the operation.
    Scale {
        #[arg(long)]
        cluster: String,
        /// Brokers wanted.
        #[arg(long)]
        to: u32,
        /// Longest a scale-down may spend draining brokers, e.g. 300s.
        #[arg(long, value_parser = humantime::parse_duration)]
        drain_timeout: Option<Duration>,
        /// The agent's API.
        #[arg(long, env = "AUTOPILOT_API", default_value = "http://127.0.0.1:9464")]
        api: String,
        /// Return once accepted instead of following the operation to its end.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show the running agent's operations, or one of them.
    Operations {
        id: Option<String>,
        #[arg(long)]
        cluster: Option<String>,
        #[arg(long, env = "AUTOPILOT_API", default_value = "http://127.0.0.1:9464")]
        api: String,
        #[arg(long)]
        json: bool,
    },
    /// Copy a topic to another topic or cluster, verified per partition; resumable by id.
    Migrate {
        /// Source: CLUSTER/TOPIC, where CLUSTER is a name in --config or host:port.
        #[arg(long)]
        from: String,
        /// Target: CLUSTER/TOPIC (the topic must exist with at least as many partitions).
        #[arg(long)]
        to: String,
        #[arg(long, env = "AUTOPILOT_CONFIG")]
        config: Option<PathBuf>,
        /// Stop once no new record has arrived for this long on each partition.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        idle: Duration,
        /// Checkpoint id; the same id resumes an interrupted migration.
        #[arg(long, default_value = "migration")]
        id: String,
        /// Where checkpoints are kept.
        #[arg(long, default_value = "backups")]
        dir: PathBuf,
        /// Run it as a job of the agent at this API (clusters are the agent's), and follow it.
        #[arg(long, conflicts_with = "config")]
        api: Option<String>,
    },
    /// Watch a consumer group drain: until its lag is at most --max-lag, or --timeout passes.
    Drain {
        #[command(flatten)]
        target: Target,
        /// Run it as a job of the agent at this API (`--cluster` is the agent's), and follow it.
        #[arg(long, conflicts_with_all = ["config", "bootstrap"], requires = "cluster")]
        api: Option<String>,
        #[arg(long)]
        group: String,
        #[arg(long, default_value_t = 0)]
        max_lag: u64,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "300s")]
        timeout: Duration,
        /// Time between two readings of the lag.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
        every: Duration,
    },
    /// Show the running agent's backup, restore, migration and drain jobs, or follow one.
    Jobs {
        id: Option<String>,
        #[arg(long, env = "AUTOPILOT_API", default_value = "http://127.0.0.1:9464")]
        api: String,
        #[arg(long)]
        json: bool,
    },
    /// Back up topics, verify and restore backups (a directory of backups).
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Work with Rego policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

/// Where a cluster is: a config file and a cluster name in it, or bootstrap servers.
#[derive(Debug, clap::Args)]
struct Target {
    /// Config file whose `clusters[]` names the cluster.
    #[arg(long, env = "AUTOPILOT_CONFIG", requires = "cluster")]
    config: Option<PathBuf>,
    /// Cluster name in the config file.
    #[arg(long)]
    cluster: Option<String>,
    /// Bootstrap servers, instead of a config file.
    #[arg(long, conflicts_with = "config")]
    bootstrap: Option<String>,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Back up a topic (resumes an interrupted backup of the same id).
    Create {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        topic: String,
        #[arg(long, value_enum, default_value_t = Codec::Lz4)]
        compression: Codec,
        #[arg(long)]
        max_messages: Option<u64>,
        /// Backup id (default: <cluster>-<topic>-<unix seconds>).
        #[arg(long)]
        id: Option<String>,
        #[arg(long, default_value = "backups")]
        dir: PathBuf,
        /// Run it as a job of the agent at this API (`--cluster` is the agent's), and follow it.
        #[arg(long, conflicts_with_all = ["config", "bootstrap", "id"], requires = "cluster")]
        api: Option<String>,
    },
    /// List the backups in a directory.
    List {
        #[arg(long, default_value = "backups")]
        dir: PathBuf,
    },
    /// Check every checksum of a backup against its manifest.
    Verify {
        id: String,
        #[arg(long, default_value = "backups")]
        dir: PathBuf,
    },
    /// Restore a backup into a topic (same partitions, keys, values, headers, timestamps).
    Restore {
        id: String,
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        to_topic: String,
        /// Verify and print what would be written; write nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, default_value = "backups")]
        dir: PathBuf,
        /// Run it as a job of the agent at this API (its backups; `--cluster` defaults to the
        /// backup's), and follow it.
        #[arg(long, conflicts_with_all = ["config", "bootstrap"])]
        api: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Run the `test_*` rules of `*_test.rego` files, as `opa test` does.
    Test {
        /// Policy directory.
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Only tests whose `package.rule` contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Print each result as a JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate the policies on an input document and print the decisions.
    Eval {
        /// Policy input document (JSON), e.g. from `simulate --dump-input`.
        #[arg(long)]
        input: PathBuf,
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
    },
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("invalid --log filter")?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

#[allow(clippy::print_stderr)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet_default = matches!(cli.command, Command::Demo { .. } | Command::Simulate { .. } | Command::Policy { .. });
    // Commands that print their own report keep the log quiet unless asked (AUTOPILOT_LOG, --log).
    let filter = if quiet_default && std::env::var_os("AUTOPILOT_LOG").is_none() && cli.log == "warn,autopilot=info" {
        "off"
    } else {
        cli.log.as_str()
    };
    if let Err(e) = init_logging(cli.log_format, filter) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("failed to start the async runtime")
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config } => {
            let config = autopilot::config::load(&config)?;
            runtime()?.block_on(async {
                let cancel = CancellationToken::new();
                tokio::spawn(shutdown_on_signal(cancel.clone()));
                autopilot::daemon::run(config, cancel).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { config } => {
            let c = autopilot::config::load(&config)?;
            let policies = PolicySet::load(&c.policy.dir, None, c.policy.eval_timeout)
                .with_context(|| format!("policies in {}", c.policy.dir.display()))?;
            println!("{}", serde_yaml::to_string(&c)?);
            println!("# config ok: {} cluster(s); policies ok: {}", c.clusters.len(), policies.packages().join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { speed, json } => {
            let s = Scenario::parse(scenario::DEMO, "built-in demo")?;
            if !json {
                println!("kafka-autopilot demo: {}\n{}\n", s.name, s.description.as_deref().unwrap_or_default());
            }
            simulate(&s, None, json, (speed > 0.0).then_some(speed), None)
        }
        Command::Simulate { scenario, json, policies, speed, dump_input, input_at } => {
            let s = Scenario::load(&scenario)?;
            let dump = dump_input.zip(input_at);
            simulate(&s, policies, json, speed, dump)
        }
        Command::Plan { assignment, brokers, add_brokers, remove_brokers, log_dirs, output, json } => {
            commands::plan(&commands::PlanArgs {
                assignment,
                brokers,
                add_brokers,
                remove_brokers,
                log_dirs,
                output,
                json,
            })
        }
        Command::Scale { cluster, to, drain_timeout, api, no_wait } => {
            runtime()?.block_on(commands::scale(&api, &cluster, to, drain_timeout, !no_wait))
        }
        Command::Operations { id, cluster, api, json } => {
            runtime()?.block_on(commands::operations(&api, id.as_deref(), cluster.as_deref(), json))
        }
        Command::Backup { command } => runtime()?.block_on(commands::backup(command)),
        Command::Drain { target, group, max_lag, timeout, every: _, api: Some(api) } => {
            let body = serde_json::json!({"group": group, "max_lag": max_lag, "timeout": humantime::format_duration(timeout).to_string()});
            let path = format!("clusters/{}/drain", target.cluster.unwrap_or_default());
            runtime()?.block_on(commands::submit_and_follow(&api, &path, &body))
        }
        Command::Drain { target, group, max_lag, timeout, every, api: None } => {
            runtime()?.block_on(commands::drain(&target, &group, max_lag, timeout, every))
        }
        Command::Migrate { from, to, api: Some(api), .. } => {
            let body = serde_json::json!({"from": from, "to": to});
            runtime()?.block_on(commands::submit_and_follow(&api, "migrations", &body))
        }
        Command::Migrate { from, to, config, idle, id, dir, api: None } => {
            runtime()?.block_on(commands::migrate(&from, &to, config.as_deref(), idle, &id, &dir))
        }
        Command::Jobs { id, api, json } => runtime()?.block_on(commands::jobs(&api, id.as_deref(), json)),
        Command::Policy { command: PolicyCommand::Test { dir, filter, json } } => {
            policy_test(&dir, filter.as_deref(), json)
        }
        Command::Policy { command: PolicyCommand::Eval { input, policies } } => {
            let text =
                std::fs::read_to_string(&input).with_context(|| format!("failed to read {}", input.display()))?;
            let doc: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", input.display()))?;
            let set = PolicySet::load(&policies, None, Duration::from_secs(5))?;
            let eval = set.evaluate(&doc)?;
            for d in &eval.decisions {
                println!("{}", serde_json::to_string(d)?);
            }
            for e in &eval.errors {
                println!("{}", serde_json::json!({"error": e.to_string(), "category": e.category()}));
            }
            Ok(if eval.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

#[allow(clippy::print_stderr)]
fn simulate(
    s: &Scenario,
    policy_dir: Option<PathBuf>,
    json: bool,
    speed: Option<f64>,
    dump: Option<(PathBuf, Duration)>,
) -> anyhow::Result<ExitCode> {
    let format = if json { Format::Json } else { Format::Human };
    let printer = Arc::new(Printer::stdout(format, scenario::START));
    let opts = RunOptions { policy_dir, speed, printer: Some(printer), input_at: dump.as_ref().map(|d| d.1) };
    let report = runtime()?.block_on(scenario::run(s, opts))?;
    if let Some((path, at)) = dump {
        let input = report.input.as_ref().with_context(|| format!("no tick at {}", humantime::format_duration(at)))?;
        std::fs::write(&path, serde_json::to_vec_pretty(input)?)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    let mut out = std::io::stdout();
    if report.unmet.is_empty() {
        if !json {
            writeln!(out, "\nscenario {}: all {} expectations met", report.name, s.expect.len())?;
        }
        Ok(ExitCode::SUCCESS)
    } else {
        for u in &report.unmet {
            eprintln!("UNMET: {u}");
        }
        eprintln!("scenario {}: {} of {} expectations unmet", report.name, report.unmet.len(), s.expect.len());
        Ok(ExitCode::FAILURE)
    }
}

fn policy_test(dir: &std::path::Path, filter: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let results = testing::run(dir, filter)?;
    if results.is_empty() {
        bail!("no test_* rules found in {}/*_test.rego", dir.display());
    }
    let (mut passed, mut failed) = (0, 0);
    for r in &results {
        if r.outcome == Outcome::Pass {
            passed += 1
        } else {
            failed += 1
        }
        if json {
            println!("{}", serde_json::to_string(r)?);
            continue;
        }
        let status = match &r.outcome {
            Outcome::Pass => "PASS".to_owned(),
            Outcome::Fail => "FAIL".to_owned(),
            Outcome::Error { message } => format!("ERROR: {message}"),
        };
        println!("data.{}.{}: {status} ({:?})", r.package, r.name, r.duration);
    }
    println!("{}", "-".repeat(60));
    println!("policy: {passed} passed, {failed} failed");
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn shutdown_on_signal(cancel: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                cancel.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
    cancel.cancel();
}
