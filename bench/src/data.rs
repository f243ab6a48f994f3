//! Realistic events: ten sources, five tags, a small payload, a message of
//! typical length, mostly `info`. Deterministic (seeded), so runs compare.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

/// A small, fast, seeded generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// How many distinct sources events come from.
pub const SOURCES: u64 = 10;

/// The name of source `i`.
pub fn source(i: u64) -> String {
    const KINDS: [&str; 5] = ["web", "api", "worker", "db", "cache"];
    format!("{}-{}", KINDS[(i % 5) as usize], i)
}

/// One event's fields.
#[derive(Debug, Clone)]
pub struct EventSpec {
    /// `LOG`, `TRACE`, ...
    pub event_type: &'static str,
    /// The source.
    pub source: String,
    /// The message.
    pub message: String,
    /// The level.
    pub level: &'static str,
    /// Five tags.
    pub tags: Value,
    /// A small payload.
    pub payload: Value,
    /// The timestamp, or now when `None`.
    pub timestamp: Option<DateTime<Utc>>,
}

/// A realistic event; `spread` back-dates it uniformly over that window.
pub fn event(rng: &mut Rng, now: DateTime<Utc>, spread: Option<Duration>) -> EventSpec {
    let s = rng.below(SOURCES);
    let status = [200, 200, 200, 200, 201, 204, 304, 400, 404, 500][rng.below(10) as usize];
    let duration = 1 + rng.below(900);
    let level = match status {
        500 => "error",
        400 | 404 => "warn",
        _ => {
            if rng.below(20) == 0 {
                "debug"
            } else {
                "info"
            }
        }
    };
    let method = ["GET", "GET", "GET", "POST", "PUT", "DELETE"][rng.below(6) as usize];
    let path = format!("/api/v1/users/{}", rng.below(100_000));
    let timestamp = spread.map(|w| {
        let back = rng.below(w.num_milliseconds().max(1) as u64) as i64;
        now - Duration::milliseconds(back)
    });
    let region = ["eu-west-1", "us-east-1", "ap-south-1"][rng.below(3) as usize];
    let env = if rng.below(4) == 0 {
        "staging"
    } else {
        "production"
    };
    let canary = rng.below(10) == 0;
    let bytes = rng.below(100_000);
    let request_id = format!("req-{:016x}", rng.next());
    EventSpec {
        event_type: if rng.below(10) == 0 { "TRACE" } else { "LOG" },
        source: source(s),
        message: format!("{method} {path} completed with {status} in {duration} ms"),
        level,
        tags: json!({
            "service": source(s),
            "env": env,
            "region": region,
            "status": status,
            "canary": canary,
        }),
        payload: json!({
            "request_id": request_id,
            "duration_ms": duration,
            "bytes": bytes,
            "method": method,
        }),
        timestamp,
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl EventSpec {
    /// The GraphQL `CreateEventInput`.
    pub fn to_input(&self) -> Value {
        let mut v = json!({
            "eventType": self.event_type,
            "source": self.source,
            "message": self.message,
            "level": self.level,
            "tags": self.tags,
            "payload": self.payload,
        });
        if let Some(t) = self.timestamp {
            v["timestamp"] = json!(rfc3339(t));
        }
        v
    }

    /// A CSV row for `COPY events (id, event_type, source, message, level,
    /// tags, payload, timestamp, received_at) FROM STDIN (FORMAT csv)`.
    pub fn to_csv(&self, id: uuid::Uuid, received_at: DateTime<Utc>) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        format!(
            "{},{},{},{},{},{},{},{},{}\n",
            id,
            self.event_type.to_ascii_lowercase(),
            quote(&self.source),
            quote(&self.message),
            self.level,
            quote(&self.tags.to_string()),
            quote(&self.payload.to_string()),
            rfc3339(self.timestamp.unwrap_or(received_at)),
            rfc3339(received_at),
        )
    }
}
