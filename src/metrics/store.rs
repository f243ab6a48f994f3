//! Writing metric samples in bulk: the metrics half of group commit
//! ([`crate::ingest::writer`]), shared with [`super::service::create_metric`].
//!
//! A group's transaction first takes the metric-samples counter lock, so
//! metric writes (from every replica) run one at a time: the type lock per
//! name and the per-name series cap are checked without races. For each
//! submission it resolves families (creating new names with their type),
//! then series (creating new label sets within the cap), inserts the samples
//! and updates each series' running figures (`sample_count`, `total`,
//! `last_value`, `last_sample_at`) relative to what is stored. An atomic
//! submission runs in a savepoint that is rolled back when any sample is
//! refused, so it writes nothing at all then.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, Statement,
    TransactionSession, TransactionTrait, Value,
};

use super::model::{MetricKind, ValidMetric};
use crate::error::{AppError, AppResult, FieldError};
use crate::ingest::counters::{self, Counter, placeholders};
use crate::ingest::writer::Store;
use crate::util;

/// Default most series (label sets) per metric name.
pub const DEFAULT_MAX_SERIES: u64 = 10_000;

/// Samples written as one unit (one request).
#[derive(Debug, Clone)]
pub struct MetricBatch {
    /// Validated samples with their index in the request.
    pub samples: Vec<(usize, ValidMetric)>,
    /// Write nothing if any sample is refused.
    pub atomic: bool,
}

/// A stored sample.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSample {
    /// Sample id.
    pub id: i64,
    /// Series id.
    pub series_id: i64,
    /// Metric name.
    pub name: String,
    /// Metric type.
    pub metric_type: MetricKind,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value as stored.
    pub value: f64,
    /// Sample time.
    pub timestamp: DateTime<Utc>,
}

/// Why a valid sample was refused once compared with what is stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The name already has another type (`CONFLICT`).
    Conflict(FieldError),
    /// The name has reached its series cap (`BAD_USER_INPUT`).
    Invalid(FieldError),
}

impl Refusal {
    /// The field error, whatever the kind.
    pub fn field_error(&self) -> &FieldError {
        match self {
            Refusal::Conflict(e) | Refusal::Invalid(e) => e,
        }
    }

    /// As an error for a single-sample call.
    pub fn into_error(self) -> AppError {
        match self {
            Refusal::Conflict(e) => AppError::conflict(e.message).with_field(e.field),
            Refusal::Invalid(e) => AppError::bad_input(e.field, e.message),
        }
    }
}

/// What happened to one [`MetricBatch`].
#[derive(Debug, Clone, Default)]
pub struct MetricResult {
    /// Stored samples with their index in the request, in order.
    pub stored: Vec<(usize, StoredSample)>,
    /// Refused samples with their index in the request.
    pub refused: Vec<(usize, Refusal)>,
}

#[derive(Debug, Clone)]
struct Family {
    id: i64,
    kind: MetricKind,
    series_count: i64,
    added: i64,
}

/// Families and series already resolved in this transaction.
#[derive(Debug, Clone, Default)]
struct Cache {
    families: HashMap<String, Family>,
    series: HashMap<(i64, String), i64>,
}

fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, placeholders(backend, sql), values)
}

fn kind_of(text: &str) -> AppResult<MetricKind> {
    text.parse::<MetricKind>()
        .map_err(|e| AppError::internal(std::io::Error::other(e)))
}

async fn load_families(
    db: &impl ConnectionTrait,
    names: &[&str],
    cache: &mut Cache,
) -> AppResult<()> {
    if names.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let list: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT id, name, metric_type, series_count FROM metric_families WHERE name IN ({})",
        list.join(",")
    );
    let values = names.iter().map(|n| Value::from(*n)).collect();
    for row in db.query_all_raw(stmt(backend, &sql, values)).await? {
        let name: String = row.try_get_by_index(1)?;
        let kind: String = row.try_get_by_index(2)?;
        cache.families.insert(
            name,
            Family {
                id: row.try_get_by_index(0)?,
                kind: kind_of(&kind)?,
                series_count: row.try_get_by_index(3)?,
                added: 0,
            },
        );
    }
    Ok(())
}

async fn create_family(
    db: &impl ConnectionTrait,
    name: &str,
    kind: MetricKind,
    now: DateTime<Utc>,
    cache: &mut Cache,
) -> AppResult<()> {
    let backend = db.get_database_backend();
    let inserted = db
        .query_one_raw(stmt(
            backend,
            "INSERT INTO metric_families (name, metric_type, series_count, created_at, updated_at) \
             VALUES ($1, $2, 0, $3, $3) ON CONFLICT (name) DO NOTHING RETURNING id",
            vec![name.into(), kind.as_str().into(), now.into()],
        ))
        .await?;
    match inserted {
        Some(row) => {
            cache.families.insert(
                name.to_owned(),
                Family {
                    id: row.try_get_by_index(0)?,
                    kind,
                    series_count: 0,
                    added: 0,
                },
            );
            Ok(())
        }
        None => load_families(db, &[name], cache).await,
    }
}

async fn load_series(
    db: &impl ConnectionTrait,
    keys: &[(i64, &str)],
    cache: &mut Cache,
) -> AppResult<()> {
    let backend = db.get_database_backend();
    for chunk in keys.chunks(500) {
        let families: HashSet<i64> = chunk.iter().map(|(f, _)| *f).collect();
        let prints: HashSet<&str> = chunk.iter().map(|(_, p)| *p).collect();
        let mut values: Vec<Value> = Vec::new();
        let mut fam_list = Vec::new();
        for f in &families {
            values.push((*f).into());
            fam_list.push(format!("${}", values.len()));
        }
        let mut print_list = Vec::new();
        for p in &prints {
            values.push((*p).into());
            print_list.push(format!("${}", values.len()));
        }
        let sql = format!(
            "SELECT id, family_id, fingerprint FROM metric_series \
             WHERE family_id IN ({}) AND fingerprint IN ({})",
            fam_list.join(","),
            print_list.join(",")
        );
        for row in db.query_all_raw(stmt(backend, &sql, values)).await? {
            let id: i64 = row.try_get_by_index(0)?;
            let family: i64 = row.try_get_by_index(1)?;
            let print: String = row.try_get_by_index(2)?;
            cache.series.insert((family, print), id);
        }
    }
    Ok(())
}

async fn create_series(
    db: &impl ConnectionTrait,
    family_id: i64,
    sample: &ValidMetric,
    now: DateTime<Utc>,
    cache: &mut Cache,
) -> AppResult<bool> {
    let backend = db.get_database_backend();
    let labels_sql = match backend {
        DbBackend::Postgres => "$3::jsonb",
        _ => "$3",
    };
    let inserted = db
        .query_one_raw(stmt(
            backend,
            &format!(
                "INSERT INTO metric_series (family_id, labels, fingerprint, created_at, total, sample_count) \
                 VALUES ($1, {labels_sql}, $2, $4, 0, 0) ON CONFLICT (family_id, fingerprint) DO NOTHING RETURNING id"
            ),
            vec![
                family_id.into(),
                sample.fingerprint.clone().into(),
                sample.labels_json.clone().into(),
                now.into(),
            ],
        ))
        .await?;
    match inserted {
        Some(row) => {
            cache.series.insert(
                (family_id, sample.fingerprint.clone()),
                row.try_get_by_index(0)?,
            );
            Ok(true)
        }
        None => {
            load_series(db, &[(family_id, sample.fingerprint.as_str())], cache).await?;
            Ok(false)
        }
    }
}

/// The message for a sample refused by the series cap: names the label
/// with the most distinct values, counting the refused sample's labels.
async fn cap_message(
    db: &impl ConnectionTrait,
    name: &str,
    family_id: i64,
    cap: u64,
    sample: &ValidMetric,
) -> AppResult<String> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            backend,
            "SELECT labels FROM metric_series WHERE family_id = $1",
            vec![family_id.into()],
        ))
        .await?;
    let mut distinct: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    let mut add = |labels: &BTreeMap<String, String>| {
        for (k, v) in labels {
            distinct.entry(k.clone()).or_default().insert(v.clone());
        }
    };
    for row in rows {
        let value: serde_json::Value = row.try_get_by_index(0)?;
        let labels: BTreeMap<String, String> = match value {
            serde_json::Value::String(text) => serde_json::from_str(&text).unwrap_or_default(),
            other => serde_json::from_value(other).unwrap_or_default(),
        };
        add(&labels);
    }
    add(&sample.labels);
    let worst = distinct
        .iter()
        .map(|(k, v)| (v.len(), k))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)));
    Ok(match worst {
        Some((n, label)) => format!(
            "metric `{name}` has reached its limit of {cap} series (label sets); the label \
             `{label}` has the most distinct values ({n}): drop it or give it fewer values"
        ),
        None => format!("metric `{name}` has reached its limit of {cap} series (label sets)"),
    })
}

async fn insert_samples(
    db: &impl ConnectionTrait,
    rows: &[(i64, DateTime<Utc>, f64)],
) -> AppResult<Vec<i64>> {
    let backend = db.get_database_backend();
    let mut ids = Vec::with_capacity(rows.len());
    match backend {
        DbBackend::Postgres => {
            let series: Vec<i64> = rows.iter().map(|r| r.0).collect();
            let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.1).collect();
            let values: Vec<f64> = rows.iter().map(|r| r.2).collect();
            let result = db
                .query_all_raw(Statement::from_sql_and_values(
                    backend,
                    "INSERT INTO metric_samples (series_id, \"timestamp\", value) \
                     SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::float8[]) RETURNING id",
                    vec![series.into(), times.into(), values.into()],
                ))
                .await?;
            for row in result {
                ids.push(row.try_get_by_index::<i64>(0)?);
            }
            ids.sort_unstable();
        }
        _ => {
            let mut rest = rows;
            while !rest.is_empty() {
                let size = [256, 64, 16, 4, 1]
                    .into_iter()
                    .find(|&s| s <= rest.len())
                    .unwrap_or(1);
                let (chunk, tail) = rest.split_at(size);
                let mut sql = String::from(
                    "INSERT INTO metric_samples (series_id, \"timestamp\", value) VALUES ",
                );
                let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 3);
                for (i, (series, at, value)) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push_str("(?,?,?)");
                    values.push((*series).into());
                    values.push((*at).into());
                    values.push((*value).into());
                }
                sql.push_str(" RETURNING id");
                let mut chunk_ids = Vec::with_capacity(chunk.len());
                for row in db
                    .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
                    .await?
                {
                    chunk_ids.push(row.try_get_by_index::<i64>(0)?);
                }
                chunk_ids.sort_unstable();
                ids.extend(chunk_ids);
                rest = tail;
            }
        }
    }
    if ids.len() != rows.len() {
        return Err(AppError::internal(std::io::Error::other(
            "sample insert returned an unexpected number of ids",
        )));
    }
    Ok(ids)
}

/// What a group adds to one series.
struct SeriesDelta {
    id: i64,
    n: i64,
    inc: f64,
    at: DateTime<Utc>,
    last: f64,
    is_counter: bool,
}

async fn update_series(db: &impl ConnectionTrait, deltas: &[SeriesDelta]) -> AppResult<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    match backend {
        DbBackend::Postgres => {
            let ids: Vec<i64> = deltas.iter().map(|d| d.id).collect();
            let ns: Vec<i64> = deltas.iter().map(|d| d.n).collect();
            let incs: Vec<f64> = deltas.iter().map(|d| d.inc).collect();
            let ats: Vec<DateTime<Utc>> = deltas.iter().map(|d| d.at).collect();
            let lasts: Vec<f64> = deltas.iter().map(|d| d.last).collect();
            let counters: Vec<bool> = deltas.iter().map(|d| d.is_counter).collect();
            db.execute_raw(Statement::from_sql_and_values(
                backend,
                "UPDATE metric_series AS s SET \
                 sample_count = s.sample_count + v.n, \
                 total = s.total + v.inc, \
                 last_value = CASE WHEN v.is_counter THEN s.total + v.inc \
                   WHEN s.last_sample_at IS NULL OR v.at >= s.last_sample_at THEN v.last \
                   ELSE s.last_value END, \
                 last_sample_at = CASE WHEN s.last_sample_at IS NULL OR v.at >= s.last_sample_at \
                   THEN v.at ELSE s.last_sample_at END \
                 FROM UNNEST($1::bigint[], $2::bigint[], $3::float8[], $4::timestamptz[], \
                   $5::float8[], $6::bool[]) AS v(id, n, inc, at, last, is_counter) \
                 WHERE s.id = v.id",
                vec![
                    ids.into(),
                    ns.into(),
                    incs.into(),
                    ats.into(),
                    lasts.into(),
                    counters.into(),
                ],
            ))
            .await?;
        }
        _ => {
            for d in deltas {
                db.execute_raw(Statement::from_sql_and_values(
                    backend,
                    "UPDATE metric_series SET sample_count = sample_count + ?1, total = total + ?2, \
                     last_value = CASE WHEN ?6 THEN total + ?2 \
                       WHEN last_sample_at IS NULL OR ?3 >= last_sample_at THEN ?4 \
                       ELSE last_value END, \
                     last_sample_at = CASE WHEN last_sample_at IS NULL OR ?3 >= last_sample_at \
                       THEN ?3 ELSE last_sample_at END \
                     WHERE id = ?5",
                    vec![
                        d.n.into(),
                        d.inc.into(),
                        d.at.into(),
                        d.last.into(),
                        d.id.into(),
                        d.is_counter.into(),
                    ],
                ))
                .await?;
            }
        }
    }
    Ok(())
}

/// Writes one submission through `db` using and extending `cache`.
async fn write_batch(
    db: &impl ConnectionTrait,
    batch: &MetricBatch,
    cap: u64,
    now: DateTime<Utc>,
    cache: &mut Cache,
) -> AppResult<MetricResult> {
    let mut result = MetricResult::default();
    let mut missing: Vec<&str> = batch
        .samples
        .iter()
        .map(|(_, s)| s.name.as_str())
        .filter(|n| !cache.families.contains_key(*n))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    load_families(db, &missing, cache).await?;

    let mut candidates: Vec<(usize, &ValidMetric, i64)> = Vec::with_capacity(batch.samples.len());
    for (index, sample) in &batch.samples {
        if !cache.families.contains_key(&sample.name) {
            create_family(db, &sample.name, sample.metric_type, now, cache).await?;
        }
        let family = cache
            .families
            .get(&sample.name)
            .ok_or_else(|| AppError::internal(std::io::Error::other("metric family vanished")))?;
        if family.kind != sample.metric_type {
            result.refused.push((
                *index,
                Refusal::Conflict(FieldError::new(
                    "metricType",
                    format!(
                        "metric `{}` is a {}; a name keeps its first type (got {})",
                        sample.name, family.kind, sample.metric_type
                    ),
                )),
            ));
            continue;
        }
        candidates.push((*index, sample, family.id));
    }

    let unknown: Vec<(i64, &str)> = candidates
        .iter()
        .filter(|(_, s, f)| !cache.series.contains_key(&(*f, s.fingerprint.clone())))
        .map(|(_, s, f)| (*f, s.fingerprint.as_str()))
        .collect();
    load_series(db, &unknown, cache).await?;

    let mut accepted: Vec<(usize, &ValidMetric, i64)> = Vec::with_capacity(candidates.len());
    let mut cap_messages: HashMap<i64, String> = HashMap::new();
    for (index, sample, family_id) in candidates {
        let key = (family_id, sample.fingerprint.clone());
        if let Some(series_id) = cache.series.get(&key) {
            accepted.push((index, sample, *series_id));
            continue;
        }
        let count = cache
            .families
            .get(&sample.name)
            .map(|f| f.series_count)
            .unwrap_or(0);
        if count as u64 >= cap {
            let message = match cap_messages.get(&family_id) {
                Some(m) => m.clone(),
                None => {
                    let m = cap_message(db, &sample.name, family_id, cap, sample).await?;
                    cap_messages.insert(family_id, m.clone());
                    m
                }
            };
            result
                .refused
                .push((index, Refusal::Invalid(FieldError::new("labels", message))));
            continue;
        }
        if create_series(db, family_id, sample, now, cache).await?
            && let Some(f) = cache.families.get_mut(&sample.name)
        {
            f.series_count += 1;
            f.added += 1;
        }
        let series_id = *cache
            .series
            .get(&key)
            .ok_or_else(|| AppError::internal(std::io::Error::other("metric series vanished")))?;
        accepted.push((index, sample, series_id));
    }
    result.refused.sort_by_key(|(i, _)| *i);
    if batch.atomic && !result.refused.is_empty() {
        return Ok(result);
    }

    let rows: Vec<(i64, DateTime<Utc>, f64)> = accepted
        .iter()
        .map(|(_, s, series)| (*series, s.timestamp, s.value))
        .collect();
    let ids = if rows.is_empty() {
        Vec::new()
    } else {
        insert_samples(db, &rows).await?
    };

    let mut deltas: Vec<SeriesDelta> = Vec::new();
    let mut by_series: HashMap<i64, usize> = HashMap::new();
    for (_, sample, series_id) in &accepted {
        let inc = match sample.metric_type {
            MetricKind::Gauge => 0.0,
            MetricKind::Counter | MetricKind::Histogram | MetricKind::Summary => sample.value,
        };
        match by_series.get(series_id) {
            Some(&i) => {
                let d = &mut deltas[i];
                d.n += 1;
                d.inc += inc;
                if sample.timestamp >= d.at {
                    d.at = sample.timestamp;
                    d.last = sample.value;
                }
            }
            None => {
                by_series.insert(*series_id, deltas.len());
                deltas.push(SeriesDelta {
                    id: *series_id,
                    n: 1,
                    inc,
                    at: sample.timestamp,
                    last: sample.value,
                    is_counter: sample.metric_type == MetricKind::Counter,
                });
            }
        }
    }
    update_series(db, &deltas).await?;

    let backend = db.get_database_backend();
    for family in cache.families.values_mut().filter(|f| f.added > 0) {
        db.execute_raw(stmt(
            backend,
            "UPDATE metric_families SET series_count = series_count + $1, updated_at = $2 WHERE id = $3",
            vec![family.added.into(), now.into(), family.id.into()],
        ))
        .await?;
        family.added = 0;
    }

    result.stored = accepted
        .into_iter()
        .zip(ids)
        .map(|((index, sample, series_id), id)| {
            (
                index,
                StoredSample {
                    id,
                    series_id,
                    name: sample.name.clone(),
                    metric_type: sample.metric_type,
                    labels: sample.labels.clone(),
                    value: sample.value,
                    timestamp: sample.timestamp,
                },
            )
        })
        .collect();
    Ok(result)
}

/// Writes submissions in the caller's transaction (see the module docs):
/// takes the metric counter lock, writes each, and counts what was stored.
pub async fn store_batches<C>(
    db: &C,
    batches: &[&MetricBatch],
    cap: u64,
) -> AppResult<Vec<MetricResult>>
where
    C: ConnectionTrait + TransactionTrait,
    C::Transaction: ConnectionTrait,
{
    counters::lock(db, Counter::MetricSamples).await?;
    let now = util::now();
    let mut cache = Cache::default();
    let mut results = Vec::with_capacity(batches.len());
    let mut stored = 0u64;
    for batch in batches {
        let result = if batch.atomic {
            let savepoint = db.begin().await?;
            let snapshot = cache.clone();
            let result = write_batch(&savepoint, batch, cap, now, &mut cache).await?;
            if result.refused.is_empty() {
                savepoint.commit().await?;
                result
            } else {
                savepoint.rollback().await?;
                cache = snapshot;
                MetricResult {
                    stored: Vec::new(),
                    refused: result.refused,
                }
            }
        } else {
            write_batch(db, batch, cap, now, &mut cache).await?
        };
        stored += result.stored.len() as u64;
        results.push(result);
    }
    counters::record_added(db, Counter::MetricSamples, stored, now).await?;
    Ok(results)
}

/// The metrics writer: group commit of [`MetricBatch`]es.
pub struct MetricStore {
    max_series: u64,
}

impl MetricStore {
    /// A store enforcing `max_series` label sets per metric name.
    pub fn new(max_series: u64) -> Self {
        MetricStore {
            max_series: max_series.max(1),
        }
    }
}

impl Store for MetricStore {
    type Input = MetricBatch;
    type Output = MetricResult;

    fn rows(input: &MetricBatch) -> usize {
        input.samples.len()
    }

    async fn write<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        inputs: &'a [&'a MetricBatch],
    ) -> AppResult<Vec<MetricResult>> {
        store_batches(txn, inputs, self.max_series).await
    }

    fn committed(&self, _outputs: &[MetricResult]) {}

    async fn maintain<'a>(&'a self, db: &'a DatabaseConnection) -> AppResult<()> {
        counters::prune(db, util::now()).await.map(|_| ())
    }
}
