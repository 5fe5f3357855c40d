//! Leader election on a Kubernetes `Lease`, so that only one agent per region acts. This
//! module only performs I/O.
//!
//! The executor asks a [`LeaderGate`] before every effect; without leader election configured
//! (one replica) the gate is always open.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio_util::sync::CancellationToken;

use crate::time::Timestamp;

/// Whether this agent may act now.
pub trait LeaderGate: Send + Sync + std::fmt::Debug {
    fn is_leader(&self) -> bool;
}

/// One agent, no election: always the leader.
#[derive(Debug, Default)]
pub struct AlwaysLeader;

impl LeaderGate for AlwaysLeader {
    fn is_leader(&self) -> bool {
        true
    }
}

/// A failed Lease request.
#[derive(Debug, thiserror::Error)]
#[error("lease {namespace}/{name}: {message}")]
pub struct Error {
    pub namespace: String,
    pub name: String,
    pub message: String,
}

/// Holds (or waits for) a `coordination.k8s.io/v1` Lease.
#[derive(Clone)]
pub struct LeaseElector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    duration: Duration,
    leader: Arc<AtomicBool>,
}

impl std::fmt::Debug for LeaseElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseElector")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl LeaderGate for LeaseElector {
    fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }
}

fn micro(t: Timestamp) -> MicroTime {
    let secs = i64::try_from(t.as_millis() / 1000).unwrap_or(i64::MAX);
    let nanos = i32::try_from((t.as_millis() % 1000) * 1_000_000).unwrap_or(0);
    MicroTime(k8s_openapi::jiff::Timestamp::new(secs, nanos).unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH))
}

fn millis(t: &MicroTime) -> u64 {
    u64::try_from(t.0.as_millisecond()).unwrap_or(0)
}

impl LeaseElector {
    /// An elector for Lease `name` in `namespace`, identifying itself as `identity`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration,
            leader: Arc::new(AtomicBool::new(false)),
        }
    }

    fn err(&self, message: impl std::fmt::Display) -> Error {
        Error { namespace: self.namespace.clone(), name: self.name.clone(), message: message.to_string() }
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX)),
            acquire_time: Some(acquired.unwrap_or_else(|| micro(now))),
            renew_time: Some(micro(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Acquire the Lease if it is free or expired, renew it if it is ours. Returns whether this
    /// agent leads. Concurrent agents are told apart by the Lease's resourceVersion: the loser
    /// of a race gets a conflict and stays a follower.
    pub async fn try_acquire_or_renew(&self, now: Timestamp) -> Result<bool, Error> {
        let current = self.api.get_opt(&self.name).await.map_err(|e| self.err(e))?;
        let leads = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                    spec: Some(self.spec(now, None, 0)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => true,
                    Err(kube::Error::Api(s)) if s.code == 409 => false,
                    Err(e) => return Err(self.err(e)),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
                let duration_ms = u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0) * 1000;
                let expired = spec.renew_time.as_ref().is_none_or(|t| millis(t) + duration_ms < now.as_millis());
                if !ours && !expired {
                    false
                } else {
                    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
                    let acquired = if ours { spec.acquire_time.clone() } else { None };
                    lease.spec = Some(self.spec(now, acquired, transitions));
                    match self.api.replace(&self.name, &PostParams::default(), &lease).await {
                        Ok(_) => true,
                        Err(kube::Error::Api(s)) if s.code == 409 => false,
                        Err(e) => return Err(self.err(e)),
                    }
                }
            }
        };
        let was = self.leader.swap(leads, Ordering::SeqCst);
        if was != leads {
            tracing::warn!(lease = %self.name, identity = %self.identity, leads, "leadership changed");
        }
        Ok(leads)
    }

    /// Keep acquiring or renewing every third of the lease duration until cancelled. An error
    /// drops leadership: an agent that cannot renew must assume another one took over.
    pub async fn run(self, cancel: CancellationToken) {
        let mut every = tokio::time::interval(self.duration / 3);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = every.tick() => {
                    if let Err(e) = self.try_acquire_or_renew(Timestamp::now()).await {
                        self.leader.store(false, Ordering::SeqCst);
                        tracing::error!(error = %e, "cannot hold the leader lease; not acting");
                    }
                }
            }
        }
    }
}
