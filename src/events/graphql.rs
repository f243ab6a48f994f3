//! GraphQL API of the events domain: `createEvent`, `createEvents`,
//! `event`, `events` and the `eventCreated` subscription. Resolvers check the
//! caller and call [`super::service`]; filters become [`EventFilter`]s, the
//! one definition of matching shared by queries and the live stream.

use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use serde_json::{Map, Value};

use super::entity;
use super::filter::{EventFilter, TagMatch, TagValue};
use super::model::{EventType, Level, NewEvent};
use super::service::{self, EventCursor, EventOrder, EventPage};
use crate::auth::Role;
use crate::auth::graphql::User;
use crate::auth::guard::{ContextExt, RoleGuard};
use crate::auth::loader::UserLoader;
use crate::error::{AppError, ErrorCode, FieldError};
use crate::graphql::{TotalCount, parse_id};
use crate::ingest::{BatchOutcome, Decoded};
use crate::pagination::PageArgs;
use crate::pubsub::Delivery;

/// The kind of an event.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "EventType")]
pub enum GqlEventType {
    /// A log line.
    Log,
    /// A metric sample sent as an event.
    Metric,
    /// A trace span.
    Trace,
    /// An alert.
    Alert,
}

impl From<GqlEventType> for EventType {
    fn from(t: GqlEventType) -> Self {
        match t {
            GqlEventType::Log => EventType::Log,
            GqlEventType::Metric => EventType::Metric,
            GqlEventType::Trace => EventType::Trace,
            GqlEventType::Alert => EventType::Alert,
        }
    }
}

impl From<EventType> for GqlEventType {
    fn from(t: EventType) -> Self {
        match t {
            EventType::Log => GqlEventType::Log,
            EventType::Metric => GqlEventType::Metric,
            EventType::Trace => GqlEventType::Trace,
            EventType::Alert => GqlEventType::Alert,
        }
    }
}

/// Severity of an event, least severe first.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "EventLevel")]
pub enum GqlLevel {
    /// Very detailed diagnostics.
    Trace,
    /// Diagnostics.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected but handled.
    Warn,
    /// A failure.
    Error,
    /// A failure that stops the service.
    Fatal,
}

impl From<GqlLevel> for Level {
    fn from(l: GqlLevel) -> Self {
        match l {
            GqlLevel::Trace => Level::Trace,
            GqlLevel::Debug => Level::Debug,
            GqlLevel::Info => Level::Info,
            GqlLevel::Warn => Level::Warn,
            GqlLevel::Error => Level::Error,
            GqlLevel::Fatal => Level::Fatal,
        }
    }
}

impl From<Level> for GqlLevel {
    fn from(l: Level) -> Self {
        match l {
            Level::Trace => GqlLevel::Trace,
            Level::Debug => GqlLevel::Debug,
            Level::Info => GqlLevel::Info,
            Level::Warn => GqlLevel::Warn,
            Level::Error => GqlLevel::Error,
            Level::Fatal => GqlLevel::Fatal,
        }
    }
}

/// A stored event.
pub struct Event(pub Arc<entity::Model>);

#[Object]
impl Event {
    /// The event's id (a UUIDv7).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Kind of event.
    async fn event_type(&self) -> GqlEventType {
        self.0
            .event_type
            .parse::<EventType>()
            .map(Into::into)
            .unwrap_or(GqlEventType::Log)
    }
    /// The service that sent it.
    async fn source(&self) -> &str {
        &self.0.source
    }
    /// Free text.
    async fn message(&self) -> Option<&str> {
        self.0.message.as_deref()
    }
    /// Severity, if given.
    async fn level(&self) -> Option<GqlLevel> {
        self.0
            .level
            .as_deref()
            .and_then(|l| l.parse::<Level>().ok())
            .map(Into::into)
    }
    /// Tags: a flat JSON object whose values are strings, numbers or booleans.
    async fn tags(&self) -> &Value {
        &self.0.tags
    }
    /// Free-form JSON payload (an object).
    async fn payload(&self) -> &Value {
        &self.0.payload
    }
    /// When it happened (as sent, or the time of receipt).
    async fn timestamp(&self) -> DateTime<Utc> {
        self.0.timestamp
    }
    /// When the server committed it. Increases in commit order, even when
    /// timestamps are back-dated.
    async fn received_at(&self) -> DateTime<Utc> {
        self.0.received_at
    }
    /// The position of this event in commit order. Pass it to
    /// `events(after:)` to get exactly the events committed after this one
    /// (in commit order): this is how a subscriber that reconnects fetches
    /// what it missed.
    async fn cursor(&self) -> String {
        EventCursor::of(EventOrder::Commit, &self.0).encode()
    }
    /// The user who sent it (for an API key, the key's owner).
    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let Some(id) = self.0.created_by else {
            return Ok(None);
        };
        let loader = ctx.data_unchecked::<DataLoader<UserLoader>>();
        let user = loader.load_one(id).await?;
        Ok(user.map(User))
    }
    /// The API key it was sent with, if any.
    async fn api_key_id(&self) -> Option<ID> {
        self.0.api_key_id.map(|id| ID(id.to_string()))
    }
    /// Grouping fingerprint, once enrichment has computed one.
    async fn fingerprint(&self) -> Option<&str> {
        self.0.fingerprint.as_deref()
    }
}

/// Input of `createEvent`, and one item of `createEvents`.
#[derive(InputObject)]
pub struct CreateEventInput {
    /// Kind of event.
    pub event_type: GqlEventType,
    /// The sending service: 1–200 characters.
    pub source: String,
    /// Free text: at most 10,000 characters.
    pub message: Option<String>,
    /// Level: `trace`, `debug`, `info`, `warn` (or `warning`), `error` or
    /// `fatal`, in any case.
    pub level: Option<String>,
    /// Tags: a flat JSON object of at most 100 entries and 64 KB, whose
    /// values are strings, finite numbers or booleans (keys 1–128 characters).
    pub tags: Option<Value>,
    /// Payload: a JSON object of at most 1 MB.
    pub payload: Option<Value>,
    /// When it happened (default: now); at most 5 minutes in the future.
    pub timestamp: Option<DateTime<Utc>>,
}

impl From<CreateEventInput> for Decoded<NewEvent> {
    fn from(input: CreateEventInput) -> Self {
        let mut errors = Vec::new();
        let tags = match input.tags {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => {
                errors.push(FieldError::new("tags", "tags must be a JSON object"));
                Map::new()
            }
        };
        Decoded {
            item: NewEvent {
                event_type: input.event_type.into(),
                source: input.source,
                message: input.message,
                level: input.level,
                tags,
                payload: input.payload.unwrap_or(Value::Null),
                timestamp: input.timestamp,
            },
            errors,
        }
    }
}

/// Input of `createEvents`.
#[derive(InputObject)]
pub struct CreateEventsInput {
    /// The events: at most 1,000.
    pub events: Vec<CreateEventInput>,
    /// When true, nothing is stored if any event is invalid. Otherwise
    /// (the default) valid events are stored and invalid ones reported.
    #[graphql(default = false)]
    pub atomic: bool,
}

/// A problem with one field of one input item.
#[derive(SimpleObject, Clone)]
#[graphql(name = "FieldError")]
pub struct GqlFieldError {
    /// The field, e.g. `source` or `tags.region`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// One item of a batch that was not stored.
#[derive(SimpleObject, Clone)]
pub struct RejectedItem {
    /// Its position in the batch, from 0.
    pub index: i32,
    /// Every problem found with it.
    pub errors: Vec<GqlFieldError>,
}

/// The result of a batch mutation.
#[derive(SimpleObject, Clone)]
pub struct BatchResult {
    /// How many items were stored.
    pub accepted: i32,
    /// The ids of the stored items, in the order they were sent.
    pub ids: Vec<ID>,
    /// The items not stored, with their problems. With `atomic: true` and any
    /// problem, nothing is stored and `accepted` is 0.
    pub rejected: Vec<RejectedItem>,
}

impl BatchResult {
    /// The GraphQL form of a batch outcome, with each stored item's id.
    pub fn from_outcome<T>(outcome: BatchOutcome<T>, id: impl Fn(&T) -> String) -> Self {
        BatchResult {
            accepted: outcome.accepted.len() as i32,
            ids: outcome.accepted.iter().map(|t| ID(id(t))).collect(),
            rejected: outcome
                .rejected
                .into_iter()
                .map(|r| RejectedItem {
                    index: r.index as i32,
                    errors: r
                        .errors
                        .into_iter()
                        .map(|e| GqlFieldError {
                            field: e.field,
                            message: e.message,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// One tag criterion.
#[derive(InputObject)]
pub struct TagMatchInput {
    /// The tag key (any string).
    pub key: String,
    /// The value, compared with its JSON type: a string, a number or a
    /// boolean (the string `"200"` does not match the number `200`).
    pub value: Value,
}

/// Which events to return or stream. Every given criterion must hold; in a
/// list any entry may match; an empty or omitted list does not restrict.
#[derive(InputObject, Default)]
#[graphql(name = "EventFilter")]
pub struct EventFilterInput {
    /// Any of these types.
    pub event_types: Option<Vec<GqlEventType>>,
    /// Any of these sources (exact match; at most 100).
    pub sources: Option<Vec<String>>,
    /// Any of these levels (events without a level never match a level criterion).
    pub levels: Option<Vec<GqlLevel>>,
    /// This level or more severe.
    pub min_level: Option<GqlLevel>,
    /// Timestamp at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Timestamp before this time.
    pub to: Option<DateTime<Utc>>,
    /// Tag criteria, all of which must hold (at most 20).
    pub tags: Option<Vec<TagMatchInput>>,
    /// The message contains this text, ignoring ASCII case (at most 1,000 characters).
    pub text: Option<String>,
}

impl TryFrom<EventFilterInput> for EventFilter {
    type Error = AppError;

    fn try_from(input: EventFilterInput) -> Result<Self, AppError> {
        let mut tags = Vec::new();
        for m in input.tags.unwrap_or_default() {
            let value = TagValue::from_json(&m.value).ok_or_else(|| {
                AppError::bad_input(
                    "filter.tags",
                    "tag values in a filter must be strings, numbers or booleans",
                )
            })?;
            tags.push(TagMatch::new(m.key, value));
        }
        EventFilter {
            event_types: input
                .event_types
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            sources: input.sources.unwrap_or_default(),
            levels: input
                .levels
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            min_level: input.min_level.map(Into::into),
            from: input.from,
            to: input.to,
            tags,
            text: input.text,
        }
        .validate()
    }
}

fn filter_of(input: Option<EventFilterInput>) -> Result<EventFilter, AppError> {
    input.unwrap_or_default().try_into()
}

/// Event queries.
#[derive(Default)]
pub struct EventQuery;

#[Object]
impl EventQuery {
    /// One event by id.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn event(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The event's id.")] id: ID,
    ) -> async_graphql::Result<Event> {
        let id = parse_id("id", &id)?;
        let event = service::find_event(&ctx.state().db, id).await?;
        Ok(Event(Arc::new(event)))
    }

    /// Events matching the filter, ordered by `(timestamp, id)`: stable while
    /// new events arrive. With an `after` or `before` cursor taken from
    /// `Event.cursor` (or from the edges of such a page), the page is in
    /// commit order `(receivedAt, id)` instead: `events(after: lastSeen.cursor)`
    /// returns exactly the events committed since, including back-dated ones.
    #[graphql(
        guard = "RoleGuard::new(Role::User)",
        complexity = "first.or(last).or(limit).unwrap_or(100).max(0) as usize * child_complexity"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which events.")] filter: Option<EventFilterInput>,
        #[graphql(desc = "Page size from the start (default 100, at most 1,000).")] first: Option<
            i32,
        >,
        #[graphql(desc = "Cursor to start after (an edge cursor or an `Event.cursor`).")]
        after: Option<String>,
        #[graphql(desc = "Page size from the end (at most 1,000).")] last: Option<i32>,
        #[graphql(desc = "Cursor to end before.")] before: Option<String>,
        #[graphql(desc = "Items to skip before the page (at most 100,000; forward only).")]
        offset: Option<i32>,
        #[graphql(desc = "Another name for `first`, for parity with the REST API.")] limit: Option<
            i32,
        >,
    ) -> async_graphql::Result<Connection<EventCursor, Event, TotalCount>> {
        let filter = filter_of(filter)?;
        let page = EventPage::from_args(
            PageArgs {
                first,
                after,
                last,
                before,
            },
            offset.map(i64::from),
            limit,
        )?;
        let rows = service::list_events(&ctx.state().db, &filter, &page).await?;
        let mut conn = Connection::with_additional_fields(
            rows.has_previous,
            rows.has_next,
            TotalCount::new(move |s| {
                let filter = filter.clone();
                async move { service::count_events(&s.db, &filter).await }
            }),
        );
        let order = page.order;
        conn.edges.extend(
            rows.items
                .into_iter()
                .map(|(cursor, e)| Edge::new(EventCursor { order, cursor }, Event(Arc::new(e)))),
        );
        Ok(conn)
    }
}

/// Event mutations.
#[derive(Default)]
pub struct EventMutation;

#[Object]
impl EventMutation {
    /// Stores one event and returns it once committed (any authenticated
    /// user or API key).
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn create_event(
        &self,
        ctx: &Context<'_>,
        input: CreateEventInput,
    ) -> async_graphql::Result<Event> {
        let event = service::ingest(ctx.state(), Some(ctx.identity()?), input).await?;
        Ok(Event(event))
    }

    /// Stores up to 1,000 events in one transaction. Invalid events are
    /// reported by index with all their errors while the valid ones are
    /// stored, unless `atomic` is true.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn create_events(
        &self,
        ctx: &Context<'_>,
        input: CreateEventsInput,
    ) -> async_graphql::Result<BatchResult> {
        let items = input.events.into_iter().map(Decoded::from).collect();
        let outcome =
            service::ingest_batch(ctx.state(), Some(ctx.identity()?), items, input.atomic).await?;
        Ok(BatchResult::from_outcome(outcome, |id| id.to_string()))
    }
}

/// The error a lagging subscriber receives before the stream goes on.
pub fn lagged(n: u64) -> AppError {
    AppError {
        retry_after: Some(1),
        ..AppError::new(
            ErrorCode::Unavailable,
            format!(
                "this subscriber fell behind and {n} events were skipped; fetch them with \
                 events(after: <cursor of the last event received>), which pages in commit order"
            ),
        )
    }
}

/// Event subscriptions.
#[derive(Default)]
pub struct EventSubscription;

#[Subscription]
impl EventSubscription {
    /// Events as they are committed, in commit order, that match the filter
    /// (same semantics as `events`). Each carries its `cursor`: after a
    /// reconnect, `events(filter: …, after: <last cursor received>)` returns
    /// exactly what was missed. A subscriber that falls too far behind gets
    /// an `UNAVAILABLE` error item saying how many events it missed, and the
    /// stream goes on.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn event_created(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which events to deliver.")] filter: Option<EventFilterInput>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Event>>> {
        let filter = filter_of(filter)?;
        let stream = ctx.live(|t| &t.events);
        Ok(stream.filter_map(move |delivery| {
            let item = match delivery {
                Delivery::Item(event) => filter.matches(&event).then(|| Ok(Event(event))),
                Delivery::Lagged(n) => Some(Err(lagged(n).into())),
                Delivery::Gap(phase) => Some(Err(phase
                    .error(
                        "events",
                        "query `events(filter: …, after: <last cursor received>)` to fetch them",
                    )
                    .into())),
            };
            async move { item }
        }))
    }
}
