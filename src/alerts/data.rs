//! Reads what an expression needs from the metrics and events tables, in a
//! few batched, indexed queries per evaluation (never one per series): the
//! metric's family, its series (matched against the selector in memory), the
//! samples of the matched series in the window, and for events either
//! counts grouped in SQL or the rows of the window when tags are involved.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};
use serde_json::Value;

use super::eval::{
    self, ALERT_EVENT_SOURCE, LabelSet, MetricData, SeriesData, counts_own_alert_events,
};
use super::expr::{AlertExpr, MatchOp, Source, matches_all};
use crate::error::{AppError, AppResult};
use crate::events::entity as events;
use crate::metrics::aggregate::MetricKind;
use crate::metrics::entity::{family, series};
use crate::metrics::read::{SeriesSet, read_samples};

/// Most series ids listed in a query: a family with more matching series
/// is read through its family id.
const ID_LIST_MAX: usize = 900;

/// Why data could not be loaded within the limits.
pub fn too_much_data(what: &str, limit: usize) -> AppError {
    AppError::bad_input(
        "query",
        format!(
            "the expression needs more than {limit} {what}; narrow its matchers, shorten its \
             window or range"
        ),
    )
}

/// A metric family and its series, as read at one moment.
#[derive(Debug)]
pub struct FamilySnapshot {
    /// What the family's samples mean.
    pub kind: MetricKind,
    /// The family's id.
    pub id: i64,
    /// Every series of the family.
    pub series: Vec<SeriesRow>,
}

/// One row of `metric_series`, with its labels parsed.
#[derive(Debug, Clone)]
pub struct SeriesRow {
    /// Primary key.
    pub id: i64,
    /// Labels.
    pub labels: Arc<LabelSet>,
    /// Time of the latest sample.
    pub last_sample_at: Option<DateTime<Utc>>,
    /// Value of the latest sample.
    pub last_value: Option<f64>,
    /// Counter running total.
    pub total: f64,
    /// Samples ever.
    pub sample_count: i64,
}

/// Samples of every series of a family in one window, by series id.
type WindowSamples = HashMap<i64, Arc<Vec<(DateTime<Utc>, f64)>>>;

/// Families (and whole-family windows of samples) read during one
/// scheduling round, so that many rules over the same metric read its
/// series, and the samples of a window they all cover, once. Each
/// [`crate::alerts::evaluator::evaluate_rule`] call outside a round uses a
/// fresh cache.
#[derive(Default)]
pub struct FamilyCache {
    families: Mutex<HashMap<String, Option<Arc<FamilySnapshot>>>>,
    windows: Mutex<HashMap<(i64, i64), Arc<WindowSamples>>>,
}

impl FamilyCache {
    /// The family named `name` with its series (`None` when no such metric exists).
    pub async fn get(
        &self,
        db: &impl ConnectionTrait,
        name: &str,
    ) -> AppResult<Option<Arc<FamilySnapshot>>> {
        if let Some(hit) = self.lock().get(name) {
            return Ok(hit.clone());
        }
        let loaded = load_family(db, name).await?.map(Arc::new);
        self.lock().insert(name.to_owned(), loaded.clone());
        Ok(loaded)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<Arc<FamilySnapshot>>>> {
        match self.families.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn lock_windows(&self) -> std::sync::MutexGuard<'_, HashMap<(i64, i64), Arc<WindowSamples>>> {
        match self.windows.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The samples of every series of `family` in `(now - window, now]`
    /// (the round evaluates every rule at the same `now`).
    async fn family_window(
        &self,
        db: &impl ConnectionTrait,
        family: &FamilySnapshot,
        now: DateTime<Utc>,
        window: TimeDelta,
        max: usize,
    ) -> AppResult<Arc<WindowSamples>> {
        let key = (family.id, window.num_seconds());
        if let Some(hit) = self.lock_windows().get(&key) {
            return Ok(hit.clone());
        }
        let ids: Vec<i64> = family.series.iter().map(|s| s.id).collect();
        let loaded = Arc::new(load_samples(db, family, &ids, now - window, Some(now), max).await?);
        self.lock_windows().insert(key, loaded.clone());
        Ok(loaded)
    }
}

/// `(id, labels, last_sample_at, last_value, total, sample_count)` of one series.
type SeriesTuple = (i64, Value, Option<DateTime<Utc>>, Option<f64>, f64, i64);

/// `(source, level, event_type, timestamp, tags)` of one event.
type EventTuple = (String, Option<String>, String, DateTime<Utc>, Option<Value>);

async fn load_family(db: &impl ConnectionTrait, name: &str) -> AppResult<Option<FamilySnapshot>> {
    let Some(fam) = family::Entity::find()
        .filter(family::Column::Name.eq(name))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let kind: MetricKind = fam
        .metric_type
        .parse()
        .map_err(|e: String| AppError::internal(std::io::Error::other(e)))?;
    let rows: Vec<SeriesTuple> = series::Entity::find()
        .select_only()
        .column(series::Column::Id)
        .column(series::Column::Labels)
        .column(series::Column::LastSampleAt)
        .column(series::Column::LastValue)
        .column(series::Column::Total)
        .column(series::Column::SampleCount)
        .filter(series::Column::FamilyId.eq(fam.id))
        .into_tuple()
        .all(db)
        .await?;
    let series = rows
        .into_iter()
        .map(
            |(id, labels, last_sample_at, last_value, total, sample_count)| SeriesRow {
                id,
                labels: Arc::new(eval::labels_from_json(&labels)),
                last_sample_at,
                last_value,
                total,
                sample_count,
            },
        )
        .collect();
    Ok(Some(FamilySnapshot {
        kind,
        id: fam.id,
        series,
    }))
}

/// Samples of some series of a family in `(after, upto]` (no upper bound
/// when `upto` is `None`), grouped by series and sorted by time; at most
/// `max` rows in all.
async fn load_samples(
    db: &impl ConnectionTrait,
    family: &FamilySnapshot,
    ids: &[i64],
    after: DateTime<Utc>,
    upto: Option<DateTime<Utc>>,
    max: usize,
) -> AppResult<WindowSamples> {
    // Every series of the family: through the family (no id list).
    let set = if ids.len() == family.series.len() && ids.len() > ID_LIST_MAX {
        SeriesSet::Family(family.id)
    } else {
        SeriesSet::Ids(ids)
    };
    let loaded = read_samples(db, set, after, upto, max)
        .await?
        .ok_or_else(|| too_much_data("samples", max))?;
    Ok(loaded
        .into_iter()
        .map(|(id, s)| (id, Arc::new(s)))
        .collect())
}

fn metric_name(expr: &AlertExpr) -> Option<&str> {
    match &expr.source {
        Source::Metric(name) => Some(name),
        Source::Events => None,
    }
}

fn matched<'a>(expr: &AlertExpr, family: &'a FamilySnapshot) -> Vec<&'a SeriesRow> {
    family
        .series
        .iter()
        .filter(|s| matches_all(&expr.matchers, &s.labels))
        .collect()
}

fn window(expr: &AlertExpr) -> TimeDelta {
    let secs = expr.window_secs.unwrap_or(0);
    TimeDelta::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}

fn assemble(
    kind: MetricKind,
    rows: &[&SeriesRow],
    mut samples: WindowSamples,
    extra: impl Fn(&SeriesRow) -> Vec<(DateTime<Utc>, f64)>,
) -> MetricData {
    MetricData {
        kind,
        series: rows
            .iter()
            .map(|row| SeriesData {
                labels: Arc::clone(&row.labels),
                total: row.total,
                sample_count: row.sample_count,
                samples: samples
                    .remove(&row.id)
                    .unwrap_or_else(|| Arc::new(extra(row))),
            })
            .collect(),
    }
}

/// The data a metric expression needs to be evaluated at `now`, or `None`
/// when the metric does not exist (yet).
pub async fn metric_data_at(
    db: &impl ConnectionTrait,
    cache: &FamilyCache,
    expr: &AlertExpr,
    now: DateTime<Utc>,
    lookback: TimeDelta,
    max_samples: usize,
) -> AppResult<Option<MetricData>> {
    let Some(name) = metric_name(expr) else {
        return Ok(None);
    };
    let Some(family) = cache.get(db, name).await? else {
        return Ok(None);
    };
    let rows = matched(expr, &family);
    if expr.function.is_some() {
        // A rule over most of a metric shares the whole window with the
        // other rules of the round; a narrow one reads just its series.
        let samples = if rows.len() * 2 >= family.series.len() && !rows.is_empty() {
            let all = cache
                .family_window(db, &family, now, window(expr), max_samples)
                .await?;
            rows.iter()
                .filter_map(|r| all.get(&r.id).map(|s| (r.id, Arc::clone(s))))
                .collect()
        } else {
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            load_samples(
                db,
                &family,
                &ids,
                now - window(expr),
                Some(now),
                max_samples,
            )
            .await?
        };
        return Ok(Some(assemble(family.kind, &rows, samples, |_| Vec::new())));
    }
    // Instant: the latest sample is on the series row, unless the series has
    // samples stamped after `now`; only those are read from the samples.
    let ahead: Vec<i64> = rows
        .iter()
        .filter(|r| r.last_sample_at.is_some_and(|t| t > now))
        .map(|r| r.id)
        .collect();
    let samples = load_samples(db, &family, &ahead, now - lookback, None, max_samples).await?;
    Ok(Some(assemble(family.kind, &rows, samples, |row| {
        match (row.last_sample_at, row.last_value) {
            (Some(at), Some(v)) => vec![(at, v)],
            _ => Vec::new(),
        }
    })))
}

/// The data a metric expression needs to be evaluated at every time in
/// `[from, to]`, or `None` when the metric does not exist.
pub async fn metric_data_range(
    db: &impl ConnectionTrait,
    expr: &AlertExpr,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    lookback: TimeDelta,
    max_samples: usize,
) -> AppResult<Option<MetricData>> {
    let Some(name) = metric_name(expr) else {
        return Ok(None);
    };
    let Some(family) = load_family(db, name).await? else {
        return Ok(None);
    };
    let rows = matched(expr, &family);
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let (after, upto) = match (expr.function, family.kind) {
        (Some(_), _) => (from - window(expr), Some(to)),
        // A counter's total at t is its total now minus what came after t.
        (None, MetricKind::Counter) => (from, None),
        (None, _) => (from - lookback, Some(to)),
    };
    let samples = load_samples(db, &family, &ids, after, upto, max_samples).await?;
    Ok(Some(assemble(family.kind, &rows, samples, |_| Vec::new())))
}

/// Whether evaluating an events expression needs the events' tags.
fn needs_tags(expr: &AlertExpr) -> bool {
    const FIELDS: [&str; 3] = ["source", "level", "event_type"];
    expr.matchers
        .iter()
        .any(|m| !FIELDS.contains(&m.label.as_str()))
        || expr.by.iter().any(|l| !FIELDS.contains(&l.as_str()))
}

/// The events in `(after, upto]` that the selector's equality matchers on
/// event fields allow (the rest is checked in memory).
fn event_query(
    expr: &AlertExpr,
    after: DateTime<Utc>,
    upto: DateTime<Utc>,
) -> Select<events::Entity> {
    let mut q = events::Entity::find()
        .filter(events::Column::Timestamp.gt(after))
        .filter(events::Column::Timestamp.lte(upto));
    for m in &expr.matchers {
        if m.op != MatchOp::Eq || m.value.is_empty() {
            continue;
        }
        q = match m.label.as_str() {
            "source" => q.filter(events::Column::Source.eq(m.value.clone())),
            "level" => q.filter(events::Column::Level.eq(m.value.clone())),
            "event_type" => q.filter(events::Column::EventType.eq(m.value.clone())),
            _ => q,
        };
    }
    if !counts_own_alert_events(expr) {
        q = q.filter(events::Column::Source.ne(ALERT_EVENT_SOURCE));
    }
    q
}

/// How many events each group of an events expression saw in the window
/// ending at `now`.
pub async fn event_counts_at(
    db: &impl ConnectionTrait,
    expr: &AlertExpr,
    now: DateTime<Utc>,
    max_rows: usize,
) -> AppResult<BTreeMap<LabelSet, u64>> {
    let after = now - window(expr);
    let mut counts: BTreeMap<LabelSet, u64> = BTreeMap::new();
    if needs_tags(expr) {
        let rows: Vec<(String, Option<String>, String, Value)> = event_query(expr, after, now)
            .select_only()
            .column(events::Column::Source)
            .column(events::Column::Level)
            .column(events::Column::EventType)
            .column(events::Column::Tags)
            .limit(max_rows as u64 + 1)
            .into_tuple()
            .all(db)
            .await?;
        if rows.len() > max_rows {
            return Err(too_much_data("events", max_rows));
        }
        for (source, level, event_type, tags) in rows {
            let labels = eval::event_labels(&source, level.as_deref(), &event_type, Some(&tags));
            if let Some(group) = eval::event_group(expr, &labels) {
                *counts.entry(group).or_default() += 1;
            }
        }
    } else {
        let rows: Vec<(String, Option<String>, String, i64)> = event_query(expr, after, now)
            .select_only()
            .column(events::Column::Source)
            .column(events::Column::Level)
            .column(events::Column::EventType)
            .column_as(Expr::col(events::Column::Id).count(), "n")
            .group_by(events::Column::Source)
            .group_by(events::Column::Level)
            .group_by(events::Column::EventType)
            .into_tuple()
            .all(db)
            .await?;
        for (source, level, event_type, n) in rows {
            let labels = eval::event_labels(&source, level.as_deref(), &event_type, None);
            if let Some(group) = eval::event_group(expr, &labels) {
                *counts.entry(group).or_default() += u64::try_from(n).unwrap_or(0);
            }
        }
    }
    Ok(counts)
}

/// The times of the events of each group in `(from - window, to]`, sorted.
pub async fn event_times_range(
    db: &impl ConnectionTrait,
    expr: &AlertExpr,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max_rows: usize,
) -> AppResult<BTreeMap<LabelSet, Vec<DateTime<Utc>>>> {
    let q = event_query(expr, from - window(expr), to)
        .select_only()
        .column(events::Column::Source)
        .column(events::Column::Level)
        .column(events::Column::EventType)
        .column(events::Column::Timestamp)
        .order_by_asc(events::Column::Timestamp)
        .limit(max_rows as u64 + 1);
    let rows: Vec<EventTuple> = if needs_tags(expr) {
        q.column(events::Column::Tags)
            .into_tuple::<(String, Option<String>, String, DateTime<Utc>, Value)>()
            .all(db)
            .await?
            .into_iter()
            .map(|(s, l, t, at, tags)| (s, l, t, at, Some(tags)))
            .collect()
    } else {
        q.into_tuple::<(String, Option<String>, String, DateTime<Utc>)>()
            .all(db)
            .await?
            .into_iter()
            .map(|(s, l, t, at)| (s, l, t, at, None))
            .collect()
    };
    if rows.len() > max_rows {
        return Err(too_much_data("events", max_rows));
    }
    let mut out: BTreeMap<LabelSet, Vec<DateTime<Utc>>> = BTreeMap::new();
    for (source, level, event_type, at, tags) in rows {
        let labels = eval::event_labels(&source, level.as_deref(), &event_type, tags.as_ref());
        if let Some(group) = eval::event_group(expr, &labels) {
            out.entry(group).or_default().push(at);
        }
    }
    Ok(out)
}
