//! Webhook notifications: every action of the configured kinds (scaling by default) and its
//! outcome, and every policy `notify` decision, posted as Slack-compatible JSON (`text`, plus the
//! event itself under `autopilot` for machines). A [`Sink`]: recording never blocks the
//! pipeline; a background task posts, and a full queue drops with a metric.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::config::Webhook;
use crate::events::{Body, Event, Sink};
use crate::plan::ActionKind;
use crate::telemetry;

/// Posts waiting to be sent, across receivers.
const QUEUE: usize = 1024;

/// The sink that feeds the webhook receivers.
#[derive(Debug)]
pub struct Notifier {
    hooks: Arc<Vec<Webhook>>,
    tx: mpsc::Sender<(usize, Value)>,
}

impl Notifier {
    /// A notifier for `hooks`, and the task that posts (spawn it on the runtime).
    pub fn new(hooks: Vec<Webhook>) -> (Self, impl std::future::Future<Output = ()>) {
        let hooks = Arc::new(hooks);
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { hooks: hooks.clone(), tx }, post_all(hooks, rx))
    }

    fn wants(hook: &Webhook, kind: ActionKind) -> bool {
        if hook.kinds.is_empty() {
            matches!(kind, ActionKind::ScaleBrokers | ActionKind::Notify)
        } else {
            hook.kinds.contains(&kind)
        }
    }
}

/// The one-line text of an event, or none when it is not notified.
pub fn text(e: &Event) -> Option<(ActionKind, String)> {
    let c = &e.cluster;
    match &e.body {
        Body::Action { action: crate::plan::Action::Notify { severity, message }, reason, .. } => {
            Some((ActionKind::Notify, format!("[{c}] {severity}: {message} [{reason}]")))
        }
        Body::Action { action, reason, message, dry_run, .. } => {
            let detail = serde_json::to_value(action).ok().map(|v| fields(&v)).unwrap_or_default();
            let dry = if *dry_run { " (dry-run, nothing changed)" } else { "" };
            Some((action.kind(), format!("[{c}] {} started{dry}: {detail} [{reason}] {message}", action.kind())))
        }
        Body::Outcome { kind, result, detail, .. } if *kind != ActionKind::Notify => {
            Some((*kind, format!("[{c}] {kind} {}: {detail}", result.as_str())))
        }
        _ => None,
    }
}

fn fields(v: &Value) -> String {
    v.as_object()
        .map(|o| o.iter().filter(|(k, _)| *k != "kind").map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

impl Sink for Notifier {
    fn record(&self, event: &Event) {
        let Some((kind, text)) = text(event) else { return };
        for (i, hook) in self.hooks.iter().enumerate() {
            if !Self::wants(hook, kind) {
                continue;
            }
            let payload = json!({"text": text, "username": "kafka-autopilot", "autopilot": event});
            if self.tx.try_send((i, payload)).is_err() {
                metrics::counter!(telemetry::NOTIFICATIONS, "receiver" => hook.name.clone(), "result" => "dropped")
                    .increment(1);
                tracing::warn!(receiver = %hook.name, "notification queue full; notification dropped");
            }
        }
    }
}

async fn post_all(hooks: Arc<Vec<Webhook>>, mut rx: mpsc::Receiver<(usize, Value)>) {
    let client = reqwest::Client::new();
    while let Some((i, payload)) = rx.recv().await {
        let Some(hook) = hooks.get(i) else { continue };
        let sent = client.post(&hook.url).timeout(hook.timeout).json(&payload).send().await;
        let result = match sent {
            Ok(r) if r.status().is_success() => "sent",
            Ok(r) => {
                tracing::warn!(receiver = %hook.name, status = r.status().as_u16(), "webhook receiver refused a notification");
                "failed"
            }
            Err(e) => {
                // The URL carries the receiver's credential: never log it.
                let e = e.without_url();
                tracing::warn!(receiver = %hook.name, error = %e, "webhook receiver unreachable");
                "failed"
            }
        };
        metrics::counter!(telemetry::NOTIFICATIONS, "receiver" => hook.name.clone(), "result" => result).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::post;
    use axum::{Json, Router};

    use super::*;
    use crate::events::Result as Outcome;
    use crate::plan::Action;
    use crate::time::Timestamp;

    #[tokio::test]
    async fn scaling_events_reach_a_receiver_as_slack_json() {
        let (got, mut seen) = mpsc::unbounded_channel::<Value>();
        let app = Router::new().route(
            "/hook",
            post(move |Json(v): Json<Value>| {
                let got = got.clone();
                async move {
                    let _ = got.send(v);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let hook = Webhook {
            name: "ops".into(),
            url: format!("http://{addr}/hook"),
            kinds: Vec::new(),
            timeout: Duration::from_secs(5),
        };
        let (notifier, task) = Notifier::new(vec![hook]);
        tokio::spawn(task);
        let at = Timestamp::from_millis(0);
        let action = Action::ScaleBrokers { from: 3, to: 5, remove: vec![], drain_timeout: Duration::from_secs(60) };
        let body = Body::Action {
            operation: "op-1".into(),
            action,
            reason: "scale_up_sustained_load".into(),
            message: "cpu 80%".into(),
            dry_run: false,
        };
        notifier.record(&Event { at, cluster: "prod".into(), body });
        let elect = Body::Outcome {
            operation: "op-2".into(),
            kind: ActionKind::ElectLeaders,
            result: Outcome::Succeeded,
            reason: "r".into(),
            detail: String::new(),
        };
        notifier.record(&Event { at, cluster: "prod".into(), body: elect });
        let done = Body::Outcome {
            operation: "op-1".into(),
            kind: ActionKind::ScaleBrokers,
            result: Outcome::Succeeded,
            reason: "scale_up_sustained_load".into(),
            detail: "cluster healthy with 5 brokers".into(),
        };
        notifier.record(&Event { at, cluster: "prod".into(), body: done });
        let first = tokio::time::timeout(Duration::from_secs(10), seen.recv()).await.unwrap().unwrap();
        let text = first["text"].as_str().unwrap();
        assert!(
            text.starts_with("[prod] scale_brokers started") && text.contains("from=3") && text.contains("to=5"),
            "{text}"
        );
        assert_eq!(first["autopilot"]["operation"], "op-1");
        let second = tokio::time::timeout(Duration::from_secs(10), seen.recv()).await.unwrap().unwrap();
        assert_eq!(
            second["text"], "[prod] scale_brokers succeeded: cluster healthy with 5 brokers",
            "leader elections are not sent by default"
        );
    }
}
