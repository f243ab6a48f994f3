//! Incidents: lifecycle, access, audit, notes, timelines, analysis, live
//! updates, loaders, alert-opened incidents and the REST layer.

mod access;
mod alerts;
mod analysis;
mod evaluated;
mod lifecycle;
mod live;
mod loaders;
mod rest;
mod timeline;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use sightline::events::{EventType, NewEvent};
use uuid::Uuid;

use crate::common::TestApp;

/// The fields most tests look at.
pub const FIELDS: &str = "id title description severity status startedAt acknowledgedAt resolvedAt closedAt rootCause labels sources timeToAcknowledge timeToResolve createdBy { id username } assignedTo { id username }";

/// Creates an incident as `token` with extra input fields; returns it.
pub async fn create(app: &TestApp, token: &str, title: &str, extra: Value) -> Value {
    let mut input = json!({ "title": title });
    if let Value::Object(m) = extra {
        for (k, v) in m {
            input[k] = v;
        }
    }
    let q = format!(
        "mutation($i: CreateIncidentInput!) {{ createIncident(input: $i) {{ {FIELDS} }} }}"
    );
    app.gql_ok(Some(token), &q, json!({ "i": input })).await["createIncident"].clone()
}

/// Runs an incident mutation whose input is `input`; returns the whole response.
pub async fn mutate(app: &TestApp, token: &str, name: &str, input: Value) -> Value {
    let ty = format!("{}{}Input", name[..1].to_uppercase(), &name[1..]);
    let q = format!("mutation($i: {ty}!) {{ {name}(input: $i) {{ {FIELDS} }} }}");
    app.gql(Some(token), &q, json!({ "i": input })).await
}

/// Like `mutate`, failing on errors; returns the incident.
pub async fn mutate_ok(app: &TestApp, token: &str, name: &str, input: Value) -> Value {
    let v = mutate(app, token, name, input).await;
    assert!(v.get("errors").is_none(), "{name} failed: {v}");
    v["data"][name].clone()
}

/// Fetches an incident as `token`; returns the whole response.
pub async fn fetch(app: &TestApp, token: &str, id: &str, extra: &str) -> Value {
    let q = format!("query($id: ID!) {{ incident(id: $id) {{ {FIELDS} {extra} }} }}");
    app.gql(Some(token), &q, json!({ "id": id })).await
}

/// The audit trail of an incident as `(field, from, to, actor username)`.
pub async fn audit(app: &TestApp, id: &str) -> Vec<(String, Value, Value, Value)> {
    let v = fetch(
        app,
        &app.admin_token,
        id,
        "changes(first: 100) { totalCount nodes { field from to at actor { username } } }",
    )
    .await;
    let nodes = v["data"]["incident"]["changes"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes in {v}"))
        .clone();
    assert_eq!(
        v["data"]["incident"]["changes"]["totalCount"].as_u64(),
        Some(nodes.len() as u64)
    );
    nodes
        .into_iter()
        .map(|n| {
            (
                n["field"].as_str().unwrap().to_owned(),
                n["from"].clone(),
                n["to"].clone(),
                n["actor"]["username"].clone(),
            )
        })
        .collect()
}

/// Stores an event with an explicit time, as ingest would.
pub async fn event(
    app: &TestApp,
    source: &str,
    level: Option<&str>,
    message: &str,
    at: DateTime<Utc>,
    tags: Value,
) -> Uuid {
    let tags: Map<String, Value> = match tags {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let e = sightline::events::create_event(
        &app.state.db,
        None,
        NewEvent {
            event_type: EventType::Log,
            source: source.to_owned(),
            message: Some(message.to_owned()),
            level: level.map(str::to_owned),
            tags,
            payload: Value::Null,
            timestamp: Some(at),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("event not stored: {}", e.describe()));
    e.id
}

/// An RFC 3339 time `minutes` minutes before now.
pub fn minutes_ago(minutes: i64) -> DateTime<Utc> {
    sightline::util::now() - chrono::Duration::minutes(minutes)
}
