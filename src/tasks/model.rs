//! Task domain types and the pure rules of the queue: the status life cycle,
//! retry backoff with jitter, and validation of client-supplied task input.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::FieldError;

/// Where a task is in its life cycle.
///
/// ```text
/// pending ──claim──▶ running ──ok──▶ succeeded
///    ▲                  │
///    │               error ──attempts left──▶ failed ──due──▶ running ...
///    │                  └──no attempts left──▶ dead
///    └── retryTask (failed, dead, cancelled)      cancelTask (pending, failed) ──▶ cancelled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskStatus {
    /// Waiting to be claimed once `run_after` has passed.
    Pending,
    /// Claimed by a worker holding a lease.
    Running,
    /// Finished; its result is stored.
    Succeeded,
    /// The last attempt failed; it runs again after its backoff.
    Failed,
    /// Every attempt failed (or the failure cannot be retried); the error is kept.
    Dead,
    /// Cancelled before it ran to completion.
    Cancelled,
}

impl TaskStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Dead,
        TaskStatus::Cancelled,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Dead => "dead",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the task will not run again unless retried by hand.
    pub fn is_final(self) -> bool {
        match self {
            TaskStatus::Succeeded | TaskStatus::Dead | TaskStatus::Cancelled => true,
            TaskStatus::Pending | TaskStatus::Running | TaskStatus::Failed => false,
        }
    }

    /// Whether `retryTask` may put it back in the queue.
    pub fn is_retryable_by_hand(self) -> bool {
        match self {
            TaskStatus::Failed | TaskStatus::Dead | TaskStatus::Cancelled => true,
            TaskStatus::Pending | TaskStatus::Running | TaskStatus::Succeeded => false,
        }
    }

    /// Whether `cancelTask` may cancel it (a running attempt cannot be stopped
    /// from outside; cancel it once it has failed, or let it finish).
    pub fn is_cancellable(self) -> bool {
        match self {
            TaskStatus::Pending | TaskStatus::Failed => true,
            TaskStatus::Running
            | TaskStatus::Succeeded
            | TaskStatus::Dead
            | TaskStatus::Cancelled => false,
        }
    }
}

impl FromStr for TaskStatus {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        TaskStatus::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                FieldError::new(
                    "status",
                    format!(
                        "unknown task status `{}`: expected one of pending, running, succeeded, failed, dead, cancelled",
                        s.chars().take(40).collect::<String>()
                    ),
                )
            })
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The delay before retry number `attempt` (1 for the first retry):
/// `base * 2^(attempt-1)`, capped at `max`, then "equal jitter": half of it
/// fixed and half scaled by `jitter` (a random number in `[0, 1)`), so
/// tasks that failed together do not retry together while the delay still
/// grows with each attempt.
pub fn backoff(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(32);
    let full = base
        .checked_mul(1u32 << exponent.min(31))
        .unwrap_or(max)
        .min(max);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let half = full / 2;
    half + (full - half).mul_f64(jitter)
}

/// Longest task type name.
pub const MAX_TYPE_CHARS: usize = 64;
/// Largest task payload, serialized.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Most attempts a client may ask for.
pub const MAX_ATTEMPTS_LIMIT: i32 = 100;
/// Priority range a client may ask for.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;
/// How far ahead a task may be scheduled.
pub const MAX_RUN_AFTER_DAYS: i64 = 366;
/// Deepest nesting accepted in a payload.
pub const MAX_PAYLOAD_DEPTH: usize = 32;

/// A task as a caller asks for it, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// A registered task type.
    pub task_type: String,
    /// Handler input (a JSON object; `null` means `{}`).
    pub payload: Value,
    /// Not before this time (default: now).
    pub run_after: Option<DateTime<Utc>>,
    /// Higher runs first (default 0).
    pub priority: Option<i32>,
    /// Attempts before it is dead (default: the handler's or the server's).
    pub max_attempts: Option<i32>,
    /// At most one live task per key (pending, running or failed).
    pub dedupe_key: Option<String>,
}

impl NewTask {
    /// A task of `task_type` with `payload`, to run now with the defaults.
    pub fn new(task_type: impl Into<String>, payload: Value) -> Self {
        NewTask {
            task_type: task_type.into(),
            payload,
            run_after: None,
            priority: None,
            max_attempts: None,
            dedupe_key: None,
        }
    }

    /// The same task, deduplicated by `key`.
    pub fn dedupe(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }

    /// The same task, not to run before `at`.
    pub fn run_after(mut self, at: DateTime<Utc>) -> Self {
        self.run_after = Some(at);
        self
    }
}

fn nested_too_deep_or_nul(v: &Value, depth: usize) -> Option<&'static str> {
    if depth > MAX_PAYLOAD_DEPTH {
        return Some("is nested too deeply");
    }
    match v {
        Value::String(s) if s.contains('\0') => Some("must not contain NUL characters"),
        Value::Array(items) => items
            .iter()
            .find_map(|i| nested_too_deep_or_nul(i, depth + 1)),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some("must not contain NUL characters")
            } else {
                nested_too_deep_or_nul(v, depth + 1)
            }
        }),
        _ => None,
    }
}

/// Checks the parts of a task that do not depend on the registry, against
/// `now`. The payload becomes an object (`null` is `{}`).
pub fn validate(mut task: NewTask, now: DateTime<Utc>) -> Result<NewTask, Vec<FieldError>> {
    let mut errors = Vec::new();
    let type_len = task.task_type.chars().count();
    if task.task_type.trim().is_empty() {
        errors.push(FieldError::new("taskType", "taskType is required"));
    } else if type_len > MAX_TYPE_CHARS || task.task_type.contains('\0') {
        errors.push(FieldError::new(
            "taskType",
            format!("taskType must be at most {MAX_TYPE_CHARS} characters without NUL"),
        ));
    }
    match &task.payload {
        Value::Null => task.payload = Value::Object(Default::default()),
        Value::Object(_) => {
            if let Some(why) = nested_too_deep_or_nul(&task.payload, 0) {
                errors.push(FieldError::new("payload", format!("payload {why}")));
            } else {
                let size = serde_json::to_vec(&task.payload)
                    .map(|v| v.len())
                    .unwrap_or(usize::MAX);
                if size > MAX_PAYLOAD_BYTES {
                    errors.push(FieldError::new(
                        "payload",
                        format!(
                            "payload must be at most {MAX_PAYLOAD_BYTES} bytes as JSON, got {size}"
                        ),
                    ));
                }
            }
        }
        _ => errors.push(FieldError::new("payload", "payload must be a JSON object")),
    }
    if let Some(at) = task.run_after {
        if at > now + chrono::Duration::days(MAX_RUN_AFTER_DAYS) {
            errors.push(FieldError::new(
                "runAfter",
                format!("runAfter must be within {MAX_RUN_AFTER_DAYS} days"),
            ));
        }
        task.run_after = Some(crate::util::to_stored_precision(at));
    }
    if let Some(p) = task.priority
        && !PRIORITY_RANGE.contains(&p)
    {
        errors.push(FieldError::new(
            "priority",
            format!(
                "priority must be between {} and {}",
                PRIORITY_RANGE.start(),
                PRIORITY_RANGE.end()
            ),
        ));
    }
    if let Some(m) = task.max_attempts
        && !(1..=MAX_ATTEMPTS_LIMIT).contains(&m)
    {
        errors.push(FieldError::new(
            "maxAttempts",
            format!("maxAttempts must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
        ));
    }
    if let Some(k) = &task.dedupe_key
        && (k.is_empty() || k.chars().count() > 200 || k.contains('\0'))
    {
        errors.push(FieldError::new(
            "dedupeKey",
            "dedupeKey must be 1 to 200 characters without NUL",
        ));
    }
    if errors.is_empty() {
        Ok(task)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_round_trip_through_their_stored_spelling() {
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>().unwrap(), s);
        }
        assert!("paused".parse::<TaskStatus>().is_err());
    }

    #[test]
    fn only_failed_dead_or_cancelled_tasks_can_be_retried_by_hand() {
        let retryable: Vec<_> = TaskStatus::ALL
            .into_iter()
            .filter(|s| s.is_retryable_by_hand())
            .collect();
        assert_eq!(
            retryable,
            vec![TaskStatus::Failed, TaskStatus::Dead, TaskStatus::Cancelled]
        );
    }

    #[test]
    fn running_and_finished_tasks_cannot_be_cancelled() {
        assert!(TaskStatus::Pending.is_cancellable());
        assert!(TaskStatus::Failed.is_cancellable());
        assert!(!TaskStatus::Running.is_cancellable());
        assert!(!TaskStatus::Succeeded.is_cancellable());
        assert!(!TaskStatus::Dead.is_cancellable());
    }

    #[test]
    fn backoff_doubles_with_each_attempt_up_to_the_cap() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(60);
        // Without jitter the delay is half the full step.
        assert_eq!(backoff(1, base, max, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(2, base, max, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(3, base, max, 0.0), Duration::from_secs(4));
        // With full jitter it is the whole step.
        assert_eq!(backoff(3, base, max, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(10, base, max, 1.0), max);
        assert_eq!(backoff(u32::MAX, base, max, 1.0), max);
    }

    #[test]
    fn backoff_jitter_stays_between_half_and_the_full_step() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(3600);
        for i in 0..=10 {
            let j = f64::from(i) / 10.0;
            let d = backoff(4, base, max, j);
            assert!(d >= Duration::from_millis(400) && d <= Duration::from_millis(800));
        }
        assert_eq!(backoff(4, base, max, f64::NAN), Duration::from_millis(400));
    }

    #[test]
    fn a_null_payload_becomes_an_empty_object() {
        let t = validate(NewTask::new("x", Value::Null), crate::util::now()).unwrap();
        assert_eq!(t.payload, json!({}));
    }

    #[test]
    fn payloads_must_be_objects_without_nul() {
        let now = crate::util::now();
        let errs = validate(NewTask::new("x", json!([1])), now).unwrap_err();
        assert_eq!(errs[0].field, "payload");
        let errs = validate(NewTask::new("x", json!({"a": "b\u{0}"})), now).unwrap_err();
        assert!(errs[0].message.contains("NUL"));
    }

    #[test]
    fn out_of_range_options_are_rejected_with_their_field() {
        let now = crate::util::now();
        let mut t = NewTask::new("", json!({}));
        t.priority = Some(5000);
        t.max_attempts = Some(0);
        t.run_after = Some(now + chrono::Duration::days(400));
        let fields: Vec<String> = validate(t, now)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["taskType", "runAfter", "priority", "maxAttempts"]);
    }
}
