//! The monitoring task handlers, registered at startup by
//! [`register_monitoring_handlers`]. Each does its work through the same
//! services the API uses.

pub mod alert_evaluation;
pub mod event_processing;
pub mod incident_analysis;
pub mod retention;

use std::time::Duration;

use serde_json::Value;

use super::registry::{Options, TaskRegistry, handler_with_validation};
use crate::error::FieldError;

/// Enriches events: level, grouping fingerprint, correlation tags.
pub const EVENT_PROCESSING: &str = "monitoring_event_processing";
/// Deletes events and metric samples past their retention.
pub const DATA_RETENTION: &str = "monitoring_data_retention";
/// Evaluates one alert rule on its interval (one live task per rule).
pub const ALERT_EVALUATION: &str = "monitoring_alert_evaluation";
/// Ranks the likely causes of a new incident.
pub const INCIDENT_ANALYSIS: &str = "monitoring_incident_analysis";

/// Registers the monitoring handlers.
pub fn register_monitoring_handlers(registry: &TaskRegistry) {
    registry.register(
        EVENT_PROCESSING,
        "Enriches new events: normalises the level, computes the grouping fingerprint, lifts trace_id/request_id from the payload into tags.",
        Options {
            timeout: Some(Duration::from_secs(120)),
            max_attempts: None,
        },
        handler_with_validation(event_processing::run, event_processing::validate),
    );
    registry.register(
        DATA_RETENTION,
        "Deletes events, metric samples and finished tasks older than their retention, in bounded batches.",
        Options {
            timeout: Some(Duration::from_secs(3600)),
            max_attempts: None,
        },
        handler_with_validation(retention::run, retention::validate),
    );
    registry.register(
        ALERT_EVALUATION,
        "Evaluates one alert rule (payload rule_id) and re-arms itself for the rule's next slot; one live task per enabled rule, kept in step with the rule.",
        Options {
            timeout: Some(Duration::from_secs(300)),
            max_attempts: Some(alert_evaluation::MAX_ATTEMPTS as u32),
        },
        alert_evaluation::AlertEvaluation,
    );
    registry.register(
        INCIDENT_ANALYSIS,
        "Ranks the likely causes of an incident (payload incident_id) and stores the analysis; enqueued when an incident is created.",
        Options {
            timeout: Some(Duration::from_secs(300)),
            max_attempts: Some(incident_analysis::MAX_ATTEMPTS as u32),
        },
        handler_with_validation(incident_analysis::run, incident_analysis::validate),
    );
}

/// Refuses keys a payload does not know, naming the ones it does.
pub(crate) fn only_keys(payload: &Value, allowed: &[&str]) -> Result<(), FieldError> {
    let Some(map) = payload.as_object() else {
        return Err(FieldError::new("payload", "payload must be a JSON object"));
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        let expected = if allowed.is_empty() {
            "no keys".to_owned()
        } else {
            allowed.join(", ")
        };
        return Err(FieldError::new(
            unknown.chars().take(64).collect::<String>(),
            format!("unknown payload key (expected {expected})"),
        ));
    }
    Ok(())
}
