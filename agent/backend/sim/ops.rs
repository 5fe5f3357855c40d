//! How the simulated cluster answers faults and actions: what Strimzi, Kubernetes and Kafka
//! would do, with their delays.

use super::model::{Life, Move, Pending, SimCluster};
use super::spec::Fault;
use crate::backend::{Error, PartitionTarget};
use std::time::Duration;

impl SimCluster {
    /// Make something go wrong.
    pub fn inject(&mut self, fault: &Fault) -> Result<(), Error> {
        let now = self.now;
        let missing = |b: i32| Error::NotFound { what: format!("broker {b}") };
        match fault {
            Fault::BrokerDown { broker, duration } => {
                let b = self.brokers.get_mut(broker).ok_or_else(|| missing(*broker))?;
                b.life = Life::Crashed { recover_at: duration.map(|d| now + d) };
            }
            Fault::PodEvicted { broker } => {
                let reschedule_at = now + self.spec.timing.eviction_reschedule;
                let b = self.brokers.get_mut(broker).ok_or_else(|| missing(*broker))?;
                b.life = Life::Evicted { reschedule_at };
            }
            Fault::PvcFailed { broker } => {
                let b = self.brokers.get_mut(broker).ok_or_else(|| missing(*broker))?;
                b.life = Life::NoVolume;
                if let Some(p) = self.pvcs.get_mut(broker) {
                    p.phase = "Lost";
                }
            }
            Fault::SlowReplica { broker, duration } => {
                let b = self.brokers.get_mut(broker).ok_or_else(|| missing(*broker))?;
                b.slow = Some(duration.map(|d| now + d));
            }
            Fault::CertificateExpiring { secret, days } => {
                let c = self
                    .certs
                    .iter_mut()
                    .find(|c| &c.secret == secret)
                    .ok_or_else(|| Error::NotFound { what: format!("secret {secret}") })?;
                c.not_after = now + Duration::from_secs_f64(days.max(0.0) * 86_400.0);
            }
            Fault::MetricsOutage { duration } => self.metrics_down_until = Some(now + *duration),
        }
        self.update_isr();
        Ok(())
    }

    /// Patch the node pool's replicas. Like Strimzi, new brokers get the next IDs and removal
    /// takes the IDs the `remove-node-ids` annotation names, then the highest, refused while
    /// they still host replicas.
    pub(super) fn scale(&mut self, replicas: u32) -> Result<(), Error> {
        let current = u32::try_from(self.brokers.len()).unwrap_or(u32::MAX);
        if replicas > current {
            let first = self.brokers.keys().max().map_or(0, |m| m + 1);
            let ready_at = self.now + self.spec.timing.broker_join;
            let added = i32::try_from(replicas - current).unwrap_or(i32::MAX);
            for id in first..first.saturating_add(added) {
                self.add_broker(id, Life::Starting { ready_at });
            }
        } else if replicas < current {
            let annotated = self.remove_node_ids.iter().copied().filter(|b| self.brokers.contains_key(b));
            let highest = self.brokers.keys().rev().copied().filter(|b| !self.remove_node_ids.contains(b));
            let remove: Vec<i32> = annotated.chain(highest).take((current - replicas) as usize).collect();
            let busy: Vec<i32> = remove
                .iter()
                .copied()
                .filter(|b| {
                    self.topics.iter().flat_map(|t| &t.partitions).any(|p| p.replicas.contains(b))
                        || self.moves.values().any(|m| m.target.contains(b))
                })
                .collect();
            if !busy.is_empty() {
                return Err(Error::Rejected {
                    message: format!("cannot remove brokers {busy:?}: they still host partition replicas"),
                });
            }
            self.remove_node_ids.retain(|b| !remove.contains(b));
            for b in remove {
                self.brokers.remove(&b);
                self.pvcs.remove(&b);
                self.samples.remove(&b);
            }
        }
        self.pool_replicas = replicas;
        Ok(())
    }

    pub(super) fn delete_pod(&mut self, broker: i32) -> Result<(), Error> {
        let ready_at = self.now + self.spec.timing.pod_restart;
        let b =
            self.brokers.get_mut(&broker).ok_or_else(|| Error::NotFound { what: format!("pod of broker {broker}") })?;
        if b.life != Life::NoVolume {
            b.life = Life::Starting { ready_at };
            b.slow = None;
        }
        Ok(())
    }

    pub(super) fn delete_pvc(&mut self, broker: i32) -> Result<(), Error> {
        let at = self.now + self.spec.timing.volume_provision;
        let b =
            self.brokers.get_mut(&broker).ok_or_else(|| Error::NotFound { what: format!("PVC of broker {broker}") })?;
        b.life = Life::NoVolume;
        b.slow = None;
        if let Some(p) = self.pvcs.get_mut(&broker) {
            p.phase = "Pending";
        }
        self.pending.push((at, Pending::PvcBound { broker }));
        Ok(())
    }

    pub(super) fn resize(&mut self, bytes: u64) -> Result<(), Error> {
        if bytes < self.storage {
            return Err(Error::Rejected {
                message: format!("storage can only grow ({} -> {bytes} bytes)", self.storage),
            });
        }
        self.storage = bytes;
        self.pending.push((self.now + self.spec.timing.volume_provision, Pending::VolumesResized { bytes }));
        Ok(())
    }

    pub(super) fn renew(&mut self, secret: &str) -> Result<(), Error> {
        if !self.certs.iter().any(|c| c.secret == secret) {
            return Err(Error::NotFound { what: format!("secret {secret}") });
        }
        self.pending.push((
            self.now + self.spec.timing.certificate_renewal,
            Pending::CertRenewed { secret: secret.to_owned() },
        ));
        Ok(())
    }

    pub(super) fn reassign(&mut self, targets: &[PartitionTarget]) -> Result<(), Error> {
        for t in targets {
            let mut distinct = t.replicas.clone();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() != t.replicas.len() || t.replicas.is_empty() {
                return Err(Error::Rejected {
                    message: format!("invalid replica assignment for {}-{}", t.topic, t.partition),
                });
            }
            if let Some(b) = t.replicas.iter().find(|b| !self.brokers.contains_key(b)) {
                return Err(Error::Rejected {
                    message: format!("broker {b} does not exist ({}-{})", t.topic, t.partition),
                });
            }
            if self.partition_mut(&t.topic, t.partition).is_none() {
                return Err(Error::NotFound { what: format!("partition {}-{}", t.topic, t.partition) });
            }
        }
        for t in targets {
            let Some(p) = self.partition_mut(&t.topic, t.partition) else {
                continue;
            };
            let adding = t.replicas.iter().filter(|b| !p.replicas.contains(b)).count();
            #[allow(clippy::cast_precision_loss)]
            let bytes_left = p.size * adding as f64;
            if adding == 0 {
                self.complete_move(&t.topic, t.partition, t.replicas.clone());
            } else {
                self.moves.insert((t.topic.clone(), t.partition), Move { target: t.replicas.clone(), bytes_left });
            }
        }
        Ok(())
    }

    pub(super) fn elect_preferred(&mut self, partitions: &[(String, i32)]) {
        for t in &mut self.topics {
            for p in &mut t.partitions {
                let wanted = partitions.is_empty() || partitions.iter().any(|(n, i)| *n == t.name && *i == p.id);
                if let Some(first) = p.replicas.first().copied() {
                    if wanted && p.isr.contains(&first) {
                        p.leader = Some(first);
                    }
                }
            }
        }
    }
}
