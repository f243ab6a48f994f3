//! Suggested root causes: what changed around an incident, with the
//! evidence a human needs to check each suggestion.
//!
//! The analysed window runs from `startedAt − lookback` (default 1 h) to the
//! earliest of `resolvedAt`, `startedAt + lookback` and now; the baseline is
//! the stretch of equal length just before it. The analysis finds:
//!
//! - **suspect sources**: sources whose count of `error`/`fatal` events rose
//!   from the baseline to the window, ranked by the rise measured in
//!   standard deviations of the baseline count (Poisson: `(w − b) / √(b + 1)`),
//!   each with both counts, both rates per minute, the rise, and its first
//!   error event in the window;
//! - **alerts that fired in the window** (alert transitions to `firing`, of
//!   any rule, the first ones in time order), each with its rule, labels,
//!   value and whether it is linked to the incident;
//! - **metric series whose window mean deviates most from the baseline**,
//!   as a z-score against the baseline's mean and standard deviation, with
//!   the means, spread and sample counts.
//!
//! Each part is one aggregate statement; the result is stored (one analysis
//! per incident, replaced when re-run). Given the same rows and window the
//! result is the same: every ranking breaks ties by name or id, and figures
//! are rounded to six decimals.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Alias, Asterisk, Expr, ExprTrait, Order, Query, WindowStatement};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoIdentity,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::entity::{analysis, incident, incident_alert};
use crate::alerts::entity::transition;
use crate::error::{AppError, AppResult};
use crate::events::Level;
use crate::events::entity as event;
use crate::metrics::entity::{family, sample, series};
use crate::state::AppState;
use crate::util;

/// Default half-width of the analysed window around `startedAt`.
pub const DEFAULT_LOOKBACK: Duration = Duration::hours(1);
/// Most suspects, alerts and metrics reported.
pub const MAX_FINDINGS: usize = 10;
/// A flat baseline (no spread) is treated as having this relative spread,
/// so a move away from it still ranks (with a large z-score).
const FLAT_BASELINE_SPREAD: f64 = 1e-3;

/// The analysed window and its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Start of the baseline (inclusive).
    pub baseline_start: DateTime<Utc>,
    /// End of the baseline (exclusive) and start of the window (inclusive).
    pub window_start: DateTime<Utc>,
    /// End of the window (inclusive).
    pub window_end: DateTime<Utc>,
}

impl Span {
    /// The span for an incident analysed at `now`.
    pub fn of(inc: &incident::Model, lookback: Duration, now: DateTime<Utc>) -> Span {
        let window_start = inc.started_at - lookback;
        let mut window_end = inc.started_at + lookback;
        if let Some(r) = inc.resolved_at {
            window_end = std::cmp::min(window_end, r);
        }
        window_end = std::cmp::max(std::cmp::min(window_end, now), window_start);
        let len = window_end - window_start;
        Span {
            baseline_start: window_start - len,
            window_start,
            window_end,
        }
    }

    /// Length of the window (and of the baseline) in minutes; at least one second's worth.
    pub fn minutes(&self) -> f64 {
        let secs = (self.window_end - self.window_start).num_milliseconds() as f64 / 1000.0;
        secs.max(1.0) / 60.0
    }
}

/// The first error event of a suspect source in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorRef {
    /// The event's id.
    pub event_id: Uuid,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// `error` or `fatal`.
    pub level: String,
    /// Its message.
    pub message: Option<String>,
}

/// A source whose errors rose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Suspect {
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
    /// The rise in standard deviations of the baseline count, the ranking key.
    pub score: f64,
    /// The source's first error in the window.
    pub first_error: Option<ErrorRef>,
}

/// An alert that fired in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FiredAlert {
    /// The transition's id.
    pub transition_id: Uuid,
    /// The rule.
    pub rule_id: Uuid,
    /// The rule's name when it fired.
    pub rule_name: String,
    /// The alert instance.
    pub instance_id: Uuid,
    /// The instance's labels.
    pub labels: serde_json::Value,
    /// The rule's severity when it fired (`info`, `warning`, `critical`).
    #[serde(default)]
    pub severity: Option<String>,
    /// Whether a silence matched it.
    #[serde(default)]
    pub silenced: bool,
    /// Whether the alert is linked to the analysed incident.
    #[serde(default)]
    pub linked: bool,
    /// The value that made it fire.
    pub value: Option<f64>,
    /// When it fired.
    pub at: DateTime<Utc>,
}

/// A metric series whose mean moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricDeviation {
    /// 1 for the largest deviation.
    pub rank: u32,
    /// The series' id.
    pub series_id: i64,
    /// The metric's name.
    pub name: String,
    /// The series' labels.
    pub labels: serde_json::Value,
    /// Mean of the samples in the window.
    pub window_mean: f64,
    /// Mean of the samples in the baseline.
    pub baseline_mean: f64,
    /// Standard deviation of the samples in the baseline.
    pub baseline_stddev: f64,
    /// Samples in the window.
    pub window_samples: u64,
    /// Samples in the baseline.
    pub baseline_samples: u64,
    /// `(window mean − baseline mean) / baseline stddev`, the ranking key (by magnitude).
    pub z_score: f64,
}

/// What an analysis found.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Findings {
    /// Sources whose errors rose, strongest first.
    pub suspects: Vec<Suspect>,
    /// Alerts that fired in the window, in time order.
    pub alerts: Vec<FiredAlert>,
    /// Metric series that moved most, largest first.
    pub metrics: Vec<MetricDeviation>,
}

/// A stored analysis, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// The incident.
    pub incident_id: Uuid,
    /// When it was computed.
    pub computed_at: DateTime<Utc>,
    /// The window and baseline.
    pub span: Span,
    /// The findings.
    pub findings: Findings,
}

impl Analysis {
    /// Decodes a stored row.
    pub fn from_row(row: &analysis::Model) -> AppResult<Analysis> {
        let findings: Findings =
            serde_json::from_value(row.result.clone()).map_err(AppError::internal)?;
        Ok(Analysis {
            incident_id: row.incident_id,
            computed_at: row.computed_at,
            span: Span {
                baseline_start: row.baseline_start,
                window_start: row.window_start,
                window_end: row.window_end,
            },
            findings,
        })
    }
}

fn round6(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1e6).round() / 1e6
    } else {
        0.0
    }
}

/// Ranks sources by how much their error count rose (pure, for testing).
/// `counts` maps a source to `(window errors, baseline errors)`.
pub fn rank_sources(counts: &HashMap<String, (u64, u64)>, minutes: f64) -> Vec<Suspect> {
    let mut out: Vec<Suspect> = counts
        .iter()
        .filter(|(_, (w, b))| w > b)
        .map(|(source, &(w, b))| {
            let score = (w as f64 - b as f64) / ((b as f64) + 1.0).sqrt();
            let wr = w as f64 / minutes;
            let br = b as f64 / minutes;
            Suspect {
                rank: 0,
                source: source.clone(),
                window_errors: w,
                baseline_errors: b,
                window_rate_per_minute: round6(wr),
                baseline_rate_per_minute: round6(br),
                rise_per_minute: round6(wr - br),
                score: round6(score),
                first_error: None,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.window_errors.cmp(&a.window_errors))
            .then(a.source.cmp(&b.source))
    });
    out.truncate(MAX_FINDINGS);
    for (i, s) in out.iter_mut().enumerate() {
        s.rank = i as u32 + 1;
    }
    out
}

/// Sums of one series' samples over the window and the baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesSums {
    /// Samples in the window.
    pub window_n: u64,
    /// Their sum.
    pub window_sum: f64,
    /// Samples in the baseline.
    pub baseline_n: u64,
    /// Their sum.
    pub baseline_sum: f64,
    /// The sum of their squares.
    pub baseline_sq: f64,
}

/// The z-score of the window mean against the baseline (pure, for testing):
/// `None` without at least one window sample and two baseline samples.
pub fn z_score(s: &SeriesSums) -> Option<(f64, f64, f64, f64)> {
    if s.window_n == 0 || s.baseline_n < 2 {
        return None;
    }
    let wm = s.window_sum / s.window_n as f64;
    let bm = s.baseline_sum / s.baseline_n as f64;
    let var = (s.baseline_sq / s.baseline_n as f64 - bm * bm).max(0.0);
    let sd = var.sqrt();
    let spread = if sd > 1e-12 {
        sd
    } else {
        FLAT_BASELINE_SPREAD * bm.abs().max(1.0)
    };
    let z = (wm - bm) / spread;
    (wm.is_finite() && bm.is_finite() && z.is_finite()).then_some((wm, bm, sd, z))
}

async fn error_counts(
    db: &impl ConnectionTrait,
    span: &Span,
) -> AppResult<HashMap<String, (u64, u64)>> {
    let errors: Vec<&str> = Level::Error
        .and_above()
        .into_iter()
        .map(Level::as_str)
        .collect();
    let in_window = Expr::case(event::Column::Timestamp.gte(span.window_start), 1).finally(0);
    let in_baseline = Expr::case(event::Column::Timestamp.lt(span.window_start), 1).finally(0);
    let mut q = Query::select();
    q.column(event::Column::Source)
        .expr_as(in_window.sum(), Alias::new("w"))
        .expr_as(in_baseline.sum(), Alias::new("b"))
        .from(event::Entity)
        .and_where(event::Column::Level.is_in(errors))
        .and_where(event::Column::Timestamp.gte(span.baseline_start))
        .and_where(event::Column::Timestamp.lte(span.window_end))
        .group_by_col(event::Column::Source);
    let mut out = HashMap::new();
    for row in db.query_all(&q).await? {
        let source: String = row.try_get("", "source")?;
        let w: i64 = row.try_get("", "w")?;
        let b: i64 = row.try_get("", "b")?;
        out.insert(
            source,
            (u64::try_from(w).unwrap_or(0), u64::try_from(b).unwrap_or(0)),
        );
    }
    Ok(out)
}

async fn first_errors(
    db: &impl ConnectionTrait,
    span: &Span,
    sources: &[String],
) -> AppResult<HashMap<String, ErrorRef>> {
    if sources.is_empty() {
        return Ok(HashMap::new());
    }
    let errors: Vec<&str> = Level::Error
        .and_above()
        .into_iter()
        .map(Level::as_str)
        .collect();
    let mut window = WindowStatement::partition_by(event::Column::Source);
    window
        .order_by(event::Column::Timestamp, Order::Asc)
        .order_by(event::Column::Id, Order::Asc);
    let mut inner = Query::select();
    inner
        .column(Asterisk)
        .expr_window_as(Expr::cust("ROW_NUMBER()"), window, "rn")
        .from(event::Entity)
        .and_where(event::Column::Source.is_in(sources.iter().cloned()))
        .and_where(event::Column::Level.is_in(errors))
        .and_where(event::Column::Timestamp.gte(span.window_start))
        .and_where(event::Column::Timestamp.lte(span.window_end));
    let mut outer = Query::select();
    outer
        .column(Asterisk)
        .from_subquery(inner.to_owned(), "ranked")
        .and_where(Expr::col("rn".into_identity()).eq(1));
    let stmt = db.get_database_backend().build(&outer);
    let rows = event::Entity::find().from_raw_sql(stmt).all(db).await?;
    Ok(rows
        .into_iter()
        .map(|e| {
            (
                e.source.clone(),
                ErrorRef {
                    event_id: e.id,
                    at: e.timestamp,
                    level: e.level.unwrap_or_default(),
                    message: e.message,
                },
            )
        })
        .collect())
}

/// A series id, its sums and its `(window mean, baseline mean, stddev, z)`.
type Scored = (i64, SeriesSums, (f64, f64, f64, f64));

async fn metric_deviations(
    db: &impl ConnectionTrait,
    span: &Span,
) -> AppResult<Vec<MetricDeviation>> {
    let w = || sample::Column::Timestamp.gte(span.window_start);
    let b = || sample::Column::Timestamp.lt(span.window_start);
    let v = || Expr::col(sample::Column::Value);
    let mut q = Query::select();
    q.column(sample::Column::SeriesId)
        .expr_as(Expr::case(w(), 1).finally(0).sum(), Alias::new("wn"))
        .expr_as(Expr::case(w(), v()).finally(0.0).sum(), Alias::new("ws"))
        .expr_as(Expr::case(b(), 1).finally(0).sum(), Alias::new("bn"))
        .expr_as(Expr::case(b(), v()).finally(0.0).sum(), Alias::new("bs"))
        .expr_as(
            Expr::case(b(), v().mul(v())).finally(0.0).sum(),
            Alias::new("bq"),
        )
        .from(sample::Entity)
        .and_where(sample::Column::Timestamp.gte(span.baseline_start))
        .and_where(sample::Column::Timestamp.lte(span.window_end))
        .group_by_col(sample::Column::SeriesId);
    let mut scored: Vec<Scored> = Vec::new();
    for row in db.query_all(&q).await? {
        let id: i64 = row.try_get("", "series_id")?;
        let wn: i64 = row.try_get("", "wn")?;
        let bn: i64 = row.try_get("", "bn")?;
        let sums = SeriesSums {
            window_n: u64::try_from(wn).unwrap_or(0),
            window_sum: row.try_get::<Option<f64>>("", "ws")?.unwrap_or(0.0),
            baseline_n: u64::try_from(bn).unwrap_or(0),
            baseline_sum: row.try_get::<Option<f64>>("", "bs")?.unwrap_or(0.0),
            baseline_sq: row.try_get::<Option<f64>>("", "bq")?.unwrap_or(0.0),
        };
        if let Some(z) = z_score(&sums)
            && round6(z.3) != 0.0
        {
            scored.push((id, sums, z));
        }
    }
    scored.sort_by(|a, b| {
        round6(b.2.3.abs())
            .total_cmp(&round6(a.2.3.abs()))
            .then(a.0.cmp(&b.0))
    });
    scored.truncate(MAX_FINDINGS);
    let ids: Vec<i64> = scored.iter().map(|s| s.0).collect();
    let series_rows: HashMap<i64, series::Model> = if ids.is_empty() {
        HashMap::new()
    } else {
        series::Entity::find()
            .filter(series::Column::Id.is_in(ids.clone()))
            .all(db)
            .await?
            .into_iter()
            .map(|s| (s.id, s))
            .collect()
    };
    let family_ids: Vec<i64> = series_rows.values().map(|s| s.family_id).collect();
    let families: HashMap<i64, String> = if family_ids.is_empty() {
        HashMap::new()
    } else {
        family::Entity::find()
            .filter(family::Column::Id.is_in(family_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|f| (f.id, f.name))
            .collect()
    };
    let mut out = Vec::new();
    for (id, sums, (wm, bm, sd, z)) in scored {
        let Some(s) = series_rows.get(&id) else {
            continue;
        };
        out.push(MetricDeviation {
            rank: out.len() as u32 + 1,
            series_id: id,
            name: families.get(&s.family_id).cloned().unwrap_or_default(),
            labels: s.labels.clone(),
            window_mean: round6(wm),
            baseline_mean: round6(bm),
            baseline_stddev: round6(sd),
            window_samples: sums.window_n,
            baseline_samples: sums.baseline_n,
            z_score: round6(z),
        });
    }
    Ok(out)
}

/// The first alerts that fired in the window, in time order (one range scan
/// of the history's time index), marking those linked to `incident_id`.
async fn fired_alerts(
    db: &impl ConnectionTrait,
    span: &Span,
    incident_id: Option<Uuid>,
) -> AppResult<Vec<FiredAlert>> {
    let rows = transition::Entity::find()
        .filter(transition::Column::At.gte(span.window_start))
        .filter(transition::Column::At.lte(span.window_end))
        .filter(transition::Column::ToState.eq("firing"))
        .order_by_asc(transition::Column::At)
        .order_by_asc(transition::Column::Id)
        .limit(MAX_FINDINGS as u64)
        .all(db)
        .await?;
    let linked: HashSet<Uuid> = match incident_id {
        Some(id) if !rows.is_empty() => incident_alert::Entity::find()
            .select_only()
            .column(incident_alert::Column::InstanceId)
            .filter(incident_alert::Column::IncidentId.eq(id))
            .into_tuple::<Uuid>()
            .all(db)
            .await?
            .into_iter()
            .collect(),
        _ => HashSet::new(),
    };
    Ok(rows
        .into_iter()
        .map(|t| FiredAlert {
            transition_id: t.id,
            rule_id: t.rule_id,
            rule_name: t.rule_name,
            linked: linked.contains(&t.instance_id),
            instance_id: t.instance_id,
            labels: t.labels,
            severity: Some(t.severity),
            silenced: t.silenced,
            value: t.value.filter(|v| v.is_finite()).map(round6),
            at: t.at,
        })
        .collect())
}

/// Computes the findings over `span` (reads only); alerts linked to
/// `incident_id` are marked as such.
pub async fn findings(
    db: &impl ConnectionTrait,
    span: &Span,
    incident_id: Option<Uuid>,
) -> AppResult<Findings> {
    let counts = error_counts(db, span).await?;
    let mut suspects = rank_sources(&counts, span.minutes());
    let names: Vec<String> = suspects.iter().map(|s| s.source.clone()).collect();
    let mut firsts = first_errors(db, span, &names).await?;
    for s in &mut suspects {
        s.first_error = firsts.remove(&s.source);
    }
    let metrics = metric_deviations(db, span).await?;
    let alerts = fired_alerts(db, span, incident_id).await?;
    Ok(Findings {
        suspects,
        alerts,
        metrics,
    })
}

/// Analyses an incident with the default lookback and stores the result
/// (replacing any earlier one). No access check: callers decide who may ask.
pub async fn analyze(state: &AppState, incident_id: Uuid) -> AppResult<Analysis> {
    analyze_with(state, incident_id, DEFAULT_LOOKBACK).await
}

/// Like [`analyze`], with a chosen lookback (validated like the timeline's).
#[tracing::instrument(skip_all, fields(incident_id = %incident_id))]
pub async fn analyze_with(
    state: &AppState,
    incident_id: Uuid,
    lookback: Duration,
) -> AppResult<Analysis> {
    let lookback = super::timeline::lookback(lookback)?;
    let now = util::now();
    let inc = incident::Entity::find_by_id(incident_id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AppError::not_found("incident"))?;
    let span = Span::of(&inc, lookback, now);
    let findings = findings(&state.db, &span, Some(incident_id)).await?;
    let result = serde_json::to_value(&findings).map_err(AppError::internal)?;
    let txn = crate::db::begin_write(&state.db).await?;
    analysis::Entity::delete_by_id(incident_id)
        .exec(&txn)
        .await?;
    let row = analysis::ActiveModel {
        incident_id: Set(incident_id),
        computed_at: Set(now),
        window_start: Set(span.window_start),
        window_end: Set(span.window_end),
        baseline_start: Set(span.baseline_start),
        result: Set(result),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    tracing::info!(
        suspects = findings.suspects.len(),
        alerts = findings.alerts.len(),
        metrics = findings.metrics.len(),
        "incident analysed"
    );
    Analysis::from_row(&row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_whose_errors_jumped_ranks_above_a_noisy_steady_one() {
        let mut counts = HashMap::new();
        counts.insert("steady".to_owned(), (100, 95));
        counts.insert("jumped".to_owned(), (30, 1));
        counts.insert("quiet".to_owned(), (0, 4));
        let ranked = rank_sources(&counts, 60.0);
        assert_eq!(
            ranked.len(),
            2,
            "sources whose errors fell are not suspects"
        );
        assert_eq!(ranked[0].source, "jumped");
        assert_eq!(ranked[0].rank, 1);
        assert_eq!(ranked[1].source, "steady");
        assert_eq!(ranked[0].window_rate_per_minute, 0.5);
    }

    #[test]
    fn ties_are_broken_by_name_so_rankings_are_deterministic() {
        let mut counts = HashMap::new();
        for s in ["b", "c", "a"] {
            counts.insert(s.to_owned(), (5, 0));
        }
        let names: Vec<String> = rank_sources(&counts, 1.0)
            .into_iter()
            .map(|s| s.source)
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn a_z_score_needs_two_baseline_samples_and_measures_the_shift_in_baseline_spread() {
        let none = SeriesSums {
            window_n: 3,
            window_sum: 30.0,
            baseline_n: 1,
            baseline_sum: 1.0,
            baseline_sq: 1.0,
        };
        assert!(z_score(&none).is_none());
        // Baseline 1, 3 (mean 2, sd 1); window mean 5 → z = 3.
        let s = SeriesSums {
            window_n: 2,
            window_sum: 10.0,
            baseline_n: 2,
            baseline_sum: 4.0,
            baseline_sq: 10.0,
        };
        let (wm, bm, sd, z) = z_score(&s).unwrap();
        assert_eq!((wm, bm, sd, z), (5.0, 2.0, 1.0, 3.0));
    }

    #[test]
    fn a_flat_baseline_still_ranks_a_move_away_from_it() {
        let s = SeriesSums {
            window_n: 1,
            window_sum: 11.0,
            baseline_n: 3,
            baseline_sum: 30.0,
            baseline_sq: 300.0,
        };
        let (_, _, sd, z) = z_score(&s).unwrap();
        assert_eq!(sd, 0.0);
        assert!(z > 10.0, "{z}");
    }

    #[test]
    fn the_window_is_capped_by_resolution_and_by_now() {
        let now = util::now();
        let mut inc = super::super::service::tests_support::sample(now - Duration::hours(5));
        let span = Span::of(&inc, Duration::hours(1), now);
        assert_eq!(span.window_start, now - Duration::hours(6));
        assert_eq!(span.window_end, now - Duration::hours(4));
        assert_eq!(span.baseline_start, now - Duration::hours(8));
        inc.resolved_at = Some(now - Duration::minutes(290));
        assert_eq!(
            Span::of(&inc, Duration::hours(1), now).window_end,
            now - Duration::minutes(290)
        );
        let fresh = super::super::service::tests_support::sample(now);
        let span = Span::of(&fresh, Duration::hours(1), now);
        assert_eq!(span.window_end, now);
        assert_eq!(span.baseline_start, now - Duration::hours(2));
    }
}
