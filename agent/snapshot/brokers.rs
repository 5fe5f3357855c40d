//! The per-broker health state machine: Healthy -> Suspect -> Failed -> Recovering -> Healthy.
//!
//! Pure: the tracker is carried from tick to tick by the cluster's task and advanced with each
//! snapshot's observations and `now`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Health state of one broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerState {
    /// Registered, pod ready, all its replicas in sync.
    Healthy,
    /// Absent from metadata or pod not ready, for less than the heartbeat timeout.
    Suspect,
    /// Suspect for longer than the heartbeat timeout.
    Failed,
    /// Back after a failure (or new), some of its replicas not yet in sync.
    Recovering,
}

/// What one tick saw of a broker.
#[derive(Clone, Copy, Debug)]
pub struct BrokerSignals {
    pub registered: bool,
    pub pod_ready: bool,
    /// Every replica it hosts is in its partition's ISR.
    pub replicas_in_sync: bool,
}

/// State and the instant it was entered, per broker.
#[derive(Clone, Debug, Default)]
pub struct BrokerTracker {
    states: BTreeMap<i32, (BrokerState, Timestamp)>,
}

impl BrokerTracker {
    /// Advance broker `id` with this tick's signals; returns its state and when it began.
    pub fn observe(
        &mut self,
        id: i32,
        s: BrokerSignals,
        heartbeat_timeout: Duration,
        now: Timestamp,
    ) -> (BrokerState, Timestamp) {
        let up = s.registered && s.pod_ready;
        let previous = self.states.get(&id).copied();
        let next = match (previous, up) {
            // First sight of a broker: judge it by what is seen now.
            (None, true) if s.replicas_in_sync => BrokerState::Healthy,
            (None, true) => BrokerState::Recovering,
            (None, false) => BrokerState::Suspect,
            (Some((BrokerState::Healthy, _)), false) => BrokerState::Suspect,
            (Some((BrokerState::Suspect, since)), false) if now - since >= heartbeat_timeout => BrokerState::Failed,
            (Some((state, _)), false) => match state {
                BrokerState::Recovering => BrokerState::Suspect,
                other => other,
            },
            (Some((_, _)), true) if s.replicas_in_sync => BrokerState::Healthy,
            (Some((BrokerState::Healthy, _)), true) => BrokerState::Healthy,
            (Some((_, _)), true) => BrokerState::Recovering,
        };
        let entry = match previous {
            Some((state, since)) if state == next => (state, since),
            _ => (next, now),
        };
        self.states.insert(id, entry);
        entry
    }

    /// The state last recorded for broker `id`, without advancing it.
    pub fn current(&self, id: i32) -> Option<(BrokerState, Timestamp)> {
        self.states.get(&id).copied()
    }

    /// Forget brokers no longer present anywhere (scaled away).
    pub fn retain(&mut self, keep: impl Fn(i32) -> bool) {
        self.states.retain(|id, _| keep(*id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn at(s: u64) -> Timestamp {
        Timestamp::from_millis(s * 1000)
    }

    fn sig(up: bool, in_sync: bool) -> BrokerSignals {
        BrokerSignals { registered: up, pod_ready: up, replicas_in_sync: in_sync }
    }

    #[test]
    fn walks_the_whole_cycle() {
        let mut t = BrokerTracker::default();
        assert_eq!(t.observe(2, sig(true, true), TIMEOUT, at(0)).0, BrokerState::Healthy);
        assert_eq!(t.observe(2, sig(false, false), TIMEOUT, at(10)).0, BrokerState::Suspect);
        assert_eq!(t.observe(2, sig(false, false), TIMEOUT, at(30)).0, BrokerState::Suspect);
        assert_eq!(t.observe(2, sig(false, false), TIMEOUT, at(40)), (BrokerState::Failed, at(40)));
        assert_eq!(t.observe(2, sig(false, false), TIMEOUT, at(70)), (BrokerState::Failed, at(40)));
        assert_eq!(t.observe(2, sig(true, false), TIMEOUT, at(100)).0, BrokerState::Recovering);
        assert_eq!(t.observe(2, sig(true, true), TIMEOUT, at(130)), (BrokerState::Healthy, at(130)));
    }

    #[test]
    fn a_blip_shorter_than_the_timeout_never_fails() {
        let mut t = BrokerTracker::default();
        t.observe(1, sig(true, true), TIMEOUT, at(0));
        t.observe(1, sig(false, true), TIMEOUT, at(10));
        assert_eq!(t.observe(1, sig(true, true), TIMEOUT, at(20)).0, BrokerState::Healthy);
    }
}
