//! What the health API shows besides the latest snapshot: each cluster's recent events
//! (decisions, actions, outcomes, broker state changes, errors) and an hour of trend samples
//! taken from the snapshots. In memory and bounded; an [`Events`](crate::events::Events) sink.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::events::{Body, Event, Sink};
use crate::snapshot::Snapshot;
use crate::time::Timestamp;

/// Events kept per cluster.
const EVENTS: usize = 200;
/// How far back trends reach.
const TREND_SPAN: Duration = Duration::from_secs(3600);

/// One trend sample: cluster-wide values at one tick.
#[derive(Clone, Debug)]
struct Sample {
    at: Timestamp,
    values: BTreeMap<&'static str, f64>,
}

/// How one metric moved over the last hour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    pub samples: usize,
    pub current: f64,
    pub min: f64,
    pub max: f64,
    /// Least-squares slope, in units per hour; none with fewer than two samples.
    pub per_hour: Option<f64>,
}

#[derive(Debug, Default)]
struct ClusterRecent {
    events: VecDeque<Event>,
    samples: VecDeque<Sample>,
}

/// Recent events and trend samples of every cluster.
#[derive(Debug, Default)]
pub struct Recent {
    clusters: Mutex<BTreeMap<String, ClusterRecent>>,
}

fn notable(b: &Body) -> bool {
    matches!(
        b,
        Body::Decision { .. }
            | Body::Deferred { .. }
            | Body::Action { .. }
            | Body::Step { .. }
            | Body::Outcome { .. }
            | Body::Request { .. }
            | Body::BrokerState { .. }
            | Body::PolicyError { .. }
            | Body::SourceError { .. }
            | Body::JournalError { .. }
    )
}

impl Sink for Recent {
    fn record(&self, event: &Event) {
        if !notable(&event.body) {
            return;
        }
        let mut all = self.clusters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let c = all.entry(event.cluster.clone()).or_default();
        if c.events.len() == EVENTS {
            c.events.pop_front();
        }
        c.events.push_back(event.clone());
    }
}

impl Recent {
    /// Take the trend sample of a new snapshot (only complete data: a gap is not a zero).
    pub fn sample(&self, s: &Snapshot) {
        let mut values = BTreeMap::new();
        let u = &s.utilisation;
        for (name, w) in [("cpu", &u.cpu), ("memory", &u.memory), ("disk", &u.disk), ("network", &u.network)] {
            if let Some(v) = w.current {
                values.insert(name, v);
            }
        }
        if s.data.kafka.observed && !s.data.kafka.stale {
            values.insert("under_replicated_partitions", f64::from(s.partitions.under_replicated));
            values.insert("under_min_isr_partitions", f64::from(s.partitions.under_min_isr));
            values.insert("offline_partitions", f64::from(s.partitions.offline));
            values.insert("consumer_lag", s.consumer_groups.iter().map(|g| g.lag as f64).sum());
            values.insert("brokers_registered", s.brokers.iter().filter(|b| b.registered).count() as f64);
        }
        let mut all = self.clusters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let c = all.entry(s.cluster.clone()).or_default();
        c.samples.push_back(Sample { at: s.at, values });
        while c.samples.front().is_some_and(|x| s.at - x.at > TREND_SPAN) {
            c.samples.pop_front();
        }
    }

    /// The newest `limit` events of `cluster`, newest first.
    pub fn events(&self, cluster: &str, limit: usize) -> Vec<Event> {
        let all = self.clusters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        all.get(cluster).map(|c| c.events.iter().rev().take(limit).cloned().collect()).unwrap_or_default()
    }

    /// Decisions and what became of them (deferred with why, actions, outcomes), newest first,
    /// of one cluster or all.
    pub fn decisions(&self, cluster: Option<&str>, limit: usize) -> Vec<Event> {
        let all = self.clusters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<Event> = all
            .iter()
            .filter(|(name, _)| cluster.is_none_or(|c| c == name.as_str()))
            .flat_map(|(_, c)| c.events.iter())
            .filter(|e| {
                matches!(
                    e.body,
                    Body::Decision { .. } | Body::Deferred { .. } | Body::Action { .. } | Body::Outcome { .. }
                )
            })
            .cloned()
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.at));
        out.truncate(limit);
        out
    }

    /// Each metric's trend over the last hour.
    pub fn trends(&self, cluster: &str) -> BTreeMap<String, Trend> {
        let all = self.clusters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(c) = all.get(cluster) else { return BTreeMap::new() };
        let mut series: BTreeMap<&'static str, Vec<(f64, f64)>> = BTreeMap::new();
        let origin = c.samples.front().map_or(0, |s| s.at.as_millis());
        for s in &c.samples {
            let hours = (s.at.as_millis().saturating_sub(origin)) as f64 / 3_600_000.0;
            for (name, v) in &s.values {
                series.entry(name).or_default().push((hours, *v));
            }
        }
        series.into_iter().filter_map(|(name, points)| trend(&points).map(|t| (name.to_owned(), t))).collect()
    }
}

fn trend(points: &[(f64, f64)]) -> Option<Trend> {
    let (_, current) = *points.last()?;
    let min = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let max = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let per_hour = (points.len() >= 2 && sxx > 0.0).then(|| sxy / sxx);
    Some(Trend { samples: points.len(), current, min, max, per_hour })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_per_hour_from_least_squares() {
        let points: Vec<(f64, f64)> = (0..=6).map(|i| (f64::from(i) / 6.0, 0.2 + 0.3 * f64::from(i) / 6.0)).collect();
        let t = trend(&points).unwrap();
        assert!((t.per_hour.unwrap() - 0.3).abs() < 1e-9, "{t:?}");
        assert_eq!((t.samples, t.min, t.max), (7, 0.2, 0.5));
        assert_eq!(trend(&[(0.0, 1.0)]).unwrap().per_hour, None, "one sample has no trend");
        assert!(trend(&[]).is_none());
    }
}
