//! DataLoaders of the auth domain, attached to every GraphQL request in
//! [`crate::graphql::prepare_request`]: batch nested user lookups (an
//! event's `createdBy`, an incident's assignee, ...) into one query.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::entity::user;
use super::service;

/// Loads users by id: the one user loader of every domain (event senders,
/// incident people, rule and silence creators, alert acknowledgers).
pub struct UserLoader {
    db: DatabaseConnection,
}

impl UserLoader {
    /// A loader reading through `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        UserLoader { db }
    }
}

impl Loader<Uuid> for UserLoader {
    type Value = user::Model;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, user::Model>, Self::Error> {
        let users = service::users_by_ids(&self.db, keys).await?;
        Ok(users.into_iter().map(|u| (u.id, u)).collect())
    }
}
