//! REST endpoints of the original design for metrics:
//! `POST /api/v1/monitoring/metrics` (one sample, or a JSON array of up to
//! 1,000 as a partial-success batch) and `GET /api/v1/monitoring/metrics`
//! with `name, metric_type, start_time, end_time, limit, offset, labels`
//! (`labels=key:value,...` are equality matchers). The same services as
//! GraphQL.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::events::{batch_json, int_param, list_param, time_param};
use super::{Authed, JsonBody, created, ok};
use crate::alerts::expr::MatchOp;
use crate::auth::Role;
use crate::error::{AppError, FieldError};
use crate::http::Server;
use crate::ingest::{Decoded, MAX_BATCH};
use crate::metrics::model::{MetricKind, NewMetric, parse_metric_type};
use crate::metrics::service::{self, MetricFilter};
use crate::metrics::store::StoredSample;
use crate::pagination::{Page, PageArgs};

/// Metric routes.
pub fn router() -> Router<Server> {
    Router::new().route(
        "/api/v1/monitoring/metrics",
        get(list_metrics).post(submit_metrics),
    )
}

/// A sample as the original design shows it (snake_case).
pub fn sample_json(s: &StoredSample) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "metric_type": s.metric_type.as_str(),
        "value": s.value,
        "labels": s.labels,
        "timestamp": s.timestamp,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricBody {
    name: String,
    metric_type: String,
    value: f64,
    labels: Option<Value>,
    timestamp: Option<DateTime<Utc>>,
}

fn decode(value: Value) -> Decoded<NewMetric> {
    let body: MetricBody = match serde_json::from_value(value) {
        Ok(b) => b,
        Err(e) => {
            return Decoded {
                item: NewMetric::gauge("", 0.0, &[]),
                errors: vec![FieldError::new("body", format!("invalid metric: {e}"))],
            };
        }
    };
    let (kind, kind_error) = match parse_metric_type(&body.metric_type) {
        Ok(k) => (k, None),
        Err(e) => (MetricKind::Gauge, Some(e)),
    };
    let mut decoded = service::decode_labels(
        body.name,
        kind,
        body.value,
        body.labels.as_ref(),
        body.timestamp,
    );
    if let Some(e) = kind_error {
        decoded.errors.insert(0, e);
    }
    decoded
}

async fn submit_metrics(
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
                    "metrics",
                    format!("at most {MAX_BATCH} metrics per call, got {}", items.len()),
                ));
            }
            let items = items.into_iter().map(decode).collect();
            let outcome = service::submit_batch(state, items, false).await?;
            Ok(ok(batch_json(&outcome, |s| s.id.to_string())))
        }
        Value::Object(_) => {
            let sample = service::submit(state, decode(body)).await?;
            Ok(created(sample_json(&sample)))
        }
        _ => Err(AppError::bad_input(
            "body",
            "send one metric as a JSON object or several as a JSON array",
        )),
    }
}

async fn list_metrics(
    State(server): State<Server>,
    authed: Authed,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    authed.require(Role::User)?;
    let mut filter = MetricFilter::default();
    let mut limit: Option<i64> = None;
    let mut offset: i64 = 0;
    let mut after: Option<String> = None;
    for (key, value) in &params {
        match key.as_str() {
            "name" => filter.names.extend(list_param(value).map(str::to_owned)),
            "metric_type" => {
                for t in list_param(value) {
                    filter.metric_types.push(parse_metric_type(t)?);
                }
            }
            "labels" => {
                for pair in list_param(value) {
                    let (label, v) = pair.split_once(':').ok_or_else(|| {
                        AppError::bad_input(
                            "labels",
                            "labels must be key:value pairs separated by commas",
                        )
                    })?;
                    filter
                        .matchers
                        .push(service::matcher("labels", label, MatchOp::Eq, v)?);
                }
            }
            "start_time" => filter.from = Some(time_param("start_time", value)?),
            "end_time" => filter.to = Some(time_param("end_time", value)?),
            "limit" => limit = Some(int_param("limit", value)?),
            "offset" => offset = int_param("offset", value)?,
            "after" => after = Some(value.clone()),
            other => {
                return Err(AppError::bad_input(
                    other,
                    format!(
                        "unknown query parameter `{}`: expected name, metric_type, labels, \
                         start_time, end_time, limit, offset or after",
                        other.chars().take(40).collect::<String>()
                    ),
                ));
            }
        }
    }
    let filter = filter.validate()?;
    if !(0..=100_000).contains(&offset) {
        return Err(AppError::bad_input(
            "offset",
            "offset must be between 0 and 100000",
        ));
    }
    let first = match limit {
        None => None,
        Some(l) => Some(i32::try_from(l).map_err(|_| {
            AppError::bad_input(
                "limit",
                format!("limit must be at most {}", service::MAX_PAGE),
            )
        })?),
    };
    let mut page = Page::from_args(
        PageArgs {
            first,
            ..Default::default()
        },
        100,
        service::MAX_PAGE,
    )
    .map_err(|e| {
        if e.field.as_deref() == Some("first") {
            AppError::bad_input("limit", e.message.replace("first", "limit"))
        } else {
            e
        }
    })?;
    page.after = after
        .as_deref()
        .map(service::decode_sample_cursor)
        .transpose()
        .map_err(|e| e.with_field("after"))?;
    let rows = service::list_samples(&server.state.db, &filter, &page, offset as u64).await?;
    let samples: Vec<Value> = rows.items.iter().map(|(_, s)| sample_json(s)).collect();
    Ok(ok(samples))
}
