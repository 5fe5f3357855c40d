//! Test fixtures: simulated clusters and the snapshots the pipeline would build of them.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::backend::sim::{ClusterSpec, Load, SimBackend, SimCluster};
use crate::collect;
use crate::snapshot::{self, BrokerTracker, Snapshot, SnapshotOptions};
use crate::time::Timestamp;

pub const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

/// A simulated cluster of `brokers` brokers (3 racks, 4 partitions each, RF 3) at `load`, run
/// for a minute.
pub fn sim(brokers: u32, load: Load) -> SimBackend {
    let mut c = SimCluster::new(ClusterSpec::uniform("test", brokers, 4), T0).unwrap();
    c.set_load(load);
    c.advance_to(T0 + Duration::from_secs(60));
    SimBackend::new(c)
}

/// Snapshot options with no conditions and a 90 s freshness limit.
pub fn options() -> SnapshotOptions {
    SnapshotOptions {
        conditions: Vec::new(),
        max_data_age: Duration::from_secs(90),
        heartbeat_timeout: Duration::from_secs(30),
        broker_quota: None,
    }
}

/// What the pipeline would see of `sim` now.
pub async fn snapshot(sim: &SimBackend, tracker: &mut BrokerTracker) -> Snapshot {
    let now = sim.lock().unwrap().now();
    let obs = collect::collect("test", &sim.backends(), Duration::from_secs(900), now).await;
    snapshot::build(&obs, &options(), tracker, now)
}

/// Advance the simulated cluster by `d`.
pub fn advance(sim: &SimBackend, d: Duration) -> Timestamp {
    let mut c = sim.lock().unwrap();
    let t = c.now() + d;
    c.advance_to(t);
    t
}
