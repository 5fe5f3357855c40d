//! Scenarios: a simulated cluster, load and faults over time, and the actions expected of the
//! agent, as YAML files. [`run`] plays one on virtual time.

mod expect;
mod output;
mod run;

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use expect::Expectation;
pub use output::{Format, Printer};
pub use run::{run, Driver, Report, RunOptions, START};

use crate::backend::sim::{ClusterSpec, Fault, Load};

/// A scenario file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read scenario {path}")]
    Read { path: String, source: std::io::Error },
    #[error("scenario {path}: {source}")]
    Parse { path: String, source: serde_yaml::Error },
    #[error("scenario {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("scenario {name}: policies could not be loaded")]
    Policy { name: String, source: crate::policy::Error },
    #[error("scenario {name}: journal")]
    Journal { name: String, source: crate::act::journal::Error },
}

impl Error {
    /// Bounded label.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Read { .. } => "read",
            Error::Parse { .. } => "parse",
            Error::Invalid { .. } => "invalid",
            Error::Policy { .. } => "policy",
            Error::Journal { .. } => "journal",
        }
    }
}

const fn default_interval() -> Duration {
    Duration::from_secs(30)
}

/// Something that happens at an offset from the start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineEvent {
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    #[serde(default)]
    pub load: Option<Load>,
    /// Reach `load` linearly over this long instead of at once.
    #[serde(default, with = "humantime_serde")]
    pub ramp: Option<Duration>,
    #[serde(default)]
    pub fault: Option<Fault>,
    /// An operator asks for this many brokers (as `autopilot scale` or the API would).
    #[serde(default)]
    pub scale: Option<crate::agent::ScaleRequest>,
}

/// A whole scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub cluster: ClusterSpec,
    /// Overrides merged over the policies' data.
    #[serde(default)]
    pub policy_data: Option<serde_json::Value>,
    /// Plan and audit without executing (new installs default to dry-run; scenarios do not).
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Cooldowns per action kind, as in the config file's `limits.cooldowns`.
    #[serde(default)]
    pub cooldowns: std::collections::BTreeMap<String, String>,
    /// The cluster's `broker_quota`, as in the config file.
    #[serde(default)]
    pub broker_quota: Option<u32>,
    /// The cluster's `cost_per_broker_hour`, as in the config file.
    #[serde(default)]
    pub cost_per_broker_hour: Option<f64>,
    /// Executor limits over the defaults: `moves_per_broker`, `moves_per_cluster`.
    #[serde(default)]
    pub moves_per_broker: Option<u32>,
    #[serde(default)]
    pub moves_per_cluster: Option<u32>,
    #[serde(default)]
    pub timeline: Vec<TimelineEvent>,
    #[serde(with = "humantime_serde")]
    pub run_for: Duration,
    #[serde(default)]
    pub expect: Vec<Expectation>,
    /// What the cluster must look like at the end of the run.
    #[serde(default)]
    pub end: Option<EndState>,
}

/// The cluster at the end of a scenario, as its last snapshot shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndState {
    /// Brokers in state Healthy.
    #[serde(default)]
    pub healthy_brokers: Option<u32>,
    #[serde(default)]
    pub brokers: Option<u32>,
    #[serde(default)]
    pub under_replicated: Option<u32>,
    #[serde(default)]
    pub under_min_isr: Option<u32>,
    #[serde(default)]
    pub offline: Option<u32>,
    /// Complete backups per topic in the catalog.
    #[serde(default)]
    pub backups: Option<std::collections::BTreeMap<String, u32>>,
}

impl EndState {
    /// What differs from the snapshot, one line each.
    pub fn check(&self, s: &crate::snapshot::Snapshot) -> Vec<String> {
        let healthy = s.brokers.iter().filter(|b| b.state == crate::snapshot::BrokerState::Healthy).count();
        let seen = [
            ("healthy_brokers", self.healthy_brokers, healthy as u32),
            ("brokers", self.brokers, s.brokers.len() as u32),
            ("under_replicated", self.under_replicated, s.partitions.under_replicated),
            ("under_min_isr", self.under_min_isr, s.partitions.under_min_isr),
            ("offline", self.offline, s.partitions.offline),
        ];
        let mut out: Vec<String> = seen
            .iter()
            .filter_map(|(name, want, got)| {
                want.filter(|w| w != got).map(|w| format!("at the end expected {name} {w}, found {got}"))
            })
            .collect();
        for (topic, want) in self.backups.iter().flatten() {
            let got = s.backups.as_ref().and_then(|b| b.topics.get(topic)).map_or(0, |t| t.complete);
            if got != *want {
                out.push(format!("at the end expected {want} complete backups of {topic}, found {got}"));
            }
        }
        out
    }
}

impl Scenario {
    /// Read and validate a scenario file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: p.clone(), source })?;
        Self::parse(&text, &p)
    }

    /// Parse and validate scenario text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, Error> {
        let s: Scenario =
            serde_yaml::from_str(text).map_err(|source| Error::Parse { path: path.to_owned(), source })?;
        s.validate().map_err(|message| Error::Invalid { path: path.to_owned(), message })?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), String> {
        self.cluster.validate()?;
        if self.interval < Duration::from_secs(1) {
            return Err("interval: must be at least 1s".into());
        }
        if self.run_for < self.interval {
            return Err("run_for: must be at least one interval".into());
        }
        for (i, e) in self.timeline.iter().enumerate() {
            if e.load.is_none() && e.fault.is_none() && e.scale.is_none() {
                return Err(format!("timeline[{i}]: needs a `load`, a `fault` or a `scale` request"));
            }
            if e.ramp.is_some() && e.load.is_none() {
                return Err(format!("timeline[{i}].ramp: only with a `load`"));
            }
            if e.at > self.run_for {
                return Err(format!("timeline[{i}].at: after run_for"));
            }
        }
        for (i, e) in self.expect.iter().enumerate() {
            e.validate().map_err(|m| format!("expect[{i}]: {m}"))?;
        }
        for (kind, d) in &self.cooldowns {
            kind.parse::<crate::plan::ActionKind>().map_err(|()| format!("cooldowns.{kind}: unknown action kind"))?;
            humantime::parse_duration(d).map_err(|e| format!("cooldowns.{kind}: {e}"))?;
        }
        Ok(())
    }
}

/// The built-in demo: load rises, the agent scales out and rebalances; at night it scales in.
pub const DEMO: &str = include_str!("demo.yaml");
