//! Group commit: one task per kind of row owns the writes. Request handlers
//! validate their input, then [`Writer::submit`] it and await the answer; the
//! task takes whatever is queued (up to [`MAX_GROUP_ROWS`] rows), writes it in
//! ONE transaction, commits, lets the store publish the rows in commit order,
//! and answers every waiter. One commit (one fsync on PostgreSQL) then serves
//! many requests, which is what makes single-row ingest fast under
//! concurrency.
//!
//! The queue is bounded in rows by a semaphore: when it is full, submitters
//! wait (backpressure) instead of growing memory. When the database is
//! unreachable, the group fails with `UNAVAILABLE`, everything queued is
//! answered at once, and for a second new submissions fail fast without
//! queueing. A group that fails for any other reason is retried job by job,
//! so one bad job cannot sink the others. [`Writer::close`] stops accepting,
//! writes everything already queued, and ends the task.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{AppError, AppResult, ErrorCode};

/// Most rows written in one transaction (a single larger job is still
/// written whole, in its own transaction).
pub const MAX_GROUP_ROWS: usize = 1000;

/// Most rows waiting in a queue before submitters have to wait.
pub const MAX_QUEUED_ROWS: usize = 20_000;

/// How long new submissions fail fast after the database was found unreachable.
const DOWN_BACKOFF: Duration = Duration::from_secs(1);

/// What a writer writes: the domain-specific half of group commit.
pub trait Store: Send + Sync + 'static {
    /// One submission (a single row or a batch written as one unit).
    type Input: Send + Sync + 'static;
    /// The answer to one submission.
    type Output: Send + 'static;

    /// How many rows an input counts for, against the group and queue limits.
    fn rows(input: &Self::Input) -> usize;

    /// Writes every input inside `txn` (opened by the writer, committed by
    /// it afterwards) and returns one output per input, in order.
    fn write<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        inputs: &'a [&'a Self::Input],
    ) -> impl Future<Output = AppResult<Vec<Self::Output>>> + Send + 'a;

    /// Called after the commit, in commit order (publish here).
    fn committed(&self, outputs: &[Self::Output]);

    /// Housekeeping run now and then between groups, outside any group's
    /// transaction (failures are logged, never returned to clients).
    fn maintain<'a>(
        &'a self,
        db: &'a DatabaseConnection,
    ) -> impl Future<Output = AppResult<()>> + Send + 'a;
}

struct Job<S: Store> {
    input: S::Input,
    rows: usize,
    reply: oneshot::Sender<AppResult<S::Output>>,
    _permit: OwnedSemaphorePermit,
}

enum Msg<S: Store> {
    Job(Job<S>),
    Stop,
}

struct Shared {
    name: &'static str,
    permits: Arc<Semaphore>,
    down_until: Mutex<Option<Instant>>,
    closed: AtomicBool,
}

impl Shared {
    fn is_down(&self) -> bool {
        let guard = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        guard.is_some_and(|t| Instant::now() < t)
    }

    fn set_down(&self, down: bool) {
        let mut guard = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        *guard = down.then(|| Instant::now() + DOWN_BACKOFF);
    }
}

/// The handle to one group-commit task. Cheap to clone.
pub struct Writer<S: Store> {
    tx: mpsc::UnboundedSender<Msg<S>>,
    shared: Arc<Shared>,
    task: Arc<tokio::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl<S: Store> Clone for Writer<S> {
    fn clone(&self) -> Self {
        Writer {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
            task: self.task.clone(),
        }
    }
}

/// The error every waiter gets when the database cannot be reached.
pub fn db_unavailable() -> AppError {
    AppError {
        retry_after: Some(1),
        ..AppError::new(
            ErrorCode::Unavailable,
            "the database is unavailable; retry shortly",
        )
    }
}

fn shutting_down() -> AppError {
    AppError {
        retry_after: Some(1),
        ..AppError::new(
            ErrorCode::Unavailable,
            "the server is shutting down; retry on another instance or after it restarts",
        )
    }
}

impl<S: Store> Writer<S> {
    /// Starts the task on the runtime of `runtime`.
    pub fn spawn(
        runtime: &tokio::runtime::Handle,
        name: &'static str,
        db: DatabaseConnection,
        store: S,
    ) -> Writer<S> {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            name,
            permits: Arc::new(Semaphore::new(MAX_QUEUED_ROWS)),
            down_until: Mutex::new(None),
            closed: AtomicBool::new(false),
        });
        let task = runtime.spawn(run(db, store, rx, shared.clone()));
        Writer {
            tx,
            shared,
            task: Arc::new(tokio::sync::Mutex::new(Some(task))),
        }
    }

    /// Queues `input` and waits until it is committed (or failed). Waits for
    /// room when the queue is full; fails fast with `UNAVAILABLE` while the
    /// database is known to be down or the server is shutting down.
    pub async fn submit(&self, input: S::Input) -> AppResult<S::Output> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(shutting_down());
        }
        if self.shared.is_down() {
            return Err(db_unavailable());
        }
        let rows = S::rows(&input).max(1);
        let wanted = rows.min(MAX_QUEUED_ROWS) as u32;
        let permit = self
            .shared
            .permits
            .clone()
            .acquire_many_owned(wanted)
            .await
            .map_err(|_| shutting_down())?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            input,
            rows,
            reply,
            _permit: permit,
        };
        self.tx.send(Msg::Job(job)).map_err(|_| shutting_down())?;
        answer.await.unwrap_or_else(|_| Err(shutting_down()))
    }

    /// Stops accepting submissions, writes everything already queued, and
    /// waits for the task to end. Later calls return at once.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Msg::Stop);
        let handle = self.task.lock().await.take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }

    /// Rows currently waiting or being written.
    pub fn queued_rows(&self) -> usize {
        MAX_QUEUED_ROWS.saturating_sub(self.shared.permits.available_permits())
    }
}

async fn run<S: Store>(
    db: DatabaseConnection,
    store: S,
    mut rx: mpsc::UnboundedReceiver<Msg<S>>,
    shared: Arc<Shared>,
) {
    let mut pending: Option<Job<S>> = None;
    let mut last_maintenance = Instant::now();
    loop {
        let first = match pending.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(Msg::Job(job)) => job,
                Some(Msg::Stop) | None => break,
            },
        };
        let mut rows = first.rows;
        let mut group = vec![first];
        let mut stop = false;
        while rows < MAX_GROUP_ROWS {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => {
                    if rows + job.rows > MAX_GROUP_ROWS {
                        pending = Some(job);
                        break;
                    }
                    rows += job.rows;
                    group.push(job);
                }
                Ok(Msg::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let jobs = group.len();
        let unavailable = write_group(&db, &store, group, &shared).await;
        tracing::debug!(
            writer = shared.name,
            jobs,
            rows,
            elapsed_us = started.elapsed().as_micros() as u64,
            "group written"
        );
        if unavailable {
            // Answer everything queued now rather than letting it time out.
            if let Some(job) = pending.take() {
                let _ = job.reply.send(Err(db_unavailable()));
            }
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    Msg::Job(job) => {
                        let _ = job.reply.send(Err(db_unavailable()));
                    }
                    Msg::Stop => stop = true,
                }
            }
        }
        if stop {
            if let Some(job) = pending.take() {
                write_group(&db, &store, vec![job], &shared).await;
            }
            break;
        }
        if last_maintenance.elapsed() > Duration::from_secs(60) {
            last_maintenance = Instant::now();
            if let Err(e) = store.maintain(&db).await {
                tracing::warn!(writer = shared.name, code = %e.code, cause = ?e.cause, "ingest maintenance failed");
            }
        }
    }
    tracing::debug!(writer = shared.name, "ingest writer stopped");
}

async fn transact<S: Store>(
    db: &DatabaseConnection,
    store: &S,
    inputs: &[&S::Input],
) -> AppResult<Vec<S::Output>> {
    let txn = crate::db::begin_write(db).await?;
    let outputs = store.write(&txn, inputs).await?;
    txn.commit().await?;
    Ok(outputs)
}

/// Writes one group; returns whether the database was unreachable.
async fn write_group<S: Store>(
    db: &DatabaseConnection,
    store: &S,
    group: Vec<Job<S>>,
    shared: &Shared,
) -> bool {
    let inputs: Vec<&S::Input> = group.iter().map(|j| &j.input).collect();
    let result = AssertUnwindSafe(transact(db, store, &inputs))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            Err(AppError::internal(std::io::Error::other(
                "the ingest writer panicked",
            )))
        });
    drop(inputs);
    match result {
        Ok(outputs) => {
            shared.set_down(false);
            store.committed(&outputs);
            for (job, output) in group.into_iter().zip(outputs) {
                let _ = job.reply.send(Ok(output));
            }
            false
        }
        Err(e) if e.code == ErrorCode::Unavailable => {
            tracing::warn!(writer = shared.name, cause = ?e.cause, jobs = group.len(), "database unavailable; failing queued ingest");
            shared.set_down(true);
            for job in group {
                let _ = job.reply.send(Err(db_unavailable()));
            }
            true
        }
        Err(e) if group.len() > 1 => {
            tracing::warn!(writer = shared.name, code = %e.code, cause = ?e.cause, jobs = group.len(), "group write failed; retrying job by job");
            let mut unavailable = false;
            for job in group {
                if unavailable {
                    let _ = job.reply.send(Err(db_unavailable()));
                    continue;
                }
                let single = [&job.input];
                let result = AssertUnwindSafe(transact(db, store, &single))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        Err(AppError::internal(std::io::Error::other(
                            "the ingest writer panicked",
                        )))
                    });
                match result {
                    Ok(mut outputs) => {
                        store.committed(&outputs);
                        if let Some(output) = outputs.pop() {
                            let _ = job.reply.send(Ok(output));
                        }
                    }
                    Err(e) => {
                        if e.code == ErrorCode::Unavailable {
                            shared.set_down(true);
                            unavailable = true;
                        }
                        let _ = job.reply.send(Err(e));
                    }
                }
            }
            unavailable
        }
        Err(e) => {
            if let Some(job) = group.into_iter().next() {
                let _ = job.reply.send(Err(e));
            }
            false
        }
    }
}
