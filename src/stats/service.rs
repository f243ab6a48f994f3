//! The six monitoring figures of the original design (`total_events`,
//! `total_metrics`, `active_alerts`, `open_incidents`, `events_last_hour`,
//! `metrics_last_hour`), shared by `monitoringStats`,
//! `GET /api/v1/monitoring/stats` and the Prometheus exposition's
//! `monitoring_*` gauges.
//!
//! How each figure avoids scanning a whole table (five small reads, the
//! cost does not grow with the number of stored events or samples):
//! - `total_events`, `total_metrics`: the maintained `ingest_counters.total`
//!   of `events` and `metric_samples` (one primary-key read each). Every
//!   transaction that stores rows adds to it ([`crate::ingest::counters`]),
//!   and retention subtracts what it deletes in the deleting transaction
//!   (`record_deleted` in [`crate::tasks::handlers::retention`]), so the
//!   figure is exact on both backends.
//! - `events_last_hour`, `metrics_last_hour`: the sum of the per-minute
//!   counts in `ingest_minutes` for the current minute and the 60 before it
//!   (at most 61 rows through its primary key `(kind, minute)`). These count
//!   rows *received* in the last hour, whether or not retention deleted them
//!   since.
//! - `active_alerts`: `COUNT(*)` of `alert_instances` with `state = 'firing'`,
//!   answered from the `ix_alert_instances_state` index (one row per rule and
//!   label set, not per evaluation).
//! - `open_incidents`: `COUNT(*)` of `incidents` with status `open` or
//!   `investigating`, answered from the `ix_incidents_status` index.
//!
//! All six are read by one statement of scalar subqueries, so a call is one
//! round trip to the database.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Statement};
use serde::Serialize;

use crate::alerts::entity::instance;
use crate::alerts::state::AlertState;
use crate::error::{AppError, AppResult};
use crate::ingest::counters::{self, placeholders};

/// The monitoring figures (serialised with the original design's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct MonitoringStats {
    /// Events stored now.
    pub total_events: u64,
    /// Metric samples stored now.
    pub total_metrics: u64,
    /// Alert instances that are firing (not rules).
    pub active_alerts: u64,
    /// Incidents that are open or investigating.
    pub open_incidents: u64,
    /// Events received in the last hour (minute granularity).
    pub events_last_hour: u64,
    /// Metric samples received in the last hour (minute granularity).
    pub metrics_last_hour: u64,
}

/// Firing alert instances, from the state index.
pub async fn firing_alerts(db: &impl ConnectionTrait) -> AppResult<u64> {
    Ok(instance::Entity::find()
        .filter(instance::Column::State.eq(AlertState::Firing.as_str()))
        .count(db)
        .await?)
}

/// Computes the figures in one statement (see the module docs for how each
/// is read).
pub async fn monitoring_stats(db: &impl ConnectionTrait) -> AppResult<MonitoringStats> {
    let backend = db.get_database_backend();
    let sql = placeholders(
        backend,
        "SELECT \
           (SELECT total FROM ingest_counters WHERE kind = 'events'), \
           (SELECT total FROM ingest_counters WHERE kind = 'metric_samples'), \
           (SELECT COUNT(*) FROM alert_instances WHERE state = 'firing'), \
           (SELECT COUNT(*) FROM incidents WHERE status IN ('open', 'investigating')), \
           (SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM ingest_minutes \
              WHERE kind = 'events' AND minute >= $1), \
           (SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM ingest_minutes \
              WHERE kind = 'metric_samples' AND minute >= $1)",
    );
    let since = counters::last_hour_since(crate::util::now());
    let row = db
        .query_one_raw(Statement::from_sql_and_values(backend, sql, [since.into()]))
        .await?
        .ok_or_else(|| AppError::internal(std::io::Error::other("no statistics row")))?;
    let figure = |i: usize| -> AppResult<u64> {
        let v: Option<i64> = row.try_get_by_index(i)?;
        match v {
            Some(v) => Ok(v.max(0) as u64),
            // Only the counter rows can be missing (the migration makes them).
            None => Err(AppError::internal(std::io::Error::other(
                "the ingest counters are missing; was the migration applied?",
            ))),
        }
    };
    Ok(MonitoringStats {
        total_events: figure(0)?,
        total_metrics: figure(1)?,
        active_alerts: figure(2)?,
        open_incidents: figure(3)?,
        events_last_hour: figure(4)?,
        metrics_last_hour: figure(5)?,
    })
}

impl MonitoringStats {
    /// The figures as `(gauge name, help, value)`, in the original design's
    /// order, for the Prometheus exposition.
    pub fn gauges(&self) -> [(&'static str, &'static str, u64); 6] {
        [
            (
                "monitoring_total_events",
                "Events stored now (maintained counter).",
                self.total_events,
            ),
            (
                "monitoring_total_metrics",
                "Metric samples stored now (maintained counter).",
                self.total_metrics,
            ),
            (
                "monitoring_active_alerts",
                "Alert instances that are firing.",
                self.active_alerts,
            ),
            (
                "monitoring_open_incidents",
                "Incidents that are open or investigating.",
                self.open_incidents,
            ),
            (
                "monitoring_events_last_hour",
                "Events received in the last hour (minute granularity).",
                self.events_last_hour,
            ),
            (
                "monitoring_metrics_last_hour",
                "Metric samples received in the last hour (minute granularity).",
                self.metrics_last_hour,
            ),
        ]
    }
}
