//! Aggregation of stored metric samples, shared by the `metricSeries` query
//! and the alert evaluator. Stored samples mean different things per kind: a
//! `gauge` sample is the value at that moment (the last one wins); a
//! `counter` sample is a non-negative increment, the series value being the
//! running total; a `histogram` or `summary` sample is one observation. This
//! module turns a window of such samples into one number ([`aggregate`]), a
//! range into one point per step ([`bucketize`]), increments into totals
//! ([`running_totals`]) and observations into buckets
//! ([`histogram_from_observations`]).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// The default histogram bucket bounds, in seconds (those of the Prometheus
/// client libraries).
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The kind of a stored metric, which fixes what its samples mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// Each sample is a non-negative increment; the value is the running total.
    Counter,
    /// Each sample is the value at that moment; the last one wins.
    Gauge,
    /// Each sample is one observation, exposed in buckets.
    Histogram,
    /// Each sample is one observation, exposed as quantiles.
    Summary,
}

impl MetricKind {
    /// The lowercase name: `counter`, `gauge`, `histogram` or `summary`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
        }
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MetricKind {
    type Err = String;

    /// Parses the lowercase name written by [`MetricKind::as_str`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "counter" => Ok(MetricKind::Counter),
            "gauge" => Ok(MetricKind::Gauge),
            "histogram" => Ok(MetricKind::Histogram),
            "summary" => Ok(MetricKind::Summary),
            other => Err(format!(
                "unknown metric kind `{other}`: expected counter, gauge, histogram or summary"
            )),
        }
    }
}

/// How the samples of a window become one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// The mean of the sample values.
    Avg,
    /// The smallest sample value (NaN only when all are NaN).
    Min,
    /// The largest sample value (NaN only when all are NaN).
    Max,
    /// The sum of the sample values; for a counter, its increase.
    Sum,
    /// The number of samples.
    Count,
    /// The value of the latest sample.
    Last,
    /// Per second over the window: a counter's increase, a gauge's change
    /// from first to last sample, or the number of histogram or summary
    /// observations.
    Rate,
    /// The median of the sample values.
    P50,
    /// The 90th percentile of the sample values.
    P90,
    /// The 95th percentile of the sample values.
    P95,
    /// The 99th percentile of the sample values.
    P99,
}

impl Aggregation {
    /// Every aggregation, in the order error messages list them.
    pub const ALL: [Aggregation; 11] = [
        Aggregation::Avg,
        Aggregation::Min,
        Aggregation::Max,
        Aggregation::Sum,
        Aggregation::Count,
        Aggregation::Last,
        Aggregation::Rate,
        Aggregation::P50,
        Aggregation::P90,
        Aggregation::P95,
        Aggregation::P99,
    ];

    /// The quantile of a percentile aggregation (`P90` is 0.9), `None` for the others.
    pub fn quantile(self) -> Option<f64> {
        match self {
            Aggregation::P50 => Some(0.5),
            Aggregation::P90 => Some(0.9),
            Aggregation::P95 => Some(0.95),
            Aggregation::P99 => Some(0.99),
            Aggregation::Avg
            | Aggregation::Min
            | Aggregation::Max
            | Aggregation::Sum
            | Aggregation::Count
            | Aggregation::Last
            | Aggregation::Rate => None,
        }
    }

    /// The lowercase name, as serde writes it: `avg`, `p99`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::Avg => "avg",
            Aggregation::Min => "min",
            Aggregation::Max => "max",
            Aggregation::Sum => "sum",
            Aggregation::Count => "count",
            Aggregation::Last => "last",
            Aggregation::Rate => "rate",
            Aggregation::P50 => "p50",
            Aggregation::P90 => "p90",
            Aggregation::P95 => "p95",
            Aggregation::P99 => "p99",
        }
    }
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Aggregation {
    type Err = String;

    /// Parses the lowercase name written by [`Aggregation::as_str`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Aggregation::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown aggregation `{s}`: expected avg, min, max, sum, count, last, rate, \
                 p50, p90, p95 or p99"
                )
            })
    }
}

/// Aggregates the samples of one window, which must be sorted by time and
/// already restricted to the window; `None` when there are no samples.
///
/// Every aggregation except `Rate` works on the stored sample values
/// themselves, whatever the kind: for a counter these are its increments, so
/// `Sum` is the counter's increase over the window and `Avg`, `Min`, `Max`,
/// `Last` and the percentiles describe the increments (apply
/// [`running_totals`] first and aggregate as a gauge to describe the totals).
/// `Rate` divides by `window_secs` (and is `None` unless that is positive and
/// finite): a counter's summed increments, a gauge's `last - first` (`None`
/// with fewer than two samples), or a histogram's or summary's number of
/// observations. Percentiles are Prometheus's `quantile_over_time`: linear
/// interpolation at rank `q * (n - 1)` of the sorted values. Sums are
/// compensated (Neumaier), so rounding does not accumulate over many samples.
pub fn aggregate(
    agg: Aggregation,
    kind: MetricKind,
    samples: &[(DateTime<Utc>, f64)],
    window_secs: f64,
) -> Option<f64> {
    let (_, last) = *samples.last()?;
    let values = || samples.iter().map(|&(_, v)| v);
    match agg {
        Aggregation::Avg => Some(mean(samples)),
        Aggregation::Min => values().reduce(f64::min),
        Aggregation::Max => values().reduce(f64::max),
        Aggregation::Sum => Some(compensated_sum(values())),
        Aggregation::Count => Some(samples.len() as f64),
        Aggregation::Last => Some(last),
        Aggregation::Rate => rate(kind, samples, window_secs),
        Aggregation::P50 | Aggregation::P90 | Aggregation::P95 | Aggregation::P99 => {
            let mut sorted: Vec<f64> = values().collect();
            sorted.sort_by(f64::total_cmp);
            quantile(&sorted, agg.quantile()?)
        }
    }
}

fn rate(kind: MetricKind, samples: &[(DateTime<Utc>, f64)], window_secs: f64) -> Option<f64> {
    if window_secs.is_nan() || window_secs <= 0.0 || window_secs.is_infinite() {
        return None;
    }
    match kind {
        MetricKind::Counter => Some(compensated_sum(samples.iter().map(|&(_, v)| v)) / window_secs),
        MetricKind::Gauge => match samples {
            [(_, first), .., (_, last)] => Some((last - first) / window_secs),
            _ => None,
        },
        MetricKind::Histogram | MetricKind::Summary => Some(samples.len() as f64 / window_secs),
    }
}

/// The mean, falling back to summing pre-divided values when the plain sum
/// of finite values overflows.
fn mean(samples: &[(DateTime<Utc>, f64)]) -> f64 {
    let n = samples.len() as f64;
    let sum = compensated_sum(samples.iter().map(|&(_, v)| v));
    if sum.is_finite() || samples.iter().any(|&(_, v)| !v.is_finite()) {
        sum / n
    } else {
        compensated_sum(samples.iter().map(|&(_, v)| v / n))
    }
}

/// Neumaier's compensated sum; an infinite partial sum drops the compensation
/// so that infinities do not turn into NaN.
fn compensated_sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut sum = 0.0_f64;
    let mut compensation = 0.0_f64;
    for x in values {
        let t = sum + x;
        if !t.is_finite() {
            compensation = 0.0;
        } else if sum.abs() >= x.abs() {
            compensation += (sum - t) + x;
        } else {
            compensation += (x - t) + sum;
        }
        sum = t;
    }
    if sum.is_finite() {
        sum + compensation
    } else {
        sum
    }
}

/// The `q` quantile of ascending `sorted` values, as Prometheus computes it:
/// linear interpolation between the values around rank `q * (n - 1)`.
/// `None` for no values or a NaN `q`; `-Inf` for `q < 0` and `+Inf` for
/// `q > 1`, as Prometheus answers. Unsorted input gives an unspecified value
/// (but never panics).
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || q.is_nan() {
        return None;
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    let last_index = sorted.len() - 1;
    let rank = q * last_index as f64;
    let lower_index = (rank.floor() as usize).min(last_index);
    let upper_index = (lower_index + 1).min(last_index);
    let weight = rank - rank.floor();
    let (lower, upper) = (sorted[lower_index], sorted[upper_index]);
    if weight == 0.0 || lower == upper {
        Some(lower)
    } else {
        Some(lower * (1.0 - weight) + upper * weight)
    }
}

/// One point per step boundary `t = from, from + step, ...` up to and
/// including `to`, each aggregating (with [`aggregate`], the step being the
/// rate window) the samples in `(t - step, t]`: a sample exactly on a
/// boundary belongs to that boundary's step. Steps without a value are
/// omitted. Samples are expected sorted by time (they are sorted here if
/// not); those outside `(from - step, to]` are ignored.
///
/// Errors, with a message for the user, when `step_secs < 1`, when `to` is
/// before `from`, or when the range would need more than `max_points` points.
pub fn bucketize(
    agg: Aggregation,
    kind: MetricKind,
    samples: &[(DateTime<Utc>, f64)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    step_secs: i64,
    max_points: usize,
) -> Result<Vec<(DateTime<Utc>, f64)>, String> {
    if step_secs < 1 {
        return Err(format!("step must be at least 1 second, got {step_secs}"));
    }
    if to < from {
        return Err(format!("the range ends ({to}) before it starts ({from})"));
    }
    let span_secs = (to - from).num_seconds();
    let points = span_secs / step_secs + 1;
    if usize::try_from(points).map_or(true, |p| p > max_points) {
        return Err(format!(
            "a step of {step_secs}s over this range needs {points} points, more than the \
             limit of {max_points}; use a larger step or a shorter range"
        ));
    }
    let sorted: Cow<'_, [(DateTime<Utc>, f64)]> = if samples.is_sorted_by_key(|s| s.0) {
        Cow::Borrowed(samples)
    } else {
        let mut owned = samples.to_vec();
        owned.sort_by_key(|s| s.0);
        Cow::Owned(owned)
    };
    // A step too long to represent reaches back past every sample.
    let mut lower =
        TimeDelta::try_seconds(step_secs).and_then(|step| from.checked_sub_signed(step));
    let mut out = Vec::new();
    for k in 0..points {
        let boundary = k
            .checked_mul(step_secs)
            .and_then(TimeDelta::try_seconds)
            .and_then(|offset| from.checked_add_signed(offset))
            .ok_or_else(|| "the range is too large to step through".to_string())?;
        let start = lower.map_or(0, |lo| sorted.partition_point(|s| s.0 <= lo));
        let end = sorted.partition_point(|s| s.0 <= boundary);
        let window = sorted.get(start..end).unwrap_or_default();
        if let Some(value) = aggregate(agg, kind, window, step_secs as f64) {
            out.push((boundary, value));
        }
        lower = Some(boundary);
    }
    Ok(out)
}

/// Turns counter increments into running totals starting from `start_total`:
/// each point carries the total including its own increment. An increment
/// that is negative or NaN counts as zero, so the totals never decrease (a
/// decrease would read as a counter reset to Prometheus).
pub fn running_totals(
    increments: &[(DateTime<Utc>, f64)],
    start_total: f64,
) -> Vec<(DateTime<Utc>, f64)> {
    let mut total = start_total;
    increments
        .iter()
        .map(|&(at, increment)| {
            if increment > 0.0 {
                total += increment;
            }
            (at, total)
        })
        .collect()
}

/// Buckets observations for the given bounds: returns the cumulative count
/// per bound (observations less than or equal to it, so a value exactly on a
/// bound is in that bound's bucket), the number of observations, and their
/// sum. Values above every bound (and NaN) count only towards the total,
/// that is the `+Inf` bucket. Bounds are expected ascending; other bounds
/// still get correct counts, bound by bound.
pub fn histogram_from_observations(
    bounds: &[f64],
    observations: impl IntoIterator<Item = f64>,
) -> (Vec<u64>, u64, f64) {
    let ascending = bounds.iter().all(|b| !b.is_nan()) && bounds.windows(2).all(|w| w[0] < w[1]);
    let mut buckets = vec![0_u64; bounds.len()];
    let mut count = 0_u64;
    let mut sum = 0.0_f64;
    for value in observations {
        count += 1;
        sum += value;
        if value.is_nan() {
            continue;
        }
        if ascending {
            // The first bound the value does not exceed; cumulated below.
            let index = bounds.partition_point(|&bound| bound < value);
            if let Some(bucket) = buckets.get_mut(index) {
                *bucket += 1;
            }
        } else {
            for (bucket, &bound) in buckets.iter_mut().zip(bounds) {
                if value <= bound {
                    *bucket += 1;
                }
            }
        }
    }
    if ascending {
        let mut running = 0;
        for bucket in &mut buckets {
            running += *bucket;
            *bucket = running;
        }
    }
    (buckets, count, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).expect("valid timestamp")
    }

    fn series(points: &[(i64, f64)]) -> Vec<(DateTime<Utc>, f64)> {
        points.iter().map(|&(t, v)| (at(t), v)).collect()
    }

    fn agg(a: Aggregation, kind: MetricKind, values: &[f64], window: f64) -> Option<f64> {
        let samples: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (at(i as i64), v))
            .collect();
        aggregate(a, kind, &samples, window)
    }

    const ALL: [Aggregation; 11] = Aggregation::ALL;
    const KINDS: [MetricKind; 4] = [
        MetricKind::Counter,
        MetricKind::Gauge,
        MetricKind::Histogram,
        MetricKind::Summary,
    ];

    #[test]
    fn aggregation_quantile_is_set_only_for_percentiles() {
        assert_eq!(Aggregation::P50.quantile(), Some(0.5));
        assert_eq!(Aggregation::P90.quantile(), Some(0.9));
        assert_eq!(Aggregation::P95.quantile(), Some(0.95));
        assert_eq!(Aggregation::P99.quantile(), Some(0.99));
        let without: Vec<_> = ALL.into_iter().filter(|a| a.quantile().is_none()).collect();
        assert_eq!(without.len(), 7);
    }

    #[test]
    fn aggregations_and_kinds_serialize_as_lowercase_names_and_parse_back() {
        for a in ALL {
            let json = serde_json::to_string(&a).expect("serializes");
            assert_eq!(json, format!("\"{}\"", a.as_str()));
            let back: Aggregation = serde_json::from_str(&json).expect("deserializes");
            assert_eq!(back, a);
            assert_eq!(a.as_str().parse::<Aggregation>(), Ok(a));
        }
        for k in KINDS {
            let json = serde_json::to_string(&k).expect("serializes");
            assert_eq!(json, format!("\"{k}\""));
            assert_eq!(serde_json::from_str::<MetricKind>(&json).ok(), Some(k));
            assert_eq!(k.as_str().parse::<MetricKind>(), Ok(k));
        }
        assert_eq!(
            serde_json::to_string(&Aggregation::P99).ok().as_deref(),
            Some("\"p99\"")
        );
    }

    #[test]
    fn unknown_aggregation_and_kind_names_are_rejected_with_the_choices() {
        let err = "median".parse::<Aggregation>().expect_err("unknown");
        assert!(err.contains("median") && err.contains("p99"), "{err}");
        assert!("AVG".parse::<Aggregation>().is_err());
        let err = "timer".parse::<MetricKind>().expect_err("unknown");
        assert!(err.contains("timer") && err.contains("gauge"), "{err}");
        assert!(serde_json::from_str::<Aggregation>("\"P50\"").is_err());
    }

    #[test]
    fn every_aggregation_of_no_samples_is_none() {
        for a in ALL {
            for k in KINDS {
                assert_eq!(aggregate(a, k, &[], 60.0), None, "{a} of {k}");
            }
        }
    }

    #[test]
    fn gauge_aggregations_describe_the_values() {
        let values = [4.0, 1.0, 7.0, 2.0];
        let g = MetricKind::Gauge;
        assert_eq!(agg(Aggregation::Avg, g, &values, 60.0), Some(3.5));
        assert_eq!(agg(Aggregation::Min, g, &values, 60.0), Some(1.0));
        assert_eq!(agg(Aggregation::Max, g, &values, 60.0), Some(7.0));
        assert_eq!(agg(Aggregation::Sum, g, &values, 60.0), Some(14.0));
        assert_eq!(agg(Aggregation::Count, g, &values, 60.0), Some(4.0));
        assert_eq!(agg(Aggregation::Last, g, &values, 60.0), Some(2.0));
        assert_eq!(agg(Aggregation::P50, g, &values, 60.0), Some(3.0));
    }

    #[test]
    fn gauge_rate_is_the_change_from_first_to_last_per_second() {
        let g = MetricKind::Gauge;
        assert_eq!(
            agg(Aggregation::Rate, g, &[10.0, 50.0, 40.0], 10.0),
            Some(3.0)
        );
        assert_eq!(agg(Aggregation::Rate, g, &[40.0, 10.0], 10.0), Some(-3.0));
        assert_eq!(agg(Aggregation::Rate, g, &[10.0], 10.0), None);
    }

    #[test]
    fn counter_sum_is_the_increase_and_rate_is_the_increase_per_second() {
        let c = MetricKind::Counter;
        let increments = [1.0, 4.0, 0.0, 5.0];
        assert_eq!(agg(Aggregation::Sum, c, &increments, 60.0), Some(10.0));
        assert_eq!(agg(Aggregation::Rate, c, &increments, 5.0), Some(2.0));
        assert_eq!(agg(Aggregation::Rate, c, &[3.0], 6.0), Some(0.5));
        assert_eq!(agg(Aggregation::Count, c, &increments, 60.0), Some(4.0));
    }

    #[test]
    fn counter_value_aggregations_describe_the_increments() {
        let c = MetricKind::Counter;
        let increments = [1.0, 4.0, 0.0, 5.0];
        assert_eq!(agg(Aggregation::Avg, c, &increments, 60.0), Some(2.5));
        assert_eq!(agg(Aggregation::Max, c, &increments, 60.0), Some(5.0));
        assert_eq!(agg(Aggregation::Min, c, &increments, 60.0), Some(0.0));
        assert_eq!(agg(Aggregation::Last, c, &increments, 60.0), Some(5.0));
    }

    #[test]
    fn histogram_and_summary_rate_counts_observations_per_second() {
        let observations = [0.2, 9.0, 0.4, 0.1];
        for k in [MetricKind::Histogram, MetricKind::Summary] {
            assert_eq!(
                agg(Aggregation::Rate, k, &observations, 2.0),
                Some(2.0),
                "{k}"
            );
            assert_eq!(
                agg(Aggregation::Count, k, &observations, 2.0),
                Some(4.0),
                "{k}"
            );
            assert_eq!(
                agg(Aggregation::Max, k, &observations, 2.0),
                Some(9.0),
                "{k}"
            );
            let p50 = agg(Aggregation::P50, k, &observations, 2.0).expect("value");
            assert!((p50 - 0.3).abs() < 1e-12, "{k}: {p50}");
        }
    }

    #[test]
    fn rate_needs_a_positive_finite_window() {
        for window in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            assert_eq!(
                agg(Aggregation::Rate, MetricKind::Counter, &[1.0, 2.0], window),
                None
            );
        }
    }

    #[test]
    fn percentiles_interpolate_like_prometheus_quantile_over_time() {
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        let g = MetricKind::Gauge;
        let close = |a: Aggregation, expected: f64| {
            let got = agg(a, g, &values, 60.0).expect("value");
            assert!((got - expected).abs() < 1e-9, "{a}: {got} != {expected}");
        };
        close(Aggregation::P50, 5.5);
        close(Aggregation::P90, 9.1);
        close(Aggregation::P95, 9.55);
        close(Aggregation::P99, 9.91);
        let reversed: Vec<f64> = values.iter().rev().copied().collect();
        assert_eq!(agg(Aggregation::P50, g, &reversed, 60.0), Some(5.5));
        assert_eq!(agg(Aggregation::P99, g, &[42.0], 60.0), Some(42.0));
    }

    #[test]
    fn quantile_handles_edges_as_prometheus_does() {
        let sorted = [1.0, 2.0, 4.0];
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&sorted, f64::NAN), None);
        assert_eq!(quantile(&sorted, -0.1), Some(f64::NEG_INFINITY));
        assert_eq!(quantile(&sorted, 1.1), Some(f64::INFINITY));
        assert_eq!(quantile(&sorted, 0.0), Some(1.0));
        assert_eq!(quantile(&sorted, 1.0), Some(4.0));
        assert_eq!(quantile(&sorted, 0.75), Some(3.0));
        assert_eq!(quantile(&sorted, 0.25), Some(1.5));
    }

    #[test]
    fn quantile_of_infinite_values_is_not_nan() {
        assert_eq!(
            quantile(&[f64::INFINITY, f64::INFINITY], 0.5),
            Some(f64::INFINITY)
        );
        assert_eq!(quantile(&[1.0, f64::INFINITY], 0.0), Some(1.0));
    }

    #[test]
    fn sums_are_compensated_and_averages_do_not_overflow() {
        let g = MetricKind::Gauge;
        assert_eq!(
            agg(Aggregation::Sum, g, &[1e16, 1.0, -1e16], 1.0),
            Some(1.0)
        );
        assert_eq!(
            agg(Aggregation::Avg, g, &[f64::MAX, f64::MAX], 1.0),
            Some(f64::MAX)
        );
        assert_eq!(
            agg(Aggregation::Sum, g, &[f64::INFINITY, 1.0], 1.0),
            Some(f64::INFINITY)
        );
        assert!(agg(Aggregation::Avg, g, &[f64::NAN, 1.0], 1.0).is_some_and(f64::is_nan));
    }

    #[test]
    fn min_and_max_skip_nan_unless_every_value_is_nan() {
        let g = MetricKind::Gauge;
        assert_eq!(
            agg(Aggregation::Min, g, &[f64::NAN, 3.0, 2.0], 1.0),
            Some(2.0)
        );
        assert_eq!(agg(Aggregation::Max, g, &[3.0, f64::NAN], 1.0), Some(3.0));
        assert!(agg(Aggregation::Max, g, &[f64::NAN], 1.0).is_some_and(f64::is_nan));
    }

    #[test]
    fn bucketize_puts_a_sample_exactly_on_a_boundary_in_that_boundarys_step() {
        let samples = series(&[
            (-31, 100.0),
            (-10, 1.0),
            (0, 2.0),
            (1, 3.0),
            (30, 4.0),
            (45, 5.0),
            (60, 6.0),
            (61, 100.0),
        ]);
        let points = bucketize(
            Aggregation::Sum,
            MetricKind::Gauge,
            &samples,
            at(0),
            at(60),
            30,
            100,
        )
        .expect("points");
        assert_eq!(points, series(&[(0, 3.0), (30, 7.0), (60, 11.0)]));
    }

    #[test]
    fn bucketize_omits_steps_without_samples_and_stops_at_the_last_boundary_before_to() {
        let samples = series(&[(5, 1.0), (65, 2.0), (89, 3.0)]);
        let points = bucketize(
            Aggregation::Count,
            MetricKind::Gauge,
            &samples,
            at(0),
            at(89),
            30,
            100,
        )
        .expect("points");
        // 0 and 60 have no samples; 65 and 89 lie past the last boundary (60).
        assert_eq!(points, series(&[(30, 1.0)]));
    }

    #[test]
    fn bucketize_uses_the_step_as_the_rate_window() {
        let samples = series(&[(1, 10.0), (10, 20.0), (11, 6.0)]);
        let points = bucketize(
            Aggregation::Rate,
            MetricKind::Counter,
            &samples,
            at(10),
            at(20),
            10,
            10,
        )
        .expect("points");
        assert_eq!(points, series(&[(10, 3.0), (20, 0.6)]));
    }

    #[test]
    fn bucketize_sorts_unsorted_samples_first() {
        let samples = series(&[(20, 2.0), (5, 1.0), (15, 3.0)]);
        let points = bucketize(
            Aggregation::Last,
            MetricKind::Gauge,
            &samples,
            at(10),
            at(20),
            10,
            10,
        )
        .expect("points");
        assert_eq!(points, series(&[(10, 1.0), (20, 2.0)]));
    }

    #[test]
    fn bucketize_allows_exactly_max_points_and_refuses_one_more() {
        let samples = series(&[(0, 1.0)]);
        let ok = bucketize(
            Aggregation::Last,
            MetricKind::Gauge,
            &samples,
            at(0),
            at(90),
            10,
            10,
        );
        assert!(ok.is_ok(), "{ok:?}");
        let err = bucketize(
            Aggregation::Last,
            MetricKind::Gauge,
            &samples,
            at(0),
            at(100),
            10,
            10,
        )
        .expect_err("11 points");
        assert!(
            err.contains("11 points") && err.contains("limit of 10"),
            "{err}"
        );
    }

    #[test]
    fn bucketize_refuses_a_step_below_one_second_and_a_reversed_range() {
        for step in [0, -5] {
            let err = bucketize(
                Aggregation::Avg,
                MetricKind::Gauge,
                &[],
                at(0),
                at(10),
                step,
                10,
            )
            .expect_err("bad step");
            assert!(err.contains("at least 1 second"), "{err}");
        }
        let err = bucketize(
            Aggregation::Avg,
            MetricKind::Gauge,
            &[],
            at(10),
            at(0),
            1,
            10,
        )
        .expect_err("reversed");
        assert!(err.contains("before it starts"), "{err}");
    }

    #[test]
    fn bucketize_with_a_huge_step_returns_one_point_without_panicking() {
        let samples = series(&[(-1_000_000, 1.0), (0, 2.0)]);
        let points = bucketize(
            Aggregation::Sum,
            MetricKind::Gauge,
            &samples,
            at(0),
            at(5),
            i64::MAX,
            1,
        )
        .expect("one point");
        assert_eq!(points, series(&[(0, 3.0)]));
    }

    #[test]
    fn bucketize_counts_points_over_sub_second_ranges() {
        let from = at(0);
        let to = from + TimeDelta::milliseconds(19_999);
        let samples = series(&[(10, 1.0), (19, 1.0)]);
        let points = bucketize(
            Aggregation::Count,
            MetricKind::Gauge,
            &samples,
            from,
            to,
            10,
            2,
        )
        .expect("two points");
        assert_eq!(points, series(&[(10, 1.0)]));
    }

    #[test]
    fn running_totals_add_each_increment_to_the_start_total() {
        let totals = running_totals(&series(&[(1, 1.0), (2, 2.0), (3, 3.0)]), 10.0);
        assert_eq!(totals, series(&[(1, 11.0), (2, 13.0), (3, 16.0)]));
        assert!(running_totals(&[], 5.0).is_empty());
    }

    #[test]
    fn running_totals_never_decrease_on_negative_or_nan_increments() {
        let totals = running_totals(
            &series(&[(1, 2.0), (2, -5.0), (3, f64::NAN), (4, 1.0)]),
            0.0,
        );
        assert_eq!(totals, series(&[(1, 2.0), (2, 2.0), (3, 2.0), (4, 3.0)]));
    }

    #[test]
    fn histogram_from_observations_puts_a_value_on_a_bound_in_that_bounds_bucket() {
        let (buckets, count, sum) =
            histogram_from_observations(&DEFAULT_BUCKETS, [0.005, 0.006, 1.0, 10.0]);
        assert_eq!(buckets, [1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 4]);
        assert_eq!(count, 4);
        assert!((sum - 11.011).abs() < 1e-12, "{sum}");
    }

    #[test]
    fn histogram_from_observations_counts_values_above_the_last_bound_only_in_the_total() {
        let (buckets, count, sum) = histogram_from_observations(&[1.0, 2.0], [-3.0, 2.5, 100.0]);
        assert_eq!(buckets, [1, 1]);
        assert_eq!(count, 3);
        assert_eq!(sum, 99.5);
    }

    #[test]
    fn histogram_from_observations_counts_nan_only_in_the_total() {
        let (buckets, count, sum) = histogram_from_observations(&[1.0], [f64::NAN, 0.5]);
        assert_eq!(buckets, [1]);
        assert_eq!(count, 2);
        assert!(sum.is_nan());
    }

    #[test]
    fn histogram_from_observations_gives_unsorted_bounds_their_own_counts() {
        let observations = [0.1, 0.5, 0.5, 3.0, 7.0];
        let (unsorted, count, _) = histogram_from_observations(&[5.0, 0.5, 1.0, 0.5], observations);
        assert_eq!(unsorted, [4, 3, 3, 3]);
        assert_eq!(count, 5);
        let (sorted, _, _) = histogram_from_observations(&[0.5, 1.0, 5.0], observations);
        assert_eq!(sorted, [3, 3, 4]);
    }

    #[test]
    fn histogram_from_observations_without_bounds_still_counts_and_sums() {
        let (buckets, count, sum) = histogram_from_observations(&[], vec![1.0, 2.0]);
        assert!(buckets.is_empty());
        assert_eq!((count, sum), (2, 3.0));
    }
}
