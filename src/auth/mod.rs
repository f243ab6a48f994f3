//! Users, sessions, API keys, roles and the request identity.
//!
//! Every request is authenticated through one function,
//! [`service::authenticate`], from `Authorization: Bearer <token>` on HTTP or
//! the `connection_init` payload on WebSocket. The role and active flag are
//! read fresh, or reused from [`cache`] only while no credential has changed
//! since, so a deactivated user or revoked key stops working at once. Guards
//! in [`guard`] check roles on fields; services take an [`Identity`] when
//! they act on someone's behalf.

pub mod cache;
pub mod entity;
pub mod graphql;
pub mod guard;
pub mod loader;
pub mod password;
pub mod ratelimit;
pub mod service;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

/// Roles, ordered by rank: a check at a rank passes for that rank and above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Ingests data, creates incidents, sees its own incidents.
    User,
    /// Manages alert rules and silences, sees all incidents and statistics.
    Moderator,
    /// Manages users and roles.
    Admin,
}

impl Role {
    /// The stored (and REST) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = AppError;
    fn from_str(s: &str) -> AppResult<Role> {
        match s.to_ascii_lowercase().as_str() {
            "user" => Ok(Role::User),
            "moderator" => Ok(Role::Moderator),
            "admin" => Ok(Role::Admin),
            _ => Err(AppError::bad_input(
                "role",
                format!("unknown role `{s}`: expected user, moderator or admin"),
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A login session.
    Session {
        /// The session row.
        id: Uuid,
        /// When it stops working.
        expires_at: DateTime<Utc>,
    },
    /// An API key.
    ApiKey {
        /// The key row.
        id: Uuid,
        /// When it stops working, if ever.
        expires_at: Option<DateTime<Utc>>,
    },
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user (for an API key: its creator).
    pub user_id: Uuid,
    /// The user's name.
    pub username: String,
    /// The effective role (an API key's role, capped by its creator's).
    pub role: Role,
    /// Set by a forced password reset: only `me`, `changePassword` and
    /// `logout` work until the password is changed.
    pub must_change_password: bool,
    /// The credential used.
    pub credential: Credential,
}

impl Identity {
    /// Whether the caller holds at least `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.role >= role
    }

    /// Whether the credential has passed its expiry time.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        match &self.credential {
            Credential::Session { expires_at, .. } => *expires_at <= now,
            Credential::ApiKey { expires_at, .. } => expires_at.is_some_and(|t| t <= now),
        }
    }

    /// The session id when the caller used a login session.
    pub fn session_id(&self) -> Option<Uuid> {
        match &self.credential {
            Credential::Session { id, .. } => Some(*id),
            Credential::ApiKey { .. } => None,
        }
    }
}

/// The authentication state of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials were sent.
    Anonymous,
    /// Credentials were sent but are malformed, unknown, expired or revoked.
    Invalid,
    /// A valid caller.
    User(Identity),
}

impl Auth {
    /// The identity, or `UNAUTHENTICATED` with a message telling why.
    pub fn identity(&self) -> AppResult<&Identity> {
        match self {
            Auth::User(identity) => Ok(identity),
            Auth::Anonymous => Err(AppError::unauthenticated(
                "authentication required: send `Authorization: Bearer <token>`",
            )),
            Auth::Invalid => Err(AppError::unauthenticated(
                "invalid, expired or revoked credentials",
            )),
        }
    }
}

/// What every GraphQL request and REST handler knows about its caller.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Who is calling.
    pub auth: Auth,
    /// The client's address, for rate limiting and session records.
    pub client_addr: Option<IpAddr>,
    /// The client's `User-Agent`, recorded on sessions.
    pub user_agent: Option<String>,
}

impl RequestContext {
    /// A context for code that calls services directly, without a client.
    pub fn internal(auth: Auth) -> Self {
        RequestContext {
            auth,
            client_addr: None,
            user_agent: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ranked_user_moderator_admin() {
        assert!(Role::User < Role::Moderator);
        assert!(Role::Moderator < Role::Admin);
    }

    #[test]
    fn roles_parse_case_insensitively_and_reject_others() {
        assert_eq!("Moderator".parse::<Role>().unwrap(), Role::Moderator);
        assert!("root".parse::<Role>().is_err());
    }
}
