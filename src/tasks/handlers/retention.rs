//! `monitoring_data_retention`: deletes what has outlived its retention, in
//! bounded batches so no statement holds locks for long and ingest keeps
//! flowing:
//! - events whose `timestamp` is older than `MONITORING_EVENT_RETENTION_DAYS`;
//! - metric samples older than `MONITORING_METRIC_RETENTION_DAYS` (after
//!   folding new histogram samples into their bucket counts, so the
//!   exposition's cumulative histograms lose nothing);
//! - finished tasks (succeeded, dead, cancelled) older than
//!   `SIGHTLINE_TASK_RETENTION_DAYS`.
//!
//! Each batch is `DELETE ... WHERE id IN (SELECT id ... ORDER BY time LIMIT n)`
//! through the time index, in a transaction of its own that also subtracts
//! the deleted rows from the maintained `ingest_counters` total (what
//! `monitoringStats` reports). Incidents and their
//! notes are never touched. Scheduled hourly by default
//! (`SIGHTLINE_RETENTION_INTERVAL`); the result reports what was deleted.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::error::FieldError;
use crate::ingest::counters::{self, Counter};
use crate::state::AppState;
use crate::tasks::registry::{TaskContext, TaskError};

/// Batches of one table per run at most (a run resumes the rest next time).
pub const MAX_BATCHES: u64 = 100_000;

/// Checks a payload: retention takes no parameters (`{}`); its limits are settings.
pub fn validate(payload: &Value) -> Result<(), FieldError> {
    super::only_keys(payload, &[])
}

/// Deletes up to `batch` rows of `table` whose `column` is before `cutoff`,
/// oldest first; returns how many.
async fn delete_batch(
    db: &impl ConnectionTrait,
    table: &str,
    column: &str,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<u64, TaskError> {
    let sql = format!(
        "DELETE FROM {table} WHERE id IN \
         (SELECT id FROM {table} WHERE {column} < $1 ORDER BY {column} LIMIT $2)"
    );
    let stmt = Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        [cutoff.into(), (batch as i64).into()],
    );
    Ok(db.execute_raw(stmt).await?.rows_affected())
}

/// Deletes old rows of one table batch by batch; returns the total. Each
/// batch subtracts what it deleted from the table's maintained counter in
/// the deleting transaction, so the statistics stay exact.
async fn purge(
    state: &AppState,
    table: &'static str,
    column: &'static str,
    counter: Counter,
    cutoff: DateTime<Utc>,
) -> Result<u64, TaskError> {
    let batch = state.config.retention_batch;
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        if *state.shutdown.borrow() {
            break;
        }
        let txn = crate::db::begin_write(&state.db).await?;
        let n = delete_batch(&txn, table, column, cutoff, batch).await?;
        counters::record_deleted(&txn, counter, n).await?;
        txn.commit().await?;
        total += n;
        if n < batch {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(total)
}

fn days_before(now: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    now - chrono::Duration::days(i64::from(days))
}

/// Runs one retention pass.
pub async fn run(ctx: TaskContext) -> Result<Value, TaskError> {
    let state = &ctx.state;
    let config = &state.config;
    let event_cutoff = days_before(ctx.now, config.event_retention_days);
    let metric_cutoff = days_before(ctx.now, config.metric_retention_days);
    let task_cutoff = days_before(ctx.now, config.task_retention_days);

    let events_deleted = purge(state, "events", "timestamp", Counter::Events, event_cutoff).await?;

    // Histogram samples must be counted into their buckets before they go.
    let folded =
        crate::stats::rollup::fold_all(&state.db, &config.histogram_buckets, 10_000).await?;
    let metric_samples_deleted = purge(
        state,
        "metric_samples",
        "timestamp",
        Counter::MetricSamples,
        metric_cutoff,
    )
    .await?;

    let mut tasks_deleted = 0;
    loop {
        let n = crate::tasks::service::delete_finished_before(
            &state.db,
            task_cutoff,
            config.retention_batch,
        )
        .await?;
        tasks_deleted += n;
        if n < config.retention_batch || *state.shutdown.borrow() {
            break;
        }
    }
    tracing::info!(
        events_deleted,
        metric_samples_deleted,
        tasks_deleted,
        "retention pass finished"
    );
    Ok(json!({
        "events_deleted": events_deleted,
        "metric_samples_deleted": metric_samples_deleted,
        "tasks_deleted": tasks_deleted,
        "histogram_samples_folded": folded,
        "event_cutoff": event_cutoff,
        "metric_cutoff": metric_cutoff,
        "task_cutoff": task_cutoff,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_takes_no_parameters() {
        assert!(validate(&json!({})).is_ok());
        assert_eq!(validate(&json!({"days": 3})).unwrap_err().field, "days");
    }
}
