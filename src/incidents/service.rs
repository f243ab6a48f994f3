//! Incident services: create, change, note and read incidents, each change
//! validated, applied and audited in one transaction and published once it
//! has committed. Other domains call these directly (the alert evaluator
//! opens incidents with [`open_for_alert`]; the statistics read
//! [`open_count`]).
//!
//! Access: any authenticated user may create an incident; users see and
//! change the incidents they created or are assigned to, moderators and
//! admins all of them. An incident a caller may not see is `NOT_FOUND` to
//! them, so its existence is not revealed.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait,
    DatabaseTransaction, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Select, Statement,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::entity::{change, incident, incident_alert, note};
use super::lifecycle::{self, Stamps};
use super::model::{self, Severity, Status};
use crate::auth::entity::user;
use crate::auth::{Identity, Role};
use crate::db::Backend;
use crate::error::{AppError, AppResult};
use crate::pagination::{Cursor, Page, Rows, after_condition};
use crate::pubsub::{Announcement, Published};
use crate::state::AppState;
use crate::util;

/// An incident to create, as the client sent it.
#[derive(Debug, Clone, Default)]
pub struct NewIncident {
    /// 1–200 characters.
    pub title: String,
    /// At most 10,000 characters.
    pub description: Option<String>,
    /// Defaults to `medium`.
    pub severity: Option<Severity>,
    /// When it began; defaults to now, may be in the past.
    pub started_at: Option<DateTime<Utc>>,
    /// An active user.
    pub assigned_to: Option<Uuid>,
    /// A JSON object of strings.
    pub labels: Option<Value>,
    /// The services involved.
    pub sources: Vec<String>,
}

/// A change to one field: leave it, clear it, or set it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Patch<T> {
    /// Leave the field as it is.
    #[default]
    Keep,
    /// Clear the field (null).
    Clear,
    /// Set the field.
    Set(T),
}

impl<T> Patch<T> {
    /// From GraphQL's three-state input value.
    pub fn from_maybe(v: async_graphql::MaybeUndefined<T>) -> Patch<T> {
        match v {
            async_graphql::MaybeUndefined::Undefined => Patch::Keep,
            async_graphql::MaybeUndefined::Null => Patch::Clear,
            async_graphql::MaybeUndefined::Value(v) => Patch::Set(v),
        }
    }

    /// From a JSON body field: absent, `null`, or a value.
    pub fn from_option(v: Option<Option<T>>) -> Patch<T> {
        match v {
            None => Patch::Keep,
            Some(None) => Patch::Clear,
            Some(Some(v)) => Patch::Set(v),
        }
    }

    fn is_keep(&self) -> bool {
        matches!(self, Patch::Keep)
    }
}

/// Changes to an incident's fields (`updateIncident`, REST `PUT`).
#[derive(Debug, Clone, Default)]
pub struct IncidentPatch {
    /// Required: may be changed, not cleared.
    pub title: Patch<String>,
    /// Clearable.
    pub description: Patch<String>,
    /// Required: may be changed, not cleared.
    pub severity: Patch<Severity>,
    /// Required; must be a legal transition (the same status is no change).
    pub status: Patch<Status>,
    /// Clearable.
    pub root_cause: Patch<String>,
    /// Clearable (unassign); moderators or the creator only.
    pub assigned_to: Patch<Uuid>,
    /// Clearing sets no labels.
    pub labels: Patch<Value>,
    /// Clearing sets no sources.
    pub sources: Patch<Vec<String>>,
}

/// One field's change, as audited and published.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FieldChange {
    /// The field, in the API's camelCase (`status`, `assignedTo`, `note`, ...).
    pub field: String,
    /// The value before (`None` when there was none).
    pub from: Option<Value>,
    /// The value after (`None` when cleared).
    pub to: Option<Value>,
}

/// A committed change of one incident, as published to live subscribers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IncidentUpdate {
    /// The incident after the change.
    pub incident: incident::Model,
    /// What changed.
    pub changes: Vec<FieldChange>,
    /// Who changed it (`None` for the system).
    pub actor: Option<Uuid>,
    /// When.
    pub at: DateTime<Utc>,
}

/// What the `incidents` topic carries.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum IncidentEvent {
    /// A new incident.
    Created(incident::Model),
    /// A change to an incident (fields, status, assignment, notes).
    Updated(IncidentUpdate),
}

impl IncidentEvent {
    /// The incident concerned, in its committed state.
    pub fn incident(&self) -> &incident::Model {
        match self {
            IncidentEvent::Created(m) => m,
            IncidentEvent::Updated(u) => &u.incident,
        }
    }
}

/// A firing alert instance, as the alert evaluator hands it over.
#[derive(Debug, Clone)]
pub struct FiringAlert {
    /// The alert instance.
    pub instance_id: Uuid,
    /// Its rule.
    pub rule_id: Uuid,
    /// The rule's name.
    pub rule_name: String,
    /// The instance's labels.
    pub labels: BTreeMap<String, String>,
    /// Severity of the incident to open.
    pub severity: Severity,
    /// The value that made it fire.
    pub value: Option<f64>,
    /// When it started firing.
    pub fired_at: DateTime<Utc>,
    /// A human summary from the rule.
    pub summary: Option<String>,
}

/// Whether the caller may see (and so change) the incident.
pub fn can_see(identity: &Identity, inc: &incident::Model) -> bool {
    identity.has_role(Role::Moderator)
        || inc.created_by == Some(identity.user_id)
        || inc.assigned_to == Some(identity.user_id)
}

/// Whether the caller may set or change the assignee: moderators, and the
/// creator of the incident.
pub fn can_assign(identity: &Identity, inc: &incident::Model) -> bool {
    identity.has_role(Role::Moderator) || inc.created_by == Some(identity.user_id)
}

fn not_found() -> AppError {
    AppError::not_found("incident")
}

fn time_json(t: DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

fn opt_time_json(t: Option<DateTime<Utc>>) -> Option<Value> {
    t.map(time_json)
}

fn opt_str_json(s: &Option<String>) -> Option<Value> {
    s.as_ref().map(|s| Value::String(s.clone()))
}

fn opt_uuid_json(u: Option<Uuid>) -> Option<Value> {
    u.map(|u| Value::String(u.to_string()))
}

/// The audited differences between two states of an incident, in a fixed
/// field order.
pub fn diff(before: &incident::Model, after: &incident::Model) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut push = |field: &str, from: Option<Value>, to: Option<Value>| {
        if from != to {
            out.push(FieldChange {
                field: field.to_owned(),
                from,
                to,
            });
        }
    };
    push(
        "title",
        Some(Value::String(before.title.clone())),
        Some(Value::String(after.title.clone())),
    );
    push(
        "description",
        opt_str_json(&before.description),
        opt_str_json(&after.description),
    );
    push(
        "severity",
        Some(Value::String(before.severity.clone())),
        Some(Value::String(after.severity.clone())),
    );
    push(
        "status",
        Some(Value::String(before.status.clone())),
        Some(Value::String(after.status.clone())),
    );
    push(
        "acknowledgedAt",
        opt_time_json(before.acknowledged_at),
        opt_time_json(after.acknowledged_at),
    );
    push(
        "resolvedAt",
        opt_time_json(before.resolved_at),
        opt_time_json(after.resolved_at),
    );
    push(
        "closedAt",
        opt_time_json(before.closed_at),
        opt_time_json(after.closed_at),
    );
    push(
        "rootCause",
        opt_str_json(&before.root_cause),
        opt_str_json(&after.root_cause),
    );
    push(
        "assignedTo",
        opt_uuid_json(before.assigned_to),
        opt_uuid_json(after.assigned_to),
    );
    push(
        "labels",
        Some(before.labels.clone()),
        Some(after.labels.clone()),
    );
    push(
        "sources",
        Some(before.sources.clone()),
        Some(after.sources.clone()),
    );
    out
}

/// The snapshot recorded as the `created` change.
fn creation_snapshot(m: &incident::Model) -> Value {
    json!({
        "title": m.title,
        "description": m.description,
        "severity": m.severity,
        "status": m.status,
        "startedAt": time_json(m.started_at),
        "assignedTo": m.assigned_to.map(|u| u.to_string()),
        "labels": m.labels,
        "sources": m.sources,
    })
}

async fn record_changes(
    txn: &DatabaseTransaction,
    incident_id: Uuid,
    actor: Option<Uuid>,
    at: DateTime<Utc>,
    changes: &[FieldChange],
) -> AppResult<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let rows = changes.iter().map(|c| change::ActiveModel {
        id: Set(Uuid::now_v7()),
        incident_id: Set(incident_id),
        actor_id: Set(actor),
        at: Set(at),
        field: Set(c.field.clone()),
        old_value: Set(c.from.clone()),
        new_value: Set(c.to.clone()),
    });
    change::Entity::insert_many(rows).exec(txn).await?;
    Ok(())
}

/// Reads the incident, holding it for the rest of the transaction (a
/// [`crate::db::begin_write`] one): on PostgreSQL its row is locked
/// `FOR UPDATE`; on SQLite the transaction already holds the database's
/// write lock.
async fn lock_incident(
    txn: &DatabaseTransaction,
    backend: Backend,
    id: Uuid,
) -> AppResult<Option<incident::Model>> {
    let find = incident::Entity::find_by_id(id);
    Ok(match backend {
        Backend::Postgres => find.lock_exclusive().one(txn).await?,
        Backend::Sqlite => find.one(txn).await?,
    })
}

/// Serialises `open_for_alert` calls for one alert instance (on SQLite the
/// [`crate::db::begin_write`] transaction already holds the write lock).
async fn lock_instance(
    txn: &DatabaseTransaction,
    backend: Backend,
    instance: Uuid,
) -> AppResult<()> {
    if backend == Backend::Postgres {
        let (hi, lo) = instance.as_u64_pair();
        let key = (hi ^ lo) as i64;
        txn.execute_raw(Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [key.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Checks that `user_id` names an active user (for assignment).
async fn ensure_assignable(db: &impl ConnectionTrait, user_id: Uuid) -> AppResult<()> {
    match user::Entity::find_by_id(user_id).one(db).await? {
        Some(u) if u.is_active => Ok(()),
        Some(_) => Err(AppError::bad_input(
            "assignedTo",
            "assignedTo must be an active user; this user is deactivated",
        )),
        None => Err(AppError::bad_input(
            "assignedTo",
            "assignedTo must be an active user; no user has this id",
        )),
    }
}

/// Publishes `event` as part of `txn`; call `committed()` on the result
/// after the commit.
async fn publish(
    state: &AppState,
    txn: &DatabaseTransaction,
    event: IncidentEvent,
) -> AppResult<Announcement> {
    state
        .hub
        .announce(txn, vec![Published::Incident(event)])
        .await
}

/// Creates an incident on behalf of `actor`.
#[tracing::instrument(skip_all, fields(actor = %actor.user_id))]
pub async fn create(
    state: &AppState,
    actor: &Identity,
    new: NewIncident,
) -> AppResult<incident::Model> {
    let now = util::now();
    let title = model::title("title", &new.title)?;
    let description = new
        .description
        .as_deref()
        .map(|d| model::text("description", d, false))
        .transpose()?;
    let started_at = match new.started_at {
        Some(t) => model::started_at(t, now)?,
        None => now,
    };
    let labels = match &new.labels {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => model::labels(v)?,
    };
    let sources = model::sources(&new.sources)?;
    let txn = crate::db::begin_write(&state.db).await?;
    if let Some(a) = new.assigned_to {
        ensure_assignable(&txn, a).await?;
    }
    let row = incident::ActiveModel {
        id: Set(Uuid::now_v7()),
        title: Set(title),
        description: Set(description),
        severity: Set(new.severity.unwrap_or(Severity::Medium).as_str().to_owned()),
        status: Set(Status::Open.as_str().to_owned()),
        started_at: Set(started_at),
        acknowledged_at: Set(None),
        resolved_at: Set(None),
        closed_at: Set(None),
        root_cause: Set(None),
        created_by: Set(Some(actor.user_id)),
        assigned_to: Set(new.assigned_to),
        labels: Set(model::labels_json(&labels)),
        sources: Set(model::sources_json(&sources)),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let created = row.insert(&txn).await?;
    record_changes(
        &txn,
        created.id,
        Some(actor.user_id),
        now,
        &[FieldChange {
            field: "created".to_owned(),
            from: None,
            to: Some(creation_snapshot(&created)),
        }],
    )
    .await?;
    crate::tasks::enqueue_incident_analysis(&txn, created.id).await?; // tasks: analysis queued with the incident
    let announced = publish(state, &txn, IncidentEvent::Created(created.clone())).await?;
    txn.commit().await?;
    tracing::info!(incident_id = %created.id, "incident created");
    announced.committed();
    Ok(created)
}

/// The incident's title when opened for a firing alert: the rule's name
/// followed by its labels, cut to 200 characters.
pub fn alert_title(rule_name: &str, labels: &BTreeMap<String, String>) -> String {
    let mut title = rule_name.trim().to_owned();
    if !labels.is_empty() {
        let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        title.push_str(&format!(" {{{}}}", parts.join(", ")));
    }
    let title = title.replace('\0', "");
    let title = if title.trim().is_empty() {
        "alert firing".to_owned()
    } else {
        title
    };
    title.chars().take(model::MAX_TITLE_CHARS).collect()
}

/// Opens an incident for a firing alert instance, unless an open or
/// investigating incident is already linked to that instance (then `None`).
/// In one transaction: the incident (created by the system, started when the
/// alert fired, titled after the rule and labels), its link to the instance
/// and the audited creation; `incidentCreated` is published after commit.
/// The alert's `source`, `service` or `job` label, when present, becomes the
/// incident's source.
#[tracing::instrument(skip_all, fields(instance_id = %alert.instance_id, rule_id = %alert.rule_id))]
pub async fn open_for_alert(
    state: &AppState,
    alert: &FiringAlert,
) -> AppResult<Option<incident::Model>> {
    let txn = crate::db::begin_write(&state.db).await?;
    let Some(created) = open_for_alert_in(&txn, state.backend, alert).await? else {
        txn.rollback().await?;
        return Ok(None);
    };
    let announced = publish(state, &txn, IncidentEvent::Created(created.clone())).await?;
    txn.commit().await?;
    tracing::info!(incident_id = %created.id, "incident opened for a firing alert");
    announced.committed();
    Ok(Some(created))
}

/// [`open_for_alert`] inside the caller's transaction (the alert
/// evaluator's, so the incident commits with the transition that opened
/// it): returns the new incident, or `None` when an open or investigating
/// incident is already linked to the instance. The caller commits, then
/// announces `IncidentEvent::Created` (see [`crate::alerts::evaluator::publish`]).
pub async fn open_for_alert_in(
    txn: &DatabaseTransaction,
    backend: Backend,
    alert: &FiringAlert,
) -> AppResult<Option<incident::Model>> {
    lock_instance(txn, backend, alert.instance_id).await?;
    let now = util::now();
    let linked = Query::select()
        .column(incident_alert::Column::IncidentId)
        .from(incident_alert::Entity)
        .and_where(incident_alert::Column::InstanceId.eq(alert.instance_id))
        .to_owned();
    let already = incident::Entity::find()
        .filter(incident::Column::Id.in_subquery(linked))
        .filter(
            incident::Column::Status.is_in([Status::Open.as_str(), Status::Investigating.as_str()]),
        )
        .count(txn)
        .await?;
    if already > 0 {
        return Ok(None);
    }
    let labels: BTreeMap<String, String> = alert
        .labels
        .iter()
        .filter(|(k, _)| !k.is_empty())
        .take(model::MAX_LABELS)
        .map(|(k, v)| {
            (
                k.chars()
                    .filter(|c| *c != '\0')
                    .take(model::MAX_LABEL_KEY_CHARS)
                    .collect(),
                v.chars()
                    .filter(|c| *c != '\0')
                    .take(model::MAX_LABEL_VALUE_CHARS)
                    .collect(),
            )
        })
        .collect();
    let sources: Vec<String> = ["source", "service", "job"]
        .iter()
        .filter_map(|k| labels.get(*k))
        .map(|s| {
            s.trim()
                .chars()
                .take(model::MAX_SOURCE_CHARS)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut description = match &alert.summary {
        Some(s) if !s.trim().is_empty() => s.clone(),
        _ => format!("Alert rule `{}` is firing.", alert.rule_name),
    };
    if let Some(v) = alert.value.filter(|v| v.is_finite()) {
        description.push_str(&format!("\nValue when it fired: {v}"));
    }
    let description: String = description
        .replace('\0', "")
        .chars()
        .take(model::MAX_TEXT_CHARS)
        .collect();
    let started_at = util::to_stored_precision(std::cmp::min(alert.fired_at, now));
    let row = incident::ActiveModel {
        id: Set(Uuid::now_v7()),
        title: Set(alert_title(&alert.rule_name, &labels)),
        description: Set(Some(description)),
        severity: Set(alert.severity.as_str().to_owned()),
        status: Set(Status::Open.as_str().to_owned()),
        started_at: Set(started_at),
        acknowledged_at: Set(None),
        resolved_at: Set(None),
        closed_at: Set(None),
        root_cause: Set(None),
        created_by: Set(None),
        assigned_to: Set(None),
        labels: Set(model::labels_json(&labels)),
        sources: Set(model::sources_json(&sources)),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let created = row.insert(txn).await?;
    incident_alert::ActiveModel {
        incident_id: Set(created.id),
        instance_id: Set(alert.instance_id),
        rule_id: Set(alert.rule_id),
        rule_name: Set(alert.rule_name.chars().take(200).collect()),
        linked_at: Set(now),
    }
    .insert(txn)
    .await?;
    let mut snapshot = creation_snapshot(&created);
    snapshot["alert"] = json!({
        "instanceId": alert.instance_id.to_string(),
        "ruleId": alert.rule_id.to_string(),
        "ruleName": alert.rule_name,
    });
    record_changes(
        txn,
        created.id,
        None,
        now,
        &[FieldChange {
            field: "created".to_owned(),
            from: None,
            to: Some(snapshot),
        }],
    )
    .await?;
    // Its analysis is queued in the same transaction, as for manual incidents.
    crate::tasks::enqueue_incident_analysis(txn, created.id).await?;
    Ok(Some(created))
}

/// A state change of an alert instance that incidents linked to it record:
/// the alert fired (again) or was resolved.
#[derive(Debug, Clone)]
pub struct AlertStateChange {
    /// The alert instance.
    pub instance_id: Uuid,
    /// Its rule's name.
    pub rule_name: String,
    /// The instance's labels.
    pub labels: BTreeMap<String, String>,
    /// The state before (`inactive`, `pending` or `firing`).
    pub from: String,
    /// The state after.
    pub to: String,
    /// The alert's value after the change.
    pub value: Option<f64>,
    /// When it happened (the evaluation time).
    pub at: DateTime<Utc>,
}

impl AlertStateChange {
    /// The audited `alert` change: the state before and after, with the alert named.
    fn field_change(&self) -> FieldChange {
        FieldChange {
            field: "alert".to_owned(),
            from: Some(json!({
                "alertId": self.instance_id.to_string(),
                "state": self.from,
            })),
            to: Some(json!({
                "alertId": self.instance_id.to_string(),
                "ruleName": self.rule_name,
                "labels": self.labels,
                "state": self.to,
                "value": self.value.filter(|v| v.is_finite()),
                "at": time_json(self.at),
            })),
        }
    }
}

/// What alert transitions did to incidents, inside the evaluator's
/// transaction (a [`crate::db::begin_write`] one, as every writer's): the
/// incidents it opened and the changes it recorded, to be announced with
/// the transaction ([`crate::alerts::evaluator::publish`]).
///
/// For each alert in `opening` (firing, unsilenced, of a rule with
/// `createIncident`), an incident is opened unless one is already open for
/// that alert ([`open_for_alert_in`]). Each change in `changes` (an alert
/// firing or resolving) is then audited as an `alert` change on every open
/// or investigating incident linked to that alert, except one just opened
/// for it (its creation says it): the incident is touched and an
/// `incidentUpdated` follows. Resolved and closed incidents are left alone
/// (a flapping alert does not rewrite old incidents' trails). Nothing is queried per alert except the
/// openings: the links are read in one statement per 500 alerts.
pub async fn apply_alert_changes_in(
    txn: &DatabaseTransaction,
    backend: Backend,
    opening: &[FiringAlert],
    changes: &[AlertStateChange],
) -> AppResult<Vec<IncidentEvent>> {
    let mut out = Vec::new();
    let mut opened: Vec<(Uuid, Uuid)> = Vec::new();
    for alert in opening {
        if let Some(created) = open_for_alert_in(txn, backend, alert).await? {
            opened.push((created.id, alert.instance_id));
            out.push(IncidentEvent::Created(created));
        }
    }
    if changes.is_empty() {
        return Ok(out);
    }
    let mut instances: Vec<Uuid> = changes.iter().map(|c| c.instance_id).collect();
    instances.sort();
    instances.dedup();
    let mut links: Vec<(Uuid, Uuid)> = Vec::new();
    let active = Query::select()
        .column(incident::Column::Id)
        .from(incident::Entity)
        .and_where(
            incident::Column::Status.is_in([Status::Open.as_str(), Status::Investigating.as_str()]),
        )
        .to_owned();
    // Bounded IN lists: a rule may resolve thousands of alerts at once.
    for chunk in instances.chunks(500) {
        let found: Vec<(Uuid, Uuid)> = incident_alert::Entity::find()
            .select_only()
            .column(incident_alert::Column::IncidentId)
            .column(incident_alert::Column::InstanceId)
            .filter(incident_alert::Column::InstanceId.is_in(chunk.iter().copied()))
            .filter(incident_alert::Column::IncidentId.in_subquery(active.clone()))
            .into_tuple()
            .all(txn)
            .await?;
        links.extend(found);
    }
    links.retain(|link| !opened.contains(link));
    links.sort();
    let mut by_incident: BTreeMap<Uuid, Vec<FieldChange>> = BTreeMap::new();
    for (incident_id, instance_id) in links {
        let fields = by_incident.entry(incident_id).or_default();
        fields.extend(
            changes
                .iter()
                .filter(|c| c.instance_id == instance_id)
                .map(AlertStateChange::field_change),
        );
    }
    for (incident_id, fields) in by_incident {
        let Some(current) = lock_incident(txn, backend, incident_id).await? else {
            continue;
        };
        // Re-checked under the lock: it may have been resolved meanwhile.
        if !Status::stored(&current.status).is_active() || fields.is_empty() {
            continue;
        }
        let now = util::now();
        let mut am = current.into_active_model();
        am.updated_at = Set(now);
        let updated = am.update(txn).await?;
        record_changes(txn, incident_id, None, now, &fields).await?;
        out.push(IncidentEvent::Updated(IncidentUpdate {
            incident: updated,
            changes: fields,
            actor: None,
            at: now,
        }));
    }
    Ok(out)
}

/// What a change operation does to the locked incident.
enum Op {
    Patch(IncidentPatch),
    Acknowledge,
    Resolve(Option<String>),
    Close,
    Reopen,
}

fn stamps(m: &incident::Model) -> Stamps {
    Stamps {
        acknowledged_at: m.acknowledged_at,
        resolved_at: m.resolved_at,
        closed_at: m.closed_at,
    }
}

fn set_status(next: &mut incident::Model, to: Status, now: DateTime<Utc>) -> AppResult<()> {
    let from = Status::stored(&next.status);
    lifecycle::check(from, to)?;
    let s = lifecycle::apply(from, to, stamps(next), now);
    next.status = to.as_str().to_owned();
    next.acknowledged_at = s.acknowledged_at;
    next.resolved_at = s.resolved_at;
    next.closed_at = s.closed_at;
    Ok(())
}

/// Validates an operation and applies it to `next` (a copy of the locked
/// row). Assignee existence is checked by the caller, in the transaction.
fn apply_op(
    actor: &Identity,
    next: &mut incident::Model,
    op: Op,
    now: DateTime<Utc>,
) -> AppResult<Option<Uuid>> {
    let mut new_assignee = None;
    match op {
        Op::Patch(p) => {
            if !p.assigned_to.is_keep() && !can_assign(actor, next) {
                // Re-stating the current assignee is not a change.
                let same = match &p.assigned_to {
                    Patch::Set(u) => next.assigned_to == Some(*u),
                    Patch::Clear => next.assigned_to.is_none(),
                    Patch::Keep => true,
                };
                if !same {
                    return Err(AppError::forbidden(
                        "only moderators may set or change the assignee of someone else's incident",
                    ));
                }
            }
            match p.title {
                Patch::Keep => {}
                Patch::Clear => {
                    return Err(AppError::bad_input("title", "title cannot be cleared"));
                }
                Patch::Set(t) => next.title = model::title("title", &t)?,
            }
            match p.description {
                Patch::Keep => {}
                Patch::Clear => next.description = None,
                Patch::Set(d) => next.description = Some(model::text("description", &d, false)?),
            }
            match p.severity {
                Patch::Keep => {}
                Patch::Clear => {
                    return Err(AppError::bad_input(
                        "severity",
                        "severity cannot be cleared",
                    ));
                }
                Patch::Set(s) => next.severity = s.as_str().to_owned(),
            }
            match p.root_cause {
                Patch::Keep => {}
                Patch::Clear => next.root_cause = None,
                Patch::Set(r) => next.root_cause = Some(model::text("rootCause", &r, false)?),
            }
            match p.labels {
                Patch::Keep => {}
                Patch::Clear => next.labels = model::labels_json(&BTreeMap::new()),
                Patch::Set(Value::Null) => next.labels = model::labels_json(&BTreeMap::new()),
                Patch::Set(v) => next.labels = model::labels_json(&model::labels(&v)?),
            }
            match p.sources {
                Patch::Keep => {}
                Patch::Clear => next.sources = model::sources_json(&[]),
                Patch::Set(s) => next.sources = model::sources_json(&model::sources(&s)?),
            }
            match p.assigned_to {
                Patch::Keep => {}
                Patch::Clear => next.assigned_to = None,
                Patch::Set(u) => {
                    if next.assigned_to != Some(u) {
                        new_assignee = Some(u);
                    }
                    next.assigned_to = Some(u);
                }
            }
            match p.status {
                Patch::Keep => {}
                Patch::Clear => {
                    return Err(AppError::bad_input("status", "status cannot be cleared"));
                }
                Patch::Set(s) if s.as_str() == next.status => {}
                Patch::Set(s) => set_status(next, s, now)?,
            }
        }
        Op::Acknowledge => {
            let status = Status::stored(&next.status);
            if !status.is_active() {
                return Err(AppError::bad_input(
                    "id",
                    format!(
                        "only open or investigating incidents can be acknowledged; this one is {status}"
                    ),
                ));
            }
            if next.acknowledged_at.is_none() {
                next.acknowledged_at = Some(now);
            }
        }
        Op::Resolve(root_cause) => {
            if let Some(r) = root_cause {
                next.root_cause = Some(model::text("rootCause", &r, false)?);
            }
            set_status(next, Status::Resolved, now)?;
        }
        Op::Close => set_status(next, Status::Closed, now)?,
        Op::Reopen => {
            let status = Status::stored(&next.status);
            if status != Status::Resolved {
                return Err(AppError::bad_input(
                    "status",
                    format!(
                        "only a resolved incident can be reopened; an incident cannot go from {status} to investigating by reopening"
                    ),
                ));
            }
            set_status(next, Status::Investigating, now)?;
        }
    }
    Ok(new_assignee)
}

/// Locks, validates, applies, audits and commits one operation; publishes it
/// when something changed. Returns the incident after the change.
async fn change_incident(
    state: &AppState,
    actor: &Identity,
    id: Uuid,
    op: Op,
) -> AppResult<incident::Model> {
    let txn = crate::db::begin_write(&state.db).await?;
    let Some(current) = lock_incident(&txn, state.backend, id).await? else {
        return Err(not_found());
    };
    // Read the clock under the lock, so the audit order is the commit order.
    let now = util::now();
    if !can_see(actor, &current) {
        return Err(not_found());
    }
    let mut next = current.clone();
    let new_assignee = apply_op(actor, &mut next, op, now)?;
    if let Some(u) = new_assignee {
        ensure_assignable(&txn, u).await?;
    }
    let changes = diff(&current, &next);
    if changes.is_empty() {
        txn.rollback().await?;
        return Ok(current);
    }
    next.updated_at = now;
    let updated = next.into_active_model().reset_all().update(&txn).await?;
    record_changes(&txn, id, Some(actor.user_id), now, &changes).await?;
    let fields = changes.len();
    let announced = publish(
        state,
        &txn,
        IncidentEvent::Updated(IncidentUpdate {
            incident: updated.clone(),
            changes,
            actor: Some(actor.user_id),
            at: now,
        }),
    )
    .await?;
    txn.commit().await?;
    tracing::info!(incident_id = %id, fields, "incident changed");
    announced.committed();
    Ok(updated)
}

/// Changes fields of an incident (`updateIncident`, REST `PUT`).
#[tracing::instrument(skip_all, fields(incident_id = %id))]
pub async fn update(
    state: &AppState,
    actor: &Identity,
    id: Uuid,
    patch: IncidentPatch,
) -> AppResult<incident::Model> {
    change_incident(state, actor, id, Op::Patch(patch)).await
}

/// Sets or clears the assignee (moderators, or the incident's creator).
#[tracing::instrument(skip_all, fields(incident_id = %id))]
pub async fn assign(
    state: &AppState,
    actor: &Identity,
    id: Uuid,
    assignee: Option<Uuid>,
) -> AppResult<incident::Model> {
    let patch = IncidentPatch {
        assigned_to: match assignee {
            Some(u) => Patch::Set(u),
            None => Patch::Clear,
        },
        ..IncidentPatch::default()
    };
    change_incident(state, actor, id, Op::Patch(patch)).await
}

/// Records the first acknowledgement (later ones change nothing).
#[tracing::instrument(skip_all, fields(incident_id = %id))]
pub async fn acknowledge(
    state: &AppState,
    actor: &Identity,
    id: Uuid,
) -> AppResult<incident::Model> {
    change_incident(state, actor, id, Op::Acknowledge).await
}

/// Resolves the incident, optionally recording its root cause.
#[tracing::instrument(skip_all, fields(incident_id = %id))]
pub async fn resolve(
    state: &AppState,
    actor: &Identity,
    id: Uuid,
    root_cause: Option<String>,
) -> AppResult<incident::Model> {
    change_incident(state, actor, id, Op::Resolve(root_cause)).await
}

/// Closes a resolved incident.
#[tracing::instrument(skip_all, fields(incident_id = %id))]
pub async fn close(state: &AppState, actor: &Identity, id: Uuid) -> AppResult<incident::Model> {
    change_incident(state, actor, id, Op::Close).await
}

/// Reopens a resolved incident (back to investigating; `resolvedAt` is cleared).
#[tracing::instrument(skip_all, fields(incident_id = %id))]
pub async fn reopen(state: &AppState, actor: &Identity, id: Uuid) -> AppResult<incident::Model> {
    change_incident(state, actor, id, Op::Reopen).await
}

fn note_json(n: &note::Model) -> Value {
    json!({ "id": n.id.to_string(), "body": n.body })
}

/// Touches the incident and audits a note change, in the transaction.
async fn note_changed(
    txn: &DatabaseTransaction,
    inc: &incident::Model,
    actor: Uuid,
    now: DateTime<Utc>,
    change: &FieldChange,
) -> AppResult<incident::Model> {
    let mut am = inc.clone().into_active_model();
    am.updated_at = Set(now);
    let updated = am.update(txn).await?;
    record_changes(txn, inc.id, Some(actor), now, std::slice::from_ref(change)).await?;
    Ok(updated)
}

/// Adds a note to an incident the caller may see.
#[tracing::instrument(skip_all, fields(incident_id = %incident_id))]
pub async fn add_note(
    state: &AppState,
    actor: &Identity,
    incident_id: Uuid,
    body: &str,
) -> AppResult<note::Model> {
    let body = model::text("body", body, true)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let inc = lock_incident(&txn, state.backend, incident_id)
        .await?
        .filter(|i| can_see(actor, i))
        .ok_or_else(not_found)?;
    let now = util::now();
    let created = note::ActiveModel {
        id: Set(Uuid::now_v7()),
        incident_id: Set(incident_id),
        author_id: Set(Some(actor.user_id)),
        body: Set(body),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let change = FieldChange {
        field: "note".to_owned(),
        from: None,
        to: Some(note_json(&created)),
    };
    let updated = note_changed(&txn, &inc, actor.user_id, now, &change).await?;
    let announced = publish_note(state, &txn, updated, change, actor.user_id, now).await?;
    txn.commit().await?;
    announced.committed();
    Ok(created)
}

async fn publish_note(
    state: &AppState,
    txn: &DatabaseTransaction,
    incident: incident::Model,
    change: FieldChange,
    actor: Uuid,
    at: DateTime<Utc>,
) -> AppResult<Announcement> {
    publish(
        state,
        txn,
        IncidentEvent::Updated(IncidentUpdate {
            incident,
            changes: vec![change],
            actor: Some(actor),
            at,
        }),
    )
    .await
}

/// Locks the note's incident and checks the caller may see it.
async fn lock_note(
    state: &AppState,
    txn: &DatabaseTransaction,
    actor: &Identity,
    note_id: Uuid,
) -> AppResult<(note::Model, incident::Model)> {
    let missing = || AppError::not_found("note");
    let found = note::Entity::find_by_id(note_id)
        .one(txn)
        .await?
        .ok_or_else(missing)?;
    let inc = lock_incident(txn, state.backend, found.incident_id)
        .await?
        .filter(|i| can_see(actor, i))
        .ok_or_else(missing)?;
    // Re-read under the lock: the note may have gone meanwhile.
    let found = note::Entity::find_by_id(note_id)
        .one(txn)
        .await?
        .ok_or_else(missing)?;
    Ok((found, inc))
}

/// Edits one of the caller's own notes.
#[tracing::instrument(skip_all, fields(note_id = %note_id))]
pub async fn edit_note(
    state: &AppState,
    actor: &Identity,
    note_id: Uuid,
    body: &str,
) -> AppResult<note::Model> {
    let body = model::text("body", body, true)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let (found, inc) = lock_note(state, &txn, actor, note_id).await?;
    let now = util::now();
    if found.author_id != Some(actor.user_id) {
        return Err(AppError::forbidden("you may only edit your own notes"));
    }
    if found.body == body {
        txn.rollback().await?;
        return Ok(found);
    }
    let before = note_json(&found);
    let mut am = found.into_active_model();
    am.body = Set(body);
    am.updated_at = Set(now);
    let edited = am.update(&txn).await?;
    let change = FieldChange {
        field: "note".to_owned(),
        from: Some(before),
        to: Some(note_json(&edited)),
    };
    let updated = note_changed(&txn, &inc, actor.user_id, now, &change).await?;
    let announced = publish_note(state, &txn, updated, change, actor.user_id, now).await?;
    txn.commit().await?;
    announced.committed();
    Ok(edited)
}

/// Deletes one of the caller's own notes (moderators may delete any note).
/// The deletion, with the deleted text, stays in the audit trail.
#[tracing::instrument(skip_all, fields(note_id = %note_id))]
pub async fn delete_note(
    state: &AppState,
    actor: &Identity,
    note_id: Uuid,
) -> AppResult<note::Model> {
    let txn = crate::db::begin_write(&state.db).await?;
    let (found, inc) = lock_note(state, &txn, actor, note_id).await?;
    let now = util::now();
    if found.author_id != Some(actor.user_id) && !actor.has_role(Role::Moderator) {
        return Err(AppError::forbidden("you may only delete your own notes"));
    }
    note::Entity::delete_by_id(found.id).exec(&txn).await?;
    let change = FieldChange {
        field: "note".to_owned(),
        from: Some(note_json(&found)),
        to: None,
    };
    let updated = note_changed(&txn, &inc, actor.user_id, now, &change).await?;
    let announced = publish_note(state, &txn, updated, change, actor.user_id, now).await?;
    txn.commit().await?;
    announced.committed();
    Ok(found)
}

/// One incident the caller may see, or `NOT_FOUND`.
pub async fn get(
    db: &impl ConnectionTrait,
    actor: &Identity,
    id: Uuid,
) -> AppResult<incident::Model> {
    incident::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|i| can_see(actor, i))
        .ok_or_else(not_found)
}

/// Which incidents to list.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Any of these statuses.
    pub status: Vec<Status>,
    /// Any of these severities.
    pub severity: Vec<Severity>,
    /// Assigned to this user.
    pub assigned_to: Option<Uuid>,
    /// Created by this user.
    pub created_by: Option<Uuid>,
    /// Case-insensitive substring of the title or description.
    pub text: Option<String>,
    /// Started at or after.
    pub from: Option<DateTime<Utc>>,
    /// Started before.
    pub to: Option<DateTime<Utc>>,
}

impl IncidentFilter {
    /// Validates the free-text and time-range parts.
    pub fn validate(self) -> AppResult<IncidentFilter> {
        if let Some(t) = &self.text
            && (t.chars().count() > model::MAX_TITLE_CHARS || t.contains('\0'))
        {
            return Err(AppError::bad_input(
                "filter.text",
                format!(
                    "text must be at most {} characters without NUL",
                    model::MAX_TITLE_CHARS
                ),
            ));
        }
        if let (Some(f), Some(t)) = (self.from, self.to)
            && f > t
        {
            return Err(AppError::bad_input(
                "filter.to",
                "the time range ends before it starts",
            ));
        }
        Ok(self)
    }
}

fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The filtered, access-scoped query (unordered).
fn scoped(actor: &Identity, filter: &IncidentFilter) -> Select<incident::Entity> {
    let mut q = incident::Entity::find();
    if !actor.has_role(Role::Moderator) {
        q = q.filter(
            Condition::any()
                .add(incident::Column::CreatedBy.eq(actor.user_id))
                .add(incident::Column::AssignedTo.eq(actor.user_id)),
        );
    }
    if !filter.status.is_empty() {
        q = q.filter(incident::Column::Status.is_in(filter.status.iter().map(|s| s.as_str())));
    }
    if !filter.severity.is_empty() {
        q = q.filter(incident::Column::Severity.is_in(filter.severity.iter().map(|s| s.as_str())));
    }
    if let Some(u) = filter.assigned_to {
        q = q.filter(incident::Column::AssignedTo.eq(u));
    }
    if let Some(u) = filter.created_by {
        q = q.filter(incident::Column::CreatedBy.eq(u));
    }
    if let Some(t) = filter.text.as_deref().filter(|t| !t.is_empty()) {
        let pattern = LikeExpr::new(like_pattern(t)).escape('\\');
        q = q.filter(
            Condition::any()
                .add(
                    Expr::expr(Func::lower(Expr::col(incident::Column::Title)))
                        .like(pattern.clone()),
                )
                .add(
                    Expr::expr(Func::lower(Expr::col(incident::Column::Description))).like(pattern),
                ),
        );
    }
    if let Some(f) = filter.from {
        q = q.filter(incident::Column::StartedAt.gte(f));
    }
    if let Some(t) = filter.to {
        q = q.filter(incident::Column::StartedAt.lt(t));
    }
    q
}

/// The cursor of an incident in the listing order.
pub fn cursor(m: &incident::Model) -> Cursor {
    Cursor::new(m.started_at, m.id)
}

/// A page of the incidents the caller may see, newest start first.
pub async fn list(
    db: &impl ConnectionTrait,
    actor: &Identity,
    filter: &IncidentFilter,
    page: &Page,
) -> AppResult<Rows<incident::Model>> {
    use incident::Column as C;
    let mut q = scoped(actor, filter);
    // Newest first: "after" a cursor means older than it.
    if let Some(c) = &page.after {
        q = q.filter(after_condition(C::StartedAt, C::Id, c, false));
    }
    if let Some(c) = &page.before {
        q = q.filter(after_condition(C::StartedAt, C::Id, c, true));
    }
    q = if page.backward {
        q.order_by_asc(C::StartedAt).order_by_asc(C::Id)
    } else {
        q.order_by_desc(C::StartedAt).order_by_desc(C::Id)
    };
    let rows = q.limit(page.limit + 1).all(db).await?;
    Ok(Rows::new(rows, page, cursor))
}

/// How many incidents the caller may see match the filter.
pub async fn count(
    db: &impl ConnectionTrait,
    actor: &Identity,
    filter: &IncidentFilter,
) -> AppResult<u64> {
    Ok(scoped(actor, filter).count(db).await?)
}

/// Incidents that still need work (open or investigating), from the status index.
pub async fn open_count(db: &impl ConnectionTrait) -> AppResult<u64> {
    Ok(incident::Entity::find()
        .filter(
            incident::Column::Status.is_in([Status::Open.as_str(), Status::Investigating.as_str()]),
        )
        .count(db)
        .await?)
}

/// A page of listed incidents, offset-based (REST).
pub async fn list_offset(
    db: &impl ConnectionTrait,
    actor: &Identity,
    filter: &IncidentFilter,
    limit: u64,
    offset: u64,
) -> AppResult<Vec<incident::Model>> {
    use incident::Column as C;
    let q = scoped(actor, filter)
        .order_by_desc(C::StartedAt)
        .order_by_desc(C::Id)
        .limit(limit)
        .offset(offset);
    Ok(q.all(db).await?)
}

/// Fixtures for the domain's unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A plain open incident started at `t`.
    pub(crate) fn sample(t: DateTime<Utc>) -> incident::Model {
        incident::Model {
            id: Uuid::now_v7(),
            title: "db down".into(),
            description: None,
            severity: "high".into(),
            status: "open".into(),
            started_at: t,
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            root_cause: None,
            created_by: None,
            assigned_to: None,
            labels: json!({}),
            sources: json!([]),
            created_at: t,
            updated_at: t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_lists_each_changed_field_with_old_and_new_values() {
        let a = tests_support::sample(util::now());
        let mut b = a.clone();
        b.title = "db very down".into();
        b.description = Some("x".into());
        b.updated_at = a.updated_at + chrono::Duration::seconds(1);
        let d = diff(&a, &b);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].field, "title");
        assert_eq!(d[0].from, Some(json!("db down")));
        assert_eq!(d[1].field, "description");
        assert_eq!(d[1].from, None);
        assert_eq!(d[1].to, Some(json!("x")));
    }

    #[test]
    fn alert_titles_name_the_rule_and_labels_within_two_hundred_characters() {
        let mut labels = BTreeMap::new();
        labels.insert("host".to_owned(), "a".to_owned());
        labels.insert("dc".to_owned(), "eu".to_owned());
        assert_eq!(alert_title("HighCPU", &labels), "HighCPU {dc=eu, host=a}");
        assert_eq!(alert_title("HighCPU", &BTreeMap::new()), "HighCPU");
        labels.insert("long".to_owned(), "x".repeat(500));
        assert_eq!(alert_title("HighCPU", &labels).chars().count(), 200);
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_A"), "%50\\%\\_a%");
    }
}
