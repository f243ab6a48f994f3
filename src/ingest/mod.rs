//! The ingest path shared by events and metrics: group-commit writers
//! ([`writer`]) and the counters kept in their transactions ([`counters`]).
//!
//! [`Ingest`] lives in the app state: it is started by
//! [`crate::Application::build`] and closed (after writing what is queued)
//! when the server stops.

pub mod counters;
pub mod writer;

use sea_orm::DatabaseConnection;

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
    db: std::sync::Arc<tokio::sync::Mutex<Option<DatabaseConnection>>>,
}

impl Ingest {
    /// Starts the writers on the current runtime, writing through `db`
    /// (normally a pool of its own, see [`crate::db::connect_ingest`]).
    pub fn spawn(db: &DatabaseConnection, hub: &Hub, max_series: u64) -> Ingest {
        Ingest {
            events: Writer::spawn("events", db.clone(), EventStore::new(hub.clone())),
            metrics: Writer::spawn("metrics", db.clone(), MetricStore::new(max_series)),
            db: std::sync::Arc::new(tokio::sync::Mutex::new(Some(db.clone()))),
        }
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
            db.close().await.ok();
        }
    }
}
