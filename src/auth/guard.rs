//! Field guards and context accessors for resolvers.

use std::pin::Pin;

use async_graphql::{Context, Guard};
use futures_util::Stream;

use super::{Identity, RequestContext, Role};
use crate::error::AppError;
use crate::pubsub::{Delivery, SourceMark, Topic, Topics};
use crate::state::AppState;

/// Access to the request's caller and the app state from a resolver.
pub trait ContextExt {
    /// The app state.
    fn state(&self) -> &AppState;
    /// The request context (auth, client address).
    fn request(&self) -> &RequestContext;
    /// The caller, or `UNAUTHENTICATED`.
    fn identity(&self) -> Result<&Identity, AppError>;
    /// Subscribes a subscription resolver to one of the hub's topics,
    /// recording the item each delivery comes from when the subscription
    /// shares its execution (see [`crate::fanout`]).
    fn live<T: Clone + Send + 'static>(
        &self,
        topic: impl FnOnce(&Topics) -> &Topic<T>,
    ) -> Pin<Box<dyn Stream<Item = Delivery<T>> + Send>>;
}

impl ContextExt for Context<'_> {
    fn state(&self) -> &AppState {
        self.data_unchecked::<AppState>()
    }

    fn request(&self) -> &RequestContext {
        self.data_unchecked::<RequestContext>()
    }

    fn identity(&self) -> Result<&Identity, AppError> {
        self.request().auth.identity()
    }

    fn live<T: Clone + Send + 'static>(
        &self,
        topic: impl FnOnce(&Topics) -> &Topic<T>,
    ) -> Pin<Box<dyn Stream<Item = Delivery<T>> + Send>> {
        topic(self.state().hub.topics()).subscribe_marked(self.data_opt::<SourceMark>().cloned())
    }
}

/// Passes for callers at `role` or above. Callers who must change their
/// password are refused unless the guard allows it.
pub struct RoleGuard {
    role: Role,
    allow_pending_password_change: bool,
}

impl RoleGuard {
    /// A guard at `role`.
    pub fn new(role: Role) -> Self {
        RoleGuard {
            role,
            allow_pending_password_change: false,
        }
    }

    /// A guard at `role` that also admits callers who must change their password.
    pub fn allowing_password_change(role: Role) -> Self {
        RoleGuard {
            role,
            allow_pending_password_change: true,
        }
    }

    /// The check itself, usable outside GraphQL (REST, subscriptions).
    pub fn check_identity(&self, identity: &Identity) -> Result<(), AppError> {
        if identity.must_change_password && !self.allow_pending_password_change {
            return Err(AppError::forbidden(
                "you must change your password first (changePassword)",
            ));
        }
        if !identity.has_role(self.role) {
            return Err(AppError::forbidden(format!(
                "this requires the {} role or higher",
                self.role
            )));
        }
        Ok(())
    }
}

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let identity = ctx.identity()?;
        Ok(self.check_identity(identity)?)
    }
}
