//! REST endpoints of the original design for events:
//! `POST /api/v1/monitoring/events` (one event, or a JSON array of up to
//! 1,000 as a partial-success batch), `GET /api/v1/monitoring/events` with
//! `event_type, source, level, start_time, end_time, limit, offset, tags`
//! (plus `min_level`, `text` and `after`), and
//! `GET /api/v1/monitoring/events/{id}`. The same services as GraphQL.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Authed, JsonBody, created, ok};
use crate::auth::Role;
use crate::error::{AppError, FieldError};
use crate::events::entity;
use crate::events::filter::{EventFilter, TagMatch, TagValue};
use crate::events::model::{EventType, Level, NewEvent};
use crate::events::service::{self, EventCursor, EventOrder, EventPage};
use crate::http::Server;
use crate::ingest::{BatchOutcome, Decoded, MAX_BATCH};
use crate::pagination::PageArgs;

/// Event routes.
pub fn router() -> Router<Server> {
    Router::new()
        .route(
            "/api/v1/monitoring/events",
            get(list_events).post(create_events),
        )
        .route("/api/v1/monitoring/events/{id}", get(get_event))
}

/// An event as the original design shows it (snake_case), plus its
/// commit-order `cursor`.
pub fn event_json(e: &entity::Model) -> Value {
    json!({
        "id": e.id,
        "event_type": e.event_type,
        "source": e.source,
        "message": e.message,
        "level": e.level,
        "tags": e.tags,
        "payload": e.payload,
        "timestamp": e.timestamp,
        "received_at": e.received_at,
        "created_by": e.created_by,
        "api_key_id": e.api_key_id,
        "fingerprint": e.fingerprint,
        "cursor": EventCursor::of(EventOrder::Commit, e).encode(),
    })
}

/// The original design's batch result shape.
pub fn batch_json<T>(outcome: &BatchOutcome<T>, id: impl Fn(&T) -> String) -> Value {
    json!({
        "accepted": outcome.accepted.len(),
        "ids": outcome.accepted.iter().map(id).collect::<Vec<_>>(),
        "rejected": outcome.rejected.iter().map(|r| json!({
            "index": r.index,
            "errors": r.errors,
        })).collect::<Vec<_>>(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventBody {
    event_type: String,
    source: String,
    message: Option<String>,
    level: Option<String>,
    tags: Option<Value>,
    payload: Option<Value>,
    timestamp: Option<DateTime<Utc>>,
}

/// Decodes one body item; problems become field errors of the item.
fn decode(value: Value) -> Decoded<NewEvent> {
    let body: EventBody = match serde_json::from_value(value) {
        Ok(b) => b,
        Err(e) => {
            return Decoded {
                item: NewEvent::log("", None, ""),
                errors: vec![FieldError::new("body", format!("invalid event: {e}"))],
            };
        }
    };
    let mut errors = Vec::new();
    let event_type = match body.event_type.parse::<EventType>() {
        Ok(t) => t,
        Err(e) => {
            errors.push(e);
            EventType::Log
        }
    };
    let tags = match body.tags {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            errors.push(FieldError::new("tags", "tags must be a JSON object"));
            Map::new()
        }
    };
    Decoded {
        item: NewEvent {
            event_type,
            source: body.source,
            message: body.message,
            level: body.level,
            tags,
            payload: body.payload.unwrap_or(Value::Null),
            timestamp: body.timestamp,
        },
        errors,
    }
}

async fn create_events(
    State(server): State<Server>,
    authed: Authed,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, AppError> {
    authed.require(Role::User)?;
    let state = &server.state;
    match body {
        Value::Array(items) => {
            if items.len() > MAX_BATCH {
                return Err(AppError::bad_input(
                    "events",
                    format!("at most {MAX_BATCH} events per call, got {}", items.len()),
                ));
            }
            let items = items.into_iter().map(decode).collect();
            let outcome = service::ingest_batch(state, Some(&authed.0), items, false).await?;
            Ok(ok(batch_json(&outcome, |id| id.to_string())))
        }
        Value::Object(_) => {
            let event = service::ingest(state, Some(&authed.0), decode(body)).await?;
            Ok(created(event_json(&event)))
        }
        _ => Err(AppError::bad_input(
            "body",
            "send one event as a JSON object or several as a JSON array",
        )),
    }
}

async fn get_event(
    State(server): State<Server>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    authed.require(Role::User)?;
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| AppError::bad_input("id", "id is not a valid id"))?;
    let event = service::find_event(&server.state.db, id).await?;
    Ok(ok(event_json(&event)))
}

/// Splits a comma-separated list parameter (empty parts ignored).
pub fn list_param(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Parses `key:value,key2:value2`. A query string has no types, so each
/// value matches the string, and also the number or boolean it spells.
pub fn tag_matches(v: &str) -> Result<Vec<TagMatch>, AppError> {
    list_param(v)
        .map(|pair| {
            let (key, value) = pair.split_once(':').ok_or_else(|| {
                AppError::bad_input("tags", "tags must be key:value pairs separated by commas")
            })?;
            let mut values = vec![TagValue::String(value.to_owned())];
            match value {
                "true" => values.push(TagValue::Bool(true)),
                "false" => values.push(TagValue::Bool(false)),
                _ => {
                    if let Ok(Value::Number(n)) = serde_json::from_str::<Value>(value) {
                        values.push(TagValue::Number(n));
                    }
                }
            }
            Ok(TagMatch {
                key: key.to_owned(),
                values,
            })
        })
        .collect()
}

/// Parses an RFC 3339 time parameter.
pub fn time_param(name: &str, v: &str) -> Result<DateTime<Utc>, AppError> {
    DateTime::parse_from_rfc3339(v.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            AppError::bad_input(
                name,
                format!("{name} must be an RFC 3339 time, e.g. 2024-01-01T00:00:00Z"),
            )
        })
}

/// Parses an integer parameter.
pub fn int_param(name: &str, v: &str) -> Result<i64, AppError> {
    v.trim()
        .parse::<i64>()
        .map_err(|_| AppError::bad_input(name, format!("{name} must be an integer")))
}

async fn list_events(
    State(server): State<Server>,
    authed: Authed,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    authed.require(Role::User)?;
    let mut filter = EventFilter::default();
    let mut limit: Option<i64> = None;
    let mut offset: Option<i64> = None;
    let mut after: Option<String> = None;
    for (key, value) in &params {
        match key.as_str() {
            "event_type" => {
                for t in list_param(value) {
                    filter.event_types.push(t.parse::<EventType>()?);
                }
            }
            "source" => filter.sources.extend(list_param(value).map(str::to_owned)),
            "level" => {
                for l in list_param(value) {
                    filter.levels.push(l.parse::<Level>()?);
                }
            }
            "min_level" => filter.min_level = Some(value.parse::<Level>()?),
            "start_time" => filter.from = Some(time_param("start_time", value)?),
            "end_time" => filter.to = Some(time_param("end_time", value)?),
            "tags" => filter.tags.extend(tag_matches(value)?),
            "text" => filter.text = Some(value.clone()),
            "limit" => limit = Some(int_param("limit", value)?),
            "offset" => offset = Some(int_param("offset", value)?),
            "after" => after = Some(value.clone()),
            other => {
                return Err(AppError::bad_input(
                    other,
                    format!(
                        "unknown query parameter `{}`: expected event_type, source, level, \
                         min_level, start_time, end_time, tags, text, limit, offset or after",
                        other.chars().take(40).collect::<String>()
                    ),
                ));
            }
        }
    }
    let filter = filter.validate()?;
    let limit = match limit {
        None => None,
        Some(l) => Some(i32::try_from(l).map_err(|_| {
            AppError::bad_input(
                "limit",
                format!("limit must be at most {}", service::MAX_PAGE),
            )
        })?),
    };
    let page = EventPage::from_args(
        PageArgs {
            first: None,
            after,
            last: None,
            before: None,
        },
        offset,
        limit,
    )?;
    let rows = service::list_events(&server.state.db, &filter, &page).await?;
    let events: Vec<Value> = rows.items.iter().map(|(_, e)| event_json(e)).collect();
    Ok(ok(events))
}
