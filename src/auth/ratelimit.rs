//! Slows down and then refuses repeated failed logins, per account and per
//! client address. State lives in memory in each server process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures are forgotten after this long without another one.
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Longest artificial delay added to a failed attempt.
const MAX_DELAY: Duration = Duration::from_secs(2);
/// An address may fail this many times more than one account before lockout
/// (many people can share one address).
const ADDRESS_FACTOR: u32 = 4;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

/// The verdict before a login attempt is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead.
    Allowed,
    /// Refuse; retry after this long.
    Locked(Duration),
}

/// Counts failed logins and locks keys that fail too often.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    lockout: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl LoginLimiter {
    /// A limiter that locks an account after `max_failures` failures (an
    /// address after four times as many) for `lockout`.
    pub fn new(max_failures: u32, lockout: Duration) -> Self {
        LoginLimiter {
            max_failures: max_failures.max(1),
            lockout,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn threshold(&self, key: &str) -> u32 {
        if key.starts_with("addr:") {
            self.max_failures.saturating_mul(ADDRESS_FACTOR)
        } else {
            self.max_failures
        }
    }

    /// Whether an attempt for these keys may proceed.
    pub fn admit(&self, keys: &[String], now: Instant) -> Admission {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = Duration::ZERO;
        for key in keys {
            if let Some(until) = entries.get(key).and_then(|e| e.locked_until)
                && until > now
            {
                wait = wait.max(until - now);
            }
        }
        if wait.is_zero() {
            Admission::Allowed
        } else {
            Admission::Locked(wait)
        }
    }

    /// Records a failure for each key and returns how long to delay the
    /// answer (growing with the failures, so guessing is slow).
    pub fn record_failure(&self, keys: &[String], now: Instant) -> Duration {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() > 100_000 {
            entries.retain(|_, e| now.duration_since(e.last_failure) < WINDOW);
        }
        let mut worst = 0;
        for key in keys {
            let threshold = self.threshold(key);
            let entry = entries.entry(key.clone()).or_insert(Entry {
                failures: 0,
                last_failure: now,
                locked_until: None,
            });
            if now.duration_since(entry.last_failure) > WINDOW
                || entry.locked_until.is_some_and(|t| t <= now)
            {
                entry.failures = 0;
                entry.locked_until = None;
            }
            entry.failures += 1;
            entry.last_failure = now;
            if entry.failures >= threshold {
                entry.locked_until = Some(now + self.lockout);
            }
            worst = worst.max(entry.failures * self.max_failures / threshold);
        }
        delay_for(worst)
    }

    /// Forgets the failures of an account after a successful login.
    pub fn record_success(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(key);
    }
}

/// No delay for the first two failures, then 100 ms doubling up to 2 s.
fn delay_for(failures: u32) -> Duration {
    if failures < 3 {
        return Duration::ZERO;
    }
    let exp = (failures - 3).min(10);
    Duration::from_millis(100u64 << exp).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(user: &str) -> Vec<String> {
        vec![format!("user:{user}"), "addr:127.0.0.1".to_owned()]
    }

    #[test]
    fn an_account_is_locked_after_max_failures() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        let t = Instant::now();
        for _ in 0..2 {
            l.record_failure(&keys("bob"), t);
            assert_eq!(l.admit(&keys("bob"), t), Admission::Allowed);
        }
        l.record_failure(&keys("bob"), t);
        assert!(matches!(l.admit(&keys("bob"), t), Admission::Locked(_)));
        assert_eq!(l.admit(&keys("alice"), t), Admission::Allowed);
    }

    #[test]
    fn the_lock_ends_after_the_lockout() {
        let l = LoginLimiter::new(1, Duration::from_secs(60));
        let t = Instant::now();
        l.record_failure(&keys("bob"), t);
        assert!(matches!(l.admit(&keys("bob"), t), Admission::Locked(_)));
        assert_eq!(
            l.admit(&keys("bob"), t + Duration::from_secs(61)),
            Admission::Allowed
        );
    }

    #[test]
    fn repeated_failures_are_slowed_down_progressively() {
        assert_eq!(delay_for(1), Duration::ZERO);
        assert_eq!(delay_for(3), Duration::from_millis(100));
        assert_eq!(delay_for(4), Duration::from_millis(200));
        assert_eq!(delay_for(30), MAX_DELAY);
    }

    #[test]
    fn success_forgets_the_account_failures() {
        let l = LoginLimiter::new(2, Duration::from_secs(60));
        let t = Instant::now();
        l.record_failure(&keys("bob"), t);
        l.record_success("user:bob");
        l.record_failure(&keys("bob"), t);
        assert_eq!(l.admit(&keys("bob"), t), Admission::Allowed);
    }
}
