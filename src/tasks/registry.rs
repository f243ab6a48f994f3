//! The handlers a process can run, by task type, and what a handler gets
//! and returns.
//!
//! Handlers are registered once at startup ([`crate::tasks::handlers::register_monitoring_handlers`]);
//! only registered types can be enqueued. A handler validates its payload up
//! front ([`Handler::validate`]) so a bad payload is refused at enqueue time
//! with `BAD_USER_INPUT` instead of dying later in the queue.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::Notify;

use super::entity::task;
use crate::error::{AppError, ErrorCode, FieldError};
use crate::state::AppState;

/// What a handler is given for one attempt.
#[derive(Clone)]
pub struct TaskContext {
    /// The app state (database, settings, hub).
    pub state: AppState,
    /// The task as claimed (its `attempts` includes this attempt).
    pub task: task::Model,
    /// The time the attempt started; handlers use it instead of the clock so
    /// tests can run them "later".
    pub now: DateTime<Utc>,
    /// Where [`TaskContext::reschedule`] leaves its request for the worker.
    pub rearm: Arc<Mutex<Option<DateTime<Utc>>>>,
}

impl TaskContext {
    /// A context for one attempt of `task` at `now`.
    pub fn new(state: AppState, task: task::Model, now: DateTime<Utc>) -> TaskContext {
        TaskContext {
            state,
            task,
            now,
            rearm: Arc::new(Mutex::new(None)),
        }
    }

    /// Asks for this task to run again at `at` once this attempt succeeds:
    /// instead of `succeeded`, the same task (same id and dedupe key) goes
    /// back to `pending` with a fresh set of attempts and its result stored.
    /// This is how recurring work (one alert rule's evaluation) keeps exactly
    /// one live task. A failed attempt ignores it (the usual retry applies).
    pub fn reschedule(&self, at: DateTime<Utc>) {
        *self.rearm.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    /// The time asked for with [`TaskContext::reschedule`], if any.
    pub fn rescheduled_at(&self) -> Option<DateTime<Utc>> {
        *self.rearm.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskError {
    /// A failure that may pass (database unavailable, conflict): retried
    /// with backoff while attempts remain.
    Retry(String),
    /// A failure that will not pass by retrying (bad payload, the thing it
    /// is about is gone): the task is dead at once.
    Permanent(String),
}

impl TaskError {
    /// The message stored as the task's `last_error`.
    pub fn message(&self) -> &str {
        match self {
            TaskError::Retry(m) | TaskError::Permanent(m) => m,
        }
    }
}

impl From<AppError> for TaskError {
    fn from(e: AppError) -> Self {
        // The cause of an internal error goes to the log, not to the task row
        // (which clients can read).
        e.log();
        let message = e.describe();
        match e.code {
            ErrorCode::BadUserInput
            | ErrorCode::NotFound
            | ErrorCode::Forbidden
            | ErrorCode::Unauthenticated => TaskError::Permanent(message),
            ErrorCode::Conflict
            | ErrorCode::RateLimited
            | ErrorCode::Unavailable
            | ErrorCode::Internal => TaskError::Retry(message),
        }
    }
}

impl From<sea_orm::DbErr> for TaskError {
    fn from(e: sea_orm::DbErr) -> Self {
        TaskError::from(AppError::from(e))
    }
}

/// The future a handler returns: the result stored on success.
pub type HandlerFuture = BoxFuture<'static, Result<Value, TaskError>>;

/// Runs tasks of one type.
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt.
    fn run(&self, ctx: TaskContext) -> HandlerFuture;

    /// Checks a payload before it is enqueued (by default any object).
    fn validate(&self, payload: &Value) -> Result<(), FieldError> {
        let _ = payload;
        Ok(())
    }

    /// The lease a worker holds on `task` while running it (`None`: the
    /// server's `SIGHTLINE_TASK_LEASE`). A crashed worker's task returns to
    /// the queue this long after its last renewal.
    fn lease(&self, task: &task::Model) -> Option<Duration> {
        let _ = task;
        None
    }
}

/// A handler made of a payload check and an async function.
pub struct FnHandler<F, V> {
    run: F,
    validate: V,
}

impl<F, Fut, V> Handler for FnHandler<F, V>
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, TaskError>> + Send + 'static,
    V: Fn(&Value) -> Result<(), FieldError> + Send + Sync + 'static,
{
    fn run(&self, ctx: TaskContext) -> HandlerFuture {
        Box::pin((self.run)(ctx))
    }

    fn validate(&self, payload: &Value) -> Result<(), FieldError> {
        (self.validate)(payload)
    }
}

/// A handler from an async function that accepts any object payload.
pub fn handler_fn<F, Fut>(
    run: F,
) -> FnHandler<F, impl Fn(&Value) -> Result<(), FieldError> + Send + Sync + 'static>
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, TaskError>> + Send + 'static,
{
    FnHandler {
        run,
        validate: |_: &Value| Ok(()),
    }
}

/// A handler from an async function and a payload check.
pub fn handler_with_validation<F, Fut, V>(run: F, validate: V) -> FnHandler<F, V>
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, TaskError>> + Send + 'static,
    V: Fn(&Value) -> Result<(), FieldError> + Send + Sync + 'static,
{
    FnHandler { run, validate }
}

/// A registered handler with its limits.
#[derive(Clone)]
pub struct Registered {
    /// The task type.
    pub task_type: String,
    /// One line for operators.
    pub description: String,
    /// Longest an attempt may run (`None`: the server's `SIGHTLINE_TASK_TIMEOUT`).
    pub timeout: Option<Duration>,
    /// Attempts before dead (`None`: the server's `SIGHTLINE_TASK_MAX_ATTEMPTS`).
    pub max_attempts: Option<u32>,
    /// The handler.
    pub handler: Arc<dyn Handler>,
}

/// Options of a registration.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Longest an attempt may run.
    pub timeout: Option<Duration>,
    /// Attempts before dead.
    pub max_attempts: Option<u32>,
}

/// The handlers of this process, plus the signal that wakes idle workers
/// when a task is enqueued here.
pub struct TaskRegistry {
    handlers: RwLock<BTreeMap<String, Registered>>,
    wake: Notify,
    default_timeout: Duration,
    default_max_attempts: u32,
}

impl TaskRegistry {
    /// An empty registry with the server's default limits.
    pub fn new(default_timeout: Duration, default_max_attempts: u32) -> Self {
        TaskRegistry {
            handlers: RwLock::new(BTreeMap::new()),
            wake: Notify::new(),
            default_timeout,
            default_max_attempts: default_max_attempts.max(1),
        }
    }

    /// Registers (or replaces) the handler of `task_type`.
    pub fn register(
        &self,
        task_type: &str,
        description: &str,
        options: Options,
        handler: impl Handler,
    ) {
        let entry = Registered {
            task_type: task_type.to_owned(),
            description: description.to_owned(),
            timeout: options.timeout,
            max_attempts: options.max_attempts,
            handler: Arc::new(handler),
        };
        self.handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task_type.to_owned(), entry);
    }

    /// The handler of `task_type`, if registered.
    pub fn get(&self, task_type: &str) -> Option<Registered> {
        self.handlers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(task_type)
            .cloned()
    }

    /// Every registered type with its description, sorted by type.
    pub fn types(&self) -> Vec<(String, String)> {
        self.handlers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|r| (r.task_type.clone(), r.description.clone()))
            .collect()
    }

    /// The timeout of an attempt of `entry`.
    pub fn timeout_of(&self, entry: &Registered) -> Duration {
        entry.timeout.unwrap_or(self.default_timeout)
    }

    /// The attempts a new task of `entry` gets unless it asks otherwise.
    pub fn max_attempts_of(&self, entry: &Registered) -> u32 {
        entry.max_attempts.unwrap_or(self.default_max_attempts)
    }

    /// Wakes idle workers of this process (call after a task is committed).
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// Resolves at the next [`TaskRegistry::wake`].
    pub fn woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_permanent_and_outages_are_retried() {
        let permanent = TaskError::from(AppError::bad_input("x", "bad"));
        assert!(matches!(permanent, TaskError::Permanent(_)));
        let retry = TaskError::from(AppError::unavailable(std::io::Error::other("down")));
        assert!(matches!(retry, TaskError::Retry(_)));
    }

    #[test]
    fn internal_causes_stay_out_of_the_stored_error() {
        let e = TaskError::from(AppError::internal(std::io::Error::other(
            "SELECT secret FROM users",
        )));
        assert!(!e.message().contains("SELECT"));
    }

    #[test]
    fn registered_types_are_listed_in_order_and_replaced_by_name() {
        let r = TaskRegistry::new(Duration::from_secs(5), 3);
        r.register(
            "b",
            "second",
            Options::default(),
            handler_fn(|_| async { Ok(Value::Null) }),
        );
        r.register(
            "a",
            "first",
            Options {
                max_attempts: Some(9),
                ..Default::default()
            },
            handler_fn(|_| async { Ok(Value::Null) }),
        );
        r.register(
            "b",
            "again",
            Options::default(),
            handler_fn(|_| async { Ok(Value::Null) }),
        );
        let types: Vec<String> = r.types().into_iter().map(|(t, _)| t).collect();
        assert_eq!(types, ["a", "b"]);
        assert_eq!(r.get("b").unwrap().description, "again");
        assert_eq!(r.max_attempts_of(&r.get("a").unwrap()), 9);
        assert_eq!(r.max_attempts_of(&r.get("b").unwrap()), 3);
        assert!(r.get("c").is_none());
    }
}
