//! Event services, the Rust API of the events domain.
//!
//! - Ingest from clients: [`ingest`] and [`ingest_batch`] validate, then go
//!   through the group-commit writer in the app state, which stores and
//!   publishes in commit order.
//! - From other Rust code inside its own transaction: [`create_event`] and
//!   [`create_events`] store (keeping counters and the commit clock right)
//!   but do not publish; call [`publish_created`] in the same transaction.
//! - Reading: [`find_event`], [`list_events`], [`count_events`].
//! - Statistics: [`totals`] (two indexed reads, no table scan) and
//!   [`record_deleted`] for retention.

use std::sync::Arc;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QueryTrait,
    Statement, TransactionSession, TransactionTrait,
};
use uuid::Uuid;

use super::entity::{self, Column};
use super::filter::EventFilter;
use super::model::NewEvent;
use super::store::{EventBatch, PreparedEvent, Sender, StoredBatch, store_batches};
use crate::auth::Identity;
use crate::error::{AppError, AppResult};
use crate::ingest::counters::{self, Counter};
use crate::ingest::{BatchOutcome, Decoded, MAX_BATCH, Rejected, Totals};
use crate::pagination::{COMMIT_TAG, Cursor, DEFAULT_TAG, Page, PageArgs, Rows};
use crate::pubsub::{Announcement, Hub, Published};
use crate::state::AppState;
use crate::util;

/// Default page size of `events`.
pub const DEFAULT_PAGE: u64 = 100;
/// Largest page size of `events`.
pub const MAX_PAGE: u64 = 1000;
/// Largest `offset` of `events` (page with cursors beyond it).
pub const MAX_OFFSET: u64 = 100_000;

/// Validates and stores one event through `db` (a connection or an open
/// transaction, where it runs in a savepoint). It gets the next commit-clock
/// `received_at` and counts in the statistics, but is not published: call
/// [`publish_created`] in the same transaction. Use [`ingest`] when
/// you have the app state and want it published for you.
///
/// ```no_run
/// # async fn demo(db: &sea_orm::DatabaseConnection) -> sightline::AppResult<()> {
/// use sightline::events::{create_event, NewEvent};
/// let event = create_event(db, None, NewEvent::log("billing", Some("info"), "invoice sent")).await?;
/// # Ok(()) }
/// ```
pub async fn create_event<C>(
    db: &C,
    actor: Option<&Identity>,
    new: NewEvent,
) -> AppResult<entity::Model>
where
    C: ConnectionTrait + TransactionTrait,
{
    let mut stored = create_events(db, actor, vec![new]).await?;
    stored
        .pop()
        .ok_or_else(|| AppError::internal(std::io::Error::other("no event was stored")))
}

/// Validates and stores several events at once, all or nothing, through `db`
/// like [`create_event`]: the first invalid one is `BAD_USER_INPUT` with its
/// field prefixed by `events[i]`. At most [`MAX_BATCH`].
pub async fn create_events<C>(
    db: &C,
    actor: Option<&Identity>,
    events: Vec<NewEvent>,
) -> AppResult<Vec<entity::Model>>
where
    C: ConnectionTrait + TransactionTrait,
{
    check_batch_size(events.len())?;
    let now = util::now();
    let mut prepared = Vec::with_capacity(events.len());
    for (i, new) in events.into_iter().enumerate() {
        let valid = new
            .validate(now)
            .map_err(|e| AppError::from_field_errors(&e).nest_field(&format!("events[{i}]")))?;
        prepared.push(PreparedEvent::new(valid));
    }
    let batch = EventBatch {
        events: prepared,
        sender: Sender::of(actor),
    };
    let txn = crate::db::begin_write(db).await?;
    let stored = store_batches(&txn, &[&batch]).await?;
    txn.commit().await?;
    let ids = stored.ids.into_iter().next().unwrap_or_default();
    Ok(StoredBatch::models_of(
        Arc::new(batch),
        ids,
        stored.received_at,
    ))
}

fn check_batch_size(n: usize) -> AppResult<()> {
    if n > MAX_BATCH {
        return Err(AppError::bad_input(
            "events",
            format!("at most {MAX_BATCH} events per call, got {n}"),
        ));
    }
    Ok(())
}

/// Publishes stored events as part of `txn` (see [`Hub::announce`]); call
/// `committed()` on the result once it has committed.
pub async fn publish_created(
    hub: &Hub,
    txn: &sea_orm::DatabaseTransaction,
    events: Vec<entity::Model>,
) -> AppResult<Announcement> {
    let items = events.into_iter().map(Published::Event).collect();
    hub.announce(txn, items).await
}

/// Validates one event and stores it through the group-commit writer;
/// returns it once committed (and published).
#[tracing::instrument(level = "debug", skip_all)]
pub async fn ingest(
    state: &AppState,
    actor: Option<&Identity>,
    new: impl Into<Decoded<NewEvent>>,
) -> AppResult<Arc<entity::Model>> {
    let now = util::now();
    let valid = new
        .into()
        .validate(|e| e.validate(now))
        .map_err(|e| AppError::from_field_errors(&e))?;
    let batch = EventBatch {
        events: vec![PreparedEvent::new(valid)],
        sender: Sender::of(actor),
    };
    let stored = state.ingest.events.submit(Arc::new(batch)).await?;
    stored
        .models()
        .pop()
        .map(Arc::new)
        .ok_or_else(|| AppError::internal(std::io::Error::other("no event was stored")))
}

/// Validates a batch (at most [`MAX_BATCH`]) and stores it through the
/// writer in one transaction. Invalid items are reported by index with all
/// their errors; the valid ones are stored, unless `atomic`, in which case
/// nothing is stored when anything is invalid.
#[tracing::instrument(level = "debug", skip_all, fields(n = events.len(), atomic))]
pub async fn ingest_batch(
    state: &AppState,
    actor: Option<&Identity>,
    events: Vec<Decoded<NewEvent>>,
    atomic: bool,
) -> AppResult<BatchOutcome<Uuid>> {
    check_batch_size(events.len())?;
    let now = util::now();
    let mut prepared = Vec::with_capacity(events.len());
    let mut rejected = Vec::new();
    for (index, new) in events.into_iter().enumerate() {
        match new.validate(|e| e.validate(now)) {
            Ok(valid) => prepared.push(PreparedEvent::new(valid)),
            Err(errors) => rejected.push(Rejected { index, errors }),
        }
    }
    if prepared.is_empty() || (atomic && !rejected.is_empty()) {
        return Ok(BatchOutcome {
            accepted: Vec::new(),
            rejected,
        });
    }
    let batch = EventBatch {
        events: prepared,
        sender: Sender::of(actor),
    };
    let stored = state.ingest.events.submit(Arc::new(batch)).await?;
    Ok(BatchOutcome {
        accepted: stored.ids,
        rejected,
    })
}

/// One event by id.
pub async fn find_event(db: &impl ConnectionTrait, id: Uuid) -> AppResult<entity::Model> {
    // `.all` on the primary key: a bound `LIMIT` would make SQLite
    // re-prepare the statement on every execution.
    entity::Entity::find_by_id(id)
        .all(db)
        .await?
        .pop()
        .ok_or_else(|| AppError::not_found("event"))
}

/// The two orders events can be paged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOrder {
    /// By `(timestamp, id)`: when things happened (the default).
    Time,
    /// By `(received_at, id)`: the order events were committed, which is the
    /// order `eventCreated` delivers them in.
    Commit,
}

/// A position in one of the orders; its string form tells which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    /// The order.
    pub order: EventOrder,
    /// The position.
    pub cursor: Cursor,
}

impl EventCursor {
    /// The cursor of an event in an order.
    pub fn of(order: EventOrder, e: &entity::Model) -> EventCursor {
        let at = match order {
            EventOrder::Time => e.timestamp,
            EventOrder::Commit => e.received_at,
        };
        EventCursor {
            order,
            cursor: Cursor::new(at, e.id),
        }
    }

    /// The opaque string form.
    pub fn encode(&self) -> String {
        match self.order {
            EventOrder::Time => self.cursor.encode(),
            EventOrder::Commit => self.cursor.encode_tagged(COMMIT_TAG),
        }
    }

    /// Parses either kind; anything else is `BAD_USER_INPUT`.
    pub fn decode(s: &str) -> AppResult<EventCursor> {
        let (tag, cursor) = Cursor::decode_tagged(s)?;
        let order = match tag {
            DEFAULT_TAG => EventOrder::Time,
            COMMIT_TAG => EventOrder::Commit,
            _ => return Err(AppError::bad_input("cursor", "invalid cursor")),
        };
        Ok(EventCursor { order, cursor })
    }
}

impl async_graphql::connection::CursorType for EventCursor {
    type Error = String;

    fn decode_cursor(s: &str) -> Result<Self, Self::Error> {
        EventCursor::decode(s).map_err(|e| e.message)
    }

    fn encode_cursor(&self) -> String {
        self.encode()
    }
}

/// A validated request for a page of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    /// The order, chosen by the cursors' kind (time order without cursors).
    pub order: EventOrder,
    /// Bounds and size.
    pub page: Page,
    /// Rows skipped after the bounds.
    pub offset: u64,
}

impl EventPage {
    /// Validates Relay arguments plus `offset`/`limit` (`limit` is another
    /// name for `first`). Cursors must decode and both be of one kind.
    pub fn from_args(
        args: PageArgs,
        offset: Option<i64>,
        limit: Option<i32>,
    ) -> AppResult<EventPage> {
        let PageArgs {
            first,
            after,
            last,
            before,
        } = args;
        let first = match (first, limit) {
            (Some(_), Some(_)) => {
                return Err(AppError::bad_input(
                    "limit",
                    "pass either first or limit, not both",
                ));
            }
            (f, l) => f.or(l),
        };
        let offset = match offset {
            None => 0,
            Some(o) if o < 0 => {
                return Err(AppError::bad_input("offset", "offset must not be negative"));
            }
            Some(o) if o as u64 > MAX_OFFSET => {
                return Err(AppError::bad_input(
                    "offset",
                    format!("offset must be at most {MAX_OFFSET}; page further with cursors"),
                ));
            }
            Some(o) => o as u64,
        };
        let after = after
            .as_deref()
            .map(EventCursor::decode)
            .transpose()
            .map_err(|e| e.with_field("after"))?;
        let before = before
            .as_deref()
            .map(EventCursor::decode)
            .transpose()
            .map_err(|e| e.with_field("before"))?;
        let order = match (after, before) {
            (Some(a), Some(b)) if a.order != b.order => {
                return Err(AppError::bad_input(
                    "before",
                    "after and before must be cursors of the same order",
                ));
            }
            (Some(c), _) | (None, Some(c)) => c.order,
            (None, None) => EventOrder::Time,
        };
        let backward_default = before.is_some() && after.is_none();
        let from_limit = limit.is_some();
        let mut page = Page::from_args(
            PageArgs {
                first,
                after: None,
                last,
                before: None,
            },
            DEFAULT_PAGE,
            MAX_PAGE,
        )
        .map_err(|e| match e.field.as_deref() {
            Some("first") if from_limit => {
                AppError::bad_input("limit", e.message.replace("first", "limit"))
            }
            _ => e,
        })?;
        if first.is_none() && last.is_none() {
            page.backward = backward_default;
        }
        if offset > 0 && page.backward {
            return Err(AppError::bad_input(
                "offset",
                "offset pages forward only; do not combine it with last or before",
            ));
        }
        page.after = after.map(|c| c.cursor);
        page.before = before.map(|c| c.cursor);
        Ok(EventPage {
            order,
            page,
            offset,
        })
    }

    /// The first `limit` events in time order.
    pub fn first(limit: u64) -> EventPage {
        EventPage {
            order: EventOrder::Time,
            page: Page::first(limit),
            offset: 0,
        }
    }
}

/// A page of events matching `filter`, in the page's order (ascending).
pub async fn list_events(
    db: &impl ConnectionTrait,
    filter: &EventFilter,
    request: &EventPage,
) -> AppResult<Rows<entity::Model>> {
    let at = match request.order {
        EventOrder::Time => Column::Timestamp,
        EventOrder::Commit => Column::ReceivedAt,
    };
    let page = &request.page;
    let position = || Expr::tuple([Expr::col(at), Expr::col(Column::Id)]);
    let bound = |c: &Cursor| Expr::tuple([Expr::val(c.at), Expr::val(c.id)]);
    let mut query = entity::Entity::find().filter(filter.condition(db.get_database_backend()));
    if let Some(c) = &page.after {
        query = query.filter(position().gt(bound(c)));
    }
    if let Some(c) = &page.before {
        query = query.filter(position().lt(bound(c)));
    }
    query = if page.backward {
        query.order_by_desc(at).order_by_desc(Column::Id)
    } else {
        query.order_by_asc(at).order_by_asc(Column::Id)
    };
    // LIMIT and OFFSET as literals: SQLite re-prepares a statement whose
    // LIMIT is a bound parameter every time it runs.
    let mut statement = query.build(db.get_database_backend());
    statement
        .sql
        .push_str(&format!(" LIMIT {}", page.limit + 1));
    if request.offset > 0 {
        statement
            .sql
            .push_str(&format!(" OFFSET {}", request.offset));
    }
    let rows = match db.get_database_backend() {
        DbBackend::Sqlite => {
            let mut rows = fetch_sqlite_page(db, statement).await?;
            let key = |e: &entity::Model| match request.order {
                EventOrder::Time => (e.timestamp, e.id),
                EventOrder::Commit => (e.received_at, e.id),
            };
            if page.backward {
                rows.sort_by_key(|e| std::cmp::Reverse(key(e)));
            } else {
                rows.sort_by_key(key);
            }
            rows
        }
        _ => {
            entity::Entity::find()
                .from_raw_sql(statement)
                .all(db)
                .await?
        }
    };
    let order = request.order;
    let mut rows = Rows::new(rows, page, |e| EventCursor::of(order, e).cursor);
    rows.has_previous |= request.offset > 0;
    Ok(rows)
}

/// One event as SQLite's `json_object` writes it.
#[derive(serde::Deserialize)]
struct JsonRow {
    id: String,
    event_type: String,
    source: String,
    message: Option<String>,
    level: Option<String>,
    tags: serde_json::Value,
    payload: serde_json::Value,
    timestamp: String,
    received_at: String,
    created_by: Option<String>,
    api_key_id: Option<String>,
    fingerprint: Option<String>,
}

fn corrupt(what: &str) -> AppError {
    AppError::internal(std::io::Error::other(format!(
        "unreadable stored event: {what}"
    )))
}

fn parse_time(s: &str) -> AppResult<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| corrupt("time"))
}

fn parse_uuid(s: Option<String>) -> AppResult<Option<Uuid>> {
    s.map(|s| Uuid::parse_str(&s).map_err(|_| corrupt("id")))
        .transpose()
}

/// Runs a page query on SQLite and returns its rows aggregated into one
/// JSON array: sqlx hands SQLite rows over from its worker thread one at a
/// time, which costs more than the query itself for a page of 100; one row
/// holding the page avoids that. The order of the array is not relied on.
async fn fetch_sqlite_page(
    db: &impl ConnectionTrait,
    statement: Statement,
) -> AppResult<Vec<entity::Model>> {
    let sql = format!(
        "SELECT json_group_array(json_object('id', lower(hex(id)), 'event_type', event_type, \
         'source', source, 'message', message, 'level', level, 'tags', json(tags), \
         'payload', json(payload), 'timestamp', \"timestamp\", 'received_at', received_at, \
         'created_by', CASE WHEN created_by IS NULL THEN NULL ELSE lower(hex(created_by)) END, \
         'api_key_id', CASE WHEN api_key_id IS NULL THEN NULL ELSE lower(hex(api_key_id)) END, \
         'fingerprint', fingerprint)) FROM ({}) AS page",
        statement.sql
    );
    let row = db.query_one_raw(Statement { sql, ..statement }).await?;
    let Some(row) = row else {
        return Ok(Vec::new());
    };
    let text: String = row.try_get_by_index(0)?;
    let rows: Vec<JsonRow> = serde_json::from_str(&text).map_err(|_| corrupt("page"))?;
    rows.into_iter()
        .map(|r| {
            Ok(entity::Model {
                id: parse_uuid(Some(r.id))?.ok_or_else(|| corrupt("id"))?,
                event_type: r.event_type,
                source: r.source,
                message: r.message,
                level: r.level,
                tags: r.tags,
                payload: r.payload,
                timestamp: parse_time(&r.timestamp)?,
                received_at: parse_time(&r.received_at)?,
                created_by: parse_uuid(r.created_by)?,
                api_key_id: parse_uuid(r.api_key_id)?,
                fingerprint: r.fingerprint,
            })
        })
        .collect()
}

/// How many events match `filter`.
pub async fn count_events(db: &impl ConnectionTrait, filter: &EventFilter) -> AppResult<u64> {
    Ok(entity::Entity::find()
        .filter(filter.condition(db.get_database_backend()))
        .count(db)
        .await?)
}

/// Events stored and received in the last hour, from the counters kept by
/// the write path (no table scan).
pub async fn totals(db: &impl ConnectionTrait) -> AppResult<Totals> {
    counters::totals(db, Counter::Events).await
}

/// Keeps [`totals`] right when `n` events are deleted: call it in the
/// deleting transaction (just before committing; it takes the counter lock).
pub async fn record_deleted(txn: &impl ConnectionTrait, n: u64) -> AppResult<()> {
    counters::record_deleted(txn, Counter::Events, n).await
}
