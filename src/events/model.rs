//! Event domain types and their validation: raw input ([`NewEvent`]) is
//! parsed once into a [`ValidEvent`] that the rest of the code trusts.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::error::FieldError;
use crate::util;

/// Longest source, in characters.
pub const MAX_SOURCE_CHARS: usize = 200;
/// Longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 10_000;
/// Most tag entries.
pub const MAX_TAGS: usize = 100;
/// Largest serialized tags object, in bytes.
pub const MAX_TAGS_BYTES: usize = 64 * 1024;
/// Longest tag key, in characters.
pub const MAX_TAG_KEY_CHARS: usize = 128;
/// Largest serialized payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// How far in the future a timestamp may be.
pub const MAX_FUTURE_SECS: i64 = 300;
/// Deepest nesting accepted in a payload.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// The kind of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A log line.
    Log,
    /// A metric sample sent as an event.
    Metric,
    /// A trace span.
    Trace,
    /// An alert.
    Alert,
}

impl EventType {
    /// All types, in order.
    pub const ALL: [EventType; 4] = [
        EventType::Log,
        EventType::Metric,
        EventType::Trace,
        EventType::Alert,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Log => "log",
            EventType::Metric => "metric",
            EventType::Trace => "trace",
            EventType::Alert => "alert",
        }
    }
}

impl FromStr for EventType {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                FieldError::new(
                    "event_type",
                    format!(
                        "unknown event type `{}`: expected one of log, metric, trace, alert",
                        clip(s)
                    ),
                )
            })
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Severity of an event, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
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

impl Level {
    /// All levels, least severe first.
    pub const ALL: [Level; 6] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }

    /// This level and every more severe one.
    pub fn and_above(self) -> Vec<Level> {
        Level::ALL.into_iter().filter(|l| *l >= self).collect()
    }
}

impl FromStr for Level {
    type Err = FieldError;
    /// Case-insensitive; `warning` is accepted as `warn`.
    fn from_str(s: &str) -> Result<Self, FieldError> {
        let lower = s.trim().to_ascii_lowercase();
        if lower == "warning" {
            return Ok(Level::Warn);
        }
        Level::ALL.into_iter().find(|l| l.as_str() == lower).ok_or_else(|| {
            FieldError::new(
                "level",
                format!(
                    "unknown level `{}`: expected one of trace, debug, info, warn, error, fatal",
                    clip(s)
                ),
            )
        })
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// An event as a client sends it, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Kind of event.
    pub event_type: EventType,
    /// The sending service (1–200 characters).
    pub source: String,
    /// Free text (≤ 10,000 characters).
    pub message: Option<String>,
    /// Level name, case-insensitive (`warning` means `warn`).
    pub level: Option<String>,
    /// Tags: ≤ 100 entries, ≤ 64 KB, values strings, numbers or booleans.
    pub tags: Map<String, Value>,
    /// Payload: a JSON object ≤ 1 MB.
    pub payload: Value,
    /// When it happened; defaults to now; at most 5 minutes in the future.
    pub timestamp: Option<DateTime<Utc>>,
}

impl NewEvent {
    /// A log event with just a source and message (handy for internal callers).
    pub fn log(source: impl Into<String>, level: Option<&str>, message: impl Into<String>) -> Self {
        NewEvent {
            event_type: EventType::Log,
            source: source.into(),
            message: Some(message.into()),
            level: level.map(str::to_owned),
            tags: Map::new(),
            payload: Value::Object(Map::new()),
            timestamp: None,
        }
    }
}

/// An event that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    /// Kind of event.
    pub event_type: EventType,
    /// The sending service.
    pub source: String,
    /// Free text.
    pub message: Option<String>,
    /// Level.
    pub level: Option<Level>,
    /// Tags (flat object of scalars).
    pub tags: Map<String, Value>,
    /// Payload (an object).
    pub payload: Value,
    /// Event time, at stored precision.
    pub timestamp: DateTime<Utc>,
}

fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

/// Checks a JSON value for NUL characters in any string and for excessive
/// nesting (PostgreSQL refuses NUL in text and JSONB).
fn check_json(v: &Value, depth: usize) -> Result<(), &'static str> {
    if depth > MAX_PAYLOAD_DEPTH {
        return Err("is nested too deeply");
    }
    match v {
        Value::String(s) if has_nul(s) => Err("must not contain NUL characters"),
        Value::Array(items) => items.iter().try_for_each(|i| check_json(i, depth + 1)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            if has_nul(k) {
                Err("must not contain NUL characters")
            } else {
                check_json(v, depth + 1)
            }
        }),
        _ => Ok(()),
    }
}

impl NewEvent {
    /// Validates every field against `now`, collecting all errors.
    pub fn validate(self, now: DateTime<Utc>) -> Result<ValidEvent, Vec<FieldError>> {
        let mut errors = Vec::new();
        let source_len = self.source.chars().count();
        if self.source.trim().is_empty() {
            errors.push(FieldError::new("source", "source is required"));
        } else if source_len > MAX_SOURCE_CHARS {
            errors.push(FieldError::new(
                "source",
                format!("source must be at most {MAX_SOURCE_CHARS} characters, got {source_len}"),
            ));
        } else if has_nul(&self.source) {
            errors.push(FieldError::new(
                "source",
                "source must not contain NUL characters",
            ));
        }
        if let Some(m) = &self.message {
            let n = m.chars().count();
            if n > MAX_MESSAGE_CHARS {
                errors.push(FieldError::new(
                    "message",
                    format!("message must be at most {MAX_MESSAGE_CHARS} characters, got {n}"),
                ));
            } else if has_nul(m) {
                errors.push(FieldError::new(
                    "message",
                    "message must not contain NUL characters",
                ));
            }
        }
        let level = match self.level.as_deref() {
            None => None,
            Some(l) => match l.parse::<Level>() {
                Ok(level) => Some(level),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
        };
        if self.tags.len() > MAX_TAGS {
            errors.push(FieldError::new(
                "tags",
                format!(
                    "at most {MAX_TAGS} tags are allowed, got {}",
                    self.tags.len()
                ),
            ));
        } else {
            for (key, value) in &self.tags {
                let field = format!("tags.{}", clip(key));
                if key.is_empty() || key.chars().count() > MAX_TAG_KEY_CHARS {
                    errors.push(FieldError::new(
                        field,
                        format!("tag keys must be 1 to {MAX_TAG_KEY_CHARS} characters"),
                    ));
                } else if has_nul(key) {
                    errors.push(FieldError::new(
                        field,
                        "tag keys must not contain NUL characters",
                    ));
                } else {
                    match value {
                        Value::String(s) if has_nul(s) => errors.push(FieldError::new(
                            field,
                            "tag values must not contain NUL characters",
                        )),
                        Value::String(_) | Value::Bool(_) => {}
                        Value::Number(n) if n.as_f64().is_some_and(f64::is_finite) => {}
                        _ => errors.push(FieldError::new(
                            field,
                            "tag values must be strings, finite numbers or booleans",
                        )),
                    }
                }
            }
            let size = serde_json::to_vec(&self.tags)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if size > MAX_TAGS_BYTES {
                errors.push(FieldError::new(
                    "tags",
                    format!("tags must be at most {MAX_TAGS_BYTES} bytes as JSON, got {size}"),
                ));
            }
        }
        let payload = match self.payload {
            Value::Null => Value::Object(Map::new()),
            v @ Value::Object(_) => v,
            _ => {
                errors.push(FieldError::new("payload", "payload must be a JSON object"));
                Value::Object(Map::new())
            }
        };
        if let Err(why) = check_json(&payload, 0) {
            errors.push(FieldError::new("payload", format!("payload {why}")));
        }
        let size = serde_json::to_vec(&payload)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_PAYLOAD_BYTES {
            errors.push(FieldError::new(
                "payload",
                format!("payload must be at most {MAX_PAYLOAD_BYTES} bytes as JSON, got {size}"),
            ));
        }
        let timestamp = match self.timestamp {
            None => now,
            Some(t) if t > now + Duration::seconds(MAX_FUTURE_SECS) => {
                errors.push(FieldError::new(
                    "timestamp",
                    "timestamp must not be more than 5 minutes in the future",
                ));
                now
            }
            Some(t) if t < Utc.timestamp_opt(0, 0).single().unwrap_or(now) => {
                errors.push(FieldError::new(
                    "timestamp",
                    "timestamp must not be before 1970",
                ));
                now
            }
            Some(t) => util::to_stored_precision(t),
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ValidEvent {
            event_type: self.event_type,
            source: self.source,
            message: self.message,
            level,
            tags: self.tags,
            payload,
            timestamp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> NewEvent {
        NewEvent::log("api", Some("info"), "hello")
    }

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_plain_event_is_valid_and_stamped_now() {
        let now = util::now();
        let v = event().validate(now).unwrap();
        assert_eq!(v.timestamp, now);
        assert_eq!(v.level, Some(Level::Info));
    }

    #[test]
    fn levels_are_case_insensitive_and_warning_means_warn() {
        assert_eq!("WARNING".parse::<Level>().unwrap(), Level::Warn);
        assert_eq!("Error".parse::<Level>().unwrap(), Level::Error);
        assert!("verbose".parse::<Level>().is_err());
    }

    #[test]
    fn unknown_event_types_name_the_allowed_values() {
        let e = "metricz".parse::<EventType>().unwrap_err();
        assert!(e.message.contains("log, metric, trace, alert"));
    }

    #[test]
    fn a_blank_or_overlong_source_is_rejected() {
        let mut e = event();
        e.source = "  ".into();
        assert_eq!(fields(e.validate(util::now()).unwrap_err()), ["source"]);
        let mut e = event();
        e.source = "x".repeat(201);
        assert_eq!(fields(e.validate(util::now()).unwrap_err()), ["source"]);
    }

    #[test]
    fn messages_over_ten_thousand_characters_are_rejected() {
        let mut e = event();
        e.message = Some("é".repeat(10_001));
        assert_eq!(fields(e.validate(util::now()).unwrap_err()), ["message"]);
    }

    #[test]
    fn more_than_a_hundred_tags_are_rejected() {
        let mut e = event();
        for i in 0..101 {
            e.tags.insert(format!("k{i}"), json!(i));
        }
        assert_eq!(fields(e.validate(util::now()).unwrap_err()), ["tags"]);
    }

    #[test]
    fn nested_tag_values_are_rejected() {
        let mut e = event();
        e.tags.insert("region".into(), json!({"a": 1}));
        assert_eq!(
            fields(e.validate(util::now()).unwrap_err()),
            ["tags.region"]
        );
    }

    #[test]
    fn payloads_must_be_objects_without_nul() {
        let mut e = event();
        e.payload = json!([1, 2]);
        assert_eq!(fields(e.validate(util::now()).unwrap_err()), ["payload"]);
        let mut e = event();
        e.payload = json!({"a": "x\u{0}y"});
        assert_eq!(fields(e.validate(util::now()).unwrap_err()), ["payload"]);
    }

    #[test]
    fn oversized_payloads_are_rejected() {
        let mut e = event();
        e.payload = json!({"blob": "x".repeat(MAX_PAYLOAD_BYTES)});
        assert_eq!(fields(e.validate(util::now()).unwrap_err()), ["payload"]);
    }

    #[test]
    fn timestamps_more_than_five_minutes_ahead_are_rejected() {
        let now = util::now();
        let mut e = event();
        e.timestamp = Some(now + Duration::seconds(301));
        assert_eq!(fields(e.validate(now).unwrap_err()), ["timestamp"]);
        let mut e = event();
        e.timestamp = Some(now + Duration::seconds(299));
        assert!(e.validate(now).is_ok());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut e = event();
        e.source = String::new();
        e.level = Some("loud".into());
        e.payload = json!("x");
        assert_eq!(
            fields(e.validate(util::now()).unwrap_err()),
            ["source", "level", "payload"]
        );
    }
}
