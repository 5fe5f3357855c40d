//! Printing a run as it happens: JSON lines (`at` in seconds from the start) or text for people.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

use serde_json::Value;

use crate::events::{Body, Event, Sink};
use crate::snapshot::Snapshot;
use crate::time::Timestamp;

/// Output format of `simulate` and `demo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Human,
}

/// An event as a JSON object whose `at` is seconds from `start`.
pub fn relative(e: &Event, start: Timestamp) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        let secs = (e.at - start).as_secs_f64();
        m.insert("at".into(), serde_json::Number::from_f64(secs).map_or(Value::Null, Value::Number));
    }
    v
}

fn clock(secs: f64) -> String {
    // Offsets are whole seconds well inside u64.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s = secs.max(0.0) as u64;
    format!("{:>2}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Prints events (and, for people, a status line now and then) to a writer.
pub struct Printer {
    format: Format,
    start: Timestamp,
    out: Mutex<Box<dyn Write + Send>>,
    shown: Mutex<BTreeMap<String, String>>,
}

impl std::fmt::Debug for Printer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Printer").field("format", &self.format).finish_non_exhaustive()
    }
}

impl Printer {
    /// A printer to standard output.
    pub fn stdout(format: Format, start: Timestamp) -> Self {
        Self::new(format, start, Box::new(std::io::stdout()))
    }

    /// A printer to any writer.
    pub fn new(format: Format, start: Timestamp, out: Box<dyn Write + Send>) -> Self {
        Self { format, start, out: Mutex::new(out), shown: Mutex::new(BTreeMap::new()) }
    }

    fn line(&self, text: &str) {
        if let Ok(mut o) = self.out.lock() {
            let _ = writeln!(o, "{text}");
            let _ = o.flush();
        }
    }

    /// A one-line summary of the cluster, for people.
    pub fn status(&self, s: &Snapshot) {
        if self.format != Format::Human {
            return;
        }
        let pct = |v: Option<f64>| v.map_or("  ?".into(), |x| format!("{:>3.0}%", x * 100.0));
        let live = s.live_brokers().count();
        let line = format!(
            "{}  status     brokers {live}/{}  cpu {}  memory {}  disk {}  under-replicated {}  reassigning {}",
            clock((s.at - self.start).as_secs_f64()),
            s.node_pool.as_ref().map_or(0, |p| p.replicas),
            pct(s.utilisation.cpu.current),
            pct(s.utilisation.memory.current),
            pct(s.utilisation.disk.current),
            s.partitions.under_replicated,
            s.partitions.reassigning,
        );
        self.line(&line);
    }

    /// `Some` when `value` differs from what was last shown under `key`: people see a repeated
    /// decision, deferral or error once, not every tick (the JSON output keeps every event).
    fn changed(&self, key: &str, value: &str) -> Option<()> {
        let mut shown = self.shown.lock().ok()?;
        if shown.get(key).is_some_and(|v| v == value) {
            return None;
        }
        shown.insert(key.to_owned(), value.to_owned());
        Some(())
    }

    fn human(&self, e: &Event) -> Option<String> {
        let t = clock((e.at - self.start).as_secs_f64());
        let fields = |v: Value| -> String {
            let Value::Object(m) = v else {
                return String::new();
            };
            m.iter()
                .filter(|(k, _)| k.as_str() != "kind")
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let text = match &e.body {
            Body::Decision { reason, message, request, .. } => {
                let f = fields(serde_json::to_value(request).unwrap_or(Value::Null));
                self.changed(&format!("decision {reason}"), &format!("{f}{message}"))?;
                format!("{t}  decision   {} {f}  [{reason}] {message}", request.kind())
            }
            Body::Deferred { kind, reason, why } => {
                self.changed(&format!("deferred {kind} {reason}"), why)?;
                format!("{t}  deferred   {kind} [{reason}]: {why}")
            }
            Body::Action { action, reason, dry_run, .. } => {
                let f = fields(serde_json::to_value(action).unwrap_or(Value::Null));
                let dry = if *dry_run { " (dry-run)" } else { "" };
                format!("{t}  ACTION     {} {f}{dry}  [{reason}]", action.kind())
            }
            Body::Step { kind, step, detail, .. } => format!("{t}    step     {kind} -> {step}: {detail}"),
            Body::Outcome { kind, result, detail, .. } => {
                format!("{t}  OUTCOME    {kind} {}: {detail}", result.as_str())
            }
            Body::Request { source, request, operation, refused } => {
                let f = fields(serde_json::to_value(request).unwrap_or(Value::Null));
                match (operation, refused) {
                    (_, Some(why)) => format!("{t}  REQUEST    {} {f} from {source} refused: {why}", request.kind()),
                    (op, None) => format!(
                        "{t}  REQUEST    {} {f} from {source} accepted: {}",
                        request.kind(),
                        op.as_deref().unwrap_or("")
                    ),
                }
            }
            Body::BrokerState { broker, state, previous } => {
                let was = previous.map(|p| format!(" (was {p:?})")).unwrap_or_default();
                format!("{t}  broker     {broker} {state:?}{was}")
            }
            Body::PolicyError { category, message } => {
                self.changed(&format!("policy error {category}"), message)?;
                format!("{t}  POLICY ERROR ({category}): {message}")
            }
            Body::PolicyReloaded { packages } => {
                format!("{t}  policies reloaded: {}", packages.join(", "))
            }
            Body::SourceError { source, message, .. } => format!("{t}  source {source} failed: {message}"),
            Body::JournalError { message, .. } => format!("{t}  JOURNAL ERROR: {message}"),
            Body::ApiCall { method, path, caller, status } => {
                format!("{t}  API        {method} {path} by {caller}: {status}")
            }
            Body::Fault { fault } => format!("{t}  FAULT      {}", serde_json::to_string(fault).unwrap_or_default()),
            Body::Load { load, ramp } => {
                let over = ramp.map(|r| format!(" over {}", humantime::format_duration(r))).unwrap_or_default();
                let (cpu, memory) = (load.cpu * 100.0, load.memory * 100.0);
                format!("{t}  load       cpu {cpu:.0}% memory {memory:.0}%{over} (as utilisation at the initial size)")
            }
        };
        Some(text)
    }
}

impl Sink for Printer {
    fn record(&self, e: &Event) {
        match self.format {
            Format::Json => self.line(&relative(e, self.start).to_string()),
            Format::Human => {
                if let Some(text) = self.human(e) {
                    self.line(&text);
                }
            }
        }
    }
}
