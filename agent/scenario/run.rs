//! Playing a scenario on virtual time: the simulated cluster and the agent's real pipeline
//! advance together, one interval at a time; nothing sleeps unless a pace is asked for.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::output::{relative, Printer};
use super::{Error, Scenario, TimelineEvent};
use crate::act::{MemoryJournal, Shared};
use crate::agent::{ClusterAgent, PipelineSettings, ScaleRequest};
use crate::backend::sim::{SimBackend, SimCluster};
use crate::config::Limits;
use crate::events::{Body, Event, Events, Recorder, Sink};
use crate::plan::ActionKind;
use crate::policy::PolicySet;
use crate::time::Timestamp;

/// Virtual start of every scenario: 2026-01-01T00:00:00Z, so runs are reproducible.
pub const START: Timestamp = Timestamp::from_millis(1_767_225_600_000);

/// How to run a scenario.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Policy directory; none uses the policies built into the binary.
    pub policy_dir: Option<PathBuf>,
    /// Virtual seconds per real second; none runs as fast as possible.
    pub speed: Option<f64>,
    pub printer: Option<Arc<Printer>>,
    /// Keep the policy input document of the tick at this offset.
    pub input_at: Option<Duration>,
}

/// What a run did and which expectations it missed.
#[derive(Debug)]
pub struct Report {
    pub name: String,
    /// Every event, `at` in seconds from the start.
    pub events: Vec<Value>,
    pub unmet: Vec<String>,
    /// The policy input at `RunOptions::input_at`, if asked for.
    pub input: Option<Value>,
}

/// Plays a scenario's timeline into a simulated cluster as time advances.
#[derive(Debug)]
pub struct Driver {
    backend: SimBackend,
    cluster: String,
    timeline: Vec<TimelineEvent>,
    next: usize,
    start: Timestamp,
    problems: Vec<String>,
}

impl Driver {
    /// A cluster as `scenario` describes it, starting at `start`.
    pub fn new(scenario: &Scenario, start: Timestamp) -> Result<Self, String> {
        let sim = SimCluster::new(scenario.cluster.clone(), start)?;
        let mut timeline = scenario.timeline.clone();
        timeline.sort_by_key(|e| e.at);
        Ok(Self {
            backend: SimBackend::new(sim),
            cluster: scenario.cluster.name.clone(),
            timeline,
            next: 0,
            start,
            problems: Vec::new(),
        })
    }

    /// The simulated backend.
    pub fn backend(&self) -> &SimBackend {
        &self.backend
    }

    /// Timeline events that could not be applied (a fault on a broker that does not exist).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Advance the cluster to `t`, applying every timeline event due on the way; returns the
    /// operator requests that came due, for the agent to handle.
    pub fn advance_to(&mut self, t: Timestamp, events: &Events) -> Vec<ScaleRequest> {
        let mut requests = Vec::new();
        while let Some(e) = self.timeline.get(self.next).filter(|e| self.start + e.at <= t).cloned() {
            self.next += 1;
            let at = self.start + e.at;
            requests.extend(e.scale);
            let Ok(mut sim) = self.backend.lock() else {
                return requests;
            };
            sim.advance_to(at);
            if let Some(load) = e.load {
                match e.ramp {
                    Some(over) => sim.ramp_load(load, over),
                    None => sim.set_load(load),
                }
                events.emit(Event { at, cluster: self.cluster.clone(), body: Body::Load { load, ramp: e.ramp } });
            }
            if let Some(fault) = e.fault {
                if let Err(err) = sim.inject(&fault) {
                    tracing::error!(error = %err, "fault could not be injected");
                    self.problems.push(format!(
                        "timeline event at {}: fault not injected: {err}",
                        humantime::format_duration(e.at)
                    ));
                }
                events.emit(Event { at, cluster: self.cluster.clone(), body: Body::Fault { fault } });
            }
        }
        if let Ok(mut sim) = self.backend.lock() {
            sim.advance_to(t);
        }
        requests
    }
}

fn limits(s: &Scenario) -> Limits {
    let mut limits = Limits::default();
    limits.moves_per_broker = s.moves_per_broker.unwrap_or(limits.moves_per_broker);
    limits.moves_per_cluster = s.moves_per_cluster.unwrap_or(limits.moves_per_cluster);
    for (kind, d) in &s.cooldowns {
        if let (Ok(k), Ok(d)) = (kind.parse::<ActionKind>(), humantime::parse_duration(d)) {
            limits.cooldowns.insert(k, d);
        }
    }
    limits
}

/// Run a scenario to its end and check its expectations.
pub async fn run(s: &Scenario, opts: RunOptions) -> Result<Report, Error> {
    let timeout = Duration::from_secs(2);
    let policies = match &opts.policy_dir {
        Some(dir) => PolicySet::load(dir, s.policy_data.as_ref(), timeout),
        None => PolicySet::embedded(s.policy_data.as_ref(), timeout),
    }
    .map_err(|source| Error::Policy { name: s.name.clone(), source })?;
    let recorder = Arc::new(Recorder::default());
    let mut sinks: Vec<Arc<dyn Sink>> = vec![recorder.clone()];
    if let Some(p) = &opts.printer {
        sinks.push(p.clone());
    }
    let events = Events::new(sinks);
    let mut driver = Driver::new(s, START).map_err(|message| Error::Invalid { path: s.name.clone(), message })?;
    let limits = limits(s);
    let shared = Shared::new(limits.clone(), s.dry_run, Arc::new(MemoryJournal::default()));
    let settings = PipelineSettings {
        broker_quota: s.broker_quota,
        cost_per_broker_hour: s.cost_per_broker_hour,
        ..PipelineSettings::new("simulation", s.dry_run, limits)
    };
    let mut agent = ClusterAgent::new(&s.cluster.name, settings, driver.backend().backends(), shared, events.clone())
        .await
        .map_err(|source| Error::Journal { name: s.name.clone(), source })?;
    let status_every = Duration::from_secs(300);
    let mut t = Duration::ZERO;
    let mut input = None;
    let mut last = None;
    while t <= s.run_for {
        let now = START + t;
        for request in driver.advance_to(now, &events) {
            // The answer is an event (accepted or refused), which expectations can match.
            let _ = agent.request_scale(&policies, request, "scenario", now).await;
        }
        let report = agent.tick(&policies, &[], now).await;
        if opts.input_at.is_some_and(|at| at <= t) && input.is_none() {
            input = Some(report.input.clone());
        }
        if let Some(p) = &opts.printer {
            if t.as_secs() % status_every.as_secs() == 0 {
                p.status(&report.snapshot);
            }
        }
        last = Some(report.snapshot);
        if let Some(speed) = opts.speed.filter(|s| *s > 0.0) {
            tokio::time::sleep(s.interval.div_f64(speed)).await;
        }
        t += s.interval;
    }
    let events: Vec<Value> = recorder.events().iter().map(|e| relative(e, START)).collect();
    let mut unmet: Vec<String> = driver.problems().to_vec();
    unmet.extend(s.expect.iter().filter_map(|e| e.check(&events)));
    if let (Some(end), Some(snapshot)) = (&s.end, &last) {
        unmet.extend(end.check(snapshot));
    }
    Ok(Report { name: s.name.clone(), events, unmet, input })
}
