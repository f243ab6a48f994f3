//! DataLoaders for the alerts domain's nested lookups (a rule of an alert or
//! transition, an alert of a transition, the active alerts of a rule, a
//! silence); users come from [`crate::auth::loader::UserLoader`]. They batch
//! without caching, so a long-lived subscription never serves stale rows.

use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, Loader, NoCache};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::entity::{instance, rule, silence};
use super::service;

/// The loaders attached to every GraphQL request.
pub fn attach(request: async_graphql::Request, db: &DatabaseConnection) -> async_graphql::Request {
    request
        .data(DataLoader::with_cache(
            AlertRuleLoader(db.clone()),
            tokio::spawn,
            NoCache,
        ))
        .data(DataLoader::with_cache(
            AlertLoader(db.clone()),
            tokio::spawn,
            NoCache,
        ))
        .data(DataLoader::with_cache(
            ActiveAlertsLoader(db.clone()),
            tokio::spawn,
            NoCache,
        ))
        .data(DataLoader::with_cache(
            SilenceLoader(db.clone()),
            tokio::spawn,
            NoCache,
        ))
}

/// Rules by id.
pub struct AlertRuleLoader(pub DatabaseConnection);

impl Loader<Uuid> for AlertRuleLoader {
    type Value = rule::Model;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, rule::Model>, Self::Error> {
        let rows = service::rules_by_ids(&self.0, keys).await?;
        Ok(rows.into_iter().map(|r| (r.id, r)).collect())
    }
}

/// Alerts (instances) by id.
pub struct AlertLoader(pub DatabaseConnection);

impl Loader<Uuid> for AlertLoader {
    type Value = instance::Model;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, instance::Model>, Self::Error> {
        let rows = service::alerts_by_ids(&self.0, keys).await?;
        Ok(rows.into_iter().map(|r| (r.id, r)).collect())
    }
}

/// The pending and firing alerts of rules, by rule id.
pub struct ActiveAlertsLoader(pub DatabaseConnection);

impl Loader<Uuid> for ActiveAlertsLoader {
    type Value = Vec<instance::Model>;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<instance::Model>>, Self::Error> {
        let rows = service::active_alerts_of_rules(&self.0, keys).await?;
        let mut out: HashMap<Uuid, Vec<instance::Model>> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for row in rows {
            out.entry(row.rule_id).or_default().push(row);
        }
        Ok(out)
    }
}

/// Silences by id.
pub struct SilenceLoader(pub DatabaseConnection);

impl Loader<Uuid> for SilenceLoader {
    type Value = silence::Model;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, silence::Model>, Self::Error> {
        let rows = service::silences_by_ids(&self.0, keys).await?;
        Ok(rows.into_iter().map(|r| (r.id, r)).collect())
    }
}

/// The loader of type `L` attached to the request.
pub fn loader<'a, L: Send + Sync + 'static>(
    ctx: &'a async_graphql::Context<'_>,
) -> &'a DataLoader<L, NoCache> {
    ctx.data_unchecked::<DataLoader<L, NoCache>>()
}
