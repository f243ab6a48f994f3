//! REST incident endpoints of the original design: create, list, get,
//! update and the timeline, with snake_case bodies and lowercase enum
//! values, over the same services as GraphQL.

use std::collections::HashMap;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Authed, JsonBody, created, ok};
use crate::auth::Role;
use crate::error::AppError;
use crate::http::Server;
use crate::incidents::entity::incident;
use crate::incidents::model::{self, Severity, Status};
use crate::incidents::service::{self, IncidentFilter, IncidentPatch, NewIncident, Patch};
use crate::incidents::timeline::{self, Selection, Timeline, Window};

/// Incident routes.
pub fn router() -> Router<Server> {
    Router::new()
        .route(
            "/api/v1/monitoring/incidents",
            get(list_incidents).post(create_incident),
        )
        .route(
            "/api/v1/monitoring/incidents/{id}",
            get(get_incident).put(update_incident),
        )
        .route(
            "/api/v1/monitoring/incidents/{id}/timeline",
            get(get_timeline),
        )
}

/// An incident as the original design shows it.
pub fn incident_json(m: &incident::Model) -> Value {
    json!({
        "id": m.id,
        "title": m.title,
        "description": m.description,
        "severity": m.severity,
        "status": m.status,
        "started_at": m.started_at,
        "acknowledged_at": m.acknowledged_at,
        "resolved_at": m.resolved_at,
        "closed_at": m.closed_at,
        "root_cause": m.root_cause,
        "created_by": m.created_by,
        "assigned_to": m.assigned_to,
        "labels": m.labels,
        "sources": model::stored_sources(&m.sources),
        "created_at": m.created_at,
        "updated_at": m.updated_at,
        "time_to_acknowledge": m.acknowledged_at.map(|t| model::seconds_between(m.started_at, t)),
        "time_to_resolve": m.resolved_at.map(|t| model::seconds_between(m.started_at, t)),
    })
}

fn path_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, AppError> {
    let Path(raw) = path.map_err(|_| AppError::bad_input("id", "id is not a valid id"))?;
    Uuid::parse_str(&raw).map_err(|_| AppError::bad_input("id", "id is not a valid id"))
}

fn query_params(raw: Option<String>) -> Result<HashMap<String, String>, AppError> {
    let mut out = HashMap::new();
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (
            crate::http::percent_decode(k),
            crate::http::percent_decode(v),
        ) else {
            return Err(AppError::bad_input(
                "query",
                "the query string is not valid UTF-8 percent-encoding",
            ));
        };
        out.insert(k, v);
    }
    Ok(out)
}

fn int_param(
    params: &HashMap<String, String>,
    name: &str,
    default: u64,
    max: u64,
) -> Result<u64, AppError> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            Ok(_) => Err(AppError::bad_input(
                name,
                format!("{name} must be at most {max}"),
            )),
            Err(_) => Err(AppError::bad_input(
                name,
                format!("{name} must be a whole number from 0 to {max}"),
            )),
        },
    }
}

fn uuid_param(params: &HashMap<String, String>, name: &str) -> Result<Option<Uuid>, AppError> {
    params
        .get(name)
        .map(|v| {
            Uuid::parse_str(v.trim())
                .map_err(|_| AppError::bad_input(name, format!("{name} is not a valid id")))
        })
        .transpose()
}

fn time_param(
    params: &HashMap<String, String>,
    name: &str,
) -> Result<Option<DateTime<Utc>>, AppError> {
    params
        .get(name)
        .map(|v| {
            DateTime::parse_from_rfc3339(v.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    AppError::bad_input(name, format!("{name} must be an RFC 3339 timestamp"))
                })
        })
        .transpose()
}

/// Absent stays `None`; `null` becomes `Some(None)`.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    title: String,
    description: Option<String>,
    severity: Option<String>,
    started_at: Option<DateTime<Utc>>,
    assigned_to: Option<Uuid>,
    labels: Option<Value>,
    sources: Option<Vec<String>>,
}

async fn create_incident(
    State(server): State<Server>,
    authed: Authed,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, AppError> {
    authed.require(Role::User)?;
    let new = NewIncident {
        title: body.title,
        description: body.description,
        severity: body
            .severity
            .as_deref()
            .map(str::parse::<Severity>)
            .transpose()?,
        started_at: body.started_at,
        assigned_to: body.assigned_to,
        labels: body.labels,
        sources: body.sources.unwrap_or_default(),
    };
    let m = service::create(&server.state, &authed.0, new).await?;
    Ok(created(incident_json(&m)))
}

async fn list_incidents(
    State(server): State<Server>,
    authed: Authed,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    authed.require(Role::User)?;
    let params = query_params(raw)?;
    let mut filter = IncidentFilter::default();
    if let Some(s) = params.get("status") {
        filter.status = s
            .split(',')
            .map(str::parse::<Status>)
            .collect::<Result<_, _>>()?;
    }
    if let Some(s) = params.get("severity") {
        filter.severity = s
            .split(',')
            .map(str::parse::<Severity>)
            .collect::<Result<_, _>>()?;
    }
    filter.assigned_to = uuid_param(&params, "assigned_to")?;
    filter.created_by = uuid_param(&params, "created_by")?;
    filter.text = params.get("text").cloned();
    filter.from = time_param(&params, "start_time")?;
    filter.to = time_param(&params, "end_time")?;
    let filter = filter.validate()?;
    let limit = int_param(&params, "limit", 100, 1000)?;
    let offset = int_param(&params, "offset", 0, 100_000)?;
    let rows = service::list_offset(&server.state.db, &authed.0, &filter, limit, offset).await?;
    Ok(ok(rows.iter().map(incident_json).collect::<Vec<_>>()))
}

async fn get_incident(
    State(server): State<Server>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, AppError> {
    authed.require(Role::User)?;
    let id = path_id(path)?;
    let m = service::get(&server.state.db, &authed.0, id).await?;
    Ok(ok(incident_json(&m)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[serde(default, deserialize_with = "nullable")]
    title: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    severity: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    status: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    root_cause: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    assigned_to: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "nullable")]
    labels: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    sources: Option<Option<Vec<String>>>,
}

fn parse_patch<T: std::str::FromStr<Err = AppError>>(
    v: Option<Option<String>>,
) -> Result<Patch<T>, AppError> {
    Ok(match v {
        None => Patch::Keep,
        Some(None) => Patch::Clear,
        Some(Some(s)) => Patch::Set(s.parse()?),
    })
}

async fn update_incident(
    State(server): State<Server>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<Response, AppError> {
    authed.require(Role::User)?;
    let id = path_id(path)?;
    let patch = IncidentPatch {
        title: Patch::from_option(body.title),
        description: Patch::from_option(body.description),
        severity: parse_patch(body.severity)?,
        status: parse_patch(body.status)?,
        root_cause: Patch::from_option(body.root_cause),
        assigned_to: Patch::from_option(body.assigned_to),
        labels: Patch::from_option(body.labels),
        sources: Patch::from_option(body.sources),
    };
    let m = service::update(&server.state, &authed.0, id, patch).await?;
    Ok(ok(incident_json(&m)))
}

async fn get_timeline(
    State(server): State<Server>,
    authed: Authed,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    authed.require(Role::User)?;
    let id = path_id(path)?;
    let params = query_params(raw)?;
    let limit = int_param(&params, "limit", 100, 1000)?;
    let offset = int_param(&params, "offset", 0, 10_000)?;
    let lookback = match params.get("lookback_hours") {
        None => timeline::DEFAULT_LOOKBACK,
        Some(v) => {
            let hours: f64 = v.trim().parse().map_err(|_| {
                AppError::bad_input("lookback_hours", "lookback_hours must be a number")
            })?;
            timeline::lookback_hours(hours)?
        }
    };
    let db = &server.state.db;
    let inc = service::get(db, &authed.0, id).await?;
    let t = Timeline {
        window: Window::of(&inc, lookback, crate::util::now()),
        incident: inc,
        selection: Selection {
            kinds: Vec::new(),
            min_level: None,
        },
    };
    let entries = t.entries(db, None, offset + limit).await?;
    let total = t.count(db).await?;
    let entries: Vec<Value> = entries
        .into_iter()
        .skip(offset as usize)
        .map(|e| {
            let (source, message, level, event_id) = match &e.event {
                Some(ev) => (
                    Some(ev.source.clone()),
                    ev.message.clone(),
                    ev.level.clone(),
                    Some(ev.id),
                ),
                None => (None, None, None, None),
            };
            let alert = e.transition.as_ref().map(|t| {
                json!({
                    "transition_id": t.id,
                    "alert_id": t.instance_id,
                    "rule_id": t.rule_id,
                    "rule_name": t.rule_name,
                    "labels": t.labels,
                    "severity": t.severity,
                    "from": t.from_state,
                    "to": t.to_state,
                    "value": t.value.filter(|v| v.is_finite()),
                    "silenced": t.silenced,
                })
            });
            json!({
                "timestamp": e.at,
                "kind": e.kind.as_str(),
                "reason": e.reason,
                "summary": e.summary,
                "actor_id": e.actor,
                "source": source,
                "message": message,
                "level": level,
                "event_id": event_id,
                "alert": alert,
            })
        })
        .collect();
    Ok(ok(json!({
        "incident_id": t.incident.id,
        "start_time": t.window.start,
        "end_time": t.window.end,
        "entries": entries,
        "total_count": total,
    })))
}
