//! Workers: claim a due task, run its handler under a timeout while renewing
//! the lease, and record the outcome.
//!
//! The handler runs in a task of its own, so a panic surfaces as a
//! `JoinError` and a timeout aborts it: neither takes the worker down, and
//! both count as a failed attempt (retried with backoff, then dead with the
//! error kept). [`try_execute_task`] runs exactly one task and says what
//! happened, which is what tests use (through [`run_pending_tasks`]) to
//! drain the queue deterministically instead of sleeping.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::RngExt;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::model::backoff;
use super::registry::{TaskContext, TaskError};
use super::service::{self, AfterFailure, ClaimScope};
use crate::error::AppResult;
use crate::state::AppState;
use crate::util;

/// What one call of [`try_execute_task`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// No task was due.
    Idle,
    /// The task succeeded; its result is stored.
    Succeeded {
        /// The task.
        id: Uuid,
        /// Its type.
        task_type: String,
    },
    /// The attempt failed; the task runs again at `run_after`.
    Retrying {
        /// The task.
        id: Uuid,
        /// Its type.
        task_type: String,
        /// What went wrong.
        error: String,
        /// When it runs again.
        run_after: DateTime<Utc>,
    },
    /// The attempt failed and no attempts remain (or the failure is permanent).
    Dead {
        /// The task.
        id: Uuid,
        /// Its type.
        task_type: String,
        /// What went wrong.
        error: String,
    },
    /// The task succeeded and, as its handler asked, is queued again.
    Rearmed {
        /// The task.
        id: Uuid,
        /// Its type.
        task_type: String,
        /// When it runs next.
        run_after: DateTime<Utc>,
    },
    /// The lease lapsed while the handler ran; whatever it did is not
    /// recorded here (the task's next holder decides).
    LeaseLost {
        /// The task.
        id: Uuid,
        /// Its type.
        task_type: String,
    },
}

/// Aborts the handler's task when dropped (the worker stopped waiting for it).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The text of a panic payload.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-text panic payload".to_owned()
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Runs at most one due task as `worker`, at the real time.
pub async fn try_execute_task(state: &AppState, worker: &str) -> AppResult<Outcome> {
    try_execute_task_at(state, worker, util::now()).await
}

/// Runs at most one task that is due at `now`, as `worker`. Tests pass a
/// `now` in the future to run retries and expire leases without waiting.
/// Tasks whose lease expired before `now` go back to the queue first.
pub async fn try_execute_task_at(
    state: &AppState,
    worker: &str,
    now: DateTime<Utc>,
) -> AppResult<Outcome> {
    try_execute_scoped(state, worker, now, &ClaimScope::All).await
}

/// [`try_execute_task_at`] among the task types of `scope` only.
pub async fn try_execute_scoped(
    state: &AppState,
    worker: &str,
    now: DateTime<Utc>,
    scope: &ClaimScope,
) -> AppResult<Outcome> {
    service::reap_expired(&state.db, now).await?;
    let mut lease = state.config.task_lease;
    let Some(task) =
        service::claim_scoped(&state.db, worker, now, now + chrono_duration(lease), scope).await?
    else {
        return Ok(Outcome::Idle);
    };
    let started = Instant::now();
    let id = task.id;
    let task_type = task.task_type.clone();
    let attempt = task.attempts;
    // The clock of this attempt: `now` plus the time the handler took.
    let clock = |started: Instant| now + chrono_duration(started.elapsed());

    let Some(entry) = state.tasks.get(&task_type) else {
        let error = format!("no handler is registered for task type `{task_type}`");
        let at = clock(started);
        return record_failure(state, &task, worker, TaskError::Permanent(error), at).await;
    };
    let timeout = state.tasks.timeout_of(&entry);
    if let Some(own) = entry.handler.lease(&task).filter(|l| *l != lease) {
        // The handler's own lease (e.g. one alert rule interval).
        lease = own.max(Duration::from_secs(1));
        let until = clock(started) + chrono_duration(lease);
        if !service::renew(&state.db, id, worker, attempt, until).await? {
            return Ok(Outcome::LeaseLost { id, task_type });
        }
    }
    tracing::debug!(task_id = %id, %task_type, attempt, "task started");
    let ctx = TaskContext::new(state.clone(), task.clone(), now);
    let rearm = ctx.rearm.clone();
    let mut handle = AbortOnDrop(tokio::spawn(entry.handler.run(ctx)));
    let deadline = tokio::time::Instant::now() + timeout;
    let renew_every = (lease / 3).max(Duration::from_millis(200));
    let result: Result<serde_json::Value, TaskError> = loop {
        tokio::select! {
            joined = &mut handle.0 => {
                break match joined {
                    Ok(result) => result,
                    Err(e) if e.is_panic() => Err(TaskError::Retry(format!(
                        "the handler panicked: {}",
                        panic_message(e.into_panic())
                    ))),
                    Err(_) => Err(TaskError::Retry("the handler was cancelled".to_owned())),
                };
            }
            _ = tokio::time::sleep_until(deadline) => {
                handle.0.abort();
                break Err(TaskError::Retry(format!(
                    "the attempt timed out after {}",
                    humanize(timeout)
                )));
            }
            _ = tokio::time::sleep(renew_every) => {
                let until = clock(started) + chrono_duration(lease);
                match service::renew(&state.db, id, worker, attempt, until).await {
                    Ok(true) => {}
                    Ok(false) => {
                        handle.0.abort();
                        tracing::warn!(task_id = %id, %task_type, "task lease lost while running");
                        return Ok(Outcome::LeaseLost { id, task_type });
                    }
                    Err(e) => {
                        // Keep running: the lease may still hold; the next
                        // renewal or the final update will tell.
                        tracing::warn!(task_id = %id, error = %e.describe(), "could not renew a task lease");
                    }
                }
            }
        }
    };
    let at = clock(started);
    match result {
        Ok(value) => {
            let requested = *rearm.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(run_after) = requested {
                return if service::rearm(&state.db, id, worker, attempt, value, run_after, at)
                    .await?
                {
                    tracing::debug!(task_id = %id, %task_type, %run_after, "task succeeded and is queued again");
                    Ok(Outcome::Rearmed {
                        id,
                        task_type,
                        run_after,
                    })
                } else {
                    Ok(Outcome::LeaseLost { id, task_type })
                };
            }
            if service::complete(&state.db, id, worker, attempt, value, at).await? {
                tracing::info!(task_id = %id, %task_type, attempt, elapsed_ms = started.elapsed().as_millis() as u64, "task succeeded");
                Ok(Outcome::Succeeded { id, task_type })
            } else {
                Ok(Outcome::LeaseLost { id, task_type })
            }
        }
        Err(error) => record_failure(state, &task, worker, error, at).await,
    }
}

async fn record_failure(
    state: &AppState,
    task: &super::entity::task::Model,
    worker: &str,
    error: TaskError,
    at: DateTime<Utc>,
) -> AppResult<Outcome> {
    let id = task.id;
    let task_type = task.task_type.clone();
    let attempt = task.attempts;
    let exhausted = attempt >= task.max_attempts;
    let after = match (&error, exhausted) {
        (TaskError::Retry(_), false) => {
            let jitter: f64 = rand::rng().random();
            let delay = backoff(
                attempt.max(1) as u32,
                state.config.task_backoff_base,
                state.config.task_backoff_max,
                jitter,
            );
            AfterFailure::RetryAt(util::to_stored_precision(at + chrono_duration(delay)))
        }
        (TaskError::Retry(_), true) | (TaskError::Permanent(_), _) => AfterFailure::Dead,
    };
    let message = error.message().to_owned();
    if !service::fail(&state.db, id, worker, attempt, &message, after, at).await? {
        return Ok(Outcome::LeaseLost { id, task_type });
    }
    Ok(match after {
        AfterFailure::RetryAt(run_after) => {
            tracing::warn!(task_id = %id, %task_type, attempt, error = %message, %run_after, "task attempt failed; will retry");
            Outcome::Retrying {
                id,
                task_type,
                error: message,
                run_after,
            }
        }
        AfterFailure::Dead => {
            tracing::error!(task_id = %id, %task_type, attempt, error = %message, "task failed for good");
            Outcome::Dead {
                id,
                task_type,
                error: message,
            }
        }
    })
}

fn humanize(d: Duration) -> String {
    if d.as_secs() >= 1 && d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Most tasks one [`run_pending_tasks`] call runs (a handler that keeps
/// enqueueing work must not make it loop forever).
pub const DRAIN_LIMIT: usize = 10_000;

/// Runs every task that is due now, one after another in this task, until
/// none is due; returns what each run did. Tasks scheduled for later (a
/// retry's backoff) are left alone. This is how tests wait for background
/// work deterministically.
pub async fn run_pending_tasks(state: &AppState) -> AppResult<Vec<Outcome>> {
    run_pending_tasks_at(state, util::now()).await
}

/// [`run_pending_tasks`] as if the time were `now`.
pub async fn run_pending_tasks_at(state: &AppState, now: DateTime<Utc>) -> AppResult<Vec<Outcome>> {
    let worker = format!("drain-{}", Uuid::new_v4().simple());
    let mut outcomes = Vec::new();
    while outcomes.len() < DRAIN_LIMIT {
        match try_execute_task_at(state, &worker, now).await? {
            Outcome::Idle => break,
            other => outcomes.push(other),
        }
    }
    Ok(outcomes)
}

/// A name for this process's workers, unique across replicas.
fn worker_name(index: usize) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "sightline".to_owned());
    let host: String = host.chars().take(40).collect();
    let uniq = Uuid::new_v4().simple().to_string();
    format!("{host}-{}-w{index}-{}", std::process::id(), &uniq[..8])
}

/// Starts the configured number of general workers (every task type but
/// alert evaluation) and, when `SIGHTLINE_ALERT_EVALUATOR` is on, one
/// dedicated alert-evaluation worker, so rule evaluations keep their
/// cadence however long other tasks (retention, analysis) run. Each stops
/// taking tasks when the server shuts down and finishes the one it runs.
pub fn spawn_workers(state: &AppState) -> Vec<JoinHandle<()>> {
    let alert = super::handlers::ALERT_EVALUATION.to_owned();
    let mut workers: Vec<JoinHandle<()>> = (0..state.config.task_workers as usize)
        .map(|i| {
            let state = state.clone();
            let scope = ClaimScope::Except(vec![alert.clone()]);
            tokio::spawn(async move { worker_loop(state, worker_name(i), scope).await })
        })
        .collect();
    if state.config.alert_evaluator {
        let state = state.clone();
        let scope = ClaimScope::Only(vec![alert]);
        workers.push(tokio::spawn(async move {
            let name = format!("{}-alerts", worker_name(0));
            worker_loop(state, name, scope).await
        }));
    }
    workers
}

/// How long an idle worker waits before looking again: until the earliest
/// waiting task of its scope is due, at most the poll interval.
async fn idle_wait(state: &AppState, scope: &ClaimScope, poll: Duration) -> Duration {
    match service::next_run_after(&state.db, scope).await {
        Ok(Some(next)) => (next - util::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .clamp(
                Duration::from_millis(10),
                poll.max(Duration::from_millis(10)),
            ),
        _ => poll,
    }
}

async fn worker_loop(state: AppState, name: String, scope: ClaimScope) {
    let mut shutdown = state.shutdown.clone();
    let poll = state.config.task_poll_interval;
    tracing::debug!(worker = %name, ?scope, "task worker started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Listen for wake-ups before looking, so none is missed.
        let woken = state.tasks.woken();
        tokio::pin!(woken);
        woken.as_mut().enable();
        match try_execute_scoped(&state, &name, util::now(), &scope).await {
            Ok(Outcome::Idle) => {
                let wait = idle_wait(&state, &scope, poll).await;
                tokio::select! {
                    _ = &mut woken => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(worker = %name, error = %e.describe(), "task worker could not reach the queue");
                tokio::select! {
                    _ = tokio::time::sleep(poll.max(Duration::from_secs(1))) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    tracing::debug!(worker = %name, "task worker stopped");
}
