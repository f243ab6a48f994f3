//! Auth services: users, logins, sessions, API keys and authentication.

use std::net::IpAddr;
use std::time::Instant;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::entity::{api_key, session, user};
use super::ratelimit::Admission;
use super::{Auth, Credential, Identity, RequestContext, Role, password};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;
use crate::util::{self, now, sha256_hex};

/// Session tokens start with this.
pub const SESSION_PREFIX: &str = "sls_";
/// API key secrets start with this.
pub const API_KEY_PREFIX: &str = "slk_";
/// Credentials are not written back as "used" more often than this.
const LAST_USED_RESOLUTION_SECS: i64 = 60;

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// 3–64 characters: letters, digits, `_`, `.`, `-`; stored lower-case.
    pub username: String,
    /// An email address; stored lower-case.
    pub email: String,
    /// 8–128 characters.
    pub password: String,
    /// The role.
    pub role: Role,
}

/// Validates and normalises a username.
pub fn normalize_username(raw: &str) -> AppResult<String> {
    let name = raw.trim().to_ascii_lowercase();
    let len = name.chars().count();
    if !(3..=64).contains(&len) {
        return Err(AppError::bad_input(
            "username",
            "username must be 3 to 64 characters",
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(AppError::bad_input(
            "username",
            "username may contain only letters, digits, `_`, `.` and `-`",
        ));
    }
    Ok(name)
}

/// Validates and normalises an email address.
pub fn normalize_email(raw: &str) -> AppResult<String> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if valid {
        Ok(email)
    } else {
        Err(AppError::bad_input("email", "email is not a valid address"))
    }
}

/// Creates a user after validating every field.
#[tracing::instrument(skip_all, fields(username = %new.username))]
pub async fn create_user(db: &impl ConnectionTrait, new: NewUser) -> AppResult<user::Model> {
    let username = normalize_username(&new.username)?;
    let email = normalize_email(&new.email)?;
    password::validate("password", &new.password)?;
    let hash = password::hash(new.password).await?;
    let at = now();
    let model = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        username: Set(username),
        email: Set(email),
        password_hash: Set(hash),
        role: Set(new.role.as_str().to_owned()),
        is_active: Set(true),
        must_change_password: Set(false),
        created_at: Set(at),
        updated_at: Set(at),
        last_login_at: Set(None),
    };
    Ok(model.insert(db).await?)
}

/// On an empty database, creates the `admin` user. Returns the generated
/// password when none was configured (to be shown once), `None` otherwise.
pub async fn ensure_initial_admin(
    db: &DatabaseConnection,
    configured: Option<&str>,
) -> AppResult<Option<String>> {
    if user::Entity::find().count(db).await? > 0 {
        return Ok(None);
    }
    let (password, generated) = match configured {
        Some(p) => (p.to_owned(), false),
        None => (util::random_alphanumeric(20), true),
    };
    let result = create_user(
        db,
        NewUser {
            username: "admin".to_owned(),
            email: "admin@localhost.localdomain".to_owned(),
            password: password.clone(),
            role: Role::Admin,
        },
    )
    .await;
    match result {
        Ok(_) => Ok(generated.then_some(password)),
        // Another replica created it at the same moment.
        Err(e) if e.code == ErrorCode::Conflict => Ok(None),
        Err(e) => Err(e),
    }
}

/// The role stored on a row, defaulting to the lowest on a corrupt value.
pub fn stored_role(s: &str) -> Role {
    s.parse().unwrap_or(Role::User)
}

/// Result of a successful login.
#[derive(Debug, Clone)]
pub struct LoginResult {
    /// The bearer token (shown once; only its hash is stored).
    pub token: String,
    /// The session row.
    pub session: session::Model,
    /// The user.
    pub user: user::Model,
}

fn limiter_keys(login: &str, addr: Option<IpAddr>) -> Vec<String> {
    let mut keys = vec![format!("user:{}", login.trim().to_lowercase())];
    if let Some(addr) = addr {
        keys.push(format!("addr:{addr}"));
    }
    keys
}

/// Logs in with a username (or email) and password.
#[tracing::instrument(skip_all)]
pub async fn login(
    state: &AppState,
    ctx: &RequestContext,
    login: &str,
    password: &str,
) -> AppResult<LoginResult> {
    if login.trim().is_empty() {
        return Err(AppError::bad_input(
            "username",
            "username or email is required",
        ));
    }
    // No username or email has control characters or is this long, and
    // PostgreSQL refuses NUL in text: answer before touching the database.
    if login.chars().count() > 320 || login.chars().any(char::is_control) {
        return Err(AppError::unauthenticated("invalid username or password"));
    }
    if password.is_empty() || password.chars().count() > password::MAX_LEN {
        return Err(AppError::unauthenticated("invalid username or password"));
    }
    let keys = limiter_keys(login, ctx.client_addr);
    if let Admission::Locked(wait) = state.login_limiter.admit(&keys, Instant::now()) {
        return Err(AppError::rate_limited(
            "too many failed logins; try again later",
            wait.as_secs() + 1,
        ));
    }
    let needle = login.trim().to_lowercase();
    let found = user::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(user::Column::Username.eq(needle.clone()))
                .add(user::Column::Email.eq(needle)),
        )
        .one(&state.db)
        .await?;
    let ok = password::verify(
        password.to_owned(),
        found.as_ref().map(|u| u.password_hash.clone()),
    )
    .await?;
    let user = match found {
        Some(u) if ok && u.is_active => u,
        _ => {
            let delay = state.login_limiter.record_failure(&keys, Instant::now());
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            return Err(AppError::unauthenticated("invalid username or password"));
        }
    };
    state.login_limiter.record_success(&keys[0]);

    let token = format!("{SESSION_PREFIX}{}", util::random_token(32));
    let at = now();
    let ttl = ChronoDuration::from_std(state.config.session_ttl)
        .unwrap_or_else(|_| ChronoDuration::days(1));
    let txn = crate::db::begin_write(&state.db).await?;
    let session = session::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user.id),
        token_hash: Set(sha256_hex(&token)),
        created_at: Set(at),
        expires_at: Set(at + ttl),
        last_used_at: Set(at),
        client_addr: Set(ctx.client_addr.map(|a| a.to_string())),
        user_agent: Set(ctx
            .user_agent
            .as_deref()
            .map(|s| s.chars().take(256).collect())),
    }
    .insert(&txn)
    .await?;
    user::Entity::update_many()
        .col_expr(user::Column::LastLoginAt, Expr::value(at))
        .filter(user::Column::Id.eq(user.id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    tracing::info!(user_id = %user.id, "login");
    let user = user::Model {
        last_login_at: Some(at),
        ..user
    };
    Ok(LoginResult {
        token,
        session,
        user,
    })
}

/// What an `Authorization` header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bearer<'a> {
    /// No header.
    Absent,
    /// A header that is not `Bearer <printable token>`.
    Malformed,
    /// The token.
    Token(&'a str),
}

/// Extracts the token from an `Authorization` header value.
pub fn bearer_token(header: Option<&str>) -> Bearer<'_> {
    let Some(value) = header else {
        return Bearer::Absent;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return Bearer::Malformed;
    };
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.len() > 512
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Bearer::Malformed;
    }
    Bearer::Token(token)
}

/// Resolves an `Authorization` header value into the request's [`Auth`].
/// Valid tokens are reused from the state's [`crate::auth::cache::AuthCache`] while no credential
/// changed since they were read.
pub async fn authenticate_header(state: &AppState, header: Option<&str>) -> AppResult<Auth> {
    match bearer_token(header) {
        Bearer::Absent => Ok(Auth::Anonymous),
        Bearer::Malformed => Ok(Auth::Invalid),
        Bearer::Token(token) => {
            let hash = sha256_hex(token);
            // Read before the lookup: a change during it invalidates the entry.
            let generation = *state.hub.auth_watch().borrow();
            if let Some(identity) = state.auth_cache.get(&hash, generation) {
                return Ok(Auth::User(identity));
            }
            Ok(match authenticate(&state.db, token).await? {
                Some(identity) => {
                    state.auth_cache.put(hash, generation, &identity);
                    Auth::User(identity)
                }
                None => Auth::Invalid,
            })
        }
    }
}

/// Looks a bearer token (session token or API key) up, reading role and
/// active flag fresh. `None` when unknown, expired, revoked or inactive.
pub async fn authenticate(db: &DatabaseConnection, token: &str) -> AppResult<Option<Identity>> {
    let hash = sha256_hex(token);
    let at = now();
    if token.starts_with(API_KEY_PREFIX) {
        // `.all` rather than `.one`: the hash is unique, and a bound `LIMIT`
        // makes SQLite re-prepare the statement on every execution.
        let Some((key, Some(owner))) = api_key::Entity::find()
            .filter(api_key::Column::SecretHash.eq(hash))
            .find_also_related(user::Entity)
            .all(db)
            .await?
            .pop()
        else {
            return Ok(None);
        };
        if key.revoked_at.is_some() || key.expires_at.is_some_and(|t| t <= at) || !owner.is_active {
            return Ok(None);
        }
        if key
            .last_used_at
            .is_none_or(|t| (at - t).num_seconds() >= LAST_USED_RESOLUTION_SECS)
        {
            touch(db, Touch::ApiKey(key.id), at);
        }
        let role = stored_role(&key.role).min(stored_role(&owner.role));
        return Ok(Some(Identity {
            user_id: owner.id,
            username: owner.username,
            role,
            must_change_password: false,
            credential: Credential::ApiKey {
                id: key.id,
                expires_at: key.expires_at,
            },
        }));
    }
    if !token.starts_with(SESSION_PREFIX) {
        return Ok(None);
    }
    let Some((sess, Some(owner))) = session::Entity::find()
        .filter(session::Column::TokenHash.eq(hash))
        .find_also_related(user::Entity)
        .all(db)
        .await?
        .pop()
    else {
        return Ok(None);
    };
    if sess.expires_at <= at || !owner.is_active {
        return Ok(None);
    }
    if (at - sess.last_used_at).num_seconds() >= LAST_USED_RESOLUTION_SECS {
        touch(db, Touch::Session(sess.id), at);
    }
    Ok(Some(Identity {
        user_id: owner.id,
        username: owner.username,
        role: stored_role(&owner.role),
        must_change_password: owner.must_change_password,
        credential: Credential::Session {
            id: sess.id,
            expires_at: sess.expires_at,
        },
    }))
}

enum Touch {
    Session(Uuid),
    ApiKey(Uuid),
}

/// Records "last used" off the request path; losing one update is harmless.
fn touch(db: &DatabaseConnection, what: Touch, at: DateTime<Utc>) {
    let db = db.clone();
    tokio::spawn(async move {
        let result = match what {
            Touch::Session(id) => session::Entity::update_many()
                .col_expr(session::Column::LastUsedAt, Expr::value(at))
                .filter(session::Column::Id.eq(id))
                .exec(&db)
                .await
                .map(|_| ()),
            Touch::ApiKey(id) => api_key::Entity::update_many()
                .col_expr(api_key::Column::LastUsedAt, Expr::value(Some(at)))
                .filter(api_key::Column::Id.eq(id))
                .exec(&db)
                .await
                .map(|_| ()),
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "could not record credential use");
        }
    });
}

fn require_session(identity: &Identity) -> AppResult<Uuid> {
    identity.session_id().ok_or_else(|| {
        AppError::forbidden("this operation requires a login session, not an API key")
    })
}

/// Ends the caller's current session.
pub async fn logout(state: &AppState, identity: &Identity) -> AppResult<()> {
    let id = require_session(identity)?;
    session::Entity::delete_by_id(id).exec(&state.db).await?;
    state.hub.auth_changed().await;
    Ok(())
}

/// Ends every session of the caller; returns how many ended.
pub async fn logout_all(state: &AppState, identity: &Identity) -> AppResult<u64> {
    require_session(identity)?;
    let n = session::Entity::delete_many()
        .filter(session::Column::UserId.eq(identity.user_id))
        .exec(&state.db)
        .await?
        .rows_affected;
    state.hub.auth_changed().await;
    Ok(n)
}

/// Changes the caller's password; other sessions of the caller end.
pub async fn change_password(
    state: &AppState,
    identity: &Identity,
    current: &str,
    new: &str,
) -> AppResult<user::Model> {
    let session_id = require_session(identity)?;
    password::validate("newPassword", new)?;
    if current == new {
        return Err(AppError::bad_input(
            "newPassword",
            "the new password must differ from the current one",
        ));
    }
    let user = find_user(&state.db, identity.user_id).await?;
    if !password::verify(current.to_owned(), Some(user.password_hash.clone())).await? {
        return Err(AppError::bad_input(
            "currentPassword",
            "the current password is not correct",
        ));
    }
    let hash = password::hash(new.to_owned()).await?;
    let txn = crate::db::begin_write(&state.db).await?;
    let mut active: user::ActiveModel = user.into();
    active.password_hash = Set(hash);
    active.must_change_password = Set(false);
    active.updated_at = Set(now());
    let updated = active.update(&txn).await?;
    session::Entity::delete_many()
        .filter(session::Column::UserId.eq(identity.user_id))
        .filter(session::Column::Id.ne(session_id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    state.hub.auth_changed().await;
    Ok(updated)
}

/// A user by id, or `NOT_FOUND`.
pub async fn find_user(db: &impl ConnectionTrait, id: Uuid) -> AppResult<user::Model> {
    user::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("user"))
}

/// Users by id, for DataLoaders.
pub async fn users_by_ids(db: &impl ConnectionTrait, ids: &[Uuid]) -> AppResult<Vec<user::Model>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(user::Entity::find()
        .filter(user::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?)
}

/// A page of users ordered by creation.
pub async fn list_users(
    db: &impl ConnectionTrait,
    page: &crate::pagination::Page,
) -> AppResult<crate::pagination::Rows<user::Model>> {
    let query = crate::pagination::keyset(
        user::Entity::find(),
        user::Column::CreatedAt,
        user::Column::Id,
        page,
    );
    let rows = query.all(db).await?;
    Ok(crate::pagination::Rows::new(rows, page, |u| {
        crate::pagination::Cursor::new(u.created_at, u.id)
    }))
}

/// Number of users.
pub async fn count_users(db: &impl ConnectionTrait) -> AppResult<u64> {
    Ok(user::Entity::find().count(db).await?)
}

async fn active_admins_other_than(txn: &impl ConnectionTrait, id: Uuid) -> AppResult<u64> {
    Ok(user::Entity::find()
        .filter(user::Column::Role.eq(Role::Admin.as_str()))
        .filter(user::Column::IsActive.eq(true))
        .filter(user::Column::Id.ne(id))
        .count(txn)
        .await?)
}

/// Changes a user's role (admin only, checked by the caller's guard). The
/// last active admin cannot be demoted.
pub async fn set_user_role(state: &AppState, user_id: Uuid, role: Role) -> AppResult<user::Model> {
    let txn = crate::db::begin_write(&state.db).await?;
    let user = find_user(&txn, user_id).await?;
    if stored_role(&user.role) == Role::Admin
        && role != Role::Admin
        && active_admins_other_than(&txn, user_id).await? == 0
    {
        return Err(AppError::conflict("cannot demote the last active admin"));
    }
    let mut active: user::ActiveModel = user.into();
    active.role = Set(role.as_str().to_owned());
    active.updated_at = Set(now());
    let updated = active.update(&txn).await?;
    txn.commit().await?;
    state.hub.auth_changed().await;
    Ok(updated)
}

/// Deactivates or reactivates a user. Deactivation ends the user's sessions
/// at once; the last active admin cannot be deactivated.
pub async fn set_user_active(
    state: &AppState,
    user_id: Uuid,
    active_flag: bool,
) -> AppResult<user::Model> {
    let txn = crate::db::begin_write(&state.db).await?;
    let user = find_user(&txn, user_id).await?;
    if !active_flag
        && stored_role(&user.role) == Role::Admin
        && active_admins_other_than(&txn, user_id).await? == 0
    {
        return Err(AppError::conflict(
            "cannot deactivate the last active admin",
        ));
    }
    let mut active: user::ActiveModel = user.into();
    active.is_active = Set(active_flag);
    active.updated_at = Set(now());
    let updated = active.update(&txn).await?;
    if !active_flag {
        session::Entity::delete_many()
            .filter(session::Column::UserId.eq(user_id))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    state.hub.auth_changed().await;
    Ok(updated)
}

/// Ends a user's sessions and makes them change their password at next
/// login. A moderator may not do this to an admin.
pub async fn force_password_reset(
    state: &AppState,
    actor: &Identity,
    user_id: Uuid,
) -> AppResult<user::Model> {
    let txn = crate::db::begin_write(&state.db).await?;
    let user = find_user(&txn, user_id).await?;
    if stored_role(&user.role) > actor.role {
        return Err(AppError::forbidden(
            "you may not force a password reset on a user with a higher role",
        ));
    }
    let mut active: user::ActiveModel = user.into();
    active.must_change_password = Set(true);
    active.updated_at = Set(now());
    let updated = active.update(&txn).await?;
    session::Entity::delete_many()
        .filter(session::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    state.hub.auth_changed().await;
    tracing::info!(user_id = %user_id, actor = %actor.user_id, "forced password reset");
    Ok(updated)
}

/// An API key to create.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// 1–100 characters.
    pub name: String,
    /// Defaults to the creator's role; never above it.
    pub role: Option<Role>,
    /// Must be in the future when given.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Creates an API key for the caller; returns it with its secret, which is
/// shown only this once.
pub async fn create_api_key(
    state: &AppState,
    identity: &Identity,
    new: NewApiKey,
) -> AppResult<(api_key::Model, String)> {
    require_session(identity)?;
    let name = new.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::bad_input(
            "name",
            "name must be 1 to 100 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            "name",
            "name must not contain control characters",
        ));
    }
    let role = new.role.unwrap_or(identity.role);
    if role > identity.role {
        return Err(
            AppError::forbidden("an API key cannot have a higher role than its creator")
                .with_field("role"),
        );
    }
    let at = now();
    if let Some(exp) = new.expires_at
        && exp <= at
    {
        return Err(AppError::bad_input(
            "expiresAt",
            "expiresAt must be in the future",
        ));
    }
    let prefix = format!("{API_KEY_PREFIX}{}", util::random_alphanumeric(8));
    let secret = format!("{prefix}_{}", util::random_token(32));
    let model = api_key::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(identity.user_id),
        name: Set(name),
        prefix: Set(prefix),
        secret_hash: Set(sha256_hex(&secret)),
        role: Set(role.as_str().to_owned()),
        created_at: Set(at),
        expires_at: Set(new.expires_at.map(util::to_stored_precision)),
        revoked_at: Set(None),
        last_used_at: Set(None),
    }
    .insert(&state.db)
    .await?;
    Ok((model, secret))
}

/// The caller's API keys, newest first.
pub async fn list_api_keys(
    db: &impl ConnectionTrait,
    identity: &Identity,
) -> AppResult<Vec<api_key::Model>> {
    Ok(api_key::Entity::find()
        .filter(api_key::Column::UserId.eq(identity.user_id))
        .order_by_desc(api_key::Column::CreatedAt)
        .limit(1000)
        .all(db)
        .await?)
}

/// Revokes one of the caller's API keys (an admin may revoke anyone's).
pub async fn revoke_api_key(
    state: &AppState,
    identity: &Identity,
    id: Uuid,
) -> AppResult<api_key::Model> {
    let key = api_key::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .filter(|k| k.user_id == identity.user_id || identity.has_role(Role::Admin))
        .ok_or_else(|| AppError::not_found("API key"))?;
    if key.revoked_at.is_some() {
        return Ok(key);
    }
    let mut active: api_key::ActiveModel = key.into();
    active.revoked_at = Set(Some(now()));
    let updated = active.update(&state.db).await?;
    state.hub.auth_changed().await;
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lowercased_and_limited_to_safe_characters() {
        assert_eq!(normalize_username(" Alice.B ").unwrap(), "alice.b");
        assert!(normalize_username("ab").is_err());
        assert!(normalize_username("al ice").is_err());
        assert!(normalize_username("ali'ce").is_err());
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert_eq!(normalize_email("A@Example.COM").unwrap(), "a@example.com");
        assert!(normalize_email("a@b").is_err());
        assert!(normalize_email("@b.c").is_err());
        assert!(normalize_email("a b@c.d").is_err());
    }

    #[test]
    fn bearer_headers_must_name_the_scheme_and_a_printable_token() {
        assert_eq!(bearer_token(None), Bearer::Absent);
        assert_eq!(bearer_token(Some("Bearer abc")), Bearer::Token("abc"));
        assert_eq!(bearer_token(Some("bearer   abc ")), Bearer::Token("abc"));
        assert_eq!(bearer_token(Some("Basic abc")), Bearer::Malformed);
        assert_eq!(bearer_token(Some("Bearer")), Bearer::Malformed);
        assert_eq!(bearer_token(Some("Bearer ")), Bearer::Malformed);
        assert_eq!(bearer_token(Some("Bearer a\u{7f}b")), Bearer::Malformed);
    }
}
