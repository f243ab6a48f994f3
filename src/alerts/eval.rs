//! Pure evaluation of a rule's expression over data already loaded from the
//! database: which label sets (groups) the expression yields at a time `t`,
//! with which value, and whether the condition holds. Live evaluation and
//! the backtest ([`replay_groups`]) call the same functions, so a preview
//! reproduces what the evaluator does.
//!
//! Semantics:
//! - An instant selector (`cpu_usage > 80`) yields one group per series: a
//!   gauge's, histogram's or summary's latest sample at or before `t` (no
//!   older than the lookback), or a counter's running total at `t`.
//! - A function over a window (`avg(cpu_usage[5m])`) yields one group per
//!   series, or with `by (l, ...)` one group per distinct value of those
//!   labels, aggregating the pooled samples of its series in `(t - window,
//!   t]` (see [`crate::metrics::aggregate::aggregate`] for what each
//!   function means per metric kind); `rate` adds up the series' rates and
//!   `last` takes the latest sample of the group.
//! - Events are counted per `source` (or per the `by` labels) in the window;
//!   `rate` divides the count by the window's length.
//! - A group without data at `t` yields nothing, which the state machine
//!   treats like a false condition.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::expr::{AlertExpr, matches_all};
use super::model::Severity;
use super::state::{Timing, Transition, replay};
use crate::metrics::aggregate::{Aggregation, MetricKind, aggregate};
use crate::util;

/// Labels of a series, group or alert, sorted by name.
pub type LabelSet = BTreeMap<String, String>;

/// Hex SHA-256 of the canonical (sorted JSON) form of a label set.
pub fn fingerprint(labels: &LabelSet) -> String {
    util::sha256_hex(&serde_json::to_string(labels).unwrap_or_default())
}

/// Reads a stored JSON object of labels (non-string values are skipped).
pub fn labels_from_json(json: &Value) -> LabelSet {
    match json {
        Value::Object(map) => map
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
            .collect(),
        _ => LabelSet::new(),
    }
}

/// The JSON object of a label set.
pub fn labels_to_json(labels: &LabelSet) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// An alert's labels: the group's labels with the rule's labels added (the
/// rule's win on a clash, as in Prometheus).
pub fn alert_labels(group: &LabelSet, rule_labels: &LabelSet) -> LabelSet {
    let mut labels = group.clone();
    for (k, v) in rule_labels {
        labels.insert(k.clone(), v.clone());
    }
    labels
}

/// The labels silences and label filters match against: the alert's labels
/// plus `alertname`, `severity` and `rule_id`.
pub fn matchable_labels(
    labels: &LabelSet,
    alertname: &str,
    severity: Severity,
    rule_id: Uuid,
) -> LabelSet {
    let mut all = labels.clone();
    all.insert("alertname".to_owned(), alertname.to_owned());
    all.insert("severity".to_owned(), severity.as_str().to_owned());
    all.insert("rule_id".to_owned(), rule_id.to_string());
    all
}

/// The evaluation ran out of its work budget (previews only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetExceeded;

/// A bound on the number of samples an evaluation may look at, so that a
/// preview over a long range with a fine step cannot tie up the server.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    remaining: Option<u64>,
}

impl Budget {
    /// No bound (live evaluation reads one window per rule).
    pub fn unlimited() -> Budget {
        Budget { remaining: None }
    }

    /// At most `n` sample visits.
    pub fn new(n: u64) -> Budget {
        Budget { remaining: Some(n) }
    }

    fn spend(&mut self, n: usize) -> Result<(), BudgetExceeded> {
        if let Some(remaining) = &mut self.remaining {
            let n = n as u64;
            if n > *remaining {
                return Err(BudgetExceeded);
            }
            *remaining -= n;
        }
        Ok(())
    }
}

/// One metric series as loaded for evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    /// The series' labels (shared with the series snapshot).
    pub labels: Arc<LabelSet>,
    /// Counters: the running total now (all increments ever).
    pub total: f64,
    /// Number of samples ever ingested.
    pub sample_count: i64,
    /// Samples sorted by time, covering what the evaluation times need: for a
    /// window, `(t - window, t]`; for an instant gauge, the latest sample at
    /// or before `t`; for an instant counter, every sample after `t`.
    pub samples: Arc<Vec<(DateTime<Utc>, f64)>>,
}

/// The series of one metric that a selector matched.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricData {
    /// What the samples mean.
    pub kind: MetricKind,
    /// The matched series.
    pub series: Vec<SeriesData>,
}

/// How the series of a metric fall into groups.
#[derive(Debug, Clone, PartialEq)]
pub struct Groups {
    /// Each group's labels and the indexes of its series.
    pub groups: Vec<(Arc<LabelSet>, Vec<usize>)>,
}

/// Groups the series for `expr`: one per series without a function or
/// without `by`, else one per distinct value of the `by` labels (a missing
/// or empty label is left out of the group's labels).
pub fn group_series(expr: &AlertExpr, series: &[SeriesData]) -> Groups {
    if expr.function.is_none() || expr.by.is_empty() {
        return Groups {
            groups: series
                .iter()
                .enumerate()
                .map(|(i, s)| (Arc::clone(&s.labels), vec![i]))
                .collect(),
        };
    }
    let mut by_key: BTreeMap<LabelSet, Vec<usize>> = BTreeMap::new();
    for (i, s) in series.iter().enumerate() {
        by_key
            .entry(by_labels(&expr.by, &s.labels))
            .or_default()
            .push(i);
    }
    Groups {
        groups: by_key
            .into_iter()
            .map(|(labels, members)| (Arc::new(labels), members))
            .collect(),
    }
}

fn by_labels(by: &[String], labels: &LabelSet) -> LabelSet {
    by.iter()
        .filter_map(|name| {
            labels
                .get(name)
                .filter(|v| !v.is_empty())
                .map(|v| (name.clone(), v.clone()))
        })
        .collect()
}

/// The value of one series at `t` for an instant selector, or `None` when
/// it has no data then.
pub fn instant_value(
    kind: MetricKind,
    series: &SeriesData,
    t: DateTime<Utc>,
    lookback: TimeDelta,
) -> Option<f64> {
    match kind {
        MetricKind::Counter => {
            let later = series.samples.partition_point(|s| s.0 <= t);
            let after = &series.samples[later..];
            let samples_by_then = series.sample_count - after.len() as i64;
            if samples_by_then <= 0 {
                return None;
            }
            let increase: f64 = after.iter().map(|s| s.1.max(0.0)).sum();
            Some(series.total - increase)
        }
        MetricKind::Gauge | MetricKind::Histogram | MetricKind::Summary => {
            let upto = series.samples.partition_point(|s| s.0 <= t);
            let &(at, value) = series.samples[..upto].last()?;
            (at > t - lookback).then_some(value)
        }
    }
}

fn window_slice(
    samples: &[(DateTime<Utc>, f64)],
    t: DateTime<Utc>,
    window: TimeDelta,
) -> &[(DateTime<Utc>, f64)] {
    let start = samples.partition_point(|s| s.0 <= t - window);
    let end = samples.partition_point(|s| s.0 <= t);
    samples.get(start..end).unwrap_or_default()
}

fn group_window_value(
    function: Aggregation,
    kind: MetricKind,
    slices: &[&[(DateTime<Utc>, f64)]],
    window_secs: f64,
) -> Option<f64> {
    let agg = function;
    match function {
        Aggregation::Rate => slices
            .iter()
            .filter_map(|slice| aggregate(agg, kind, slice, window_secs))
            .reduce(|a, b| a + b),
        Aggregation::Last => slices
            .iter()
            .filter_map(|slice| slice.last())
            .max_by_key(|s| s.0)
            .map(|s| s.1),
        _ => match slices {
            [one] => aggregate(agg, kind, one, window_secs),
            _ => {
                let pooled: Vec<(DateTime<Utc>, f64)> =
                    slices.iter().flat_map(|s| s.iter().copied()).collect();
                aggregate(agg, kind, &pooled, window_secs)
            }
        },
    }
}

/// The value of every group of a metric expression at `t` whose condition
/// holds (groups without data are left out).
pub fn metric_values(
    expr: &AlertExpr,
    data: &MetricData,
    groups: &Groups,
    t: DateTime<Utc>,
    lookback: TimeDelta,
    budget: &mut Budget,
) -> Result<Vec<(LabelSet, f64)>, BudgetExceeded> {
    let mut out = Vec::with_capacity(groups.groups.len());
    match (expr.function, expr.window_secs) {
        (Some(function), Some(window_secs)) => {
            let window = TimeDelta::seconds(i64::try_from(window_secs).unwrap_or(i64::MAX / 1000));
            for (labels, members) in &groups.groups {
                let slices: Vec<&[(DateTime<Utc>, f64)]> = members
                    .iter()
                    .map(|&i| window_slice(&data.series[i].samples, t, window))
                    .collect();
                budget.spend(slices.iter().map(|s| s.len()).sum::<usize>() + 1)?;
                if let Some(v) =
                    group_window_value(function, data.kind, &slices, window_secs as f64)
                    && condition_holds(expr, v)
                {
                    out.push((LabelSet::clone(labels), v));
                }
            }
        }
        _ => {
            budget.spend(groups.groups.len())?;
            for (labels, members) in &groups.groups {
                let value = members
                    .first()
                    .and_then(|&i| instant_value(data.kind, &data.series[i], t, lookback));
                if let Some(v) = value.filter(|v| condition_holds(expr, *v)) {
                    out.push((LabelSet::clone(labels), v));
                }
            }
        }
    }
    Ok(out)
}

/// The labels an event offers to matchers: its tags (as strings) and its
/// `source`, `level` and `event_type` fields (which win over tags of the
/// same name). A missing level is left out.
pub fn event_labels(
    source: &str,
    level: Option<&str>,
    event_type: &str,
    tags: Option<&Value>,
) -> LabelSet {
    let mut labels = LabelSet::new();
    if let Some(Value::Object(map)) = tags {
        for (k, v) in map {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            labels.insert(k.clone(), text);
        }
    }
    labels.insert("source".to_owned(), source.to_owned());
    labels.insert("event_type".to_owned(), event_type.to_owned());
    match level {
        Some(level) => {
            labels.insert("level".to_owned(), level.to_owned());
        }
        None => {
            labels.remove("level");
        }
    }
    labels
}

/// The source of the alert events Sightline writes itself.
pub const ALERT_EVENT_SOURCE: &str = "sightline.alerts";

/// Whether an `events` selector counts Sightline's own alert events: only
/// when it asks for them with `source="sightline.alerts"`, so that rules
/// never feed on their own output by accident.
pub fn counts_own_alert_events(expr: &AlertExpr) -> bool {
    expr.matchers.iter().any(|m| {
        m.label == "source" && m.op == super::expr::MatchOp::Eq && m.value == ALERT_EVENT_SOURCE
    })
}

/// The group an event falls in, or `None` when the selector's matchers
/// reject it: its `source`, or the `by` labels when given.
pub fn event_group(expr: &AlertExpr, labels: &LabelSet) -> Option<LabelSet> {
    if !matches_all(&expr.matchers, labels) {
        return None;
    }
    if labels.get("source").map(String::as_str) == Some(ALERT_EVENT_SOURCE)
        && !counts_own_alert_events(expr)
    {
        return None;
    }
    if expr.by.is_empty() {
        let mut group = LabelSet::new();
        if let Some(source) = labels.get("source") {
            group.insert("source".to_owned(), source.clone());
        }
        Some(group)
    } else {
        Some(by_labels(&expr.by, labels))
    }
}

/// The value of an events group that saw `count` events in the window:
/// the count, or events per second for `rate`; `None` for no events.
pub fn event_value(expr: &AlertExpr, count: u64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let window = expr.window_secs.unwrap_or(1).max(1) as f64;
    match expr.function {
        Some(Aggregation::Rate) => Some(count as f64 / window),
        _ => Some(count as f64),
    }
}

/// The number of timestamps (sorted) in `(t - window, t]`.
pub fn count_in_window(sorted: &[DateTime<Utc>], t: DateTime<Utc>, window_secs: u64) -> u64 {
    let window = TimeDelta::seconds(i64::try_from(window_secs).unwrap_or(i64::MAX / 1000));
    let start = sorted.partition_point(|&at| at <= t - window);
    let end = sorted.partition_point(|&at| at <= t);
    end.saturating_sub(start) as u64
}

/// Whether the expression's condition holds for a value.
pub fn condition_holds(expr: &AlertExpr, value: f64) -> bool {
    expr.comparison
        .is_some_and(|c| c.op.apply(value, c.threshold))
}

/// Keeps the groups whose value satisfies the condition.
pub fn true_groups(expr: &AlertExpr, values: Vec<(LabelSet, f64)>) -> Vec<(LabelSet, f64)> {
    values
        .into_iter()
        .filter(|(_, v)| condition_holds(expr, *v))
        .collect()
}

/// One transition found by a backtest.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupTransition {
    /// The group's labels (before the rule's labels are added).
    pub labels: LabelSet,
    /// The transition.
    pub transition: Transition,
}

/// Replays the state machine per group over evaluations at `times`, where
/// `true_at[k]` holds the groups whose condition held at `times[k]` (with
/// their values); a group missing from a step evaluated false. Returns the
/// transitions in time order (then by labels).
pub fn replay_groups(
    times: &[DateTime<Utc>],
    true_at: &[Vec<(LabelSet, f64)>],
    timing: Timing,
) -> Vec<GroupTransition> {
    // Each group's value per step, from the step where it first held.
    let mut per_group: BTreeMap<&LabelSet, (usize, Vec<Option<f64>>)> = BTreeMap::new();
    for (k, groups) in true_at.iter().enumerate() {
        for (labels, value) in groups {
            let (start, values) = per_group
                .entry(labels)
                .or_insert_with(|| (k, vec![None; times.len().saturating_sub(k)]));
            if let Some(slot) = values.get_mut(k.saturating_sub(*start)) {
                *slot = Some(*value);
            }
        }
    }
    let mut out = Vec::new();
    for (labels, (start, values)) in per_group {
        let evaluations: Vec<(DateTime<Utc>, Option<f64>)> =
            times[start..].iter().copied().zip(values).collect();
        out.extend(
            replay(&evaluations, timing)
                .into_iter()
                .map(|transition| GroupTransition {
                    labels: labels.clone(),
                    transition,
                }),
        );
    }
    out.sort_by(|a, b| {
        a.transition
            .at
            .cmp(&b.transition.at)
            .then_with(|| a.labels.cmp(&b.labels))
    });
    out
}

/// Most tags on an event (the events domain's limit).
const MAX_EVENT_TAGS: usize = crate::events::model::MAX_TAGS;
/// Keep alert event tags well under the events domain's 64 KiB limit.
const MAX_EVENT_TAG_BYTES: usize = 60 * 1024;

/// The tags of an alert event: `alertname`, `rule_id`, `severity`, then as
/// many of the alert's labels as the events domain's limits allow.
pub fn alert_event_tags(
    labels: &LabelSet,
    alertname: &str,
    rule_id: Uuid,
    severity: Severity,
) -> Map<String, Value> {
    let mut tags = Map::new();
    tags.insert("alertname".into(), Value::String(alertname.to_owned()));
    tags.insert("rule_id".into(), Value::String(rule_id.to_string()));
    tags.insert("severity".into(), Value::String(severity.as_str().into()));
    let mut size = serde_json::to_vec(&tags).map(|v| v.len()).unwrap_or(0);
    for (k, v) in labels {
        if tags.len() >= MAX_EVENT_TAGS {
            break;
        }
        if tags.contains_key(k)
            || k.is_empty()
            || k.chars().count() > crate::events::model::MAX_TAG_KEY_CHARS
        {
            continue;
        }
        let cost = k.len() + v.len() + 8;
        if size + cost > MAX_EVENT_TAG_BYTES {
            continue;
        }
        size += cost;
        tags.insert(k.clone(), Value::String(v.clone()));
    }
    tags
}

/// Writes labels as `{a="x", b="y"}`.
pub fn format_labels(labels: &LabelSet) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// The message of an alert event, e.g. `High CPU is firing {host="a"}:
/// CPU above 80% (value 93.5)`, at most 10,000 characters.
pub fn alert_event_message(
    rule_name: &str,
    firing: bool,
    labels: &LabelSet,
    value: Option<f64>,
    summary: Option<&str>,
) -> String {
    let verb = if firing { "is firing" } else { "resolved" };
    let mut text = format!("{rule_name} {verb} {}", format_labels(labels));
    if let Some(summary) = summary {
        text.push_str(": ");
        text.push_str(summary);
    }
    if let Some(v) = value {
        text.push_str(&format!(" (value {v})"));
    }
    let max = crate::events::model::MAX_MESSAGE_CHARS;
    if text.chars().count() > max {
        text = text.chars().take(max - 1).collect();
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::expr::parse;
    use crate::alerts::state::AlertState;

    const BASE: i64 = 1_700_000_000;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(BASE + secs, 0).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn series(l: &[(&str, &str)], points: &[(i64, f64)]) -> SeriesData {
        SeriesData {
            labels: Arc::new(labels(l)),
            total: points.iter().map(|p| p.1.max(0.0)).sum(),
            sample_count: points.len() as i64,
            samples: Arc::new(points.iter().map(|&(t, v)| (at(t), v)).collect()),
        }
    }

    fn values(expr: &str, data: &MetricData, t: i64) -> Vec<(LabelSet, f64)> {
        let e = parse(expr).unwrap();
        let groups = group_series(&e, &data.series);
        let v = metric_values(
            &e,
            data,
            &groups,
            at(t),
            TimeDelta::minutes(5),
            &mut Budget::unlimited(),
        )
        .unwrap();
        true_groups(&e, v)
    }

    #[test]
    fn an_instant_gauge_uses_the_latest_sample_within_the_lookback() {
        let data = MetricData {
            kind: MetricKind::Gauge,
            series: vec![
                series(&[("host", "a")], &[(0, 90.0), (10, 95.0)]),
                series(&[("host", "b")], &[(0, 50.0)]),
            ],
        };
        assert_eq!(
            values("cpu > 80", &data, 20),
            vec![(labels(&[("host", "a")]), 95.0)]
        );
        assert_eq!(
            values("cpu > 80", &data, 5),
            vec![(labels(&[("host", "a")]), 90.0)],
            "a later sample is not seen earlier"
        );
        assert!(
            values("cpu > 80", &data, 10 + 301).is_empty(),
            "stale after the lookback"
        );
        assert!(values("cpu > 80", &data, -1).is_empty(), "no data yet");
    }

    #[test]
    fn an_instant_counter_is_its_running_total_at_the_time() {
        let data = MetricData {
            kind: MetricKind::Counter,
            series: vec![series(&[], &[(0, 5.0), (10, 7.0), (20, 3.0)])],
        };
        assert_eq!(values("c > 0", &data, 25)[0].1, 15.0);
        assert_eq!(values("c > 0", &data, 15)[0].1, 12.0);
        assert_eq!(values("c > 0", &data, 0)[0].1, 5.0);
        assert!(
            values("c >= 0", &data, -5).is_empty(),
            "no data before the first sample"
        );
        // Stale counters keep their total.
        assert_eq!(values("c > 0", &data, 100_000)[0].1, 15.0);
    }

    #[test]
    fn window_functions_aggregate_each_series_in_its_window() {
        let data = MetricData {
            kind: MetricKind::Gauge,
            series: vec![
                series(&[("host", "a")], &[(0, 70.0), (30, 90.0), (60, 100.0)]),
                series(&[("host", "b")], &[(0, 10.0), (60, 20.0)]),
            ],
        };
        let v = values("avg(cpu[1m]) > 0", &data, 60);
        assert_eq!(
            v,
            vec![
                (labels(&[("host", "a")]), 95.0),
                (labels(&[("host", "b")]), 20.0)
            ],
            "(t - 1m, t] excludes the sample at t - 1m"
        );
        assert_eq!(values("max(cpu[2m]) >= 100", &data, 60).len(), 1);
        assert_eq!(values("count(cpu[2m]) == 3", &data, 60).len(), 1);
        assert!(
            values("avg(cpu[1m]) > 0", &data, 200).is_empty(),
            "empty window"
        );
    }

    #[test]
    fn by_pools_the_samples_of_a_group_and_sums_rates() {
        let data = MetricData {
            kind: MetricKind::Counter,
            series: vec![
                series(&[("route", "/a"), ("code", "500")], &[(10, 6.0)]),
                series(&[("route", "/b"), ("code", "500")], &[(20, 6.0)]),
                series(&[("route", "/a"), ("code", "200")], &[(20, 60.0)]),
                series(&[("route", "/c")], &[(20, 1.0)]),
            ],
        };
        let v = values("rate(http[1m]) by (code) > 0", &data, 30);
        assert_eq!(
            v,
            vec![
                (labels(&[]), 1.0 / 60.0),
                (labels(&[("code", "200")]), 1.0),
                (labels(&[("code", "500")]), 0.2),
            ]
        );
        let v = values("sum(http[1m]) by (code) > 10", &data, 30);
        assert_eq!(
            v,
            vec![
                (labels(&[("code", "200")]), 60.0),
                (labels(&[("code", "500")]), 12.0)
            ]
        );
        let v = values("last(http[1m]) by (code) > 0", &data, 30);
        assert_eq!(v[2], (labels(&[("code", "500")]), 6.0));
    }

    #[test]
    fn the_budget_stops_an_evaluation_that_reads_too_much() {
        let data = MetricData {
            kind: MetricKind::Gauge,
            series: vec![series(&[], &[(0, 1.0), (1, 1.0), (2, 1.0)])],
        };
        let e = parse("avg(x[1m]) > 0").unwrap();
        let groups = group_series(&e, &data.series);
        let mut small = Budget::new(2);
        assert_eq!(
            metric_values(&e, &data, &groups, at(5), TimeDelta::minutes(5), &mut small),
            Err(BudgetExceeded)
        );
        let mut enough = Budget::new(4);
        assert!(
            metric_values(
                &e,
                &data,
                &groups,
                at(5),
                TimeDelta::minutes(5),
                &mut enough
            )
            .is_ok()
        );
    }

    #[test]
    fn events_are_grouped_by_source_unless_by_says_otherwise() {
        let e = parse(r#"count(events{level="error"}[5m]) > 1"#).unwrap();
        let l = event_labels(
            "api",
            Some("error"),
            "log",
            Some(&serde_json::json!({"region": "eu", "code": 500})),
        );
        assert_eq!(l["code"], "500");
        assert_eq!(event_group(&e, &l), Some(labels(&[("source", "api")])));
        let info = event_labels("api", Some("info"), "log", None);
        assert_eq!(event_group(&e, &info), None);
        let by = parse(r#"count(events[5m]) by (region, level) > 1"#).unwrap();
        assert_eq!(
            event_group(&by, &l),
            Some(labels(&[("level", "error"), ("region", "eu")]))
        );
    }

    #[test]
    fn event_fields_win_over_tags_of_the_same_name() {
        let l = event_labels(
            "api",
            None,
            "log",
            Some(&serde_json::json!({"source": "spoofed", "level": "error"})),
        );
        assert_eq!(l["source"], "api");
        assert!(!l.contains_key("level"), "a missing level stays missing");
    }

    #[test]
    fn own_alert_events_are_only_counted_when_asked_for() {
        let own = event_labels(ALERT_EVENT_SOURCE, Some("error"), "alert", None);
        let any = parse("count(events[5m]) > 0").unwrap();
        assert_eq!(event_group(&any, &own), None);
        let asked = parse(r#"count(events{source="sightline.alerts"}[5m]) > 0"#).unwrap();
        assert!(event_group(&asked, &own).is_some());
    }

    #[test]
    fn event_values_count_or_rate_and_nothing_is_no_data() {
        let count = parse("count(events[1m]) > 0").unwrap();
        let rate = parse("rate(events[1m]) > 0").unwrap();
        assert_eq!(event_value(&count, 30), Some(30.0));
        assert_eq!(event_value(&rate, 30), Some(0.5));
        assert_eq!(event_value(&count, 0), None);
        let times = [at(0), at(30), at(60)];
        assert_eq!(count_in_window(&times, at(60), 60), 2);
        assert_eq!(count_in_window(&times, at(59), 60), 2);
        assert_eq!(count_in_window(&times, at(-1), 60), 0);
    }

    #[test]
    fn replay_groups_runs_the_state_machine_per_group() {
        let a = labels(&[("host", "a")]);
        let b = labels(&[("host", "b")]);
        let times = [at(0), at(10), at(20), at(30)];
        let true_at = vec![
            vec![(a.clone(), 1.0)],
            vec![(a.clone(), 2.0), (b.clone(), 5.0)],
            vec![(b.clone(), 6.0)],
            vec![],
        ];
        let got = replay_groups(
            &times,
            &true_at,
            Timing {
                for_secs: 10,
                keep_firing_for_secs: 0,
            },
        );
        let path: Vec<(String, AlertState, AlertState, i64)> = got
            .iter()
            .map(|g| {
                (
                    g.labels["host"].clone(),
                    g.transition.from,
                    g.transition.to,
                    g.transition.at.timestamp() - BASE,
                )
            })
            .collect();
        use AlertState::*;
        assert_eq!(
            path,
            vec![
                ("a".into(), Inactive, Pending, 0),
                ("a".into(), Pending, Firing, 10),
                ("b".into(), Inactive, Pending, 10),
                ("a".into(), Firing, Inactive, 20),
                ("b".into(), Pending, Firing, 20),
                ("b".into(), Firing, Inactive, 30),
            ]
        );
    }

    #[test]
    fn fingerprints_depend_only_on_the_label_set() {
        let x = labels(&[("a", "1"), ("b", "2")]);
        let mut y = LabelSet::new();
        y.insert("b".into(), "2".into());
        y.insert("a".into(), "1".into());
        assert_eq!(fingerprint(&x), fingerprint(&y));
        assert_ne!(fingerprint(&x), fingerprint(&labels(&[("a", "1")])));
        assert_eq!(fingerprint(&x).len(), 64);
    }

    #[test]
    fn rule_labels_win_over_series_labels() {
        let merged = alert_labels(
            &labels(&[("host", "a"), ("team", "x")]),
            &labels(&[("team", "core")]),
        );
        assert_eq!(merged, labels(&[("host", "a"), ("team", "core")]));
    }

    #[test]
    fn alert_event_tags_put_the_reserved_tags_first_and_respect_the_limits() {
        let id = Uuid::nil();
        let mut many = LabelSet::new();
        for i in 0..150 {
            many.insert(format!("l{i:03}"), "v".repeat(10));
        }
        many.insert("k".repeat(200), "too long a key".into());
        let tags = alert_event_tags(&many, "High CPU", id, Severity::Critical);
        assert_eq!(tags.len(), 100);
        assert_eq!(tags["alertname"], "High CPU");
        assert_eq!(tags["severity"], "critical");
        assert_eq!(tags["rule_id"], id.to_string());
        let mut big = LabelSet::new();
        for i in 0..90 {
            big.insert(format!("l{i}"), "x".repeat(1024));
        }
        let tags = alert_event_tags(&big, "r", id, Severity::Info);
        assert!(serde_json::to_vec(&tags).unwrap().len() <= 64 * 1024);
    }

    #[test]
    fn alert_event_messages_say_what_fired_and_are_bounded() {
        let m = alert_event_message(
            "High CPU",
            true,
            &labels(&[("host", "a")]),
            Some(93.5),
            Some("CPU above 80%"),
        );
        assert_eq!(
            m,
            r#"High CPU is firing {host="a"}: CPU above 80% (value 93.5)"#
        );
        let long = alert_event_message(
            "r",
            false,
            &LabelSet::new(),
            None,
            Some(&"x".repeat(20_000)),
        );
        assert_eq!(long.chars().count(), 10_000);
        assert!(long.starts_with("r resolved {}: x"));
    }
}
