//! The scheduler: enqueues periodic tasks, once per period, however many
//! replicas run it.
//!
//! Each schedule is a row of `task_schedules` with its `next_run_at`. A tick
//! takes a due schedule by moving `next_run_at` forward with a
//! compare-and-set (`UPDATE ... WHERE name = $1 AND next_run_at = $old`):
//! of several replicas ticking at once exactly one sees a row updated, and
//! only that one enqueues. The task carries the schedule's name as its
//! dedupe key, and a partial unique index allows one live (pending, running
//! or failed) task per key, so a slow run is never doubled by the next
//! period either: that period is skipped.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use super::entity::schedule;
use super::model::NewTask;
use super::service;
use crate::error::AppResult;
use crate::state::AppState;
use crate::util;

/// A periodic task.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Unique name (also the dedupe key of its tasks).
    pub name: String,
    /// The task type it enqueues.
    pub task_type: String,
    /// The payload of its tasks.
    pub payload: Value,
    /// Time between runs.
    pub interval: Duration,
}

/// The dedupe key of the tasks a schedule enqueues.
pub fn dedupe_key(schedule_name: &str) -> String {
    format!("schedule:{schedule_name}")
}

/// The periodic monitoring tasks, as configured.
pub fn monitoring_schedules(state: &AppState) -> Vec<Schedule> {
    let c = &state.config;
    vec![
        Schedule {
            name: super::handlers::DATA_RETENTION.to_owned(),
            task_type: super::handlers::DATA_RETENTION.to_owned(),
            payload: json!({}),
            interval: c.retention_interval,
        },
        Schedule {
            name: super::handlers::EVENT_PROCESSING.to_owned(),
            task_type: super::handlers::EVENT_PROCESSING.to_owned(),
            payload: json!({}),
            interval: c.event_processing_interval,
        },
    ]
}

fn interval_secs(d: Duration) -> i64 {
    d.as_secs().clamp(1, i64::MAX as u64) as i64
}

/// Makes sure each schedule has its row: a new one is due at once; a
/// changed interval or payload is updated, and a next run further away than
/// the new interval is brought forward.
pub async fn register(
    state: &AppState,
    schedules: &[Schedule],
    now: DateTime<Utc>,
) -> AppResult<()> {
    for s in schedules {
        let secs = interval_secs(s.interval);
        match schedule::Entity::find_by_id(s.name.clone())
            .one(&state.db)
            .await?
        {
            None => {
                let row = schedule::ActiveModel {
                    name: Set(s.name.clone()),
                    task_type: Set(s.task_type.clone()),
                    payload: Set(s.payload.clone()),
                    interval_secs: Set(secs),
                    next_run_at: Set(now),
                    last_enqueued_at: Set(None),
                    last_task_id: Set(None),
                    updated_at: Set(now),
                };
                // Another replica may insert it first: that is fine.
                if let Err(e) = schedule::Entity::insert(row)
                    .on_conflict(
                        sea_orm::sea_query::OnConflict::column(schedule::Column::Name)
                            .do_nothing()
                            .to_owned(),
                    )
                    .exec_without_returning(&state.db)
                    .await
                {
                    return Err(e.into());
                }
            }
            Some(existing) => {
                // The clock is read after the row: with a `now` older than
                // another replica's tick that just moved `next_run_at`, that
                // fresh value would look too far away and be pulled forward,
                // enqueueing twice within one period.
                let latest = util::now().max(now) + chrono::Duration::seconds(secs);
                if existing.interval_secs != secs
                    || existing.task_type != s.task_type
                    || existing.payload != s.payload
                    || existing.next_run_at > latest
                {
                    let mut row: schedule::ActiveModel = existing.clone().into();
                    row.interval_secs = Set(secs);
                    row.task_type = Set(s.task_type.clone());
                    row.payload = Set(s.payload.clone());
                    if existing.next_run_at > latest {
                        row.next_run_at = Set(latest);
                    }
                    row.updated_at = Set(now);
                    row.update(&state.db).await?;
                }
            }
        }
    }
    Ok(())
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickReport {
    /// Schedules whose task was enqueued.
    pub enqueued: Vec<String>,
    /// Schedules that were due but whose previous task is still live.
    pub skipped: Vec<String>,
}

/// Enqueues the task of every schedule in `schedules` that is due at `now`
/// and that this process wins (see the module docs).
pub async fn tick(
    state: &AppState,
    schedules: &[Schedule],
    now: DateTime<Utc>,
) -> AppResult<TickReport> {
    let names: Vec<String> = schedules.iter().map(|s| s.name.clone()).collect();
    let due = schedule::Entity::find()
        .filter(schedule::Column::Name.is_in(names))
        .filter(schedule::Column::NextRunAt.lte(now))
        .all(&state.db)
        .await?;
    let mut report = TickReport::default();
    for row in due {
        let next = now + chrono::Duration::seconds(row.interval_secs.max(1));
        let txn = crate::db::begin_write(&state.db).await?;
        let won = schedule::Entity::update_many()
            .col_expr(schedule::Column::NextRunAt, Expr::value(next))
            .col_expr(schedule::Column::UpdatedAt, Expr::value(now))
            .filter(schedule::Column::Name.eq(row.name.clone()))
            .filter(schedule::Column::NextRunAt.eq(row.next_run_at))
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        if !won {
            txn.rollback().await?;
            continue;
        }
        let task = NewTask::new(row.task_type.clone(), row.payload.clone())
            .dedupe(dedupe_key(&row.name))
            .run_after(now);
        match service::enqueue_with(&txn, &state.tasks, None, task).await? {
            Some(task) => {
                schedule::Entity::update_many()
                    .col_expr(schedule::Column::LastEnqueuedAt, Expr::value(Some(now)))
                    .col_expr(schedule::Column::LastTaskId, Expr::value(Some(task.id)))
                    .filter(schedule::Column::Name.eq(row.name.clone()))
                    .exec(&txn)
                    .await?;
                txn.commit().await?;
                report.enqueued.push(row.name);
            }
            None => {
                txn.commit().await?;
                report.skipped.push(row.name);
            }
        }
    }
    if !report.enqueued.is_empty() {
        state.tasks.wake();
    }
    Ok(report)
}

/// How often the scheduler re-creates missing alert evaluation tasks
/// ([`super::handlers::alert_evaluation::ensure_rule_tasks`]).
pub const RULE_TASK_SYNC_EVERY: Duration = Duration::from_secs(30);

/// Runs the scheduler until shutdown: registers the schedules, then ticks
/// every `SIGHTLINE_SCHEDULER_TICK`, returning expired leases to the queue
/// on the way, and every [`RULE_TASK_SYNC_EVERY`] (and at start) makes sure
/// each enabled alert rule has its evaluation task.
pub fn spawn(state: &AppState) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let schedules = monitoring_schedules(&state);
        let mut shutdown = state.shutdown.clone();
        let every = state.config.scheduler_tick;
        let mut registered = false;
        let mut last_rule_sync: Option<std::time::Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = util::now();
            let result = async {
                if !registered {
                    register(&state, &schedules, now).await?;
                    registered = true;
                }
                service::reap_expired(&state.db, now).await?;
                if last_rule_sync.is_none_or(|t| t.elapsed() >= RULE_TASK_SYNC_EVERY) {
                    super::handlers::alert_evaluation::ensure_rule_tasks(&state).await?;
                    last_rule_sync = Some(std::time::Instant::now());
                }
                tick(&state, &schedules, now).await
            }
            .await;
            match result {
                Ok(report) if !report.enqueued.is_empty() => {
                    tracing::debug!(enqueued = ?report.enqueued, "scheduler enqueued periodic tasks");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e.describe(), "scheduler tick failed");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::debug!("scheduler stopped");
    })
}
