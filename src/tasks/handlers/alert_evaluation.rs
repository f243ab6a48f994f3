//! `monitoring_alert_evaluation`: evaluates one alert rule on its interval.
//!
//! Each enabled rule has exactly one live task (pending, running or failed)
//! with the dedupe key `alert_rule:<rule id>` (the partial unique index on
//! live dedupe keys enforces it). A run evaluates the rule's due slot
//! through [`crate::alerts::evaluator::evaluate_in_slot`] and then re-arms
//! the same task ([`TaskContext::reschedule`]) for the rule's next slot, so
//! the task is never finished while the rule is enabled. Workers claim it
//! with `FOR UPDATE SKIP LOCKED`, so exactly one worker across replicas
//! evaluates a rule at a time; the lease is one evaluation interval, so a
//! crashed worker's rule is taken over by another worker after at most one
//! missed interval.
//!
//! The task follows the rule:
//! - creating, updating, enabling or disabling a rule, and deleting it,
//!   call [`sync_rule_task`] in the same transaction: a pending or failed
//!   task is moved to the rule's next slot (or cancelled when the rule is
//!   disabled or gone), and a missing one is created. A running task is left
//!   alone: when it finishes it reads the rule again and re-arms for its
//!   current slot (due at once after an update), or stops when the rule is
//!   disabled or deleted;
//! - the scheduler calls [`ensure_rule_tasks`] periodically (and at start),
//!   re-creating the task of any enabled rule that has none (after a race
//!   between a finishing run and a re-enable, a task that died after its
//!   attempts, a cancelled task, or rules stored before tasks existed).
//!
//! A task enqueued by hand (`enqueueTask`) without the rule's dedupe key is a
//! one-off "evaluate now": it evaluates at its run time and is not re-armed.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use serde_json::{Value, json};
use uuid::Uuid;

use super::ALERT_EVALUATION;
use crate::alerts::entity::rule;
use crate::alerts::evaluator::{self, EvaluationOutcome};
use crate::error::{AppResult, FieldError};
use crate::state::AppState;
use crate::tasks::entity::task;
use crate::tasks::model::TaskStatus;
use crate::tasks::registry::{Handler, HandlerFuture, TaskContext, TaskError};
use crate::tasks::service::{self, InternalTask};
use crate::util;

/// Prefix of the dedupe key of a rule's task.
pub const KEY_PREFIX: &str = "alert_rule:";
/// Attempts of one run before the task is dead (the scheduler re-creates it).
pub const MAX_ATTEMPTS: i32 = 5;
/// Alert evaluation runs before other work when a worker takes every type.
pub const PRIORITY: i32 = 10;

/// The dedupe key of a rule's task.
pub fn task_key(rule_id: Uuid) -> String {
    format!("{KEY_PREFIX}{rule_id}")
}

fn payload_of(rule: &rule::Model) -> Value {
    json!({
        "rule_id": rule.id.to_string(),
        "interval_secs": rule.evaluation_interval_secs.max(1),
    })
}

fn rule_id_of(payload: &Value) -> Result<Uuid, FieldError> {
    payload
        .get("rule_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Uuid>().ok())
        .ok_or_else(|| {
            FieldError::new(
                "rule_id",
                "rule_id must be the id (a UUID) of an alert rule",
            )
        })
}

/// Checks a payload: `{"rule_id": "<uuid>", "interval_secs"?: n}`.
pub fn validate(payload: &Value) -> Result<(), FieldError> {
    super::only_keys(payload, &["rule_id", "interval_secs"])?;
    rule_id_of(payload)?;
    if let Some(v) = payload.get("interval_secs") {
        match v.as_i64() {
            Some(n) if (1..=crate::alerts::model::MAX_INTERVAL_SECS).contains(&n) => {}
            _ => {
                return Err(FieldError::new(
                    "interval_secs",
                    "interval_secs must be a whole number of seconds, at least 1",
                ));
            }
        }
    }
    Ok(())
}

/// The handler (a type of its own for its lease: one evaluation interval).
pub struct AlertEvaluation;

impl Handler for AlertEvaluation {
    fn run(&self, ctx: TaskContext) -> HandlerFuture {
        Box::pin(run(ctx))
    }

    fn validate(&self, payload: &Value) -> Result<(), FieldError> {
        validate(payload)
    }

    fn lease(&self, task: &task::Model) -> Option<Duration> {
        let secs = task.payload.get("interval_secs").and_then(Value::as_i64)?;
        Some(Duration::from_secs(secs.clamp(1, 86_400) as u64))
    }
}

fn outcome_json(o: &EvaluationOutcome) -> Value {
    json!({
        "evaluated": o.evaluated,
        "matching": o.matching,
        "transitions": o.transitions.len(),
        "error": o.error,
        "duration_ms": (o.duration.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
    })
}

/// Runs one evaluation (see the module docs).
pub async fn run(ctx: TaskContext) -> Result<Value, TaskError> {
    let state = &ctx.state;
    let rule_id = rule_id_of(&ctx.task.payload).map_err(|e| TaskError::Permanent(e.message))?;
    let now = util::to_stored_precision(ctx.now);
    let recurring = ctx.task.dedupe_key.as_deref() == Some(task_key(rule_id).as_str());
    let Some(rule) = rule::Entity::find_by_id(rule_id).one(&state.db).await? else {
        return Ok(
            json!({"rule_id": rule_id, "evaluated": false, "skipped": "the rule was deleted"}),
        );
    };
    if !rule.enabled {
        return Ok(
            json!({"rule_id": rule_id, "evaluated": false, "skipped": "the rule is disabled"}),
        );
    }
    if !recurring {
        let outcome = evaluator::evaluate_rule(state, rule_id, now).await?;
        let mut result = outcome_json(&outcome);
        result["rule_id"] = json!(rule_id);
        return Ok(result);
    }
    let due = rule.next_evaluation_at;
    if due > now {
        // Early (a retry by hand, or a clock ahead of ours): wait for the slot.
        ctx.reschedule(due);
        return Ok(json!({"rule_id": rule_id, "evaluated": false, "next_evaluation_at": due}));
    }
    let next = evaluator::next_slot(due, rule.evaluation_interval_secs, now);
    let outcome = evaluator::evaluate_in_slot(state, rule_id, now, due, next).await?;
    // Re-arm for the rule's slot as stored now: `next` after this
    // evaluation, or the time of an update that came in meanwhile.
    let current: Option<(bool, DateTime<Utc>)> = rule::Entity::find()
        .select_only()
        .column(rule::Column::Enabled)
        .column(rule::Column::NextEvaluationAt)
        .filter(rule::Column::Id.eq(rule_id))
        .into_tuple()
        .one(&state.db)
        .await?;
    let mut result = outcome_json(&outcome);
    result["rule_id"] = json!(rule_id);
    if let Some((true, mut at)) = current {
        if at == due {
            // Not evaluated and not moved (already evaluated at a later time
            // by a direct call): skip this slot rather than spin on it.
            rule::Entity::update_many()
                .col_expr(rule::Column::NextEvaluationAt, Expr::value(next))
                .filter(rule::Column::Id.eq(rule_id))
                .filter(rule::Column::NextEvaluationAt.eq(due))
                .exec(&state.db)
                .await?;
            at = next;
        }
        ctx.reschedule(at);
        result["next_evaluation_at"] = json!(at);
    }
    Ok(result)
}

fn live_statuses() -> [&'static str; 2] {
    [TaskStatus::Pending.as_str(), TaskStatus::Failed.as_str()]
}

/// Makes the task of rule `rule_id` follow the rule, through the caller's
/// transaction (`rule` is the rule as committed by it, `None` when deleted):
/// see the module docs. Call [`crate::tasks::TaskRegistry::wake`] after the
/// commit so this process's alert worker looks at once.
pub async fn sync_rule_task(
    txn: &impl ConnectionTrait,
    rule_id: Uuid,
    rule: Option<&rule::Model>,
) -> AppResult<()> {
    let now = util::now();
    let key = task_key(rule_id);
    let waiting = |q: sea_orm::UpdateMany<task::Entity>| {
        q.filter(task::Column::DedupeKey.eq(key.clone()))
            .filter(task::Column::Status.is_in(live_statuses()))
    };
    match rule {
        Some(rule) if rule.enabled => {
            let moved = waiting(task::Entity::update_many())
                .col_expr(
                    task::Column::Status,
                    Expr::value(TaskStatus::Pending.as_str()),
                )
                .col_expr(task::Column::Attempts, Expr::value(0))
                .col_expr(task::Column::Payload, Expr::value(payload_of(rule)))
                .col_expr(task::Column::RunAfter, Expr::value(rule.next_evaluation_at))
                .col_expr(task::Column::UpdatedAt, Expr::value(now))
                .exec(txn)
                .await?
                .rows_affected;
            if moved == 0 {
                // None, or a running one (which re-arms itself when done).
                service::insert_internal(txn, rule_task(rule)).await?;
            }
        }
        _ => {
            waiting(task::Entity::update_many())
                .col_expr(
                    task::Column::Status,
                    Expr::value(TaskStatus::Cancelled.as_str()),
                )
                .col_expr(task::Column::FinishedAt, Expr::value(Some(now)))
                .col_expr(task::Column::UpdatedAt, Expr::value(now))
                .exec(txn)
                .await?;
        }
    }
    Ok(())
}

fn rule_task(rule: &rule::Model) -> InternalTask {
    InternalTask {
        task_type: ALERT_EVALUATION,
        payload: payload_of(rule),
        dedupe_key: Some(task_key(rule.id)),
        run_after: rule.next_evaluation_at,
        priority: PRIORITY,
        max_attempts: MAX_ATTEMPTS,
    }
}

/// Creates the task of every enabled rule that has no live one; returns how
/// many were created. Two reads (enabled rules, live rule tasks) and an
/// insert per missing task; safe to run on several replicas at once (the
/// dedupe index keeps one).
pub async fn ensure_rule_tasks(state: &AppState) -> AppResult<u64> {
    let live: HashSet<String> = task::Entity::find()
        .select_only()
        .column(task::Column::DedupeKey)
        .filter(task::Column::TaskType.eq(ALERT_EVALUATION))
        .filter(task::Column::Status.is_in([
            TaskStatus::Pending.as_str(),
            TaskStatus::Running.as_str(),
            TaskStatus::Failed.as_str(),
        ]))
        .into_tuple::<Option<String>>()
        .all(&state.db)
        .await?
        .into_iter()
        .flatten()
        .collect();
    let rules = rule::Entity::find()
        .filter(rule::Column::Enabled.eq(true))
        .all(&state.db)
        .await?;
    let mut created = 0;
    for rule in rules.iter().filter(|r| !live.contains(&task_key(r.id))) {
        if service::insert_internal(&state.db, rule_task(rule)).await? {
            created += 1;
        }
    }
    if created > 0 {
        tracing::info!(created, "re-created missing alert evaluation tasks");
        state.tasks.wake();
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_a_rule_and_optionally_its_interval() {
        let id = Uuid::now_v7().to_string();
        assert!(validate(&json!({"rule_id": id})).is_ok());
        assert!(validate(&json!({"rule_id": id, "interval_secs": 30})).is_ok());
        assert_eq!(validate(&json!({})).unwrap_err().field, "rule_id");
        assert_eq!(
            validate(&json!({"rule_id": "x"})).unwrap_err().field,
            "rule_id"
        );
        assert_eq!(
            validate(&json!({"rule_id": id, "interval_secs": 0}))
                .unwrap_err()
                .field,
            "interval_secs"
        );
        assert_eq!(
            validate(&json!({"rule_id": id, "x": 1})).unwrap_err().field,
            "x"
        );
    }
}
