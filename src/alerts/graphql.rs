//! GraphQL API of the alerts domain: rules, alerts, history, silences,
//! acknowledgement, the backtest (`previewAlertRule`) and the live
//! `alertStateChanged` stream. Resolvers are thin: guards check the role
//! (rules and silences are changed by moderators and above; everything is
//! readable, and alerts acknowledgeable, by any authenticated user) and the
//! services do the work.

use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{
    Context, Enum, ID, InputObject, Json, MaybeUndefined, Object, SimpleObject, Subscription,
};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use serde_json::Value;

use super::entity::{instance, rule, silence, transition};
use super::eval;
use super::expr::MatchOp;
use super::loader::{ActiveAlertsLoader, AlertLoader, AlertRuleLoader, SilenceLoader, loader};
use super::model::{self, Annotations, IncidentSeverity, RuleDraft, Severity, SilenceState};
use super::service::{self, AlertFilter, HistoryFilter, RuleFilter, RulePatch, SilenceFilter};
use super::state::AlertState;
use crate::auth::Role;
use crate::auth::graphql::User;
use crate::auth::guard::{ContextExt, RoleGuard};
use crate::auth::loader::UserLoader;
use crate::error::{AppError, ErrorCode};
use crate::graphql::{TotalCount, parse_id};
use crate::incidents::graphql::GqlSeverity as IncidentSeverityGql;
use crate::metrics::graphql::{LabelMatcher, LabelMatcherInput};
use crate::pagination::{Cursor, Page, PageArgs};
use crate::pubsub::Delivery;
use crate::util;

/// Where an alert stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "AlertState")]
pub enum GqlAlertState {
    /// The condition does not hold (a resolved alert is inactive).
    Inactive,
    /// The condition holds but not yet for the rule's `for` duration.
    Pending,
    /// The condition has held for `for` (or is kept firing by `keepFiringFor`).
    Firing,
}

impl From<AlertState> for GqlAlertState {
    fn from(s: AlertState) -> Self {
        match s {
            AlertState::Inactive => GqlAlertState::Inactive,
            AlertState::Pending => GqlAlertState::Pending,
            AlertState::Firing => GqlAlertState::Firing,
        }
    }
}

impl From<GqlAlertState> for AlertState {
    fn from(s: GqlAlertState) -> Self {
        match s {
            GqlAlertState::Inactive => AlertState::Inactive,
            GqlAlertState::Pending => AlertState::Pending,
            GqlAlertState::Firing => AlertState::Firing,
        }
    }
}

fn stored_state(s: &str) -> GqlAlertState {
    s.parse::<AlertState>().unwrap_or_default().into()
}

/// How serious a rule's alerts are.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "AlertSeverity")]
pub enum GqlSeverity {
    /// For information (alert events at level `info`).
    Info,
    /// Needs attention soon (alert events at level `warn`).
    Warning,
    /// Needs attention now (alert events at level `error`).
    Critical,
}

impl From<Severity> for GqlSeverity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Info => GqlSeverity::Info,
            Severity::Warning => GqlSeverity::Warning,
            Severity::Critical => GqlSeverity::Critical,
        }
    }
}

impl From<GqlSeverity> for Severity {
    fn from(s: GqlSeverity) -> Self {
        match s {
            GqlSeverity::Info => Severity::Info,
            GqlSeverity::Warning => Severity::Warning,
            GqlSeverity::Critical => Severity::Critical,
        }
    }
}

/// Where a silence stands now.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "SilenceState")]
pub enum GqlSilenceState {
    /// It has not started yet.
    Pending,
    /// It silences matching alerts now.
    Active,
    /// It has ended or was expired.
    Expired,
}

impl From<SilenceState> for GqlSilenceState {
    fn from(s: SilenceState) -> Self {
        match s {
            SilenceState::Pending => GqlSilenceState::Pending,
            SilenceState::Active => GqlSilenceState::Active,
            SilenceState::Expired => GqlSilenceState::Expired,
        }
    }
}

impl From<GqlSilenceState> for SilenceState {
    fn from(s: GqlSilenceState) -> Self {
        match s {
            GqlSilenceState::Pending => SilenceState::Pending,
            GqlSilenceState::Active => SilenceState::Active,
            GqlSilenceState::Expired => SilenceState::Expired,
        }
    }
}

fn triples(matchers: Vec<LabelMatcherInput>) -> Vec<(String, MatchOp, String)> {
    matchers
        .into_iter()
        .map(|m| (m.label, m.op.into(), m.value))
        .collect()
}

/// Texts attached to a rule's alerts.
#[derive(SimpleObject)]
pub struct AlertAnnotations {
    /// One line saying what is wrong.
    pub summary: Option<String>,
    /// More detail.
    pub description: Option<String>,
    /// Where to read what to do.
    pub runbook_url: Option<String>,
}

/// Texts attached to a rule's alerts.
#[derive(InputObject, Default)]
pub struct AlertAnnotationsInput {
    /// One line saying what is wrong (at most 1,000 characters).
    pub summary: Option<String>,
    /// More detail (at most 10,000 characters).
    pub description: Option<String>,
    /// An http:// or https:// URL (at most 2,000 characters).
    pub runbook_url: Option<String>,
}

impl From<AlertAnnotationsInput> for Annotations {
    fn from(a: AlertAnnotationsInput) -> Self {
        Annotations {
            summary: a.summary,
            description: a.description,
            runbook_url: a.runbook_url,
        }
    }
}

/// Non-finite numbers cannot be sent as JSON; they read as null.
fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
}

async fn load_user(
    ctx: &Context<'_>,
    id: Option<uuid::Uuid>,
) -> async_graphql::Result<Option<User>> {
    let Some(id) = id else { return Ok(None) };
    Ok(loader::<UserLoader>(ctx).load_one(id).await?.map(User))
}

/// An alert rule: an expression evaluated on an interval, whose label sets
/// become alerts.
pub struct AlertRule(pub rule::Model);

#[Object]
impl AlertRule {
    /// The rule's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Unique name; the `alertname` of its alerts.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Free text.
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// The expression, as written.
    async fn query(&self) -> &str {
        &self.0.query
    }
    /// The condition the rule evaluates, in canonical form (the query's own
    /// comparison, or `> threshold`).
    async fn condition(&self) -> Option<String> {
        model::compile_condition(&self.0.query, self.0.threshold)
            .ok()
            .map(|e| e.to_string())
    }
    /// Threshold applied with `>` when the query has no comparison.
    async fn threshold(&self) -> Option<f64> {
        self.0.threshold
    }
    /// Seconds the condition must hold before an alert fires.
    #[graphql(name = "for")]
    async fn for_secs(&self) -> i64 {
        self.0.for_secs
    }
    /// Seconds an alert keeps firing after the condition stops holding.
    async fn keep_firing_for(&self) -> i64 {
        self.0.keep_firing_for_secs
    }
    /// Severity.
    async fn severity(&self) -> GqlSeverity {
        Severity::stored(&self.0.severity).into()
    }
    /// Labels added to every alert of the rule (a JSON object of strings).
    async fn labels(&self) -> Json<Value> {
        Json(self.0.labels.clone())
    }
    /// Texts attached to the rule's alerts.
    async fn annotations(&self) -> AlertAnnotations {
        let a = Annotations::stored(&self.0.annotations);
        AlertAnnotations {
            summary: a.summary,
            description: a.description,
            runbook_url: a.runbook_url,
        }
    }
    /// Whether the rule is evaluated.
    async fn enabled(&self) -> bool {
        self.0.enabled
    }
    /// Seconds between evaluations.
    async fn evaluation_interval(&self) -> i64 {
        self.0.evaluation_interval_secs
    }
    /// Whether a firing (unsilenced) alert opens an incident.
    async fn create_incident(&self) -> bool {
        self.0.create_incident
    }
    /// Severity of the incidents it opens.
    async fn incident_severity(&self) -> Option<IncidentSeverityGql> {
        self.0
            .incident_severity
            .as_deref()
            .and_then(|s| s.parse::<IncidentSeverity>().ok())
            .map(Into::into)
    }
    /// Who created the rule.
    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        load_user(ctx, self.0.created_by).await
    }
    /// Creation time.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Last change of the definition.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Time of the last evaluation.
    async fn last_evaluated_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_evaluated_at
    }
    /// How long the last evaluation took, in milliseconds.
    async fn last_evaluation_duration_ms(&self) -> Option<f64> {
        finite(self.0.last_evaluation_ms)
    }
    /// Why the last evaluation failed (null when it succeeded).
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    /// When the evaluator next evaluates the rule (when enabled).
    async fn next_evaluation_at(&self) -> Option<DateTime<Utc>> {
        self.0.enabled.then_some(self.0.next_evaluation_at)
    }
    /// The rule's pending and firing alerts.
    async fn active_alerts(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Alert>> {
        Ok(loader::<ActiveAlertsLoader>(ctx)
            .load_one(self.0.id)
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(Alert)
            .collect())
    }
}

/// An alert: one label set of a rule, with its state.
pub struct Alert(pub instance::Model);

#[Object]
impl Alert {
    /// The alert's id (stable for the rule and label set).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The rule.
    async fn rule(&self, ctx: &Context<'_>) -> async_graphql::Result<AlertRule> {
        loader::<AlertRuleLoader>(ctx)
            .load_one(self.0.rule_id)
            .await?
            .map(AlertRule)
            .ok_or_else(|| AppError::not_found("alert rule").into())
    }
    /// The rule's id.
    async fn rule_id(&self) -> ID {
        ID(self.0.rule_id.to_string())
    }
    /// Current state.
    async fn state(&self) -> GqlAlertState {
        stored_state(&self.0.state)
    }
    /// The alert's labels (a JSON object of strings).
    async fn labels(&self) -> Json<Value> {
        Json(self.0.labels.clone())
    }
    /// The latest value that made the condition true.
    async fn value(&self) -> Option<f64> {
        finite(self.0.value)
    }
    /// When the condition started holding in the current (or last) episode.
    async fn active_at(&self) -> Option<DateTime<Utc>> {
        self.0.active_at
    }
    /// When it started firing in the current (or last) episode.
    async fn fired_at(&self) -> Option<DateTime<Utc>> {
        self.0.fired_at
    }
    /// When the last firing episode was resolved.
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at
    }
    /// Since when it is kept firing by `keepFiringFor` although the condition no longer holds.
    async fn keep_firing_since(&self) -> Option<DateTime<Utc>> {
        self.0.keep_firing_since
    }
    /// Time of the last evaluation of it: for a pending or firing alert the
    /// rule's last evaluation (every evaluation steps every active alert),
    /// for an inactive one the evaluation that last changed it.
    async fn last_evaluated_at(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<DateTime<Utc>>> {
        if self.0.state == AlertState::Inactive.as_str() {
            return Ok(self.0.last_evaluated_at);
        }
        let rule = loader::<AlertRuleLoader>(ctx)
            .load_one(self.0.rule_id)
            .await?;
        Ok(std::cmp::max(
            self.0.last_evaluated_at,
            rule.and_then(|r| r.last_evaluated_at),
        ))
    }
    /// Whether an active silence matched it at the last evaluation (it then
    /// opens no incident).
    async fn silenced(&self) -> bool {
        self.0.silenced_by.is_some()
    }
    /// The silence that matched it.
    async fn silenced_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Silence>> {
        let Some(id) = self.0.silenced_by else {
            return Ok(None);
        };
        Ok(loader::<SilenceLoader>(ctx)
            .load_one(id)
            .await?
            .map(Silence))
    }
    /// Whether someone acknowledged it (until it resolves).
    async fn acknowledged(&self) -> bool {
        self.0.acknowledged_at.is_some()
    }
    /// Who acknowledged it.
    async fn acknowledged_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        load_user(ctx, self.0.acknowledged_by).await
    }
    /// When it was acknowledged.
    async fn acknowledged_at(&self) -> Option<DateTime<Utc>> {
        self.0.acknowledged_at
    }
    /// The acknowledgement's comment.
    async fn acknowledgement_comment(&self) -> Option<&str> {
        self.0.acknowledged_comment.as_deref()
    }
    /// Last change.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// A change of an alert's state (`to: INACTIVE` from FIRING is a resolution).
pub struct AlertTransition(pub Arc<transition::Model>);

#[Object]
impl AlertTransition {
    /// The transition's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Its position in `alertHistory`, to resume from.
    async fn cursor(&self) -> String {
        Cursor::new(self.0.at, self.0.id).encode()
    }
    /// The rule (null once deleted).
    async fn rule(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<AlertRule>> {
        Ok(loader::<AlertRuleLoader>(ctx)
            .load_one(self.0.rule_id)
            .await?
            .map(AlertRule))
    }
    /// The rule's id.
    async fn rule_id(&self) -> ID {
        ID(self.0.rule_id.to_string())
    }
    /// The rule's name at the time.
    async fn rule_name(&self) -> &str {
        &self.0.rule_name
    }
    /// The alert (null once its rule is deleted).
    async fn alert(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Alert>> {
        Ok(loader::<AlertLoader>(ctx)
            .load_one(self.0.instance_id)
            .await?
            .map(Alert))
    }
    /// The alert's id.
    async fn alert_id(&self) -> ID {
        ID(self.0.instance_id.to_string())
    }
    /// The alert's labels.
    async fn labels(&self) -> Json<Value> {
        Json(self.0.labels.clone())
    }
    /// The rule's severity at the time.
    async fn severity(&self) -> GqlSeverity {
        Severity::stored(&self.0.severity).into()
    }
    /// State before.
    async fn from(&self) -> GqlAlertState {
        stored_state(&self.0.from_state)
    }
    /// State after.
    async fn to(&self) -> GqlAlertState {
        stored_state(&self.0.to_state)
    }
    /// The alert's value after the change (for a resolution, the last value
    /// that made the condition true).
    async fn value(&self) -> Option<f64> {
        finite(self.0.value)
    }
    /// Whether a silence matched the alert at the time.
    async fn silenced(&self) -> bool {
        self.0.silenced
    }
    /// When it happened (the evaluation time).
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
}

/// A silence: while active, alerts matching all its matchers still evaluate
/// and record history but are marked silenced and open no incident.
pub struct Silence(pub silence::Model);

#[Object]
impl Silence {
    /// The silence's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Matchers over alert labels (plus `alertname`, `severity`, `rule_id`); all must match.
    async fn matchers(&self) -> Vec<LabelMatcher> {
        model::stored_matchers(&self.0.matchers)
            .into_iter()
            .map(|m| LabelMatcher {
                label: m.label.clone(),
                op: m.op.into(),
                value: m.value.clone(),
            })
            .collect()
    }
    /// Start.
    async fn starts_at(&self) -> DateTime<Utc> {
        self.0.starts_at
    }
    /// End (the time of expiry when expired early).
    async fn ends_at(&self) -> DateTime<Utc> {
        self.0.ends_at
    }
    /// State now.
    async fn state(&self) -> GqlSilenceState {
        SilenceState::at(self.0.starts_at, self.0.ends_at, util::now()).into()
    }
    /// Why.
    async fn comment(&self) -> &str {
        &self.0.comment
    }
    /// Who created it.
    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        load_user(ctx, self.0.created_by).await
    }
    /// Creation time.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Last change.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// A transition found by `previewAlertRule`.
#[derive(SimpleObject)]
pub struct AlertPreviewTransition {
    /// The label set (before any rule labels are added).
    pub labels: Json<Value>,
    /// State before.
    pub from: GqlAlertState,
    /// State after.
    pub to: GqlAlertState,
    /// The value after the change.
    pub value: Option<f64>,
    /// The evaluation time.
    pub at: DateTime<Utc>,
}

/// What a rule would have done over stored data.
#[derive(SimpleObject)]
pub struct AlertPreview {
    /// Every transition it would have made, in time order.
    pub transitions: Vec<AlertPreviewTransition>,
    /// Whether more than 10,000 transitions were found (only the first are listed).
    pub truncated: bool,
    /// How many evaluation times were replayed.
    pub evaluations: i64,
    /// How many label sets met the condition at some time.
    pub label_sets: i64,
}

/// Which rules to list.
#[derive(InputObject, Default)]
pub struct AlertRuleFilter {
    /// Only enabled (true) or disabled (false) rules.
    pub enabled: Option<bool>,
    /// Only rules of these severities.
    pub severities: Option<Vec<GqlSeverity>>,
}

/// Which transitions to list.
#[derive(InputObject, Default)]
pub struct AlertHistoryFilter {
    /// Only those of this rule.
    pub rule_id: Option<ID>,
    /// Only those of this alert.
    pub alert_id: Option<ID>,
    /// Only those into these states (`[INACTIVE]` lists resolutions and
    /// pending alerts that went away).
    pub to_states: Option<Vec<GqlAlertState>>,
    /// At or after this time.
    pub from: Option<DateTime<Utc>>,
    /// At or before this time.
    pub to: Option<DateTime<Utc>>,
}

/// Which silences to list.
#[derive(InputObject, Default)]
#[graphql(name = "SilenceFilter")]
pub struct SilenceFilterInput {
    /// Only silences in these states (now).
    pub states: Option<Vec<GqlSilenceState>>,
}

/// Input of `createAlertRule`.
#[derive(InputObject)]
pub struct CreateAlertRuleInput {
    /// Unique name (1–200 characters).
    pub name: String,
    /// Free text (at most 10,000 characters).
    pub description: Option<String>,
    /// The expression, e.g. `avg(cpu_usage{host="a"}[5m]) >= 80`; errors give the position.
    pub query: String,
    /// Threshold applied with `>` when the query has no comparison.
    pub threshold: Option<f64>,
    /// Seconds the condition must hold before an alert fires (default 0, at most 30 days).
    #[graphql(name = "for", default)]
    pub for_secs: i64,
    /// Seconds an alert keeps firing after the condition stops holding (default 0).
    #[graphql(default)]
    pub keep_firing_for: i64,
    /// Severity (default WARNING).
    #[graphql(default_with = "GqlSeverity::Warning")]
    pub severity: GqlSeverity,
    /// Labels added to every alert (a JSON object of at most 50 strings;
    /// `alertname`, `rule_id` and `severity` are reserved).
    pub labels: Option<Json<Value>>,
    /// Texts attached to the alerts.
    pub annotations: Option<AlertAnnotationsInput>,
    /// Whether the rule is evaluated (default true).
    #[graphql(default = true)]
    pub enabled: bool,
    /// Seconds between evaluations (default 30, at least 1, at most 86,400).
    #[graphql(default = 30)]
    pub evaluation_interval: i64,
    /// Whether a firing, unsilenced alert opens an incident (default false).
    #[graphql(default)]
    pub create_incident: bool,
    /// Severity of those incidents (needs createIncident; by default LOW,
    /// MEDIUM or HIGH after the rule's severity).
    pub incident_severity: Option<IncidentSeverityGql>,
}

impl From<CreateAlertRuleInput> for RuleDraft {
    fn from(i: CreateAlertRuleInput) -> Self {
        RuleDraft {
            name: i.name,
            description: i.description,
            query: i.query,
            threshold: i.threshold,
            for_secs: i.for_secs,
            keep_firing_for_secs: i.keep_firing_for,
            severity: i.severity.into(),
            labels: i
                .labels
                .map(|j| j.0)
                .unwrap_or_else(|| Value::Object(Default::default())),
            annotations: i.annotations.unwrap_or_default().into(),
            enabled: i.enabled,
            evaluation_interval_secs: i.evaluation_interval,
            create_incident: i.create_incident,
            incident_severity: i.incident_severity.map(Into::into),
        }
    }
}

/// Input of `updateAlertRule`: only the fields given change.
#[derive(InputObject)]
pub struct UpdateAlertRuleInput {
    /// The rule.
    pub id: ID,
    /// New name.
    pub name: Option<String>,
    /// New description (null clears it).
    pub description: MaybeUndefined<String>,
    /// New expression.
    pub query: Option<String>,
    /// New threshold (null clears it).
    pub threshold: MaybeUndefined<f64>,
    /// New `for`, in seconds.
    #[graphql(name = "for")]
    pub for_secs: Option<i64>,
    /// New `keepFiringFor`, in seconds.
    pub keep_firing_for: Option<i64>,
    /// New severity.
    pub severity: Option<GqlSeverity>,
    /// New labels (replace all).
    pub labels: Option<Json<Value>>,
    /// New annotations (replace all).
    pub annotations: Option<AlertAnnotationsInput>,
    /// Enable or disable (disabling resolves the rule's alerts).
    pub enabled: Option<bool>,
    /// New evaluation interval, in seconds.
    pub evaluation_interval: Option<i64>,
    /// Whether firing alerts open incidents.
    pub create_incident: Option<bool>,
    /// New incident severity (null returns to the default).
    pub incident_severity: MaybeUndefined<IncidentSeverityGql>,
}

fn maybe<T, U>(m: MaybeUndefined<T>, f: impl FnOnce(T) -> U) -> Option<Option<U>> {
    match m {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(f(v))),
    }
}

impl From<UpdateAlertRuleInput> for RulePatch {
    fn from(i: UpdateAlertRuleInput) -> Self {
        RulePatch {
            name: i.name,
            description: maybe(i.description, |v| v),
            query: i.query,
            threshold: maybe(i.threshold, |v| v),
            for_secs: i.for_secs,
            keep_firing_for_secs: i.keep_firing_for,
            severity: i.severity.map(Into::into),
            labels: i.labels.map(|j| j.0),
            annotations: i.annotations.map(Into::into),
            enabled: i.enabled,
            evaluation_interval_secs: i.evaluation_interval,
            create_incident: i.create_incident,
            incident_severity: maybe(i.incident_severity, Into::into),
        }
    }
}

/// Input of `deleteAlertRule`.
#[derive(InputObject)]
pub struct DeleteAlertRuleInput {
    /// The rule.
    pub id: ID,
}

/// Input of `setAlertRuleEnabled`.
#[derive(InputObject)]
pub struct SetAlertRuleEnabledInput {
    /// The rule.
    pub id: ID,
    /// Whether it is evaluated (disabling resolves its alerts).
    pub enabled: bool,
}

/// Input of `createSilence`.
#[derive(InputObject)]
pub struct CreateSilenceInput {
    /// Matchers over alert labels (plus `alertname`, `severity`, `rule_id`):
    /// 1–50, all must match, and at least one must not match the empty string.
    pub matchers: Vec<LabelMatcherInput>,
    /// Start (default now).
    pub starts_at: Option<DateTime<Utc>>,
    /// End (in the future, after startsAt).
    pub ends_at: DateTime<Utc>,
    /// Why (required, at most 2,000 characters).
    pub comment: String,
}

/// Input of `expireSilence`.
#[derive(InputObject)]
pub struct ExpireSilenceInput {
    /// The silence.
    pub id: ID,
}

/// Input of `acknowledgeAlert`.
#[derive(InputObject)]
pub struct AcknowledgeAlertInput {
    /// The alert (pending or firing).
    pub id: ID,
    /// Optional comment (at most 2,000 characters).
    pub comment: Option<String>,
}

/// Alert queries.
#[derive(Default)]
pub struct AlertQuery;

#[Object]
impl AlertQuery {
    /// Alert rules, oldest first.
    #[graphql(
        guard = "RoleGuard::new(Role::User)",
        complexity = "first.or(last).unwrap_or(100).max(0) as usize * child_complexity"
    )]
    async fn alert_rules(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which rules.")] filter: Option<AlertRuleFilter>,
        #[graphql(desc = "Page size from the start (default 100, at most 1000).")] first: Option<
            i32,
        >,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
        #[graphql(desc = "Page size from the end.")] last: Option<i32>,
        #[graphql(desc = "Cursor to end before.")] before: Option<String>,
    ) -> async_graphql::Result<Connection<Cursor, AlertRule, TotalCount>> {
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
        let filter = filter.unwrap_or_default();
        let filter = RuleFilter {
            enabled: filter.enabled,
            severities: filter
                .severities
                .map(|s| s.into_iter().map(Into::into).collect()),
        };
        let rows = service::list_rules(&ctx.state().db, &filter, &page).await?;
        let mut conn = Connection::with_additional_fields(
            rows.has_previous,
            rows.has_next,
            TotalCount::new(move |s| {
                let filter = filter.clone();
                async move { service::count_rules(&s.db, &filter).await }
            }),
        );
        conn.edges.extend(
            rows.items
                .into_iter()
                .map(|(c, r)| Edge::new(c, AlertRule(r))),
        );
        Ok(conn)
    }

    /// One rule.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn alert_rule(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The rule's id.")] id: ID,
    ) -> async_graphql::Result<AlertRule> {
        let id = parse_id("id", &id)?;
        Ok(AlertRule(service::find_rule(&ctx.state().db, id).await?))
    }

    /// Current alerts: firing first, then pending, then inactive (resolved),
    /// each most recently changed first.
    #[graphql(
        guard = "RoleGuard::new(Role::User)",
        complexity = "first.unwrap_or(500).max(0) as usize * child_complexity"
    )]
    async fn alerts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only alerts in this state.")] state: Option<GqlAlertState>,
        #[graphql(desc = "Only alerts of this rule.")] rule_id: Option<ID>,
        #[graphql(
            desc = "Only alerts whose labels (plus `alertname`, `severity`, `rule_id`) match all of these."
        )]
        labels: Option<Vec<LabelMatcherInput>>,
        #[graphql(desc = "At most this many (default 500, at most 10,000).")] first: Option<i32>,
    ) -> async_graphql::Result<Vec<Alert>> {
        let limit = match first {
            None => 500,
            Some(n) if n < 0 => {
                return Err(AppError::bad_input("first", "first must not be negative").into());
            }
            Some(n) if n as usize > service::MAX_ALERTS => {
                return Err(AppError::bad_input(
                    "first",
                    format!("first must be at most {}", service::MAX_ALERTS),
                )
                .into());
            }
            Some(n) => n as usize,
        };
        let filter = AlertFilter {
            state: state.map(Into::into),
            rule_id: rule_id.map(|id| parse_id("ruleId", &id)).transpose()?,
            labels: service::label_matchers(triples(labels.unwrap_or_default()))?,
        };
        Ok(service::list_alerts(&ctx.state().db, &filter, limit)
            .await?
            .into_iter()
            .map(Alert)
            .collect())
    }

    /// One alert.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn alert(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The alert's id.")] id: ID,
    ) -> async_graphql::Result<Alert> {
        let id = parse_id("id", &id)?;
        Ok(Alert(service::find_alert(&ctx.state().db, id).await?))
    }

    /// The history of alert state changes, oldest first (use `last` for the most recent).
    #[graphql(
        guard = "RoleGuard::new(Role::User)",
        complexity = "first.or(last).unwrap_or(100).max(0) as usize * child_complexity"
    )]
    async fn alert_history(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which transitions.")] filter: Option<AlertHistoryFilter>,
        #[graphql(desc = "Page size from the start (default 100, at most 1000).")] first: Option<
            i32,
        >,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
        #[graphql(desc = "Page size from the end.")] last: Option<i32>,
        #[graphql(desc = "Cursor to end before.")] before: Option<String>,
    ) -> async_graphql::Result<Connection<Cursor, AlertTransition, TotalCount>> {
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
        let f = filter.unwrap_or_default();
        let filter = HistoryFilter {
            rule_id: f.rule_id.map(|id| parse_id("ruleId", &id)).transpose()?,
            alert_id: f.alert_id.map(|id| parse_id("alertId", &id)).transpose()?,
            to_states: f.to_states.map(|s| s.into_iter().map(Into::into).collect()),
            from: f.from,
            to: f.to,
        };
        let rows = service::list_transitions(&ctx.state().db, &filter, &page).await?;
        let mut conn = Connection::with_additional_fields(
            rows.has_previous,
            rows.has_next,
            TotalCount::new(move |s| {
                let filter = filter.clone();
                async move { service::count_transitions(&s.db, &filter).await }
            }),
        );
        conn.edges.extend(
            rows.items
                .into_iter()
                .map(|(c, t)| Edge::new(c, AlertTransition(Arc::new(t)))),
        );
        Ok(conn)
    }

    /// Silences, oldest first.
    #[graphql(
        guard = "RoleGuard::new(Role::User)",
        complexity = "first.or(last).unwrap_or(100).max(0) as usize * child_complexity"
    )]
    async fn silences(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which silences.")] filter: Option<SilenceFilterInput>,
        #[graphql(desc = "Page size from the start (default 100, at most 1000).")] first: Option<
            i32,
        >,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
        #[graphql(desc = "Page size from the end.")] last: Option<i32>,
        #[graphql(desc = "Cursor to end before.")] before: Option<String>,
    ) -> async_graphql::Result<Connection<Cursor, Silence, TotalCount>> {
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
        let filter = SilenceFilter {
            states: filter
                .unwrap_or_default()
                .states
                .map(|s| s.into_iter().map(Into::into).collect()),
        };
        let now = util::now();
        let rows = service::list_silences(&ctx.state().db, &filter, now, &page).await?;
        let mut conn = Connection::with_additional_fields(
            rows.has_previous,
            rows.has_next,
            TotalCount::new(move |s| {
                let filter = filter.clone();
                async move { service::count_silences(&s.db, &filter, now).await }
            }),
        );
        conn.edges.extend(
            rows.items
                .into_iter()
                .map(|(c, s)| Edge::new(c, Silence(s))),
        );
        Ok(conn)
    }

    /// Replays a rule's expression over stored data at `from`, `from + step`,
    /// ... up to `to`, with the same state machine as live evaluation, and
    /// returns every transition it would have made: tune a rule before it
    /// pages anyone.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    #[allow(clippy::too_many_arguments)]
    async fn preview_alert_rule(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The expression, as for createAlertRule.")] query: String,
        #[graphql(desc = "Threshold applied with `>` when the query has no comparison.")]
        threshold: Option<f64>,
        #[graphql(
            name = "for",
            desc = "Seconds the condition must hold (default 0).",
            default
        )]
        for_secs: i64,
        #[graphql(desc = "Seconds of keep-firing (default 0).", default)] keep_firing_for: i64,
        #[graphql(desc = "First evaluation time.")] from: DateTime<Utc>,
        #[graphql(desc = "Last evaluation time (at most; not in the future).")] to: DateTime<Utc>,
        #[graphql(
            desc = "Seconds between evaluations (default 60; at most 11,000 evaluations).",
            default = 60
        )]
        step: i64,
    ) -> async_graphql::Result<AlertPreview> {
        let preview = service::preview(
            ctx.state(),
            service::PreviewRequest {
                query,
                threshold,
                for_secs,
                keep_firing_for_secs: keep_firing_for,
                from,
                to,
                step_secs: step,
            },
        )
        .await?;
        Ok(AlertPreview {
            transitions: preview
                .transitions
                .into_iter()
                .map(|g| AlertPreviewTransition {
                    labels: Json(eval::labels_to_json(&g.labels)),
                    from: g.transition.from.into(),
                    to: g.transition.to.into(),
                    value: finite(g.transition.value),
                    at: g.transition.at,
                })
                .collect(),
            truncated: preview.truncated,
            evaluations: preview.evaluations as i64,
            label_sets: preview.label_sets as i64,
        })
    }
}

/// Alert mutations.
#[derive(Default)]
pub struct AlertMutation;

#[Object]
impl AlertMutation {
    /// Creates an alert rule (moderator and above); it is evaluated at once and then on its interval.
    #[graphql(guard = "RoleGuard::new(Role::Moderator)")]
    async fn create_alert_rule(
        &self,
        ctx: &Context<'_>,
        input: CreateAlertRuleInput,
    ) -> async_graphql::Result<AlertRule> {
        let rule = service::create_rule(ctx.state(), ctx.identity()?, input.into()).await?;
        Ok(AlertRule(rule))
    }

    /// Changes an alert rule (moderator and above).
    #[graphql(guard = "RoleGuard::new(Role::Moderator)")]
    async fn update_alert_rule(
        &self,
        ctx: &Context<'_>,
        input: UpdateAlertRuleInput,
    ) -> async_graphql::Result<AlertRule> {
        let id = parse_id("id", &input.id)?;
        let rule = service::update_rule(ctx.state(), id, input.into()).await?;
        Ok(AlertRule(rule))
    }

    /// Deletes an alert rule and its alerts (moderator and above); their
    /// history stays. Returns the rule as it was.
    #[graphql(guard = "RoleGuard::new(Role::Moderator)")]
    async fn delete_alert_rule(
        &self,
        ctx: &Context<'_>,
        input: DeleteAlertRuleInput,
    ) -> async_graphql::Result<AlertRule> {
        let id = parse_id("id", &input.id)?;
        Ok(AlertRule(service::delete_rule(ctx.state(), id).await?))
    }

    /// Enables or disables an alert rule (moderator and above); disabling resolves its alerts.
    #[graphql(guard = "RoleGuard::new(Role::Moderator)")]
    async fn set_alert_rule_enabled(
        &self,
        ctx: &Context<'_>,
        input: SetAlertRuleEnabledInput,
    ) -> async_graphql::Result<AlertRule> {
        let id = parse_id("id", &input.id)?;
        Ok(AlertRule(
            service::set_rule_enabled(ctx.state(), id, input.enabled).await?,
        ))
    }

    /// Creates a silence (moderator and above).
    #[graphql(guard = "RoleGuard::new(Role::Moderator)")]
    async fn create_silence(
        &self,
        ctx: &Context<'_>,
        input: CreateSilenceInput,
    ) -> async_graphql::Result<Silence> {
        let draft = model::SilenceDraft {
            matchers: triples(input.matchers),
            starts_at: input.starts_at,
            ends_at: input.ends_at,
            comment: input.comment,
        };
        Ok(Silence(
            service::create_silence(ctx.state(), ctx.identity()?, draft).await?,
        ))
    }

    /// Ends a pending or active silence now (moderator and above); the record stays.
    #[graphql(guard = "RoleGuard::new(Role::Moderator)")]
    async fn expire_silence(
        &self,
        ctx: &Context<'_>,
        input: ExpireSilenceInput,
    ) -> async_graphql::Result<Silence> {
        let id = parse_id("id", &input.id)?;
        Ok(Silence(service::expire_silence(ctx.state(), id).await?))
    }

    /// Acknowledges a pending or firing alert (any authenticated user): records
    /// who and when, until the alert resolves.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn acknowledge_alert(
        &self,
        ctx: &Context<'_>,
        input: AcknowledgeAlertInput,
    ) -> async_graphql::Result<Alert> {
        let id = parse_id("id", &input.id)?;
        Ok(Alert(
            service::acknowledge_alert(ctx.state(), ctx.identity()?, id, input.comment).await?,
        ))
    }
}

/// The error a lagging `alertStateChanged` subscriber receives before the
/// stream goes on.
pub fn lagged(n: u64) -> AppError {
    AppError::new(
        ErrorCode::Unavailable,
        format!(
            "{n} alert transitions were skipped because this subscriber fell behind; fetch them \
             with alertHistory(filter: {{from: ...}}) and keep reading"
        ),
    )
}

/// Alert subscriptions.
#[derive(Default)]
pub struct AlertSubscription;

#[Subscription]
impl AlertSubscription {
    /// Alert state changes as they are committed (any authenticated user); a
    /// resolution is a transition `to: INACTIVE`. A subscriber that falls
    /// behind receives an error saying how many it missed and keeps going;
    /// fetch the gap with `alertHistory`.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn alert_state_changed(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only changes of this rule's alerts.")] rule_id: Option<ID>,
        #[graphql(desc = "Only changes into these states.")] states: Option<Vec<GqlAlertState>>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<AlertTransition>>> {
        let rule_id = rule_id.map(|id| parse_id("ruleId", &id)).transpose()?;
        if let Some(id) = rule_id {
            service::find_rule(&ctx.state().db, id).await?;
        }
        let states: Option<Vec<String>> = states.map(|s| {
            s.into_iter()
                .map(|st| AlertState::from(st).as_str().to_owned())
                .collect()
        });
        let stream = ctx.live(|t| &t.alerts);
        Ok(stream.filter_map(move |delivery| {
            let item = match delivery {
                Delivery::Item(t) => {
                    let wanted = rule_id.is_none_or(|id| t.rule_id == id)
                        && states
                            .as_ref()
                            .is_none_or(|s| s.iter().any(|st| *st == t.to_state));
                    wanted.then(|| Ok(AlertTransition(t)))
                }
                Delivery::Lagged(n) => Some(Err(lagged(n).into())),
                Delivery::Gap(phase) => Some(Err(phase
                    .error(
                        "alert transitions",
                        "fetch them with alertHistory(filter: {from: ...})",
                    )
                    .into())),
            };
            async move { item }
        }))
    }
}
