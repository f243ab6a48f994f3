//! Metric services, the Rust API of the metrics domain.
//!
//! - Ingest from clients: [`submit`] and [`submit_batch`] validate, then go
//!   through the group-commit writer in the app state.
//! - From other Rust code inside its own transaction: [`create_metric`] and
//!   [`create_metrics`].
//! - Reading: [`list_samples`] (raw samples), [`metric_names`] and
//!   [`metric_series`] (aggregated points per label set).
//! - Statistics: [`totals`] and [`record_deleted`] for retention.
//!
//! Semantics by type (also in the schema docs): `gauge` = last value wins;
//! `counter` = each sample is a non-negative increment and the series value
//! is the running total; `histogram` and `summary` = each sample is one
//! observation.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    AccessMode, ConnectionTrait, DbBackend, IsolationLevel, QueryResult, Statement,
    TransactionSession, TransactionTrait, Value,
};

use super::aggregate::{Aggregation, MetricKind, bucketize, running_totals};
use super::model::{NewMetric, labels_from_json};
use super::read::{SeriesSet, read_samples, series_in};
use super::store::{DEFAULT_MAX_SERIES, MetricBatch, MetricResult, StoredSample, store_batches};
use crate::alerts::expr::{Matcher, matches_all};
use crate::error::{AppError, AppResult, FieldError};
use crate::ingest::counters::{self, Counter, placeholders};
use crate::ingest::{BatchOutcome, Decoded, MAX_BATCH, Rejected, Totals};
use crate::pagination::{Cursor, Page, Rows, SAMPLE_TAG};
use crate::state::AppState;
use crate::util;

/// Most points one series of `metricSeries` may have.
pub const MAX_POINTS: usize = 11_000;
/// Most series one `metricSeries` call may return.
pub const MAX_SERIES_RESULT: usize = 1000;
/// Most samples one `metricSeries` call may read.
pub const MAX_SAMPLES_READ: usize = 2_000_000;
/// Most series a label-matcher filter may have to examine.
pub const MAX_SERIES_SCANNED: usize = 100_000;
/// Most names, types or matchers in one filter list.
pub const MAX_FILTER_LIST: usize = 100;
/// Default `step` of `metricSeries`, in seconds.
pub const DEFAULT_STEP_SECS: i64 = 60;
/// Largest page size of `metrics`.
pub const MAX_PAGE: u64 = 1000;

/// A [`NewMetric`] from JSON labels: labels that are not an object of
/// strings are reported, not dropped.
pub fn decode_labels(
    name: String,
    metric_type: MetricKind,
    value: f64,
    labels: Option<&serde_json::Value>,
    timestamp: Option<DateTime<Utc>>,
) -> Decoded<NewMetric> {
    let (labels, errors) = match labels_from_json(labels) {
        Ok(l) => (l, Vec::new()),
        Err(e) => (BTreeMap::new(), e),
    };
    Decoded {
        item: NewMetric {
            name,
            metric_type,
            value,
            labels,
            timestamp,
        },
        errors,
    }
}

fn validate(
    decoded: Decoded<NewMetric>,
    now: DateTime<Utc>,
) -> Result<super::model::ValidMetric, Vec<FieldError>> {
    decoded.validate(|m| m.validate(now))
}

fn check_batch_size(n: usize) -> AppResult<()> {
    if n > MAX_BATCH {
        return Err(AppError::bad_input(
            "metrics",
            format!("at most {MAX_BATCH} metrics per call, got {n}"),
        ));
    }
    Ok(())
}

/// Validates one sample and stores it through the group-commit writer.
/// A name used with another type is `CONFLICT`; a new label set beyond the
/// name's series cap is `BAD_USER_INPUT` naming the label with the most
/// distinct values.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn submit(
    state: &AppState,
    new: impl Into<Decoded<NewMetric>>,
) -> AppResult<StoredSample> {
    let valid = validate(new.into(), util::now()).map_err(|e| AppError::from_field_errors(&e))?;
    let batch = MetricBatch {
        samples: vec![(0, valid)],
        atomic: true,
    };
    let mut result = state.ingest.metrics.submit(batch).await?;
    if let Some((_, refusal)) = result.refused.pop() {
        return Err(refusal.into_error());
    }
    result
        .stored
        .pop()
        .map(|(_, s)| s)
        .ok_or_else(|| AppError::internal(std::io::Error::other("no sample was stored")))
}

/// Validates a batch (at most 1,000) and stores it through the writer in one
/// transaction: invalid, conflicting or over-cap samples are reported by
/// index and the rest stored, unless `atomic`, in which case nothing is
/// stored when anything is refused.
#[tracing::instrument(level = "debug", skip_all, fields(n = items.len(), atomic))]
pub async fn submit_batch(
    state: &AppState,
    items: Vec<Decoded<NewMetric>>,
    atomic: bool,
) -> AppResult<BatchOutcome<StoredSample>> {
    check_batch_size(items.len())?;
    let now = util::now();
    let mut samples = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match validate(item, now) {
            Ok(valid) => samples.push((index, valid)),
            Err(errors) => rejected.push(Rejected { index, errors }),
        }
    }
    if samples.is_empty() || (atomic && !rejected.is_empty()) {
        return Ok(BatchOutcome {
            accepted: Vec::new(),
            rejected,
        });
    }
    let result = state
        .ingest
        .metrics
        .submit(MetricBatch { samples, atomic })
        .await?;
    Ok(outcome(result, rejected))
}

fn outcome(result: MetricResult, mut rejected: Vec<Rejected>) -> BatchOutcome<StoredSample> {
    rejected.extend(result.refused.into_iter().map(|(index, r)| Rejected {
        index,
        errors: vec![r.field_error().clone()],
    }));
    rejected.sort_by_key(|r| r.index);
    BatchOutcome {
        accepted: result.stored.into_iter().map(|(_, s)| s).collect(),
        rejected,
    }
}

/// Validates and stores one sample through `db` (a connection, or an open
/// transaction where it runs in a savepoint), with the default series cap
/// of 10,000 label sets per name. Errors as [`submit`].
///
/// ```no_run
/// # async fn demo(db: &sea_orm::DatabaseConnection) -> sightline::AppResult<()> {
/// use sightline::metrics::{create_metric, NewMetric};
/// create_metric(db, NewMetric::counter("jobs_done_total", 1.0, &[("queue", "mail")])).await?;
/// # Ok(()) }
/// ```
pub async fn create_metric<C>(db: &C, new: NewMetric) -> AppResult<StoredSample>
where
    C: ConnectionTrait + TransactionTrait,
{
    let mut stored = create_metrics(db, vec![new]).await?;
    stored
        .pop()
        .ok_or_else(|| AppError::internal(std::io::Error::other("no sample was stored")))
}

/// Validates and stores several samples through `db`, all or nothing: the
/// first problem is returned with its field prefixed by `metrics[i]`.
pub async fn create_metrics<C>(db: &C, metrics: Vec<NewMetric>) -> AppResult<Vec<StoredSample>>
where
    C: ConnectionTrait + TransactionTrait,
{
    check_batch_size(metrics.len())?;
    let now = util::now();
    let mut samples = Vec::with_capacity(metrics.len());
    for (i, new) in metrics.into_iter().enumerate() {
        let valid = new
            .validate(now)
            .map_err(|e| AppError::from_field_errors(&e).nest_field(&format!("metrics[{i}]")))?;
        samples.push((i, valid));
    }
    let batch = MetricBatch {
        samples,
        atomic: true,
    };
    let txn = crate::db::begin_write(db).await?;
    let mut results = store_batches(&txn, &[&batch], DEFAULT_MAX_SERIES).await?;
    let mut result = results.pop().unwrap_or_default();
    if let Some((i, refusal)) = result.refused.drain(..).next() {
        txn.rollback().await?;
        let mut e = refusal.into_error();
        e.field = Some(format!(
            "metrics[{i}].{}",
            e.field.as_deref().unwrap_or("value")
        ));
        return Err(e);
    }
    txn.commit().await?;
    Ok(result.stored.into_iter().map(|(_, s)| s).collect())
}

/// Samples stored and received in the last hour, from the counters kept by
/// the write path (no table scan).
pub async fn totals(db: &impl ConnectionTrait) -> AppResult<Totals> {
    counters::totals(db, Counter::MetricSamples).await
}

/// Keeps [`totals`] right when `n` samples are deleted: call it in the
/// deleting transaction (just before committing; it takes the counter lock).
pub async fn record_deleted(txn: &impl ConnectionTrait, n: u64) -> AppResult<()> {
    counters::record_deleted(txn, Counter::MetricSamples, n).await
}

/// Which raw samples to list.
#[derive(Debug, Clone, Default)]
pub struct MetricFilter {
    /// Any of these names.
    pub names: Vec<String>,
    /// Any of these types.
    pub metric_types: Vec<MetricKind>,
    /// All of these label matchers (Prometheus semantics: a missing label
    /// is the empty string; regexes are fully anchored).
    pub matchers: Vec<Matcher>,
    /// Timestamp at or after.
    pub from: Option<DateTime<Utc>>,
    /// Timestamp before.
    pub to: Option<DateTime<Utc>>,
}

impl MetricFilter {
    /// Checks list sizes and the time range.
    pub fn validate(self) -> AppResult<MetricFilter> {
        for (field, len) in [
            ("names", self.names.len()),
            ("metricTypes", self.metric_types.len()),
            ("matchers", self.matchers.len()),
        ] {
            if len > MAX_FILTER_LIST {
                return Err(AppError::bad_input(
                    format!("filter.{field}"),
                    format!("at most {MAX_FILTER_LIST} entries are allowed, got {len}"),
                ));
            }
        }
        if self
            .names
            .iter()
            .any(|n| n.contains('\0') || n.len() > 1000)
        {
            return Err(AppError::bad_input(
                "filter.names",
                "names are at most 1,000 bytes, without NUL",
            ));
        }
        if let (Some(from), Some(to)) = (self.from, self.to)
            && to < from
        {
            return Err(AppError::bad_input(
                "filter.to",
                "to must not be before from",
            ));
        }
        Ok(self)
    }
}

/// Builds a matcher from client input; errors name `field`.
pub fn matcher(
    field: &str,
    label: &str,
    op: crate::alerts::expr::MatchOp,
    value: &str,
) -> AppResult<Matcher> {
    if label.contains('\0') || value.contains('\0') {
        return Err(AppError::bad_input(field, "matchers must not contain NUL"));
    }
    Matcher::new(label, op, value).map_err(|why| AppError::bad_input(field, why))
}

fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, placeholders(backend, sql), values)
}

fn labels_at(row: &QueryResult, index: usize) -> AppResult<BTreeMap<String, String>> {
    let value: serde_json::Value = row.try_get_by_index(index)?;
    Ok(match value {
        serde_json::Value::String(text) => serde_json::from_str(&text).unwrap_or_default(),
        other => serde_json::from_value(other).unwrap_or_default(),
    })
}

fn kind_at(row: &QueryResult, index: usize) -> AppResult<MetricKind> {
    let text: String = row.try_get_by_index(index)?;
    text.parse::<MetricKind>()
        .map_err(|e| AppError::internal(std::io::Error::other(e)))
}

/// Appends `col IN (...)` with placeholders to a WHERE list.
fn push_in(where_: &mut Vec<String>, values: &mut Vec<Value>, col: &str, items: Vec<Value>) {
    let mut marks = Vec::with_capacity(items.len());
    for v in items {
        values.push(v);
        marks.push(format!("${}", values.len()));
    }
    where_.push(format!("{col} IN ({})", marks.join(",")));
}

/// The ids of the series matching names, types and matchers, or `None`
/// when no matcher restricts them (the join on names and types suffices).
async fn matching_series(
    db: &impl ConnectionTrait,
    filter: &MetricFilter,
) -> AppResult<Option<Vec<i64>>> {
    if filter.matchers.is_empty() {
        return Ok(None);
    }
    let backend = db.get_database_backend();
    let mut where_ = vec!["1 = 1".to_owned()];
    let mut values = Vec::new();
    if !filter.names.is_empty() {
        let items = filter
            .names
            .iter()
            .map(|n| Value::from(n.as_str()))
            .collect();
        push_in(&mut where_, &mut values, "f.name", items);
    }
    if !filter.metric_types.is_empty() {
        let items = filter
            .metric_types
            .iter()
            .map(|t| Value::from(t.as_str()))
            .collect();
        push_in(&mut where_, &mut values, "f.metric_type", items);
    }
    let sql = format!(
        "SELECT ser.id, ser.labels FROM metric_series ser \
         JOIN metric_families f ON f.id = ser.family_id WHERE {} LIMIT {}",
        where_.join(" AND "),
        MAX_SERIES_SCANNED + 1
    );
    let rows = db.query_all_raw(stmt(backend, &sql, values)).await?;
    if rows.len() > MAX_SERIES_SCANNED {
        return Err(AppError::bad_input(
            "filter.matchers",
            format!(
                "more than {MAX_SERIES_SCANNED} series would have to be examined; add names or metricTypes"
            ),
        ));
    }
    let mut ids = Vec::new();
    for row in rows {
        let labels = labels_at(&row, 1)?;
        if matches_all(&filter.matchers, &labels) {
            ids.push(row.try_get_by_index::<i64>(0)?);
        }
    }
    Ok(Some(ids))
}

/// The cursor of a sample: `(timestamp, id)` under the sample tag.
pub fn sample_cursor(s: &StoredSample) -> Cursor {
    Cursor::new(s.timestamp, uuid::Uuid::from_u64_pair(0, s.id as u64))
}

fn cursor_id(c: &Cursor) -> i64 {
    c.id.as_u64_pair().1 as i64
}

/// Decodes a sample cursor; other kinds are `BAD_USER_INPUT`.
pub fn decode_sample_cursor(s: &str) -> AppResult<Cursor> {
    match Cursor::decode_tagged(s)? {
        (SAMPLE_TAG, c) if c.id.as_u64_pair().0 == 0 => Ok(c),
        _ => Err(AppError::bad_input("cursor", "invalid cursor")),
    }
}

async fn where_clause(
    db: &impl ConnectionTrait,
    filter: &MetricFilter,
    values: &mut Vec<Value>,
) -> AppResult<Option<Vec<String>>> {
    let backend = db.get_database_backend();
    let mut where_ = vec!["1 = 1".to_owned()];
    if let Some(ids) = matching_series(db, filter).await? {
        if ids.is_empty() {
            return Ok(None);
        }
        let clause = series_in(backend, values, ids);
        where_.push(clause);
    }
    if !filter.names.is_empty() {
        let items = filter
            .names
            .iter()
            .map(|n| Value::from(n.as_str()))
            .collect();
        push_in(&mut where_, values, "f.name", items);
    }
    if !filter.metric_types.is_empty() {
        let items = filter
            .metric_types
            .iter()
            .map(|t| Value::from(t.as_str()))
            .collect();
        push_in(&mut where_, values, "f.metric_type", items);
    }
    if let Some(from) = filter.from {
        values.push(from.into());
        where_.push(format!("s.\"timestamp\" >= ${}", values.len()));
    }
    if let Some(to) = filter.to {
        values.push(to.into());
        where_.push(format!("s.\"timestamp\" < ${}", values.len()));
    }
    Ok(Some(where_))
}

const SAMPLE_FROM: &str = "FROM metric_samples s JOIN metric_series ser ON ser.id = s.series_id \
     JOIN metric_families f ON f.id = ser.family_id";

/// A page of raw samples matching `filter`, ordered by `(timestamp, id)`.
pub async fn list_samples(
    db: &impl ConnectionTrait,
    filter: &MetricFilter,
    page: &Page,
    offset: u64,
) -> AppResult<Rows<StoredSample>> {
    let backend = db.get_database_backend();
    let mut values = Vec::new();
    let Some(mut where_) = where_clause(db, filter, &mut values).await? else {
        return Ok(Rows::new(Vec::new(), page, sample_cursor));
    };
    for (c, op) in [(&page.after, ">"), (&page.before, "<")] {
        if let Some(c) = c {
            values.push(c.at.into());
            values.push(cursor_id(c).into());
            where_.push(format!(
                "(s.\"timestamp\", s.id) {op} (${}, ${})",
                values.len() - 1,
                values.len()
            ));
        }
    }
    let dir = if page.backward { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT s.id, s.series_id, s.\"timestamp\", s.value, ser.labels, f.name, f.metric_type \
         {SAMPLE_FROM} WHERE {} ORDER BY s.\"timestamp\" {dir}, s.id {dir} LIMIT {} OFFSET {offset}",
        where_.join(" AND "),
        page.limit + 1
    );
    let rows = db.query_all_raw(stmt(backend, &sql, values)).await?;
    let mut samples = Vec::with_capacity(rows.len());
    for row in rows {
        samples.push(StoredSample {
            id: row.try_get_by_index(0)?,
            series_id: row.try_get_by_index(1)?,
            timestamp: row.try_get_by_index(2)?,
            value: row.try_get_by_index(3)?,
            labels: labels_at(&row, 4)?,
            name: row.try_get_by_index(5)?,
            metric_type: kind_at(&row, 6)?,
        });
    }
    let mut rows = Rows::new(samples, page, sample_cursor);
    rows.has_previous |= offset > 0;
    Ok(rows)
}

/// How many samples match `filter`.
pub async fn count_samples(db: &impl ConnectionTrait, filter: &MetricFilter) -> AppResult<u64> {
    let backend = db.get_database_backend();
    let mut values = Vec::new();
    let Some(where_) = where_clause(db, filter, &mut values).await? else {
        return Ok(0);
    };
    let sql = format!(
        "SELECT COUNT(*) {SAMPLE_FROM} WHERE {}",
        where_.join(" AND ")
    );
    let row = db.query_one_raw(stmt(backend, &sql, values)).await?;
    let n: i64 = match row {
        Some(r) => r.try_get_by_index(0)?,
        None => 0,
    };
    Ok(n.max(0) as u64)
}

/// A metric name and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricName {
    /// The name.
    pub name: String,
    /// Its type.
    pub metric_type: MetricKind,
    /// How many series (label sets) it has.
    pub series_count: i64,
}

/// Every metric name, sorted.
pub async fn metric_names(db: &impl ConnectionTrait) -> AppResult<Vec<MetricName>> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            backend,
            "SELECT name, metric_type, series_count FROM metric_families ORDER BY name",
            Vec::new(),
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(MetricName {
                name: row.try_get_by_index(0)?,
                metric_type: kind_at(row, 1)?,
                series_count: row.try_get_by_index(2)?,
            })
        })
        .collect()
}

/// A `metricSeries` request.
#[derive(Debug, Clone)]
pub struct SeriesQuery {
    /// The metric name.
    pub name: String,
    /// Label matchers (all must hold).
    pub matchers: Vec<Matcher>,
    /// Range start (default: `to` minus one hour).
    pub from: Option<DateTime<Utc>>,
    /// Range end (default: now).
    pub to: Option<DateTime<Utc>>,
    /// Step in seconds (default 60).
    pub step_secs: Option<i64>,
    /// How each step's samples become one point.
    pub aggregation: Aggregation,
}

/// The points of one label set.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPoints {
    /// The labels.
    pub labels: BTreeMap<String, String>,
    /// One point per step that has samples, ascending; non-finite results
    /// are left out.
    pub points: Vec<(DateTime<Utc>, f64)>,
}

/// Whether an aggregation reads a counter's increments (`SUM` = increase,
/// `RATE`, `COUNT`) rather than its running total.
fn reads_increments(agg: Aggregation) -> bool {
    matches!(
        agg,
        Aggregation::Sum | Aggregation::Rate | Aggregation::Count
    )
}

/// One point per step for every label set of `name` matching the matchers
/// (see [`bucketize`]: step `t` covers samples in `(t - step, t]`). For
/// counters, `SUM` is the increase in each step, `RATE` the per-second
/// increase and `COUNT` the number of increments, while `AVG`, `MIN`,
/// `MAX`, `LAST` and the percentiles describe the running total. At most
/// 11,000 points per series.
pub async fn metric_series<C>(db: &C, q: &SeriesQuery) -> AppResult<Vec<SeriesPoints>>
where
    C: ConnectionTrait + TransactionTrait,
{
    let to = q.to.unwrap_or_else(util::now);
    let from = q.from.unwrap_or(to - Duration::hours(1));
    let step = q.step_secs.unwrap_or(DEFAULT_STEP_SECS);
    if to < from {
        return Err(AppError::bad_input("to", "to must not be before from"));
    }
    if q.name.is_empty() || q.name.contains('\0') || q.name.len() > 1000 {
        return Err(AppError::bad_input(
            "name",
            "name must be 1 to 1,000 bytes, without NUL",
        ));
    }
    bucketize(
        q.aggregation,
        MetricKind::Gauge,
        &[],
        from,
        to,
        step,
        MAX_POINTS,
    )
    .map_err(|why| AppError::bad_input("step", why))?;
    let lower = from - Duration::seconds(step);

    let backend = db.get_database_backend();
    let txn = match backend {
        DbBackend::Postgres => {
            db.begin_with_config(
                Some(IsolationLevel::RepeatableRead),
                Some(AccessMode::ReadOnly),
            )
            .await?
        }
        _ => db.begin().await?,
    };
    let family = txn
        .query_one_raw(stmt(
            backend,
            "SELECT id, metric_type FROM metric_families WHERE name = $1",
            vec![q.name.as_str().into()],
        ))
        .await?;
    let Some(family) = family else {
        return Ok(Vec::new());
    };
    let family_id: i64 = family.try_get_by_index(0)?;
    let kind = kind_at(&family, 1)?;
    let rows = txn
        .query_all_raw(stmt(
            backend,
            "SELECT id, labels, total FROM metric_series WHERE family_id = $1 ORDER BY id",
            vec![family_id.into()],
        ))
        .await?;
    let mut series: Vec<(i64, BTreeMap<String, String>, f64)> = Vec::new();
    for row in rows {
        let labels = labels_at(&row, 1)?;
        if matches_all(&q.matchers, &labels) {
            series.push((row.try_get_by_index(0)?, labels, row.try_get_by_index(2)?));
        }
    }
    if series.len() > MAX_SERIES_RESULT {
        return Err(AppError::bad_input(
            "matchers",
            format!(
                "{} series match; at most {MAX_SERIES_RESULT} may be returned at once: narrow the matchers",
                series.len()
            ),
        ));
    }
    if series.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = series.iter().map(|s| s.0).collect();
    let Some(mut samples) = read_samples(
        &txn,
        SeriesSet::Ids(&ids),
        lower,
        Some(to),
        MAX_SAMPLES_READ,
    )
    .await?
    else {
        return Err(AppError::bad_input(
            "from",
            format!(
                "more than {MAX_SAMPLES_READ} samples fall in this range; use a shorter range or narrower matchers"
            ),
        ));
    };
    let as_totals = kind == MetricKind::Counter && !reads_increments(q.aggregation);
    let mut later: HashMap<i64, f64> = HashMap::new();
    if as_totals {
        let mut values = Vec::new();
        let within = series_in(backend, &mut values, ids);
        values.push(to.into());
        let sql = format!(
            "SELECT s.series_id, SUM(s.value) FROM metric_samples s WHERE {within} \
             AND s.\"timestamp\" > ${} GROUP BY s.series_id",
            values.len()
        );
        for row in txn.query_all_raw(stmt(backend, &sql, values)).await? {
            later.insert(row.try_get_by_index(0)?, row.try_get_by_index(1)?);
        }
    }
    txn.commit().await?;

    let mut out = Vec::with_capacity(series.len());
    for (id, labels, total) in series {
        let raw = samples.remove(&id).unwrap_or_default();
        let points = if as_totals {
            let in_range: f64 = raw.iter().map(|(_, v)| v).sum();
            let start = total - in_range - later.get(&id).copied().unwrap_or(0.0);
            let totals = running_totals(&raw, start);
            bucketize(
                q.aggregation,
                MetricKind::Gauge,
                &totals,
                from,
                to,
                step,
                MAX_POINTS,
            )
        } else {
            bucketize(q.aggregation, kind, &raw, from, to, step, MAX_POINTS)
        }
        .map_err(|why| AppError::bad_input("step", why))?;
        out.push(SeriesPoints {
            labels,
            points: points.into_iter().filter(|(_, v)| v.is_finite()).collect(),
        });
    }
    Ok(out)
}
