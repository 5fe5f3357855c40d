//! The agent: one pipeline per cluster ([`ClusterAgent::tick`]) and the loop that runs it on
//! the interval and at once when triggered ([`run`]).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::act::{ClusterExecutor, Shared};
use crate::backend::Backends;
use crate::collect::{self, Sourced};
use crate::config::Limits;
use crate::events::{Body, Event, Events};
use crate::plan::{self, Action, Decision, Plan, Planned, Request};
use crate::policy::{self, Alert, PolicySet, PolicyStore, Reload};
use crate::snapshot::{self, BrokerTracker, Snapshot, SnapshotOptions};
use crate::telemetry;
use crate::time::Timestamp;

/// What one tick saw and decided.
#[derive(Debug)]
pub struct TickReport {
    pub snapshot: Snapshot,
    /// The policy input document evaluated this tick.
    pub input: serde_json::Value,
    pub decisions: Vec<Decision>,
    pub plan: Plan,
}

/// Each cluster's latest snapshot, for the health API.
pub type SharedSnapshots = Arc<RwLock<BTreeMap<String, Arc<Snapshot>>>>;

/// Settings of one cluster's pipeline.
#[derive(Clone, Debug)]
pub struct PipelineSettings {
    pub region: String,
    pub dry_run: bool,
    pub limits: Limits,
    /// Most brokers the cluster may have.
    pub broker_quota: Option<u32>,
    /// What one broker costs per hour, for the savings of scaling down.
    pub cost_per_broker_hour: Option<f64>,
}

impl PipelineSettings {
    /// Settings with no quota and no cost figure.
    pub fn new(region: &str, dry_run: bool, limits: Limits) -> Self {
        Self { region: region.to_owned(), dry_run, limits, broker_quota: None, cost_per_broker_hour: None }
    }
}

/// The pipeline of one cluster and the state it carries between ticks.
#[derive(Debug)]
pub struct ClusterAgent {
    name: String,
    settings: PipelineSettings,
    backends: Backends,
    tracker: BrokerTracker,
    executor: ClusterExecutor,
    events: Events,
    /// Largest node pool seen and when savings were last accounted, for the cost report.
    savings: Savings,
    /// Each broker's state at the last tick, to report changes.
    states: BTreeMap<i32, crate::snapshot::BrokerState>,
    /// Where the latest snapshot is published, if anywhere.
    published: Option<SharedSnapshots>,
    trends: Option<Arc<crate::recent::Recent>>,
}

/// The cost saved by running fewer brokers than the largest node pool the agent has seen.
#[derive(Debug, Default)]
struct Savings {
    peak: u32,
    saved: u32,
    last: Option<Timestamp>,
    broker_hours: f64,
}

impl ClusterAgent {
    /// A pipeline for `name`; resumes any operation the journal holds for it.
    pub async fn new(
        name: &str,
        settings: PipelineSettings,
        backends: Backends,
        shared: Arc<Shared>,
        events: Events,
    ) -> Result<Self, crate::act::journal::Error> {
        let executor = ClusterExecutor::new(name, backends.clone(), shared, events.clone()).await?;
        Ok(Self {
            name: name.to_owned(),
            settings,
            backends,
            tracker: BrokerTracker::default(),
            executor,
            events,
            savings: Savings::default(),
            states: BTreeMap::new(),
            published: None,
            trends: None,
        })
    }

    /// Publish each tick's snapshot to `to` (the health API reads it).
    pub fn publish_to(&mut self, to: SharedSnapshots) {
        self.published = Some(to);
    }

    /// Sample each tick's snapshot into `to` (the health report's trends).
    pub fn sample_trends_to(&mut self, to: Arc<crate::recent::Recent>) {
        self.trends = Some(to);
    }

    /// Cluster name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The executor (its history and operation in flight).
    pub fn executor(&self) -> &ClusterExecutor {
        &self.executor
    }

    fn emit(&self, now: Timestamp, body: Body) {
        self.events.emit(Event { at: now, cluster: self.name.clone(), body });
    }

    /// Collect and build this instant's snapshot (advancing the broker state machine).
    async fn observe(&mut self, policies: &PolicySet, now: Timestamp) -> Snapshot {
        let obs = collect::collect(&self.name, &self.backends, self.settings.limits.metrics_window, now).await;
        self.report_sources(&obs, now);
        let settings = policies.settings();
        let opts = SnapshotOptions {
            conditions: settings.conditions.clone(),
            max_data_age: self.settings.limits.max_data_age,
            heartbeat_timeout: settings.heartbeat_timeout,
            broker_quota: self.settings.broker_quota,
        };
        let snapshot = snapshot::build(&obs, &opts, &mut self.tracker, now);
        self.report_freshness(&snapshot);
        self.report_health(&snapshot);
        self.report_state_changes(&snapshot, now);
        if let Some(Ok(mut w)) = self.published.as_ref().map(|p| p.write()) {
            w.insert(self.name.clone(), Arc::new(snapshot.clone()));
        }
        if let Some(t) = &self.trends {
            t.sample(&snapshot);
        }
        self.account_savings(&snapshot, now);
        snapshot
    }

    /// One pass: collect -> snapshot -> progress the operation in flight -> policy -> plan -> act.
    pub async fn tick(&mut self, policies: &PolicySet, alerts: &[Alert], now: Timestamp) -> TickReport {
        let snapshot = self.observe(policies, now).await;
        self.executor.progress(&snapshot, now).await;
        let history = self.executor.history().clone();
        let input = PolicySet::to_input(&policy::input(
            &snapshot,
            &history,
            &self.settings.region,
            self.settings.dry_run,
            alerts,
        ));
        let started = Instant::now();
        let evaluation = input
            .as_ref()
            .map_err(|e| policy::Error::Input { message: e.to_string() })
            .and_then(|i| policies.evaluate(i));
        metrics::histogram!(telemetry::POLICY_EVAL_DURATION).record(started.elapsed().as_secs_f64());
        let decisions = match evaluation {
            Ok(e) => {
                for err in e.errors {
                    self.emit(now, Body::PolicyError { category: err.category().into(), message: err.to_string() });
                }
                e.decisions
            }
            Err(err) => {
                self.emit(now, Body::PolicyError { category: err.category().into(), message: err.to_string() });
                Vec::new()
            }
        };
        for d in &decisions {
            let body = Body::Decision {
                package: d.package.clone(),
                reason: d.rule.clone(),
                message: d.message.clone(),
                request: d.request.clone(),
            };
            self.emit(now, body);
        }
        let plan = plan::plan(&snapshot, &decisions, &history, &self.settings.limits, now);
        for d in &plan.deferred {
            self.emit(now, Body::Deferred { kind: d.kind, reason: d.rule.clone(), why: d.why.clone() });
        }
        self.executor.apply(&plan, &snapshot, now).await;
        TickReport { snapshot, input: input.unwrap_or_default(), decisions, plan }
    }

    /// An operator asks to scale to `to` brokers. Checked against a fresh snapshot (quota,
    /// replication floor, replication status, cluster state) and the executor's limits; the
    /// operation id, or why not. Audited either way.
    pub async fn request_scale(
        &mut self,
        policies: &PolicySet,
        request: ScaleRequest,
        source: &str,
        now: Timestamp,
    ) -> Result<String, String> {
        let snapshot = self.observe(policies, now).await;
        self.executor.progress(&snapshot, now).await;
        let ScaleRequest { to, drain_timeout } = request;
        let result = self.start_scale(&snapshot, to, drain_timeout, source, now).await;
        let (operation, refused) = match &result {
            Ok(id) => (Some(id.clone()), None),
            Err(why) => (None, Some(why.clone())),
        };
        let request = Request::ScaleBrokers { to, drain_timeout };
        self.emit(now, Body::Request { source: source.to_owned(), request, operation, refused });
        result
    }

    async fn start_scale(
        &mut self,
        s: &Snapshot,
        to: u32,
        drain_timeout: Option<Duration>,
        source: &str,
        now: Timestamp,
    ) -> Result<String, String> {
        if let Some(op) = self.executor.operation() {
            return Err(format!("operation {} ({}) is in flight on this cluster", op.id, op.kind()));
        }
        let from = plan::validate_scale(s, to)?;
        let remove =
            s.node_pool.as_ref().map(|p| plan::brokers_to_remove(p, from.saturating_sub(to))).unwrap_or_default();
        let drain_timeout = drain_timeout.unwrap_or(self.settings.limits.drain_timeout);
        let planned = Planned {
            action: Action::ScaleBrokers { from, to, remove, drain_timeout },
            rule: "manual_scale".into(),
            message: format!("{source} asked for {to} brokers"),
            approval_required: false,
        };
        self.executor.start_requested(&planned, s, now).await
    }

    /// An event for every broker whose state changed since the last tick (only while Kafka and
    /// Kubernetes both answer: missing data is not a state change).
    fn report_state_changes(&mut self, s: &Snapshot, now: Timestamp) {
        if !s.data.kafka.observed || !s.data.kube.observed {
            return;
        }
        for b in &s.brokers {
            let previous = self.states.insert(b.id, b.state);
            // A broker first seen healthy has not changed: only report news.
            let news = previous.is_some() || b.state != crate::snapshot::BrokerState::Healthy;
            if news && previous != Some(b.state) {
                self.emit(now, Body::BrokerState { broker: b.id, state: b.state, previous });
            }
        }
        self.states.retain(|id, _| s.brokers.iter().any(|b| b.id == *id));
    }

    /// Export each broker's state and each certificate's days to expiry.
    fn report_health(&self, s: &Snapshot) {
        use crate::snapshot::BrokerState;
        if !s.data.kafka.observed || !s.data.kube.observed {
            return;
        }
        let states = [
            (BrokerState::Healthy, "healthy"),
            (BrokerState::Suspect, "suspect"),
            (BrokerState::Failed, "failed"),
            (BrokerState::Recovering, "recovering"),
        ];
        for b in &s.brokers {
            for (state, name) in states {
                let labels = [("cluster", self.name.clone()), ("broker", b.id.to_string()), ("state", name.to_owned())];
                metrics::gauge!(telemetry::BROKER_STATE, &labels).set(if b.state == state { 1.0 } else { 0.0 });
            }
        }
        for c in &s.certificates {
            let labels = [("cluster", self.name.clone()), ("secret", c.secret.clone()), ("kind", c.kind.clone())];
            metrics::gauge!(telemetry::CERT_DAYS, &labels).set(c.days_to_expiry);
        }
    }

    /// Export the node pool size and what running below the largest size seen saves.
    fn account_savings(&mut self, s: &Snapshot, now: Timestamp) {
        let Some(pool) = s.node_pool.as_ref().filter(|_| s.data.kube.observed) else {
            return;
        };
        metrics::gauge!(telemetry::BROKERS, "cluster" => self.name.clone()).set(f64::from(pool.replicas));
        let hours = self.savings.last.map_or(0.0, |t| (now - t).as_secs_f64() / 3600.0);
        // The brokers saved since the last tick are the ones saved before this one's reading.
        self.savings.broker_hours += f64::from(self.savings.saved) * hours;
        self.savings.last = Some(now);
        self.savings.peak = self.savings.peak.max(pool.replicas);
        let saved = self.savings.peak - pool.replicas;
        let cost = self.settings.cost_per_broker_hour;
        if saved != self.savings.saved {
            let per_hour = cost.map(|c| f64::from(saved) * c);
            tracing::info!(cluster = %self.name, brokers = pool.replicas, peak = self.savings.peak, saved, per_hour, "brokers below the peak size");
        }
        self.savings.saved = saved;
        let name = self.name.clone();
        metrics::gauge!(telemetry::BROKER_HOURS_SAVED, "cluster" => name.clone()).set(self.savings.broker_hours);
        if let Some(c) = cost {
            metrics::gauge!(telemetry::SAVINGS_PER_HOUR, "cluster" => name.clone()).set(f64::from(saved) * c);
            metrics::gauge!(telemetry::COST_SAVED, "cluster" => name).set(self.savings.broker_hours * c);
        }
    }

    /// Broker-hours saved so far against the largest node pool seen.
    pub fn broker_hours_saved(&self) -> f64 {
        self.savings.broker_hours
    }

    fn report_sources(&self, obs: &collect::Observations, now: Timestamp) {
        let sources: [(&str, Option<(&String, &String)>); 4] = [
            ("metrics", failed(&obs.metrics)),
            ("kafka", failed(&obs.kafka)),
            ("kube", failed(&obs.kube)),
            ("backups", obs.backups.as_ref().and_then(failed)),
        ];
        for (source, f) in sources {
            if let Some((category, message)) = f {
                self.emit(
                    now,
                    Body::SourceError { source: source.into(), category: category.clone(), message: message.clone() },
                );
            }
        }
    }

    fn report_freshness(&self, s: &Snapshot) {
        for (source, f) in [("metrics", &s.data.metrics), ("kafka", &s.data.kafka), ("kube", &s.data.kube)] {
            let labels = [("cluster", self.name.clone()), ("source", source.to_owned())];
            if let Some(age) = f.age_seconds {
                metrics::gauge!(telemetry::DATA_AGE, &labels).set(age);
            }
            metrics::gauge!(telemetry::DATA_STALE, &labels).set(if f.stale { 1.0 } else { 0.0 });
        }
        for (topic, t) in s.backups.as_ref().map(|b| &b.topics).into_iter().flatten() {
            if let Some(at) = t.last_completed_at {
                let labels = [("cluster", self.name.clone()), ("topic", topic.clone())];
                metrics::gauge!(telemetry::BACKUP_LAST_SUCCESS, &labels).set(at.as_millis() as f64 / 1000.0);
            }
        }
    }
}

fn failed<T>(s: &Sourced<T>) -> Option<(&String, &String)> {
    match s {
        Sourced::Failed { category, error, .. } => Some((category, error)),
        Sourced::Ok { .. } => None,
    }
}

/// A request to evaluate a cluster now (from the webhook), with the alerts that caused it.
#[derive(Clone, Debug, Default)]
pub struct Trigger {
    pub alerts: Vec<Alert>,
}

/// An operator's request to scale a cluster.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScaleRequest {
    pub to: u32,
    /// Longest the scale-down may spend draining (default `limits.drain_timeout`).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<Duration>,
}

/// A request for a cluster's task, with where to send the answer.
#[derive(Debug)]
pub struct Command {
    pub request: ScaleRequest,
    pub source: String,
    pub reply: oneshot::Sender<Result<String, String>>,
}

/// What a cluster's task listens to besides its interval.
#[derive(Debug)]
pub struct Inbox {
    pub triggers: mpsc::Receiver<Trigger>,
    pub commands: mpsc::Receiver<Command>,
}

/// Senders of immediate evaluations and operator requests, by cluster.
#[derive(Clone, Debug, Default)]
pub struct Triggers {
    senders: BTreeMap<String, mpsc::Sender<Trigger>>,
    commands: BTreeMap<String, mpsc::Sender<Command>>,
}

impl Triggers {
    /// Ask for an immediate evaluation of `cluster`; false when the cluster is unknown or a
    /// trigger is already queued (the queued one covers it).
    pub fn trigger(&self, cluster: &str, trigger: Trigger) -> bool {
        let Some(tx) = self.senders.get(cluster) else {
            return false;
        };
        metrics::counter!(telemetry::TRIGGERS, "cluster" => cluster.to_owned()).increment(1);
        tx.try_send(trigger).is_ok()
    }

    /// The clusters this agent runs.
    pub fn clusters(&self) -> impl Iterator<Item = &str> {
        self.senders.keys().map(String::as_str)
    }

    /// Ask `cluster`'s task to scale; the operation id or why not. `None` when the cluster is
    /// unknown.
    pub async fn scale(&self, cluster: &str, request: ScaleRequest, source: &str) -> Option<Result<String, String>> {
        let tx = self.commands.get(cluster)?;
        let (reply, answer) = oneshot::channel();
        let command = Command { request, source: source.to_owned(), reply };
        if tx.send(command).await.is_err() {
            return Some(Err("the cluster's task has stopped".into()));
        }
        Some(answer.await.unwrap_or_else(|_| Err("the cluster's task dropped the request".into())))
    }
}

/// Policies shared by every cluster's task; swapped on reload.
pub type SharedPolicies = Arc<RwLock<Arc<PolicySet>>>;

/// Check the policy directory and swap in a new set when it changed and compiles.
pub fn reload_policies(store: &mut PolicyStore, shared: &SharedPolicies, events: &Events, now: Timestamp) {
    match store.refresh() {
        Reload::Unchanged => {}
        Reload::Reloaded => {
            let set = store.current();
            let packages = set.packages().to_vec();
            if let Ok(mut w) = shared.write() {
                *w = set;
            }
            metrics::counter!(telemetry::POLICY_RELOADS, "result" => "ok").increment(1);
            events.emit(Event { at: now, cluster: String::new(), body: Body::PolicyReloaded { packages } });
        }
        Reload::Failed(e) => {
            metrics::counter!(telemetry::POLICY_RELOADS, "result" => "failed").increment(1);
            events.emit(Event {
                at: now,
                cluster: String::new(),
                body: Body::PolicyError { category: e.category().into(), message: e.to_string() },
            });
        }
    }
    metrics::gauge!(telemetry::POLICY_HEALTHY).set(if store.error().is_none() { 1.0 } else { 0.0 });
}

/// Run one cluster's pipeline on `interval` and whenever a trigger arrives, until cancelled.
pub async fn run_cluster(
    mut agent: ClusterAgent,
    policies: SharedPolicies,
    interval: Duration,
    mut inbox: Inbox,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (alerts, cause) = tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => (Vec::new(), "interval"),
            Some(t) = inbox.triggers.recv() => (t.alerts, "trigger"),
            Some(c) = inbox.commands.recv() => {
                let Ok(set) = policies.read().map(|p| Arc::clone(&p)) else { return };
                let answer = agent.request_scale(&set, c.request, &c.source, Timestamp::now()).await;
                let _ = c.reply.send(answer);
                continue;
            }
        };
        let set = match policies.read() {
            Ok(p) => Arc::clone(&p),
            Err(_) => return,
        };
        let span = tracing::info_span!("tick", cluster = %agent.name(), cause);
        let started = Instant::now();
        agent.tick(&set, &alerts, Timestamp::now()).instrument(span).await;
        metrics::counter!(telemetry::TICKS, "cluster" => agent.name().to_owned(), "cause" => cause).increment(1);
        metrics::histogram!(telemetry::TICK_DURATION, "cluster" => agent.name().to_owned())
            .record(started.elapsed().as_secs_f64());
    }
}

/// Create the trigger and command channels of each cluster.
pub fn trigger_channels(names: &[String]) -> (Triggers, BTreeMap<String, Inbox>) {
    let mut triggers = Triggers::default();
    let mut receivers = BTreeMap::new();
    for n in names {
        let (tx, rx) = mpsc::channel(1);
        let (ctx, crx) = mpsc::channel(8);
        triggers.senders.insert(n.clone(), tx);
        triggers.commands.insert(n.clone(), ctx);
        receivers.insert(n.clone(), Inbox { triggers: rx, commands: crx });
    }
    (triggers, receivers)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::act::MemoryJournal;
    use crate::backend::sim::Load;
    use crate::backend::{self, MetricsSource};
    use crate::collect::MetricsObservation;
    use crate::fixtures;

    /// Counts collections, i.e. ticks.
    struct Counting(Arc<dyn MetricsSource>, Arc<AtomicUsize>);

    #[async_trait]
    impl MetricsSource for Counting {
        async fn collect(&self, window: Duration, now: Timestamp) -> Result<MetricsObservation, backend::Error> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.collect(window, now).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_trigger_evaluates_at_once_and_the_interval_keeps_going() {
        let sim = fixtures::sim(3, Load { cpu: 0.5, memory: 0.5 });
        let ticks = Arc::new(AtomicUsize::new(0));
        let mut backends = sim.backends();
        backends.metrics = Arc::new(Counting(backends.metrics.clone(), ticks.clone()));
        let shared = Shared::new(Limits::default(), true, Arc::new(MemoryJournal::default()));
        let settings = PipelineSettings::new("test", true, Limits::default());
        let agent = ClusterAgent::new("test", settings, backends, shared, Events::default()).await.unwrap();
        let policies: SharedPolicies =
            Arc::new(RwLock::new(Arc::new(PolicySet::embedded(None, Duration::from_secs(1)).unwrap())));
        let (triggers, mut rx) = trigger_channels(&["test".to_owned()]);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_cluster(
            agent,
            policies,
            Duration::from_secs(30),
            rx.remove("test").unwrap(),
            cancel.clone(),
        ));

        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 1, "first tick at start");
        assert!(triggers.trigger("test", Trigger::default()));
        assert!(!triggers.trigger("nope", Trigger::default()), "unknown clusters are refused");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 2, "the trigger did not wait for the interval");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 3, "the interval goes on");
        cancel.cancel();
        task.await.unwrap();
    }
}
