//! GraphQL API of the task queue (moderator and above): list and inspect
//! tasks, enqueue registered task types, retry and cancel, and queue
//! statistics.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::entity::task;
use super::model::{NewTask, TaskStatus};
use super::service::{self, TaskFilter};
use crate::alerts::loader::{UserLoader, loader};
use crate::auth::Role;
use crate::auth::graphql::User;
use crate::auth::guard::{ContextExt, RoleGuard};
use crate::graphql::{TotalCount, parse_id};
use crate::pagination::{Cursor, Page, PageArgs};

/// Where a task is in its life cycle.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "TaskStatus")]
pub enum GqlTaskStatus {
    /// Waiting to run once `runAfter` has passed.
    Pending,
    /// Claimed by a worker that holds a lease on it.
    Running,
    /// Finished; `result` holds what the handler returned.
    Succeeded,
    /// The last attempt failed (`lastError`); it runs again at `runAfter`.
    Failed,
    /// Every attempt failed, or the failure cannot be retried; `lastError` says why.
    Dead,
    /// Cancelled before it finished.
    Cancelled,
}

impl From<TaskStatus> for GqlTaskStatus {
    fn from(s: TaskStatus) -> Self {
        match s {
            TaskStatus::Pending => GqlTaskStatus::Pending,
            TaskStatus::Running => GqlTaskStatus::Running,
            TaskStatus::Succeeded => GqlTaskStatus::Succeeded,
            TaskStatus::Failed => GqlTaskStatus::Failed,
            TaskStatus::Dead => GqlTaskStatus::Dead,
            TaskStatus::Cancelled => GqlTaskStatus::Cancelled,
        }
    }
}

impl From<GqlTaskStatus> for TaskStatus {
    fn from(s: GqlTaskStatus) -> Self {
        match s {
            GqlTaskStatus::Pending => TaskStatus::Pending,
            GqlTaskStatus::Running => TaskStatus::Running,
            GqlTaskStatus::Succeeded => TaskStatus::Succeeded,
            GqlTaskStatus::Failed => TaskStatus::Failed,
            GqlTaskStatus::Dead => TaskStatus::Dead,
            GqlTaskStatus::Cancelled => TaskStatus::Cancelled,
        }
    }
}

/// A unit of background work.
pub struct Task(pub task::Model);

#[Object]
impl Task {
    /// The task's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The handler that runs it (see `taskStats.registeredTypes`).
    async fn task_type(&self) -> &str {
        &self.0.task_type
    }
    /// The handler's input.
    async fn payload(&self) -> &Value {
        &self.0.payload
    }
    /// Where it is in its life cycle.
    async fn status(&self) -> GqlTaskStatus {
        self.0
            .status
            .parse::<TaskStatus>()
            .unwrap_or(TaskStatus::Pending)
            .into()
    }
    /// Higher runs first.
    async fn priority(&self) -> i32 {
        self.0.priority
    }
    /// Attempts started so far.
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    /// Attempts allowed before it is dead.
    async fn max_attempts(&self) -> i32 {
        self.0.max_attempts
    }
    /// Not run before this time (after a failure: when it is retried).
    async fn run_after(&self) -> DateTime<Utc> {
        self.0.run_after
    }
    /// While running: when the worker's lease lapses unless renewed.
    async fn lease_expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.lease_expires_at
    }
    /// While running: the worker holding it.
    async fn locked_by(&self) -> Option<&str> {
        self.0.locked_by.as_deref()
    }
    /// The error of the last failed attempt.
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    /// What the handler returned, once succeeded.
    async fn result(&self) -> Option<&Value> {
        self.0.result.as_ref()
    }
    /// At most one pending, running or failed task has a given dedupe key.
    async fn dedupe_key(&self) -> Option<&str> {
        self.0.dedupe_key.as_deref()
    }
    /// Id of the user who enqueued it (none for the scheduler).
    async fn created_by_id(&self) -> Option<ID> {
        self.0.created_by.map(|id| ID(id.to_string()))
    }
    /// Who enqueued it; null for the scheduler and internal callers (or a deleted user).
    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let Some(id) = self.0.created_by else {
            return Ok(None);
        };
        Ok(loader::<UserLoader>(ctx).load_one(id).await?.map(User))
    }
    /// When it was enqueued.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Last change.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// When its latest attempt started.
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }
    /// When it succeeded, died or was cancelled.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    /// Its position in task lists, for `after` / `before`.
    async fn cursor(&self) -> String {
        Cursor::new(self.0.created_at, self.0.id).encode()
    }
}

/// Which tasks to list.
#[derive(InputObject, Default)]
#[graphql(name = "TaskFilter")]
pub struct TaskFilterInput {
    /// Any of these statuses (all when omitted or empty).
    pub statuses: Option<Vec<GqlTaskStatus>>,
    /// Only this task type.
    pub task_type: Option<String>,
    /// Enqueued at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Enqueued before this time.
    pub to: Option<DateTime<Utc>>,
}

impl From<TaskFilterInput> for TaskFilter {
    fn from(f: TaskFilterInput) -> Self {
        TaskFilter {
            statuses: f
                .statuses
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            task_type: f.task_type,
            from: f.from,
            to: f.to,
        }
    }
}

/// Input of `enqueueTask`.
#[derive(InputObject)]
pub struct EnqueueTaskInput {
    /// A registered task type (see `taskStats.registeredTypes`).
    pub task_type: String,
    /// The handler's input: a JSON object (default `{}`), at most 256 KB.
    pub payload: Option<Value>,
    /// Not before this time (default: now; at most 366 days ahead).
    pub run_after: Option<DateTime<Utc>>,
    /// Higher runs first, -1000 to 1000 (default 0).
    pub priority: Option<i32>,
    /// Attempts before it is dead, 1 to 100 (default: the handler's or the server's).
    pub max_attempts: Option<i32>,
    /// Refuse with CONFLICT while a pending, running or failed task has this key.
    pub dedupe_key: Option<String>,
}

/// Input of `retryTask`.
#[derive(InputObject)]
pub struct RetryTaskInput {
    /// A failed, dead or cancelled task.
    pub id: ID,
}

/// Input of `cancelTask`.
#[derive(InputObject)]
pub struct CancelTaskInput {
    /// A pending or failed task.
    pub id: ID,
}

/// Task counts of one type.
#[derive(SimpleObject, Default)]
pub struct TaskTypeStats {
    /// The task type.
    pub task_type: String,
    /// Waiting to run.
    pub pending: u64,
    /// Running now.
    pub running: u64,
    /// Succeeded (kept for the task retention period).
    pub succeeded: u64,
    /// Failed, waiting for a retry.
    pub failed: u64,
    /// Out of attempts.
    pub dead: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// All of the above.
    pub total: u64,
}

impl TaskTypeStats {
    fn add(&mut self, status: TaskStatus, n: u64) {
        match status {
            TaskStatus::Pending => self.pending += n,
            TaskStatus::Running => self.running += n,
            TaskStatus::Succeeded => self.succeeded += n,
            TaskStatus::Failed => self.failed += n,
            TaskStatus::Dead => self.dead += n,
            TaskStatus::Cancelled => self.cancelled += n,
        }
        self.total += n;
    }
}

/// A task type this server can run.
#[derive(SimpleObject)]
pub struct TaskType {
    /// The name to pass as `taskType`.
    pub name: String,
    /// What it does.
    pub description: String,
}

/// The state of the queue.
#[derive(SimpleObject)]
pub struct TaskStats {
    /// Waiting to run.
    pub pending: u64,
    /// Running now.
    pub running: u64,
    /// Succeeded (kept for the task retention period).
    pub succeeded: u64,
    /// Failed, waiting for a retry.
    pub failed: u64,
    /// Out of attempts.
    pub dead: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// All tasks.
    pub total: u64,
    /// The earliest `runAfter` of a pending or failed task.
    pub oldest_waiting_since: Option<DateTime<Utc>>,
    /// Counts per task type, by type name.
    pub by_type: Vec<TaskTypeStats>,
    /// The task types this server can run.
    pub registered_types: Vec<TaskType>,
}

/// Task queries.
#[derive(Default)]
pub struct TaskQuery;

#[Object]
impl TaskQuery {
    /// Background tasks in enqueue order (moderator and above).
    #[graphql(
        guard = "RoleGuard::new(Role::Moderator)",
        complexity = "first.or(last).unwrap_or(100).max(0) as usize * child_complexity"
    )]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which tasks.")] filter: Option<TaskFilterInput>,
        #[graphql(desc = "Page size from the start (default 100, at most 1000).")] first: Option<
            i32,
        >,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
        #[graphql(desc = "Page size from the end.")] last: Option<i32>,
        #[graphql(desc = "Cursor to end before.")] before: Option<String>,
    ) -> async_graphql::Result<Connection<Cursor, Task, TotalCount>> {
        let filter = TaskFilter::from(filter.unwrap_or_default()).validate()?;
        let page = Page::from_args(
            PageArgs {
                first,
                after,
                last,
                before,
            },
            100,
            1000,
        )?;
        let rows = service::list(&ctx.state().db, &filter, &page).await?;
        let mut conn = Connection::with_additional_fields(
            rows.has_previous,
            rows.has_next,
            TotalCount::new(move |s| {
                let filter = filter.clone();
                async move { service::count(&s.db, &filter).await }
            }),
        );
        conn.edges
            .extend(rows.items.into_iter().map(|(c, t)| Edge::new(c, Task(t))));
        Ok(conn)
    }

    /// One task by id (moderator and above).
    #[graphql(guard = "RoleGuard::new(Role::Moderator)")]
    async fn task(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The task's id.")] id: ID,
    ) -> async_graphql::Result<Task> {
        let id = parse_id("id", &id)?;
        Ok(Task(service::find(&ctx.state().db, id).await?))
    }

    /// Queue statistics and the task types this server runs (moderator and above).
    #[graphql(guard = "RoleGuard::new(Role::Moderator)")]
    async fn task_stats(&self, ctx: &Context<'_>) -> async_graphql::Result<TaskStats> {
        let state = ctx.state();
        let counts = service::counts(&state.db).await?;
        let oldest = service::oldest_waiting(&state.db).await?;
        let mut by_type: std::collections::BTreeMap<String, TaskTypeStats> = Default::default();
        for ((task_type, status), n) in &counts.by_type {
            by_type
                .entry(task_type.clone())
                .or_insert_with(|| TaskTypeStats {
                    task_type: task_type.clone(),
                    ..Default::default()
                })
                .add(*status, *n);
        }
        Ok(TaskStats {
            pending: counts.status(TaskStatus::Pending),
            running: counts.status(TaskStatus::Running),
            succeeded: counts.status(TaskStatus::Succeeded),
            failed: counts.status(TaskStatus::Failed),
            dead: counts.status(TaskStatus::Dead),
            cancelled: counts.status(TaskStatus::Cancelled),
            total: counts.total(),
            oldest_waiting_since: oldest,
            by_type: by_type.into_values().collect(),
            registered_types: state
                .tasks
                .types()
                .into_iter()
                .map(|(name, description)| TaskType { name, description })
                .collect(),
        })
    }
}

/// Task mutations.
#[derive(Default)]
pub struct TaskMutation;

#[Object]
impl TaskMutation {
    /// Enqueues a task of a registered type (moderator and above).
    #[graphql(guard = "RoleGuard::new(Role::Moderator)")]
    async fn enqueue_task(
        &self,
        ctx: &Context<'_>,
        input: EnqueueTaskInput,
    ) -> async_graphql::Result<Task> {
        let new = NewTask {
            task_type: input.task_type,
            payload: input.payload.unwrap_or(Value::Null),
            run_after: input.run_after,
            priority: input.priority,
            max_attempts: input.max_attempts,
            dedupe_key: input.dedupe_key,
        };
        Ok(Task(
            service::enqueue_for_client(ctx.state(), ctx.identity()?, new).await?,
        ))
    }

    /// Puts a failed, dead or cancelled task back in the queue with fresh
    /// attempts (moderator and above).
    #[graphql(guard = "RoleGuard::new(Role::Moderator)")]
    async fn retry_task(
        &self,
        ctx: &Context<'_>,
        input: RetryTaskInput,
    ) -> async_graphql::Result<Task> {
        let id = parse_id("id", &input.id)?;
        Ok(Task(service::retry(ctx.state(), id).await?))
    }

    /// Cancels a pending or failed task (moderator and above).
    #[graphql(guard = "RoleGuard::new(Role::Moderator)")]
    async fn cancel_task(
        &self,
        ctx: &Context<'_>,
        input: CancelTaskInput,
    ) -> async_graphql::Result<Task> {
        let id = parse_id("id", &input.id)?;
        Ok(Task(service::cancel(ctx.state(), id).await?))
    }
}
