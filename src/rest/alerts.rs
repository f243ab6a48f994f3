//! REST alert rule endpoints of the original design: `POST/GET
//! /api/v1/monitoring/alerts` and `GET/PUT/DELETE
//! /api/v1/monitoring/alerts/{id}`, accepting its `{"name", "description",
//! "query", "threshold_value"}` shape (plus the newer fields in snake_case),
//! over the same services as GraphQL. Reading needs any authenticated user;
//! changing needs a moderator.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Authed, JsonBody, created, ok};
use crate::alerts::entity::rule;
use crate::alerts::model::{Annotations, IncidentSeverity, RuleDraft, Severity};
use crate::alerts::service::{self, RuleFilter, RulePatch};
use crate::auth::Role;
use crate::error::{AppError, AppResult};
use crate::http::Server;

/// Alert rule routes.
pub fn router() -> Router<Server> {
    Router::new()
        .route("/api/v1/monitoring/alerts", get(list).post(create))
        .route(
            "/api/v1/monitoring/alerts/{id}",
            get(show).put(update).delete(remove),
        )
}

/// `null` → `Some(None)`, a value → `Some(Some(v))`, absent → `None` (with `#[serde(default)]`).
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, Default)]
struct AnnotationsBody {
    summary: Option<String>,
    description: Option<String>,
    runbook_url: Option<String>,
}

impl From<AnnotationsBody> for Annotations {
    fn from(a: AnnotationsBody) -> Self {
        Annotations {
            summary: a.summary,
            description: a.description,
            runbook_url: a.runbook_url,
        }
    }
}

/// A rule as the original design sends it, with the newer fields optional.
#[derive(Deserialize)]
struct RuleBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    query: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    threshold_value: Option<Option<f64>>,
    #[serde(rename = "for")]
    for_secs: Option<i64>,
    keep_firing_for: Option<i64>,
    severity: Option<String>,
    labels: Option<Value>,
    annotations: Option<AnnotationsBody>,
    enabled: Option<bool>,
    evaluation_interval: Option<i64>,
    create_incident: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    incident_severity: Option<Option<String>>,
}

impl RuleBody {
    fn severities(&self) -> AppResult<(Option<Severity>, Option<Option<IncidentSeverity>>)> {
        let severity = self
            .severity
            .as_deref()
            .map(str::parse::<Severity>)
            .transpose()?;
        let incident_severity = match &self.incident_severity {
            None => None,
            Some(None) => Some(None),
            Some(Some(s)) => {
                Some(Some(s.parse::<IncidentSeverity>().map_err(|e| {
                    AppError::bad_input("incident_severity", e.message)
                })?))
            }
        };
        Ok((severity, incident_severity))
    }

    fn into_draft(self) -> AppResult<RuleDraft> {
        let (severity, incident_severity) = self.severities()?;
        let name = self
            .name
            .ok_or_else(|| AppError::bad_input("name", "name is required"))?;
        let query = self
            .query
            .ok_or_else(|| AppError::bad_input("query", "query is required"))?;
        let mut draft = RuleDraft::new(name, query);
        draft.description = self.description.flatten();
        draft.threshold = self.threshold_value.flatten();
        if let Some(v) = self.for_secs {
            draft.for_secs = v;
        }
        if let Some(v) = self.keep_firing_for {
            draft.keep_firing_for_secs = v;
        }
        if let Some(v) = severity {
            draft.severity = v;
        }
        if let Some(v) = self.labels {
            draft.labels = v;
        }
        if let Some(v) = self.annotations {
            draft.annotations = v.into();
        }
        if let Some(v) = self.enabled {
            draft.enabled = v;
        }
        if let Some(v) = self.evaluation_interval {
            draft.evaluation_interval_secs = v;
        }
        if let Some(v) = self.create_incident {
            draft.create_incident = v;
        }
        draft.incident_severity = incident_severity.flatten();
        Ok(draft)
    }

    fn into_patch(self) -> AppResult<RulePatch> {
        let (severity, incident_severity) = self.severities()?;
        Ok(RulePatch {
            name: self.name,
            description: self.description,
            query: self.query,
            threshold: self.threshold_value,
            for_secs: self.for_secs,
            keep_firing_for_secs: self.keep_firing_for,
            severity,
            labels: self.labels,
            annotations: self.annotations.map(Into::into),
            enabled: self.enabled,
            evaluation_interval_secs: self.evaluation_interval,
            create_incident: self.create_incident,
            incident_severity,
        })
    }
}

/// The REST name of a field named in a service error (GraphQL camelCase to
/// snake_case; `threshold` is `threshold_value` here).
fn rest_field(field: &str) -> String {
    if field == "threshold" {
        return "threshold_value".to_owned();
    }
    let mut out = String::with_capacity(field.len() + 4);
    for c in field.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn restify(mut e: AppError) -> AppError {
    e.field = e.field.as_deref().map(rest_field);
    e
}

/// A rule as the REST API shows it.
pub fn rule_json(r: &rule::Model) -> Value {
    let annotations = Annotations::stored(&r.annotations);
    json!({
        "id": r.id,
        "name": r.name,
        "description": r.description,
        "query": r.query,
        "threshold_value": r.threshold,
        "for": r.for_secs,
        "keep_firing_for": r.keep_firing_for_secs,
        "severity": r.severity,
        "labels": r.labels,
        "annotations": {
            "summary": annotations.summary,
            "description": annotations.description,
            "runbook_url": annotations.runbook_url,
        },
        "enabled": r.enabled,
        "evaluation_interval": r.evaluation_interval_secs,
        "create_incident": r.create_incident,
        "incident_severity": r.incident_severity,
        "created_by": r.created_by,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "last_evaluated_at": r.last_evaluated_at,
        "last_error": r.last_error,
    })
}

fn parse_path_id(id: &str) -> AppResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| AppError::bad_input("id", "id is not a valid id"))
}

async fn create(
    State(server): State<Server>,
    authed: Authed,
    JsonBody(body): JsonBody<RuleBody>,
) -> Result<Response, AppError> {
    authed.require(Role::Moderator)?;
    let draft = body.into_draft().map_err(restify)?;
    let rule = service::create_rule(&server.state, &authed.0, draft)
        .await
        .map_err(restify)?;
    Ok(created(rule_json(&rule)))
}

fn parse_number(name: &str, value: &str, max: u64) -> AppResult<u64> {
    let n: u64 = value.parse().map_err(|_| {
        AppError::bad_input(
            name,
            format!("{name} must be a whole number from 0 to {max}"),
        )
    })?;
    if n > max {
        return Err(AppError::bad_input(
            name,
            format!("{name} must be at most {max}"),
        ));
    }
    Ok(n)
}

async fn list(
    State(server): State<Server>,
    authed: Authed,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    authed.require(Role::User)?;
    let mut limit = 100;
    let mut offset = 0;
    let mut filter = RuleFilter::default();
    for (key, value) in params {
        match key.as_str() {
            "limit" => limit = parse_number("limit", &value, 1000)?,
            "offset" => offset = parse_number("offset", &value, i64::MAX as u64)?,
            "enabled" => {
                filter.enabled = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(AppError::bad_input(
                            "enabled",
                            "enabled must be true or false",
                        ));
                    }
                })
            }
            "severity" => filter.severities = Some(vec![value.parse::<Severity>()?]),
            _ => {}
        }
    }
    let rules = service::list_rules_offset(&server.state.db, &filter, limit, offset).await?;
    Ok(ok(rules.iter().map(rule_json).collect::<Vec<_>>()))
}

async fn show(
    State(server): State<Server>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    authed.require(Role::User)?;
    let id = parse_path_id(&id)?;
    Ok(ok(rule_json(
        &service::find_rule(&server.state.db, id).await?,
    )))
}

async fn update(
    State(server): State<Server>,
    authed: Authed,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RuleBody>,
) -> Result<Response, AppError> {
    authed.require(Role::Moderator)?;
    let id = parse_path_id(&id)?;
    let patch = body.into_patch().map_err(restify)?;
    let rule = service::update_rule(&server.state, id, patch)
        .await
        .map_err(restify)?;
    Ok(ok(rule_json(&rule)))
}

async fn remove(
    State(server): State<Server>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    authed.require(Role::Moderator)?;
    let id = parse_path_id(&id)?;
    let rule = service::delete_rule(&server.state, id).await?;
    Ok(ok(json!({ "id": rule.id, "deleted": true })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphql_field_names_become_snake_case_rest_names() {
        assert_eq!(rest_field("keepFiringFor"), "keep_firing_for");
        assert_eq!(
            rest_field("annotations.runbookUrl"),
            "annotations.runbook_url"
        );
        assert_eq!(rest_field("threshold"), "threshold_value");
        assert_eq!(rest_field("name"), "name");
    }

    #[test]
    fn the_original_request_shape_becomes_a_draft() {
        let body: RuleBody = serde_json::from_value(json!({
            "name": "High CPU Usage",
            "description": "CPU usage above 80% for more than 5 minutes",
            "query": "cpu_usage > 80",
            "threshold_value": 80.0
        }))
        .unwrap();
        let draft = body.into_draft().unwrap();
        assert_eq!(draft.name, "High CPU Usage");
        assert_eq!(draft.threshold, Some(80.0));
        assert_eq!(draft.evaluation_interval_secs, 30);
    }

    #[test]
    fn null_clears_and_absence_keeps_in_a_patch() {
        let body: RuleBody =
            serde_json::from_value(json!({"description": null, "severity": "critical"})).unwrap();
        let patch = body.into_patch().unwrap();
        assert_eq!(patch.description, Some(None));
        assert_eq!(patch.threshold, None);
        assert_eq!(patch.severity, Some(Severity::Critical));
    }
}
