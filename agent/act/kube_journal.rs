//! The journal as Kubernetes objects: one `AutopilotOperation` (`autopilot.kafka.io/v1alpha1`)
//! per operation in flight, its status the operation's progress. `kubectl get
//! autopilotoperations` shows what the agent is doing; an operation survives the agent's pod
//! moving to another node; an operator approves one with
//! `kubectl annotate autopilotoperation NAME autopilot.kafka.io/approve=true`.
//! This module only performs I/O.

use std::collections::BTreeSet;
use std::sync::Mutex;

use async_trait::async_trait;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::Client;
use serde_json::{json, Value};

use super::journal::{Error, Journal};
use super::operation::{Operation, Step};

pub const GROUP: &str = "autopilot.kafka.io";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "AutopilotOperation";
pub const PLURAL: &str = "autopilotoperations";
pub const LABEL_REGION: &str = "autopilot.kafka.io/region";
pub const LABEL_CLUSTER: &str = "autopilot.kafka.io/cluster";
pub const ANNOTATION_APPROVE: &str = "autopilot.kafka.io/approve";
const MANAGER: &str = "kafka-autopilot";

/// The API resource of the journal's objects.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

/// A Kubernetes object name for an operation id (lower case, `-` for anything else, at most 63).
pub fn object_name(id: &str) -> String {
    let mut name: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    name = name.trim_matches('-').to_owned();
    if name.len() > 63 {
        // Keep it unique: the tail (a timestamp) matters more than the head.
        name = name[name.len() - 63..].trim_start_matches('-').to_owned();
    }
    name
}

/// The journal in a namespace, for one region's agents.
pub struct KubeJournal {
    api: Api<DynamicObject>,
    namespace: String,
    region: String,
    /// Objects this process created or updated: their spec is in place.
    known: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for KubeJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeJournal")
            .field("namespace", &self.namespace)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

fn phase(op: &Operation) -> &'static str {
    match (&op.step, &op.rolling_back) {
        (Step::AwaitApproval { .. }, _) if !op.approved => "AwaitingApproval",
        (_, Some(_)) => "RollingBack",
        _ => "Running",
    }
}

impl KubeJournal {
    /// The journal of `region` in `namespace`.
    pub fn new(client: Client, namespace: &str, region: &str) -> Self {
        Self {
            api: Api::namespaced_with(client, namespace, &api_resource()),
            namespace: namespace.into(),
            region: region.into(),
            known: Mutex::new(BTreeSet::new()),
        }
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::Write {
            path: format!("{PLURAL}.{GROUP} in namespace {}", self.namespace).into(),
            source: std::io::Error::other(format!("{what}: {e}")),
        }
    }

    fn is_known(&self, name: &str) -> bool {
        self.known.lock().map(|k| k.contains(name)).unwrap_or(false)
    }
}

#[async_trait]
impl Journal for KubeJournal {
    async fn load(&self) -> Result<Vec<Operation>, Error> {
        let lp = ListParams::default().labels(&format!("{LABEL_REGION}={}", self.region));
        let list = self.api.list(&lp).await.map_err(|e| self.err("list", e))?;
        let mut ops = Vec::new();
        for o in list.items {
            let doc = o
                .data
                .pointer("/status/operation")
                .or_else(|| o.data.pointer("/spec/operation"))
                .cloned()
                .unwrap_or(Value::Null);
            let op: Operation = serde_json::from_value(doc).map_err(|e| Error::Corrupt {
                path: format!("{PLURAL}/{}", o.metadata.name.clone().unwrap_or_default()).into(),
                message: e.to_string(),
            })?;
            ops.push(op);
        }
        Ok(ops)
    }

    async fn save(&self, op: &Operation) -> Result<(), Error> {
        let name = object_name(&op.id);
        let op_json = serde_json::to_value(op).map_err(|e| self.err("encode", e))?;
        if !self.is_known(&name) {
            let object = json!({
                "apiVersion": format!("{GROUP}/{VERSION}"),
                "kind": KIND,
                "metadata": {
                    "name": name,
                    "labels": {LABEL_REGION: self.region, LABEL_CLUSTER: op.cluster},
                },
                "spec": {
                    "id": op.id,
                    "cluster": op.cluster,
                    "kind": op.kind().as_str(),
                    "action": op.action,
                    "reason": op.reason,
                    "message": op.message,
                    "startedAt": op.started_at,
                    "deadline": op.deadline,
                    "operation": op_json,
                },
            });
            let params = PatchParams::apply(MANAGER).force();
            self.api.patch(&name, &params, &Patch::Apply(&object)).await.map_err(|e| self.err("apply", e))?;
            if let Ok(mut k) = self.known.lock() {
                k.insert(name.clone());
            }
        }
        let status = json!({"status": {
            "phase": phase(op),
            "step": op.step.name(),
            "stepStartedAt": op.step_started_at,
            "rollingBack": op.rolling_back,
            "operation": op_json,
        }});
        self.api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(|e| self.err("status", e))?;
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), Error> {
        let name = object_name(id);
        match self.api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(self.err("delete", e)),
        }
        if let Ok(mut k) = self.known.lock() {
            k.remove(&name);
        }
        Ok(())
    }

    async fn approved(&self, id: &str) -> Result<bool, Error> {
        let o = self.api.get_opt(&object_name(id)).await.map_err(|e| self.err("get", e))?;
        Ok(o.and_then(|o| o.metadata.annotations)
            .is_some_and(|a| a.get(ANNOTATION_APPROVE).is_some_and(|v| v == "true")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_kubernetes_names() {
        assert_eq!(
            object_name("prod-kafka-01-scale_brokers-1767225930000"),
            "prod-kafka-01-scale-brokers-1767225930000"
        );
        let long = format!("{}-scale_brokers-1767225930000", "c".repeat(60));
        let n = object_name(&long);
        assert!(n.len() <= 63 && n.ends_with("1767225930000") && !n.starts_with('-'), "{n}");
    }
}
