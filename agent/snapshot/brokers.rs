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
    /// When each broker last went down (entered Suspect), the last hour of them.
    outages: BTreeMap<i32, Vec<Timestamp>>,
    /// Since when each PVC has been unavailable (not Bound).
    pvc_down_since: BTreeMap<String, Timestamp>,
    /// Since when each broker, while up, has had replicas out of ISR.
    lagging_since: BTreeMap<i32, Timestamp>,
    /// Brokers seen up at least once.
    seen_up: std::collections::BTreeSet<i32>,
}

/// Outages within this long count towards flapping.
const OUTAGE_MEMORY: Duration = Duration::from_secs(3600);

/// A broker never seen up (a new broker starting, or one already down when the agent started)
/// has this long, instead of the heartbeat timeout, before it counts as Failed: a scale-up's
/// brokers starting must not look like a mass failure.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(300);

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
        if up {
            self.seen_up.insert(id);
        }
        let heartbeat_timeout =
            if self.seen_up.contains(&id) { heartbeat_timeout } else { JOIN_TIMEOUT.max(heartbeat_timeout) };
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
        if next == BrokerState::Suspect && previous.is_none_or(|(s, _)| s != BrokerState::Suspect) {
            self.outages.entry(id).or_default().push(now);
        }
        if let Some(o) = self.outages.get_mut(&id) {
            o.retain(|t| now - *t < OUTAGE_MEMORY);
        }
        if up && !s.replicas_in_sync {
            self.lagging_since.entry(id).or_insert(now);
        } else {
            self.lagging_since.remove(&id);
        }
        self.states.insert(id, entry);
        entry
    }

    /// Seconds broker `id` has been up with replicas out of ISR (0 when in sync or down).
    pub fn lagging_seconds(&self, id: i32, now: Timestamp) -> f64 {
        self.lagging_since.get(&id).map_or(0.0, |t| (now - *t).as_secs_f64())
    }

    /// Times broker `id` went down within the last hour.
    pub fn outages(&self, id: i32) -> u32 {
        self.outages.get(&id).map_or(0, |o| u32::try_from(o.len()).unwrap_or(u32::MAX))
    }

    /// Seconds PVC `name` has been unavailable (0 while it is available); advanced with the
    /// observed availability.
    pub fn pvc_unavailable(&mut self, name: &str, available: bool, now: Timestamp) -> f64 {
        if available {
            self.pvc_down_since.remove(name);
            return 0.0;
        }
        let since = *self.pvc_down_since.entry(name.to_owned()).or_insert(now);
        (now - since).as_secs_f64()
    }

    /// The state last recorded for broker `id`, without advancing it.
    pub fn current(&self, id: i32) -> Option<(BrokerState, Timestamp)> {
        self.states.get(&id).copied()
    }

    /// Forget brokers no longer present anywhere (scaled away).
    pub fn retain(&mut self, keep: impl Fn(i32) -> bool) {
        self.states.retain(|id, _| keep(*id));
        self.outages.retain(|id, _| keep(*id));
        self.lagging_since.retain(|id, _| keep(*id));
        self.seen_up.retain(|id| keep(*id));
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
    fn a_broker_never_seen_up_has_the_join_timeout() {
        let mut t = BrokerTracker::default();
        assert_eq!(t.observe(7, sig(false, true), TIMEOUT, at(0)).0, BrokerState::Suspect);
        assert_eq!(t.observe(7, sig(false, true), TIMEOUT, at(60)).0, BrokerState::Suspect, "still joining");
        assert_eq!(t.observe(7, sig(false, true), TIMEOUT, at(300)).0, BrokerState::Failed, "never joined");
    }

    #[test]
    fn outages_are_counted_for_an_hour() {
        let mut t = BrokerTracker::default();
        t.observe(1, sig(true, true), TIMEOUT, at(0));
        for k in 0..3 {
            t.observe(1, sig(false, true), TIMEOUT, at(100 + k * 600));
            t.observe(1, sig(false, true), TIMEOUT, at(110 + k * 600));
            t.observe(1, sig(true, true), TIMEOUT, at(120 + k * 600));
        }
        assert_eq!(t.outages(1), 3);
        t.observe(1, sig(true, true), TIMEOUT, at(3800));
        assert_eq!(t.outages(1), 2, "the first outage is more than an hour old");
    }

    #[test]
    fn pvc_unavailability_is_timed() {
        let mut t = BrokerTracker::default();
        assert_eq!(t.pvc_unavailable("data-0", false, at(10)), 0.0);
        assert_eq!(t.pvc_unavailable("data-0", false, at(70)), 60.0);
        assert_eq!(t.pvc_unavailable("data-0", true, at(80)), 0.0);
        assert_eq!(t.pvc_unavailable("data-0", false, at(90)), 0.0);
    }

    #[test]
    fn a_blip_shorter_than_the_timeout_never_fails() {
        let mut t = BrokerTracker::default();
        t.observe(1, sig(true, true), TIMEOUT, at(0));
        t.observe(1, sig(false, true), TIMEOUT, at(10));
        assert_eq!(t.observe(1, sig(true, true), TIMEOUT, at(20)).0, BrokerState::Healthy);
    }
}
