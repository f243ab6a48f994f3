//! Writing events in bulk: the events half of group commit
//! ([`crate::ingest::writer`]) and the multi-row insert it shares with
//! [`super::service::create_event`].
//!
//! PostgreSQL gets one `INSERT ... SELECT FROM UNNEST(arrays)` per group: a
//! fixed statement text (prepared once per connection) whatever the number
//! of rows, and no 65,535-parameter limit. SQLite gets multi-row `VALUES`
//! inserts in chunks of fixed sizes, so the few statement shapes stay in the
//! statement cache.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, Statement, Value,
};
use serde_json::Value as Json;
use uuid::Uuid;

use super::entity;
use super::model::ValidEvent;
use crate::auth::{Credential, Identity};
use crate::error::AppResult;
use crate::ingest::counters;
use crate::ingest::writer::Store;
use crate::pubsub::Hub;
use crate::util;

/// Who sent a submission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sender {
    /// The user (for an API key, its creator).
    pub user_id: Option<Uuid>,
    /// The API key used, if any.
    pub api_key_id: Option<Uuid>,
}

impl Sender {
    /// The sender behind an identity (nobody for internal callers).
    pub fn of(actor: Option<&Identity>) -> Sender {
        Sender {
            user_id: actor.map(|a| a.user_id),
            api_key_id: actor.and_then(|a| match &a.credential {
                Credential::ApiKey { id, .. } => Some(*id),
                Credential::Session { .. } => None,
            }),
        }
    }
}

/// A validated event with its JSON already serialized (done by the
/// submitting request, off the writer task).
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    /// The event.
    pub event: ValidEvent,
    /// `tags` as JSON text.
    pub tags_json: String,
    /// `payload` as JSON text.
    pub payload_json: String,
}

impl PreparedEvent {
    /// Serializes the event's JSON fields.
    pub fn new(event: ValidEvent) -> PreparedEvent {
        let tags_json = serde_json::to_string(&event.tags).unwrap_or_else(|_| "{}".to_owned());
        let payload_json =
            serde_json::to_string(&event.payload).unwrap_or_else(|_| "{}".to_owned());
        PreparedEvent {
            event,
            tags_json,
            payload_json,
        }
    }
}

/// Events written as one unit (one request).
#[derive(Debug, Clone)]
pub struct EventBatch {
    /// The events, in the order they were sent.
    pub events: Vec<PreparedEvent>,
    /// Who sent them.
    pub sender: Sender,
}

/// One row to insert.
struct Row<'a> {
    id: Uuid,
    event: &'a PreparedEvent,
    sender: Sender,
}

const NIL: &str = "00000000-0000-0000-0000-000000000000";

/// Inserts rows that share one `received_at`.
async fn insert_rows(
    db: &impl ConnectionTrait,
    received_at: DateTime<Utc>,
    rows: &[Row<'_>],
) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    match db.get_database_backend() {
        DbBackend::Postgres => insert_unnest(db, received_at, rows).await,
        _ => {
            let mut rest = rows;
            while !rest.is_empty() {
                let size = [256, 64, 16, 4, 1]
                    .into_iter()
                    .find(|&s| s <= rest.len())
                    .unwrap_or(1);
                let (chunk, tail) = rest.split_at(size);
                insert_values(db, received_at, chunk).await?;
                rest = tail;
            }
            Ok(())
        }
    }
}

async fn insert_unnest(
    db: &impl ConnectionTrait,
    received_at: DateTime<Utc>,
    rows: &[Row<'_>],
) -> AppResult<()> {
    let nil = Uuid::nil();
    let sql = format!(
        "INSERT INTO events (id, event_type, source, message, level, tags, payload, \"timestamp\", \
         received_at, created_by, api_key_id) \
         SELECT u.id, u.event_type, u.source, CASE WHEN u.no_message THEN NULL ELSE u.message END, \
         NULLIF(u.level, ''), u.tags::jsonb, u.payload::jsonb, u.ts, $1, \
         NULLIF(u.created_by, '{NIL}'::uuid), NULLIF(u.api_key_id, '{NIL}'::uuid) \
         FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::bool[], $7::text[], \
         $8::text[], $9::text[], $10::timestamptz[], $11::uuid[], $12::uuid[]) \
         AS u(id, event_type, source, message, no_message, level, tags, payload, ts, created_by, api_key_id)"
    );
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let types: Vec<String> = rows
        .iter()
        .map(|r| r.event.event.event_type.as_str().to_owned())
        .collect();
    let sources: Vec<String> = rows.iter().map(|r| r.event.event.source.clone()).collect();
    let messages: Vec<String> = rows
        .iter()
        .map(|r| r.event.event.message.clone().unwrap_or_default())
        .collect();
    let no_message: Vec<bool> = rows
        .iter()
        .map(|r| r.event.event.message.is_none())
        .collect();
    let levels: Vec<String> = rows
        .iter()
        .map(|r| {
            r.event
                .event
                .level
                .map(|l| l.as_str())
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    let tags: Vec<String> = rows.iter().map(|r| r.event.tags_json.clone()).collect();
    let payloads: Vec<String> = rows.iter().map(|r| r.event.payload_json.clone()).collect();
    let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.event.event.timestamp).collect();
    let users: Vec<Uuid> = rows
        .iter()
        .map(|r| r.sender.user_id.unwrap_or(nil))
        .collect();
    let keys: Vec<Uuid> = rows
        .iter()
        .map(|r| r.sender.api_key_id.unwrap_or(nil))
        .collect();
    let values: Vec<Value> = vec![
        received_at.into(),
        ids.into(),
        types.into(),
        sources.into(),
        messages.into(),
        no_message.into(),
        levels.into(),
        tags.into(),
        payloads.into(),
        times.into(),
        users.into(),
        keys.into(),
    ];
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await?;
    Ok(())
}

async fn insert_values(
    db: &impl ConnectionTrait,
    received_at: DateTime<Utc>,
    rows: &[Row<'_>],
) -> AppResult<()> {
    let mut sql = String::from(
        "INSERT INTO events (id, event_type, source, message, level, tags, payload, \"timestamp\", \
         received_at, created_by, api_key_id) VALUES ",
    );
    // Anonymous `?` placeholders: SQLite looks numbered ones up by a linear
    // scan per parameter, which is quadratic in a statement this size.
    let mut values: Vec<Value> = Vec::with_capacity(rows.len() * 11);
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?,?,?,?,?,?,?,?)");
        let e = &row.event.event;
        values.push(row.id.into());
        values.push(e.event_type.as_str().into());
        values.push(e.source.clone().into());
        values.push(e.message.clone().into());
        values.push(e.level.map(|l| l.as_str().to_owned()).into());
        values.push(row.event.tags_json.clone().into());
        values.push(row.event.payload_json.clone().into());
        values.push(e.timestamp.into());
        values.push(received_at.into());
        values.push(row.sender.user_id.into());
        values.push(row.sender.api_key_id.into());
    }
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        values,
    ))
    .await?;
    Ok(())
}

fn to_model(row: &Row<'_>, received_at: DateTime<Utc>) -> entity::Model {
    let e = &row.event.event;
    entity::Model {
        id: row.id,
        event_type: e.event_type.as_str().to_owned(),
        source: e.source.clone(),
        message: e.message.clone(),
        level: e.level.map(|l| l.as_str().to_owned()),
        tags: Json::Object(e.tags.clone()),
        payload: e.payload.clone(),
        timestamp: e.timestamp,
        received_at,
        created_by: row.sender.user_id,
        api_key_id: row.sender.api_key_id,
        fingerprint: None,
    }
}

/// Batches as stored by [`store_batches`]: the ids given, in order, and the
/// commit-clock `received_at` they share.
pub struct StoredIds {
    /// Ids per batch, in the order of the events.
    pub ids: Vec<Vec<Uuid>>,
    /// The `received_at` of every row.
    pub received_at: DateTime<Utc>,
}

/// Stores batches in the caller's transaction: stamps them with the commit
/// clock (one `received_at` for all), gives every event a fresh UUIDv7 in
/// order, and inserts them.
pub async fn store_batches(
    db: &impl ConnectionTrait,
    batches: &[&EventBatch],
) -> AppResult<StoredIds> {
    let n: usize = batches.iter().map(|b| b.events.len()).sum();
    if n == 0 {
        return Ok(StoredIds {
            ids: batches.iter().map(|_| Vec::new()).collect(),
            received_at: util::now(),
        });
    }
    let received_at = counters::stamp_events(db, n as u64, util::now()).await?;
    let rows: Vec<Row<'_>> = batches
        .iter()
        .flat_map(|b| {
            b.events.iter().map(|event| Row {
                id: Uuid::now_v7(),
                event,
                sender: b.sender,
            })
        })
        .collect();
    insert_rows(db, received_at, &rows).await?;
    let mut ids = rows.iter().map(|r| r.id);
    Ok(StoredIds {
        ids: batches
            .iter()
            .map(|b| ids.by_ref().take(b.events.len()).collect())
            .collect(),
        received_at,
    })
}

/// One committed [`EventBatch`]: its ids, and its rows built on demand (a
/// batch answered with ids alone, and published to nobody, never builds them).
pub struct StoredBatch {
    batch: Arc<EventBatch>,
    /// The ids, in the order of the events.
    pub ids: Vec<Uuid>,
    /// The `received_at` of every row.
    pub received_at: DateTime<Utc>,
}

impl StoredBatch {
    /// The rows of a batch stored with `ids` at `received_at`.
    pub fn models_of(
        batch: Arc<EventBatch>,
        ids: Vec<Uuid>,
        received_at: DateTime<Utc>,
    ) -> Vec<entity::Model> {
        StoredBatch {
            batch,
            ids,
            received_at,
        }
        .models()
    }

    /// The stored rows, in order.
    pub fn models(&self) -> Vec<entity::Model> {
        self.batch
            .events
            .iter()
            .zip(&self.ids)
            .map(|(event, id)| {
                to_model(
                    &Row {
                        id: *id,
                        event,
                        sender: self.batch.sender,
                    },
                    self.received_at,
                )
            })
            .collect()
    }
}

/// The events writer: group commit of [`EventBatch`]es, published on the
/// hub's `events` topic in commit order.
pub struct EventStore {
    hub: Hub,
}

impl EventStore {
    /// A store publishing to `hub`.
    pub fn new(hub: Hub) -> Self {
        EventStore { hub }
    }
}

impl Store for EventStore {
    type Input = Arc<EventBatch>;
    type Output = StoredBatch;

    fn rows(input: &Arc<EventBatch>) -> usize {
        input.events.len()
    }

    async fn write<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        inputs: &'a [&'a Arc<EventBatch>],
    ) -> AppResult<Vec<StoredBatch>> {
        let batches: Vec<&EventBatch> = inputs.iter().map(|b| b.as_ref()).collect();
        let stored = store_batches(txn, &batches).await?;
        let received_at = stored.received_at;
        let outputs: Vec<StoredBatch> = inputs
            .iter()
            .zip(stored.ids)
            .map(|(batch, ids)| StoredBatch {
                batch: Arc::clone(batch),
                ids,
                received_at,
            })
            .collect();
        // Other replicas' subscribers count too: on PostgreSQL always
        // announce, inside the transaction, by commit stamp (see `pubsub`).
        let n = outputs.iter().map(|o| o.ids.len()).sum();
        self.hub.announce_events(txn, received_at, n).await?;
        Ok(outputs)
    }

    fn committed(&self, outputs: &[StoredBatch]) {
        if self.hub.is_distributed() {
            // Delivered by the listener once PostgreSQL hands it the commit.
            return;
        }
        let topic = &self.hub.topics().events;
        // Whoever subscribed before this commit is counted here.
        if topic.subscriber_count() == 0 {
            return;
        }
        for stored in outputs {
            for event in stored.models() {
                topic.publish(Arc::new(event));
            }
        }
    }

    async fn maintain<'a>(&'a self, db: &'a DatabaseConnection) -> AppResult<()> {
        counters::prune(db, util::now()).await.map(|_| ())
    }
}
