//! The ingest path shared by events and metrics: group-commit writers
//! ([`writer`]) and the counters kept in their transactions ([`counters`]).
//!
//! [`Ingest`] lives in the app state: it is started by
//! [`crate::Application::build`] and closed (after writing what is queued)
//! when the server stops.
//!
//! The writers run on a thread and single-threaded runtime of their own,
//! with their own connection pool created there. A group commit is several
//! round trips to the database, and after each one the writer must be
//! polled again: on the shared runtime it would queue behind every request
//! being parsed and validated (tens of milliseconds per group at 64
//! concurrent clients); on its own thread it runs as soon as the answer
//! arrives. Request handlers hand it work and await the reply through
//! channels, which work across runtimes.

pub mod counters;
pub mod writer;

use std::sync::Arc;

use sea_orm::{DatabaseConnection, DbErr};

pub use counters::Totals;

use crate::error::FieldError;
use crate::events::store::EventStore;
use crate::metrics::store::MetricStore;
use crate::pubsub::Hub;
use writer::Writer;

/// Most items in one batch call (`createEvents`, `submitMetrics`).
pub const MAX_BATCH: usize = 1000;

/// One item of a batch that was not stored, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Its position in the batch, from 0.
    pub index: usize,
    /// Every problem found with it.
    pub errors: Vec<FieldError>,
}

/// The result of a batch call: what was stored, in order, and what was not.
#[derive(Debug, Clone)]
pub struct BatchOutcome<T> {
    /// The stored items, in the order they were sent.
    pub accepted: Vec<T>,
    /// The refused items.
    pub rejected: Vec<Rejected>,
}

/// An item decoded from a request together with the problems found while
/// decoding it (e.g. tags that are not an object); the problems are reported
/// with the item's validation errors.
#[derive(Debug, Clone)]
pub struct Decoded<T> {
    /// The item (with placeholders where decoding failed).
    pub item: T,
    /// Problems found while decoding.
    pub errors: Vec<FieldError>,
}

impl<T> From<T> for Decoded<T> {
    fn from(item: T) -> Self {
        Decoded {
            item,
            errors: Vec::new(),
        }
    }
}

impl<T> Decoded<T> {
    /// Validates the item with `validate`, reporting decoding problems first
    /// and then every validation error.
    pub fn validate<V>(
        self,
        validate: impl FnOnce(T) -> Result<V, Vec<FieldError>>,
    ) -> Result<V, Vec<FieldError>> {
        let Decoded { item, mut errors } = self;
        match validate(item) {
            Ok(valid) if errors.is_empty() => Ok(valid),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more);
                Err(errors)
            }
        }
    }
}

/// The group-commit writers.
#[derive(Clone)]
pub struct Ingest {
    /// Events.
    pub events: Writer<EventStore>,
    /// Metric samples.
    pub metrics: Writer<MetricStore>,
    db: Arc<tokio::sync::Mutex<Option<DatabaseConnection>>>,
    thread: Arc<WriterThread>,
}

/// The writers' thread: a single-threaded runtime that runs until this is
/// dropped (the last [`Ingest`] clone goes), then drops what is left on it.
struct WriterThread {
    runtime: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl WriterThread {
    fn start() -> std::io::Result<WriterThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("sightline-ingest")
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("sightline-ingest".to_owned())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(WriterThread {
            runtime: handle,
            _stop: stop,
        })
    }
}

impl Ingest {
    /// Starts the writers on a thread of their own, with their own pool (see
    /// [`crate::db::connect_ingest`]), or through `shared` when the database
    /// cannot have a second pool (in-memory SQLite).
    pub async fn start(
        config: &crate::config::Config,
        shared: &DatabaseConnection,
        hub: &Hub,
        max_series: u64,
    ) -> Result<Ingest, DbErr> {
        let thread = WriterThread::start()
            .map_err(|e| DbErr::Custom(format!("cannot start the ingest writers' thread: {e}")))?;
        // Created on the writers' runtime, so its connections are driven there.
        let config = config.clone();
        let own = thread
            .runtime
            .spawn(async move { crate::db::connect_ingest(&config).await })
            .await
            .map_err(|e| DbErr::Custom(format!("the ingest writers' thread failed: {e}")))??;
        let db = own.unwrap_or_else(|| shared.clone());
        let rt = &thread.runtime;
        Ok(Ingest {
            events: Writer::spawn(rt, "events", db.clone(), EventStore::new(hub.clone())),
            metrics: Writer::spawn(rt, "metrics", db.clone(), MetricStore::new(max_series)),
            db: Arc::new(tokio::sync::Mutex::new(Some(db))),
            thread: Arc::new(thread),
        })
    }

    /// The writers' connection pool (e.g. to simulate a lost database in tests).
    pub async fn pool(&self) -> Option<DatabaseConnection> {
        self.db.lock().await.clone()
    }

    /// Writes everything queued, stops the writers and closes their pool.
    pub async fn close(&self) {
        self.events.close().await;
        self.metrics.close().await;
        if let Some(db) = self.db.lock().await.take() {
            // On the runtime that drives its connections.
            let _ = self.thread.runtime.spawn(db.close()).await;
        }
    }
}
