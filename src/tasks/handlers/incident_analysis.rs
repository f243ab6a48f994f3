//! `monitoring_incident_analysis`: ranks the likely causes of an incident
//! ([`crate::incidents::analysis::analyze`]) and stores the analysis, so it
//! is ready when someone opens the incident.
//!
//! Enqueued by [`enqueue_incident_analysis`] in the transaction that creates
//! the incident (the task exists exactly when the incident does); one live
//! task per incident (dedupe key `incident_analysis:<id>`). It can also be
//! enqueued by hand to refresh an analysis.

use serde_json::{Value, json};
use uuid::Uuid;

use super::INCIDENT_ANALYSIS;
use crate::error::{AppResult, ErrorCode, FieldError};
use crate::tasks::registry::{TaskContext, TaskError};
use crate::tasks::service::{self, InternalTask};
use crate::util;

/// Attempts before the task is dead.
pub const MAX_ATTEMPTS: i32 = 5;

fn incident_id_of(payload: &Value) -> Result<Uuid, FieldError> {
    payload
        .get("incident_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Uuid>().ok())
        .ok_or_else(|| {
            FieldError::new(
                "incident_id",
                "incident_id must be the id (a UUID) of an incident",
            )
        })
}

/// Checks a payload: `{"incident_id": "<uuid>"}`.
pub fn validate(payload: &Value) -> Result<(), FieldError> {
    super::only_keys(payload, &["incident_id"])?;
    incident_id_of(payload).map(|_| ())
}

/// Queues the analysis of a new incident through the transaction that
/// creates it (commit makes both visible at once). Does nothing when an
/// analysis of that incident is already waiting or running.
pub async fn enqueue_incident_analysis(
    txn: &impl sea_orm::ConnectionTrait,
    incident_id: Uuid,
) -> AppResult<()> {
    service::insert_internal(
        txn,
        InternalTask {
            task_type: INCIDENT_ANALYSIS,
            payload: json!({ "incident_id": incident_id.to_string() }),
            dedupe_key: Some(format!("incident_analysis:{incident_id}")),
            run_after: util::now(),
            priority: 0,
            max_attempts: MAX_ATTEMPTS,
        },
    )
    .await?;
    Ok(())
}

/// Analyses the incident and stores the result; returns a summary.
pub async fn run(ctx: TaskContext) -> Result<Value, TaskError> {
    let incident_id =
        incident_id_of(&ctx.task.payload).map_err(|e| TaskError::Permanent(e.message))?;
    match crate::incidents::analysis::analyze(&ctx.state, incident_id).await {
        Ok(a) => Ok(json!({
            "incident_id": incident_id,
            "computed_at": a.computed_at,
            "window_start": a.span.window_start,
            "window_end": a.span.window_end,
            "suspects": a.findings.suspects.len(),
            "alerts": a.findings.alerts.len(),
            "metrics": a.findings.metrics.len(),
            "top_suspect": a.findings.suspects.first().map(|s| s.source.clone()),
        })),
        Err(e) if e.code == ErrorCode::NotFound => Err(TaskError::Permanent(format!(
            "incident {incident_id} does not exist"
        ))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_an_incident() {
        assert!(validate(&json!({"incident_id": Uuid::now_v7().to_string()})).is_ok());
        assert_eq!(validate(&json!({})).unwrap_err().field, "incident_id");
        assert_eq!(
            validate(&json!({"incident_id": 3})).unwrap_err().field,
            "incident_id"
        );
    }
}
