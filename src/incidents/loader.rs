//! DataLoaders for everything nested under an incident, so a list of
//! incidents costs a constant number of statements whatever its length:
//! notes and audit entries (the first page of each incident's, in one
//! windowed query), linked alerts (two statements for any number of
//! incidents) and analyses. Users (creators, assignees, note authors, change
//! actors) come from [`crate::auth::loader::UserLoader`].
//!
//! None of them depends on the viewer: access is decided on the incident
//! itself before anything nested is resolved.
//!
//! A DataLoader batches the keys that arrive within its short delay, which
//! depends on timing: a long list resolved on a busy machine would be split
//! into several batches. [`Prefetch`] makes the batching deterministic: the
//! objects of one list share a `Prefetch` holding every key of the list, and
//! the first nested field resolved asks the DataLoader for all of them in
//! one call; the rest of the list reads the result.

use std::collections::HashMap;
use std::hash::Hash;

use async_graphql::Context;
use async_graphql::dataloader::{DataLoader, Loader};
use sea_orm::sea_query::{Asterisk, Expr, ExprTrait, Order, Query, WindowStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoIdentity, QueryFilter,
};
use uuid::Uuid;

use super::entity::{analysis, change, incident_alert, note};
use crate::alerts::entity::instance;
use crate::error::AppResult;
use crate::pagination::{Cursor, after_condition};

/// The keys of one list of objects, looked up together on first use.
pub struct Prefetch<K, V> {
    keys: Vec<K>,
    cell: tokio::sync::OnceCell<HashMap<K, V>>,
}

impl<K, V> Prefetch<K, V>
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
    V: Send + Sync + Clone + 'static,
{
    /// A prefetch of these keys (duplicates are dropped).
    pub fn new(keys: impl IntoIterator<Item = K>) -> Self {
        let mut seen = std::collections::HashSet::new();
        let keys = keys
            .into_iter()
            .filter(|k| seen.insert(k.clone()))
            .collect();
        Prefetch {
            keys,
            cell: tokio::sync::OnceCell::new(),
        }
    }

    /// The values of every key, loaded once through the request's `L` loader.
    pub async fn get<L>(&self, ctx: &Context<'_>) -> async_graphql::Result<&HashMap<K, V>>
    where
        L: Loader<K, Value = V, Error = async_graphql::Error>,
    {
        self.cell
            .get_or_try_init(|| async {
                ctx.data_unchecked::<DataLoader<L>>()
                    .load_many(self.keys.iter().cloned())
                    .await
            })
            .await
    }
}

fn gql(e: crate::error::AppError) -> async_graphql::Error {
    e.into()
}

/// A page of an incident's notes or audit entries: the `limit + 1` oldest
/// after the cursor (the extra one tells whether more exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageKey {
    /// The incident.
    pub incident_id: Uuid,
    /// Exclusive lower bound.
    pub after: Option<Cursor>,
    /// Page size.
    pub limit: u64,
}

/// For each incident in `ids`, its first `limit + 1` rows after `after`
/// ordered by `(at, id)`: one statement (`ROW_NUMBER() OVER (PARTITION BY
/// incident_id ...)`) for any number of incidents.
async fn first_rows_per_incident<E>(
    db: &impl ConnectionTrait,
    incident_col: E::Column,
    at_col: E::Column,
    id_col: E::Column,
    ids: &[Uuid],
    after: Option<Cursor>,
    limit: u64,
) -> AppResult<Vec<E::Model>>
where
    E: EntityTrait,
    E::Column: ColumnTrait + Copy,
{
    let mut window = WindowStatement::partition_by(incident_col);
    window
        .order_by(at_col, Order::Asc)
        .order_by(id_col, Order::Asc);
    let mut inner = Query::select();
    inner
        .column(Asterisk)
        .expr_window_as(Expr::cust("ROW_NUMBER()"), window, "rn")
        .from(E::default())
        .and_where(incident_col.is_in(ids.iter().copied()));
    if let Some(c) = &after {
        inner.cond_where(after_condition(at_col, id_col, c, true));
    }
    let mut outer = Query::select();
    outer
        .column(Asterisk)
        .from_subquery(inner.to_owned(), "ranked")
        .and_where(Expr::col("rn".into_identity()).lte((limit + 1) as i64))
        .order_by(incident_col, Order::Asc)
        .order_by(at_col, Order::Asc)
        .order_by(id_col, Order::Asc);
    let stmt = db.get_database_backend().build(&outer);
    Ok(E::find().from_raw_sql(stmt).all(db).await?)
}

fn group<V>(keys: &[PageKey], rows: Vec<V>, key_of: impl Fn(&V) -> Uuid) -> HashMap<Uuid, Vec<V>> {
    let mut out: HashMap<Uuid, Vec<V>> = keys.iter().map(|k| (k.incident_id, Vec::new())).collect();
    for r in rows {
        out.entry(key_of(&r)).or_default().push(r);
    }
    out
}

/// Splits keys by their page shape: each shape is one windowed statement.
fn shapes(keys: &[PageKey]) -> HashMap<(Option<Cursor>, u64), Vec<PageKey>> {
    let mut by_shape: HashMap<(Option<Cursor>, u64), Vec<PageKey>> = HashMap::new();
    for k in keys {
        by_shape.entry((k.after, k.limit)).or_default().push(*k);
    }
    by_shape
}

/// Pages of incidents' notes, oldest first.
pub struct NotesLoader(pub DatabaseConnection);

impl Loader<PageKey> for NotesLoader {
    type Value = Vec<note::Model>;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[PageKey],
    ) -> Result<HashMap<PageKey, Vec<note::Model>>, Self::Error> {
        let mut out = HashMap::new();
        for ((after, limit), group_keys) in shapes(keys) {
            let ids: Vec<Uuid> = group_keys.iter().map(|k| k.incident_id).collect();
            let rows = first_rows_per_incident::<note::Entity>(
                &self.0,
                note::Column::IncidentId,
                note::Column::CreatedAt,
                note::Column::Id,
                &ids,
                after,
                limit,
            )
            .await
            .map_err(gql)?;
            let mut by_incident = group(&group_keys, rows, |n| n.incident_id);
            for k in group_keys {
                out.insert(k, by_incident.remove(&k.incident_id).unwrap_or_default());
            }
        }
        Ok(out)
    }
}

/// Pages of incidents' audit entries, oldest first.
pub struct ChangesLoader(pub DatabaseConnection);

impl Loader<PageKey> for ChangesLoader {
    type Value = Vec<change::Model>;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[PageKey],
    ) -> Result<HashMap<PageKey, Vec<change::Model>>, Self::Error> {
        let mut out = HashMap::new();
        for ((after, limit), group_keys) in shapes(keys) {
            let ids: Vec<Uuid> = group_keys.iter().map(|k| k.incident_id).collect();
            let rows = first_rows_per_incident::<change::Entity>(
                &self.0,
                change::Column::IncidentId,
                change::Column::At,
                change::Column::Id,
                &ids,
                after,
                limit,
            )
            .await
            .map_err(gql)?;
            let mut by_incident = group(&group_keys, rows, |c| c.incident_id);
            for k in group_keys {
                out.insert(k, by_incident.remove(&k.incident_id).unwrap_or_default());
            }
        }
        Ok(out)
    }
}

/// The alerts (instances) linked to incidents, oldest link first: the links
/// of every key in one statement, their alerts in another. An alert whose
/// rule was deleted is gone (with its rule) and so left out.
pub struct IncidentAlertsLoader(pub DatabaseConnection);

impl Loader<Uuid> for IncidentAlertsLoader {
    type Value = Vec<instance::Model>;
    type Error = async_graphql::Error;

    async fn load(
        &self,
        keys: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<instance::Model>>, Self::Error> {
        let mut links = incident_alert::Entity::find()
            .filter(incident_alert::Column::IncidentId.is_in(keys.iter().copied()))
            .all(&self.0)
            .await
            .map_err(|e| gql(e.into()))?;
        links.sort_by_key(|a| (a.incident_id, a.linked_at, a.instance_id));
        let mut ids: Vec<Uuid> = links.iter().map(|l| l.instance_id).collect();
        ids.sort();
        ids.dedup();
        let alerts: HashMap<Uuid, instance::Model> = if ids.is_empty() {
            HashMap::new()
        } else {
            crate::alerts::service::alerts_by_ids(&self.0, &ids)
                .await
                .map_err(gql)?
                .into_iter()
                .map(|a| (a.id, a))
                .collect()
        };
        let mut out: HashMap<Uuid, Vec<instance::Model>> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for link in links {
            if let Some(a) = alerts.get(&link.instance_id) {
                out.entry(link.incident_id).or_default().push(a.clone());
            }
        }
        Ok(out)
    }
}

/// The stored analysis of incidents.
pub struct AnalysisLoader(pub DatabaseConnection);

impl Loader<Uuid> for AnalysisLoader {
    type Value = analysis::Model;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, analysis::Model>, Self::Error> {
        let rows = analysis::Entity::find()
            .filter(analysis::Column::IncidentId.is_in(keys.iter().copied()))
            .all(&self.0)
            .await
            .map_err(|e| gql(e.into()))?;
        Ok(rows.into_iter().map(|r| (r.incident_id, r)).collect())
    }
}

/// How many rows of `E` each incident has: one `GROUP BY` statement.
async fn counts_per_incident<E>(
    db: &impl ConnectionTrait,
    incident_col: E::Column,
    keys: &[Uuid],
) -> AppResult<HashMap<Uuid, u64>>
where
    E: EntityTrait,
    E::Column: ColumnTrait + Copy,
{
    let mut q = Query::select();
    q.column(incident_col)
        .expr_as(Expr::cust("COUNT(*)"), "n")
        .from(E::default())
        .and_where(incident_col.is_in(keys.iter().copied()))
        .group_by_col(incident_col);
    let mut out: HashMap<Uuid, u64> = keys.iter().map(|k| (*k, 0)).collect();
    for row in db.query_all(&q).await? {
        let id: Uuid = row.try_get("", "incident_id")?;
        let n: i64 = row.try_get("", "n")?;
        out.insert(id, u64::try_from(n).unwrap_or(0));
    }
    Ok(out)
}

/// How many notes incidents have.
pub struct NoteCountLoader(pub DatabaseConnection);

impl Loader<Uuid> for NoteCountLoader {
    type Value = u64;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, u64>, Self::Error> {
        counts_per_incident::<note::Entity>(&self.0, note::Column::IncidentId, keys)
            .await
            .map_err(gql)
    }
}

/// How many audited changes incidents have.
pub struct ChangeCountLoader(pub DatabaseConnection);

impl Loader<Uuid> for ChangeCountLoader {
    type Value = u64;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, u64>, Self::Error> {
        counts_per_incident::<change::Entity>(&self.0, change::Column::IncidentId, keys)
            .await
            .map_err(gql)
    }
}

/// Attaches this domain's loaders to a request.
pub fn attach(request: async_graphql::Request, db: &DatabaseConnection) -> async_graphql::Request {
    request
        .data(DataLoader::new(NotesLoader(db.clone()), tokio::spawn))
        .data(DataLoader::new(ChangesLoader(db.clone()), tokio::spawn))
        .data(DataLoader::new(
            IncidentAlertsLoader(db.clone()),
            tokio::spawn,
        ))
        .data(DataLoader::new(AnalysisLoader(db.clone()), tokio::spawn))
        .data(DataLoader::new(NoteCountLoader(db.clone()), tokio::spawn))
        .data(DataLoader::new(ChangeCountLoader(db.clone()), tokio::spawn))
}
