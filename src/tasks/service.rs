//! Queue operations other code calls directly: enqueue (in the caller's
//! transaction if it likes), list, retry, cancel and count; and the worker's
//! side: claim with a lease, renew, complete, fail, and return the tasks of
//! crashed workers to the queue.
//!
//! The claim is one statement on both backends. PostgreSQL:
//! `UPDATE tasks ... WHERE id = (SELECT id ... FOR UPDATE SKIP LOCKED) RETURNING *`,
//! so concurrent workers (in one process or many replicas) each take a
//! different row without waiting on each other. SQLite has a single writer,
//! so the same `UPDATE ... WHERE id = (SELECT ... LIMIT 1) RETURNING *` is
//! atomic without row locks. Every later change of a running task is
//! conditional on the worker still holding the lease (`locked_by` and
//! `attempts` unchanged), so a worker whose lease lapsed cannot overwrite
//! what the task's next holder did.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QuerySelect, Statement,
};
use serde_json::Value;
use uuid::Uuid;

use super::entity::task;
use super::model::{self, NewTask, TaskStatus};
use super::registry::TaskRegistry;
use crate::auth::Identity;
use crate::db::Backend;
use crate::error::{AppError, AppResult};
use crate::pagination::{Cursor, Page, Rows};
use crate::state::AppState;
use crate::util;

/// Validates `new` against the registry and stores it through `db` (a
/// connection or the caller's open transaction). `Ok(None)` means a live
/// task (pending, running or failed) with the same dedupe key exists, so
/// nothing was added. Call [`TaskRegistry::wake`] after the commit to start
/// it at once in this process.
#[tracing::instrument(skip_all, fields(task_type = %new.task_type))]
pub async fn enqueue_with(
    db: &impl ConnectionTrait,
    registry: &TaskRegistry,
    actor: Option<&Identity>,
    new: NewTask,
) -> AppResult<Option<task::Model>> {
    let now = util::now();
    let new = model::validate(new, now).map_err(|e| AppError::from_field_errors(&e))?;
    let Some(entry) = registry.get(&new.task_type) else {
        let known: Vec<String> = registry.types().into_iter().map(|(t, _)| t).collect();
        return Err(AppError::bad_input(
            "taskType",
            format!(
                "unknown task type `{}`: registered types are {}",
                new.task_type.chars().take(64).collect::<String>(),
                known.join(", ")
            ),
        ));
    };
    entry
        .handler
        .validate(&new.payload)
        .map_err(|e| AppError::bad_input(format!("payload.{}", e.field), e.message))?;
    let max_attempts = new
        .max_attempts
        .unwrap_or_else(|| std::cmp::min(registry.max_attempts_of(&entry), 100) as i32);
    let row = task::Model {
        id: Uuid::now_v7(),
        task_type: new.task_type,
        payload: new.payload,
        status: TaskStatus::Pending.as_str().to_owned(),
        priority: new.priority.unwrap_or(0),
        attempts: 0,
        max_attempts,
        run_after: new.run_after.unwrap_or(now),
        lease_expires_at: None,
        locked_by: None,
        last_error: None,
        result: None,
        dedupe_key: new.dedupe_key,
        created_by: actor.map(|a| a.user_id),
        created_at: now,
        updated_at: now,
        started_at: None,
        finished_at: None,
    };
    let active: task::ActiveModel = row.clone().into();
    // No conflict target: the partial unique index on live dedupe keys is
    // the only one a fresh UUIDv7 can hit.
    let inserted = task::Entity::insert(active)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok((inserted == 1).then_some(row))
}

/// [`enqueue_with`] on the pool, then wakes this process's workers.
pub async fn enqueue(
    state: &AppState,
    actor: Option<&Identity>,
    new: NewTask,
) -> AppResult<Option<task::Model>> {
    let row = enqueue_with(&state.db, &state.tasks, actor, new).await?;
    if row.is_some() {
        state.tasks.wake();
    }
    Ok(row)
}

/// Enqueues for an API caller: a duplicate dedupe key is a `CONFLICT`.
pub async fn enqueue_for_client(
    state: &AppState,
    actor: &Identity,
    new: NewTask,
) -> AppResult<task::Model> {
    let key = new.dedupe_key.clone();
    match enqueue(state, Some(actor), new).await? {
        Some(row) => Ok(row),
        None => Err(AppError::conflict(format!(
            "a pending, running or failed task with dedupe key `{}` already exists",
            key.unwrap_or_default()
        ))
        .with_field("dedupeKey")),
    }
}

/// One task.
pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> AppResult<task::Model> {
    task::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("task"))
}

/// Tasks by id, for DataLoaders.
pub async fn tasks_by_ids(db: &impl ConnectionTrait, ids: &[Uuid]) -> AppResult<Vec<task::Model>> {
    Ok(task::Entity::find()
        .filter(task::Column::Id.is_in(ids.to_vec()))
        .all(db)
        .await?)
}

/// Which tasks a list shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    /// Any of these statuses (all when empty).
    pub statuses: Vec<TaskStatus>,
    /// Only this type.
    pub task_type: Option<String>,
    /// Enqueued at or after.
    pub from: Option<DateTime<Utc>>,
    /// Enqueued before.
    pub to: Option<DateTime<Utc>>,
}

impl TaskFilter {
    /// Checks the filter: a task type of sane length, `from` not after `to`.
    pub fn validate(self) -> AppResult<TaskFilter> {
        if let Some(t) = &self.task_type
            && (t.chars().count() > model::MAX_TYPE_CHARS || t.contains('\0'))
        {
            return Err(AppError::bad_input(
                "filter.taskType",
                format!(
                    "taskType must be at most {} characters without NUL",
                    model::MAX_TYPE_CHARS
                ),
            ));
        }
        if let (Some(from), Some(to)) = (self.from, self.to)
            && from > to
        {
            return Err(AppError::bad_input(
                "filter.from",
                "from must not be after to",
            ));
        }
        Ok(self)
    }

    fn apply(&self, mut q: sea_orm::Select<task::Entity>) -> sea_orm::Select<task::Entity> {
        if !self.statuses.is_empty() {
            q = q.filter(
                task::Column::Status.is_in(self.statuses.iter().map(|s| s.as_str().to_owned())),
            );
        }
        if let Some(t) = &self.task_type {
            q = q.filter(task::Column::TaskType.eq(t.clone()));
        }
        if let Some(from) = self.from {
            q = q.filter(task::Column::CreatedAt.gte(from));
        }
        if let Some(to) = self.to {
            q = q.filter(task::Column::CreatedAt.lt(to));
        }
        q
    }
}

/// One page of tasks in enqueue order.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &TaskFilter,
    page: &Page,
) -> AppResult<Rows<task::Model>> {
    let query = crate::pagination::keyset(
        filter.apply(task::Entity::find()),
        task::Column::CreatedAt,
        task::Column::Id,
        page,
    );
    let rows = query.all(db).await?;
    Ok(Rows::new(rows, page, |t| Cursor::new(t.created_at, t.id)))
}

/// How many tasks match.
pub async fn count(db: &impl ConnectionTrait, filter: &TaskFilter) -> AppResult<u64> {
    Ok(filter.apply(task::Entity::find()).count(db).await?)
}

fn wrong_status(task: &task::Model, allowed: &str) -> AppError {
    AppError::conflict(format!(
        "the task is {}; only {allowed} tasks can be changed this way",
        task.status
    ))
}

/// Puts a failed, dead or cancelled task back in the queue with a fresh set
/// of attempts, to run now.
#[tracing::instrument(skip(state))]
pub async fn retry(state: &AppState, id: Uuid) -> AppResult<task::Model> {
    let now = util::now();
    let retryable: Vec<&str> = TaskStatus::ALL
        .into_iter()
        .filter(|s| s.is_retryable_by_hand())
        .map(TaskStatus::as_str)
        .collect();
    let result = task::Entity::update_many()
        .col_expr(
            task::Column::Status,
            Expr::value(TaskStatus::Pending.as_str()),
        )
        .col_expr(task::Column::Attempts, Expr::value(0))
        .col_expr(task::Column::RunAfter, Expr::value(now))
        .col_expr(
            task::Column::LeaseExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(task::Column::LockedBy, Expr::value(Option::<String>::None))
        .col_expr(
            task::Column::FinishedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(task::Column::UpdatedAt, Expr::value(now))
        .filter(task::Column::Id.eq(id))
        .filter(task::Column::Status.is_in(retryable))
        .exec(&state.db)
        .await
        .map_err(|e| match AppError::from(e) {
            e if e.code == crate::ErrorCode::Conflict => AppError::conflict(
                "another task with the same dedupe key is pending, running or failed",
            ),
            e => e,
        })?;
    let task = find(&state.db, id).await?;
    if result.rows_affected == 0 {
        return Err(wrong_status(&task, "failed, dead or cancelled"));
    }
    state.tasks.wake();
    Ok(task)
}

/// Cancels a pending or failed task; it will not run again unless retried.
#[tracing::instrument(skip(state))]
pub async fn cancel(state: &AppState, id: Uuid) -> AppResult<task::Model> {
    let now = util::now();
    let result = task::Entity::update_many()
        .col_expr(
            task::Column::Status,
            Expr::value(TaskStatus::Cancelled.as_str()),
        )
        .col_expr(task::Column::FinishedAt, Expr::value(Some(now)))
        .col_expr(task::Column::UpdatedAt, Expr::value(now))
        .filter(task::Column::Id.eq(id))
        .filter(
            task::Column::Status.is_in([TaskStatus::Pending.as_str(), TaskStatus::Failed.as_str()]),
        )
        .exec(&state.db)
        .await?;
    let task = find(&state.db, id).await?;
    if result.rows_affected == 0 {
        return Err(wrong_status(&task, "pending or failed"));
    }
    Ok(task)
}

/// Counts of tasks by status and type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskCounts {
    /// `(task type, status) -> count`.
    pub by_type: BTreeMap<(String, TaskStatus), u64>,
}

impl TaskCounts {
    /// The count of one status over all types.
    pub fn status(&self, status: TaskStatus) -> u64 {
        self.by_type
            .iter()
            .filter(|((_, s), _)| *s == status)
            .map(|(_, n)| n)
            .sum()
    }

    /// All tasks.
    pub fn total(&self) -> u64 {
        self.by_type.values().sum()
    }
}

#[derive(Debug, FromQueryResult)]
struct CountRow {
    task_type: String,
    status: String,
    n: i64,
}

/// Counts tasks by type and status. The table only holds live tasks and
/// finished ones younger than `SIGHTLINE_TASK_RETENTION_DAYS`, and the
/// `(status, created_at, id)` index answers it without reading rows on
/// PostgreSQL.
pub async fn counts(db: &impl ConnectionTrait) -> AppResult<TaskCounts> {
    let rows = CountRow::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        "SELECT task_type, status, COUNT(*) AS n FROM tasks GROUP BY task_type, status",
    ))
    .all(db)
    .await?;
    let mut out = TaskCounts::default();
    for r in rows {
        if let Ok(status) = r.status.parse::<TaskStatus>() {
            *out.by_type.entry((r.task_type, status)).or_default() += std::cmp::max(r.n, 0) as u64;
        }
    }
    Ok(out)
}

/// The earliest `run_after` among due-or-waiting tasks (pending or failed).
pub async fn oldest_waiting(db: &impl ConnectionTrait) -> AppResult<Option<DateTime<Utc>>> {
    next_run_after(db, &ClaimScope::All).await
}

// ---------------------------------------------------------------------------
// The worker's side.

/// Which task types a worker takes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClaimScope {
    /// Every type (what [`crate::tasks::run_pending_tasks`] uses).
    #[default]
    All,
    /// Only these types (a dedicated worker, e.g. for alert evaluation).
    Only(Vec<String>),
    /// Every type but these.
    Except(Vec<String>),
}

impl ClaimScope {
    fn apply(&self, q: sea_orm::Select<task::Entity>) -> sea_orm::Select<task::Entity> {
        match self {
            ClaimScope::All => q,
            ClaimScope::Only(types) => q.filter(task::Column::TaskType.is_in(types.clone())),
            ClaimScope::Except(types) if types.is_empty() => q,
            ClaimScope::Except(types) => q.filter(task::Column::TaskType.is_not_in(types.clone())),
        }
    }

    /// The SQL condition (with placeholders from `$first`) and its values.
    fn sql(&self, first: usize) -> (String, Vec<sea_orm::Value>) {
        let (types, negate) = match self {
            ClaimScope::All => return (String::new(), Vec::new()),
            ClaimScope::Only(types) => (types, false),
            ClaimScope::Except(types) if types.is_empty() => return (String::new(), Vec::new()),
            ClaimScope::Except(types) => (types, true),
        };
        if types.is_empty() {
            // `Only` nothing: a condition that never holds.
            return (" AND 1 = 0".to_owned(), Vec::new());
        }
        let placeholders: Vec<String> = (0..types.len())
            .map(|i| format!("${}", first + i))
            .collect();
        let not = if negate { "NOT " } else { "" };
        (
            format!(" AND task_type {not}IN ({})", placeholders.join(", ")),
            types
                .iter()
                .map(|t| sea_orm::Value::from(t.clone()))
                .collect(),
        )
    }
}

/// Claims the most urgent due task for `worker` with a lease until
/// `lease_until`, counting the attempt. `None` when nothing is due.
pub async fn claim(
    db: &impl ConnectionTrait,
    worker: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> AppResult<Option<task::Model>> {
    claim_scoped(db, worker, now, lease_until, &ClaimScope::All).await
}

/// [`claim`] among the task types of `scope` only.
pub async fn claim_scoped(
    db: &impl ConnectionTrait,
    worker: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    scope: &ClaimScope,
) -> AppResult<Option<task::Model>> {
    // A read through the partial due-task index first, so an idle poll
    // takes no write lock.
    let due = scope
        .apply(task::Entity::find())
        .select_only()
        .column(task::Column::Id)
        .filter(
            task::Column::Status.is_in([TaskStatus::Pending.as_str(), TaskStatus::Failed.as_str()]),
        )
        .filter(task::Column::RunAfter.lte(now))
        .limit(1)
        .into_tuple::<Uuid>()
        .one(db)
        .await?;
    if due.is_none() {
        return Ok(None);
    }
    let backend = Backend::of(db);
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let (scope_sql, scope_values) = scope.sql(4);
    let sql = format!(
        "UPDATE tasks SET status = 'running', attempts = attempts + 1, locked_by = $1, \
         lease_expires_at = $2, started_at = $3, updated_at = $3 \
         WHERE id = (SELECT id FROM tasks \
           WHERE status IN ('pending', 'failed') AND run_after <= $3{scope_sql} \
           ORDER BY priority DESC, run_after, id LIMIT 1{lock}) \
         RETURNING *"
    );
    let mut values: Vec<sea_orm::Value> = vec![worker.into(), lease_until.into(), now.into()];
    values.extend(scope_values);
    let stmt = Statement::from_sql_and_values(db.get_database_backend(), sql, values);
    Ok(task::Model::find_by_statement(stmt).one(db).await?)
}

/// The earliest `run_after` of a waiting (pending or failed) task in
/// `scope`: when an idle worker of that scope should look again.
pub async fn next_run_after(
    db: &impl ConnectionTrait,
    scope: &ClaimScope,
) -> AppResult<Option<DateTime<Utc>>> {
    let row = scope
        .apply(task::Entity::find())
        .select_only()
        .column_as(task::Column::RunAfter.min(), "next")
        .filter(
            task::Column::Status.is_in([TaskStatus::Pending.as_str(), TaskStatus::Failed.as_str()]),
        )
        .into_tuple::<Option<DateTime<Utc>>>()
        .one(db)
        .await?;
    Ok(row.flatten())
}

/// A task queued by the server itself (no registry check: the caller names
/// a type it registers), through `db` (typically the transaction that
/// creates its cause). `false` when a live task with the same dedupe key
/// exists, so nothing was added.
#[derive(Debug, Clone)]
pub struct InternalTask {
    /// The task type.
    pub task_type: &'static str,
    /// Its payload.
    pub payload: Value,
    /// At most one live task per key.
    pub dedupe_key: Option<String>,
    /// When it may run.
    pub run_after: DateTime<Utc>,
    /// Higher runs first.
    pub priority: i32,
    /// Attempts before dead.
    pub max_attempts: i32,
}

/// Stores an [`InternalTask`]; `false` when its dedupe key is taken by a live task.
pub async fn insert_internal(db: &impl ConnectionTrait, new: InternalTask) -> AppResult<bool> {
    let now = util::now();
    let row = task::Model {
        id: Uuid::now_v7(),
        task_type: new.task_type.to_owned(),
        payload: new.payload,
        status: TaskStatus::Pending.as_str().to_owned(),
        priority: new.priority,
        attempts: 0,
        max_attempts: std::cmp::max(new.max_attempts, 1),
        run_after: util::to_stored_precision(new.run_after),
        lease_expires_at: None,
        locked_by: None,
        last_error: None,
        result: None,
        dedupe_key: new.dedupe_key,
        created_by: None,
        created_at: now,
        updated_at: now,
        started_at: None,
        finished_at: None,
    };
    let active: task::ActiveModel = row.into();
    let inserted = task::Entity::insert(active)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(inserted == 1)
}

/// The filter that matches a task only while `worker` still holds the lease
/// of attempt `attempt`.
fn held_by(
    q: sea_orm::UpdateMany<task::Entity>,
    id: Uuid,
    worker: &str,
    attempt: i32,
) -> sea_orm::UpdateMany<task::Entity> {
    q.filter(task::Column::Id.eq(id))
        .filter(task::Column::Status.eq(TaskStatus::Running.as_str()))
        .filter(task::Column::LockedBy.eq(worker))
        .filter(task::Column::Attempts.eq(attempt))
}

/// Extends a held lease; `false` when the lease was lost.
pub async fn renew(
    db: &impl ConnectionTrait,
    id: Uuid,
    worker: &str,
    attempt: i32,
    lease_until: DateTime<Utc>,
) -> AppResult<bool> {
    let result = held_by(task::Entity::update_many(), id, worker, attempt)
        .col_expr(task::Column::LeaseExpiresAt, Expr::value(Some(lease_until)))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Stores the result of a successful attempt; `false` when the lease was lost.
pub async fn complete(
    db: &impl ConnectionTrait,
    id: Uuid,
    worker: &str,
    attempt: i32,
    result: Value,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let done = held_by(task::Entity::update_many(), id, worker, attempt)
        .col_expr(
            task::Column::Status,
            Expr::value(TaskStatus::Succeeded.as_str()),
        )
        .col_expr(task::Column::Result, Expr::value(Some(result)))
        .col_expr(
            task::Column::LeaseExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(task::Column::LockedBy, Expr::value(Option::<String>::None))
        .col_expr(task::Column::FinishedAt, Expr::value(Some(now)))
        .col_expr(task::Column::UpdatedAt, Expr::value(now))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Stores the result of a successful attempt of a recurring task and puts
/// it back in the queue, due at `run_after`, with a fresh set of attempts
/// (the handler asked for it with [`crate::tasks::TaskContext::reschedule`]).
/// The task keeps its id and dedupe key, so it stays the one live task of
/// its key. `false` when the lease was lost.
pub async fn rearm(
    db: &impl ConnectionTrait,
    id: Uuid,
    worker: &str,
    attempt: i32,
    result: Value,
    run_after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let done = held_by(task::Entity::update_many(), id, worker, attempt)
        .col_expr(
            task::Column::Status,
            Expr::value(TaskStatus::Pending.as_str()),
        )
        .col_expr(task::Column::Attempts, Expr::value(0))
        .col_expr(task::Column::Result, Expr::value(Some(result)))
        .col_expr(task::Column::LastError, Expr::value(Option::<String>::None))
        .col_expr(
            task::Column::RunAfter,
            Expr::value(util::to_stored_precision(run_after)),
        )
        .col_expr(
            task::Column::LeaseExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(task::Column::LockedBy, Expr::value(Option::<String>::None))
        .col_expr(task::Column::UpdatedAt, Expr::value(now))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// What becomes of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Runs again at this time.
    RetryAt(DateTime<Utc>),
    /// No more attempts.
    Dead,
}

/// Records a failed attempt; `false` when the lease was lost.
pub async fn fail(
    db: &impl ConnectionTrait,
    id: Uuid,
    worker: &str,
    attempt: i32,
    error: &str,
    after: AfterFailure,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let error: String = error.replace('\0', "").chars().take(4000).collect();
    let (status, run_after, finished) = match after {
        AfterFailure::RetryAt(at) => (TaskStatus::Failed, at, None),
        AfterFailure::Dead => (TaskStatus::Dead, now, Some(now)),
    };
    let done = held_by(task::Entity::update_many(), id, worker, attempt)
        .col_expr(task::Column::Status, Expr::value(status.as_str()))
        .col_expr(task::Column::LastError, Expr::value(Some(error)))
        .col_expr(task::Column::RunAfter, Expr::value(run_after))
        .col_expr(
            task::Column::LeaseExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(task::Column::LockedBy, Expr::value(Option::<String>::None))
        .col_expr(task::Column::FinishedAt, Expr::value(finished))
        .col_expr(task::Column::UpdatedAt, Expr::value(now))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Returns the tasks whose lease expired before `now` (their worker crashed,
/// hung or lost the database) to the queue: they run again at once if
/// attempts remain, and are dead otherwise. Returns how many were returned
/// and how many died.
pub async fn reap_expired(db: &DatabaseConnection, now: DateTime<Utc>) -> AppResult<(u64, u64)> {
    // A read through the partial lease index first, so the common case
    // (nothing expired) takes no write lock.
    let any = task::Entity::find()
        .select_only()
        .column(task::Column::Id)
        .filter(task::Column::Status.eq(TaskStatus::Running.as_str()))
        .filter(task::Column::LeaseExpiresAt.lt(now))
        .limit(1)
        .into_tuple::<Uuid>()
        .one(db)
        .await?;
    if any.is_none() {
        return Ok((0, 0));
    }
    let message = "the worker stopped renewing its lease (it crashed, hung or lost the database)";
    let expired = |q: sea_orm::UpdateMany<task::Entity>| {
        q.filter(task::Column::Status.eq(TaskStatus::Running.as_str()))
            .filter(task::Column::LeaseExpiresAt.lt(now))
    };
    let txn = crate::db::begin_write(db).await?;
    let died = expired(task::Entity::update_many())
        .filter(Expr::col(task::Column::Attempts).gte(Expr::col(task::Column::MaxAttempts)))
        .col_expr(task::Column::Status, Expr::value(TaskStatus::Dead.as_str()))
        .col_expr(task::Column::LastError, Expr::value(Some(message)))
        .col_expr(
            task::Column::LeaseExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(task::Column::LockedBy, Expr::value(Option::<String>::None))
        .col_expr(task::Column::FinishedAt, Expr::value(Some(now)))
        .col_expr(task::Column::UpdatedAt, Expr::value(now))
        .exec(&txn)
        .await?
        .rows_affected;
    let returned = expired(task::Entity::update_many())
        .col_expr(
            task::Column::Status,
            Expr::value(TaskStatus::Failed.as_str()),
        )
        .col_expr(task::Column::LastError, Expr::value(Some(message)))
        .col_expr(task::Column::RunAfter, Expr::value(now))
        .col_expr(
            task::Column::LeaseExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(task::Column::LockedBy, Expr::value(Option::<String>::None))
        .col_expr(task::Column::UpdatedAt, Expr::value(now))
        .exec(&txn)
        .await?
        .rows_affected;
    txn.commit().await?;
    if returned + died > 0 {
        tracing::warn!(
            returned,
            died,
            "tasks with expired leases returned to the queue"
        );
    }
    Ok((returned, died))
}

/// Deletes up to `limit` finished tasks (succeeded, dead, cancelled) that
/// finished before `cutoff`; returns how many.
pub async fn delete_finished_before(
    db: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> AppResult<u64> {
    let stmt = Statement::from_sql_and_values(
        db.get_database_backend(),
        "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks \
         WHERE finished_at < $1 AND status IN ('succeeded', 'dead', 'cancelled') \
         ORDER BY finished_at LIMIT $2)",
        [cutoff.into(), (limit as i64).into()],
    );
    Ok(db.execute_raw(stmt).await?.rows_affected())
}
