//! The event filter: one definition of what "matches" means, used both to
//! build SQL for `events` queries and to filter the live `eventCreated`
//! stream, so the two can never disagree (tests check the SQL against
//! [`EventFilter::matches`] on both backends).
//!
//! Semantics: every given criterion must hold (AND); within a list, any
//! entry may match (OR); an empty or omitted list does not restrict.
//! - `event_types`, `sources` (exact, case-sensitive), `levels`;
//!   `min_level` keeps that level and the more severe ones. Events without
//!   a level never match a level criterion.
//! - `from` ≤ timestamp < `to`.
//! - `tags`: each [`TagMatch`] must hold: the tag exists and equals one of
//!   its values *with the same JSON type* (the string `"200"` does not
//!   match the number `200`; numbers compare by value, so `1` matches `1.0`).
//!   PostgreSQL uses JSONB containment (`tags @> '{"k": v}'`, served by the
//!   GIN index); SQLite looks the key up with `json_each`, so keys need no
//!   JSON-path quoting and every key and value is a bound parameter.
//! - `text`: the message contains it, ignoring ASCII case (other characters
//!   compare exactly, identically on both backends); `%`, `_` and `\` are
//!   escaped, not wildcards.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, DbBackend};
use serde_json::{Number, Value};

use super::entity::{self, Column};
use super::model::{EventType, Level, MAX_SOURCE_CHARS, MAX_TAG_KEY_CHARS};
use crate::error::{AppError, AppResult};

/// Most sources, types or levels in one filter list.
pub const MAX_LIST: usize = 100;
/// Most tag matches in one filter.
pub const MAX_TAG_MATCHES: usize = 20;
/// Longest string tag value in a filter.
pub const MAX_TAG_VALUE_CHARS: usize = 1024;
/// Longest `text` filter.
pub const MAX_TEXT_CHARS: usize = 1000;

/// A tag value to compare with, by type.
#[derive(Debug, Clone, PartialEq)]
pub enum TagValue {
    /// A JSON string.
    String(String),
    /// A JSON number.
    Number(Number),
    /// A JSON boolean.
    Bool(bool),
}

impl TagValue {
    /// The value from JSON; `None` for null, arrays and objects.
    pub fn from_json(v: &Value) -> Option<TagValue> {
        match v {
            Value::String(s) => Some(TagValue::String(s.clone())),
            Value::Number(n) => Some(TagValue::Number(n.clone())),
            Value::Bool(b) => Some(TagValue::Bool(*b)),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            TagValue::String(s) => Value::String(s.clone()),
            TagValue::Number(n) => Value::Number(n.clone()),
            TagValue::Bool(b) => Value::Bool(*b),
        }
    }

    /// Whether a stored tag value equals this one, type included.
    pub fn matches(&self, stored: &Value) -> bool {
        match (self, stored) {
            (TagValue::String(a), Value::String(b)) => a == b,
            (TagValue::Bool(a), Value::Bool(b)) => a == b,
            (TagValue::Number(a), Value::Number(b)) => numbers_equal(a, b),
            _ => false,
        }
    }
}

fn numbers_equal(a: &Number, b: &Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// One tag criterion: the tag `key` equals any of `values`.
#[derive(Debug, Clone, PartialEq)]
pub struct TagMatch {
    /// The tag key (any string).
    pub key: String,
    /// Accepted values (at least one).
    pub values: Vec<TagValue>,
}

impl TagMatch {
    /// A criterion with one typed value.
    pub fn new(key: impl Into<String>, value: TagValue) -> Self {
        TagMatch {
            key: key.into(),
            values: vec![value],
        }
    }

    fn matches(&self, tags: &Value) -> bool {
        tags.get(&self.key)
            .is_some_and(|stored| self.values.iter().any(|v| v.matches(stored)))
    }
}

/// Which events to return or stream. Build it, then [`EventFilter::validate`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Any of these types.
    pub event_types: Vec<EventType>,
    /// Any of these sources.
    pub sources: Vec<String>,
    /// Any of these levels.
    pub levels: Vec<Level>,
    /// This level or more severe.
    pub min_level: Option<Level>,
    /// Timestamp at or after.
    pub from: Option<DateTime<Utc>>,
    /// Timestamp before.
    pub to: Option<DateTime<Utc>>,
    /// All of these tag criteria.
    pub tags: Vec<TagMatch>,
    /// Message contains this (ASCII case ignored).
    pub text: Option<String>,
}

fn bad(field: &str, message: impl Into<String>) -> AppError {
    AppError::bad_input(format!("filter.{field}"), message)
}

impl EventFilter {
    /// Checks sizes and contents; every problem is `BAD_USER_INPUT` naming
    /// the field (`filter.sources`, ...).
    pub fn validate(self) -> AppResult<EventFilter> {
        for (field, len) in [
            ("eventTypes", self.event_types.len()),
            ("sources", self.sources.len()),
            ("levels", self.levels.len()),
        ] {
            if len > MAX_LIST {
                return Err(bad(
                    field,
                    format!("at most {MAX_LIST} entries are allowed, got {len}"),
                ));
            }
        }
        for s in &self.sources {
            if s.chars().count() > MAX_SOURCE_CHARS || s.contains('\0') {
                return Err(bad(
                    "sources",
                    format!("sources are at most {MAX_SOURCE_CHARS} characters, without NUL"),
                ));
            }
        }
        if let (Some(from), Some(to)) = (self.from, self.to)
            && to < from
        {
            return Err(bad("to", "to must not be before from"));
        }
        if self.tags.len() > MAX_TAG_MATCHES {
            return Err(bad(
                "tags",
                format!(
                    "at most {MAX_TAG_MATCHES} tag matches are allowed, got {}",
                    self.tags.len()
                ),
            ));
        }
        for m in &self.tags {
            if m.key.is_empty() || m.key.chars().count() > MAX_TAG_KEY_CHARS || m.key.contains('\0')
            {
                return Err(bad(
                    "tags",
                    format!("tag keys are 1 to {MAX_TAG_KEY_CHARS} characters, without NUL"),
                ));
            }
            if m.values.is_empty() {
                return Err(bad("tags", "a tag match needs a value"));
            }
            for v in &m.values {
                match v {
                    TagValue::String(s)
                        if s.chars().count() > MAX_TAG_VALUE_CHARS || s.contains('\0') =>
                    {
                        return Err(bad(
                            "tags",
                            format!(
                                "tag values are at most {MAX_TAG_VALUE_CHARS} characters, without NUL"
                            ),
                        ));
                    }
                    TagValue::Number(n) if !n.as_f64().is_some_and(f64::is_finite) => {
                        return Err(bad("tags", "tag values must be finite numbers"));
                    }
                    _ => {}
                }
            }
        }
        if let Some(t) = &self.text
            && (t.chars().count() > MAX_TEXT_CHARS || t.contains('\0'))
        {
            return Err(bad(
                "text",
                format!("text is at most {MAX_TEXT_CHARS} characters, without NUL"),
            ));
        }
        Ok(self)
    }

    /// The levels an event may have, or `None` when levels do not restrict.
    pub fn allowed_levels(&self) -> Option<Vec<Level>> {
        match (self.levels.is_empty(), self.min_level) {
            (true, None) => None,
            (true, Some(min)) => Some(min.and_above()),
            (false, None) => Some(self.levels.clone()),
            (false, Some(min)) => Some(self.levels.iter().copied().filter(|l| *l >= min).collect()),
        }
    }

    /// Whether a stored event matches: the reference the SQL must agree with.
    pub fn matches(&self, e: &entity::Model) -> bool {
        if !self.event_types.is_empty()
            && !self.event_types.iter().any(|t| t.as_str() == e.event_type)
        {
            return false;
        }
        if !self.sources.is_empty() && !self.sources.contains(&e.source) {
            return false;
        }
        if let Some(levels) = self.allowed_levels() {
            let Some(level) = e.level.as_deref() else {
                return false;
            };
            if !levels.iter().any(|l| l.as_str() == level) {
                return false;
            }
        }
        if self.from.is_some_and(|from| e.timestamp < from) {
            return false;
        }
        if self.to.is_some_and(|to| e.timestamp >= to) {
            return false;
        }
        if !self.tags.iter().all(|m| m.matches(&e.tags)) {
            return false;
        }
        if let Some(text) = &self.text {
            let Some(message) = &e.message else {
                return false;
            };
            if !message
                .to_ascii_lowercase()
                .contains(&text.to_ascii_lowercase())
            {
                return false;
            }
        }
        true
    }

    /// The filter as a SQL condition on `events` for the backend.
    pub fn condition(&self, backend: DbBackend) -> Condition {
        let mut cond = Condition::all();
        match self.event_types.as_slice() {
            [] => {}
            [one] => cond = cond.add(Column::EventType.eq(one.as_str())),
            many => cond = cond.add(Column::EventType.is_in(many.iter().map(|t| t.as_str()))),
        }
        match self.sources.as_slice() {
            [] => {}
            [one] => cond = cond.add(Column::Source.eq(one.as_str())),
            many => cond = cond.add(Column::Source.is_in(many.iter().map(String::as_str))),
        }
        if let Some(levels) = self.allowed_levels() {
            cond = match levels.as_slice() {
                [one] => cond.add(Column::Level.eq(one.as_str())),
                many => cond.add(Column::Level.is_in(many.iter().map(|l| l.as_str()))),
            };
        }
        if let Some(from) = self.from {
            cond = cond.add(Column::Timestamp.gte(from));
        }
        if let Some(to) = self.to {
            cond = cond.add(Column::Timestamp.lt(to));
        }
        for m in &self.tags {
            cond = cond.add(tag_condition(backend, m));
        }
        if let Some(text) = &self.text {
            cond = cond.add(text_condition(backend, text));
        }
        cond
    }
}

fn tag_condition(backend: DbBackend, m: &TagMatch) -> Condition {
    let mut any = Condition::any();
    for value in &m.values {
        let expr = match backend {
            DbBackend::Postgres => {
                let mut object = serde_json::Map::new();
                object.insert(m.key.clone(), value.to_json());
                Expr::cust_with_values(
                    r#""events"."tags" @> $1::jsonb"#,
                    [Value::Object(object).to_string()],
                )
            }
            _ => {
                let key = sea_orm::Value::from(m.key.clone());
                let lookup =
                    r#"EXISTS (SELECT 1 FROM json_each("events"."tags") AS t WHERE t.key = ?"#;
                match value {
                    TagValue::String(s) => Expr::cust_with_values(
                        format!("{lookup} AND t.type = 'text' AND t.value = ?)"),
                        [key, sea_orm::Value::from(s.clone())],
                    ),
                    TagValue::Bool(b) => {
                        Expr::cust_with_values(format!("{lookup} AND t.type = '{b}')"), [key])
                    }
                    TagValue::Number(n) => {
                        let bound = match (n.as_i64(), n.as_f64()) {
                            (Some(i), _) => sea_orm::Value::from(i),
                            (None, Some(f)) => sea_orm::Value::from(f),
                            (None, None) => sea_orm::Value::from(f64::NAN),
                        };
                        Expr::cust_with_values(
                            format!("{lookup} AND t.type IN ('integer', 'real') AND t.value = ?)"),
                            [key, bound],
                        )
                    }
                }
            }
        };
        any = any.add(expr);
    }
    any
}

/// Escapes `%`, `_` and `\` for `LIKE ... ESCAPE '\'`.
pub fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn text_condition(backend: DbBackend, text: &str) -> Condition {
    let pattern = format!("%{}%", escape_like(&text.to_ascii_lowercase()));
    let expr = match backend {
        // `lower` under the C collation folds ASCII only, like SQLite's LIKE.
        DbBackend::Postgres => Expr::cust_with_values(
            r#"lower("events"."message" COLLATE "C") LIKE $1 ESCAPE '\'"#,
            [pattern],
        ),
        _ => Expr::cust_with_values(r#""events"."message" LIKE ? ESCAPE '\'"#, [pattern]),
    };
    Condition::all().add(expr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(tags: Value, message: Option<&str>, level: Option<&str>) -> entity::Model {
        let now = crate::util::now();
        entity::Model {
            id: uuid::Uuid::now_v7(),
            event_type: "log".into(),
            source: "api".into(),
            message: message.map(str::to_owned),
            level: level.map(str::to_owned),
            tags,
            payload: json!({}),
            timestamp: now,
            received_at: now,
            created_by: None,
            api_key_id: None,
            fingerprint: None,
        }
    }

    fn tag(key: &str, v: Value) -> EventFilter {
        EventFilter {
            tags: vec![TagMatch::new(key, TagValue::from_json(&v).unwrap())],
            ..Default::default()
        }
    }

    #[test]
    fn tag_values_match_only_their_own_json_type() {
        let e = event(
            json!({"status": 200, "ok": true, "code": "200"}),
            None,
            None,
        );
        assert!(tag("status", json!(200)).matches(&e));
        assert!(tag("status", json!(200.0)).matches(&e));
        assert!(!tag("status", json!("200")).matches(&e));
        assert!(tag("code", json!("200")).matches(&e));
        assert!(!tag("code", json!(200)).matches(&e));
        assert!(tag("ok", json!(true)).matches(&e));
        assert!(!tag("ok", json!("true")).matches(&e));
        assert!(!tag("missing", json!("x")).matches(&e));
    }

    #[test]
    fn every_tag_match_must_hold_and_any_listed_value_may() {
        let e = event(json!({"a": "1", "b": "2"}), None, None);
        let mut f = tag("a", json!("1"));
        f.tags
            .push(TagMatch::new("b", TagValue::String("3".into())));
        assert!(!f.matches(&e));
        f.tags[1].values.push(TagValue::String("2".into()));
        assert!(f.matches(&e));
    }

    #[test]
    fn text_matches_substrings_ignoring_ascii_case_only() {
        let e = event(json!({}), Some("Disk FULL on /var (100%)"), None);
        let text = |t: &str| EventFilter {
            text: Some(t.into()),
            ..Default::default()
        };
        assert!(text("full on").matches(&e));
        assert!(text("100%").matches(&e));
        assert!(!text("nothing").matches(&e));
        let accented = event(json!({}), Some("Étape"), None);
        assert!(text("Étape").matches(&accented));
        assert!(!text("étape").matches(&accented));
        assert!(!text("x").matches(&event(json!({}), None, None)));
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
    }

    #[test]
    fn min_level_and_levels_intersect_and_unlevelled_events_never_match() {
        let f = EventFilter {
            levels: vec![Level::Info, Level::Error],
            min_level: Some(Level::Warn),
            ..Default::default()
        };
        assert_eq!(f.allowed_levels(), Some(vec![Level::Error]));
        assert!(f.matches(&event(json!({}), None, Some("error"))));
        assert!(!f.matches(&event(json!({}), None, Some("info"))));
        assert!(!f.matches(&event(json!({}), None, None)));
    }

    #[test]
    fn the_time_range_includes_from_and_excludes_to() {
        let e = event(json!({}), None, None);
        let f = EventFilter {
            from: Some(e.timestamp),
            to: Some(e.timestamp + chrono::Duration::microseconds(1)),
            ..Default::default()
        };
        assert!(f.matches(&e));
        let f = EventFilter {
            to: Some(e.timestamp),
            ..Default::default()
        };
        assert!(!f.matches(&e));
    }

    #[test]
    fn filters_with_oversized_or_inconsistent_parts_are_rejected() {
        let now = crate::util::now();
        let field = |f: EventFilter| f.validate().unwrap_err().field.unwrap();
        assert_eq!(
            field(EventFilter {
                from: Some(now),
                to: Some(now - chrono::Duration::seconds(1)),
                ..Default::default()
            }),
            "filter.to"
        );
        assert_eq!(
            field(EventFilter {
                sources: vec!["a".into(); MAX_LIST + 1],
                ..Default::default()
            }),
            "filter.sources"
        );
        assert_eq!(
            field(EventFilter {
                text: Some("\0".into()),
                ..Default::default()
            }),
            "filter.text"
        );
        assert_eq!(field(tag("", json!("x"))), "filter.tags");
        assert!(
            tag("k\"'); DROP TABLE events; --", json!("x"))
                .validate()
                .is_ok()
        );
    }
}
