//! Histogram bucket counts kept up to date incrementally, so the exposition
//! never reads a histogram's samples.
//!
//! A Prometheus histogram is cumulative over the life of the series: each
//! bucket only grows, and `+Inf` equals `_count`. Samples are deleted by
//! retention, so buckets cannot be recomputed from what is stored; instead
//! [`fold`] adds each new histogram sample to its series' bucket counts
//! once, remembering the highest sample id folded (the watermark). Each call
//! reads only samples above the watermark (by primary key), so its cost
//! follows the ingest rate, not the table size. Retention folds before it
//! deletes, so no sample leaves unfolded.
//!
//! Ids are handed out before commit, so a sample may become visible after a
//! higher id was already folded. The fold therefore stops at a horizon below
//! which every id is settled: on SQLite (one writer at a time) that is the
//! highest visible id; on PostgreSQL it is the highest visible id read at a
//! moment when no other transaction was writing to `metric_samples` (no
//! other holder of its `RowExclusiveLock`), or, under continuous writes, the
//! id remembered at an earlier fold once every writer seen then has
//! finished. A sample the fold has not reached yet still counts in `_count`
//! (the series' maintained `sample_count`), so it shows in the `+Inf` bucket
//! until folded: the output stays valid and every bucket only grows.
//!
//! Changing `SIGHTLINE_HISTOGRAM_BUCKETS` resets the counts and refolds from
//! the samples still stored (Prometheus sees a counter reset, as it would
//! for any change of buckets).

use std::collections::{BTreeMap, HashMap};

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    FromQueryResult, QueryFilter, Statement,
};
use serde_json::{Value, json};

use super::entity::{histogram_buckets, rollup_state};
use crate::db::Backend;
use crate::error::AppResult;
use crate::metrics::aggregate::histogram_from_observations;
use crate::util;

/// Samples one [`fold`] call reads at most.
pub const FOLD_BATCH: u64 = 20_000;

/// What one [`fold`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FoldReport {
    /// Histogram samples added to bucket counts.
    pub folded: u64,
    /// The watermark afterwards.
    pub watermark: i64,
    /// Whether every settled sample is folded (no batch limit was hit).
    pub caught_up: bool,
}

fn bounds_json(bounds: &[f64]) -> Value {
    Value::Array(bounds.iter().map(|b| json!(b)).collect())
}

fn json_bounds(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn json_counts(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().map(|c| c.as_u64().unwrap_or(0)).collect())
        .unwrap_or_default()
}

/// The state row, created (or reset when the bounds changed) as needed.
async fn state_row(db: &DatabaseConnection, bounds: &[f64]) -> AppResult<rollup_state::Model> {
    let now = util::now();
    let existing = rollup_state::Entity::find_by_id(1).one(db).await?;
    match existing {
        Some(row) if json_bounds(&row.bounds) == bounds => Ok(row),
        Some(row) => {
            tracing::info!(
                old = %row.bounds,
                new = %bounds_json(bounds),
                "histogram buckets changed; refolding stored samples"
            );
            let txn = crate::db::begin_write(db).await?;
            histogram_buckets::Entity::delete_many().exec(&txn).await?;
            rollup_state::Entity::update_many()
                .col_expr(
                    rollup_state::Column::Bounds,
                    Expr::value(bounds_json(bounds)),
                )
                .col_expr(rollup_state::Column::Watermark, Expr::value(0i64))
                .col_expr(rollup_state::Column::CandidateId, Expr::value(0i64))
                .col_expr(
                    rollup_state::Column::CandidateHolders,
                    Expr::value(Option::<Value>::None),
                )
                .col_expr(rollup_state::Column::UpdatedAt, Expr::value(now))
                .filter(rollup_state::Column::Id.eq(1))
                .exec(&txn)
                .await?;
            txn.commit().await?;
            Ok(rollup_state::Entity::find_by_id(1)
                .one(db)
                .await?
                .unwrap_or(row))
        }
        None => {
            let row = rollup_state::ActiveModel {
                id: Set(1),
                bounds: Set(bounds_json(bounds)),
                watermark: Set(0),
                candidate_id: Set(0),
                candidate_holders: Set(None),
                updated_at: Set(now),
            };
            rollup_state::Entity::insert(row)
                .on_conflict(
                    OnConflict::column(rollup_state::Column::Id)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(db)
                .await?;
            Box::pin(state_row(db, bounds)).await
        }
    }
}

#[derive(FromQueryResult)]
struct MaxId {
    max_id: Option<i64>,
}

#[derive(FromQueryResult)]
struct Holder {
    virtualtransaction: Option<String>,
}

#[derive(FromQueryResult)]
struct FoldSample {
    id: i64,
    series_id: i64,
    value: f64,
}

/// The highest sample id below which every id is settled, and the
/// candidate to remember for the next call (PostgreSQL only).
async fn horizon(
    db: &DatabaseConnection,
    state: &rollup_state::Model,
) -> AppResult<(i64, Option<(i64, Vec<String>)>)> {
    let backend = db.get_database_backend();
    let max_id = MaxId::find_by_statement(Statement::from_string(
        backend,
        "SELECT MAX(id) AS max_id FROM metric_samples",
    ))
    .one(db)
    .await?
    .and_then(|r| r.max_id)
    .unwrap_or(0);
    match Backend::of(db) {
        Backend::Sqlite => Ok((max_id, None)),
        Backend::Postgres => {
            let holders: Vec<String> = Holder::find_by_statement(Statement::from_string(
                backend,
                "SELECT virtualtransaction FROM pg_locks \
                 WHERE locktype = 'relation' AND relation = 'metric_samples'::regclass \
                 AND mode = 'RowExclusiveLock' AND pid <> pg_backend_pid()",
            ))
            .all(db)
            .await?
            .into_iter()
            .filter_map(|h| h.virtualtransaction)
            .collect();
            if holders.is_empty() {
                return Ok((max_id, Some((max_id, Vec::new()))));
            }
            let previous: Vec<String> = state
                .candidate_holders
                .as_ref()
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            let settled = if previous.iter().any(|p| holders.contains(p)) {
                state.watermark
            } else {
                state.candidate_id.max(state.watermark)
            };
            Ok((settled, Some((max_id, holders))))
        }
    }
}

/// Folds up to [`FOLD_BATCH`] new histogram samples into their series'
/// bucket counts for `bounds` (see the module docs). Safe to call from
/// several tasks and replicas at once: the watermark moves by
/// compare-and-set, and a caller that loses simply folds nothing.
pub async fn fold(db: &DatabaseConnection, bounds: &[f64]) -> AppResult<FoldReport> {
    let state = state_row(db, bounds).await?;
    let (settled, candidate) = horizon(db, &state).await?;
    let from = state.watermark;
    let backend = db.get_database_backend();
    let samples = if settled > from {
        FoldSample::find_by_statement(Statement::from_sql_and_values(
            backend,
            "SELECT s.id, s.series_id, s.value FROM metric_samples s \
             JOIN metric_series ms ON ms.id = s.series_id \
             JOIN metric_families f ON f.id = ms.family_id \
             WHERE s.id > $1 AND s.id <= $2 AND f.metric_type = 'histogram' \
             ORDER BY s.id LIMIT $3",
            [from.into(), settled.into(), (FOLD_BATCH as i64).into()],
        ))
        .all(db)
        .await?
    } else {
        Vec::new()
    };
    let full = samples.len() as u64 >= FOLD_BATCH;
    let to = if full {
        samples.last().map(|s| s.id).unwrap_or(settled)
    } else {
        settled.max(from)
    };

    let stored_holders: Option<Vec<String>> = state
        .candidate_holders
        .as_ref()
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let candidate_unchanged = match &candidate {
        None => true,
        Some((id, holders)) => {
            *id == state.candidate_id && Some(holders) == stored_holders.as_ref()
        }
    };
    if samples.is_empty() && to == from && candidate_unchanged {
        // Nothing new: no write at all.
        return Ok(FoldReport {
            folded: 0,
            watermark: from,
            caught_up: true,
        });
    }
    let now = util::now();
    let txn = crate::db::begin_write(db).await?;
    // Compare-and-set first: it serialises concurrent folds (and on SQLite
    // takes the write lock before anything is read).
    let mut cas = rollup_state::Entity::update_many()
        .col_expr(rollup_state::Column::Watermark, Expr::value(to))
        .col_expr(rollup_state::Column::UpdatedAt, Expr::value(now));
    if let Some((id, holders)) = &candidate {
        cas = cas
            .col_expr(rollup_state::Column::CandidateId, Expr::value(*id))
            .col_expr(
                rollup_state::Column::CandidateHolders,
                Expr::value(Some(json!(holders))),
            );
    }
    let won = cas
        .filter(rollup_state::Column::Id.eq(1))
        .filter(rollup_state::Column::Watermark.eq(from))
        .exec(&txn)
        .await?
        .rows_affected
        == 1;
    if !won {
        txn.rollback().await?;
        return Ok(FoldReport {
            folded: 0,
            watermark: from,
            caught_up: false,
        });
    }
    let mut by_series: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for s in &samples {
        by_series.entry(s.series_id).or_default().push(s.value);
    }
    if !by_series.is_empty() {
        let ids: Vec<i64> = by_series.keys().copied().collect();
        let existing: HashMap<i64, histogram_buckets::Model> = histogram_buckets::Entity::find()
            .filter(histogram_buckets::Column::SeriesId.is_in(ids))
            .all(&txn)
            .await?
            .into_iter()
            .map(|r| (r.series_id, r))
            .collect();
        for (series_id, values) in by_series {
            let (added, n, sum) = histogram_from_observations(bounds, values);
            let (mut counts, mut count, mut total) = match existing.get(&series_id) {
                Some(row) => (json_counts(&row.counts), row.count.max(0) as u64, row.sum),
                None => (vec![0; bounds.len()], 0, 0.0),
            };
            counts.resize(bounds.len(), 0);
            for (c, a) in counts.iter_mut().zip(added) {
                *c += a;
            }
            count += n;
            total += sum;
            let row = histogram_buckets::ActiveModel {
                series_id: Set(series_id),
                bounds: Set(bounds_json(bounds)),
                counts: Set(json!(counts)),
                count: Set(count as i64),
                sum: Set(total),
                updated_at: Set(now),
            };
            histogram_buckets::Entity::insert(row)
                .on_conflict(
                    OnConflict::column(histogram_buckets::Column::SeriesId)
                        .update_columns([
                            histogram_buckets::Column::Bounds,
                            histogram_buckets::Column::Counts,
                            histogram_buckets::Column::Count,
                            histogram_buckets::Column::Sum,
                            histogram_buckets::Column::UpdatedAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
    }
    txn.commit().await?;
    Ok(FoldReport {
        folded: samples.len() as u64,
        watermark: to,
        caught_up: !full,
    })
}

/// Folds until caught up (or `max_rounds` batches), for retention, which
/// must not delete samples that are not folded yet. Returns the samples folded.
pub async fn fold_all(
    db: &DatabaseConnection,
    bounds: &[f64],
    max_rounds: usize,
) -> AppResult<u64> {
    let mut total = 0;
    for _ in 0..max_rounds.max(1) {
        let report = fold(db, bounds).await?;
        total += report.folded;
        if report.caught_up {
            break;
        }
    }
    Ok(total)
}

/// The watermark: samples with ids up to it are folded.
pub async fn watermark(db: &impl ConnectionTrait) -> AppResult<i64> {
    Ok(rollup_state::Entity::find_by_id(1)
        .one(db)
        .await?
        .map(|r| r.watermark)
        .unwrap_or(0))
}

/// Bucket counts of the given series for `bounds` (series without counts,
/// or counted for other bounds, are absent).
pub async fn buckets_of(
    db: &impl ConnectionTrait,
    series: &[i64],
    bounds: &[f64],
) -> AppResult<HashMap<i64, (Vec<u64>, u64)>> {
    let mut out = HashMap::new();
    for chunk in series.chunks(500) {
        let rows = histogram_buckets::Entity::find()
            .filter(histogram_buckets::Column::SeriesId.is_in(chunk.to_vec()))
            .all(db)
            .await?;
        for r in rows {
            if json_bounds(&r.bounds) == bounds {
                let mut counts = json_counts(&r.counts);
                counts.resize(bounds.len(), 0);
                out.insert(r.series_id, (counts, r.count.max(0) as u64));
            }
        }
    }
    Ok(out)
}
