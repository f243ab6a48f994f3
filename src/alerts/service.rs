//! Alert services usable from any Rust code and shared by the GraphQL and
//! REST layers: rules (create, update, delete, enable), alerts (list,
//! acknowledge), the history, silences, and the backtest ([`preview`]).
//! Each change runs in one transaction and publishes after the commit.

use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeDelta, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::Value;
use uuid::Uuid;

use super::data;
use super::entity::{instance, rule, silence, transition};
use super::eval::{self, Budget, GroupTransition, LabelSet};
use super::evaluator;
use super::expr::{MatchOp, Matcher, Source, matches_all};
use super::model::{
    self, Annotations, IncidentSeverity, MAX_DURATION_SECS, RuleDraft, RuleSpec, Severity,
    SilenceDraft, SilenceState,
};
use super::state::{AlertState, Timing};
use crate::auth::Identity;
use crate::error::{AppError, AppResult, FieldError};
use crate::pagination::{Cursor, Page, Rows, keyset};
use crate::state::AppState;
use crate::tasks::handlers::alert_evaluation::sync_rule_task;
use crate::util;

fn first_error(errors: Vec<FieldError>) -> AppError {
    AppError::from_field_errors(&errors)
}

/// The draft a stored rule corresponds to (the starting point of an update).
pub fn draft_of(rule: &rule::Model) -> RuleDraft {
    RuleDraft {
        name: rule.name.clone(),
        description: rule.description.clone(),
        query: rule.query.clone(),
        threshold: rule.threshold,
        for_secs: rule.for_secs,
        keep_firing_for_secs: rule.keep_firing_for_secs,
        severity: Severity::stored(&rule.severity),
        labels: rule.labels.clone(),
        annotations: Annotations::stored(&rule.annotations),
        enabled: rule.enabled,
        evaluation_interval_secs: rule.evaluation_interval_secs,
        create_incident: rule.create_incident,
        incident_severity: rule
            .incident_severity
            .as_deref()
            .and_then(|s| s.parse().ok()),
    }
}

fn apply_spec(active: &mut rule::ActiveModel, spec: RuleSpec) {
    active.name = Set(spec.name);
    active.description = Set(spec.description);
    active.query = Set(spec.query);
    active.threshold = Set(spec.threshold);
    active.for_secs = Set(spec.for_secs);
    active.keep_firing_for_secs = Set(spec.keep_firing_for_secs);
    active.severity = Set(spec.severity.as_str().to_owned());
    active.labels = Set(eval::labels_to_json(&spec.labels));
    active.annotations = Set(spec.annotations.to_json());
    active.enabled = Set(spec.enabled);
    active.evaluation_interval_secs = Set(spec.evaluation_interval_secs);
    active.create_incident = Set(spec.create_incident);
    active.incident_severity = Set(spec.incident_severity.map(|s| s.as_str().to_owned()));
}

/// Validates and stores a new rule; it is due for evaluation at once.
#[tracing::instrument(skip(state, actor, draft), fields(name = %draft.name))]
pub async fn create_rule(
    state: &AppState,
    actor: &Identity,
    draft: RuleDraft,
) -> AppResult<rule::Model> {
    let spec = draft.validate().map_err(first_error)?;
    let now = util::now();
    let mut active = rule::ActiveModel {
        id: Set(Uuid::now_v7()),
        created_by: Set(Some(actor.user_id)),
        created_at: Set(now),
        updated_at: Set(now),
        next_evaluation_at: Set(now),
        last_evaluated_at: Set(None),
        last_evaluation_ms: Set(None),
        last_error: Set(None),
        ..Default::default()
    };
    apply_spec(&mut active, spec);
    // tasks: the rule and its evaluation task are created together.
    let txn = crate::db::begin_write(&state.db).await?;
    let created = active.insert(&txn).await?;
    sync_rule_task(&txn, created.id, Some(&created)).await?;
    txn.commit().await?;
    state.tasks.wake();
    // end tasks
    tracing::info!(rule_id = %created.id, "alert rule created");
    Ok(created)
}

/// A partial change of a rule: `None` leaves a field as it is; for the
/// optional fields, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RulePatch {
    /// New name.
    pub name: Option<String>,
    /// New description, or cleared.
    pub description: Option<Option<String>>,
    /// New query.
    pub query: Option<String>,
    /// New threshold, or cleared.
    pub threshold: Option<Option<f64>>,
    /// New `for`.
    pub for_secs: Option<i64>,
    /// New `keepFiringFor`.
    pub keep_firing_for_secs: Option<i64>,
    /// New severity.
    pub severity: Option<Severity>,
    /// New labels (replacing all).
    pub labels: Option<Value>,
    /// New annotations (replacing all).
    pub annotations: Option<Annotations>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// New evaluation interval.
    pub evaluation_interval_secs: Option<i64>,
    /// Whether firing alerts open incidents.
    pub create_incident: Option<bool>,
    /// New incident severity, or cleared (back to the default).
    pub incident_severity: Option<Option<IncidentSeverity>>,
}

impl RulePatch {
    /// The draft after applying this patch to a stored rule.
    pub fn apply(self, rule: &rule::Model) -> RuleDraft {
        let mut d = draft_of(rule);
        if let Some(v) = self.name {
            d.name = v;
        }
        if let Some(v) = self.description {
            d.description = v;
        }
        if let Some(v) = self.query {
            d.query = v;
        }
        if let Some(v) = self.threshold {
            d.threshold = v;
        }
        if let Some(v) = self.for_secs {
            d.for_secs = v;
        }
        if let Some(v) = self.keep_firing_for_secs {
            d.keep_firing_for_secs = v;
        }
        if let Some(v) = self.severity {
            // A stored incident severity that was only the default follows the rule's.
            if d.incident_severity == Some(d.severity.default_incident_severity())
                && self.incident_severity.is_none()
            {
                d.incident_severity = None;
            }
            d.severity = v;
        }
        if let Some(v) = self.labels {
            d.labels = v;
        }
        if let Some(v) = self.annotations {
            d.annotations = v;
        }
        if let Some(v) = self.enabled {
            d.enabled = v;
        }
        if let Some(v) = self.evaluation_interval_secs {
            d.evaluation_interval_secs = v;
        }
        if let Some(v) = self.create_incident {
            d.create_incident = v;
            if !v && self.incident_severity.is_none() {
                d.incident_severity = None;
            }
        }
        if let Some(v) = self.incident_severity {
            d.incident_severity = v;
        }
        d
    }
}

async fn lock_rule(txn: &impl ConnectionTrait, id: Uuid) -> AppResult<rule::Model> {
    rule::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| AppError::not_found("alert rule"))
}

/// Changes a rule. A changed rule is due for evaluation at once; disabling
/// it resolves its alerts.
#[tracing::instrument(skip(state, patch), fields(rule_id = %id))]
pub async fn update_rule(state: &AppState, id: Uuid, patch: RulePatch) -> AppResult<rule::Model> {
    let txn = crate::db::begin_write(&state.db).await?;
    let current = lock_rule(&txn, id).await?;
    let spec = patch.apply(&current).validate().map_err(first_error)?;
    let now = util::now();
    let disabling = current.enabled && !spec.enabled;
    let written = if disabling {
        evaluator::deactivate_rule_alerts(&txn, &current, now).await?
    } else {
        evaluator::Written::default()
    };
    let mut active: rule::ActiveModel = current.into();
    apply_spec(&mut active, spec);
    active.updated_at = Set(now);
    active.next_evaluation_at = Set(now);
    let updated = active.update(&txn).await?;
    sync_rule_task(&txn, id, Some(&updated)).await?; // tasks: its evaluation task follows
    let announced = evaluator::publish(state, &txn, written).await?;
    txn.commit().await?;
    state.tasks.wake(); // tasks
    announced.committed();
    Ok(updated)
}

/// Enables or disables a rule (disabling resolves its alerts; enabling makes
/// it due at once). Setting the current value changes nothing.
#[tracing::instrument(skip(state), fields(rule_id = %id))]
pub async fn set_rule_enabled(state: &AppState, id: Uuid, enabled: bool) -> AppResult<rule::Model> {
    let txn = crate::db::begin_write(&state.db).await?;
    let current = lock_rule(&txn, id).await?;
    if current.enabled == enabled {
        txn.rollback().await?;
        return Ok(current);
    }
    let now = util::now();
    let written = if enabled {
        evaluator::Written::default()
    } else {
        evaluator::deactivate_rule_alerts(&txn, &current, now).await?
    };
    let mut active: rule::ActiveModel = current.into();
    active.enabled = Set(enabled);
    active.updated_at = Set(now);
    active.next_evaluation_at = Set(now);
    let updated = active.update(&txn).await?;
    sync_rule_task(&txn, id, Some(&updated)).await?; // tasks: its evaluation task follows
    let announced = evaluator::publish(state, &txn, written).await?;
    txn.commit().await?;
    state.tasks.wake(); // tasks
    announced.committed();
    Ok(updated)
}

/// Deletes a rule and its alerts (their history stays, ending with their
/// resolution); returns the rule as it was.
#[tracing::instrument(skip(state), fields(rule_id = %id))]
pub async fn delete_rule(state: &AppState, id: Uuid) -> AppResult<rule::Model> {
    let txn = crate::db::begin_write(&state.db).await?;
    let current = lock_rule(&txn, id).await?;
    let written = evaluator::deactivate_rule_alerts(&txn, &current, util::now()).await?;
    rule::Entity::delete_by_id(id).exec(&txn).await?;
    sync_rule_task(&txn, id, None).await?; // tasks: its evaluation task is cancelled
    let announced = evaluator::publish(state, &txn, written).await?;
    txn.commit().await?;
    announced.committed();
    tracing::info!("alert rule deleted");
    Ok(current)
}

/// One rule.
pub async fn find_rule(db: &impl ConnectionTrait, id: Uuid) -> AppResult<rule::Model> {
    rule::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("alert rule"))
}

/// Rules by id, for DataLoaders.
pub async fn rules_by_ids(db: &impl ConnectionTrait, ids: &[Uuid]) -> AppResult<Vec<rule::Model>> {
    Ok(rule::Entity::find()
        .filter(rule::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?)
}

/// Which rules to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleFilter {
    /// Only enabled (or disabled) rules.
    pub enabled: Option<bool>,
    /// Only rules of these severities.
    pub severities: Option<Vec<Severity>>,
}

fn rule_condition(filter: &RuleFilter) -> Condition {
    let mut c = Condition::all();
    if let Some(enabled) = filter.enabled {
        c = c.add(rule::Column::Enabled.eq(enabled));
    }
    if let Some(severities) = &filter.severities {
        c = c.add(rule::Column::Severity.is_in(severities.iter().map(|s| s.as_str())));
    }
    c
}

/// One page of rules, oldest first.
pub async fn list_rules(
    db: &impl ConnectionTrait,
    filter: &RuleFilter,
    page: &Page,
) -> AppResult<Rows<rule::Model>> {
    let query = keyset(
        rule::Entity::find().filter(rule_condition(filter)),
        rule::Column::CreatedAt,
        rule::Column::Id,
        page,
    );
    let rows = query.all(db).await?;
    Ok(Rows::new(rows, page, |r| Cursor::new(r.created_at, r.id)))
}

/// Rules oldest first, by offset (the REST layer's `limit`/`offset`).
pub async fn list_rules_offset(
    db: &impl ConnectionTrait,
    filter: &RuleFilter,
    limit: u64,
    offset: u64,
) -> AppResult<Vec<rule::Model>> {
    Ok(rule::Entity::find()
        .filter(rule_condition(filter))
        .order_by_asc(rule::Column::CreatedAt)
        .order_by_asc(rule::Column::Id)
        .offset(offset)
        .limit(limit)
        .all(db)
        .await?)
}

/// Number of rules matching the filter.
pub async fn count_rules(db: &impl ConnectionTrait, filter: &RuleFilter) -> AppResult<u64> {
    Ok(rule::Entity::find()
        .filter(rule_condition(filter))
        .count(db)
        .await?)
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Only alerts in this state.
    pub state: Option<AlertState>,
    /// Only alerts of this rule.
    pub rule_id: Option<Uuid>,
    /// Label matchers, applied to the alert's labels plus `alertname`,
    /// `severity` and `rule_id`.
    pub labels: Vec<Matcher>,
}

/// Most alerts `alerts` returns.
pub const MAX_ALERTS: usize = 10_000;

/// Current alerts matching the filter: firing first, then pending, then
/// inactive, each most recently changed first; at most `limit`.
pub async fn list_alerts(
    db: &impl ConnectionTrait,
    filter: &AlertFilter,
    limit: usize,
) -> AppResult<Vec<instance::Model>> {
    const BATCH: u64 = 1_000;
    let states = match filter.state {
        Some(s) => vec![s],
        None => vec![
            AlertState::Firing,
            AlertState::Pending,
            AlertState::Inactive,
        ],
    };
    let mut out = Vec::new();
    let mut rules: HashMap<Uuid, (String, Severity)> = HashMap::new();
    for state in states {
        let mut offset = 0u64;
        loop {
            if out.len() >= limit {
                return Ok(out);
            }
            let mut q = instance::Entity::find()
                .filter(instance::Column::State.eq(state.as_str()))
                .order_by_desc(instance::Column::UpdatedAt)
                .order_by_desc(instance::Column::Id);
            if let Some(rule_id) = filter.rule_id {
                q = q.filter(instance::Column::RuleId.eq(rule_id));
            }
            let batch = if filter.labels.is_empty() {
                (limit - out.len()) as u64
            } else {
                BATCH
            };
            let rows = q.offset(offset).limit(batch).all(db).await?;
            let fetched = rows.len() as u64;
            if !filter.labels.is_empty() {
                let missing: Vec<Uuid> = rows
                    .iter()
                    .map(|r| r.rule_id)
                    .filter(|id| !rules.contains_key(id))
                    .collect();
                if !missing.is_empty() {
                    for r in rules_by_ids(db, &missing).await? {
                        rules.insert(r.id, (r.name.clone(), Severity::stored(&r.severity)));
                    }
                }
            }
            for row in rows {
                if out.len() >= limit {
                    break;
                }
                if !filter.labels.is_empty() {
                    let Some((name, severity)) = rules.get(&row.rule_id) else {
                        continue;
                    };
                    let labels = eval::matchable_labels(
                        &eval::labels_from_json(&row.labels),
                        name,
                        *severity,
                        row.rule_id,
                    );
                    if !matches_all(&filter.labels, &labels) {
                        continue;
                    }
                }
                out.push(row);
            }
            if fetched < batch {
                break;
            }
            offset += fetched;
        }
    }
    Ok(out)
}

/// One alert.
pub async fn find_alert(db: &impl ConnectionTrait, id: Uuid) -> AppResult<instance::Model> {
    instance::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("alert"))
}

/// Alerts by id, for DataLoaders.
pub async fn alerts_by_ids(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> AppResult<Vec<instance::Model>> {
    Ok(instance::Entity::find()
        .filter(instance::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?)
}

/// The pending and firing alerts of some rules, for DataLoaders.
pub async fn active_alerts_of_rules(
    db: &impl ConnectionTrait,
    rule_ids: &[Uuid],
) -> AppResult<Vec<instance::Model>> {
    Ok(instance::Entity::find()
        .filter(instance::Column::RuleId.is_in(rule_ids.iter().copied()))
        .filter(instance::Column::State.ne(AlertState::Inactive.as_str()))
        .order_by_asc(instance::Column::ActiveAt)
        .order_by_asc(instance::Column::Id)
        .all(db)
        .await?)
}

/// Records that `actor` acknowledged a pending or firing alert (a later
/// acknowledgement replaces an earlier one); it ends when the alert resolves.
#[tracing::instrument(skip(state, actor, comment), fields(alert_id = %id))]
pub async fn acknowledge_alert(
    state: &AppState,
    actor: &Identity,
    id: Uuid,
    comment: Option<String>,
) -> AppResult<instance::Model> {
    let comment = model::validate_ack_comment(comment)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let rule_id = find_alert(&txn, id).await?.rule_id;
    // Serialises with the evaluator, which rewrites the instance.
    lock_rule(&txn, rule_id).await?;
    let alert = find_alert(&txn, id).await?;
    if alert.state == AlertState::Inactive.as_str() {
        return Err(AppError::conflict(
            "only pending or firing alerts can be acknowledged; this one is inactive",
        ));
    }
    let now = util::now();
    let mut active: instance::ActiveModel = alert.into();
    active.acknowledged_by = Set(Some(actor.user_id));
    active.acknowledged_at = Set(Some(now));
    active.acknowledged_comment = Set(comment);
    active.updated_at = Set(now);
    let updated = active.update(&txn).await?;
    txn.commit().await?;
    Ok(updated)
}

/// Which transitions to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryFilter {
    /// Only those of this rule.
    pub rule_id: Option<Uuid>,
    /// Only those of this alert.
    pub alert_id: Option<Uuid>,
    /// Only those into these states.
    pub to_states: Option<Vec<AlertState>>,
    /// At or after this time.
    pub from: Option<DateTime<Utc>>,
    /// At or before this time.
    pub to: Option<DateTime<Utc>>,
}

fn history_condition(filter: &HistoryFilter) -> Condition {
    let mut c = Condition::all();
    if let Some(id) = filter.rule_id {
        c = c.add(transition::Column::RuleId.eq(id));
    }
    if let Some(id) = filter.alert_id {
        c = c.add(transition::Column::InstanceId.eq(id));
    }
    if let Some(states) = &filter.to_states {
        c = c.add(transition::Column::ToState.is_in(states.iter().map(|s| s.as_str())));
    }
    if let Some(from) = filter.from {
        c = c.add(transition::Column::At.gte(from));
    }
    if let Some(to) = filter.to {
        c = c.add(transition::Column::At.lte(to));
    }
    c
}

/// One page of the alert history, oldest first.
pub async fn list_transitions(
    db: &impl ConnectionTrait,
    filter: &HistoryFilter,
    page: &Page,
) -> AppResult<Rows<transition::Model>> {
    let query = keyset(
        transition::Entity::find().filter(history_condition(filter)),
        transition::Column::At,
        transition::Column::Id,
        page,
    );
    let rows = query.all(db).await?;
    Ok(Rows::new(rows, page, |t| Cursor::new(t.at, t.id)))
}

/// Number of transitions matching the filter.
pub async fn count_transitions(
    db: &impl ConnectionTrait,
    filter: &HistoryFilter,
) -> AppResult<u64> {
    Ok(transition::Entity::find()
        .filter(history_condition(filter))
        .count(db)
        .await?)
}

/// Makes the enabled rules that have pending or firing alerts due at once,
/// so that a silence change shows on their alerts without waiting a full
/// evaluation interval.
async fn reevaluate_active_rules(db: &impl ConnectionTrait, now: DateTime<Utc>) -> AppResult<()> {
    rule::Entity::update_many()
        .col_expr(rule::Column::NextEvaluationAt, Expr::value(now))
        .filter(rule::Column::Enabled.eq(true))
        .filter(rule::Column::NextEvaluationAt.gt(now))
        .filter(
            rule::Column::Id.in_subquery(
                Query::select()
                    .distinct()
                    .column(instance::Column::RuleId)
                    .from(instance::Entity)
                    .and_where(Expr::col(instance::Column::State).ne(AlertState::Inactive.as_str()))
                    .to_owned(),
            ),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// Validates and stores a silence; the rules with active alerts are
/// re-evaluated at once so that matching alerts show as silenced.
#[tracing::instrument(skip(state, actor, draft))]
pub async fn create_silence(
    state: &AppState,
    actor: &Identity,
    draft: SilenceDraft,
) -> AppResult<silence::Model> {
    let now = util::now();
    let spec = draft.validate(now).map_err(first_error)?;
    let txn = crate::db::begin_write(&state.db).await?;
    let created = silence::ActiveModel {
        id: Set(Uuid::now_v7()),
        matchers: Set(spec.matchers_json()),
        starts_at: Set(spec.starts_at),
        ends_at: Set(spec.ends_at),
        comment: Set(spec.comment),
        created_by: Set(Some(actor.user_id)),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    reevaluate_active_rules(&txn, now).await?;
    txn.commit().await?;
    tracing::info!(silence_id = %created.id, "silence created");
    Ok(created)
}

/// Ends a pending or active silence now (the record stays, expired).
#[tracing::instrument(skip(state), fields(silence_id = %id))]
pub async fn expire_silence(state: &AppState, id: Uuid) -> AppResult<silence::Model> {
    let now = util::now();
    let txn = crate::db::begin_write(&state.db).await?;
    let current = find_silence(&txn, id).await?;
    if SilenceState::at(current.starts_at, current.ends_at, now) == SilenceState::Expired {
        return Err(AppError::conflict("the silence has already expired"));
    }
    let starts_at = std::cmp::min(current.starts_at, now);
    let mut active: silence::ActiveModel = current.into();
    active.starts_at = Set(starts_at);
    active.ends_at = Set(now);
    active.updated_at = Set(now);
    let updated = active.update(&txn).await?;
    reevaluate_active_rules(&txn, now).await?;
    txn.commit().await?;
    Ok(updated)
}

/// One silence.
pub async fn find_silence(db: &impl ConnectionTrait, id: Uuid) -> AppResult<silence::Model> {
    silence::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("silence"))
}

/// Silences by id, for DataLoaders.
pub async fn silences_by_ids(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> AppResult<Vec<silence::Model>> {
    Ok(silence::Entity::find()
        .filter(silence::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?)
}

/// Which silences to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SilenceFilter {
    /// Only silences in these states (now).
    pub states: Option<Vec<SilenceState>>,
}

fn silence_condition(filter: &SilenceFilter, now: DateTime<Utc>) -> Condition {
    let Some(states) = &filter.states else {
        return Condition::all();
    };
    let mut any = Condition::any();
    for state in states {
        any = any.add(match state {
            SilenceState::Pending => Condition::all()
                .add(silence::Column::StartsAt.gt(now))
                .add(silence::Column::EndsAt.gt(now)),
            SilenceState::Active => Condition::all()
                .add(silence::Column::StartsAt.lte(now))
                .add(silence::Column::EndsAt.gt(now)),
            SilenceState::Expired => Condition::all().add(silence::Column::EndsAt.lte(now)),
        });
    }
    if states.is_empty() {
        // Nothing asked for: match nothing.
        Condition::all().add(Expr::val(1).eq(0))
    } else {
        any
    }
}

/// One page of silences, oldest first.
pub async fn list_silences(
    db: &impl ConnectionTrait,
    filter: &SilenceFilter,
    now: DateTime<Utc>,
    page: &Page,
) -> AppResult<Rows<silence::Model>> {
    let query = keyset(
        silence::Entity::find().filter(silence_condition(filter, now)),
        silence::Column::CreatedAt,
        silence::Column::Id,
        page,
    );
    let rows = query.all(db).await?;
    Ok(Rows::new(rows, page, |s| Cursor::new(s.created_at, s.id)))
}

/// Number of silences matching the filter.
pub async fn count_silences(
    db: &impl ConnectionTrait,
    filter: &SilenceFilter,
    now: DateTime<Utc>,
) -> AppResult<u64> {
    Ok(silence::Entity::find()
        .filter(silence_condition(filter, now))
        .count(db)
        .await?)
}

/// Most evaluation times in one preview.
pub const MAX_PREVIEW_STEPS: i64 = 11_000;
/// Most transitions one preview returns.
pub const MAX_PREVIEW_TRANSITIONS: usize = 10_000;
/// Most sample visits (or group evaluations) one preview may make.
pub const PREVIEW_WORK_BUDGET: u64 = 50_000_000;

/// A backtest request: replay a rule's expression over stored data.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewRequest {
    /// The expression.
    pub query: String,
    /// Threshold for an expression without a comparison.
    pub threshold: Option<f64>,
    /// `for`, in seconds.
    pub for_secs: i64,
    /// `keepFiringFor`, in seconds.
    pub keep_firing_for_secs: i64,
    /// First evaluation time.
    pub from: DateTime<Utc>,
    /// Last evaluation time (at most).
    pub to: DateTime<Utc>,
    /// Seconds between evaluations.
    pub step_secs: i64,
}

/// What a backtest found.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// Every transition the rule would have made, in time order.
    pub transitions: Vec<GroupTransition>,
    /// Whether there were more than [`MAX_PREVIEW_TRANSITIONS`].
    pub truncated: bool,
    /// How many evaluation times were replayed.
    pub evaluations: usize,
    /// How many label sets the expression yielded at some time.
    pub label_sets: usize,
}

fn preview_times(req: &PreviewRequest, now: DateTime<Utc>) -> AppResult<Vec<DateTime<Utc>>> {
    let mut errors = Vec::new();
    for (field, value) in [
        ("for", req.for_secs),
        ("keepFiringFor", req.keep_firing_for_secs),
    ] {
        if !(0..=MAX_DURATION_SECS).contains(&value) {
            errors.push(FieldError::new(
                field,
                format!("{field} must be between 0 and {MAX_DURATION_SECS} seconds, got {value}"),
            ));
        }
    }
    if !(1..=model::MAX_INTERVAL_SECS).contains(&req.step_secs) {
        errors.push(FieldError::new(
            "step",
            format!(
                "step must be between 1 and {} seconds, got {}",
                model::MAX_INTERVAL_SECS,
                req.step_secs
            ),
        ));
    }
    if req.to < req.from {
        errors.push(FieldError::new("to", "to must not be before from"));
    } else if req.to > now + Duration::minutes(5) {
        errors.push(FieldError::new("to", "to must not be in the future"));
    }
    if !errors.is_empty() {
        return Err(first_error(errors));
    }
    let from = util::to_stored_precision(req.from);
    let span = (req.to - from).num_seconds();
    let steps = span / req.step_secs + 1;
    if steps > MAX_PREVIEW_STEPS {
        return Err(AppError::bad_input(
            "step",
            format!(
                "a step of {}s over this range needs {steps} evaluations, more than the limit of \
                 {MAX_PREVIEW_STEPS}; use a larger step or a shorter range",
                req.step_secs
            ),
        ));
    }
    Ok((0..steps)
        .map(|k| from + TimeDelta::seconds(k * req.step_secs))
        .collect())
}

/// Replays an expression over stored data at `from, from + step, ... <= to`
/// with the state machine the evaluator uses, and returns every transition
/// it would have made (per label set, before any rule labels are added).
#[tracing::instrument(skip(state, req), fields(query = %req.query))]
pub async fn preview(state: &AppState, req: PreviewRequest) -> AppResult<Preview> {
    let expr = model::compile_condition(req.query.trim(), req.threshold)?;
    let times = preview_times(&req, util::now())?;
    let (Some(&from), Some(&to)) = (times.first(), times.last()) else {
        return Err(AppError::bad_input(
            "to",
            "the range holds no evaluation time",
        ));
    };
    let timing = Timing {
        for_secs: u64::try_from(req.for_secs).unwrap_or(0),
        keep_firing_for_secs: u64::try_from(req.keep_firing_for_secs).unwrap_or(0),
    };
    let config = &state.config;
    let lookback = TimeDelta::from_std(config.alert_lookback).unwrap_or(TimeDelta::minutes(5));
    let max = config.alert_max_samples;
    let true_at: Vec<Vec<(LabelSet, f64)>> = match &expr.source {
        Source::Metric(_) => {
            let data = data::metric_data_range(&state.db, &expr, from, to, lookback, max).await?;
            let Some(data) = data else {
                return Ok(Preview {
                    transitions: Vec::new(),
                    truncated: false,
                    evaluations: times.len(),
                    label_sets: 0,
                });
            };
            let expr = expr.clone();
            let times = times.clone();
            tokio::task::spawn_blocking(move || {
                let groups = eval::group_series(&expr, &data.series);
                let mut budget = Budget::new(PREVIEW_WORK_BUDGET);
                times
                    .iter()
                    .map(|&t| {
                        eval::metric_values(&expr, &data, &groups, t, lookback, &mut budget)
                            .map(|values| eval::true_groups(&expr, values))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?
            .map_err(|_| preview_too_costly())?
        }
        Source::Events => {
            let groups = data::event_times_range(&state.db, &expr, from, to, max).await?;
            let expr = expr.clone();
            let times = times.clone();
            tokio::task::spawn_blocking(move || {
                let work = (times.len() as u64).saturating_mul(groups.len() as u64);
                if work > PREVIEW_WORK_BUDGET {
                    return Err(preview_too_costly());
                }
                let window = expr.window_secs.unwrap_or(1);
                Ok(times
                    .iter()
                    .map(|&t| {
                        let values = groups
                            .iter()
                            .filter_map(|(labels, at)| {
                                let n = eval::count_in_window(at, t, window);
                                eval::event_value(&expr, n).map(|v| (labels.clone(), v))
                            })
                            .collect();
                        eval::true_groups(&expr, values)
                    })
                    .collect())
            })
            .await??
        }
    };
    let label_sets = true_at
        .iter()
        .flatten()
        .map(|(l, _)| l)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let mut transitions = eval::replay_groups(&times, &true_at, timing);
    let truncated = transitions.len() > MAX_PREVIEW_TRANSITIONS;
    transitions.truncate(MAX_PREVIEW_TRANSITIONS);
    Ok(Preview {
        transitions,
        truncated,
        evaluations: times.len(),
        label_sets,
    })
}

fn preview_too_costly() -> AppError {
    AppError::bad_input(
        "step",
        "the preview needs too much work; use a larger step, a shorter range or a narrower query",
    )
}

/// Label matchers from `(label, op, value)` triples, validated; errors name
/// `labels[i]`.
pub fn label_matchers(triples: Vec<(String, MatchOp, String)>) -> AppResult<Vec<Matcher>> {
    let mut out = Vec::with_capacity(triples.len());
    if triples.len() > model::MAX_SILENCE_MATCHERS {
        return Err(AppError::bad_input(
            "labels",
            format!(
                "at most {} label matchers are allowed",
                model::MAX_SILENCE_MATCHERS
            ),
        ));
    }
    for (i, (label, op, value)) in triples.into_iter().enumerate() {
        model::check_label_value(&value)
            .map_err(|m| AppError::bad_input(format!("labels[{i}].value"), m))?;
        let m = Matcher::new(&label, op, &value)
            .map_err(|m| AppError::bad_input(format!("labels[{i}]"), m))?;
        out.push(m);
    }
    Ok(out)
}
