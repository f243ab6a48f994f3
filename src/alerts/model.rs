//! Alert domain types and their validation: raw rule and silence input
//! ([`RuleDraft`], [`SilenceDraft`]) is parsed once into the validated
//! [`RuleSpec`] and [`SilenceSpec`] that the rest of the code trusts. The
//! GraphQL and REST layers only translate their shapes into drafts, so both
//! accept and refuse exactly the same things.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::expr::{self, AlertExpr, CmpOp, MatchOp, Matcher};
use crate::error::FieldError;
use crate::util;

/// Longest rule name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest description (of a rule or in annotations), in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
/// Longest annotation summary, in characters.
pub const MAX_SUMMARY_CHARS: usize = 1_000;
/// Longest runbook URL, in characters.
pub const MAX_URL_CHARS: usize = 2_000;
/// Longest `for` and `keepFiringFor`, in seconds (30 days).
pub const MAX_DURATION_SECS: i64 = 30 * 86_400;
/// Longest evaluation interval, in seconds (1 day).
pub const MAX_INTERVAL_SECS: i64 = 86_400;
/// Default evaluation interval, in seconds.
pub const DEFAULT_INTERVAL_SECS: i64 = 30;
/// Most labels on a rule.
pub const MAX_RULE_LABELS: usize = 50;
/// Longest label name on a rule (it becomes an event tag key).
pub const MAX_LABEL_NAME_CHARS: usize = 128;
/// Longest label value on a rule or in a matcher, in characters.
pub const MAX_LABEL_VALUE_CHARS: usize = 1_024;
/// Most matchers in a silence.
pub const MAX_SILENCE_MATCHERS: usize = 50;
/// Longest silence or acknowledgement comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 2_000;
/// How far in the future a silence may end (about 10 years).
pub const MAX_SILENCE_SECS: i64 = 3_650 * 86_400;
/// Label names Sightline sets itself on alert events and for silence matching.
pub const RESERVED_LABELS: [&str; 3] = ["alertname", "rule_id", "severity"];

/// How serious a rule's alerts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// For information.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// The stored (and REST) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// The level of the alert events written when an alert of this severity fires.
    pub fn event_level(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warn",
            Severity::Critical => "error",
        }
    }

    /// The incident severity used when a rule asks for incidents without naming one.
    pub fn default_incident_severity(self) -> IncidentSeverity {
        match self {
            Severity::Info => IncidentSeverity::Low,
            Severity::Warning => IncidentSeverity::Medium,
            Severity::Critical => IncidentSeverity::High,
        }
    }

    /// Reads a stored value; anything unknown reads as `warning` (the column
    /// has a CHECK constraint, so this does not happen).
    pub fn stored(s: &str) -> Severity {
        s.parse().unwrap_or(Severity::Warning)
    }
}

impl FromStr for Severity {
    type Err = FieldError;
    /// Case-insensitive.
    fn from_str(s: &str) -> Result<Self, FieldError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            _ => Err(FieldError::new(
                "severity",
                format!(
                    "unknown severity `{}`: expected info, warning or critical",
                    clip(s)
                ),
            )),
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The severity of incidents a rule opens: the incidents domain's own.
pub use crate::incidents::model::Severity as IncidentSeverity;

/// Texts attached to a rule's alerts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotations {
    /// One line saying what is wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// More detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where to read what to do (an http or https URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<String>,
}

impl Annotations {
    /// Reads the stored JSON (unknown or malformed parts read as absent).
    pub fn stored(json: &Value) -> Annotations {
        serde_json::from_value(json.clone()).unwrap_or_default()
    }

    /// The stored JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| Value::Object(Map::new()))
    }
}

/// A rule as a client describes it, every field present (creation fills
/// defaults; an update merges the patch into the stored rule first).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDraft {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The expression.
    pub query: String,
    /// Threshold for an expression without a comparison.
    pub threshold: Option<f64>,
    /// Seconds before pending becomes firing.
    pub for_secs: i64,
    /// Seconds a firing alert keeps firing after the condition stops.
    pub keep_firing_for_secs: i64,
    /// Severity.
    pub severity: Severity,
    /// Labels: must be a JSON object of strings.
    pub labels: Value,
    /// Annotations.
    pub annotations: Annotations,
    /// Whether it is evaluated.
    pub enabled: bool,
    /// Seconds between evaluations.
    pub evaluation_interval_secs: i64,
    /// Whether firing alerts open incidents.
    pub create_incident: bool,
    /// Severity of the incidents.
    pub incident_severity: Option<IncidentSeverity>,
}

impl RuleDraft {
    /// A draft with the defaults for everything but name and query.
    pub fn new(name: impl Into<String>, query: impl Into<String>) -> RuleDraft {
        RuleDraft {
            name: name.into(),
            description: None,
            query: query.into(),
            threshold: None,
            for_secs: 0,
            keep_firing_for_secs: 0,
            severity: Severity::Warning,
            labels: Value::Object(Map::new()),
            annotations: Annotations::default(),
            enabled: true,
            evaluation_interval_secs: DEFAULT_INTERVAL_SECS,
            create_incident: false,
            incident_severity: None,
        }
    }
}

/// A rule that passed validation.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    /// Trimmed name.
    pub name: String,
    /// Description (blank becomes none).
    pub description: Option<String>,
    /// The expression as written (trimmed).
    pub query: String,
    /// The parsed expression with its condition (from the query or the threshold).
    pub expr: AlertExpr,
    /// Threshold as given.
    pub threshold: Option<f64>,
    /// Seconds before pending becomes firing.
    pub for_secs: i64,
    /// Seconds of keep-firing.
    pub keep_firing_for_secs: i64,
    /// Severity.
    pub severity: Severity,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations (blank parts become none).
    pub annotations: Annotations,
    /// Whether it is evaluated.
    pub enabled: bool,
    /// Seconds between evaluations.
    pub evaluation_interval_secs: i64,
    /// Whether firing alerts open incidents.
    pub create_incident: bool,
    /// Severity of opened incidents; set exactly when `create_incident` is.
    pub incident_severity: Option<IncidentSeverity>,
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

/// Checks an optional free text: length and NUL; blank becomes `None`.
fn optional_text(
    field: &str,
    value: Option<String>,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let value = value?;
    let count = value.chars().count();
    if count > max {
        errors.push(FieldError::new(
            field,
            format!("{field} must be at most {max} characters, got {count}"),
        ));
        return None;
    }
    if has_nul(&value) {
        errors.push(FieldError::new(
            field,
            format!("{field} must not contain NUL characters"),
        ));
        return None;
    }
    if value.trim().is_empty() {
        None
    } else {
        Some(value)
    }
}

/// Parses a rule's query and gives it a condition: the expression's own
/// comparison, or `> threshold`. Errors name the `query` (with the
/// character position) or the `threshold` field.
pub fn compile_condition(query: &str, threshold: Option<f64>) -> Result<AlertExpr, FieldError> {
    if has_nul(query) {
        return Err(FieldError::new(
            "query",
            "query must not contain NUL characters",
        ));
    }
    let parsed = expr::parse(query).map_err(|e| {
        FieldError::new(
            "query",
            format!("at position {}: {}", e.position, e.message),
        )
    })?;
    if let Some(t) = threshold
        && !t.is_finite()
    {
        return Err(FieldError::new("threshold", "threshold must be finite"));
    }
    match (parsed.comparison.is_some(), threshold) {
        (true, _) => Ok(parsed),
        (false, Some(t)) => Ok(parsed.with_threshold(CmpOp::Gt, t)),
        (false, None) => Err(FieldError::new(
            "query",
            "the rule needs a condition: add a comparison to the query (e.g. `cpu_usage > 80`) \
             or set threshold",
        )),
    }
}

/// Validates rule labels: a JSON object of at most 50 string values with
/// label-syntax names, none of them reserved.
pub fn validate_labels(
    field: &str,
    labels: &Value,
) -> Result<BTreeMap<String, String>, Vec<FieldError>> {
    let Value::Object(map) = labels else {
        return Err(vec![FieldError::new(
            field,
            format!("{field} must be a JSON object of strings"),
        )]);
    };
    if map.len() > MAX_RULE_LABELS {
        return Err(vec![FieldError::new(
            field,
            format!(
                "at most {MAX_RULE_LABELS} labels are allowed, got {}",
                map.len()
            ),
        )]);
    }
    let mut errors = Vec::new();
    let mut out = BTreeMap::new();
    for (name, value) in map {
        let path = format!("{field}.{}", clip(name));
        if let Err(message) = check_label_name(name) {
            errors.push(FieldError::new(path, message));
            continue;
        }
        if RESERVED_LABELS.contains(&name.as_str()) {
            errors.push(FieldError::new(
                path,
                format!("`{name}` is set by Sightline itself and cannot be a rule label"),
            ));
            continue;
        }
        let Value::String(value) = value else {
            errors.push(FieldError::new(path, "label values must be strings"));
            continue;
        };
        if let Err(message) = check_label_value(value) {
            errors.push(FieldError::new(path, message));
            continue;
        }
        out.insert(name.clone(), value.clone());
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A label name: letters, digits and `_`, not starting with a digit, 1–128 characters.
pub fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "invalid label name `{}`: use letters, digits and `_`, not starting with a digit",
            clip(name)
        ));
    }
    if name.len() > MAX_LABEL_NAME_CHARS {
        return Err(format!(
            "label names must be at most {MAX_LABEL_NAME_CHARS} characters"
        ));
    }
    Ok(())
}

/// A label value: at most 1,024 characters, no NUL.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.chars().count() > MAX_LABEL_VALUE_CHARS {
        return Err(format!(
            "label values must be at most {MAX_LABEL_VALUE_CHARS} characters"
        ));
    }
    if has_nul(value) {
        return Err("label values must not contain NUL characters".to_owned());
    }
    Ok(())
}

fn check_seconds(field: &str, value: i64, min: i64, max: i64, errors: &mut Vec<FieldError>) -> i64 {
    if value < min || value > max {
        errors.push(FieldError::new(
            field,
            format!("{field} must be between {min} and {max} seconds, got {value}"),
        ));
    }
    value
}

impl RuleDraft {
    /// Validates every field, collecting all errors.
    pub fn validate(self) -> Result<RuleSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = self.name.trim().to_owned();
        let name_len = name.chars().count();
        if name.is_empty() {
            errors.push(FieldError::new("name", "name is required"));
        } else if name_len > MAX_NAME_CHARS {
            errors.push(FieldError::new(
                "name",
                format!("name must be at most {MAX_NAME_CHARS} characters, got {name_len}"),
            ));
        } else if has_nul(&name) {
            errors.push(FieldError::new(
                "name",
                "name must not contain NUL characters",
            ));
        }
        let description = optional_text(
            "description",
            self.description,
            MAX_DESCRIPTION_CHARS,
            &mut errors,
        );
        let query = self.query.trim().to_owned();
        let expr = match compile_condition(&query, self.threshold) {
            Ok(expr) => Some(expr),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let for_secs = check_seconds("for", self.for_secs, 0, MAX_DURATION_SECS, &mut errors);
        let keep_firing_for_secs = check_seconds(
            "keepFiringFor",
            self.keep_firing_for_secs,
            0,
            MAX_DURATION_SECS,
            &mut errors,
        );
        let evaluation_interval_secs = check_seconds(
            "evaluationInterval",
            self.evaluation_interval_secs,
            1,
            MAX_INTERVAL_SECS,
            &mut errors,
        );
        let labels = match validate_labels("labels", &self.labels) {
            Ok(labels) => labels,
            Err(e) => {
                errors.extend(e);
                BTreeMap::new()
            }
        };
        let annotations = Annotations {
            summary: optional_text(
                "annotations.summary",
                self.annotations.summary,
                MAX_SUMMARY_CHARS,
                &mut errors,
            ),
            description: optional_text(
                "annotations.description",
                self.annotations.description,
                MAX_DESCRIPTION_CHARS,
                &mut errors,
            ),
            runbook_url: optional_text(
                "annotations.runbookUrl",
                self.annotations.runbook_url,
                MAX_URL_CHARS,
                &mut errors,
            ),
        };
        if let Some(url) = &annotations.runbook_url {
            let lower = url.trim().to_ascii_lowercase();
            let valid = (lower.starts_with("http://") || lower.starts_with("https://"))
                && !url.chars().any(char::is_whitespace)
                && url.len() > "https://".len();
            if !valid {
                errors.push(FieldError::new(
                    "annotations.runbookUrl",
                    "runbookUrl must be an http:// or https:// URL without spaces",
                ));
            }
        }
        let incident_severity = if self.create_incident {
            Some(
                self.incident_severity
                    .unwrap_or_else(|| self.severity.default_incident_severity()),
            )
        } else {
            if self.incident_severity.is_some() {
                errors.push(FieldError::new(
                    "incidentSeverity",
                    "incidentSeverity needs createIncident: true",
                ));
            }
            None
        };
        match expr {
            Some(expr) if errors.is_empty() => Ok(RuleSpec {
                name,
                description,
                query,
                expr,
                threshold: self.threshold,
                for_secs,
                keep_firing_for_secs,
                severity: self.severity,
                labels,
                annotations,
                enabled: self.enabled,
                evaluation_interval_secs,
                create_incident: self.create_incident,
                incident_severity,
            }),
            _ => Err(errors),
        }
    }
}

/// Where a silence stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SilenceState {
    /// It has not started yet.
    Pending,
    /// It silences matching alerts now.
    Active,
    /// It has ended (or was expired early).
    Expired,
}

impl SilenceState {
    /// The state of a silence spanning `[starts_at, ends_at)` at `now`.
    pub fn at(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        if ends_at <= now {
            SilenceState::Expired
        } else if starts_at > now {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }
}

/// One stored silence matcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMatcher {
    /// Label name.
    pub label: String,
    /// Operator.
    pub op: MatchOp,
    /// String or regex.
    pub value: String,
}

/// Compiles stored matchers; malformed ones (which validation never writes)
/// are skipped.
pub fn stored_matchers(json: &Value) -> Vec<Matcher> {
    let parsed: Vec<StoredMatcher> = serde_json::from_value(json.clone()).unwrap_or_default();
    parsed
        .iter()
        .filter_map(|m| Matcher::new(&m.label, m.op, &m.value).ok())
        .collect()
}

/// A silence as a client describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SilenceDraft {
    /// `(label, op, value)` triples.
    pub matchers: Vec<(String, MatchOp, String)>,
    /// Start; now when absent.
    pub starts_at: Option<DateTime<Utc>>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// Why (required).
    pub comment: String,
}

/// A silence that passed validation.
#[derive(Debug, Clone)]
pub struct SilenceSpec {
    /// Compiled matchers.
    pub matchers: Vec<Matcher>,
    /// Start, at stored precision.
    pub starts_at: DateTime<Utc>,
    /// End, at stored precision.
    pub ends_at: DateTime<Utc>,
    /// Trimmed comment.
    pub comment: String,
}

impl SilenceSpec {
    /// The stored JSON of the matchers.
    pub fn matchers_json(&self) -> Value {
        let stored: Vec<StoredMatcher> = self
            .matchers
            .iter()
            .map(|m| StoredMatcher {
                label: m.label.clone(),
                op: m.op,
                value: m.value.clone(),
            })
            .collect();
        serde_json::to_value(stored).unwrap_or_else(|_| Value::Array(Vec::new()))
    }
}

impl SilenceDraft {
    /// Validates every field against `now`, collecting all errors.
    pub fn validate(self, now: DateTime<Utc>) -> Result<SilenceSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut matchers = Vec::new();
        if self.matchers.is_empty() {
            errors.push(FieldError::new(
                "matchers",
                "a silence needs at least one matcher",
            ));
        } else if self.matchers.len() > MAX_SILENCE_MATCHERS {
            errors.push(FieldError::new(
                "matchers",
                format!(
                    "at most {MAX_SILENCE_MATCHERS} matchers are allowed, got {}",
                    self.matchers.len()
                ),
            ));
        } else {
            for (i, (label, op, value)) in self.matchers.iter().enumerate() {
                let field = format!("matchers[{i}]");
                if let Err(message) = check_label_name(label) {
                    errors.push(FieldError::new(format!("{field}.label"), message));
                    continue;
                }
                if let Err(message) = check_label_value(value) {
                    errors.push(FieldError::new(format!("{field}.value"), message));
                    continue;
                }
                match Matcher::new(label, *op, value) {
                    Ok(m) => matchers.push(m),
                    Err(message) => errors.push(FieldError::new(format!("{field}.value"), message)),
                }
            }
            if errors.is_empty() && matchers.iter().all(|m| m.matches(Some(""))) {
                errors.push(FieldError::new(
                    "matchers",
                    "at least one matcher must not match the empty string, so that a silence \
                     cannot silence every alert",
                ));
            }
        }
        let comment = self.comment.trim().to_owned();
        let comment_len = comment.chars().count();
        if comment.is_empty() {
            errors.push(FieldError::new("comment", "comment is required"));
        } else if comment_len > MAX_COMMENT_CHARS {
            errors.push(FieldError::new(
                "comment",
                format!(
                    "comment must be at most {MAX_COMMENT_CHARS} characters, got {comment_len}"
                ),
            ));
        } else if has_nul(&comment) {
            errors.push(FieldError::new(
                "comment",
                "comment must not contain NUL characters",
            ));
        }
        let starts_at = util::to_stored_precision(self.starts_at.unwrap_or(now));
        let ends_at = util::to_stored_precision(self.ends_at);
        let latest = now + Duration::seconds(MAX_SILENCE_SECS);
        if starts_at > latest {
            errors.push(FieldError::new(
                "startsAt",
                "startsAt must be within 10 years from now",
            ));
        }
        if ends_at <= starts_at {
            errors.push(FieldError::new("endsAt", "endsAt must be after startsAt"));
        } else if ends_at <= now {
            errors.push(FieldError::new("endsAt", "endsAt must be in the future"));
        } else if ends_at > latest {
            errors.push(FieldError::new(
                "endsAt",
                "endsAt must be within 10 years from now",
            ));
        }
        if errors.is_empty() {
            Ok(SilenceSpec {
                matchers,
                starts_at,
                ends_at,
                comment,
            })
        } else {
            Err(errors)
        }
    }
}

/// Validates an acknowledgement comment (optional; blank becomes none).
pub fn validate_ack_comment(comment: Option<String>) -> Result<Option<String>, FieldError> {
    let mut errors = Vec::new();
    let comment = optional_text("comment", comment, MAX_COMMENT_CHARS, &mut errors);
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(comment.map(|c| c.trim().to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    fn draft() -> RuleDraft {
        RuleDraft::new("High CPU", "cpu_usage > 80")
    }

    #[test]
    fn a_minimal_rule_gets_the_documented_defaults() {
        let spec = draft().validate().unwrap();
        assert_eq!(spec.name, "High CPU");
        assert_eq!(spec.for_secs, 0);
        assert_eq!(spec.keep_firing_for_secs, 0);
        assert_eq!(spec.evaluation_interval_secs, 30);
        assert_eq!(spec.severity, Severity::Warning);
        assert!(spec.enabled);
        assert_eq!(spec.incident_severity, None);
        assert_eq!(spec.expr.to_string(), "cpu_usage > 80");
    }

    #[test]
    fn a_threshold_supplies_the_condition_of_a_bare_query() {
        let mut d = draft();
        d.query = "cpu_usage".into();
        d.threshold = Some(80.0);
        assert_eq!(d.validate().unwrap().expr.to_string(), "cpu_usage > 80");
    }

    #[test]
    fn the_query_s_own_comparison_wins_over_the_threshold() {
        let mut d = draft();
        d.query = "cpu_usage < 5".into();
        d.threshold = Some(80.0);
        assert_eq!(d.validate().unwrap().expr.to_string(), "cpu_usage < 5");
    }

    #[test]
    fn a_rule_without_any_condition_is_rejected() {
        let mut d = draft();
        d.query = "cpu_usage".into();
        let e = d.validate().unwrap_err();
        assert_eq!(fields(e.clone()), ["query"]);
        assert!(
            e[0].message.contains("needs a condition"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn query_errors_name_the_position() {
        let mut d = draft();
        d.query = "avg(cpu_usage) > 5".into();
        let e = d.validate().unwrap_err();
        assert_eq!(e[0].field, "query");
        assert!(
            e[0].message.starts_with("at position 13: "),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn durations_outside_their_bounds_are_rejected() {
        let mut d = draft();
        d.for_secs = -1;
        d.keep_firing_for_secs = MAX_DURATION_SECS + 1;
        d.evaluation_interval_secs = 0;
        assert_eq!(
            fields(d.validate().unwrap_err()),
            ["for", "keepFiringFor", "evaluationInterval"]
        );
        let mut d = draft();
        d.evaluation_interval_secs = 1;
        assert!(d.validate().is_ok(), "one second is the minimum interval");
    }

    #[test]
    fn names_are_trimmed_required_and_bounded() {
        let mut d = draft();
        d.name = "   ".into();
        assert_eq!(fields(d.validate().unwrap_err()), ["name"]);
        let mut d = draft();
        d.name = "x".repeat(201);
        assert_eq!(fields(d.validate().unwrap_err()), ["name"]);
        let mut d = draft();
        d.name = "a\0b".into();
        assert_eq!(fields(d.validate().unwrap_err()), ["name"]);
        let mut d = draft();
        d.name = "  padded ".into();
        assert_eq!(d.validate().unwrap().name, "padded");
    }

    #[test]
    fn labels_must_be_an_object_of_strings_with_valid_unreserved_names() {
        let mut d = draft();
        d.labels = json!(["a"]);
        assert_eq!(fields(d.validate().unwrap_err()), ["labels"]);
        let mut d = draft();
        d.labels = json!({"team": 5, "1bad": "x", "alertname": "x", "ok": "fine"});
        let mut got = fields(d.validate().unwrap_err());
        got.sort();
        assert_eq!(got, ["labels.1bad", "labels.alertname", "labels.team"]);
        let mut d = draft();
        d.labels = json!({"team": "core"});
        assert_eq!(d.validate().unwrap().labels["team"], "core");
    }

    #[test]
    fn runbook_urls_must_be_http() {
        let mut d = draft();
        d.annotations.runbook_url = Some("javascript:alert(1)".into());
        assert_eq!(
            fields(d.validate().unwrap_err()),
            ["annotations.runbookUrl"]
        );
        let mut d = draft();
        d.annotations.runbook_url = Some("https://wiki.example.com/cpu".into());
        assert!(d.validate().is_ok());
    }

    #[test]
    fn incident_severity_defaults_from_the_rule_severity_and_needs_create_incident() {
        let mut d = draft();
        d.create_incident = true;
        d.severity = Severity::Critical;
        assert_eq!(
            d.validate().unwrap().incident_severity,
            Some(IncidentSeverity::High)
        );
        let mut d = draft();
        d.incident_severity = Some(IncidentSeverity::Low);
        assert_eq!(fields(d.validate().unwrap_err()), ["incidentSeverity"]);
    }

    #[test]
    fn every_rule_problem_is_reported_at_once() {
        let mut d = draft();
        d.name = String::new();
        d.query = "cpu >".into();
        d.for_secs = -5;
        assert_eq!(fields(d.validate().unwrap_err()), ["name", "query", "for"]);
    }

    #[test]
    fn severities_parse_case_insensitively_and_map_to_event_levels() {
        assert_eq!("CRITICAL".parse::<Severity>().unwrap(), Severity::Critical);
        assert!("urgent".parse::<Severity>().is_err());
        assert_eq!(Severity::Info.event_level(), "info");
        assert_eq!(Severity::Warning.event_level(), "warn");
        assert_eq!(Severity::Critical.event_level(), "error");
    }

    fn silence(matchers: Vec<(&str, MatchOp, &str)>, ends_in: i64) -> SilenceDraft {
        SilenceDraft {
            matchers: matchers
                .into_iter()
                .map(|(l, o, v)| (l.to_owned(), o, v.to_owned()))
                .collect(),
            starts_at: None,
            ends_at: util::now() + Duration::seconds(ends_in),
            comment: "maintenance".into(),
        }
    }

    #[test]
    fn a_silence_needs_matchers_a_comment_and_a_future_end() {
        let now = util::now();
        let mut s = silence(vec![], -10);
        s.comment = " ".into();
        assert_eq!(
            fields(s.validate(now).unwrap_err()),
            ["matchers", "comment", "endsAt"]
        );
        let ok = silence(vec![("host", MatchOp::Eq, "a")], 3600)
            .validate(now)
            .unwrap();
        assert_eq!(ok.starts_at, now);
        assert_eq!(ok.comment, "maintenance");
    }

    #[test]
    fn a_silence_that_would_match_everything_is_rejected() {
        let now = util::now();
        let s = silence(
            vec![("host", MatchOp::Re, ".*"), ("env", MatchOp::Ne, "prod")],
            60,
        );
        assert_eq!(fields(s.validate(now).unwrap_err()), ["matchers"]);
        let s = silence(vec![("host", MatchOp::Re, ".+")], 60);
        assert!(s.validate(now).is_ok());
    }

    #[test]
    fn silence_matchers_are_checked_one_by_one() {
        let now = util::now();
        let s = silence(
            vec![
                ("host", MatchOp::Eq, "a"),
                ("bad-name", MatchOp::Eq, "x"),
                ("env", MatchOp::Re, "(prod"),
            ],
            60,
        );
        assert_eq!(
            fields(s.validate(now).unwrap_err()),
            ["matchers[1].label", "matchers[2].value"]
        );
    }

    #[test]
    fn a_silence_must_end_after_it_starts() {
        let now = util::now();
        let mut s = silence(vec![("host", MatchOp::Eq, "a")], 60);
        s.starts_at = Some(now + Duration::seconds(120));
        assert_eq!(fields(s.validate(now).unwrap_err()), ["endsAt"]);
    }

    #[test]
    fn silence_states_follow_the_clock() {
        let now = util::now();
        let s = now - Duration::seconds(10);
        let e = now + Duration::seconds(10);
        assert_eq!(SilenceState::at(s, e, now), SilenceState::Active);
        assert_eq!(
            SilenceState::at(e, e + Duration::seconds(1), now),
            SilenceState::Pending
        );
        assert_eq!(SilenceState::at(s, now, now), SilenceState::Expired);
    }

    #[test]
    fn stored_matchers_round_trip() {
        let now = util::now();
        let spec = silence(
            vec![("host", MatchOp::Re, "a|b"), ("env", MatchOp::Nre, "dev")],
            60,
        )
        .validate(now)
        .unwrap();
        let json = spec.matchers_json();
        assert_eq!(
            json[0],
            json!({"label": "host", "op": "re", "value": "a|b"})
        );
        assert_eq!(stored_matchers(&json), spec.matchers);
    }

    #[test]
    fn acknowledgement_comments_are_optional_and_bounded() {
        assert_eq!(validate_ack_comment(None).unwrap(), None);
        assert_eq!(validate_ack_comment(Some("  ".into())).unwrap(), None);
        assert_eq!(
            validate_ack_comment(Some(" on it ".into())).unwrap(),
            Some("on it".into())
        );
        assert!(validate_ack_comment(Some("x".repeat(2001))).is_err());
        assert!(validate_ack_comment(Some("a\0".into())).is_err());
    }
}
