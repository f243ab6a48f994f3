//! The reconstructed timeline of an incident: its own changes and notes,
//! the transitions of its linked alerts, and the events around it, merged
//! and ordered by `(time, id)`.
//!
//! The window runs from `startedAt − lookback` (default 1 h, at most 7 days)
//! to `resolvedAt` (or now), inclusive; it bounds events and alert
//! transitions, while the incident's own changes and notes are all shown.
//! Events are in the timeline when they come from one of the incident's
//! `sources`, when they are at `warn` or above (from any source), or when
//! they share a correlation tag (`trace_id`, `request_id`,
//! `correlation_id`) with such an event (one hop). Each entry says why it is
//! there. A note is shown once, as its NOTE entry: the audit record of its
//! addition is left out, while edits and deletions appear as CHANGE entries.
//!
//! The transitions of linked alerts are ALERT entries, each with its alert
//! event (for firing and resolved transitions); those alert events are not
//! repeated as EVENT entries.
//!
//! Each kind is one indexed range scan that stops after the page (keyset on
//! `(time, id)`); the correlation test is an uncorrelated subquery over the
//! same window, evaluated once per statement. Nothing is queried per entry:
//! the linked alerts are read once, and the alert events of a page of
//! transitions in one statement.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{
    Alias, Asterisk, Condition, Expr, ExprTrait, Func, Order, Query, SelectStatement,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Select,
};
use serde_json::Value;
use uuid::Uuid;

use super::entity::{change, incident, incident_alert, note};
use super::model;
use crate::alerts::entity::transition;
use crate::alerts::eval::ALERT_EVENT_SOURCE;
use crate::auth::service::users_by_ids;
use crate::error::{AppError, AppResult};
use crate::events::entity as event;
use crate::events::{EventType, Level};
use crate::pagination::{Cursor, after_condition};

/// Default lookback before `startedAt`.
pub const DEFAULT_LOOKBACK: Duration = Duration::hours(1);
/// Longest lookback.
pub const MAX_LOOKBACK: Duration = Duration::days(7);
/// Tags that correlate events with each other.
pub const CORRELATION_TAGS: [&str; 3] = ["trace_id", "request_id", "correlation_id"];
/// Longest summary, in characters.
const SUMMARY_CHARS: usize = 200;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A change of the incident (including its creation).
    Change,
    /// A note on the incident.
    Note,
    /// A state transition of a linked alert.
    Alert,
    /// An event.
    Event,
}

impl EntryKind {
    /// All kinds.
    pub const ALL: [EntryKind; 4] = [
        EntryKind::Change,
        EntryKind::Note,
        EntryKind::Alert,
        EntryKind::Event,
    ];

    /// The REST spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Change => "change",
            EntryKind::Note => "note",
            EntryKind::Alert => "alert",
            EntryKind::Event => "event",
        }
    }
}

/// Validates a lookback: from zero to seven days.
pub fn lookback(d: Duration) -> AppResult<Duration> {
    if d < Duration::zero() {
        return Err(AppError::bad_input(
            "lookback",
            "lookback must not be negative",
        ));
    }
    if d > MAX_LOOKBACK {
        return Err(AppError::bad_input(
            "lookback",
            "lookback must be at most 7 days",
        ));
    }
    Ok(d)
}

/// Parses a GraphQL lookback such as `90m`, `1h`, `2d` or `3600` (seconds).
pub fn parse_lookback(text: &str) -> AppResult<Duration> {
    if text.chars().count() > 40 {
        return Err(AppError::bad_input("lookback", "lookback is too long"));
    }
    let d = crate::config::parse_duration(text).map_err(|e| AppError::bad_input("lookback", e))?;
    let d = Duration::from_std(d)
        .map_err(|_| AppError::bad_input("lookback", "lookback must be at most 7 days"))?;
    lookback(d)
}

/// Converts REST `lookback_hours` (a number, fractions allowed).
pub fn lookback_hours(hours: f64) -> AppResult<Duration> {
    if !hours.is_finite() {
        return Err(AppError::bad_input(
            "lookback_hours",
            "lookback_hours must be a finite number",
        ));
    }
    if !(0.0..=MAX_LOOKBACK.num_hours() as f64).contains(&hours) {
        return Err(AppError::bad_input(
            "lookback_hours",
            "lookback_hours must be between 0 and 168 (7 days)",
        ));
    }
    Ok(Duration::microseconds(
        (hours * 3_600_000_000.0).round() as i64
    ))
}

/// The span of time a timeline covers, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// `startedAt − lookback`.
    pub start: DateTime<Utc>,
    /// `resolvedAt`, or now while unresolved.
    pub end: DateTime<Utc>,
}

impl Window {
    /// The window of an incident seen at `now`.
    pub fn of(inc: &incident::Model, lookback: Duration, now: DateTime<Utc>) -> Window {
        let start = inc.started_at - lookback;
        let end = std::cmp::max(inc.resolved_at.unwrap_or(now), start);
        Window { start, end }
    }
}

/// What to include.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The kinds wanted (all when empty).
    pub kinds: Vec<EntryKind>,
    /// Events at this level or above only (events without a level are left out).
    pub min_level: Option<Level>,
}

impl Selection {
    fn wants(&self, k: EntryKind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&k)
    }
}

/// One line of a timeline.
#[derive(Debug, Clone)]
pub struct Entry {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The id of the underlying row (change, note, transition or event).
    pub id: Uuid,
    /// What it is.
    pub kind: EntryKind,
    /// Why it is in the timeline.
    pub reason: String,
    /// Who did it, for changes and notes.
    pub actor: Option<Uuid>,
    /// One line for humans.
    pub summary: String,
    /// The event: for `Event` entries, and for `Alert` entries the alert
    /// event written for a firing or resolved transition.
    pub event: Option<event::Model>,
    /// The alert transition, for `Alert` entries.
    pub transition: Option<transition::Model>,
}

impl Entry {
    /// The entry's position in the timeline order.
    pub fn cursor(&self) -> Cursor {
        Cursor::new(self.at, self.id)
    }
}

/// The timeline of one incident over one window.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// The incident.
    pub incident: incident::Model,
    /// The window.
    pub window: Window,
    /// What to include.
    pub selection: Selection,
}

fn clip(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().count() > n {
        out.push('…');
    }
    out
}

fn json_text(backend: DatabaseBackend, key: &str) -> Expr {
    json_field(backend, "tags", key)
}

fn json_field(backend: DatabaseBackend, column: &str, key: &str) -> Expr {
    // Columns and keys are our constants, never client input.
    match backend {
        DatabaseBackend::Postgres => Expr::cust(format!("(\"{column}\" ->> '{key}')")),
        _ => Expr::cust(format!("json_extract(\"{column}\", '$.{key}')")),
    }
}

/// The alert events the evaluator wrote for these alert instances.
fn alert_events_of(backend: DatabaseBackend, instances: &[Uuid]) -> Condition {
    Condition::all()
        .add(event::Column::EventType.eq(EventType::Alert.as_str()))
        .add(event::Column::Source.eq(ALERT_EVENT_SOURCE))
        .add(
            // Never NULL, so that the negation keeps every other event.
            Expr::expr(Func::coalesce([
                json_field(backend, "payload", "alert_id"),
                Expr::val(""),
            ]))
            .is_in(instances.iter().map(|i| i.to_string())),
        )
}

/// The incident's linked alert instances, in id order.
pub async fn linked_instances(
    db: &impl ConnectionTrait,
    incident_id: Uuid,
) -> AppResult<Vec<Uuid>> {
    let mut ids: Vec<Uuid> = incident_alert::Entity::find()
        .select_only()
        .column(incident_alert::Column::InstanceId)
        .filter(incident_alert::Column::IncidentId.eq(incident_id))
        .into_tuple()
        .all(db)
        .await?;
    ids.sort();
    Ok(ids)
}

fn warn_levels() -> Vec<&'static str> {
    Level::Warn
        .and_above()
        .into_iter()
        .map(Level::as_str)
        .collect()
}

/// The first `take` rows of `q` after `after`, in `(time, id)` order: one
/// range scan of a `(…, time, id)` index.
async fn page_of<E>(
    db: &impl ConnectionTrait,
    q: Select<E>,
    at: E::Column,
    id: E::Column,
    after: Option<Cursor>,
    take: u64,
) -> AppResult<Vec<E::Model>>
where
    E: EntityTrait,
    E::Column: ColumnTrait + Copy,
{
    let q = match &after {
        Some(c) => q.filter(after_condition(at, id, c, true)),
        None => q,
    };
    Ok(q.order_by_asc(at)
        .order_by_asc(id)
        .limit(take)
        .all(db)
        .await?)
}

impl Timeline {
    fn window_cond(&self) -> Condition {
        Condition::all()
            .add(event::Column::Timestamp.gte(self.window.start))
            .add(event::Column::Timestamp.lte(self.window.end))
    }

    fn sources(&self) -> Vec<String> {
        model::stored_sources(&self.incident.sources)
    }

    /// Events there on their own: from the incident's sources, or at warn+.
    fn base_cond(&self) -> Condition {
        let sources = self.sources();
        let mut c = Condition::any().add(event::Column::Level.is_in(warn_levels()));
        if !sources.is_empty() {
            c = c.add(event::Column::Source.is_in(sources));
        }
        c
    }

    /// `tags.<key>` is shared with a base event of the window.
    fn correlated(&self, backend: DatabaseBackend, key: &str) -> Expr {
        let mut sub = Query::select();
        sub.expr(json_text(backend, key))
            .from(event::Entity)
            .cond_where(self.window_cond())
            .cond_where(self.base_cond())
            .and_where(json_text(backend, key).is_not_null());
        json_text(backend, key).in_subquery(sub.to_owned())
    }

    /// The incident's changes, except note additions (the note itself is
    /// its own entry) and alert state changes (the transition is its own
    /// entry).
    fn changes_cond(&self) -> Condition {
        Condition::all()
            .add(change::Column::IncidentId.eq(self.incident.id))
            .add(change::Column::Field.ne("alert"))
            .add(
                Condition::any()
                    .add(change::Column::Field.ne("note"))
                    .add(change::Column::OldValue.is_not_null()),
            )
    }

    fn events_where(&self, backend: DatabaseBackend, linked: &[Uuid], q: &mut SelectStatement) {
        let mut member = self.base_cond();
        for key in CORRELATION_TAGS {
            member = member.add(self.correlated(backend, key));
        }
        q.cond_where(self.window_cond()).cond_where(member);
        if !linked.is_empty() {
            // Shown with their transitions, as ALERT entries.
            q.cond_where(alert_events_of(backend, linked).not());
        }
        if let Some(min) = self.selection.min_level {
            let levels: Vec<&str> = min.and_above().into_iter().map(Level::as_str).collect();
            q.and_where(event::Column::Level.is_in(levels));
        }
    }

    async fn events(
        &self,
        db: &impl ConnectionTrait,
        linked: &[Uuid],
        after: Option<Cursor>,
        take: u64,
    ) -> AppResult<Vec<Entry>> {
        let backend = db.get_database_backend();
        let mut q = Query::select();
        q.column(Asterisk).from(event::Entity);
        for key in CORRELATION_TAGS {
            q.expr_as(
                self.correlated(backend, key),
                Alias::new(format!("corr_{key}")),
            );
        }
        self.events_where(backend, linked, &mut q);
        if let Some(c) = &after {
            q.cond_where(after_condition(
                event::Column::Timestamp,
                event::Column::Id,
                c,
                true,
            ));
        }
        q.order_by(event::Column::Timestamp, Order::Asc)
            .order_by(event::Column::Id, Order::Asc)
            .limit(take);
        let rows = db.query_all(&q).await?;
        let sources: HashSet<String> = self.sources().into_iter().collect();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let e = event::Model::from_query_result(&row, "")?;
            let mut correlated_by = None;
            for key in CORRELATION_TAGS {
                let hit: Option<bool> = row.try_get("", &format!("corr_{key}")).ok().flatten();
                if hit == Some(true) {
                    correlated_by = Some(key);
                    break;
                }
            }
            let level = e.level.as_deref().and_then(|l| l.parse::<Level>().ok());
            let reason = if sources.contains(&e.source) {
                format!("from the incident's source `{}`", e.source)
            } else if level.is_some_and(|l| l >= Level::Warn) {
                format!(
                    "at level {} from `{}`",
                    level.map(Level::as_str).unwrap_or_default(),
                    e.source
                )
            } else if let Some(key) = correlated_by {
                let value = match e.tags.get(key) {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                };
                format!(
                    "shares {key} `{}` with an event in the timeline",
                    clip(&value, 80)
                )
            } else {
                "in the incident's window".to_owned()
            };
            let summary = match (&e.level, &e.message) {
                (Some(l), Some(m)) => format!("[{l}] {}: {}", e.source, m),
                (None, Some(m)) => format!("{}: {}", e.source, m),
                (Some(l), None) => format!("[{l}] {} {} event", e.source, e.event_type),
                (None, None) => format!("{} {} event", e.source, e.event_type),
            };
            out.push(Entry {
                at: e.timestamp,
                id: e.id,
                kind: EntryKind::Event,
                reason,
                actor: None,
                summary: clip(&summary, SUMMARY_CHARS),
                event: Some(e),
                transition: None,
            });
        }
        Ok(out)
    }

    async fn changes(
        &self,
        db: &impl ConnectionTrait,
        after: Option<Cursor>,
        take: u64,
    ) -> AppResult<Vec<Entry>> {
        let rows = page_of(
            db,
            change::Entity::find().filter(self.changes_cond()),
            change::Column::At,
            change::Column::Id,
            after,
            take,
        )
        .await?;
        // Name the users that assignment changes mention: one query.
        let mut mentioned: Vec<Uuid> = rows
            .iter()
            .filter(|c| c.field == "assignedTo")
            .flat_map(|c| [&c.old_value, &c.new_value])
            .filter_map(|v| v.as_ref().and_then(|v| v.as_str()))
            .filter_map(|s| Uuid::parse_str(s).ok())
            .collect();
        mentioned.sort();
        mentioned.dedup();
        let names: HashMap<String, String> = users_by_ids(db, &mentioned)
            .await?
            .into_iter()
            .map(|u| (u.id.to_string(), u.username))
            .collect();
        Ok(rows
            .into_iter()
            .map(|c| Entry {
                at: c.at,
                id: c.id,
                kind: EntryKind::Change,
                reason: "a change of the incident".to_owned(),
                actor: c.actor_id,
                summary: clip(&change_summary(&c, &names), SUMMARY_CHARS),
                event: None,
                transition: None,
            })
            .collect())
    }

    fn transitions_cond(&self, linked: &[Uuid]) -> Condition {
        Condition::all()
            .add(transition::Column::InstanceId.is_in(linked.iter().copied()))
            .add(transition::Column::At.gte(self.window.start))
            .add(transition::Column::At.lte(self.window.end))
    }

    async fn alerts(
        &self,
        db: &impl ConnectionTrait,
        linked: &[Uuid],
        after: Option<Cursor>,
        take: u64,
    ) -> AppResult<Vec<Entry>> {
        if linked.is_empty() {
            return Ok(Vec::new());
        }
        let rows = page_of(
            db,
            transition::Entity::find().filter(self.transitions_cond(linked)),
            transition::Column::At,
            transition::Column::Id,
            after,
            take,
        )
        .await?;
        // The alert events of firing and resolved transitions: one statement.
        let mut times: Vec<DateTime<Utc>> = rows
            .iter()
            .filter(|t| t.to_state == "firing" || t.from_state == "firing")
            .map(|t| t.at)
            .collect();
        times.sort();
        times.dedup();
        let mut alert_events: HashMap<(String, DateTime<Utc>), event::Model> = HashMap::new();
        if !times.is_empty() {
            let backend = db.get_database_backend();
            let found = event::Entity::find()
                .filter(alert_events_of(backend, linked))
                .filter(event::Column::Timestamp.is_in(times))
                .order_by_asc(event::Column::Id)
                .all(db)
                .await?;
            for e in found {
                let Some(alert_id) = e.payload.get("alert_id").and_then(Value::as_str) else {
                    continue;
                };
                alert_events
                    .entry((alert_id.to_owned(), e.timestamp))
                    .or_insert(e);
            }
        }
        Ok(rows
            .into_iter()
            .map(|t| {
                let event = alert_events.remove(&(t.instance_id.to_string(), t.at));
                Entry {
                    at: t.at,
                    id: t.id,
                    kind: EntryKind::Alert,
                    reason: format!(
                        "a transition of the linked alert `{}`",
                        clip(&t.rule_name, 80)
                    ),
                    actor: None,
                    summary: clip(&transition_summary(&t), SUMMARY_CHARS),
                    event,
                    transition: Some(t),
                }
            })
            .collect())
    }

    async fn notes(
        &self,
        db: &impl ConnectionTrait,
        after: Option<Cursor>,
        take: u64,
    ) -> AppResult<Vec<Entry>> {
        let rows = page_of(
            db,
            note::Entity::find().filter(note::Column::IncidentId.eq(self.incident.id)),
            note::Column::CreatedAt,
            note::Column::Id,
            after,
            take,
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|n| Entry {
                at: n.created_at,
                id: n.id,
                kind: EntryKind::Note,
                reason: "a note on the incident".to_owned(),
                actor: n.author_id,
                summary: clip(&n.body, SUMMARY_CHARS),
                event: None,
                transition: None,
            })
            .collect())
    }

    /// The first `take` entries after `after`, in timeline order.
    pub async fn entries(
        &self,
        db: &impl ConnectionTrait,
        after: Option<Cursor>,
        take: u64,
    ) -> AppResult<Vec<Entry>> {
        let mut all = Vec::new();
        let linked =
            if self.selection.wants(EntryKind::Alert) || self.selection.wants(EntryKind::Event) {
                linked_instances(db, self.incident.id).await?
            } else {
                Vec::new()
            };
        if self.selection.wants(EntryKind::Change) {
            all.extend(self.changes(db, after, take).await?);
        }
        if self.selection.wants(EntryKind::Note) {
            all.extend(self.notes(db, after, take).await?);
        }
        if self.selection.wants(EntryKind::Alert) {
            all.extend(self.alerts(db, &linked, after, take).await?);
        }
        if self.selection.wants(EntryKind::Event) {
            all.extend(self.events(db, &linked, after, take).await?);
        }
        all.sort_by_key(|e| e.cursor());
        all.truncate(take as usize);
        Ok(all)
    }

    /// How many entries the timeline has in all.
    pub async fn count(&self, db: &impl ConnectionTrait) -> AppResult<u64> {
        let mut total = 0;
        let linked =
            if self.selection.wants(EntryKind::Alert) || self.selection.wants(EntryKind::Event) {
                linked_instances(db, self.incident.id).await?
            } else {
                Vec::new()
            };
        if self.selection.wants(EntryKind::Alert) && !linked.is_empty() {
            total += transition::Entity::find()
                .filter(self.transitions_cond(&linked))
                .count(db)
                .await?;
        }
        if self.selection.wants(EntryKind::Change) {
            total += change::Entity::find()
                .filter(self.changes_cond())
                .count(db)
                .await?;
        }
        if self.selection.wants(EntryKind::Note) {
            total += note::Entity::find()
                .filter(note::Column::IncidentId.eq(self.incident.id))
                .count(db)
                .await?;
        }
        if self.selection.wants(EntryKind::Event) {
            let backend = db.get_database_backend();
            let mut q = Query::select();
            q.expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
                .from(event::Entity);
            self.events_where(backend, &linked, &mut q);
            let n: i64 = match db.query_one(&q).await? {
                Some(row) => row.try_get("", "n")?,
                None => 0,
            };
            total += u64::try_from(n).unwrap_or(0);
        }
        Ok(total)
    }
}

fn value_text(v: &Option<Value>, names: &HashMap<String, String>) -> String {
    match v {
        None | Some(Value::Null) => "nothing".to_owned(),
        Some(Value::String(s)) => names.get(s).cloned().unwrap_or_else(|| clip(s, 60)),
        Some(other) => clip(&other.to_string(), 60),
    }
}

/// One line describing an alert transition: the rule, the labels, the
/// states and the value.
pub fn transition_summary(t: &transition::Model) -> String {
    let labels = match &t.labels {
        Value::Object(m) if !m.is_empty() => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect();
            format!(" {{{}}}", parts.join(", "))
        }
        _ => String::new(),
    };
    let what = match (t.from_state.as_str(), t.to_state.as_str()) {
        ("firing", "inactive") => "resolved".to_owned(),
        (_, "firing") => "firing".to_owned(),
        (from, to) => format!("{from} → {to}"),
    };
    let value = match t.value.filter(|v| v.is_finite()) {
        Some(v) => format!(" (value {v})"),
        None => String::new(),
    };
    let silenced = if t.silenced { " [silenced]" } else { "" };
    format!("alert {}{labels} {what}{value}{silenced}", t.rule_name)
}

/// One line describing an audited change.
pub fn change_summary(c: &change::Model, names: &HashMap<String, String>) -> String {
    let from = value_text(&c.old_value, names);
    let to = value_text(&c.new_value, names);
    match c.field.as_str() {
        "created" => {
            let title = c
                .new_value
                .as_ref()
                .and_then(|v| v.get("title"))
                .and_then(Value::as_str)
                .unwrap_or("");
            format!("incident created: {}", clip(title, 120))
        }
        "note" => match (&c.old_value, &c.new_value) {
            (None, Some(_)) => "note added".to_owned(),
            (Some(_), None) => "note deleted".to_owned(),
            _ => "note edited".to_owned(),
        },
        "assignedTo" => match (&c.old_value, &c.new_value) {
            (_, None) => format!("unassigned (was {from})"),
            (None, Some(_)) => format!("assigned to {to}"),
            _ => format!("reassigned from {from} to {to}"),
        },
        "description" | "rootCause" => match &c.new_value {
            None => format!("{} cleared", c.field),
            Some(_) => format!("{} set to {to}", c.field),
        },
        field => format!("{field} changed from {from} to {to}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookbacks_go_from_zero_to_seven_days() {
        assert_eq!(parse_lookback("1h").unwrap(), Duration::hours(1));
        assert_eq!(parse_lookback("0").unwrap(), Duration::zero());
        assert_eq!(parse_lookback("7d").unwrap(), Duration::days(7));
        assert!(parse_lookback("7d1s").is_err());
        assert!(parse_lookback("soon").is_err());
        assert!(parse_lookback(&"9".repeat(60)).is_err());
        assert_eq!(lookback_hours(1.5).unwrap(), Duration::minutes(90));
        assert!(lookback_hours(-1.0).is_err());
        assert!(lookback_hours(169.0).is_err());
        assert!(lookback_hours(f64::NAN).is_err());
    }

    #[test]
    fn the_window_ends_at_resolution_or_now() {
        let now = crate::util::now();
        let mut inc = super::super::service::tests_support::sample(now - Duration::hours(2));
        let w = Window::of(&inc, Duration::hours(1), now);
        assert_eq!(w.start, now - Duration::hours(3));
        assert_eq!(w.end, now);
        inc.resolved_at = Some(now - Duration::hours(1));
        assert_eq!(
            Window::of(&inc, Duration::hours(1), now).end,
            now - Duration::hours(1)
        );
    }

    #[test]
    fn transition_summaries_name_the_rule_labels_states_and_value() {
        let mut t = transition::Model {
            id: Uuid::now_v7(),
            rule_id: Uuid::now_v7(),
            rule_name: "HighCPU".into(),
            instance_id: Uuid::now_v7(),
            labels: json!({"host": "a", "dc": "eu"}),
            severity: "critical".into(),
            from_state: "pending".into(),
            to_state: "firing".into(),
            value: Some(97.5),
            silenced: false,
            at: crate::util::now(),
        };
        assert_eq!(
            transition_summary(&t),
            "alert HighCPU {dc=eu, host=a} firing (value 97.5)"
        );
        t.from_state = "firing".into();
        t.to_state = "inactive".into();
        t.value = Some(f64::NAN);
        assert_eq!(
            transition_summary(&t),
            "alert HighCPU {dc=eu, host=a} resolved"
        );
        t.from_state = "inactive".into();
        t.to_state = "pending".into();
        t.labels = json!({});
        t.value = None;
        t.silenced = true;
        assert_eq!(
            transition_summary(&t),
            "alert HighCPU inactive → pending [silenced]"
        );
    }

    #[test]
    fn change_summaries_name_the_field_and_both_values() {
        let now = crate::util::now();
        let mut c = change::Model {
            id: Uuid::now_v7(),
            incident_id: Uuid::now_v7(),
            actor_id: None,
            at: now,
            field: "status".into(),
            old_value: Some(json!("open")),
            new_value: Some(json!("investigating")),
        };
        let names = HashMap::new();
        assert_eq!(
            change_summary(&c, &names),
            "status changed from open to investigating"
        );
        let u = Uuid::now_v7().to_string();
        c.field = "assignedTo".into();
        c.old_value = None;
        c.new_value = Some(json!(u));
        let names: HashMap<String, String> = [(u.clone(), "alice".to_owned())].into();
        assert_eq!(change_summary(&c, &names), "assigned to alice");
        c.old_value = Some(json!(u));
        c.new_value = None;
        assert_eq!(change_summary(&c, &names), "unassigned (was alice)");
    }
}
