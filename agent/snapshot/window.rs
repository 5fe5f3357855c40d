//! Windowed aggregates of a metric series and how long a threshold condition has held.
//! Pure functions of the samples and `now`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::collect::Sample;
use crate::time::Timestamp;

/// A metric input a condition can test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Cpu,
    Memory,
    Disk,
    Network,
}

/// Which side of the threshold the condition wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    Above,
    Below,
}

/// A named threshold condition whose holding time the snapshot computes, e.g.
/// `cpu_high: cpu above 0.75`. Declared in the policies' data, so operators tune it there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConditionSpec {
    pub name: String,
    pub metric: Metric,
    pub comparison: Comparison,
    pub threshold: f64,
}

impl ConditionSpec {
    fn holds(&self, value: f64) -> bool {
        match self.comparison {
            Comparison::Above => value > self.threshold,
            Comparison::Below => value < self.threshold,
        }
    }
}

/// Aggregates of one metric over the last 5 and 10 minutes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Windowed {
    /// Newest sample, if any.
    pub current: Option<f64>,
    pub avg_5m: Option<f64>,
    pub min_5m: Option<f64>,
    pub max_5m: Option<f64>,
    pub avg_10m: Option<f64>,
    pub min_10m: Option<f64>,
    pub max_10m: Option<f64>,
    /// Span the samples actually cover, in seconds (less than 10 minutes right after start).
    pub window_seconds: f64,
    /// Age of the newest sample, in seconds.
    pub age_seconds: Option<f64>,
    pub samples: usize,
    /// Trend over the whole window (least squares), in units per hour; none with fewer than
    /// two samples. Disk growth uses it to expand a volume before it fills.
    pub slope_per_hour: Option<f64>,
}

/// Least-squares slope of the samples, per hour.
fn slope_per_hour(samples: &[Sample]) -> Option<f64> {
    let first = samples.first()?.at;
    if samples.len() < 2 {
        return None;
    }
    let n = samples.len() as f64;
    let xs = samples.iter().map(|s| (s.at - first).as_secs_f64() / 3600.0);
    let (mx, my) = (xs.clone().sum::<f64>() / n, samples.iter().map(|s| s.value).sum::<f64>() / n);
    let (mut num, mut den) = (0.0, 0.0);
    for (x, s) in xs.zip(samples) {
        num += (x - mx) * (s.value - my);
        den += (x - mx) * (x - mx);
    }
    (den > 0.0).then(|| num / den)
}

/// Whether a condition holds now and for how long it has held without a break.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Held {
    pub holds: bool,
    pub held_seconds: f64,
}

struct Agg {
    sum: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn aggregate(samples: &[Sample], from: Timestamp) -> Option<(f64, f64, f64)> {
    let mut agg = Agg { sum: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY, n: 0 };
    for s in samples.iter().filter(|s| s.at >= from && s.value.is_finite()) {
        agg.sum += s.value;
        agg.min = agg.min.min(s.value);
        agg.max = agg.max.max(s.value);
        agg.n += 1;
    }
    // usize -> f64 is exact for any realistic sample count.
    #[allow(clippy::cast_precision_loss)]
    (agg.n > 0).then(|| (agg.sum / agg.n as f64, agg.min, agg.max))
}

/// Aggregate a series (oldest first) as seen at `now`.
pub fn windowed(samples: &[Sample], now: Timestamp) -> Windowed {
    let five = aggregate(samples, now.saturating_sub(Duration::from_secs(300)));
    let ten = aggregate(samples, now.saturating_sub(Duration::from_secs(600)));
    let newest = samples.last();
    Windowed {
        current: newest.map(|s| s.value),
        avg_5m: five.map(|a| a.0),
        min_5m: five.map(|a| a.1),
        max_5m: five.map(|a| a.2),
        avg_10m: ten.map(|a| a.0),
        min_10m: ten.map(|a| a.1),
        max_10m: ten.map(|a| a.2),
        window_seconds: match (samples.first(), newest) {
            (Some(a), Some(b)) => (b.at - a.at).as_secs_f64(),
            _ => 0.0,
        },
        age_seconds: newest.map(|s| (now - s.at).as_secs_f64()),
        samples: samples.len(),
        slope_per_hour: slope_per_hour(samples),
    }
}

/// How long `spec` has held on a series (oldest first). The run is broken by a sample that
/// fails the condition or by a gap longer than `max_gap`; a stale newest sample holds nothing.
pub fn held(samples: &[Sample], spec: &ConditionSpec, now: Timestamp, max_gap: Duration) -> Held {
    let Some(newest) = samples.last() else {
        return Held::default();
    };
    if now - newest.at > max_gap || !spec.holds(newest.value) {
        return Held::default();
    }
    let mut start = newest.at;
    for pair in samples.windows(2).rev() {
        let (older, newer) = (pair[0], pair[1]);
        if newer.at - older.at > max_gap || !spec.holds(older.value) {
            break;
        }
        start = older.at;
    }
    Held { holds: true, held_seconds: (newest.at - start).as_secs_f64() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[(u64, f64)]) -> Vec<Sample> {
        values.iter().map(|&(s, value)| Sample { at: Timestamp::from_millis(s * 1000), value }).collect()
    }

    fn cpu_high() -> ConditionSpec {
        ConditionSpec { name: "cpu_high".into(), metric: Metric::Cpu, comparison: Comparison::Above, threshold: 0.75 }
    }

    const GAP: Duration = Duration::from_secs(90);

    #[test]
    fn the_slope_is_per_hour_and_needs_two_samples() {
        // +0.01 every 36 s: +1.0 per hour.
        let rising = series(&[(0, 0.50), (36, 0.51), (72, 0.52), (108, 0.53)]);
        let w = windowed(&rising, Timestamp::from_millis(108_000));
        assert!((w.slope_per_hour.unwrap() - 1.0).abs() < 1e-9, "{w:?}");
        assert_eq!(windowed(&series(&[(0, 0.5)]), Timestamp::from_millis(0)).slope_per_hour, None);
    }

    #[test]
    fn held_counts_the_unbroken_run_up_to_the_newest_sample() {
        let s = series(&[(0, 0.5), (30, 0.8), (60, 0.9), (90, 0.8)]);
        let h = held(&s, &cpu_high(), Timestamp::from_millis(90_000), GAP);
        assert!(h.holds);
        assert!((h.held_seconds - 60.0).abs() < 1e-9);
    }

    #[rstest::rstest]
    #[case::newest_fails(&[(0, 0.8), (30, 0.7)], 30)]
    #[case::stale(&[(0, 0.8), (30, 0.8)], 200)]
    #[case::empty(&[], 0)]
    fn held_is_zero(#[case] points: &[(u64, f64)], #[case] now: u64) {
        let h = held(&series(points), &cpu_high(), Timestamp::from_millis(now * 1000), GAP);
        assert_eq!(h, Held::default());
    }

    #[test]
    fn a_gap_breaks_the_run() {
        let s = series(&[(0, 0.8), (30, 0.8), (300, 0.8), (330, 0.8)]);
        let h = held(&s, &cpu_high(), Timestamp::from_millis(330_000), GAP);
        assert!((h.held_seconds - 30.0).abs() < 1e-9);
    }

    #[test]
    fn windows_aggregate_only_their_span() {
        let s = series(&[(0, 0.1), (400, 0.5), (700, 0.9)]);
        let w = windowed(&s, Timestamp::from_millis(700_000));
        assert_eq!(w.current, Some(0.9));
        assert_eq!(w.min_5m, Some(0.5));
        assert!((w.avg_10m.unwrap() - 0.7).abs() < 1e-9, "the sample at 0s is outside 10 minutes");
        assert_eq!(w.min_10m, Some(0.5));
        assert_eq!(w.max_10m, Some(0.9));
        assert!((w.window_seconds - 700.0).abs() < 1e-9);
    }
}
