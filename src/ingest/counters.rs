//! Running totals and per-minute counts of ingested rows, kept inside the
//! write transactions so statistics never have to scan the big tables.
//!
//! Table `ingest_counters` holds one row per [`Counter`]: `total` (rows
//! stored now) and, for events, `clock_us`, the commit clock. Every
//! transaction that stores events advances the clock through
//! [`stamp_events`], which also takes the row's lock until the transaction
//! ends: transactions that store events therefore commit one after another,
//! in the order of the `received_at` they were given, on both backends and
//! across replicas. That is what makes commit-order cursors exact.
//!
//! Table `ingest_minutes` counts rows by the minute they were received
//! (`minute` = Unix seconds / 60), which gives "received in the last hour"
//! without touching the data tables. Old minutes are pruned by the writers.

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use crate::error::{AppError, AppResult};

/// What a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Rows of `events`.
    Events,
    /// Rows of `metric_samples`.
    MetricSamples,
}

impl Counter {
    /// The `kind` stored in the counter tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Counter::Events => "events",
            Counter::MetricSamples => "metric_samples",
        }
    }
}

/// How many rows are stored and how many arrived recently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Totals {
    /// Rows stored now (ingested minus deleted).
    pub total: u64,
    /// Rows received in the last hour, at minute granularity (the current
    /// minute and the 60 before it), whether or not retention deleted them since.
    pub last_hour: u64,
}

/// How many minutes of per-minute counts are kept.
pub const KEEP_MINUTES: i64 = 24 * 60;

/// Writes `$1`-style placeholders as the backend wants them (`?1` on SQLite).
pub(crate) fn placeholders(backend: DbBackend, sql: &str) -> String {
    match backend {
        DbBackend::Postgres => sql.to_owned(),
        _ => sql.replace('$', "?"),
    }
}

fn statement(db: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Statement {
    let backend = db.get_database_backend();
    Statement::from_sql_and_values(backend, placeholders(backend, sql), values)
}

fn minute_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

fn missing(counter: Counter) -> AppError {
    AppError::internal(std::io::Error::other(format!(
        "the ingest counter `{}` is missing; was the migration applied?",
        counter.as_str()
    )))
}

/// Gives the rows about to be stored their `received_at`: `now`, or just
/// after the last stamp when the clock would otherwise go backwards (clock
/// steps, other replicas). Adds `n` to the events total and the minute count,
/// and holds the counter's row lock until the transaction ends, so call it
/// inside the transaction that inserts the rows, as its first write.
pub async fn stamp_events(
    db: &impl ConnectionTrait,
    n: u64,
    now: DateTime<Utc>,
) -> AppResult<DateTime<Utc>> {
    let now_us = now.timestamp_micros();
    let row = db
        .query_one_raw(statement(
            db,
            "UPDATE ingest_counters SET total = total + $1, \
             clock_us = CASE WHEN clock_us < $2 THEN $2 ELSE clock_us + 1 END \
             WHERE kind = $3 RETURNING clock_us",
            vec![
                (n as i64).into(),
                now_us.into(),
                Counter::Events.as_str().into(),
            ],
        ))
        .await?
        .ok_or_else(|| missing(Counter::Events))?;
    let clock: i64 = row.try_get_by_index(0)?;
    let stamp = Utc
        .timestamp_micros(clock)
        .single()
        .ok_or_else(|| AppError::internal(std::io::Error::other("commit clock out of range")))?;
    bump_minute(db, Counter::Events, n, stamp).await?;
    Ok(stamp)
}

/// Takes the counter's row lock (first write of a transaction; on SQLite it
/// takes the database write lock, so later reads cannot go stale).
pub async fn lock(db: &impl ConnectionTrait, counter: Counter) -> AppResult<()> {
    let result = db
        .execute_raw(statement(
            db,
            "UPDATE ingest_counters SET total = total WHERE kind = $1",
            vec![counter.as_str().into()],
        ))
        .await?;
    if result.rows_affected() == 0 {
        return Err(missing(counter));
    }
    Ok(())
}

/// Adds `n` rows received at `at` to a counter (its total and its minute).
pub async fn record_added(
    db: &impl ConnectionTrait,
    counter: Counter,
    n: u64,
    at: DateTime<Utc>,
) -> AppResult<()> {
    if n == 0 {
        return Ok(());
    }
    db.execute_raw(statement(
        db,
        "UPDATE ingest_counters SET total = total + $1 WHERE kind = $2",
        vec![(n as i64).into(), counter.as_str().into()],
    ))
    .await?;
    bump_minute(db, counter, n, at).await
}

async fn bump_minute(
    db: &impl ConnectionTrait,
    counter: Counter,
    n: u64,
    at: DateTime<Utc>,
) -> AppResult<()> {
    db.execute_raw(statement(
        db,
        "INSERT INTO ingest_minutes (kind, minute, count) VALUES ($1, $2, $3) \
         ON CONFLICT (kind, minute) DO UPDATE SET count = ingest_minutes.count + excluded.count",
        vec![
            counter.as_str().into(),
            minute_of(at).into(),
            (n as i64).into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Subtracts `n` deleted rows from a counter's total (never below zero).
/// Retention calls this in the transaction that deletes the rows, ideally
/// just before committing (it takes the counter's row lock).
pub async fn record_deleted(db: &impl ConnectionTrait, counter: Counter, n: u64) -> AppResult<()> {
    if n == 0 {
        return Ok(());
    }
    let result = db
        .execute_raw(statement(
            db,
            "UPDATE ingest_counters SET total = CASE WHEN total > $1 THEN total - $1 ELSE 0 END \
             WHERE kind = $2",
            vec![(n as i64).into(), counter.as_str().into()],
        ))
        .await?;
    if result.rows_affected() == 0 {
        return Err(missing(counter));
    }
    Ok(())
}

/// The counter's total and its count over the last hour (two indexed reads).
pub async fn totals(db: &impl ConnectionTrait, counter: Counter) -> AppResult<Totals> {
    let total_row = db
        .query_one_raw(statement(
            db,
            "SELECT total FROM ingest_counters WHERE kind = $1",
            vec![counter.as_str().into()],
        ))
        .await?
        .ok_or_else(|| missing(counter))?;
    let total: i64 = total_row.try_get_by_index(0)?;
    let since = last_hour_since(crate::util::now());
    let hour_row = db
        .query_one_raw(statement(
            db,
            "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM ingest_minutes WHERE kind = $1 AND minute >= $2",
            vec![counter.as_str().into(), since.into()],
        ))
        .await?;
    let last_hour: i64 = match hour_row {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };
    Ok(Totals {
        total: total.max(0) as u64,
        last_hour: last_hour.max(0) as u64,
    })
}

/// The first minute (Unix seconds / 60) that "the last hour" counts at
/// `now`: the current minute and the 60 before it.
pub fn last_hour_since(now: DateTime<Utc>) -> i64 {
    minute_of(now) - 60
}

/// Deletes per-minute counts older than [`KEEP_MINUTES`].
pub async fn prune(db: &impl ConnectionTrait, now: DateTime<Utc>) -> AppResult<u64> {
    let result = db
        .execute_raw(statement(
            db,
            "DELETE FROM ingest_minutes WHERE minute < $1",
            vec![(minute_of(now) - KEEP_MINUTES).into()],
        ))
        .await?;
    Ok(result.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_placeholders_are_numbered_question_marks() {
        assert_eq!(
            placeholders(DbBackend::Sqlite, "a = $1 AND b = $2 OR c = $1"),
            "a = ?1 AND b = ?2 OR c = ?1"
        );
        assert_eq!(placeholders(DbBackend::Postgres, "a = $1"), "a = $1");
    }

    #[test]
    fn minutes_are_counted_from_the_unix_epoch() {
        let t = Utc.timestamp_opt(3_600 + 59, 0).unwrap();
        assert_eq!(minute_of(t), 60);
        let before = Utc.timestamp_opt(-1, 0).unwrap();
        assert_eq!(minute_of(before), -1);
    }
}
