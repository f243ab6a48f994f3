//! GraphQL API of the metrics domain: `submitMetric`, `submitMetrics`,
//! `metrics` (raw samples), `metricNames` and `metricSeries` (aggregated
//! points per label set). Resolvers check the caller and call
//! [`super::service`].

use std::collections::BTreeMap;

use async_graphql::connection::{Connection, CursorType, Edge};
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::aggregate::{Aggregation, MetricKind};
use super::model::NewMetric;
use super::service::{self, MetricFilter, SeriesQuery};
use super::store::StoredSample;
use crate::alerts::expr::{MatchOp, Matcher};
use crate::auth::Role;
use crate::auth::guard::{ContextExt, RoleGuard};
use crate::error::AppError;
use crate::events::graphql::BatchResult;
use crate::graphql::TotalCount;
use crate::ingest::Decoded;
use crate::pagination::{Cursor, Page, PageArgs, SAMPLE_TAG};

/// The type of a metric, fixed by its first sample.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "MetricType")]
pub enum GqlMetricType {
    /// Each sample is a non-negative increment; the value is the running total.
    Counter,
    /// Each sample is the value at that moment; the last one wins.
    Gauge,
    /// Each sample is one observation, exposed in buckets.
    Histogram,
    /// Each sample is one observation, exposed as quantiles.
    Summary,
}

impl From<GqlMetricType> for MetricKind {
    fn from(t: GqlMetricType) -> Self {
        match t {
            GqlMetricType::Counter => MetricKind::Counter,
            GqlMetricType::Gauge => MetricKind::Gauge,
            GqlMetricType::Histogram => MetricKind::Histogram,
            GqlMetricType::Summary => MetricKind::Summary,
        }
    }
}

impl From<MetricKind> for GqlMetricType {
    fn from(t: MetricKind) -> Self {
        match t {
            MetricKind::Counter => GqlMetricType::Counter,
            MetricKind::Gauge => GqlMetricType::Gauge,
            MetricKind::Histogram => GqlMetricType::Histogram,
            MetricKind::Summary => GqlMetricType::Summary,
        }
    }
}

/// How the samples of one step become one point. For counters, `SUM` is
/// the increase in the step, `RATE` the per-second increase and `COUNT` the
/// number of increments, while the others describe the running total.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "Aggregation")]
pub enum GqlAggregation {
    /// The mean.
    Avg,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The sum (a counter's increase).
    Sum,
    /// The number of samples.
    Count,
    /// The latest value.
    Last,
    /// Per second over the step: a counter's increase, a gauge's change from
    /// first to last sample, or the number of observations.
    Rate,
    /// The median.
    P50,
    /// The 90th percentile.
    P90,
    /// The 95th percentile.
    P95,
    /// The 99th percentile.
    P99,
}

impl From<GqlAggregation> for Aggregation {
    fn from(a: GqlAggregation) -> Self {
        match a {
            GqlAggregation::Avg => Aggregation::Avg,
            GqlAggregation::Min => Aggregation::Min,
            GqlAggregation::Max => Aggregation::Max,
            GqlAggregation::Sum => Aggregation::Sum,
            GqlAggregation::Count => Aggregation::Count,
            GqlAggregation::Last => Aggregation::Last,
            GqlAggregation::Rate => Aggregation::Rate,
            GqlAggregation::P50 => Aggregation::P50,
            GqlAggregation::P90 => Aggregation::P90,
            GqlAggregation::P95 => Aggregation::P95,
            GqlAggregation::P99 => Aggregation::P99,
        }
    }
}

/// How a label matcher compares a label's value, as in Prometheus selectors
/// (regexes are anchored at both ends; a missing label reads as the empty
/// string). Used by metric queries, alert queries and silences alike.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "MatchOp")]
pub enum GqlMatchOp {
    /// Equal to the value.
    Eq,
    /// Not equal to the value.
    Neq,
    /// Matches the value as a fully anchored regular expression.
    Re,
    /// Does not match the value as a fully anchored regular expression.
    Nre,
}

impl From<GqlMatchOp> for MatchOp {
    fn from(op: GqlMatchOp) -> Self {
        match op {
            GqlMatchOp::Eq => MatchOp::Eq,
            GqlMatchOp::Neq => MatchOp::Ne,
            GqlMatchOp::Re => MatchOp::Re,
            GqlMatchOp::Nre => MatchOp::Nre,
        }
    }
}

impl From<MatchOp> for GqlMatchOp {
    fn from(op: MatchOp) -> Self {
        match op {
            MatchOp::Eq => GqlMatchOp::Eq,
            MatchOp::Ne => GqlMatchOp::Neq,
            MatchOp::Re => GqlMatchOp::Re,
            MatchOp::Nre => GqlMatchOp::Nre,
        }
    }
}

/// A condition on one label, as in Prometheus selectors.
#[derive(InputObject, Clone)]
pub struct LabelMatcherInput {
    /// The label's name (letters, digits and `_`).
    pub label: String,
    /// How its value is compared (default EQ).
    #[graphql(default_with = "GqlMatchOp::Eq")]
    pub op: GqlMatchOp,
    /// The value, or the regular expression for `RE` and `NRE` (at most 1,024 characters).
    pub value: String,
}

/// A condition on one label (as stored, e.g. on a silence).
#[derive(SimpleObject, Clone)]
pub struct LabelMatcher {
    /// The label's name.
    pub label: String,
    /// How its value is compared.
    pub op: GqlMatchOp,
    /// The value or regular expression.
    pub value: String,
}

fn matchers(field: &str, input: Option<Vec<LabelMatcherInput>>) -> Result<Vec<Matcher>, AppError> {
    let input = input.unwrap_or_default();
    if input.len() > service::MAX_FILTER_LIST {
        return Err(AppError::bad_input(
            field,
            format!("at most {} matchers are allowed", service::MAX_FILTER_LIST),
        ));
    }
    input
        .into_iter()
        .map(|m| service::matcher(field, &m.label, m.op.into(), &m.value))
        .collect()
}

/// A stored sample.
pub struct MetricSample(pub StoredSample);

fn labels_json(labels: &BTreeMap<String, String>) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// The cursor type of the `metrics` connection.
pub struct SampleCursor(pub Cursor);

impl CursorType for SampleCursor {
    type Error = String;

    fn decode_cursor(s: &str) -> Result<Self, Self::Error> {
        service::decode_sample_cursor(s)
            .map(SampleCursor)
            .map_err(|e| e.message)
    }

    fn encode_cursor(&self) -> String {
        self.0.encode_tagged(SAMPLE_TAG)
    }
}

#[Object]
impl MetricSample {
    /// The sample's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The metric name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The metric type.
    async fn metric_type(&self) -> GqlMetricType {
        self.0.metric_type.into()
    }
    /// The value as sent: a gauge's value, a counter's increment, or one
    /// histogram or summary observation.
    async fn value(&self) -> f64 {
        self.0.value
    }
    /// The labels, a JSON object of strings.
    async fn labels(&self) -> Value {
        labels_json(&self.0.labels)
    }
    /// The sample time.
    async fn timestamp(&self) -> DateTime<Utc> {
        self.0.timestamp
    }
    /// The position of this sample in the `metrics` order.
    async fn cursor(&self) -> String {
        SampleCursor(service::sample_cursor(&self.0)).encode_cursor()
    }
}

/// A metric name and its type.
#[derive(SimpleObject)]
pub struct MetricName {
    /// The name.
    pub name: String,
    /// Its type, fixed by its first sample.
    pub metric_type: GqlMetricType,
    /// How many series (label sets) it has.
    pub series_count: i64,
}

/// One point of a series.
#[derive(SimpleObject)]
pub struct MetricPoint {
    /// The end of the step (the step covers the time just before it, this instant included).
    pub timestamp: DateTime<Utc>,
    /// The aggregated value.
    pub value: f64,
}

/// The points of one label set.
#[derive(SimpleObject)]
pub struct MetricSeries {
    /// The labels, a JSON object of strings.
    pub labels: Value,
    /// One point per step that has samples, oldest first.
    pub points: Vec<MetricPoint>,
}

/// Input of `submitMetric`, and one item of `submitMetrics`.
#[derive(InputObject)]
pub struct SubmitMetricInput {
    /// Metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`, at most 200 characters.
    pub name: String,
    /// Type; a name keeps the type of its first sample (another one is `CONFLICT`).
    pub metric_type: GqlMetricType,
    /// Gauge: the value (the last one wins); counter: a non-negative
    /// increment (the series value is the running total); histogram and
    /// summary: one observation.
    pub value: f64,
    /// Labels: a JSON object of at most 32 strings; names
    /// `[a-zA-Z_][a-zA-Z0-9_]*` not starting with `__`, values at most 1,024 characters.
    pub labels: Option<Value>,
    /// Sample time (default: now); at most 5 minutes in the future.
    pub timestamp: Option<DateTime<Utc>>,
}

impl From<SubmitMetricInput> for Decoded<NewMetric> {
    fn from(input: SubmitMetricInput) -> Self {
        service::decode_labels(
            input.name,
            input.metric_type.into(),
            input.value,
            input.labels.as_ref(),
            input.timestamp,
        )
    }
}

/// Input of `submitMetrics`.
#[derive(InputObject)]
pub struct SubmitMetricsInput {
    /// The samples: at most 1,000.
    pub metrics: Vec<SubmitMetricInput>,
    /// When true, nothing is stored if any sample is refused. Otherwise
    /// (the default) the others are stored and the refused ones reported.
    #[graphql(default = false)]
    pub atomic: bool,
}

/// Which raw samples to list.
#[derive(InputObject, Default)]
#[graphql(name = "MetricFilter")]
pub struct MetricFilterInput {
    /// Any of these names.
    pub names: Option<Vec<String>>,
    /// Any of these types.
    pub metric_types: Option<Vec<GqlMetricType>>,
    /// All of these label matchers.
    pub matchers: Option<Vec<LabelMatcherInput>>,
    /// Timestamp at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Timestamp before this time.
    pub to: Option<DateTime<Utc>>,
}

/// Metric queries.
#[derive(Default)]
pub struct MetricQuery;

#[Object]
impl MetricQuery {
    /// Raw samples matching the filter, ordered by `(timestamp, id)`.
    #[graphql(
        guard = "RoleGuard::new(Role::User)",
        complexity = "first.or(last).unwrap_or(100).max(0) as usize * child_complexity"
    )]
    async fn metrics(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which samples.")] filter: Option<MetricFilterInput>,
        #[graphql(desc = "Page size from the start (default 100, at most 1,000).")] first: Option<
            i32,
        >,
        #[graphql(desc = "Cursor to start after.")] after: Option<String>,
        #[graphql(desc = "Page size from the end (at most 1,000).")] last: Option<i32>,
        #[graphql(desc = "Cursor to end before.")] before: Option<String>,
    ) -> async_graphql::Result<Connection<SampleCursor, MetricSample, TotalCount>> {
        let input = filter.unwrap_or_default();
        let filter = MetricFilter {
            names: input.names.unwrap_or_default(),
            metric_types: input
                .metric_types
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            matchers: matchers("filter.matchers", input.matchers)?,
            from: input.from,
            to: input.to,
        }
        .validate()?;
        let decode = |field: &str, c: Option<String>| {
            c.as_deref()
                .map(service::decode_sample_cursor)
                .transpose()
                .map_err(|e| e.with_field(field))
        };
        let after_cursor = decode("after", after)?;
        let before_cursor = decode("before", before)?;
        let mut page = Page::from_args(
            PageArgs {
                first,
                after: None,
                last,
                before: None,
            },
            100,
            service::MAX_PAGE,
        )?;
        if first.is_none() && last.is_none() {
            page.backward = before_cursor.is_some() && after_cursor.is_none();
        }
        page.after = after_cursor;
        page.before = before_cursor;
        let rows = service::list_samples(&ctx.state().db, &filter, &page, 0).await?;
        let mut conn = Connection::with_additional_fields(
            rows.has_previous,
            rows.has_next,
            TotalCount::new(move |s| {
                let filter = filter.clone();
                async move { service::count_samples(&s.db, &filter).await }
            }),
        );
        conn.edges.extend(
            rows.items
                .into_iter()
                .map(|(c, s)| Edge::new(SampleCursor(c), MetricSample(s))),
        );
        Ok(conn)
    }

    /// Every metric name with its type, sorted by name.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn metric_names(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<MetricName>> {
        Ok(service::metric_names(&ctx.state().db)
            .await?
            .into_iter()
            .map(|n| MetricName {
                name: n.name,
                metric_type: n.metric_type.into(),
                series_count: n.series_count,
            })
            .collect())
    }

    /// Aggregated points of every label set of a metric that matches the
    /// matchers: one point per `step` from `from` to `to`, each aggregating
    /// the samples in the step ending at it. At most 11,000 points per
    /// series and 1,000 series per call.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    #[allow(clippy::too_many_arguments)]
    async fn metric_series(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The metric name.")] name: String,
        #[graphql(desc = "Label matchers, all of which must hold.")] matchers: Option<
            Vec<LabelMatcherInput>,
        >,
        #[graphql(desc = "Range start (default: one hour before `to`).")] from: Option<
            DateTime<Utc>,
        >,
        #[graphql(desc = "Range end (default: now).")] to: Option<DateTime<Utc>>,
        #[graphql(desc = "Step in seconds (default 60, at least 1).")] step: Option<i32>,
        #[graphql(desc = "How each step's samples become one point (default AVG).")]
        aggregation: Option<GqlAggregation>,
    ) -> async_graphql::Result<Vec<MetricSeries>> {
        let query = SeriesQuery {
            name,
            matchers: self::matchers("matchers", matchers)?,
            from,
            to,
            step_secs: step.map(i64::from),
            aggregation: aggregation.unwrap_or(GqlAggregation::Avg).into(),
        };
        Ok(service::metric_series(&ctx.state().db, &query)
            .await?
            .into_iter()
            .map(|s| MetricSeries {
                labels: labels_json(&s.labels),
                points: s
                    .points
                    .into_iter()
                    .map(|(timestamp, value)| MetricPoint { timestamp, value })
                    .collect(),
            })
            .collect())
    }
}

/// Metric mutations.
#[derive(Default)]
pub struct MetricMutation;

#[Object]
impl MetricMutation {
    /// Stores one sample and returns it once committed (any authenticated
    /// user or API key).
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn submit_metric(
        &self,
        ctx: &Context<'_>,
        input: SubmitMetricInput,
    ) -> async_graphql::Result<MetricSample> {
        ctx.identity()?;
        Ok(MetricSample(service::submit(ctx.state(), input).await?))
    }

    /// Stores up to 1,000 samples in one transaction. Invalid, conflicting
    /// or over-cap samples are reported by index while the others are
    /// stored, unless `atomic` is true.
    #[graphql(guard = "RoleGuard::new(Role::User)")]
    async fn submit_metrics(
        &self,
        ctx: &Context<'_>,
        input: SubmitMetricsInput,
    ) -> async_graphql::Result<BatchResult> {
        ctx.identity()?;
        let items = input.metrics.into_iter().map(Decoded::from).collect();
        let outcome = service::submit_batch(ctx.state(), items, input.atomic).await?;
        Ok(BatchResult::from_outcome(outcome, |s| s.id.to_string()))
    }
}
