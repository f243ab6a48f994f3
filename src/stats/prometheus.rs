//! The Prometheus text exposition (format 0.0.4) served on `GET /metrics`
//! and `GET /api/v1/monitoring/metrics/prometheus`: Sightline's own figures
//! followed by the stored metrics, written through
//! [`crate::metrics::exposition::Writer`] so the document is always valid and
//! never larger than `SIGHTLINE_PROMETHEUS_MAX_BYTES`.
//!
//! Nothing here scans a whole table:
//! - the six monitoring figures come from [`super::service::monitoring_stats`]
//!   (maintained counters and index-only counts, see there);
//! - task counts by status group the `tasks` table, which holds only live
//!   tasks and finished ones younger than `SIGHTLINE_TASK_RETENTION_DAYS`;
//! - stored series are read from `metric_series` through its
//!   `last_sample_at` index (only series with a sample inside the metric
//!   retention window), at most `SIGHTLINE_PROMETHEUS_MAX_SERIES` of them:
//!   gauges use the maintained `last_value`, counters the maintained running
//!   `total`, histograms the bucket counts folded incrementally by
//!   [`super::rollup`] plus the maintained `total` (sum) and `sample_count`;
//! - summaries compute their 0.5, 0.9 and 0.99 quantiles from the samples of
//!   the last `SIGHTLINE_SUMMARY_WINDOW` only (through the
//!   `(series_id, timestamp)` index), with the maintained sum and count
//!   (Prometheus client libraries do the same: quantiles over a sliding
//!   window, sum and count over the series' life). At most
//!   [`SUMMARY_SAMPLE_BUDGET`] samples are read per exposition.
//!
//! Names: our own families are lint-clean for `promtool check metrics`
//! (counters end in `_total`, base units, help text). Stored metric names are
//! sanitised to the metric-name alphabet, and a stored counter whose name
//! does not end in `_total` is exposed with `_total` appended (as OpenMetrics
//! clients do). A stored family whose name collides with one already written
//! is left out, and the document says so in a comment.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, Statement};
use serde_json::Value;

use super::telemetry::LATENCY_BUCKETS;
use crate::error::AppResult;
use crate::metrics::aggregate::quantile;
use crate::metrics::exposition::{
    self, Family, HistogramData, SummaryData, Writer, counter_family, gauge_family,
    histogram_family, summary_family,
};
use crate::state::AppState;
use crate::tasks::model::TaskStatus;
use crate::util;

/// Most summary samples one exposition reads.
pub const SUMMARY_SAMPLE_BUDGET: u64 = 500_000;
/// The quantiles written for stored summaries.
pub const SUMMARY_QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

type Labels = Vec<(String, String)>;

#[derive(Debug, FromQueryResult)]
struct SeriesRow {
    name: String,
    metric_type: String,
    id: i64,
    labels: Value,
    last_value: Option<f64>,
    total: f64,
    sample_count: i64,
}

#[derive(Debug, FromQueryResult)]
struct ValueRow {
    series_id: i64,
    value: f64,
}

fn labels_of(v: &Value) -> Labels {
    match v {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The exposed name of a stored family: sanitised, and counters end in `_total`.
pub fn exposed_name(name: &str, metric_type: &str) -> String {
    let name = exposition::sanitize_metric_name(name);
    if metric_type == "counter" && !name.ends_with("_total") {
        format!("{name}_total")
    } else {
        name
    }
}

/// Writes Sightline's own families.
async fn own_families(state: &AppState, writer: &mut Writer) -> AppResult<()> {
    let no_labels: Labels = Vec::new();
    // The original design's six figures, from the same service as
    // `monitoringStats` (maintained counters and index-only counts).
    let stats = super::service::monitoring_stats(&state.db).await?;
    for (name, help, value) in stats.gauges() {
        writer.family(&gauge_family(
            name,
            help,
            &[(no_labels.clone(), value as f64)],
        ));
    }
    let http = state.http_metrics.snapshot();
    let http_labels = |s: &super::telemetry::HttpSeries| -> Labels {
        vec![
            ("method".to_owned(), s.method.to_owned()),
            ("route".to_owned(), s.route.clone()),
            ("status".to_owned(), s.status.to_string()),
        ]
    };
    let requests: Vec<(Labels, f64)> = http
        .iter()
        .map(|s| (http_labels(s), s.count as f64))
        .collect();
    writer.family(&counter_family(
        "sightline_http_requests_total",
        "HTTP requests answered since the process started, by method, route template and status.",
        &requests,
    ));
    let latency: Vec<(Labels, HistogramData)> = http
        .iter()
        .map(|s| {
            (
                http_labels(s),
                HistogramData {
                    bucket_counts: s.cumulative.clone(),
                    count: s.count,
                    sum: s.sum_seconds,
                },
            )
        })
        .collect();
    writer.family(&histogram_family(
        "sightline_http_request_duration_seconds",
        "Time to answer HTTP requests (until the response headers), in seconds.",
        &LATENCY_BUCKETS,
        &latency,
    ));
    writer.family(&gauge_family(
        "sightline_websocket_connections",
        "Open GraphQL WebSocket connections.",
        &[(no_labels.clone(), state.ws_tracker.live() as f64)],
    ));
    writer.family(&gauge_family(
        "sightline_live_subscriptions",
        "GraphQL operations (subscriptions) running on WebSocket connections.",
        &[(no_labels.clone(), state.ws_tracker.operations() as f64)],
    ));
    let counts = crate::tasks::service::counts(&state.db).await?;
    let by_status: Vec<(Labels, f64)> = TaskStatus::ALL
        .into_iter()
        .map(|s| {
            (
                vec![("status".to_owned(), s.as_str().to_owned())],
                counts.status(s) as f64,
            )
        })
        .collect();
    writer.family(&gauge_family(
        "sightline_tasks",
        "Background tasks by status (finished ones are kept for SIGHTLINE_TASK_RETENTION_DAYS).",
        &by_status,
    ));
    Ok(())
}

/// Reads the stored series in the retention window, at most `max` of them
/// (plus one, to tell whether more exist), ordered by family name.
async fn stored_series(
    db: &impl ConnectionTrait,
    since: DateTime<Utc>,
    max: u64,
) -> AppResult<Vec<SeriesRow>> {
    Ok(SeriesRow::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT f.name, f.metric_type, s.id, s.labels, s.last_value, s.total, s.sample_count \
         FROM metric_series s JOIN metric_families f ON f.id = s.family_id \
         WHERE s.last_sample_at >= $1 \
         ORDER BY f.name, s.id LIMIT $2",
        [since.into(), (max.saturating_add(1) as i64).into()],
    ))
    .all(db)
    .await?)
}

/// Sorted sample values of the given summary series since `since`, within
/// the remaining `budget`.
async fn window_values(
    db: &impl ConnectionTrait,
    series: &[i64],
    since: DateTime<Utc>,
    budget: &mut u64,
) -> AppResult<HashMap<i64, Vec<f64>>> {
    let mut out: HashMap<i64, Vec<f64>> = HashMap::new();
    for chunk in series.chunks(200) {
        if *budget == 0 {
            break;
        }
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
        let mut values: Vec<sea_orm::Value> = vec![since.into(), (*budget as i64).into()];
        values.extend(chunk.iter().map(|id| sea_orm::Value::from(*id)));
        let rows = ValueRow::find_by_statement(Statement::from_sql_and_values(
            db.get_database_backend(),
            format!(
                "SELECT series_id, value FROM metric_samples \
                 WHERE timestamp >= $1 AND series_id IN ({}) LIMIT $2",
                placeholders.join(", ")
            ),
            values,
        ))
        .all(db)
        .await?;
        *budget = budget.saturating_sub(rows.len() as u64);
        for r in rows {
            out.entry(r.series_id).or_default().push(r.value);
        }
    }
    for v in out.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    Ok(out)
}

/// Builds the family of one stored metric from its series.
fn stored_family(
    name: &str,
    metric_type: &str,
    rows: &[SeriesRow],
    bounds: &[f64],
    buckets: &HashMap<i64, (Vec<u64>, u64)>,
    windows: &HashMap<i64, Vec<f64>>,
) -> Option<Family> {
    let exposed = exposed_name(name, metric_type);
    let help = format!("Stored {metric_type} metric {name}.");
    match metric_type {
        "gauge" => {
            let series: Vec<(Labels, f64)> = rows
                .iter()
                .filter_map(|r| Some((labels_of(&r.labels), r.last_value?)))
                .collect();
            Some(gauge_family(&exposed, &help, &series))
        }
        "counter" => {
            let series: Vec<(Labels, f64)> = rows
                .iter()
                .map(|r| (labels_of(&r.labels), r.total))
                .collect();
            Some(counter_family(&exposed, &help, &series))
        }
        "histogram" => {
            let series: Vec<(Labels, HistogramData)> = rows
                .iter()
                .map(|r| {
                    let (counts, folded) = buckets
                        .get(&r.id)
                        .cloned()
                        .unwrap_or_else(|| (vec![0; bounds.len()], 0));
                    let count = (r.sample_count.max(0) as u64).max(folded);
                    (
                        labels_of(&r.labels),
                        HistogramData {
                            bucket_counts: counts,
                            count,
                            sum: r.total,
                        },
                    )
                })
                .collect();
            Some(histogram_family(&exposed, &help, bounds, &series))
        }
        "summary" => {
            let series: Vec<(Labels, SummaryData)> = rows
                .iter()
                .map(|r| {
                    let window = windows.get(&r.id).map(Vec::as_slice).unwrap_or(&[]);
                    let quantiles = SUMMARY_QUANTILES
                        .iter()
                        .map(|q| (*q, quantile(window, *q).unwrap_or(f64::NAN)))
                        .collect();
                    (
                        labels_of(&r.labels),
                        SummaryData {
                            quantiles,
                            count: r.sample_count.max(0) as u64,
                            sum: r.total,
                        },
                    )
                })
                .collect();
            Some(summary_family(&exposed, &help, &series))
        }
        _ => None,
    }
}

/// The whole exposition document.
pub async fn render(state: &AppState) -> AppResult<String> {
    let config = &state.config;
    let now = util::now();
    let mut writer = Writer::new(config.prometheus_max_bytes);
    own_families(state, &mut writer).await?;

    let bounds = config.histogram_buckets.clone();
    if let Err(e) = super::rollup::fold(&state.db, &bounds).await {
        // Stale buckets are still valid output; the next scrape catches up.
        tracing::warn!(error = %e.describe(), "could not fold new histogram samples");
    }
    let since = now - chrono::Duration::days(i64::from(config.metric_retention_days));
    let max = config.prometheus_max_series;
    let mut rows = stored_series(&state.db, since, max).await?;
    let capped = rows.len() as u64 > max;
    if capped {
        // Drop the family the cap cut through, so no family is half written.
        rows.truncate(max as usize);
        if let Some(last) = rows.last().map(|r| r.name.clone()) {
            rows.retain(|r| r.name != last);
        }
    }
    let histogram_ids: Vec<i64> = rows
        .iter()
        .filter(|r| r.metric_type == "histogram")
        .map(|r| r.id)
        .collect();
    let summary_ids: Vec<i64> = rows
        .iter()
        .filter(|r| r.metric_type == "summary")
        .map(|r| r.id)
        .collect();
    let buckets = super::rollup::buckets_of(&state.db, &histogram_ids, &bounds).await?;
    let window_start =
        now - chrono::Duration::from_std(config.summary_window).unwrap_or(chrono::Duration::zero());
    let mut budget = SUMMARY_SAMPLE_BUDGET;
    let windows = window_values(&state.db, &summary_ids, window_start, &mut budget).await?;

    let mut start = 0;
    while start < rows.len() {
        let name = rows[start].name.clone();
        let end = rows[start..]
            .iter()
            .position(|r| r.name != name)
            .map(|p| start + p)
            .unwrap_or(rows.len());
        let family_rows = &rows[start..end];
        if let Some(family) = stored_family(
            &name,
            &family_rows[0].metric_type,
            family_rows,
            &bounds,
            &buckets,
            &windows,
        ) {
            writer.family(&family);
        }
        start = end;
    }
    let mut out = writer.finish();
    if capped {
        out.push_str(&format!(
            "# truncated: only the first {max} stored series are exposed (SIGHTLINE_PROMETHEUS_MAX_SERIES)\n"
        ));
    }
    if budget == 0 {
        out.push_str(
            "# note: summary quantiles were computed from a partial window (sample budget reached)\n",
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_counters_are_exposed_with_a_total_suffix() {
        assert_eq!(exposed_name("jobs_done", "counter"), "jobs_done_total");
        assert_eq!(
            exposed_name("http_requests_total", "counter"),
            "http_requests_total"
        );
        assert_eq!(exposed_name("cpu.usage", "gauge"), "cpu_usage");
        assert_eq!(exposed_name("9lives", "histogram"), "_9lives");
    }

    #[test]
    fn label_values_of_any_json_type_become_text() {
        let labels = labels_of(&serde_json::json!({"a": "x", "b": 2}));
        assert_eq!(
            labels,
            vec![
                ("a".to_owned(), "x".to_owned()),
                ("b".to_owned(), "2".to_owned())
            ]
        );
    }
}
