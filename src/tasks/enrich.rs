//! Event enrichment rules, pure so each can be tested on its own: the level
//! an event should have, the fingerprint that groups repeats of one issue,
//! and the correlation ids lifted from the payload into tags.
//!
//! The fingerprint is the hex SHA-256 of source, level and the message with
//! its variable parts masked: UUIDs, hex strings (`0x1f`, commit hashes,
//! object ids), numbers (with units or decimals), quoted strings, email
//! addresses and long opaque tokens become placeholders, so
//! `"user 42 timed out after 3.5s"` and `"user 7 timed out after 10s"` are
//! one issue while `"disk full"` is another.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::events::Level;
use crate::events::model::MAX_TAGS;

/// Longest correlation id lifted into a tag.
pub const MAX_CORRELATION_CHARS: usize = 200;

static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b")
        .expect("uuid pattern")
});
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").expect("email pattern")
});
static QUOTED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#""[^"]*"|'[^'\s]*'"#).expect("quoted pattern"));
static HEX: LazyLock<Regex> = LazyLock::new(|| {
    // 0x-prefixed, or 8+ hex digits that include at least one digit (so
    // words such as "deadbeef" or "accepted" are not taken for ids unless
    // they contain a digit).
    Regex::new(r"(?i)\b0x[0-9a-f]+\b|\b[0-9a-f]*[0-9][0-9a-f]*\b").expect("hex pattern")
});
static TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    // Long mixed letter-and-digit tokens (request ids, base64 keys).
    Regex::new(r"\b[A-Za-z0-9_\-]*[0-9][A-Za-z0-9_\-]*[A-Za-z][A-Za-z0-9_\-]*\b|\b[A-Za-z0-9_\-]*[A-Za-z][A-Za-z0-9_\-]*[0-9][A-Za-z0-9_\-]*\b")
        .expect("token pattern")
});
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d+(?:[.,]\d+)*").expect("number pattern"));
static SPACES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").expect("space pattern"));

/// The message with its variable parts replaced by placeholders and runs of
/// white space collapsed.
pub fn mask_message(message: &str) -> String {
    let s = UUID.replace_all(message, "<uuid>");
    let s = EMAIL.replace_all(&s, "<email>");
    let s = QUOTED.replace_all(&s, "<str>");
    let s = HEX.replace_all(&s, |caps: &regex::Captures<'_>| {
        let m = &caps[0];
        // A plain number is left for the number rule below.
        if m.len() >= 8 || m.starts_with("0x") || m.starts_with("0X") {
            if m.chars().all(|c| c.is_ascii_digit()) {
                m.to_owned()
            } else {
                "<hex>".to_owned()
            }
        } else {
            m.to_owned()
        }
    });
    let s = TOKEN.replace_all(&s, |caps: &regex::Captures<'_>| {
        let m = &caps[0];
        let digits = m.chars().filter(|c| c.is_ascii_digit()).count();
        // "http2", "v1", "ipv6" stay; ids with several digits go.
        if digits >= 3 || m.len() >= 16 {
            "<id>".to_owned()
        } else {
            m.to_owned()
        }
    });
    let s = NUMBER.replace_all(&s, "<n>");
    SPACES.replace_all(s.trim(), " ").into_owned()
}

/// The grouping fingerprint of an event: hex SHA-256 of source, level and
/// masked message (64 characters, the width of `events.fingerprint`).
pub fn fingerprint(source: &str, level: Option<Level>, message: Option<&str>) -> String {
    let masked = message.map(mask_message).unwrap_or_default();
    let level = level.map(|l| l.as_str()).unwrap_or("");
    crate::util::sha256_hex(&format!("{source}\u{1f}{level}\u{1f}{masked}"))
}

/// Reads a level name leniently: ours, `warning`, and the syslog and
/// logging-library names (`err`, `crit`, `critical`, `emerg`, `alert`,
/// `panic`, `notice`, `informational`, `verbose`), or a syslog severity
/// number 0–7.
pub fn lenient_level(value: &Value) -> Option<Level> {
    match value {
        Value::String(s) => {
            let lower = s.trim().to_ascii_lowercase();
            if let Ok(l) = lower.parse::<Level>() {
                return Some(l);
            }
            match lower.as_str() {
                "err" | "failure" | "severe" => Some(Level::Error),
                "crit" | "critical" | "emerg" | "emergency" | "alert" | "panic" => {
                    Some(Level::Fatal)
                }
                "notice" | "informational" | "information" | "log" => Some(Level::Info),
                "verbose" | "fine" => Some(Level::Debug),
                "finest" | "finer" => Some(Level::Trace),
                _ => None,
            }
        }
        // Syslog severities: 0 emerg .. 7 debug.
        Value::Number(n) => match n.as_u64()? {
            0..=2 => Some(Level::Fatal),
            3 => Some(Level::Error),
            4 => Some(Level::Warn),
            5 | 6 => Some(Level::Info),
            7 => Some(Level::Debug),
            _ => None,
        },
        _ => None,
    }
}

/// Payload keys that may carry an event's level when it was sent without one.
const LEVEL_KEYS: [&str; 5] = ["level", "severity", "log_level", "loglevel", "levelname"];

/// The level an event should have: its own, or one read from its payload
/// when it has none.
pub fn normalized_level(level: Option<&str>, payload: &Value) -> Option<Level> {
    if let Some(l) = level.and_then(|l| lenient_level(&Value::String(l.to_owned()))) {
        return Some(l);
    }
    let map = payload.as_object()?;
    LEVEL_KEYS
        .iter()
        .find_map(|k| map.get(*k).and_then(lenient_level))
}

/// Where correlation ids are looked for: the tag they become, and the
/// payload keys (top level, or inside a `context`, `trace` or `http` object)
/// that may hold them.
const CORRELATION: [(&str, &[&str]); 2] = [
    (
        "trace_id",
        &["trace_id", "traceId", "traceID", "trace-id", "trace"],
    ),
    (
        "request_id",
        &[
            "request_id",
            "requestId",
            "requestID",
            "request-id",
            "x-request-id",
            "x_request_id",
        ],
    ),
];

fn correlation_value(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => return None,
    };
    (!s.is_empty() && s.chars().count() <= MAX_CORRELATION_CHARS && !s.contains('\0')).then_some(s)
}

fn find_correlation(payload: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| payload.get(*k).and_then(correlation_value))
        .or_else(|| {
            ["context", "trace", "http", "meta", "metadata"]
                .iter()
                .filter_map(|outer| payload.get(*outer)?.as_object())
                .find_map(|inner| {
                    keys.iter()
                        .chain(["id"].iter().filter(|_| keys.contains(&"trace_id")))
                        .find_map(|k| inner.get(*k).and_then(correlation_value))
                })
        })
}

/// The tags with `trace_id` and `request_id` added from the payload, when
/// the payload has them and the tags do not already (a tag the client set
/// wins). `None` when nothing changes. The tag limit is respected.
pub fn correlation_tags(tags: &Value, payload: &Value) -> Option<Map<String, Value>> {
    let mut out = tags.as_object().cloned().unwrap_or_default();
    let payload = payload.as_object()?;
    let mut changed = false;
    for (tag, keys) in CORRELATION {
        if out.contains_key(tag) || out.len() >= MAX_TAGS {
            continue;
        }
        if let Some(v) = find_correlation(payload, keys) {
            out.insert(tag.to_owned(), Value::String(v));
            changed = true;
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_ids_and_uuids_are_masked() {
        assert_eq!(
            mask_message("user 42 timed out after 3.5s"),
            "user <n> timed out after <n>s"
        );
        assert_eq!(
            mask_message("order 0b6e4c1e-8d5f-4e43-9c1a-2f8c5a9d7e10 failed"),
            "order <uuid> failed"
        );
        assert_eq!(
            mask_message("commit 9fceb02d0ae598e95dc970b74767f19372d61af8 rejected"),
            "commit <hex> rejected"
        );
        assert_eq!(mask_message("bad pointer 0x7ffd5e8c"), "bad pointer <hex>");
        assert_eq!(
            mask_message("request req_8f3kd93kdl2 from bob@example.com"),
            "request <id> from <email>"
        );
    }

    #[test]
    fn repeats_of_one_issue_share_a_fingerprint() {
        let a = fingerprint(
            "api",
            Some(Level::Error),
            Some("user 42 not found in shard 3"),
        );
        let b = fingerprint(
            "api",
            Some(Level::Error),
            Some("user 9001 not found in shard 12"),
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn source_level_and_wording_separate_issues() {
        let base = fingerprint("api", Some(Level::Error), Some("disk full"));
        assert_ne!(
            base,
            fingerprint("db", Some(Level::Error), Some("disk full"))
        );
        assert_ne!(
            base,
            fingerprint("api", Some(Level::Warn), Some("disk full"))
        );
        assert_ne!(
            base,
            fingerprint("api", Some(Level::Error), Some("disk slow"))
        );
        assert_ne!(base, fingerprint("api", None, Some("disk full")));
    }

    #[test]
    fn ordinary_words_and_short_versions_are_kept() {
        assert_eq!(
            mask_message("accepted   decade  via http2 and v1 api"),
            "accepted decade via http2 and v1 api"
        );
    }

    #[test]
    fn quoted_values_are_masked() {
        assert_eq!(
            mask_message(r#"unknown field "colour" in 'cfg.yaml'"#),
            "unknown field <str> in <str>"
        );
    }

    #[test]
    fn a_missing_level_is_read_from_the_payload() {
        assert_eq!(
            normalized_level(None, &json!({"severity": "WARNING"})),
            Some(Level::Warn)
        );
        assert_eq!(
            normalized_level(None, &json!({"level": "crit"})),
            Some(Level::Fatal)
        );
        assert_eq!(
            normalized_level(None, &json!({"severity": 3})),
            Some(Level::Error)
        );
        assert_eq!(normalized_level(None, &json!({"other": "x"})), None);
        assert_eq!(
            normalized_level(Some("info"), &json!({"level": "error"})),
            Some(Level::Info)
        );
    }

    #[test]
    fn correlation_ids_move_from_payload_to_tags() {
        let tags = correlation_tags(
            &json!({"service": "api"}),
            &json!({"trace_id": "abc123", "requestId": 77}),
        )
        .unwrap();
        assert_eq!(tags["trace_id"], "abc123");
        assert_eq!(tags["request_id"], "77");
        assert_eq!(tags["service"], "api");
    }

    #[test]
    fn nested_trace_ids_are_found() {
        let tags = correlation_tags(&json!({}), &json!({"trace": {"id": "t-1"}})).unwrap();
        assert_eq!(tags["trace_id"], "t-1");
        let tags =
            correlation_tags(&json!({}), &json!({"context": {"request_id": "r-9"}})).unwrap();
        assert_eq!(tags["request_id"], "r-9");
    }

    #[test]
    fn a_tag_the_client_set_is_not_overwritten() {
        assert_eq!(
            correlation_tags(&json!({"trace_id": "mine"}), &json!({"trace_id": "other"})),
            None
        );
    }

    #[test]
    fn unusable_correlation_values_are_ignored() {
        assert_eq!(
            correlation_tags(&json!({}), &json!({"trace_id": {"nested": true}})),
            None
        );
        assert_eq!(
            correlation_tags(&json!({}), &json!({"trace_id": "x".repeat(500)})),
            None
        );
        assert_eq!(correlation_tags(&json!({}), &json!({"trace_id": ""})), None);
    }

    #[test]
    fn full_tag_sets_get_no_more_tags() {
        let mut full = Map::new();
        for i in 0..MAX_TAGS {
            full.insert(format!("k{i}"), json!("v"));
        }
        assert_eq!(
            correlation_tags(&Value::Object(full), &json!({"trace_id": "t"})),
            None
        );
    }
}
