//! The alert evaluator: evaluates a rule at a time ([`evaluate_rule`], or
//! [`evaluate_in_slot`] for its scheduled slot) and every rule that is due
//! at once ([`evaluate_due_rules`], for benchmarks and tests). In the server
//! each enabled rule is evaluated by its own `monitoring_alert_evaluation`
//! task ([`crate::tasks::handlers::alert_evaluation`]), which the task
//! queue's workers claim with `FOR UPDATE SKIP LOCKED`, so exactly one
//! worker across replicas evaluates a rule at a time.
//!
//! One evaluation reads the data the expression needs (outside any write
//! transaction, so ingest is never blocked by it), then in one transaction
//! locks the rule, steps every affected instance through the state machine,
//! stores the instances, the transitions and the alert events of firing and
//! resolved transitions, and records the evaluation on the rule. Only after
//! the commit are the transitions published on the `alerts` topic and the
//! events on the `events` topic. A rule is evaluated at most once per
//! scheduled slot: the transaction checks that the slot is still the one
//! the evaluator claimed and that no later evaluation was recorded, so
//! several evaluators (replicas) never record the same transition twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::data::{self, FamilyCache};
use super::entity::{instance, rule, silence, transition};
use super::eval::{self, Budget, LabelSet};
use super::expr::{AlertExpr, Matcher, Source, matches_all};
use super::model::{self, Annotations, IncidentSeverity, Severity};
use super::state::{self, AlertState, Instance, Timing, Transition};
use crate::db::Backend;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::{self, EventType, NewEvent};
use crate::incidents::{
    self,
    service::{AlertStateChange, FiringAlert, IncidentEvent},
};
use crate::pubsub::Published;
use crate::state::AppState;
use crate::util;

/// Rows per multi-row insert.
const INSERT_CHUNK: usize = 200;

/// What one evaluation of one rule did.
#[derive(Debug, Clone)]
pub struct EvaluationOutcome {
    /// The rule.
    pub rule_id: Uuid,
    /// The evaluation time.
    pub at: DateTime<Utc>,
    /// Whether the rule was evaluated (`false`: it was disabled or deleted,
    /// changed meanwhile, or already evaluated at this time or later).
    pub evaluated: bool,
    /// Label sets whose condition held.
    pub matching: usize,
    /// The transitions recorded.
    pub transitions: Vec<transition::Model>,
    /// Why the evaluation failed, when it did (also stored on the rule).
    pub error: Option<String>,
    /// How long it took.
    pub duration: std::time::Duration,
}

impl EvaluationOutcome {
    fn skipped(rule_id: Uuid, at: DateTime<Utc>, started: Instant) -> Self {
        EvaluationOutcome {
            rule_id,
            at,
            evaluated: false,
            matching: 0,
            transitions: Vec::new(),
            error: None,
            duration: started.elapsed(),
        }
    }
}

/// What one scheduling round did.
#[derive(Debug, Clone, Default)]
pub struct RoundOutcome {
    /// Rules evaluated.
    pub evaluated: usize,
    /// Rules whose evaluation failed.
    pub failed: usize,
    /// Transitions recorded.
    pub transitions: usize,
    /// When the next enabled rule is due.
    pub next_due: Option<DateTime<Utc>>,
}

/// Reads shared by the rules of one round: metric families and silences.
#[derive(Default)]
struct RoundCache {
    families: FamilyCache,
    silences: Mutex<Option<Arc<Vec<ActiveSilence>>>>,
}

/// An active silence, compiled.
#[derive(Debug, Clone)]
pub struct ActiveSilence {
    /// Its id.
    pub id: Uuid,
    /// Its matchers.
    pub matchers: Vec<Matcher>,
}

impl RoundCache {
    async fn silences(
        &self,
        db: &impl ConnectionTrait,
        now: DateTime<Utc>,
    ) -> AppResult<Arc<Vec<ActiveSilence>>> {
        if let Some(hit) = self.lock().clone() {
            return Ok(hit);
        }
        let loaded = Arc::new(active_silences(db, now).await?);
        *self.lock() = Some(loaded.clone());
        Ok(loaded)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Vec<ActiveSilence>>>> {
        match self.silences.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// The silences active at `now`, oldest first.
pub async fn active_silences(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
) -> AppResult<Vec<ActiveSilence>> {
    let rows = silence::Entity::find()
        .filter(silence::Column::EndsAt.gt(now))
        .filter(silence::Column::StartsAt.lte(now))
        .order_by_asc(silence::Column::CreatedAt)
        .order_by_asc(silence::Column::Id)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|s| ActiveSilence {
            id: s.id,
            matchers: model::stored_matchers(&s.matchers),
        })
        .collect())
}

/// The first active silence whose matchers all match the labels.
pub fn silence_for(silences: &[ActiveSilence], labels: &LabelSet) -> Option<Uuid> {
    silences
        .iter()
        .find(|s| !s.matchers.is_empty() && matches_all(&s.matchers, labels))
        .map(|s| s.id)
}

/// The state-machine view of a stored instance.
pub fn to_state(row: &instance::Model) -> Instance {
    Instance {
        state: row.state.parse().unwrap_or(AlertState::Inactive),
        active_at: row.active_at,
        fired_at: row.fired_at,
        resolved_at: row.resolved_at,
        keep_firing_since: row.keep_firing_since,
        value: row.value,
    }
}

/// A rule's timing settings.
pub fn timing_of(rule: &rule::Model) -> Timing {
    Timing {
        for_secs: u64::try_from(rule.for_secs).unwrap_or(0),
        keep_firing_for_secs: u64::try_from(rule.keep_firing_for_secs).unwrap_or(0),
    }
}

/// Everything one evaluation (or a forced deactivation) writes, built in
/// memory first and written in one transaction.
pub(crate) struct Changes {
    rule: rule::Model,
    severity: Severity,
    annotations: Annotations,
    now: DateTime<Utc>,
    instances: Vec<instance::Model>,
    transitions: Vec<transition::Model>,
    events: Vec<NewEvent>,
    /// Alerts that open an incident (firing, unsilenced, `createIncident`).
    opening: Vec<FiringAlert>,
    /// Firing and resolved transitions, for the incidents linked to them.
    alert_changes: Vec<AlertStateChange>,
}

/// What one evaluation (or forced deactivation) committed, for [`publish`]:
/// the transitions, the alert events, and what they did to incidents.
#[derive(Debug, Default)]
pub struct Written {
    /// The stored transitions.
    pub transitions: Vec<transition::Model>,
    /// The stored alert events.
    pub events: Vec<events::entity::Model>,
    /// Incidents opened or changed by the transitions.
    pub incidents: Vec<IncidentEvent>,
}

impl Changes {
    pub(crate) fn new(rule: &rule::Model, now: DateTime<Utc>) -> Changes {
        Changes {
            severity: Severity::stored(&rule.severity),
            annotations: Annotations::stored(&rule.annotations),
            rule: rule.clone(),
            now,
            instances: Vec::new(),
            transitions: Vec::new(),
            events: Vec::new(),
            opening: Vec::new(),
            alert_changes: Vec::new(),
        }
    }

    /// Records the result of one step for an instance (`prev` is `None` for
    /// a new one): the row to store, and the transition with its event.
    fn record(
        &mut self,
        prev: Option<&instance::Model>,
        labels: &LabelSet,
        next: Instance,
        transition: Option<Transition>,
        silenced_by: Option<Uuid>,
    ) {
        let now = self.now;
        let id = prev.map_or_else(Uuid::now_v7, |p| p.id);
        let resolved = next.state == AlertState::Inactive;
        let row = instance::Model {
            id,
            rule_id: self.rule.id,
            fingerprint: prev.map_or_else(|| eval::fingerprint(labels), |p| p.fingerprint.clone()),
            labels: eval::labels_to_json(labels),
            state: next.state.as_str().to_owned(),
            active_at: next.active_at,
            fired_at: next.fired_at,
            resolved_at: next.resolved_at,
            keep_firing_since: next.keep_firing_since,
            value: next.value,
            last_evaluated_at: Some(now),
            silenced_by,
            // The acknowledgement ends when the alert resolves.
            acknowledged_by: prev.and_then(|p| p.acknowledged_by).filter(|_| !resolved),
            acknowledged_at: prev.and_then(|p| p.acknowledged_at).filter(|_| !resolved),
            acknowledged_comment: prev
                .and_then(|p| p.acknowledged_comment.clone())
                .filter(|_| !resolved),
            created_at: prev.map_or(now, |p| p.created_at),
            updated_at: now,
        };
        self.note_for_incidents(prev, labels, &row, transition);
        if let Some(t) = transition {
            self.transitions.push(transition::Model {
                id: Uuid::now_v7(),
                rule_id: self.rule.id,
                rule_name: self.rule.name.clone(),
                instance_id: id,
                labels: row.labels.clone(),
                severity: self.severity.as_str().to_owned(),
                from_state: t.from.as_str().to_owned(),
                to_state: t.to.as_str().to_owned(),
                value: t.value,
                silenced: silenced_by.is_some() || prev.is_some_and(|p| p.silenced_by.is_some()),
                at: t.at,
            });
            let fired = t.to == AlertState::Firing;
            let resolved = t.from == AlertState::Firing && t.to == AlertState::Inactive;
            if fired || resolved {
                self.events.push(self.alert_event(&row, labels, t, fired));
            }
        }
        self.instances.push(row);
    }

    /// Notes what the step means for incidents: a firing, unsilenced alert
    /// of a rule with `createIncident` opens one (when it starts firing, or
    /// when its silence ends while it fires), and every firing or resolved
    /// transition is recorded on the incidents linked to the alert.
    fn note_for_incidents(
        &mut self,
        prev: Option<&instance::Model>,
        labels: &LabelSet,
        row: &instance::Model,
        transition: Option<Transition>,
    ) {
        let firing = row.state == AlertState::Firing.as_str();
        let started = transition.is_some_and(|t| t.to == AlertState::Firing);
        let unsilenced = prev.is_some_and(|p| p.silenced_by.is_some());
        if self.rule.create_incident
            && firing
            && row.silenced_by.is_none()
            && (started || unsilenced)
        {
            let severity = self
                .rule
                .incident_severity
                .as_deref()
                .and_then(|s| s.parse::<IncidentSeverity>().ok())
                .unwrap_or_else(|| self.severity.default_incident_severity());
            self.opening.push(FiringAlert {
                instance_id: row.id,
                rule_id: self.rule.id,
                rule_name: self.rule.name.clone(),
                labels: labels.clone(),
                severity,
                value: row.value,
                fired_at: row.fired_at.unwrap_or(self.now),
                summary: self.annotations.summary.clone(),
            });
        }
        let Some(t) = transition else { return };
        let resolved = t.from == AlertState::Firing && t.to == AlertState::Inactive;
        if started || resolved {
            self.alert_changes.push(AlertStateChange {
                instance_id: row.id,
                rule_name: self.rule.name.clone(),
                labels: labels.clone(),
                from: t.from.as_str().to_owned(),
                to: t.to.as_str().to_owned(),
                value: t.value,
                at: t.at,
            });
        }
    }

    fn alert_event(
        &self,
        row: &instance::Model,
        labels: &LabelSet,
        t: Transition,
        fired: bool,
    ) -> NewEvent {
        let rule = &self.rule;
        let state = if fired { "firing" } else { "resolved" };
        NewEvent {
            event_type: EventType::Alert,
            source: eval::ALERT_EVENT_SOURCE.to_owned(),
            message: Some(eval::alert_event_message(
                &rule.name,
                fired,
                labels,
                t.value,
                self.annotations.summary.as_deref(),
            )),
            level: Some(
                if fired {
                    self.severity.event_level()
                } else {
                    "info"
                }
                .to_owned(),
            ),
            tags: eval::alert_event_tags(labels, &rule.name, rule.id, self.severity),
            payload: serde_json::json!({
                "state": state,
                "from": t.from.as_str(),
                "to": t.to.as_str(),
                "value": t.value.filter(|v| v.is_finite()),
                "rule": {
                    "id": rule.id,
                    "name": rule.name,
                    "query": rule.query,
                    "severity": self.severity.as_str(),
                },
                "alert_id": row.id,
                "labels": row.labels,
                "silenced": row.silenced_by.is_some(),
                "active_at": row.active_at,
                "fired_at": row.fired_at,
                "resolved_at": row.resolved_at,
                "annotations": self.annotations.to_json(),
            }),
            timestamp: Some(t.at),
        }
    }

    /// Writes the instances, transitions, events and their effect on
    /// incidents through `txn`; returns what was stored, for [`publish`]
    /// after the commit.
    pub(crate) async fn write(self, txn: &DatabaseTransaction) -> AppResult<Written> {
        for chunk in self.instances.chunks(INSERT_CHUNK) {
            let rows: Vec<instance::ActiveModel> = chunk
                .iter()
                .cloned()
                .map(instance::ActiveModel::from)
                .collect();
            instance::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::column(instance::Column::Id)
                        .update_columns([
                            instance::Column::Labels,
                            instance::Column::State,
                            instance::Column::ActiveAt,
                            instance::Column::FiredAt,
                            instance::Column::ResolvedAt,
                            instance::Column::KeepFiringSince,
                            instance::Column::Value,
                            instance::Column::LastEvaluatedAt,
                            instance::Column::SilencedBy,
                            instance::Column::AcknowledgedBy,
                            instance::Column::AcknowledgedAt,
                            instance::Column::AcknowledgedComment,
                            instance::Column::UpdatedAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(txn)
                .await?;
        }
        for chunk in self.transitions.chunks(INSERT_CHUNK) {
            let rows: Vec<transition::ActiveModel> = chunk
                .iter()
                .cloned()
                .map(transition::ActiveModel::from)
                .collect();
            transition::Entity::insert_many(rows)
                .exec_without_returning(txn)
                .await?;
        }
        let mut stored_events = Vec::with_capacity(self.events.len());
        for event in self.events {
            stored_events.push(events::create_event(txn, None, event).await?);
        }
        let incidents = incidents::service::apply_alert_changes_in(
            txn,
            Backend::of(txn),
            &self.opening,
            &self.alert_changes,
        )
        .await?;
        Ok(Written {
            transitions: self.transitions,
            events: stored_events,
            incidents,
        })
    }
}

/// Announces the transitions, alert events and incident changes written in
/// `txn` to live subscribers (on every replica); call `committed()` on the
/// result after the commit.
pub async fn publish(
    state: &AppState,
    txn: &DatabaseTransaction,
    written: Written,
) -> AppResult<crate::pubsub::Announcement> {
    for event in &written.incidents {
        if let IncidentEvent::Created(m) = event {
            tracing::info!(incident_id = %m.id, "incident opened for a firing alert");
        }
    }
    let items = written
        .transitions
        .into_iter()
        .map(Published::Alert)
        .chain(written.events.into_iter().map(Published::Event))
        .chain(written.incidents.into_iter().map(Published::Incident))
        .collect();
    state.hub.announce(txn, items).await
}

/// The groups whose condition holds at `now`, with their values.
async fn matching_groups(
    state: &AppState,
    expr: &AlertExpr,
    now: DateTime<Utc>,
    families: &FamilyCache,
) -> AppResult<Vec<(LabelSet, f64)>> {
    let config = &state.config;
    let lookback = TimeDelta::from_std(config.alert_lookback).unwrap_or(TimeDelta::minutes(5));
    let values = match expr.source {
        Source::Metric(_) => {
            let Some(data) = data::metric_data_at(
                &state.db,
                families,
                expr,
                now,
                lookback,
                config.alert_max_samples,
            )
            .await?
            else {
                return Ok(Vec::new());
            };
            let groups = eval::group_series(expr, &data.series);
            eval::metric_values(
                expr,
                &data,
                &groups,
                now,
                lookback,
                &mut Budget::unlimited(),
            )
            .map_err(|_| data::too_much_data("samples", config.alert_max_samples))?
        }
        Source::Events => data::event_counts_at(&state.db, expr, now, config.alert_max_samples)
            .await?
            .into_iter()
            .filter_map(|(labels, n)| eval::event_value(expr, n).map(|v| (labels, v)))
            .collect(),
    };
    Ok(eval::true_groups(expr, values))
}

/// Evaluates one rule at `now` (which must not be before its last
/// evaluation): moves its instances through the state machine, stores the
/// transitions and alert events in one transaction, then publishes them.
///
/// A disabled or deleted rule is skipped (`evaluated: false`). When the
/// expression cannot be evaluated (its data exceeds the limits), the rule
/// records the error and its alerts keep their state.
#[tracing::instrument(skip(state), fields(rule_id = %rule_id))]
pub async fn evaluate_rule(
    state: &AppState,
    rule_id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<EvaluationOutcome> {
    let cache = RoundCache::default();
    evaluate(state, rule_id, now, None, &cache).await
}

/// Evaluates one rule at `now` for its scheduled slot `due` (the rule's
/// `next_evaluation_at` as the caller read it): the evaluation is recorded
/// only if the rule is still due at `due` (no update or other evaluation
/// came in between), and it moves the rule's `next_evaluation_at` to `next`.
pub async fn evaluate_in_slot(
    state: &AppState,
    rule_id: Uuid,
    now: DateTime<Utc>,
    due: DateTime<Utc>,
    next: DateTime<Utc>,
) -> AppResult<EvaluationOutcome> {
    let cache = RoundCache::default();
    evaluate(state, rule_id, now, Some((due, next)), &cache).await
}

async fn evaluate(
    state: &AppState,
    rule_id: Uuid,
    now: DateTime<Utc>,
    slot: Option<(DateTime<Utc>, DateTime<Utc>)>,
    cache: &RoundCache,
) -> AppResult<EvaluationOutcome> {
    let started = Instant::now();
    let now = util::to_stored_precision(now);
    let Some(rule) = rule::Entity::find_by_id(rule_id).one(&state.db).await? else {
        return Err(AppError::not_found("alert rule"));
    };
    if !rule.enabled {
        return Ok(EvaluationOutcome::skipped(rule_id, now, started));
    }
    let computed = match model::compile_condition(&rule.query, rule.threshold) {
        Ok(expr) => matching_groups(state, &expr, now, &cache.families).await,
        Err(e) => Err(AppError::from(e)),
    };
    let matching = match computed {
        Ok(groups) => groups,
        Err(e) if e.code == ErrorCode::BadUserInput => {
            record_failure(state, &rule, now, slot, &e.message, started).await?;
            let mut outcome = EvaluationOutcome::skipped(rule_id, now, started);
            outcome.error = Some(e.message);
            return Ok(outcome);
        }
        Err(e) => return Err(e),
    };
    let silences = cache.silences(&state.db, now).await?;

    let txn = crate::db::begin_write(&state.db).await?;
    let current = rule::Entity::find_by_id(rule_id)
        .lock_exclusive()
        .one(&txn)
        .await?;
    let Some(current) = current else {
        return Ok(EvaluationOutcome::skipped(rule_id, now, started));
    };
    let stale = !current.enabled
        || current.updated_at != rule.updated_at
        || current.last_evaluated_at.is_some_and(|t| t >= now)
        || slot.is_some_and(|(expected, _)| current.next_evaluation_at != expected);
    if stale {
        txn.rollback().await?;
        return Ok(EvaluationOutcome::skipped(rule_id, now, started));
    }
    let existing = instance::Entity::find()
        .filter(instance::Column::RuleId.eq(rule_id))
        .all(&txn)
        .await?;
    let changes = step_instances(&current, existing, &matching, &silences, now);
    let written = changes.write(&txn).await?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut update = rule::Entity::update_many()
        .col_expr(rule::Column::LastEvaluatedAt, Expr::value(now))
        .col_expr(rule::Column::LastEvaluationMs, Expr::value(elapsed_ms))
        .col_expr(rule::Column::LastError, Expr::value(Option::<String>::None));
    if let Some((_, next)) = slot {
        update = update.col_expr(rule::Column::NextEvaluationAt, Expr::value(next));
    }
    update
        .filter(rule::Column::Id.eq(rule_id))
        .exec(&txn)
        .await?;
    let transitions = written.transitions.clone();
    let announced = publish(state, &txn, written).await?;
    txn.commit().await?;
    tracing::debug!(
        matching = matching.len(),
        transitions = transitions.len(),
        elapsed_ms,
        "alert rule evaluated"
    );
    let outcome = EvaluationOutcome {
        rule_id,
        at: now,
        evaluated: true,
        matching: matching.len(),
        transitions,
        error: None,
        duration: started.elapsed(),
    };
    announced.committed();
    Ok(outcome)
}

/// Steps every instance the evaluation concerns: those whose condition held
/// (new or not) and the existing ones that are pending or firing.
fn step_instances(
    rule: &rule::Model,
    existing: Vec<instance::Model>,
    matching: &[(LabelSet, f64)],
    silences: &[ActiveSilence],
    now: DateTime<Utc>,
) -> Changes {
    let timing = timing_of(rule);
    let rule_labels = eval::labels_from_json(&rule.labels);
    let severity = Severity::stored(&rule.severity);
    let mut by_fingerprint: HashMap<String, instance::Model> = existing
        .into_iter()
        .map(|i| (i.fingerprint.clone(), i))
        .collect();
    let mut changes = Changes::new(rule, now);
    let mut seen: HashSet<String> = HashSet::new();
    let step_one = |changes: &mut Changes,
                    prev: Option<instance::Model>,
                    labels: LabelSet,
                    value: Option<f64>| {
        let before = prev.as_ref().map(to_state).unwrap_or_default();
        let (next, transition) = state::step(&before, value, now, timing);
        let silenced_by = if next.state == AlertState::Inactive {
            None
        } else {
            silence_for(
                silences,
                &eval::matchable_labels(&labels, &rule.name, severity, rule.id),
            )
        };
        let unchanged = prev
            .as_ref()
            .is_some_and(|p| before == next && p.silenced_by == silenced_by);
        // Nothing to store: steady-state cost follows changes, not the
        // number of firing alerts (the rule records the evaluation time).
        if unchanged {
            return;
        }
        changes.record(prev.as_ref(), &labels, next, transition, silenced_by);
    };
    for (group, value) in matching {
        let labels = eval::alert_labels(group, &rule_labels);
        let fp = eval::fingerprint(&labels);
        if !seen.insert(fp.clone()) {
            continue;
        }
        let prev = by_fingerprint.remove(&fp);
        step_one(&mut changes, prev, labels, Some(*value));
    }
    let mut rest: Vec<instance::Model> = by_fingerprint
        .into_values()
        .filter(|i| i.state != AlertState::Inactive.as_str())
        .collect();
    rest.sort_by_key(|i| i.id);
    for prev in rest {
        let labels = eval::labels_from_json(&prev.labels);
        step_one(&mut changes, Some(prev), labels, None);
    }
    changes
}

/// Ends every pending or firing alert of a rule at `now` (the rule is being
/// disabled or deleted), writing the transitions and resolved events through
/// `txn`. The caller commits, then calls [`publish`].
pub async fn deactivate_rule_alerts(
    txn: &DatabaseTransaction,
    rule: &rule::Model,
    now: DateTime<Utc>,
) -> AppResult<Written> {
    let active = instance::Entity::find()
        .filter(instance::Column::RuleId.eq(rule.id))
        .filter(instance::Column::State.ne(AlertState::Inactive.as_str()))
        .order_by_asc(instance::Column::Id)
        .all(txn)
        .await?;
    let mut changes = Changes::new(rule, now);
    for prev in active {
        let labels = eval::labels_from_json(&prev.labels);
        let (next, transition) = state::deactivate(&to_state(&prev), now);
        changes.record(Some(&prev), &labels, next, transition, None);
    }
    changes.write(txn).await
}

async fn record_failure(
    state: &AppState,
    rule: &rule::Model,
    now: DateTime<Utc>,
    slot: Option<(DateTime<Utc>, DateTime<Utc>)>,
    message: &str,
    started: Instant,
) -> AppResult<()> {
    tracing::warn!(rule_id = %rule.id, error = %message, "alert rule evaluation failed");
    let mut update = rule::Entity::update_many()
        .col_expr(rule::Column::LastEvaluatedAt, Expr::value(now))
        .col_expr(
            rule::Column::LastEvaluationMs,
            Expr::value(started.elapsed().as_secs_f64() * 1000.0),
        )
        .col_expr(rule::Column::LastError, Expr::value(message.to_owned()))
        .filter(rule::Column::Id.eq(rule.id))
        .filter(rule::Column::UpdatedAt.eq(rule.updated_at));
    if let Some((expected, next)) = slot {
        update = update
            .col_expr(rule::Column::NextEvaluationAt, Expr::value(next))
            .filter(rule::Column::NextEvaluationAt.eq(expected));
    }
    update.exec(&state.db).await?;
    Ok(())
}

/// When a rule due at `due` with this interval is next due, evaluated at
/// `now`: one interval after `due`, or after `now` if that has passed.
pub fn next_slot(due: DateTime<Utc>, interval_secs: i64, now: DateTime<Utc>) -> DateTime<Utc> {
    let interval = TimeDelta::seconds(interval_secs.max(1));
    let next = due + interval;
    if next <= now { now + interval } else { next }
}

/// Evaluates every enabled rule whose time has come, at `now`, one after
/// the other; a rule that fails is logged and retried at its next slot.
pub async fn evaluate_due_rules(state: &AppState, now: DateTime<Utc>) -> AppResult<RoundOutcome> {
    let now = util::to_stored_precision(now);
    let due: Vec<(Uuid, DateTime<Utc>, i64)> = rule::Entity::find()
        .select_only()
        .column(rule::Column::Id)
        .column(rule::Column::NextEvaluationAt)
        .column(rule::Column::EvaluationIntervalSecs)
        .filter(rule::Column::Enabled.eq(true))
        .filter(rule::Column::NextEvaluationAt.lte(now))
        .order_by_asc(rule::Column::NextEvaluationAt)
        .order_by_asc(rule::Column::Id)
        .into_tuple()
        .all(&state.db)
        .await?;
    let cache = RoundCache::default();
    let mut round = RoundOutcome::default();
    for (rule_id, due_at, interval) in due {
        if *state.shutdown.borrow() {
            break;
        }
        let next = next_slot(due_at, interval, now);
        match evaluate(state, rule_id, now, Some((due_at, next)), &cache).await {
            Ok(outcome) => {
                if outcome.evaluated {
                    round.evaluated += 1;
                    round.transitions += outcome.transitions.len();
                }
                if outcome.error.is_some() {
                    round.failed += 1;
                }
            }
            Err(e) => {
                round.failed += 1;
                tracing::warn!(
                    rule_id = %rule_id,
                    code = %e.code,
                    cause = ?e.cause,
                    "alert rule evaluation failed; retrying at its next slot"
                );
                let _ = rule::Entity::update_many()
                    .col_expr(rule::Column::NextEvaluationAt, Expr::value(next))
                    .filter(rule::Column::Id.eq(rule_id))
                    .filter(rule::Column::NextEvaluationAt.eq(due_at))
                    .exec(&state.db)
                    .await;
            }
        }
    }
    round.next_due = next_due(&state.db).await?;
    Ok(round)
}

async fn next_due(db: &DatabaseConnection) -> AppResult<Option<DateTime<Utc>>> {
    let next: Option<DateTime<Utc>> = rule::Entity::find()
        .select_only()
        .column(rule::Column::NextEvaluationAt)
        .filter(rule::Column::Enabled.eq(true))
        .order_by_asc(rule::Column::NextEvaluationAt)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn the_next_slot_keeps_the_cadence_unless_it_fell_behind() {
        assert_eq!(next_slot(at(0), 30, at(1)), at(30));
        assert_eq!(next_slot(at(0), 30, at(29)), at(30));
        assert_eq!(
            next_slot(at(0), 30, at(45)),
            at(75),
            "late: one interval from now"
        );
        assert_eq!(
            next_slot(at(0), 0, at(0)),
            at(1),
            "never less than a second"
        );
    }
}
