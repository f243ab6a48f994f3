//! Incident domain types and the validation of client input: raw values are
//! parsed once into types the services trust (titles, texts, labels,
//! sources, start times).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::Value;

use crate::error::{AppError, AppResult};
use crate::util;

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest description, root cause or note, in characters.
pub const MAX_TEXT_CHARS: usize = 10_000;
/// Most labels on one incident.
pub const MAX_LABELS: usize = 50;
/// Longest label key, in characters.
pub const MAX_LABEL_KEY_CHARS: usize = 128;
/// Longest label value, in characters.
pub const MAX_LABEL_VALUE_CHARS: usize = 1024;
/// Most sources on one incident.
pub const MAX_SOURCES: usize = 50;
/// Longest source (the same limit as an event's source).
pub const MAX_SOURCE_CHARS: usize = crate::events::model::MAX_SOURCE_CHARS;
/// How far in the future a start time may be (client clock skew).
pub const MAX_FUTURE_START_SECS: i64 = 300;

/// How bad an incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Minor.
    Low,
    /// Noticeable.
    Medium,
    /// Serious.
    High,
    /// Everything is on fire.
    Critical,
}

impl Severity {
    /// All severities, least severe first.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The stored (and REST) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The value on a stored row (the check constraint keeps it valid;
    /// anything else reads as `medium`).
    pub fn stored(s: &str) -> Severity {
        s.parse().unwrap_or(Severity::Medium)
    }
}

impl FromStr for Severity {
    type Err = AppError;
    fn from_str(s: &str) -> AppResult<Severity> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                AppError::bad_input(
                    "severity",
                    format!(
                        "unknown severity `{}`: expected low, medium, high or critical",
                        clip(s)
                    ),
                )
            })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an incident is in its lifecycle (see [`super::lifecycle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Reported, nobody on it yet.
    Open,
    /// Someone is working on it.
    Investigating,
    /// The impact is over.
    Resolved,
    /// Done; nothing leaves this state.
    Closed,
}

impl Status {
    /// All statuses, in lifecycle order.
    pub const ALL: [Status; 4] = [
        Status::Open,
        Status::Investigating,
        Status::Resolved,
        Status::Closed,
    ];

    /// The stored (and REST) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Investigating => "investigating",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
    }

    /// The value on a stored row (the check constraint keeps it valid).
    pub fn stored(s: &str) -> Status {
        s.parse().unwrap_or(Status::Open)
    }

    /// Whether the incident still needs work (counted as open).
    pub fn is_active(self) -> bool {
        matches!(self, Status::Open | Status::Investigating)
    }
}

impl FromStr for Status {
    type Err = AppError;
    fn from_str(s: &str) -> AppResult<Status> {
        Status::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                AppError::bad_input(
                    "status",
                    format!(
                        "unknown status `{}`: expected open, investigating, resolved or closed",
                        clip(s)
                    ),
                )
            })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first characters of a client value, for error messages.
pub fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

/// Validates a title: 1–200 characters after trimming, no NUL. Returns it trimmed.
pub fn title(field: &str, raw: &str) -> AppResult<String> {
    let t = raw.trim();
    let n = t.chars().count();
    if n == 0 {
        return Err(AppError::bad_input(field, format!("{field} is required")));
    }
    if n > MAX_TITLE_CHARS {
        return Err(AppError::bad_input(
            field,
            format!("{field} must be at most {MAX_TITLE_CHARS} characters, got {n}"),
        ));
    }
    if has_nul(t) {
        return Err(AppError::bad_input(
            field,
            format!("{field} must not contain NUL characters"),
        ));
    }
    Ok(t.to_owned())
}

/// Validates a free text (description, root cause, note): at most 10,000
/// characters, no NUL; when `required`, not blank.
pub fn text(field: &str, raw: &str, required: bool) -> AppResult<String> {
    let n = raw.chars().count();
    if required && raw.trim().is_empty() {
        return Err(AppError::bad_input(field, format!("{field} is required")));
    }
    if n > MAX_TEXT_CHARS {
        return Err(AppError::bad_input(
            field,
            format!("{field} must be at most {MAX_TEXT_CHARS} characters, got {n}"),
        ));
    }
    if has_nul(raw) {
        return Err(AppError::bad_input(
            field,
            format!("{field} must not contain NUL characters"),
        ));
    }
    Ok(raw.to_owned())
}

/// Validated labels: at most 50, keys 1–128 characters, string values of at
/// most 1,024 characters, no NUL anywhere.
pub fn labels(value: &Value) -> AppResult<BTreeMap<String, String>> {
    let Value::Object(map) = value else {
        return Err(AppError::bad_input(
            "labels",
            "labels must be a JSON object of strings",
        ));
    };
    if map.len() > MAX_LABELS {
        return Err(AppError::bad_input(
            "labels",
            format!("at most {MAX_LABELS} labels are allowed, got {}", map.len()),
        ));
    }
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let field = format!("labels.{}", clip(k));
        let kn = k.chars().count();
        if kn == 0 || kn > MAX_LABEL_KEY_CHARS || has_nul(k) {
            return Err(AppError::bad_input(
                field,
                format!("label keys must be 1 to {MAX_LABEL_KEY_CHARS} characters without NUL"),
            ));
        }
        let Value::String(s) = v else {
            return Err(AppError::bad_input(field, "label values must be strings"));
        };
        if s.chars().count() > MAX_LABEL_VALUE_CHARS || has_nul(s) {
            return Err(AppError::bad_input(
                field,
                format!(
                    "label values must be at most {MAX_LABEL_VALUE_CHARS} characters without NUL"
                ),
            ));
        }
        out.insert(k.clone(), s.clone());
    }
    Ok(out)
}

/// Validated sources: at most 50 service names of 1–200 characters, no NUL;
/// trimmed, deduplicated and sorted.
pub fn sources(raw: &[String]) -> AppResult<Vec<String>> {
    if raw.len() > MAX_SOURCES {
        return Err(AppError::bad_input(
            "sources",
            format!(
                "at most {MAX_SOURCES} sources are allowed, got {}",
                raw.len()
            ),
        ));
    }
    let mut out = BTreeSet::new();
    for (i, s) in raw.iter().enumerate() {
        let t = s.trim();
        let n = t.chars().count();
        if n == 0 || n > MAX_SOURCE_CHARS || has_nul(t) {
            return Err(AppError::bad_input(
                format!("sources[{i}]"),
                format!("sources must be 1 to {MAX_SOURCE_CHARS} characters without NUL"),
            ));
        }
        out.insert(t.to_owned());
    }
    Ok(out.into_iter().collect())
}

/// Validates a start time: not more than 5 minutes ahead of `now`, not
/// before 1970; stored at microsecond precision.
pub fn started_at(t: DateTime<Utc>, now: DateTime<Utc>) -> AppResult<DateTime<Utc>> {
    if t > now + Duration::seconds(MAX_FUTURE_START_SECS) {
        return Err(AppError::bad_input(
            "startedAt",
            "startedAt must not be in the future",
        ));
    }
    if t < Utc.timestamp_opt(0, 0).single().unwrap_or(now) {
        return Err(AppError::bad_input(
            "startedAt",
            "startedAt must not be before 1970",
        ));
    }
    Ok(util::to_stored_precision(t))
}

/// Labels as stored (a JSON object).
pub fn labels_json(labels: &BTreeMap<String, String>) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// Sources as stored (a JSON array).
pub fn sources_json(sources: &[String]) -> Value {
    Value::Array(sources.iter().cloned().map(Value::String).collect())
}

/// The sources of a stored row.
pub fn stored_sources(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The labels of a stored row.
pub fn stored_labels(v: &Value) -> BTreeMap<String, String> {
    match v {
        Value::Object(map) => map
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// A duration in seconds (microsecond precision), never negative.
pub fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let micros = (to - from).num_microseconds().unwrap_or(i64::MAX);
    (micros.max(0) as f64) / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn titles_are_trimmed_and_must_have_one_to_two_hundred_characters() {
        assert_eq!(title("title", "  db down ").unwrap(), "db down");
        assert!(title("title", "   ").is_err());
        assert!(title("title", &"é".repeat(200)).is_ok());
        let e = title("title", &"é".repeat(201)).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("title"));
    }

    #[test]
    fn texts_reject_nul_and_more_than_ten_thousand_characters() {
        assert!(text("description", "a\0b", false).is_err());
        assert!(text("description", &"x".repeat(10_001), false).is_err());
        assert!(text("description", "", false).is_ok());
        assert!(text("body", " ", true).is_err());
    }

    #[test]
    fn severities_and_statuses_parse_case_insensitively_and_name_the_allowed_values() {
        assert_eq!("HIGH".parse::<Severity>().unwrap(), Severity::High);
        assert_eq!(
            "Investigating".parse::<Status>().unwrap(),
            Status::Investigating
        );
        let e = "urgent".parse::<Severity>().unwrap_err();
        assert!(e.message.contains("low, medium, high or critical"));
        assert!("done".parse::<Status>().is_err());
    }

    #[test]
    fn labels_must_be_an_object_of_short_strings() {
        assert_eq!(
            labels(&json!({"b": "2", "a": "1"}))
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert!(labels(&json!(["a"])).is_err());
        let e = labels(&json!({"n": 1})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("labels.n"));
        assert!(labels(&json!({"": "x"})).is_err());
        let many: serde_json::Map<String, Value> =
            (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert!(labels(&Value::Object(many)).is_err());
    }

    #[test]
    fn sources_are_trimmed_deduplicated_and_sorted() {
        let s = sources(&["web ".into(), "api".into(), "web".into()]).unwrap();
        assert_eq!(s, vec!["api", "web"]);
        let e = sources(&["ok".into(), " ".into()]).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("sources[1]"));
        assert!(sources(&vec!["a".to_owned(); 51]).is_err());
    }

    #[test]
    fn start_times_may_be_in_the_past_but_not_in_the_future() {
        let now = util::now();
        assert!(started_at(now - Duration::days(3), now).is_ok());
        assert!(started_at(now + Duration::seconds(299), now).is_ok());
        assert!(started_at(now + Duration::hours(1), now).is_err());
        assert!(started_at(Utc.timestamp_opt(-10, 0).unwrap(), now).is_err());
    }

    #[test]
    fn durations_are_never_negative() {
        let now = util::now();
        assert_eq!(seconds_between(now, now - Duration::seconds(5)), 0.0);
        assert_eq!(
            seconds_between(now, now + Duration::milliseconds(1500)),
            1.5
        );
    }
}
