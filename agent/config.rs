//! The agent's configuration file: parsed from YAML, then validated once into [`Config`].
//!
//! Every error names the file and the field. Durations are humantime strings ("30s", "5m").

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plan::ActionKind;
use crate::units::Bytes;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read config file {}", file.display())]
    Read { file: PathBuf, source: std::io::Error },
    #[error("config file {}: {source}", file.display())]
    Parse { file: PathBuf, source: serde_yaml::Error },
    #[error("config file {}: field `{field}`: {message}", file.display())]
    Invalid { file: PathBuf, field: String, message: String },
}

impl Error {
    /// Bounded label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Read { .. } => "config_read",
            Error::Parse { .. } => "config_parse",
            Error::Invalid { .. } => "config_invalid",
        }
    }
}

/// Which implementation stands behind a cluster's sources and actuators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Prometheus, the Kafka admin API and the Kubernetes API.
    Real,
    /// The built-in simulated Strimzi cluster.
    Simulated,
}

/// The metric inputs a Prometheus query can be overridden for.
pub const METRIC_INPUTS: [&str; 4] = ["cpu", "memory", "disk", "network"];

const fn default_interval() -> Duration {
    Duration::from_secs(30)
}
const fn default_true() -> bool {
    true
}
const fn default_concurrent_actions() -> u32 {
    2
}
const fn default_actions_per_minute() -> u32 {
    6
}
const fn default_cooldown() -> Duration {
    Duration::from_secs(600)
}
const fn default_max_data_age() -> Duration {
    Duration::from_secs(90)
}
const fn default_metrics_window() -> Duration {
    Duration::from_secs(900)
}
const fn default_eval_timeout() -> Duration {
    Duration::from_millis(500)
}
const fn default_operation_timeout() -> Duration {
    Duration::from_secs(3600)
}
const fn default_prometheus_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_policy_dir() -> PathBuf {
    PathBuf::from("policies")
}
fn default_journal() -> PathBuf {
    PathBuf::from("autopilot-journal.json")
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

/// The file as written. Validated into [`Config`] by [`load`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    region: String,
    #[serde(default = "default_interval", with = "humantime_serde")]
    interval: Duration,
    #[serde(default)]
    policy: RawPolicy,
    /// New installs are dry-run until an operator says otherwise.
    #[serde(default = "default_true")]
    dry_run: bool,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    api: RawApi,
    #[serde(default = "default_journal")]
    journal_path: PathBuf,
    #[serde(default)]
    audit_log: Option<PathBuf>,
    #[serde(default)]
    leader_election: Option<RawLeaderElection>,
    #[serde(default)]
    kubernetes_journal: Option<RawKubernetesJournal>,
    #[serde(default)]
    notifications: Vec<RawWebhook>,
    #[serde(default)]
    alertmanager: RawAlertmanager,
    #[serde(default)]
    backups: Option<RawBackups>,
    clusters: Vec<RawCluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: String,
    url: String,
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default = "default_webhook_timeout", with = "humantime_serde")]
    timeout: Duration,
}

const fn default_webhook_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A webhook receiver (Slack-compatible JSON) for actions and their outcomes.
#[derive(Clone, Debug, Serialize)]
pub struct Webhook {
    pub name: String,
    /// Never logged: webhook URLs carry their credential.
    #[serde(skip_serializing)]
    pub url: String,
    /// Action kinds sent; empty means scaling and notifications.
    pub kinds: Vec<ActionKind>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKubernetesJournal {
    namespace: String,
    #[serde(default)]
    kubernetes_url: Option<String>,
}

/// Journal operations as `AutopilotOperation` objects instead of a local file.
#[derive(Clone, Debug, Serialize)]
pub struct KubernetesJournal {
    pub namespace: String,
    pub kubernetes: KubernetesConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLeaderElection {
    namespace: String,
    #[serde(default)]
    lease: Option<String>,
    #[serde(default = "default_lease_duration", with = "humantime_serde")]
    duration: Duration,
    #[serde(default)]
    kubernetes_url: Option<String>,
}

const fn default_lease_duration() -> Duration {
    Duration::from_secs(15)
}

/// Hold a Lease so that only one agent of the region acts.
#[derive(Clone, Debug, Serialize)]
pub struct LeaderElection {
    pub namespace: String,
    pub lease: String,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    pub kubernetes: KubernetesConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default = "default_policy_dir")]
    dir: PathBuf,
    #[serde(default = "default_eval_timeout", with = "humantime_serde")]
    eval_timeout: Duration,
    #[serde(default = "default_reload_interval", with = "humantime_serde")]
    reload_interval: Duration,
}

const fn default_reload_interval() -> Duration {
    Duration::from_secs(5)
}

impl Default for RawPolicy {
    fn default() -> Self {
        Self {
            dir: default_policy_dir(),
            eval_timeout: default_eval_timeout(),
            reload_interval: default_reload_interval(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default = "default_concurrent_actions")]
    concurrent_actions: u32,
    #[serde(default = "default_actions_per_minute")]
    actions_per_minute: u32,
    #[serde(default = "default_cooldown", with = "humantime_serde")]
    default_cooldown: Duration,
    #[serde(default)]
    cooldowns: BTreeMap<String, String>,
    #[serde(default = "default_operation_timeout", with = "humantime_serde")]
    operation_timeout: Duration,
    #[serde(default = "default_max_data_age", with = "humantime_serde")]
    max_data_age: Duration,
    #[serde(default = "default_metrics_window", with = "humantime_serde")]
    metrics_window: Duration,
    #[serde(default = "default_throttle")]
    replication_throttle: Option<Bytes>,
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    drain_timeout: Duration,
    #[serde(default = "default_moves_per_broker")]
    moves_per_broker: u32,
    #[serde(default = "default_moves_per_cluster")]
    moves_per_cluster: u32,
}

const fn default_drain_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}

// Cruise Control's defaults: 5 concurrent partition movements per broker.
const fn default_moves_per_broker() -> u32 {
    5
}

const fn default_moves_per_cluster() -> u32 {
    100
}

fn default_throttle() -> Option<Bytes> {
    Some(Bytes(100 << 20))
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            concurrent_actions: default_concurrent_actions(),
            actions_per_minute: default_actions_per_minute(),
            default_cooldown: default_cooldown(),
            cooldowns: BTreeMap::new(),
            operation_timeout: default_operation_timeout(),
            max_data_age: default_max_data_age(),
            metrics_window: default_metrics_window(),
            replication_throttle: default_throttle(),
            drain_timeout: default_drain_timeout(),
            moves_per_broker: default_moves_per_broker(),
            moves_per_cluster: default_moves_per_cluster(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    #[serde(default)]
    auth: Option<RawAuth>,
    #[serde(default)]
    tls: Option<TlsConfig>,
    #[serde(default)]
    rate_limit: RateLimit,
}

impl Default for RawApi {
    fn default() -> Self {
        Self { listen: default_listen(), auth: None, tls: None, rate_limit: RateLimit::default() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default)]
    jwt: Option<JwtConfig>,
    #[serde(default)]
    webhook_token_file: Option<PathBuf>,
}

/// Who may call the API, and how it is served.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ApiConfig {
    /// Bearer tokens (JWT) on `/api/v1/*`; none leaves the API open (loopback use only).
    pub jwt: Option<JwtConfig>,
    /// File holding the token Alertmanager sends (`Authorization: Bearer ...`) to the webhook.
    pub webhook_token_file: Option<PathBuf>,
    pub tls: Option<TlsConfig>,
    pub rate_limit: RateLimit,
}

/// Signed tokens: the algorithm, the key, and the claims required.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    pub algorithm: JwtAlgorithm,
    /// The HMAC secret (HS256) or the PEM public key (RS256, ES256).
    pub key_file: PathBuf,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    /// The claim that lists the caller's roles (`viewer`, `operator`).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
}

fn default_roles_claim() -> String {
    "roles".into()
}

/// Token signature algorithms accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    ES256,
}

/// HTTPS, and with `client_ca_file` mutual TLS: clients must present a certificate it signed.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// Requests per client (token subject, else address) per second, with a burst.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    #[serde(default = "default_per_second")]
    pub per_second: u32,
    #[serde(default = "default_burst")]
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { per_second: default_per_second(), burst: default_burst() }
    }
}
const fn default_per_second() -> u32 {
    20
}
const fn default_burst() -> u32 {
    40
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    #[serde(default = "default_cluster_labels")]
    cluster_labels: Vec<String>,
}

impl Default for RawAlertmanager {
    fn default() -> Self {
        Self { cluster_labels: default_cluster_labels() }
    }
}

fn default_cluster_labels() -> Vec<String> {
    vec!["strimzi_io_cluster".into(), "namespace".into()]
}

/// How alerts from Alertmanager are matched to clusters: the label holding the Strimzi `Kafka`
/// name and, optionally, the label holding its namespace.
#[derive(Clone, Debug, Serialize)]
pub struct AlertmanagerConfig {
    pub kafka_label: String,
    pub namespace_label: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackups {
    dir: PathBuf,
    #[serde(default = "default_backup_concurrency")]
    concurrency: usize,
    #[serde(default = "default_backup_idle", with = "humantime_serde")]
    idle_timeout: Duration,
}
const fn default_backup_concurrency() -> usize {
    2
}
const fn default_backup_idle() -> Duration {
    Duration::from_secs(30)
}

/// Where topic backups go and how many jobs run at once.
#[derive(Clone, Debug, Serialize)]
pub struct BackupsConfig {
    pub dir: PathBuf,
    /// Backups, restores and migrations running at once.
    pub concurrency: usize,
    /// A partition that yields no record for this long has stalled (backup) or ended (migration).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: String,
    namespace: String,
    #[serde(default)]
    kafka: Option<String>,
    node_pool: String,
    #[serde(default)]
    bootstrap_servers: Vec<String>,
    #[serde(default)]
    prometheus: Option<RawPrometheus>,
    #[serde(default)]
    kafka_client: RawKafka,
    #[serde(default)]
    kubernetes: RawKubernetes,
    backend: BackendKind,
    #[serde(default)]
    simulation: Option<PathBuf>,
    #[serde(default)]
    broker_quota: Option<u32>,
    #[serde(default)]
    cost_per_broker_hour: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrometheus {
    url: String,
    #[serde(default = "default_prometheus_timeout", with = "humantime_serde")]
    timeout: Duration,
    #[serde(default = "default_step", with = "humantime_serde")]
    step: Duration,
    #[serde(default = "default_link")]
    network_bytes_per_second: Bytes,
    #[serde(default)]
    queries: BTreeMap<String, String>,
}

const fn default_step() -> Duration {
    Duration::from_secs(15)
}
/// 10 Gbit/s.
const fn default_link() -> Bytes {
    Bytes(1_250_000_000)
}
const fn default_kafka_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    #[serde(default)]
    timeout: Option<humantime_serde::Serde<Duration>>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKubernetes {
    #[serde(default)]
    url: Option<String>,
}

/// The validated configuration of one agent (one region).
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// Region this agent serves; a label on everything it reports.
    pub region: String,
    /// Time between two evaluations of a cluster.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    pub policy: PolicyConfig,
    /// Plan and audit actions without executing them.
    pub dry_run: bool,
    pub limits: Limits,
    /// Address of the metrics and operations API.
    pub listen: SocketAddr,
    /// Where multi-step operations are journaled.
    pub journal_path: PathBuf,
    /// Where the audit trail (JSON lines) is appended; none keeps it in the log only.
    pub audit_log: Option<PathBuf>,
    /// Lease-based leader election; none means this is the only agent of the region.
    pub leader_election: Option<LeaderElection>,
    /// Journal in Kubernetes (survives the agent's pod moving); none uses `journal_path`.
    pub kubernetes_journal: Option<KubernetesJournal>,
    /// Webhook receivers of actions and outcomes.
    pub notifications: Vec<Webhook>,
    /// Authentication, TLS and rate limits of the API.
    pub api: ApiConfig,
    pub alertmanager: AlertmanagerConfig,
    /// Topic backups (the API's jobs and the backup policy); none disables them.
    pub backups: Option<BackupsConfig>,
    pub clusters: Vec<ClusterConfig>,
}

/// Where the Rego policies live and how long one evaluation may take.
#[derive(Clone, Debug, Serialize)]
pub struct PolicyConfig {
    pub dir: PathBuf,
    #[serde(with = "humantime_serde")]
    pub eval_timeout: Duration,
    /// How often the directory is checked for changed policies.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

/// Safety limits of the executor and freshness limits of the data.
#[derive(Clone, Debug, Serialize)]
pub struct Limits {
    /// Operations in flight at once across all clusters (never more than one per cluster).
    pub concurrent_actions: u32,
    /// Global rate of new operations.
    pub actions_per_minute: u32,
    /// Cooldown after an operation of each kind; kinds not listed use `default_cooldown`.
    pub cooldowns: BTreeMap<ActionKind, Duration>,
    #[serde(with = "humantime_serde")]
    pub default_cooldown: Duration,
    /// A multi-step operation still unfinished after this is rolled back.
    #[serde(with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// Data older than this is stale, and stale data never leads to an action.
    #[serde(with = "humantime_serde")]
    pub max_data_age: Duration,
    /// How much metric history each tick reads (must cover the longest held condition).
    #[serde(with = "humantime_serde")]
    pub metrics_window: Duration,
    /// Replication throttle while partitions move, bytes per second per broker; none disables.
    pub replication_throttle: Option<u64>,
    /// A scale-down whose brokers are not drained this long after it started rolls back
    /// (unless the request names its own).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Partition reassignments in flight at once that load one broker (as source or target).
    pub moves_per_broker: u32,
    /// Partition reassignments in flight at once on one cluster.
    pub moves_per_cluster: u32,
}

impl Limits {
    /// The cooldown that follows an operation of `kind`.
    pub fn cooldown(&self, kind: ActionKind) -> Duration {
        self.cooldowns.get(&kind).copied().unwrap_or(self.default_cooldown)
    }
}

impl Default for Limits {
    fn default() -> Self {
        let raw = RawLimits::default();
        Self {
            concurrent_actions: raw.concurrent_actions,
            actions_per_minute: raw.actions_per_minute,
            cooldowns: BTreeMap::new(),
            default_cooldown: raw.default_cooldown,
            operation_timeout: raw.operation_timeout,
            max_data_age: raw.max_data_age,
            metrics_window: raw.metrics_window,
            replication_throttle: raw.replication_throttle.map(|b| b.0),
            drain_timeout: raw.drain_timeout,
            moves_per_broker: raw.moves_per_broker,
            moves_per_cluster: raw.moves_per_cluster,
        }
    }
}

/// One Strimzi Kafka cluster the agent looks after.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterConfig {
    pub name: String,
    pub namespace: String,
    /// Name of the Strimzi `Kafka` resource.
    pub kafka: String,
    /// Name of the `KafkaNodePool` holding the brokers.
    pub node_pool: String,
    pub bootstrap_servers: Vec<String>,
    pub prometheus: Option<PrometheusConfig>,
    /// Kafka client settings of the real backend.
    pub kafka_client: KafkaClientConfig,
    /// Kubernetes API of the real backend.
    pub kubernetes: KubernetesConfig,
    pub backend: BackendKind,
    /// Scenario file whose cluster the simulated backend models; none uses the built-in one.
    pub simulation: Option<PathBuf>,
    /// Most brokers this cluster may have (its share of the platform's capacity); the policies
    /// and manual scaling never go above it.
    pub broker_quota: Option<u32>,
    /// What one broker costs per hour, for reporting the savings of scaling down.
    pub cost_per_broker_hour: Option<f64>,
}

/// Prometheus endpoint and PromQL overrides of one cluster.
#[derive(Clone, Debug, Serialize)]
pub struct PrometheusConfig {
    pub url: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Resolution of the range queries.
    #[serde(with = "humantime_serde")]
    pub step: Duration,
    /// Link speed the network utilisation is measured against.
    pub network_bytes_per_second: u64,
    pub queries: BTreeMap<String, String>,
}

/// How the agent talks to Kafka.
#[derive(Clone, Debug, Serialize)]
pub struct KafkaClientConfig {
    /// Longest any Kafka request may take; a broker that stalls longer makes the datum stale.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// librdkafka properties (`security.protocol`, `ssl.ca.location`, `sasl.*`, ...).
    pub properties: BTreeMap<String, String>,
}

/// Where the Kubernetes API is.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KubernetesConfig {
    /// API server URL; none uses the in-cluster service account or the kubeconfig.
    pub url: Option<String>,
}

/// Read, parse and validate a configuration file.
pub fn load(file: &Path) -> Result<Config, Error> {
    let text = std::fs::read_to_string(file).map_err(|source| Error::Read { file: file.to_owned(), source })?;
    parse(&text, file)
}

/// Parse and validate configuration text; `file` is used in error messages and to resolve
/// relative paths.
pub fn parse(text: &str, file: &Path) -> Result<Config, Error> {
    let raw: RawConfig = serde_yaml::from_str(text).map_err(|source| Error::Parse { file: file.to_owned(), source })?;
    validate(raw, file)
}

fn invalid(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Invalid { file: file.to_owned(), field: field.into(), message: message.into() }
}

fn validate(raw: RawConfig, file: &Path) -> Result<Config, Error> {
    let RawConfig {
        region,
        interval,
        policy,
        dry_run,
        limits,
        api,
        journal_path,
        audit_log,
        leader_election,
        kubernetes_journal,
        notifications,
        alertmanager,
        backups,
        clusters,
    } = raw;
    if region.trim().is_empty() {
        return Err(invalid(file, "region", "must not be empty"));
    }
    if interval < Duration::from_secs(1) {
        return Err(invalid(file, "interval", "must be at least 1s"));
    }
    let base = file.parent().unwrap_or_else(|| Path::new("."));
    let leader_election = leader_election.map(|l| validate_leader(l, &region, file)).transpose()?;
    let kubernetes_journal = kubernetes_journal
        .map(|RawKubernetesJournal { namespace, kubernetes_url }| {
            if !is_dns_label(&namespace) {
                return Err(invalid(
                    file,
                    "kubernetes_journal.namespace",
                    format!("{namespace:?} is not a Kubernetes name"),
                ));
            }
            Ok(KubernetesJournal { namespace, kubernetes: KubernetesConfig { url: kubernetes_url } })
        })
        .transpose()?;
    let limits = validate_limits(limits, interval, file)?;
    let notifications =
        notifications.into_iter().enumerate().map(|(i, w)| validate_webhook(w, i, file)).collect::<Result<_, _>>()?;
    let RawPolicy { dir, eval_timeout, reload_interval } = policy;
    if eval_timeout.is_zero() {
        return Err(invalid(file, "policy.eval_timeout", "must be greater than zero"));
    }
    if reload_interval < Duration::from_millis(100) {
        return Err(invalid(file, "policy.reload_interval", "must be at least 100ms"));
    }
    if clusters.is_empty() {
        return Err(invalid(file, "clusters", "at least one cluster is required"));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut validated = Vec::with_capacity(clusters.len());
    for (i, cluster) in clusters.into_iter().enumerate() {
        let c = validate_cluster(cluster, i, base, file)?;
        if !seen.insert(c.name.clone()) {
            return Err(invalid(file, format!("clusters[{i}].name"), format!("duplicate cluster name {:?}", c.name)));
        }
        validated.push(c);
    }
    Ok(Config {
        region,
        interval,
        policy: PolicyConfig { dir: base.join(dir), eval_timeout, reload_interval },
        dry_run,
        limits,
        listen: api.listen,
        api: validate_api(api, base, file)?,
        alertmanager: validate_alertmanager(alertmanager, file)?,
        backups: backups.map(|b| validate_backups(b, base, file)).transpose()?,
        journal_path: base.join(journal_path),
        audit_log: audit_log.map(|p| base.join(p)),
        leader_election,
        kubernetes_journal,
        notifications,
        clusters: validated,
    })
}

fn validate_api(raw: RawApi, base: &Path, file: &Path) -> Result<ApiConfig, Error> {
    let RawApi { listen: _, auth, tls, rate_limit } = raw;
    if rate_limit.per_second == 0 || rate_limit.burst == 0 {
        return Err(invalid(file, "api.rate_limit", "per_second and burst must be at least 1"));
    }
    let (jwt, webhook_token_file) = match auth {
        None => (None, None),
        Some(RawAuth { jwt, webhook_token_file }) => {
            if jwt.is_none() && webhook_token_file.is_none() {
                return Err(invalid(file, "api.auth", "name jwt, webhook_token_file or both"));
            }
            let jwt = jwt.map(|j| {
                if j.roles_claim.trim().is_empty() {
                    return Err(invalid(file, "api.auth.jwt.roles_claim", "must not be empty"));
                }
                Ok(JwtConfig { key_file: base.join(&j.key_file), ..j })
            });
            (jwt.transpose()?, webhook_token_file.map(|p| base.join(p)))
        }
    };
    let tls = tls.map(|t| TlsConfig {
        cert_file: base.join(&t.cert_file),
        key_file: base.join(&t.key_file),
        client_ca_file: t.client_ca_file.map(|p| base.join(p)),
    });
    Ok(ApiConfig { jwt, webhook_token_file, tls, rate_limit })
}

fn validate_alertmanager(raw: RawAlertmanager, file: &Path) -> Result<AlertmanagerConfig, Error> {
    let mut labels = raw.cluster_labels.into_iter();
    let (Some(kafka_label), namespace_label, None) = (labels.next(), labels.next(), labels.next()) else {
        return Err(invalid(
            file,
            "alertmanager.cluster_labels",
            "list one or two labels: the Kafka cluster's name, then optionally its namespace",
        ));
    };
    if kafka_label.is_empty() || namespace_label.as_ref().is_some_and(String::is_empty) {
        return Err(invalid(file, "alertmanager.cluster_labels", "labels must not be empty"));
    }
    Ok(AlertmanagerConfig { kafka_label, namespace_label })
}

fn validate_backups(raw: RawBackups, base: &Path, file: &Path) -> Result<BackupsConfig, Error> {
    if raw.concurrency == 0 {
        return Err(invalid(file, "backups.concurrency", "must be at least 1"));
    }
    if raw.idle_timeout < Duration::from_secs(1) {
        return Err(invalid(file, "backups.idle_timeout", "must be at least 1s"));
    }
    Ok(BackupsConfig { dir: base.join(raw.dir), concurrency: raw.concurrency, idle_timeout: raw.idle_timeout })
}

fn validate_webhook(raw: RawWebhook, i: usize, file: &Path) -> Result<Webhook, Error> {
    let RawWebhook { name, url, kinds, timeout } = raw;
    let field = |f: &str| format!("notifications[{i}].{f}");
    if name.trim().is_empty() {
        return Err(invalid(file, field("name"), "must not be empty"));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(invalid(file, field("url"), "is not an http(s) URL"));
    }
    if timeout.is_zero() {
        return Err(invalid(file, field("timeout"), "must be greater than zero"));
    }
    let kinds = kinds
        .iter()
        .map(|k| {
            k.parse::<ActionKind>().map_err(|()| {
                invalid(
                    file,
                    field("kinds"),
                    format!("unknown action kind {k:?}; expected one of {}", ActionKind::names()),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Webhook { name, url, kinds, timeout })
}

fn validate_leader(raw: RawLeaderElection, region: &str, file: &Path) -> Result<LeaderElection, Error> {
    let RawLeaderElection { namespace, lease, duration, kubernetes_url } = raw;
    let lease = lease.unwrap_or_else(|| format!("kafka-autopilot-{region}"));
    if !is_dns_label(&namespace) {
        return Err(invalid(file, "leader_election.namespace", format!("{namespace:?} is not a Kubernetes name")));
    }
    if !is_dns_label(&lease) {
        return Err(invalid(file, "leader_election.lease", format!("{lease:?} is not a Kubernetes name")));
    }
    if duration < Duration::from_secs(3) {
        return Err(invalid(file, "leader_election.duration", "must be at least 3s"));
    }
    if let Some(u) = kubernetes_url.as_ref().filter(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
        return Err(invalid(file, "leader_election.kubernetes_url", format!("{u:?} is not an http(s) URL")));
    }
    Ok(LeaderElection { namespace, lease, duration, kubernetes: KubernetesConfig { url: kubernetes_url } })
}

fn validate_limits(raw: RawLimits, interval: Duration, file: &Path) -> Result<Limits, Error> {
    let RawLimits {
        concurrent_actions,
        actions_per_minute,
        default_cooldown,
        cooldowns,
        operation_timeout,
        max_data_age,
        metrics_window,
        replication_throttle,
        drain_timeout,
        moves_per_broker,
        moves_per_cluster,
    } = raw;
    if moves_per_broker == 0 || moves_per_cluster == 0 {
        return Err(invalid(
            file,
            "limits.moves_per_broker",
            "moves_per_broker and moves_per_cluster must be at least 1",
        ));
    }
    if concurrent_actions == 0 {
        return Err(invalid(file, "limits.concurrent_actions", "must be at least 1"));
    }
    if actions_per_minute == 0 {
        return Err(invalid(file, "limits.actions_per_minute", "must be at least 1"));
    }
    if max_data_age < interval {
        return Err(invalid(
            file,
            "limits.max_data_age",
            "must be at least the interval, or every datum would be stale",
        ));
    }
    if metrics_window < Duration::from_secs(60) {
        return Err(invalid(file, "limits.metrics_window", "must be at least 1m"));
    }
    let mut parsed = BTreeMap::new();
    for (kind, text) in cooldowns {
        let field = format!("limits.cooldowns.{kind}");
        let k: ActionKind = kind.parse().map_err(|_| {
            invalid(file, &field, format!("unknown action kind; expected one of {}", ActionKind::names()))
        })?;
        let d = humantime::parse_duration(&text)
            .map_err(|e| invalid(file, &field, format!("{text:?} is not a duration: {e}")))?;
        parsed.insert(k, d);
    }
    Ok(Limits {
        concurrent_actions,
        actions_per_minute,
        cooldowns: parsed,
        default_cooldown,
        operation_timeout,
        max_data_age,
        metrics_window,
        replication_throttle: replication_throttle.map(|b| b.0),
        drain_timeout,
        moves_per_broker,
        moves_per_cluster,
    })
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn validate_cluster(raw: RawCluster, i: usize, base: &Path, file: &Path) -> Result<ClusterConfig, Error> {
    let RawCluster {
        name,
        namespace,
        kafka,
        node_pool,
        bootstrap_servers,
        prometheus,
        kafka_client,
        kubernetes,
        backend,
        simulation,
        broker_quota,
        cost_per_broker_hour,
    } = raw;
    let field = |f: &str| format!("clusters[{i}].{f}");
    for (f, v) in [("name", &name), ("namespace", &namespace), ("node_pool", &node_pool)] {
        if !is_dns_label(v) {
            return Err(invalid(
                file,
                field(f),
                format!("{v:?} is not a Kubernetes name (lower-case letters, digits, '-', at most 63)"),
            ));
        }
    }
    let kafka = kafka.unwrap_or_else(|| name.clone());
    if !is_dns_label(&kafka) {
        return Err(invalid(file, field("kafka"), format!("{kafka:?} is not a Kubernetes name")));
    }
    let prometheus = prometheus.map(|p| validate_prometheus(p, &field("prometheus"), file)).transpose()?;
    if backend == BackendKind::Real {
        if bootstrap_servers.is_empty() {
            return Err(invalid(file, field("bootstrap_servers"), "required for backend `real`"));
        }
        if prometheus.is_none() {
            return Err(invalid(file, field("prometheus"), "required for backend `real`"));
        }
    }
    if simulation.is_some() && backend != BackendKind::Simulated {
        return Err(invalid(file, field("simulation"), "only valid with backend `simulated`"));
    }
    if broker_quota == Some(0) {
        return Err(invalid(file, field("broker_quota"), "must be at least 1"));
    }
    if cost_per_broker_hour.is_some_and(|c| !c.is_finite() || c < 0.0) {
        return Err(invalid(file, field("cost_per_broker_hour"), "must be a non-negative number"));
    }
    let RawKafka { timeout, properties } = kafka_client;
    let timeout = timeout.map_or(default_kafka_timeout(), |t| *t);
    if timeout.is_zero() {
        return Err(invalid(file, field("kafka_client.timeout"), "must be greater than zero"));
    }
    if let Some(p) = properties.get("security.protocol") {
        if !["plaintext", "ssl"].contains(&p.to_ascii_lowercase().as_str()) {
            let message = format!("{p:?}: the agent speaks PLAINTEXT or SSL to Kafka (SASL is not supported yet)");
            return Err(invalid(file, field("kafka_client.properties.security.protocol"), message));
        }
    }
    if let Some(key) = properties.keys().find(|k| k.as_str() == "bootstrap.servers" || k.as_str() == "group.id") {
        return Err(invalid(file, field(&format!("kafka_client.properties.{key}")), "set by the agent"));
    }
    let RawKubernetes { url } = kubernetes;
    if let Some(u) = url.as_ref().filter(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
        return Err(invalid(file, field("kubernetes.url"), format!("{u:?} is not an http(s) URL")));
    }
    Ok(ClusterConfig {
        name,
        namespace,
        kafka,
        node_pool,
        bootstrap_servers,
        prometheus,
        kafka_client: KafkaClientConfig { timeout, properties },
        kubernetes: KubernetesConfig { url },
        backend,
        simulation: simulation.map(|p| base.join(p)),
        broker_quota,
        cost_per_broker_hour,
    })
}

fn validate_prometheus(raw: RawPrometheus, field: &str, file: &Path) -> Result<PrometheusConfig, Error> {
    let RawPrometheus { url, timeout, step, network_bytes_per_second, queries } = raw;
    if step.is_zero() || timeout.is_zero() {
        return Err(invalid(file, format!("{field}.step"), "step and timeout must be greater than zero"));
    }
    if network_bytes_per_second.0 == 0 {
        return Err(invalid(file, format!("{field}.network_bytes_per_second"), "must be greater than zero"));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(invalid(file, format!("{field}.url"), format!("{url:?} is not an http(s) URL")));
    }
    for (name, query) in &queries {
        if !METRIC_INPUTS.contains(&name.as_str()) {
            return Err(invalid(
                file,
                format!("{field}.queries.{name}"),
                format!("unknown input; expected one of {}", METRIC_INPUTS.join(", ")),
            ));
        }
        if query.trim().is_empty() {
            return Err(invalid(file, format!("{field}.queries.{name}"), "empty query"));
        }
    }
    Ok(PrometheusConfig { url, timeout, step, network_bytes_per_second: network_bytes_per_second.0, queries })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
region: eu-west-1
interval: 30s
dry_run: false
limits:
  cooldowns: {scale_brokers: 15m}
clusters:
  - name: prod-kafka-01
    namespace: kafka
    node_pool: brokers
    backend: simulated
"#;

    fn parse_str(text: &str) -> Result<Config, Error> {
        parse(text, Path::new("/etc/autopilot/config.yaml"))
    }

    #[test]
    fn parses_defaults_and_durations() {
        let c = parse_str(GOOD).unwrap();
        assert_eq!(c.interval, Duration::from_secs(30));
        assert!(!c.dry_run);
        assert_eq!(c.limits.cooldown(ActionKind::ScaleBrokers), Duration::from_secs(900));
        assert_eq!(c.limits.cooldown(ActionKind::ElectLeaders), Duration::from_secs(600));
        assert_eq!(c.clusters[0].kafka, "prod-kafka-01");
        assert_eq!(c.policy.dir, Path::new("/etc/autopilot/policies"));
    }

    #[test]
    fn dry_run_is_the_default() {
        let c = parse_str(&GOOD.replace("dry_run: false\n", "")).unwrap();
        assert!(c.dry_run);
    }

    #[rstest::rstest]
    #[case::unknown_field(GOOD.replace("region: eu-west-1", "region: eu-west-1\nregoin: x"), "regoin")]
    #[case::bad_duration(GOOD.replace("interval: 30s", "interval: thirty"), "interval")]
    #[case::bad_cooldown_kind(GOOD.replace("scale_brokers: 15m", "scale_brokerz: 15m"), "limits.cooldowns.scale_brokerz")]
    #[case::bad_cooldown_value(GOOD.replace("15m", "soon"), "limits.cooldowns.scale_brokers")]
    #[case::bad_name(GOOD.replace("prod-kafka-01", "Prod_Kafka"), "clusters[0].name")]
    #[case::real_needs_bootstrap(GOOD.replace("backend: simulated", "backend: real"), "clusters[0].bootstrap_servers")]
    #[case::bad_backend(GOOD.replace("backend: simulated", "backend: fake"), "backend")]
    fn errors_name_the_file_and_field(#[case] text: String, #[case] field: &str) {
        let message = parse_str(&text).unwrap_err().to_string();
        assert!(message.contains("/etc/autopilot/config.yaml"), "{message}");
        assert!(message.contains(field), "{message}");
    }

    #[test]
    fn duplicate_clusters_are_refused() {
        let text = format!(
            "{GOOD}  - name: prod-kafka-01\n    namespace: kafka\n    node_pool: brokers\n    backend: simulated\n"
        );
        let message = parse_str(&text).unwrap_err().to_string();
        assert!(message.contains("clusters[1].name") && message.contains("duplicate"), "{message}");
    }
}
