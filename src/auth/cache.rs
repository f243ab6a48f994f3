//! A short-lived cache of resolved bearer tokens, so the hot path (one
//! ingest request after another with the same token) does not read the
//! session and its user from the database every time.
//!
//! Correctness rests on the hub's auth generation: every change that can end
//! or alter a credential (logout, revocation, deactivation, role change,
//! forced reset) bumps it, and an entry is only used while the generation it
//! was read under is still current. The time limit bounds how long a change
//! made by *another* process on the same database (another replica, the
//! `create-user` command) can go unseen; `0` turns the cache off. Only valid
//! credentials are cached, keyed by the token's hash, and expiry is checked
//! on every use.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Identity;

/// Most entries held; when full, the cache starts over.
const MAX_ENTRIES: usize = 10_000;

/// The cache. One per process, in the app state.
#[derive(Debug)]
pub struct AuthCache {
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    entries: HashMap<String, (Identity, Instant)>,
}

impl AuthCache {
    /// A cache whose entries live at most `ttl` (zero: nothing is cached).
    pub fn new(ttl: Duration) -> Self {
        AuthCache {
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The identity cached for a token hash, if it was read under
    /// `generation`, is younger than the time limit and has not expired.
    pub fn get(&self, hash: &str, generation: u64) -> Option<Identity> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.generation != generation {
            inner.generation = generation;
            inner.entries.clear();
            return None;
        }
        let (identity, at) = inner.entries.get(hash)?;
        if at.elapsed() >= self.ttl || identity.is_expired(chrono::Utc::now()) {
            inner.entries.remove(hash);
            return None;
        }
        Some(identity.clone())
    }

    /// Remembers an identity read from the database under `generation`
    /// (read before the lookup started, so a change during the lookup makes
    /// the entry unusable).
    pub fn put(&self, hash: String, generation: u64, identity: &Identity) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.generation != generation {
            if generation < inner.generation {
                return;
            }
            inner.generation = generation;
            inner.entries.clear();
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner
            .entries
            .insert(hash, (identity.clone(), Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration as ChronoDuration, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::auth::{Credential, Role};

    fn identity(expires_in: ChronoDuration) -> Identity {
        Identity {
            user_id: Uuid::nil(),
            username: "u".into(),
            role: Role::User,
            must_change_password: false,
            credential: Credential::Session {
                id: Uuid::nil(),
                expires_at: Utc::now() + expires_in,
            },
        }
    }

    #[test]
    fn entries_are_used_only_under_the_generation_they_were_read_in() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let id = identity(ChronoDuration::hours(1));
        cache.put("h".into(), 3, &id);
        assert_eq!(cache.get("h", 3), Some(id.clone()));
        assert_eq!(cache.get("other", 3), None);
        assert_eq!(cache.get("h", 4), None, "a bump invalidates everything");
        assert_eq!(cache.get("h", 4), None);
        // A lookup that started before the bump cannot repopulate the cache.
        cache.put("h".into(), 3, &id);
        assert_eq!(cache.get("h", 4), None);
    }

    #[test]
    fn expired_credentials_and_old_entries_are_not_served() {
        let cache = AuthCache::new(Duration::from_secs(60));
        cache.put("gone".into(), 0, &identity(ChronoDuration::seconds(-1)));
        assert_eq!(cache.get("gone", 0), None);
        let short = AuthCache::new(Duration::from_nanos(1));
        short.put("h".into(), 0, &identity(ChronoDuration::hours(1)));
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(short.get("h", 0), None);
        let off = AuthCache::new(Duration::ZERO);
        off.put("h".into(), 0, &identity(ChronoDuration::hours(1)));
        assert_eq!(off.get("h", 0), None);
    }
}
