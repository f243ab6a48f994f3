//! GraphQL API of the incidents domain: the `Incident` object with its
//! nested notes, audit trail, alerts, analysis and timeline (all through
//! DataLoaders), the incident queries and mutations, and the live
//! `incidentCreated` / `incidentUpdated` subscriptions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::connection::{Connection, Edge};
use async_graphql::{
    Context, Enum, ID, InputObject, Json, MaybeUndefined, Object, SimpleObject, Subscription,
};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use uuid::Uuid;

use super::analysis::{self, Analysis};
use super::entity::{analysis as analysis_row, change, incident, note};
use super::live;
use super::loader::{
    AnalysisLoader, ChangeCountLoader, ChangesLoader, IncidentAlertsLoader, NoteCountLoader,
    NotesLoader, PageKey, Prefetch,
};
use super::model::{self, Severity, Status};
use super::service::{self, IncidentFilter, IncidentPatch, NewIncident, Patch};
use super::timeline::{self, EntryKind, Selection, Timeline, Window};
use crate::alerts::entity::instance;
use crate::alerts::graphql::{Alert, AlertTransition, GqlSeverity as AlertSeverity};
use crate::auth::Role;
use crate::auth::entity::user;
use crate::auth::graphql::User;
use crate::auth::guard::{ContextExt, RoleGuard};
use crate::auth::loader::UserLoader;
use crate::error::AppError;
use crate::events::graphql::{Event, GqlLevel};
use crate::graphql::{TotalCount, parse_id};
use crate::pagination::{Cursor, Page, PageArgs};

/// How bad an incident is.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "IncidentSeverity")]
pub enum GqlSeverity {
    /// Minor.
    Low,
    /// Noticeable.
    Medium,
    /// Serious.
    High,
    /// Everything is on fire.
    Critical,
}

impl From<Severity> for GqlSeverity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Low => GqlSeverity::Low,
            Severity::Medium => GqlSeverity::Medium,
            Severity::High => GqlSeverity::High,
            Severity::Critical => GqlSeverity::Critical,
        }
    }
}

impl From<GqlSeverity> for Severity {
    fn from(s: GqlSeverity) -> Self {
        match s {
            GqlSeverity::Low => Severity::Low,
            GqlSeverity::Medium => Severity::Medium,
            GqlSeverity::High => Severity::High,
            GqlSeverity::Critical => Severity::Critical,
        }
    }
}

/// Where an incident is in its lifecycle: `OPEN → INVESTIGATING → RESOLVED
/// → CLOSED`, `OPEN → RESOLVED`, and `RESOLVED → INVESTIGATING` (reopen).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "IncidentStatus")]
pub enum GqlStatus {
    /// Reported, nobody on it yet.
    Open,
    /// Someone is working on it.
    Investigating,
    /// The impact is over.
    Resolved,
    /// Done; nothing leaves this status.
    Closed,
}

impl From<Status> for GqlStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Open => GqlStatus::Open,
            Status::Investigating => GqlStatus::Investigating,
            Status::Resolved => GqlStatus::Resolved,
            Status::Closed => GqlStatus::Closed,
        }
    }
}

impl From<GqlStatus> for Status {
    fn from(s: GqlStatus) -> Self {
        match s {
            GqlStatus::Open => Status::Open,
            GqlStatus::Investigating => Status::Investigating,
            GqlStatus::Resolved => Status::Resolved,
            GqlStatus::Closed => Status::Closed,
        }
    }
}

/// What a timeline entry is.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "TimelineEntryKind")]
pub enum GqlEntryKind {
    /// A change of the incident (its creation, a field, its status, a note edit).
    Change,
    /// A note on the incident.
    Note,
    /// A state transition of an alert linked to the incident.
    Alert,
    /// An event from the incident's sources, at warn or above, or correlated by a tag.
    Event,
}

impl From<EntryKind> for GqlEntryKind {
    fn from(k: EntryKind) -> Self {
        match k {
            EntryKind::Change => GqlEntryKind::Change,
            EntryKind::Note => GqlEntryKind::Note,
            EntryKind::Alert => GqlEntryKind::Alert,
            EntryKind::Event => GqlEntryKind::Event,
        }
    }
}

impl From<GqlEntryKind> for EntryKind {
    fn from(k: GqlEntryKind) -> Self {
        match k {
            GqlEntryKind::Change => EntryKind::Change,
            GqlEntryKind::Note => EntryKind::Note,
            GqlEntryKind::Alert => EntryKind::Alert,
            GqlEntryKind::Event => EntryKind::Event,
        }
    }
}

/// The users one list of objects refers to, looked up together.
pub type People = Prefetch<Uuid, user::Model>;

async fn person(
    ctx: &Context<'_>,
    people: &People,
    id: Option<Uuid>,
) -> async_graphql::Result<Option<User>> {
    let Some(id) = id else {
        return Ok(None);
    };
    Ok(people
        .get::<UserLoader>(ctx)
        .await?
        .get(&id)
        .cloned()
        .map(User))
}

fn people_of(ids: impl IntoIterator<Item = Option<Uuid>>) -> Arc<People> {
    Arc::new(Prefetch::new(ids.into_iter().flatten()))
}

/// Status, severity and alert state values read as the API's enum names;
/// other values as stored.
fn api_value(field: &str, v: Option<&Value>) -> Option<Json<Value>> {
    let v = v?;
    let upper = |v: &Value| match v {
        Value::String(s) => Value::String(s.to_ascii_uppercase()),
        other => other.clone(),
    };
    Some(Json(match field {
        "status" | "severity" => upper(v),
        "created" | "alert" => {
            let mut v = v.clone();
            for key in ["status", "severity", "state"] {
                if let Some(x) = v.get(key).map(&upper) {
                    v[key] = x;
                }
            }
            v
        }
        _ => v.clone(),
    }))
}

type Shape = (Option<Cursor>, u64);

/// One page of a nested list (notes or changes) for every incident of a
/// list, with the users its rows refer to.
struct Nested<T> {
    rows: Prefetch<PageKey, Vec<T>>,
    people: tokio::sync::OnceCell<Arc<People>>,
}

/// What the incidents of one list look up together.
pub struct IncidentBatch {
    ids: Vec<Uuid>,
    people: Arc<People>,
    notes: Mutex<HashMap<Shape, Arc<Nested<note::Model>>>>,
    changes: Mutex<HashMap<Shape, Arc<Nested<change::Model>>>>,
    alerts: Prefetch<Uuid, Vec<instance::Model>>,
    analyses: Prefetch<Uuid, analysis_row::Model>,
    note_counts: Prefetch<Uuid, u64>,
    change_counts: Prefetch<Uuid, u64>,
}

impl IncidentBatch {
    fn new(models: &[incident::Model]) -> Arc<IncidentBatch> {
        let ids: Vec<Uuid> = models.iter().map(|m| m.id).collect();
        Arc::new(IncidentBatch {
            people: people_of(models.iter().flat_map(|m| [m.created_by, m.assigned_to])),
            notes: Mutex::default(),
            changes: Mutex::default(),
            alerts: Prefetch::new(ids.clone()),
            analyses: Prefetch::new(ids.clone()),
            note_counts: Prefetch::new(ids.clone()),
            change_counts: Prefetch::new(ids.clone()),
            ids,
        })
    }

    fn nested<T: Clone + Send + Sync + 'static>(
        &self,
        map: &Mutex<HashMap<Shape, Arc<Nested<T>>>>,
        page: &Page,
    ) -> Arc<Nested<T>> {
        let shape = (page.after, page.limit);
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(shape)
            .or_insert_with(|| {
                Arc::new(Nested {
                    rows: Prefetch::new(self.ids.iter().map(|id| PageKey {
                        incident_id: *id,
                        after: page.after,
                        limit: page.limit,
                    })),
                    people: tokio::sync::OnceCell::new(),
                })
            })
            .clone()
    }
}

/// An incident.
pub struct Incident {
    model: incident::Model,
    batch: Arc<IncidentBatch>,
}

impl Incident {
    /// An incident resolved on its own.
    pub fn one(model: incident::Model) -> Incident {
        let batch = IncidentBatch::new(std::slice::from_ref(&model));
        Incident { model, batch }
    }

    /// The incidents of one list, whose nested fields are looked up together.
    pub fn list(models: Vec<incident::Model>) -> Vec<Incident> {
        let batch = IncidentBatch::new(&models);
        models
            .into_iter()
            .map(|model| Incident {
                model,
                batch: batch.clone(),
            })
            .collect()
    }

    /// The stored row.
    pub fn model(&self) -> &incident::Model {
        &self.model
    }
}

/// The `totalCount` of an incident's notes.
pub struct NotesTotal(Uuid, Arc<IncidentBatch>);

#[Object]
impl NotesTotal {
    /// How many notes the incident has.
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<u64> {
        let counts = self.1.note_counts.get::<NoteCountLoader>(ctx).await?;
        Ok(counts.get(&self.0).copied().unwrap_or(0))
    }
}

/// The `totalCount` of an incident's audit trail.
pub struct ChangesTotal(Uuid, Arc<IncidentBatch>);

#[Object]
impl ChangesTotal {
    /// How many audited changes the incident has.
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<u64> {
        let counts = self.1.change_counts.get::<ChangeCountLoader>(ctx).await?;
        Ok(counts.get(&self.0).copied().unwrap_or(0))
    }
}

/// The window and size of a timeline.
pub struct TimelineInfo(Timeline);

#[Object]
impl TimelineInfo {
    /// How many entries the whole timeline has (computed only when selected).
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<u64> {
        Ok(self.0.count(&ctx.state().db).await?)
    }
    /// Start of the window: `startedAt` minus the lookback.
    async fn window_start(&self) -> DateTime<Utc> {
        self.0.window.start
    }
    /// End of the window: `resolvedAt`, or now while unresolved.
    async fn window_end(&self) -> DateTime<Utc> {
        self.0.window.end
    }
}

fn nested_page(first: Option<i32>, after: Option<String>) -> Result<Page, AppError> {
    Page::from_args(
        PageArgs {
            first,
            after,
            last: None,
            before: None,
        },
        20,
        100,
    )
}

#[Object]
impl Incident {
    /// The incident's id.
    async fn id(&self) -> ID {
        ID(self.model.id.to_string())
    }
    /// Short summary (1–200 characters).
    async fn title(&self) -> &str {
        &self.model.title
    }
    /// Details (at most 10,000 characters).
    async fn description(&self) -> Option<&str> {
        self.model.description.as_deref()
    }
    /// How bad it is.
    async fn severity(&self) -> GqlSeverity {
        Severity::stored(&self.model.severity).into()
    }
    /// Where it is in its lifecycle.
    async fn status(&self) -> GqlStatus {
        Status::stored(&self.model.status).into()
    }
    /// When it began.
    async fn started_at(&self) -> DateTime<Utc> {
        self.model.started_at
    }
    /// When it was first acknowledged (by `acknowledgeIncident` or by moving to INVESTIGATING).
    async fn acknowledged_at(&self) -> Option<DateTime<Utc>> {
        self.model.acknowledged_at
    }
    /// When it was resolved; cleared when reopened.
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.model.resolved_at
    }
    /// When it was closed.
    async fn closed_at(&self) -> Option<DateTime<Utc>> {
        self.model.closed_at
    }
    /// What caused it.
    async fn root_cause(&self) -> Option<&str> {
        self.model.root_cause.as_deref()
    }
    /// Who reported it; null when the system opened it (for a firing alert).
    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        person(ctx, &self.batch.people, self.model.created_by).await
    }
    /// Who is working on it.
    async fn assigned_to(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        person(ctx, &self.batch.people, self.model.assigned_to).await
    }
    /// Labels, a JSON object of strings.
    async fn labels(&self) -> Json<Value> {
        Json(self.model.labels.clone())
    }
    /// The services involved; the timeline shows all of their events.
    async fn sources(&self) -> Vec<String> {
        model::stored_sources(&self.model.sources)
    }
    /// When it was recorded.
    async fn created_at(&self) -> DateTime<Utc> {
        self.model.created_at
    }
    /// When it last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.model.updated_at
    }
    /// Seconds from `startedAt` to `acknowledgedAt` (an input of MTTA); null until acknowledged.
    async fn time_to_acknowledge(&self) -> Option<f64> {
        self.model
            .acknowledged_at
            .map(|t| model::seconds_between(self.model.started_at, t))
    }
    /// Seconds from `startedAt` to `resolvedAt` (an input of MTTR); null until resolved.
    async fn time_to_resolve(&self) -> Option<f64> {
        self.model
            .resolved_at
            .map(|t| model::seconds_between(self.model.started_at, t))
    }
    /// Notes, oldest first.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn notes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size (default 20, at most 100).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<Cursor, IncidentNote, NotesTotal>> {
        let page = nested_page(first, after)?;
        let nested = self.batch.nested(&self.batch.notes, &page);
        let all = nested.rows.get::<NotesLoader>(ctx).await?;
        let people = nested
            .people
            .get_or_init(|| async { people_of(all.values().flatten().map(|n| n.author_id)) })
            .await
            .clone();
        let key = PageKey {
            incident_id: self.model.id,
            after: page.after,
            limit: page.limit,
        };
        let mut rows = all.get(&key).cloned().unwrap_or_default();
        let has_next = rows.len() as u64 > page.limit;
        rows.truncate(page.limit as usize);
        let mut conn = Connection::with_additional_fields(
            page.after.is_some(),
            has_next,
            NotesTotal(self.model.id, self.batch.clone()),
        );
        conn.edges.extend(rows.into_iter().map(|n| {
            Edge::new(
                Cursor::new(n.created_at, n.id),
                IncidentNote {
                    model: n,
                    people: people.clone(),
                },
            )
        }));
        Ok(conn)
    }
    /// The audit trail: every change with its actor and time, oldest first.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn changes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size (default 20, at most 100).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<Cursor, IncidentAuditEntry, ChangesTotal>> {
        let page = nested_page(first, after)?;
        let nested = self.batch.nested(&self.batch.changes, &page);
        let all = nested.rows.get::<ChangesLoader>(ctx).await?;
        let people = nested
            .people
            .get_or_init(|| async { people_of(all.values().flatten().map(|c| c.actor_id)) })
            .await
            .clone();
        let key = PageKey {
            incident_id: self.model.id,
            after: page.after,
            limit: page.limit,
        };
        let mut rows = all.get(&key).cloned().unwrap_or_default();
        let has_next = rows.len() as u64 > page.limit;
        rows.truncate(page.limit as usize);
        let mut conn = Connection::with_additional_fields(
            page.after.is_some(),
            has_next,
            ChangesTotal(self.model.id, self.batch.clone()),
        );
        conn.edges.extend(rows.into_iter().map(|c| {
            Edge::new(
                Cursor::new(c.at, c.id),
                IncidentAuditEntry {
                    model: c,
                    people: people.clone(),
                },
            )
        }));
        Ok(conn)
    }
    /// The alerts linked to the incident (the one that opened it, for an
    /// incident opened by a firing alert), oldest link first. Looked up
    /// together for every incident of a list.
    async fn alerts(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Alert>> {
        let all = self.batch.alerts.get::<IncidentAlertsLoader>(ctx).await?;
        Ok(all
            .get(&self.model.id)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(Alert)
            .collect())
    }
    /// The latest suggested-root-cause analysis (`analyzeIncident`), if any.
    async fn analysis(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<IncidentAnalysis>> {
        let all = self.batch.analyses.get::<AnalysisLoader>(ctx).await?;
        let row = all.get(&self.model.id);
        Ok(match row {
            Some(r) => Some(IncidentAnalysis(Analysis::from_row(r)?)),
            None => None,
        })
    }
    /// The reconstructed timeline: the incident's changes and notes, the
    /// transitions of its linked alerts, and the events around it, in time
    /// order, each saying why it is there.
    #[graphql(complexity = "first.unwrap_or(100).max(0) as usize * child_complexity")]
    async fn timeline(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size (default 100, at most 1000).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
        #[graphql(desc = "Only these kinds (all when omitted).")] kinds: Option<Vec<GqlEntryKind>>,
        #[graphql(desc = "Only events at this level or above (other kinds are unaffected).")]
        min_level: Option<GqlLevel>,
        #[graphql(
            desc = "How far before `startedAt` the window starts, e.g. `30m`, `1h`, `2d` or seconds (default 1h, at most 7d)."
        )]
        lookback: Option<String>,
    ) -> async_graphql::Result<Connection<Cursor, TimelineEntry, TimelineInfo>> {
        let page = Page::from_args(
            PageArgs {
                first,
                after,
                last: None,
                before: None,
            },
            100,
            1000,
        )?;
        let lookback = match lookback.as_deref() {
            Some(l) => timeline::parse_lookback(l)?,
            None => timeline::DEFAULT_LOOKBACK,
        };
        let t = Timeline {
            window: Window::of(&self.model, lookback, crate::util::now()),
            incident: self.model.clone(),
            selection: Selection {
                kinds: kinds
                    .unwrap_or_default()
                    .into_iter()
                    .map(Into::into)
                    .collect(),
                min_level: min_level.map(Into::into),
            },
        };
        let mut entries = t
            .entries(&ctx.state().db, page.after, page.limit + 1)
            .await?;
        let has_next = entries.len() as u64 > page.limit;
        entries.truncate(page.limit as usize);
        let mut conn =
            Connection::with_additional_fields(page.after.is_some(), has_next, TimelineInfo(t));
        let people = people_of(entries.iter().map(|e| e.actor));
        conn.edges.extend(entries.into_iter().map(|e| {
            Edge::new(
                e.cursor(),
                TimelineEntry {
                    entry: e,
                    people: people.clone(),
                },
            )
        }));
        Ok(conn)
    }
    /// This incident's position in the `incidents` list.
    async fn cursor(&self) -> String {
        service::cursor(&self.model).encode()
    }
}

/// A note on an incident.
pub struct IncidentNote {
    model: note::Model,
    people: Arc<People>,
}

impl IncidentNote {
    /// A note resolved on its own.
    pub fn one(model: note::Model) -> IncidentNote {
        IncidentNote {
            people: people_of([model.author_id]),
            model,
        }
    }
}

#[Object]
impl IncidentNote {
    /// The note's id.
    async fn id(&self) -> ID {
        ID(self.model.id.to_string())
    }
    /// The text.
    async fn body(&self) -> &str {
        &self.model.body
    }
    /// Who wrote it.
    async fn author(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        person(ctx, &self.people, self.model.author_id).await
    }
    /// The incident's id.
    async fn incident_id(&self) -> ID {
        ID(self.model.incident_id.to_string())
    }
    /// When it was written.
    async fn created_at(&self) -> DateTime<Utc> {
        self.model.created_at
    }
    /// When it was last edited.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.model.updated_at
    }
}

/// One audited change of one field.
pub struct IncidentAuditEntry {
    model: change::Model,
    people: Arc<People>,
}

#[Object]
impl IncidentAuditEntry {
    /// The entry's id.
    async fn id(&self) -> ID {
        ID(self.model.id.to_string())
    }
    /// The field: `created`, `title`, `description`, `severity`, `status`,
    /// `acknowledgedAt`, `resolvedAt`, `closedAt`, `rootCause`, `assignedTo`,
    /// `labels`, `sources`, `note`, or `alert` (a linked alert fired again
    /// or resolved: `{alertId, state}` before, `{alertId, ruleName, labels,
    /// state, value, at}` after; the system is the actor).
    async fn field(&self) -> &str {
        &self.model.field
    }
    /// The value before (null when there was none).
    async fn from(&self) -> Option<Json<Value>> {
        api_value(&self.model.field, self.model.old_value.as_ref())
    }
    /// The value after (null when cleared).
    async fn to(&self) -> Option<Json<Value>> {
        api_value(&self.model.field, self.model.new_value.as_ref())
    }
    /// Who made the change; null for the system.
    async fn actor(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        person(ctx, &self.people, self.model.actor_id).await
    }
    /// When.
    async fn at(&self) -> DateTime<Utc> {
        self.model.at
    }
}

/// One field of a live change.
pub struct IncidentFieldChange(service::FieldChange);

#[Object]
impl IncidentFieldChange {
    /// The field (see `IncidentAuditEntry.field`).
    async fn field(&self) -> &str {
        &self.0.field
    }
    /// The value before.
    async fn from(&self) -> Option<Json<Value>> {
        api_value(&self.0.field, self.0.from.as_ref())
    }
    /// The value after.
    async fn to(&self) -> Option<Json<Value>> {
        api_value(&self.0.field, self.0.to.as_ref())
    }
}

/// A change of an incident, as pushed to `incidentUpdated` subscribers.
pub struct IncidentChange {
    update: service::IncidentUpdate,
    people: Arc<People>,
}

impl IncidentChange {
    fn new(update: service::IncidentUpdate) -> IncidentChange {
        IncidentChange {
            people: people_of([update.actor]),
            update,
        }
    }
}

#[Object]
impl IncidentChange {
    /// The incident after the change.
    async fn incident(&self) -> Incident {
        Incident::one(self.update.incident.clone())
    }
    /// What changed.
    async fn changes(&self) -> Vec<IncidentFieldChange> {
        self.update
            .changes
            .iter()
            .cloned()
            .map(IncidentFieldChange)
            .collect()
    }
    /// Who changed it; null for the system.
    async fn actor(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        person(ctx, &self.people, self.update.actor).await
    }
    /// When.
    async fn at(&self) -> DateTime<Utc> {
        self.update.at
    }
}

/// One line of an incident's timeline.
pub struct TimelineEntry {
    entry: timeline::Entry,
    people: Arc<People>,
}

#[Object]
impl TimelineEntry {
    /// When it happened.
    async fn at(&self) -> DateTime<Utc> {
        self.entry.at
    }
    /// What it is.
    async fn kind(&self) -> GqlEntryKind {
        self.entry.kind.into()
    }
    /// Why it is in the timeline (e.g. "from the incident's source `api`",
    /// "at level warn from `db`", "shares trace_id `t1` with an event in the timeline").
    async fn reason(&self) -> &str {
        &self.entry.reason
    }
    /// Who did it (changes and notes).
    async fn actor(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        person(ctx, &self.people, self.entry.actor).await
    }
    /// One line for humans.
    async fn summary(&self) -> &str {
        &self.entry.summary
    }
    /// The event: for EVENT entries, and for ALERT entries the alert event
    /// written when the alert fired or resolved (null for other transitions).
    async fn event(&self) -> Option<Event> {
        self.entry.event.clone().map(|e| Event(Arc::new(e)))
    }
    /// The alert's transition, for ALERT entries.
    async fn alert_transition(&self) -> Option<AlertTransition> {
        self.entry
            .transition
            .clone()
            .map(|t| AlertTransition(Arc::new(t)))
    }
    /// This entry's position in the timeline.
    async fn cursor(&self) -> String {
        self.entry.cursor().encode()
    }
}

/// The first error of a suspect source in the analysed window.
#[derive(SimpleObject)]
pub struct SuspectError {
    /// The event's id.
    pub event_id: ID,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Its level (`error` or `fatal`).
    pub level: String,
    /// Its message.
    pub message: Option<String>,
}

/// A source whose errors rose, with the evidence.
#[derive(SimpleObject)]
pub struct SuspectSource {
    /// 1 for the strongest suspect.
    pub rank: u32,
    /// The source.
    pub source: String,
    /// Error and fatal events in the window.
    pub window_errors: u64,
    /// Error and fatal events in the baseline.
    pub baseline_errors: u64,
    /// Errors per minute in the window.
    pub window_rate_per_minute: f64,
    /// Errors per minute in the baseline.
    pub baseline_rate_per_minute: f64,
    /// How much the rate rose, per minute.
    pub rise_per_minute: f64,
    /// The rise in standard deviations of the baseline count, `(w − b) / √(b + 1)`: the ranking key.
    pub score: f64,
    /// The source's first error in the window.
    pub first_error: Option<SuspectError>,
}

/// An alert that fired in the analysed window.
#[derive(SimpleObject)]
pub struct AnalysisAlert {
    /// The transition's id.
    pub transition_id: ID,
    /// The rule's id.
    pub rule_id: ID,
    /// The rule's name when it fired.
    pub rule_name: String,
    /// The alert instance's id.
    pub instance_id: ID,
    /// The instance's labels.
    pub labels: Json<Value>,
    /// The rule's severity when it fired.
    pub severity: Option<AlertSeverity>,
    /// Whether a silence matched the alert.
    pub silenced: bool,
    /// Whether the alert is linked to this incident.
    pub linked: bool,
    /// The value that made it fire.
    pub value: Option<f64>,
    /// When it fired.
    pub at: DateTime<Utc>,
}

/// A metric series whose mean moved, with the evidence.
#[derive(SimpleObject)]
pub struct MetricDeviation {
    /// 1 for the largest deviation.
    pub rank: u32,
    /// The series' id.
    pub series_id: ID,
    /// The metric's name.
    pub name: String,
    /// The series' labels.
    pub labels: Json<Value>,
    /// Mean of the window's samples.
    pub window_mean: f64,
    /// Mean of the baseline's samples.
    pub baseline_mean: f64,
    /// Standard deviation of the baseline's samples.
    pub baseline_stddev: f64,
    /// Samples in the window.
    pub window_samples: u64,
    /// Samples in the baseline.
    pub baseline_samples: u64,
    /// `(window mean − baseline mean) / baseline stddev`: ranked by magnitude.
    pub z_score: f64,
}

/// Suggested root causes of an incident, each with its evidence.
pub struct IncidentAnalysis(pub Analysis);

#[Object]
impl IncidentAnalysis {
    /// When it was computed.
    async fn computed_at(&self) -> DateTime<Utc> {
        self.0.computed_at
    }
    /// Start of the analysed window (`startedAt` minus the lookback).
    async fn window_start(&self) -> DateTime<Utc> {
        self.0.span.window_start
    }
    /// End of the analysed window (the earliest of `resolvedAt`, `startedAt` plus the lookback, and the time of analysis).
    async fn window_end(&self) -> DateTime<Utc> {
        self.0.span.window_end
    }
    /// Start of the baseline, which has the window's length and ends where it starts.
    async fn baseline_start(&self) -> DateTime<Utc> {
        self.0.span.baseline_start
    }
    /// Sources whose error rate rose, strongest suspect first.
    async fn suspects(&self) -> Vec<SuspectSource> {
        self.0
            .findings
            .suspects
            .iter()
            .map(|s| SuspectSource {
                rank: s.rank,
                source: s.source.clone(),
                window_errors: s.window_errors,
                baseline_errors: s.baseline_errors,
                window_rate_per_minute: s.window_rate_per_minute,
                baseline_rate_per_minute: s.baseline_rate_per_minute,
                rise_per_minute: s.rise_per_minute,
                score: s.score,
                first_error: s.first_error.as_ref().map(|e| SuspectError {
                    event_id: ID(e.event_id.to_string()),
                    at: e.at,
                    level: e.level.clone(),
                    message: e.message.clone(),
                }),
            })
            .collect()
    }
    /// Alerts that fired in the window, in time order.
    async fn alerts(&self) -> Vec<AnalysisAlert> {
        self.0
            .findings
            .alerts
            .iter()
            .map(|a| AnalysisAlert {
                transition_id: ID(a.transition_id.to_string()),
                rule_id: ID(a.rule_id.to_string()),
                rule_name: a.rule_name.clone(),
                instance_id: ID(a.instance_id.to_string()),
                labels: Json(a.labels.clone()),
                severity: a
                    .severity
                    .as_deref()
                    .and_then(|s| s.parse::<crate::alerts::model::Severity>().ok())
                    .map(Into::into),
                silenced: a.silenced,
                linked: a.linked,
                value: a.value,
                at: a.at,
            })
            .collect()
    }
    /// Metric series whose window mean deviates most from the baseline, largest first.
    async fn metrics(&self) -> Vec<MetricDeviation> {
        self.0
            .findings
            .metrics
            .iter()
            .map(|m| MetricDeviation {
                rank: m.rank,
                series_id: ID(m.series_id.to_string()),
                name: m.name.clone(),
                labels: Json(m.labels.clone()),
                window_mean: m.window_mean,
                baseline_mean: m.baseline_mean,
                baseline_stddev: m.baseline_stddev,
                window_samples: m.window_samples,
                baseline_samples: m.baseline_samples,
                z_score: m.z_score,
            })
            .collect()
    }
}

/// Which incidents to list.
#[derive(InputObject, Default)]
#[graphql(name = "IncidentFilter")]
pub struct GqlIncidentFilter {
    /// Any of these statuses.
    pub status: Option<Vec<GqlStatus>>,
    /// Any of these severities.
    pub severity: Option<Vec<GqlSeverity>>,
    /// Assigned to this user.
    pub assigned_to: Option<ID>,
    /// Created by this user.
    pub created_by: Option<ID>,
    /// Case-insensitive text in the title or description (at most 200 characters).
    pub text: Option<String>,
    /// Started at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Started before this time.
    pub to: Option<DateTime<Utc>>,
}

impl GqlIncidentFilter {
    fn into_domain(self) -> Result<IncidentFilter, AppError> {
        IncidentFilter {
            status: self
                .status
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            severity: self
                .severity
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            assigned_to: self
                .assigned_to
                .as_ref()
                .map(|i| parse_id("filter.assignedTo", i))
                .transpose()?,
            created_by: self
                .created_by
                .as_ref()
                .map(|i| parse_id("filter.createdBy", i))
                .transpose()?,
            text: self.text,
            from: self.from,
            to: self.to,
        }
        .validate()
    }
}

/// Input of `createIncident`.
#[derive(InputObject)]
pub struct CreateIncidentInput {
    /// Short summary (1–200 characters).
    pub title: String,
    /// Details (at most 10,000 characters).
    pub description: Option<String>,
    /// How bad it is (default MEDIUM).
    pub severity: Option<GqlSeverity>,
    /// When it began (default now; may be in the past, not in the future).
    pub started_at: Option<DateTime<Utc>>,
    /// The assignee: an active user.
    pub assigned_to: Option<ID>,
    /// Labels: a JSON object of strings (at most 50).
    pub labels: Option<Json<Value>>,
    /// The services involved (at most 50); the timeline shows all of their events.
    pub sources: Option<Vec<String>>,
}

/// Input of `updateIncident`: omitted fields stay, `null` clears a field.
#[derive(InputObject)]
pub struct UpdateIncidentInput {
    /// The incident.
    pub id: ID,
    /// New title (cannot be cleared).
    pub title: MaybeUndefined<String>,
    /// New description; null clears it.
    pub description: MaybeUndefined<String>,
    /// New severity (cannot be cleared).
    pub severity: MaybeUndefined<GqlSeverity>,
    /// New status; must be a legal transition.
    pub status: MaybeUndefined<GqlStatus>,
    /// New root cause; null clears it.
    pub root_cause: MaybeUndefined<String>,
    /// New assignee (moderators, or the incident's creator); null unassigns.
    pub assigned_to: MaybeUndefined<ID>,
    /// New labels; null removes them all.
    pub labels: MaybeUndefined<Json<Value>>,
    /// New sources; null removes them all.
    pub sources: MaybeUndefined<Vec<String>>,
}

/// Input of `assignIncident`.
#[derive(InputObject)]
pub struct AssignIncidentInput {
    /// The incident.
    pub id: ID,
    /// The new assignee (an active user); null unassigns.
    pub assigned_to: Option<ID>,
}

/// Input of `acknowledgeIncident`.
#[derive(InputObject)]
pub struct AcknowledgeIncidentInput {
    /// The incident.
    pub id: ID,
}

/// Input of `resolveIncident`.
#[derive(InputObject)]
pub struct ResolveIncidentInput {
    /// The incident.
    pub id: ID,
    /// What caused it (recorded when given).
    pub root_cause: Option<String>,
}

/// Input of `closeIncident`.
#[derive(InputObject)]
pub struct CloseIncidentInput {
    /// The incident.
    pub id: ID,
}

/// Input of `reopenIncident`.
#[derive(InputObject)]
pub struct ReopenIncidentInput {
    /// The incident.
    pub id: ID,
}

/// Input of `addIncidentNote`.
#[derive(InputObject)]
pub struct AddIncidentNoteInput {
    /// The incident.
    pub incident_id: ID,
    /// The text (1–10,000 characters).
    pub body: String,
}

/// Input of `updateIncidentNote`.
#[derive(InputObject)]
pub struct UpdateIncidentNoteInput {
    /// The note (one of yours).
    pub id: ID,
    /// The new text (1–10,000 characters).
    pub body: String,
}

/// Input of `deleteIncidentNote`.
#[derive(InputObject)]
pub struct DeleteIncidentNoteInput {
    /// The note (one of yours; moderators may delete any).
    pub id: ID,
}

/// Input of `analyzeIncident`.
#[derive(InputObject)]
pub struct AnalyzeIncidentInput {
    /// The incident.
    pub id: ID,
    /// Half-width of the window around `startedAt`, e.g. `30m`, `1h`, `2d` (default 1h, at most 7d).
    pub lookback: Option<String>,
}

/// Incident queries.
#[derive(Default)]
pub struct IncidentQuery;

#[Object]
impl IncidentQuery {
    /// Incidents the caller may see (users: created by or assigned to them;
    /// moderators: all), most recently started first.
    #[graphql(
        guard = "RoleGuard::new(Role::User)",
        complexity = "first.or(last).unwrap_or(50).max(0) as usize * child_complexity"
    )]
    async fn incidents(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which incidents.")] filter: Option<GqlIncidentFilter>,
        #[graphql(desc = "Page size from the start (default 50, at most 500).")] first: Option<i32>,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
        #[graphql(desc = "Page size from the end.")] last: Option<i32>,
        #[graphql(desc = "Cursor to end before.")] before: Option<String>,
    ) -> async_graphql::Result<Connection<Cursor, Incident, TotalCount>> {
        let me = ctx.identity()?.clone();
        let filter = filter.unwrap_or_default().into_domain()?;
        let page = Page::from_args(
            PageArgs {
                first,
                after,
                last,
                before,
            },
            50,
            500,
        )?;
        let rows = service::list(&ctx.state().db, &me, &filter, &page).await?;
        let mut conn = Connection::with_additional_fields(
            rows.has_previous,
            rows.has_next,
            TotalCount::new(move |s| {
                let me = me.clone();
                let filter = filter.clone();
                async move { service::count(&s.db, &me, &filter).await }
            }),
        );
        let (cursors, models): (Vec<Cursor>, Vec<incident::Model>) = rows.items.into_iter().unzip();
        conn.edges.extend(
            cursors
                .into_iter()
                .zip(Incident::list(models))
                .map(|(c, i)| Edge::new(c, i)),
        );
        Ok(conn)
    }

    /// One incident; NOT_FOUND when it does not exist or the caller may not see it.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn incident(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The incident's id.")] id: ID,
    ) -> async_graphql::Result<Incident> {
        let id = parse_id("id", &id)?;
        Ok(Incident::one(
            service::get(&ctx.state().db, ctx.identity()?, id).await?,
        ))
    }
}

fn id_patch(field: &str, v: MaybeUndefined<ID>) -> Result<Patch<Uuid>, AppError> {
    Ok(match v {
        MaybeUndefined::Undefined => Patch::Keep,
        MaybeUndefined::Null => Patch::Clear,
        MaybeUndefined::Value(id) => Patch::Set(parse_id(field, &id)?),
    })
}

/// Incident mutations.
#[derive(Default)]
pub struct IncidentMutation;

#[Object]
impl IncidentMutation {
    /// Opens an incident (any authenticated user).
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn create_incident(
        &self,
        ctx: &Context<'_>,
        input: CreateIncidentInput,
    ) -> async_graphql::Result<Incident> {
        let new = NewIncident {
            title: input.title,
            description: input.description,
            severity: input.severity.map(Into::into),
            started_at: input.started_at,
            assigned_to: input
                .assigned_to
                .as_ref()
                .map(|i| parse_id("assignedTo", i))
                .transpose()?,
            labels: input.labels.map(|j| j.0),
            sources: input.sources.unwrap_or_default(),
        };
        Ok(Incident::one(
            service::create(ctx.state(), ctx.identity()?, new).await?,
        ))
    }

    /// Changes fields of an incident; omitted fields stay, null clears.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn update_incident(
        &self,
        ctx: &Context<'_>,
        input: UpdateIncidentInput,
    ) -> async_graphql::Result<Incident> {
        let id = parse_id("id", &input.id)?;
        let patch = IncidentPatch {
            title: Patch::from_maybe(input.title),
            description: Patch::from_maybe(input.description),
            severity: Patch::from_maybe(input.severity.map_value(Into::into)),
            status: Patch::from_maybe(input.status.map_value(Into::into)),
            root_cause: Patch::from_maybe(input.root_cause),
            assigned_to: id_patch("assignedTo", input.assigned_to)?,
            labels: Patch::from_maybe(input.labels.map_value(|j| j.0)),
            sources: Patch::from_maybe(input.sources),
        };
        Ok(Incident::one(
            service::update(ctx.state(), ctx.identity()?, id, patch).await?,
        ))
    }

    /// Sets or clears the assignee (moderators; users only on incidents they created).
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn assign_incident(
        &self,
        ctx: &Context<'_>,
        input: AssignIncidentInput,
    ) -> async_graphql::Result<Incident> {
        let id = parse_id("id", &input.id)?;
        let assignee = input
            .assigned_to
            .as_ref()
            .map(|i| parse_id("assignedTo", i))
            .transpose()?;
        Ok(Incident::one(
            service::assign(ctx.state(), ctx.identity()?, id, assignee).await?,
        ))
    }

    /// Records the first acknowledgement of an open or investigating incident (later ones change nothing).
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn acknowledge_incident(
        &self,
        ctx: &Context<'_>,
        input: AcknowledgeIncidentInput,
    ) -> async_graphql::Result<Incident> {
        let id = parse_id("id", &input.id)?;
        Ok(Incident::one(
            service::acknowledge(ctx.state(), ctx.identity()?, id).await?,
        ))
    }

    /// Resolves an open or investigating incident, recording the root cause when given.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn resolve_incident(
        &self,
        ctx: &Context<'_>,
        input: ResolveIncidentInput,
    ) -> async_graphql::Result<Incident> {
        let id = parse_id("id", &input.id)?;
        Ok(Incident::one(
            service::resolve(ctx.state(), ctx.identity()?, id, input.root_cause).await?,
        ))
    }

    /// Closes a resolved incident; nothing leaves CLOSED.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn close_incident(
        &self,
        ctx: &Context<'_>,
        input: CloseIncidentInput,
    ) -> async_graphql::Result<Incident> {
        let id = parse_id("id", &input.id)?;
        Ok(Incident::one(
            service::close(ctx.state(), ctx.identity()?, id).await?,
        ))
    }

    /// Reopens a resolved incident: back to INVESTIGATING, `resolvedAt` cleared.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn reopen_incident(
        &self,
        ctx: &Context<'_>,
        input: ReopenIncidentInput,
    ) -> async_graphql::Result<Incident> {
        let id = parse_id("id", &input.id)?;
        Ok(Incident::one(
            service::reopen(ctx.state(), ctx.identity()?, id).await?,
        ))
    }

    /// Adds a note to an incident.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn add_incident_note(
        &self,
        ctx: &Context<'_>,
        input: AddIncidentNoteInput,
    ) -> async_graphql::Result<IncidentNote> {
        let id = parse_id("incidentId", &input.incident_id)?;
        Ok(IncidentNote::one(
            service::add_note(ctx.state(), ctx.identity()?, id, &input.body).await?,
        ))
    }

    /// Edits one of your notes.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn update_incident_note(
        &self,
        ctx: &Context<'_>,
        input: UpdateIncidentNoteInput,
    ) -> async_graphql::Result<IncidentNote> {
        let id = parse_id("id", &input.id)?;
        Ok(IncidentNote::one(
            service::edit_note(ctx.state(), ctx.identity()?, id, &input.body).await?,
        ))
    }

    /// Deletes one of your notes (moderators may delete any); returns the deleted note.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn delete_incident_note(
        &self,
        ctx: &Context<'_>,
        input: DeleteIncidentNoteInput,
    ) -> async_graphql::Result<IncidentNote> {
        let id = parse_id("id", &input.id)?;
        Ok(IncidentNote::one(
            service::delete_note(ctx.state(), ctx.identity()?, id).await?,
        ))
    }

    /// Computes and stores suggested root causes for an incident; returns them.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn analyze_incident(
        &self,
        ctx: &Context<'_>,
        input: AnalyzeIncidentInput,
    ) -> async_graphql::Result<IncidentAnalysis> {
        let id = parse_id("id", &input.id)?;
        let lookback = match input.lookback.as_deref() {
            Some(l) => timeline::parse_lookback(l)?,
            None => analysis::DEFAULT_LOOKBACK,
        };
        service::get(&ctx.state().db, ctx.identity()?, id).await?;
        Ok(IncidentAnalysis(
            analysis::analyze_with(ctx.state(), id, lookback).await?,
        ))
    }
}

/// Live incident updates.
#[derive(Default)]
pub struct IncidentSubscription;

#[Subscription]
impl IncidentSubscription {
    /// Each new incident the subscriber may see (users: created by or assigned to them; moderators: all).
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn incident_created(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Incident>>> {
        let me = ctx.identity()?.clone();
        let stream = ctx.live(|t| &t.incidents);
        Ok(stream.filter_map(move |d| {
            let item = live::created_for(&me, d).map(|r| r.map(Incident::one).map_err(Into::into));
            async move { item }
        }))
    }

    /// Every change of one incident, with the change itself, while the
    /// subscriber may see the incident (re-checked on each change).
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn incident_updated(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The incident.")] id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<IncidentChange>>> {
        let id = parse_id("id", &id)?;
        let me = ctx.identity()?.clone();
        // Subscribe first so nothing committed after the check is missed.
        let stream = ctx.live(|t| &t.incidents);
        service::get(&ctx.state().db, &me, id).await?;
        Ok(stream.filter_map(move |d| {
            let item = live::updated_for(&me, id, d)
                .map(|r| r.map(IncidentChange::new).map_err(Into::into));
            async move { item }
        }))
    }
}
