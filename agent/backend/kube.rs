//! Kubernetes and Strimzi through the `kube` client. This module only performs I/O.
//!
//! Reads the `Kafka` and `KafkaNodePool` resources (`kafka.strimzi.io/v1beta2`), the node
//! pool's broker pods and volumes (labels `strimzi.io/cluster` and `strimzi.io/pool-name`) and
//! the cluster and clients CA certificates. Acts by patching the node pool, deleting pods and
//! volumes and annotating CA secrets, and records a Kubernetes Event for every action.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use serde_json::{json, Value};

use super::{ClusterOps, Error};
use crate::collect::{CertificateObservation, KubeObservation, NodePoolObservation, PodObservation, PvcObservation};
use crate::config::KubernetesConfig;
use crate::time::Timestamp;
use crate::units::Bytes;

/// Name the agent reports its Events and patches under.
pub const MANAGER: &str = "kafka-autopilot";

fn strimzi(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kafka.strimzi.io", "v1beta2", kind), plural)
}

/// Connect to the API server given in the config, or in-cluster / from the kubeconfig.
pub async fn client(config: &KubernetesConfig) -> Result<Client, Error> {
    let unavailable = |e: &dyn std::fmt::Display| Error::Unavailable { message: format!("Kubernetes client: {e}") };
    match &config.url {
        Some(url) => {
            let uri = url.parse::<http::Uri>().map_err(|e| unavailable(&e))?;
            Client::try_from(kube::Config::new(uri)).map_err(|e| unavailable(&e))
        }
        None => Client::try_default().await.map_err(|e| unavailable(&e)),
    }
}

fn api_error(what: &str, e: kube::Error) -> Error {
    match e {
        kube::Error::Api(s) if s.code == 404 => Error::NotFound { what: what.to_owned() },
        kube::Error::Api(s) if (400..500).contains(&s.code) => {
            Error::Rejected { message: format!("{what}: {}", s.message) }
        }
        other => Error::Unavailable { message: format!("{what}: {other}") },
    }
}

/// One Strimzi cluster's resources.
#[derive(Clone)]
pub struct KubeCluster {
    client: Client,
    namespace: String,
    kafka: String,
    pool: String,
    recorder: Recorder,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("namespace", &self.namespace)
            .field("kafka", &self.kafka)
            .field("pool", &self.pool)
            .finish()
    }
}

impl KubeCluster {
    /// The node pool `pool` of the `Kafka` resource `kafka` in `namespace`.
    pub fn new(client: Client, namespace: &str, kafka: &str, pool: &str, instance: Option<String>) -> Self {
        let recorder = Recorder::new(client.clone(), Reporter { controller: MANAGER.into(), instance });
        Self { client, namespace: namespace.into(), kafka: kafka.into(), pool: pool.into(), recorder }
    }

    fn dynamic(&self, ar: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, ar)
    }

    fn selector(&self) -> ListParams {
        ListParams::default().labels(&format!("strimzi.io/cluster={},strimzi.io/pool-name={}", self.kafka, self.pool))
    }

    fn pod_name(&self, broker: i32) -> String {
        format!("{}-{}-{broker}", self.kafka, self.pool)
    }

    /// Broker ID of a pod or volume of this node pool (`...<kafka>-<pool>-<id>`).
    fn broker_of(&self, name: &str) -> Option<i32> {
        let prefix = format!("{}-{}-", self.kafka, self.pool);
        let at = name.rfind(&prefix)?;
        name[at + prefix.len()..].parse().ok()
    }

    async fn node_pool(&self) -> Result<DynamicObject, Error> {
        let what = format!("KafkaNodePool {}/{}", self.namespace, self.pool);
        self.dynamic(&strimzi("KafkaNodePool", "kafkanodepools")).get(&self.pool).await.map_err(|e| api_error(&what, e))
    }

    async fn record(&self, reference: ObjectReference, reason: &str, action: &str, note: String) {
        self.record_typed(reference, EventType::Normal, reason, action, note).await;
    }

    async fn record_typed(
        &self,
        reference: ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(reason, error = %e, "failed to record a Kubernetes Event");
        }
    }

    async fn record_on_pool(&self, reason: &str, action: &str, note: String) {
        self.record_on_pool_typed(EventType::Normal, reason, action, note).await;
    }

    async fn record_on_pool_typed(&self, type_: EventType, reason: &str, action: &str, note: String) {
        let ar = strimzi("KafkaNodePool", "kafkanodepools");
        let reference = match self.node_pool().await {
            Ok(pool) => pool.object_ref(&ar),
            Err(_) => ObjectReference {
                api_version: Some(ar.api_version.clone()),
                kind: Some(ar.kind.clone()),
                name: Some(self.pool.clone()),
                namespace: Some(self.namespace.clone()),
                ..ObjectReference::default()
            },
        };
        self.record_typed(reference, type_, reason, action, note).await;
    }
}

/// The node pool annotation that names the brokers a scale-down removes.
const REMOVE_NODE_IDS: &str = "strimzi.io/remove-node-ids";

fn pool_observation(name: &str, pool: &DynamicObject) -> Result<NodePoolObservation, Error> {
    let data = &pool.data;
    let replicas = data
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .ok_or_else(|| Error::Rejected { message: format!("KafkaNodePool {name} has no spec.replicas") })?;
    Ok(NodePoolObservation {
        name: name.to_owned(),
        replicas: u32::try_from(replicas).unwrap_or(u32::MAX),
        storage_bytes: storage_size(data).unwrap_or(0),
        node_ids: data
            .pointer("/status/nodeIds")
            .and_then(Value::as_array)
            .map(|ids| ids.iter().filter_map(|v| v.as_i64()).filter_map(|v| i32::try_from(v).ok()).collect())
            .unwrap_or_default(),
        remove_node_ids: pool
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REMOVE_NODE_IDS))
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default(),
    })
}

/// Size of the node pool's (largest) data volume: `persistent-claim` or `jbod` storage.
fn storage_size(data: &Value) -> Option<u64> {
    let storage = data.pointer("/spec/storage")?;
    let sizes: Vec<u64> = match storage.get("type").and_then(Value::as_str) {
        Some("jbod") => storage
            .get("volumes")?
            .as_array()?
            .iter()
            .filter_map(|v| v.get("size")?.as_str()?.parse::<Bytes>().ok())
            .map(|b| b.0)
            .collect(),
        _ => vec![storage.get("size")?.as_str()?.parse::<Bytes>().ok()?.0],
    };
    sizes.into_iter().max()
}

fn pod_observation(broker: i32, pod: &Pod) -> PodObservation {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let restarts = status
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| u32::try_from(c.restart_count).unwrap_or(0)).sum());
    let pvc = pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).and_then(|vs| {
        vs.iter()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.clone())
            .find(|n| n.starts_with("data-"))
    });
    PodObservation {
        name: pod.metadata.name.clone().unwrap_or_default(),
        broker,
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Unknown".into()),
        ready,
        reason: status.and_then(|s| s.reason.clone()),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        restarts,
        pvc,
    }
}

fn pvc_observation(broker: i32, pvc: &PersistentVolumeClaim) -> PvcObservation {
    let quantity = |q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
        q.and_then(|q| q.0.parse::<Bytes>().ok()).map(|b| b.0)
    };
    let status = pvc.status.as_ref();
    PvcObservation {
        name: pvc.metadata.name.clone().unwrap_or_default(),
        broker,
        unavailable_seconds: 0.0,
        conditions: status
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| cs.iter().filter(|c| c.status == "True").map(|c| c.type_.clone()).collect())
            .unwrap_or_default(),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into()),
        capacity_bytes: quantity(status.and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage"))),
        requested_bytes: quantity(
            pvc.spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage")),
        )
        .unwrap_or(0),
    }
}

/// `notAfter` of the first certificate in a PEM bundle.
pub fn not_after(pem: &[u8]) -> Result<Timestamp, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("not PEM: {e}"))?;
    let cert = pem.parse_x509().map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let secs = cert.validity().not_after.timestamp();
    let ms = u64::try_from(secs).map_err(|_| "notAfter before 1970".to_string())?.saturating_mul(1000);
    Ok(Timestamp::from_millis(ms))
}

#[async_trait]
impl ClusterOps for KubeCluster {
    async fn observe(&self) -> Result<KubeObservation, Error> {
        let kafka_what = format!("Kafka {}/{}", self.namespace, self.kafka);
        let kafka =
            self.dynamic(&strimzi("Kafka", "kafkas")).get(&self.kafka).await.map_err(|e| api_error(&kafka_what, e))?;
        let pool = self.node_pool().await?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &self.namespace);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let pods = pods.list(&self.selector()).await.map_err(|e| api_error("broker pods", e))?;
        let pvcs = pvcs.list(&self.selector()).await.map_err(|e| api_error("broker volumes", e))?;
        let mut certificates = Vec::new();
        for (kind, secret) in [
            ("cluster-ca", format!("{}-cluster-ca-cert", self.kafka)),
            ("clients-ca", format!("{}-clients-ca-cert", self.kafka)),
        ] {
            let Some(s) = secrets.get_opt(&secret).await.map_err(|e| api_error(&secret, e))? else { continue };
            let Some(pem) = s.data.as_ref().and_then(|d| d.get("ca.crt")) else { continue };
            match not_after(&pem.0) {
                Ok(not_after) => certificates.push(CertificateObservation { secret, kind: kind.into(), not_after }),
                Err(e) => tracing::warn!(secret = %secret, error = %e, "CA certificate unreadable"),
            }
        }
        let ready = kafka
            .data
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        let version = kafka
            .data
            .pointer("/status/kafkaVersion")
            .or_else(|| kafka.data.pointer("/spec/kafka/version"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(KubeObservation {
            kafka_ready: ready,
            kafka_version: version,
            node_pool: Some(pool_observation(&self.pool, &pool)?),
            pods: pods
                .items
                .iter()
                .filter_map(|p| Some(pod_observation(self.broker_of(p.metadata.name.as_deref()?)?, p)))
                .collect(),
            pvcs: pvcs
                .items
                .iter()
                .filter_map(|p| Some(pvc_observation(self.broker_of(p.metadata.name.as_deref()?)?, p)))
                .collect(),
            certificates,
        })
    }

    async fn scale_node_pool(&self, replicas: u32, remove: &[i32]) -> Result<(), Error> {
        let pool = self.node_pool().await?;
        let current = pool_observation(&self.pool, &pool)?;
        let mut patch = json!({"spec": {"replicas": replicas}});
        // Say which brokers go: exactly the ones the executor drained.
        if !remove.is_empty() {
            patch["metadata"] = json!({"annotations": {REMOVE_NODE_IDS: format!("{remove:?}")}});
        }
        let what = format!("KafkaNodePool {}/{}", self.namespace, self.pool);
        let api = self.dynamic(&strimzi("KafkaNodePool", "kafkanodepools"));
        api.patch(&self.pool, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
            .await
            .map_err(|e| api_error(&what, e))?;
        let note = format!("node pool {} replicas {} -> {replicas}", self.pool, current.replicas);
        self.record_on_pool("ScaleNodePool", "Scale", note).await;
        Ok(())
    }

    async fn delete_pod(&self, broker: i32) -> Result<(), Error> {
        let name = self.pod_name(broker);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let pod = pods.get(&name).await.map_err(|e| api_error(&format!("pod {name}"), e))?;
        pods.delete(&name, &DeleteParams::default()).await.map_err(|e| api_error(&format!("pod {name}"), e))?;
        self.record(pod.object_ref(&()), "DeletePod", "Delete", format!("pod {name} deleted so Strimzi recreates it"))
            .await;
        Ok(())
    }

    async fn delete_pvc(&self, broker: i32) -> Result<(), Error> {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = pvcs.list(&self.selector()).await.map_err(|e| api_error("broker volumes", e))?;
        let mine: Vec<String> = list
            .items
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .filter(|n| self.broker_of(n) == Some(broker))
            .collect();
        if mine.is_empty() {
            return Err(Error::NotFound { what: format!("volumes of broker {broker}") });
        }
        for name in &mine {
            pvcs.delete(name, &DeleteParams::default()).await.map_err(|e| api_error(&format!("PVC {name}"), e))?;
        }
        self.record_on_pool("ReplaceVolume", "Delete", format!("volumes {mine:?} of broker {broker} deleted")).await;
        self.delete_pod(broker).await
    }

    async fn resize_storage(&self, bytes: u64) -> Result<(), Error> {
        let pool = self.node_pool().await?;
        let current = storage_size(&pool.data)
            .ok_or_else(|| Error::Rejected { message: "node pool has no storage size".into() })?;
        if bytes <= current {
            return Err(Error::Rejected {
                message: format!("storage never shrinks: {bytes} bytes is not more than {current}"),
            });
        }
        let size = Bytes(bytes).to_string();
        let storage = &pool.data["spec"]["storage"];
        let patch = match storage.get("volumes").and_then(Value::as_array) {
            Some(volumes) => {
                let grown: Vec<Value> = volumes
                    .iter()
                    .cloned()
                    .map(|mut v| {
                        v["size"] = json!(size);
                        v
                    })
                    .collect();
                json!({"spec": {"storage": {"volumes": grown}}})
            }
            None => json!({"spec": {"storage": {"size": size}}}),
        };
        let what = format!("KafkaNodePool {}/{}", self.namespace, self.pool);
        let api = self.dynamic(&strimzi("KafkaNodePool", "kafkanodepools"));
        api.patch(&self.pool, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
            .await
            .map_err(|e| api_error(&what, e))?;
        self.record_on_pool("ResizeStorage", "Resize", format!("storage {} -> {size}", Bytes(current))).await;
        Ok(())
    }

    async fn force_renew(&self, secret: &str) -> Result<(), Error> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let patch = json!({"metadata": {"annotations": {"strimzi.io/force-renew": "true"}}});
        let s = secrets
            .patch(secret, &PatchParams::apply(MANAGER), &Patch::Merge(&patch))
            .await
            .map_err(|e| api_error(&format!("secret {secret}"), e))?;
        self.record(
            s.object_ref(&()),
            "RenewCertificate",
            "Annotate",
            format!("{secret} annotated strimzi.io/force-renew"),
        )
        .await;
        Ok(())
    }
    async fn record_outcome(&self, reason: &str, normal: bool, note: String) {
        let type_ = if normal { EventType::Normal } else { EventType::Warning };
        self.record_on_pool_typed(type_, reason, "Operate", note).await;
    }
}

/// Labels of every object of a node pool, for fixtures and checks.
pub fn pool_labels(kafka: &str, pool: &str) -> BTreeMap<String, String> {
    [("strimzi.io/cluster".to_owned(), kafka.to_owned()), ("strimzi.io/pool-name".to_owned(), pool.to_owned())]
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_size_reads_jbod_and_persistent_claim() {
        let jbod = json!({"spec": {"storage": {"type": "jbod", "volumes": [{"id": 0, "size": "100Gi"}, {"id": 1, "size": "200Gi"}]}}});
        assert_eq!(storage_size(&jbod), Some(200 << 30));
        let pc = json!({"spec": {"storage": {"type": "persistent-claim", "size": "1Ti"}}});
        assert_eq!(storage_size(&pc), Some(1 << 40));
        assert_eq!(storage_size(&json!({"spec": {}})), None);
    }

    #[test]
    fn not_after_refuses_what_is_not_a_certificate() {
        assert!(not_after(b"hello").unwrap_err().contains("PEM"));
        let bogus = b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        assert!(not_after(bogus).unwrap_err().contains("X.509"));
    }
}
