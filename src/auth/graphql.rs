//! GraphQL API of the auth domain: login, sessions, users, API keys.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::entity::{api_key, user};
use super::guard::{ContextExt, RoleGuard};
use super::{Role, service};
use crate::error::AppError;
use crate::graphql::{TotalCount, parse_id};
use crate::pagination::{Cursor, Page, PageArgs};

/// A role. Each includes the permissions of those below it.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "Role")]
pub enum GqlRole {
    /// Ingests data, creates incidents and sees its own.
    User,
    /// Manages alert rules and silences; sees every incident and the statistics.
    Moderator,
    /// Manages users and roles.
    Admin,
}

impl From<Role> for GqlRole {
    fn from(r: Role) -> Self {
        match r {
            Role::User => GqlRole::User,
            Role::Moderator => GqlRole::Moderator,
            Role::Admin => GqlRole::Admin,
        }
    }
}

impl From<GqlRole> for Role {
    fn from(r: GqlRole) -> Self {
        match r {
            GqlRole::User => Role::User,
            GqlRole::Moderator => Role::Moderator,
            GqlRole::Admin => Role::Admin,
        }
    }
}

/// A user account.
pub struct User(pub user::Model);

impl User {
    fn is_self_or(&self, ctx: &Context<'_>, role: Role) -> Result<(), AppError> {
        let me = ctx.identity()?;
        if me.user_id == self.0.id || me.has_role(role) {
            Ok(())
        } else {
            Err(AppError::forbidden(
                "you may not see this field of another user",
            ))
        }
    }
}

#[Object]
impl User {
    /// The user's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Unique login name (lower-case).
    async fn username(&self) -> &str {
        &self.0.username
    }
    /// Email address; visible to the user and to moderators and above.
    async fn email(&self, ctx: &Context<'_>) -> async_graphql::Result<&str> {
        self.is_self_or(ctx, Role::Moderator)?;
        Ok(&self.0.email)
    }
    /// Role.
    async fn role(&self) -> GqlRole {
        service::stored_role(&self.0.role).into()
    }
    /// Whether the account can log in; visible to the user and to admins.
    async fn is_active(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        self.is_self_or(ctx, Role::Admin)?;
        Ok(self.0.is_active)
    }
    /// Whether the user must change their password before doing anything
    /// else; visible to the user and to admins.
    async fn must_change_password(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        self.is_self_or(ctx, Role::Admin)?;
        Ok(self.0.must_change_password)
    }
    /// When the account was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Last successful login; visible to the user and to admins.
    async fn last_login_at(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<DateTime<Utc>>> {
        self.is_self_or(ctx, Role::Admin)?;
        Ok(self.0.last_login_at)
    }
}

/// A login session.
#[derive(SimpleObject)]
pub struct Session {
    /// Bearer token for `Authorization: Bearer <token>`; shown only now.
    pub token: String,
    /// When the token stops working.
    pub expires_at: DateTime<Utc>,
    /// The logged-in user.
    pub user: User,
}

/// An API key for a service.
pub struct ApiKey(pub api_key::Model);

#[Object]
impl ApiKey {
    /// The key's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Human-chosen name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The start of the secret, to tell keys apart.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    /// The role the key grants (never above its creator's current role).
    async fn role(&self) -> GqlRole {
        service::stored_role(&self.0.role).into()
    }
    /// Creation time.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Expiry time, if any.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    /// Revocation time, if revoked.
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
    /// Last use (recorded at most once a minute).
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }
    /// Whether the key works now.
    async fn active(&self) -> bool {
        self.0.revoked_at.is_none() && self.0.expires_at.is_none_or(|t| t > crate::util::now())
    }
}

/// A newly created API key with its secret.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    /// The key.
    pub api_key: ApiKey,
    /// The secret for `Authorization: Bearer <secret>`; shown only now.
    pub secret: String,
}

/// Credentials for `login`.
#[derive(InputObject)]
pub struct LoginInput {
    /// Username (an email address is accepted here too).
    pub username: Option<String>,
    /// Email address, instead of the username.
    pub email: Option<String>,
    /// Password.
    pub password: String,
}

/// Input of `changePassword`.
#[derive(InputObject)]
pub struct ChangePasswordInput {
    /// The current password.
    pub current_password: String,
    /// The new password (8–128 characters).
    pub new_password: String,
}

/// Input of `createUser`.
#[derive(InputObject)]
pub struct CreateUserInput {
    /// 3–64 characters: letters, digits, `_`, `.`, `-`.
    pub username: String,
    /// Email address.
    pub email: String,
    /// 8–128 characters.
    pub password: String,
    /// Role (default USER).
    #[graphql(default_with = "GqlRole::User")]
    pub role: GqlRole,
}

/// Input of `setUserRole`.
#[derive(InputObject)]
pub struct SetUserRoleInput {
    /// The user.
    pub user_id: ID,
    /// The new role.
    pub role: GqlRole,
}

/// Input of `deactivateUser`.
#[derive(InputObject)]
pub struct DeactivateUserInput {
    /// The user.
    pub user_id: ID,
}

/// Input of `reactivateUser`.
#[derive(InputObject)]
pub struct ReactivateUserInput {
    /// The user.
    pub user_id: ID,
}

/// Input of `forcePasswordReset`.
#[derive(InputObject)]
pub struct ForcePasswordResetInput {
    /// The user.
    pub user_id: ID,
}

/// Input of `createApiKey`.
#[derive(InputObject)]
pub struct CreateApiKeyInput {
    /// 1–100 characters.
    pub name: String,
    /// Role granted; defaults to yours and may not exceed it.
    pub role: Option<GqlRole>,
    /// Expiry time (must be in the future); never expires when omitted.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Input of `revokeApiKey`.
#[derive(InputObject)]
pub struct RevokeApiKeyInput {
    /// The key.
    pub id: ID,
}

/// Auth queries.
#[derive(Default)]
pub struct AuthQuery;

#[Object]
impl AuthQuery {
    /// The caller.
    #[graphql(guard = "RoleGuard::allowing_password_change(Role::User)")]
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        let id = ctx.identity()?;
        Ok(User(service::find_user(&ctx.state().db, id.user_id).await?))
    }

    /// All users, oldest first (admin).
    #[graphql(
        guard = "RoleGuard::new(Role::Admin)",
        complexity = "first.or(last).unwrap_or(100).max(0) as usize * child_complexity"
    )]
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size from the start (default 100, at most 1000).")] first: Option<
            i32,
        >,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
        #[graphql(desc = "Page size from the end.")] last: Option<i32>,
        #[graphql(desc = "Cursor to end before.")] before: Option<String>,
    ) -> async_graphql::Result<Connection<Cursor, User, TotalCount>> {
        let page = Page::from_args(
            PageArgs {
                first,
                after,
                last,
                before,
            },
            100,
            1000,
        )?;
        let rows = service::list_users(&ctx.state().db, &page).await?;
        let mut conn = Connection::with_additional_fields(
            rows.has_previous,
            rows.has_next,
            TotalCount::new(|s| async move { service::count_users(&s.db).await }),
        );
        conn.edges
            .extend(rows.items.into_iter().map(|(c, u)| Edge::new(c, User(u))));
        Ok(conn)
    }

    /// One user by id (moderator and above).
    #[graphql(guard = "RoleGuard::new(Role::Moderator)")]
    async fn user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id.")] id: ID,
    ) -> async_graphql::Result<User> {
        let id = parse_id("id", &id)?;
        Ok(User(service::find_user(&ctx.state().db, id).await?))
    }

    /// The caller's API keys, newest first.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn api_keys(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ApiKey>> {
        let me = ctx.identity()?;
        Ok(service::list_api_keys(&ctx.state().db, me)
            .await?
            .into_iter()
            .map(ApiKey)
            .collect())
    }
}

/// Auth mutations.
#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Logs in and returns a session token.
    async fn login(&self, ctx: &Context<'_>, input: LoginInput) -> async_graphql::Result<Session> {
        let login = match (input.username, input.email) {
            (Some(u), None) => u,
            (None, Some(e)) => e,
            (Some(_), Some(_)) => {
                return Err(AppError::bad_input(
                    "username",
                    "give either username or email, not both",
                )
                .into());
            }
            (None, None) => {
                return Err(
                    AppError::bad_input("username", "username or email is required").into(),
                );
            }
        };
        let result = service::login(ctx.state(), ctx.request(), &login, &input.password).await?;
        Ok(Session {
            token: result.token,
            expires_at: result.session.expires_at,
            user: User(result.user),
        })
    }

    /// Ends the current session.
    #[graphql(guard = "RoleGuard::allowing_password_change(Role::User)")]
    async fn logout(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        service::logout(ctx.state(), ctx.identity()?).await?;
        Ok(true)
    }

    /// Ends every session of the caller; returns how many ended.
    #[graphql(guard = "RoleGuard::allowing_password_change(Role::User)")]
    async fn logout_all(&self, ctx: &Context<'_>) -> async_graphql::Result<u64> {
        Ok(service::logout_all(ctx.state(), ctx.identity()?).await?)
    }

    /// Changes the caller's password; the caller's other sessions end.
    #[graphql(guard = "RoleGuard::allowing_password_change(Role::User)")]
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        input: ChangePasswordInput,
    ) -> async_graphql::Result<User> {
        let me = ctx.identity()?;
        Ok(User(
            service::change_password(
                ctx.state(),
                me,
                &input.current_password,
                &input.new_password,
            )
            .await?,
        ))
    }

    /// Creates a user (admin).
    #[graphql(guard = "RoleGuard::new(Role::Admin)")]
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        input: CreateUserInput,
    ) -> async_graphql::Result<User> {
        let new = service::NewUser {
            username: input.username,
            email: input.email,
            password: input.password,
            role: input.role.into(),
        };
        Ok(User(service::create_user(&ctx.state().db, new).await?))
    }

    /// Changes a user's role (admin). The last active admin cannot be demoted.
    #[graphql(guard = "RoleGuard::new(Role::Admin)")]
    async fn set_user_role(
        &self,
        ctx: &Context<'_>,
        input: SetUserRoleInput,
    ) -> async_graphql::Result<User> {
        let id = parse_id("userId", &input.user_id)?;
        Ok(User(
            service::set_user_role(ctx.state(), id, input.role.into()).await?,
        ))
    }

    /// Deactivates a user (admin): their sessions end and their API keys stop working at once.
    #[graphql(guard = "RoleGuard::new(Role::Admin)")]
    async fn deactivate_user(
        &self,
        ctx: &Context<'_>,
        input: DeactivateUserInput,
    ) -> async_graphql::Result<User> {
        let id = parse_id("userId", &input.user_id)?;
        Ok(User(
            service::set_user_active(ctx.state(), id, false).await?,
        ))
    }

    /// Reactivates a deactivated user (admin).
    #[graphql(guard = "RoleGuard::new(Role::Admin)")]
    async fn reactivate_user(
        &self,
        ctx: &Context<'_>,
        input: ReactivateUserInput,
    ) -> async_graphql::Result<User> {
        let id = parse_id("userId", &input.user_id)?;
        Ok(User(service::set_user_active(ctx.state(), id, true).await?))
    }

    /// Ends a user's sessions and makes them change their password at next
    /// login (moderator and above; a moderator may not do this to an admin).
    #[graphql(guard = "RoleGuard::new(Role::Moderator)")]
    async fn force_password_reset(
        &self,
        ctx: &Context<'_>,
        input: ForcePasswordResetInput,
    ) -> async_graphql::Result<User> {
        let id = parse_id("userId", &input.user_id)?;
        Ok(User(
            service::force_password_reset(ctx.state(), ctx.identity()?, id).await?,
        ))
    }

    /// Creates an API key for the caller; its secret is shown only in this response.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> async_graphql::Result<CreatedApiKey> {
        let new = service::NewApiKey {
            name: input.name,
            role: input.role.map(Into::into),
            expires_at: input.expires_at,
        };
        let (key, secret) = service::create_api_key(ctx.state(), ctx.identity()?, new).await?;
        Ok(CreatedApiKey {
            api_key: ApiKey(key),
            secret,
        })
    }

    /// Revokes one of the caller's API keys (an admin may revoke any); it stops working at once.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn revoke_api_key(
        &self,
        ctx: &Context<'_>,
        input: RevokeApiKeyInput,
    ) -> async_graphql::Result<ApiKey> {
        let id = parse_id("id", &input.id)?;
        Ok(ApiKey(
            service::revoke_api_key(ctx.state(), ctx.identity()?, id).await?,
        ))
    }
}
