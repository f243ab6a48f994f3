//! Metric samples as clients send them ([`NewMetric`]) and as the rest of
//! the code trusts them ([`ValidMetric`]), with the Prometheus naming rules.
//!
//! What a sample means depends on its type, fixed per name for the name's
//! lifetime: a `gauge` sample is the value at that moment (the last one
//! wins); a `counter` sample is a non-negative increment and the series'
//! value is the running total; a `histogram` or `summary` sample is one
//! observation.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::Value;

pub use super::aggregate::MetricKind;
use crate::error::FieldError;
use crate::util;

/// Longest metric name.
pub const MAX_NAME_CHARS: usize = 200;
/// Most labels on one sample.
pub const MAX_LABELS: usize = 32;
/// Longest label name.
pub const MAX_LABEL_NAME_CHARS: usize = 200;
/// Longest label value.
pub const MAX_LABEL_VALUE_CHARS: usize = 1024;
/// How far in the future a sample's timestamp may be.
pub const MAX_FUTURE_SECS: i64 = 300;

/// A sample as sent, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMetric {
    /// Metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`, at most 200 characters.
    pub name: String,
    /// Type; a name keeps its first type.
    pub metric_type: MetricKind,
    /// Gauge: the value; counter: a non-negative increment; histogram and
    /// summary: one observation. Must be finite.
    pub value: f64,
    /// Labels: at most 32; names `[a-zA-Z_][a-zA-Z0-9_]*` not starting
    /// with `__`; values at most 1,024 characters.
    pub labels: BTreeMap<String, String>,
    /// Sample time; defaults to now; at most 5 minutes in the future.
    pub timestamp: Option<DateTime<Utc>>,
}

impl NewMetric {
    /// A gauge sample with labels, stamped now.
    pub fn gauge(name: impl Into<String>, value: f64, labels: &[(&str, &str)]) -> Self {
        NewMetric::of(MetricKind::Gauge, name, value, labels)
    }

    /// A counter increment with labels, stamped now.
    pub fn counter(name: impl Into<String>, increment: f64, labels: &[(&str, &str)]) -> Self {
        NewMetric::of(MetricKind::Counter, name, increment, labels)
    }

    /// A histogram observation with labels, stamped now.
    pub fn histogram(name: impl Into<String>, observation: f64, labels: &[(&str, &str)]) -> Self {
        NewMetric::of(MetricKind::Histogram, name, observation, labels)
    }

    /// A sample of any type with labels, stamped now.
    pub fn of(
        metric_type: MetricKind,
        name: impl Into<String>,
        value: f64,
        labels: &[(&str, &str)],
    ) -> Self {
        NewMetric {
            name: name.into(),
            metric_type,
            value,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            timestamp: None,
        }
    }
}

/// A sample that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidMetric {
    /// Metric name.
    pub name: String,
    /// Type.
    pub metric_type: MetricKind,
    /// Value.
    pub value: f64,
    /// Labels, sorted by name.
    pub labels: BTreeMap<String, String>,
    /// Labels as canonical JSON (sorted keys), as stored.
    pub labels_json: String,
    /// Hex SHA-256 of `labels_json`: the series key within the name.
    pub fingerprint: String,
    /// Sample time, at stored precision.
    pub timestamp: DateTime<Utc>,
}

/// Whether `name` is a valid metric name.
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a valid label name (Prometheus reserves `__` names).
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The canonical JSON of a label set (keys sorted).
pub fn labels_json(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".to_owned())
}

/// The series fingerprint of a label set: hex SHA-256 of its canonical JSON.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    util::sha256_hex(&labels_json(labels))
}

/// Labels from a JSON object of strings (`null` or absent means none).
pub fn labels_from_json(
    value: Option<&Value>,
) -> Result<BTreeMap<String, String>, Vec<FieldError>> {
    let map = match value {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(vec![FieldError::new(
                "labels",
                "labels must be a JSON object of strings",
            )]);
        }
    };
    let mut labels = BTreeMap::new();
    let mut errors = Vec::new();
    for (k, v) in map {
        match v {
            Value::String(s) => {
                labels.insert(k.clone(), s.clone());
            }
            _ => errors.push(FieldError::new(
                format!("labels.{}", clip(k)),
                "label values must be strings",
            )),
        }
    }
    if errors.is_empty() {
        Ok(labels)
    } else {
        Err(errors)
    }
}

impl NewMetric {
    /// Validates every field against `now`, collecting all errors.
    pub fn validate(self, now: DateTime<Utc>) -> Result<ValidMetric, Vec<FieldError>> {
        let mut errors = Vec::new();
        let n = self.name.chars().count();
        if self.name.is_empty() {
            errors.push(FieldError::new("name", "name is required"));
        } else if n > MAX_NAME_CHARS {
            errors.push(FieldError::new(
                "name",
                format!("name must be at most {MAX_NAME_CHARS} characters, got {n}"),
            ));
        } else if !is_metric_name(&self.name) {
            errors.push(FieldError::new(
                "name",
                format!(
                    "invalid metric name `{}`: use letters, digits, `_` and `:`, not starting with a digit",
                    clip(&self.name)
                ),
            ));
        }
        if self.labels.len() > MAX_LABELS {
            errors.push(FieldError::new(
                "labels",
                format!(
                    "at most {MAX_LABELS} labels are allowed, got {}",
                    self.labels.len()
                ),
            ));
        } else {
            for (k, v) in &self.labels {
                let field = format!("labels.{}", clip(k));
                if k.chars().count() > MAX_LABEL_NAME_CHARS || !is_label_name(k) {
                    let why = if k.starts_with("__") {
                        "label names starting with `__` are reserved"
                    } else {
                        "invalid label name: use letters, digits and `_`, not starting with a digit"
                    };
                    errors.push(FieldError::new(field, why));
                    continue;
                }
                let reserved = match self.metric_type {
                    MetricKind::Histogram => Some("le"),
                    MetricKind::Summary => Some("quantile"),
                    MetricKind::Counter | MetricKind::Gauge => None,
                };
                if reserved == Some(k.as_str()) {
                    errors.push(FieldError::new(
                        field,
                        format!(
                            "the label `{k}` is reserved for {} buckets",
                            self.metric_type
                        ),
                    ));
                    continue;
                }
                let len = v.chars().count();
                if len > MAX_LABEL_VALUE_CHARS {
                    errors.push(FieldError::new(
                        field,
                        format!(
                            "label values must be at most {MAX_LABEL_VALUE_CHARS} characters, got {len}"
                        ),
                    ));
                } else if v.contains('\0') {
                    errors.push(FieldError::new(
                        field,
                        "label values must not contain NUL characters",
                    ));
                }
            }
        }
        if !self.value.is_finite() {
            errors.push(FieldError::new("value", "value must be a finite number"));
        } else if self.metric_type == MetricKind::Counter && self.value < 0.0 {
            errors.push(FieldError::new(
                "value",
                "a counter sample is an increment and must not be negative",
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
        let labels_json = labels_json(&self.labels);
        let fingerprint = util::sha256_hex(&labels_json);
        Ok(ValidMetric {
            name: self.name,
            metric_type: self.metric_type,
            value: if self.value == 0.0 { 0.0 } else { self.value },
            labels: self.labels,
            labels_json,
            fingerprint,
            timestamp,
        })
    }
}

/// Parses a metric type name as REST sends it (case-insensitive).
pub fn parse_metric_type(s: &str) -> Result<MetricKind, FieldError> {
    s.trim()
        .to_ascii_lowercase()
        .parse::<MetricKind>()
        .map_err(|_| {
            FieldError::new(
                "metric_type",
                format!(
                    "unknown metric type `{}`: expected one of counter, gauge, histogram, summary",
                    clip(s)
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn metric_names_follow_the_prometheus_rules() {
        for ok in ["a", "http_requests_total", "ns:rule:rate5m", "_x", "A1"] {
            assert!(is_metric_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a b", "é", "a.b"] {
            assert!(!is_metric_name(bad), "{bad}");
        }
    }

    #[test]
    fn label_names_exclude_colons_and_the_reserved_prefix() {
        assert!(is_label_name("method"));
        assert!(is_label_name("_x"));
        assert!(!is_label_name("__name__"));
        assert!(!is_label_name("a:b"));
        assert!(!is_label_name("9a"));
        assert!(!is_label_name(""));
    }

    #[test]
    fn a_plain_sample_is_valid_and_stamped_now() {
        let now = util::now();
        let v = NewMetric::gauge("cpu", 0.5, &[("host", "a")])
            .validate(now)
            .unwrap();
        assert_eq!(v.timestamp, now);
        assert_eq!(v.labels_json, r#"{"host":"a"}"#);
        assert_eq!(v.fingerprint, fingerprint(&v.labels));
    }

    #[test]
    fn fingerprints_ignore_label_order() {
        let a = NewMetric::gauge("m", 1.0, &[("a", "1"), ("b", "2")]);
        let b = NewMetric::gauge("m", 1.0, &[("b", "2"), ("a", "1")]);
        assert_eq!(fingerprint(&a.labels), fingerprint(&b.labels));
        assert_ne!(
            fingerprint(&a.labels),
            fingerprint(&NewMetric::gauge("m", 1.0, &[("a", "1")]).labels)
        );
    }

    #[test]
    fn counters_refuse_negative_increments_and_every_type_refuses_non_finite_values() {
        let now = util::now();
        let e = NewMetric::counter("c", -1.0, &[])
            .validate(now)
            .unwrap_err();
        assert_eq!(fields(e), ["value"]);
        assert!(NewMetric::gauge("g", -1.0, &[]).validate(now).is_ok());
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(NewMetric::gauge("g", v, &[]).validate(now).is_err());
        }
    }

    #[test]
    fn label_limits_are_enforced_per_label() {
        let now = util::now();
        let mut m = NewMetric::gauge("g", 1.0, &[("__x", "1"), ("ok", "1")]);
        m.labels
            .insert("v".into(), "x".repeat(MAX_LABEL_VALUE_CHARS + 1));
        assert_eq!(
            fields(m.validate(now).unwrap_err()),
            ["labels.__x", "labels.v"]
        );
        let mut many = NewMetric::gauge("g", 1.0, &[]);
        for i in 0..=MAX_LABELS {
            many.labels.insert(format!("l{i}"), "v".into());
        }
        assert_eq!(fields(many.validate(now).unwrap_err()), ["labels"]);
    }

    #[test]
    fn histograms_may_not_use_le_and_summaries_may_not_use_quantile() {
        let now = util::now();
        assert!(
            NewMetric::histogram("h", 1.0, &[("le", "1")])
                .validate(now)
                .is_err()
        );
        assert!(
            NewMetric::of(MetricKind::Summary, "s", 1.0, &[("quantile", "1")])
                .validate(now)
                .is_err()
        );
        assert!(
            NewMetric::gauge("g", 1.0, &[("le", "1")])
                .validate(now)
                .is_ok()
        );
    }

    #[test]
    fn future_timestamps_are_limited_to_five_minutes() {
        let now = util::now();
        let mut m = NewMetric::gauge("g", 1.0, &[]);
        m.timestamp = Some(now + Duration::seconds(301));
        assert_eq!(fields(m.validate(now).unwrap_err()), ["timestamp"]);
    }

    #[test]
    fn json_labels_must_be_an_object_of_strings() {
        assert!(labels_from_json(None).unwrap().is_empty());
        assert_eq!(
            labels_from_json(Some(&json!({"a": "1"}))).unwrap()["a"],
            "1"
        );
        let e = labels_from_json(Some(&json!({"a": 1, "b": "x"}))).unwrap_err();
        assert_eq!(fields(e), ["labels.a"]);
        assert!(labels_from_json(Some(&json!(["a"]))).is_err());
    }

    #[test]
    fn metric_types_parse_case_insensitively_and_name_the_allowed_values() {
        assert_eq!(parse_metric_type("Counter").unwrap(), MetricKind::Counter);
        let e = parse_metric_type("timer").unwrap_err();
        assert!(e.message.contains("counter, gauge, histogram, summary"));
    }
}
