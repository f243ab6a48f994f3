//! Metrics: validation, type lock, series cap, counter/gauge/histogram
//! semantics, raw sample queries, aggregated series, REST.

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, TimeZone, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use sightline::metrics::entity::{family, series};
use sightline::metrics::{NewMetric, create_metric};

use crate::common::{TestApp, error_code};

const SUBMIT: &str = "mutation($i: SubmitMetricInput!) { submitMetric(input: $i) { id name metricType value labels timestamp cursor } }";
const SUBMIT_MANY: &str = "mutation($i: SubmitMetricsInput!) { submitMetrics(input: $i) { accepted ids rejected { index errors { field message } } } }";
const SERIES: &str = "query($n: String!, $m: [LabelMatcherInput!], $from: DateTime, $to: DateTime, $step: Int, $a: Aggregation) {
  metricSeries(name: $n, matchers: $m, from: $from, to: $to, step: $step, aggregation: $a) { labels points { timestamp value } } }";
const SAMPLES: &str =
    "query($f: MetricFilter, $first: Int, $after: String, $last: Int, $before: String) {
  metrics(filter: $f, first: $first, after: $after, last: $last, before: $before) {
    totalCount pageInfo { hasNextPage hasPreviousPage endCursor startCursor }
    edges { cursor node { id name metricType value labels timestamp } } } }";

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A whole minute about an hour ago: samples placed from it fall in
/// predictable steps.
fn an_hour_ago_on_the_minute() -> DateTime<Utc> {
    Utc.timestamp_opt(Utc::now().timestamp() / 60 * 60 - 3600, 0)
        .unwrap()
}

async fn submit(app: &TestApp, token: &str, input: Value) -> Value {
    app.gql(Some(token), SUBMIT, json!({ "i": input })).await
}

async fn submit_ok(app: &TestApp, token: &str, input: Value) -> Value {
    let v = submit(app, token, input).await;
    assert!(v.get("errors").is_none(), "{v}");
    v["data"]["submitMetric"].clone()
}

async fn series_row(app: &TestApp, name: &str) -> Vec<series::Model> {
    let fam = family::Entity::find()
        .filter(family::Column::Name.eq(name))
        .one(&app.state.db)
        .await
        .unwrap()
        .expect("family");
    series::Entity::find()
        .filter(series::Column::FamilyId.eq(fam.id))
        .all(&app.state.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_sample_is_stored_and_its_name_listed_with_its_type() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let s = submit_ok(
        &app,
        &token,
        json!({"name": "cpu_usage", "metricType": "GAUGE", "value": 42.5, "labels": {"host": "a", "core": "0"}}),
    )
    .await;
    assert_eq!(s["name"], "cpu_usage");
    assert_eq!(s["metricType"], "GAUGE");
    assert_eq!(s["value"], 42.5);
    assert_eq!(s["labels"], json!({"core": "0", "host": "a"}));
    let names = app
        .gql_ok(
            Some(&token),
            "{ metricNames { name metricType seriesCount } }",
            json!({}),
        )
        .await;
    assert_eq!(
        names["metricNames"],
        json!([{"name": "cpu_usage", "metricType": "GAUGE", "seriesCount": 1}])
    );
    let totals = sightline::metrics::service::totals(&app.state.db)
        .await
        .unwrap();
    assert_eq!((totals.total, totals.last_hour), (1, 1));
    let v = app
        .gql(
            None,
            SUBMIT,
            json!({"i": {"name": "x", "metricType": "GAUGE", "value": 1}}),
        )
        .await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED");
}

#[tokio::test]
async fn each_validation_rule_is_bad_user_input_naming_the_field() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let many: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("l{i}"), json!("v"))).collect();
    let cases = vec![
        (
            json!({"name": "", "metricType": "GAUGE", "value": 1}),
            "name",
        ),
        (
            json!({"name": "1abc", "metricType": "GAUGE", "value": 1}),
            "name",
        ),
        (
            json!({"name": "a-b", "metricType": "GAUGE", "value": 1}),
            "name",
        ),
        (
            json!({"name": "n".repeat(201), "metricType": "GAUGE", "value": 1}),
            "name",
        ),
        (
            json!({"name": "m", "metricType": "GAUGE", "value": 1, "labels": {"__name__": "x"}}),
            "labels.__name__",
        ),
        (
            json!({"name": "m", "metricType": "GAUGE", "value": 1, "labels": {"a-b": "x"}}),
            "labels.a-b",
        ),
        (
            json!({"name": "m", "metricType": "GAUGE", "value": 1, "labels": {"a": "x".repeat(1025)}}),
            "labels.a",
        ),
        (
            json!({"name": "m", "metricType": "GAUGE", "value": 1, "labels": {"a": 5}}),
            "labels.a",
        ),
        (
            json!({"name": "m", "metricType": "GAUGE", "value": 1, "labels": ["a"]}),
            "labels",
        ),
        (
            json!({"name": "m", "metricType": "GAUGE", "value": 1, "labels": Value::Object(many)}),
            "labels",
        ),
        (
            json!({"name": "m", "metricType": "HISTOGRAM", "value": 1, "labels": {"le": "1"}}),
            "labels.le",
        ),
        (
            json!({"name": "c", "metricType": "COUNTER", "value": -1}),
            "value",
        ),
        (
            json!({"name": "m", "metricType": "GAUGE", "value": 1,
                "timestamp": rfc3339(Utc::now() + ChronoDuration::minutes(10))}),
            "timestamp",
        ),
    ];
    for (input, field) in cases {
        let v = submit(&app, &token, input.clone()).await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{input}: {v}");
        assert_eq!(v["errors"][0]["extensions"]["field"], field, "{input}: {v}");
    }
    // Out-of-range numbers are refused before they become infinities.
    let v = app
        .gql(
            Some(&token),
            "mutation { submitMetric(input: {name: \"m\", metricType: GAUGE, value: 1e400}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT", "{v}");
    let names = app
        .gql_ok(Some(&token), "{ metricNames { name } }", json!({}))
        .await;
    assert_eq!(names["metricNames"], json!([]));
}

#[tokio::test]
async fn a_name_keeps_its_first_type_for_life() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    submit_ok(
        &app,
        &token,
        json!({"name": "requests", "metricType": "COUNTER", "value": 1}),
    )
    .await;
    let v = submit(
        &app,
        &token,
        json!({"name": "requests", "metricType": "GAUGE", "value": 1}),
    )
    .await;
    assert_eq!(error_code(&v), "CONFLICT", "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("counter")
    );
    let r = app
        .gql_ok(
            Some(&token),
            SUBMIT_MANY,
            json!({"i": {"metrics": [
                {"name": "requests", "metricType": "COUNTER", "value": 2},
                {"name": "requests", "metricType": "HISTOGRAM", "value": 2},
                {"name": "fresh", "metricType": "SUMMARY", "value": 2},
                {"name": "fresh", "metricType": "GAUGE", "value": 2},
            ]}}),
        )
        .await["submitMetrics"]
        .clone();
    assert_eq!(r["accepted"], 2);
    let rejected: Vec<i64> = r["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["index"].as_i64().unwrap())
        .collect();
    assert_eq!(rejected, [1, 3]);
    assert_eq!(r["rejected"][0]["errors"][0]["field"], "metricType");

    // Atomic: a conflict anywhere writes nothing, not even a new name.
    let r = app
        .gql_ok(
            Some(&token),
            SUBMIT_MANY,
            json!({"i": {"atomic": true, "metrics": [
                {"name": "brand_new", "metricType": "GAUGE", "value": 2},
                {"name": "requests", "metricType": "GAUGE", "value": 2},
            ]}}),
        )
        .await["submitMetrics"]
        .clone();
    assert_eq!(r["accepted"], 0);
    assert_eq!(r["rejected"][0]["index"], 1);
    let names = app
        .gql_ok(Some(&token), "{ metricNames { name } }", json!({}))
        .await;
    assert_eq!(
        names["metricNames"],
        json!([{"name": "fresh"}, {"name": "requests"}])
    );
    let totals = sightline::metrics::service::totals(&app.state.db)
        .await
        .unwrap();
    assert_eq!(totals.total, 3);
}

#[tokio::test]
async fn beyond_the_series_cap_new_label_sets_are_refused_naming_the_busiest_label() {
    let app = TestApp::spawn_with(|c| c.metric_max_series = 4).await;
    let token = app.login_as("USER").await;
    for path in ["/a", "/b", "/c"] {
        submit_ok(
            &app,
            &token,
            json!({"name": "http_requests_total", "metricType": "COUNTER", "value": 1,
                   "labels": {"path": path, "method": "GET"}}),
        )
        .await;
    }
    submit_ok(
        &app,
        &token,
        json!({"name": "http_requests_total", "metricType": "COUNTER", "value": 1,
               "labels": {"path": "/a", "method": "POST"}}),
    )
    .await;
    let v = submit(
        &app,
        &token,
        json!({"name": "http_requests_total", "metricType": "COUNTER", "value": 1,
               "labels": {"path": "/d", "method": "GET"}}),
    )
    .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT", "{v}");
    let message = v["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("`path`"), "{message}");
    assert!(message.contains("4 series"), "{message}");
    // Existing series keep working; other names are unaffected.
    submit_ok(
        &app,
        &token,
        json!({"name": "http_requests_total", "metricType": "COUNTER", "value": 1,
               "labels": {"method": "GET", "path": "/b"}}),
    )
    .await;
    submit_ok(
        &app,
        &token,
        json!({"name": "other", "metricType": "GAUGE", "value": 1, "labels": {"path": "/x"}}),
    )
    .await;
    let rows = series_row(&app, "http_requests_total").await;
    assert_eq!(rows.len(), 4);
    let fam = family::Entity::find()
        .filter(family::Column::Name.eq("http_requests_total"))
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fam.series_count, 4);
    // In a batch the refused ones are reported and the rest stored.
    let r = app
        .gql_ok(
            Some(&token),
            SUBMIT_MANY,
            json!({"i": {"metrics": [
                {"name": "http_requests_total", "metricType": "COUNTER", "value": 1, "labels": {"path": "/e", "method": "GET"}},
                {"name": "http_requests_total", "metricType": "COUNTER", "value": 1, "labels": {"path": "/c", "method": "GET"}},
            ]}}),
        )
        .await["submitMetrics"]
        .clone();
    assert_eq!(r["accepted"], 1);
    assert_eq!(r["rejected"][0]["index"], 0);
    assert_eq!(r["rejected"][0]["errors"][0]["field"], "labels");
}

#[tokio::test]
async fn counters_add_up_gauges_keep_the_last_value_and_histograms_collect_observations() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let base = an_hour_ago_on_the_minute();
    let at = |secs: i64| rfc3339(base + ChronoDuration::seconds(secs));
    let mut items = Vec::new();
    // Counter increments: 1, 2 in the first minute; 3 in the second; 4 in the third.
    for (secs, v) in [(10, 1.0), (50, 2.0), (70, 3.0), (130, 4.0)] {
        items.push(json!({"name": "jobs_total", "metricType": "COUNTER", "value": v, "labels": {"q": "mail"}, "timestamp": at(secs)}));
    }
    // Gauge: the latest by timestamp wins, even when sent out of order.
    for (secs, v) in [(10, 5.0), (100, 7.0), (40, 6.0)] {
        items.push(
            json!({"name": "temp", "metricType": "GAUGE", "value": v, "timestamp": at(secs)}),
        );
    }
    // Histogram observations.
    for (i, v) in [0.1, 0.2, 0.3, 0.4, 1.0].into_iter().enumerate() {
        items.push(json!({"name": "latency_seconds", "metricType": "HISTOGRAM", "value": v, "timestamp": at(5 + i as i64)}));
    }
    let r = app
        .gql_ok(Some(&token), SUBMIT_MANY, json!({"i": {"metrics": items}}))
        .await["submitMetrics"]
        .clone();
    assert_eq!(r["accepted"], 12, "{r}");

    let counter = &series_row(&app, "jobs_total").await[0];
    assert_eq!(counter.total, 10.0);
    assert_eq!(counter.last_value, Some(10.0));
    assert_eq!(counter.sample_count, 4);
    let gauge = &series_row(&app, "temp").await[0];
    assert_eq!(gauge.last_value, Some(7.0));
    assert_eq!(
        gauge.last_sample_at,
        Some(base + ChronoDuration::seconds(100))
    );
    let hist = &series_row(&app, "latency_seconds").await[0];
    assert_eq!(hist.sample_count, 5);
    assert!((hist.total - 2.0).abs() < 1e-9);

    let points = |v: &Value| -> Vec<(i64, f64)> {
        v["metricSeries"][0]["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let t: DateTime<Utc> = p["timestamp"].as_str().unwrap().parse().unwrap();
                ((t - base).num_seconds(), p["value"].as_f64().unwrap())
            })
            .collect()
    };
    let q = |name: &str, agg: &str| json!({"n": name, "from": at(60), "to": at(180), "step": 60, "a": agg});
    let sum = app
        .gql_ok(Some(&token), SERIES, q("jobs_total", "SUM"))
        .await;
    assert_eq!(points(&sum), [(60, 3.0), (120, 3.0), (180, 4.0)]);
    assert_eq!(sum["metricSeries"][0]["labels"], json!({"q": "mail"}));
    let last = app
        .gql_ok(Some(&token), SERIES, q("jobs_total", "LAST"))
        .await;
    assert_eq!(points(&last), [(60, 3.0), (120, 6.0), (180, 10.0)]);
    let rate = app
        .gql_ok(Some(&token), SERIES, q("jobs_total", "RATE"))
        .await;
    assert_eq!(points(&rate), [(60, 0.05), (120, 0.05), (180, 4.0 / 60.0)]);
    let gauge_last = app.gql_ok(Some(&token), SERIES, q("temp", "LAST")).await;
    assert_eq!(points(&gauge_last), [(60, 6.0), (120, 7.0)]);
    let hq = json!({"n": "latency_seconds", "from": at(0), "to": at(60), "step": 60, "a": "P50"});
    let p50 = app.gql_ok(Some(&token), SERIES, hq.clone()).await;
    assert_eq!(points(&p50), [(60, 0.3)]);
    let mut hq_count = hq.clone();
    hq_count["a"] = json!("COUNT");
    let count = app.gql_ok(Some(&token), SERIES, hq_count).await;
    assert_eq!(points(&count), [(60, 5.0)]);

    // Too many points is a clear error.
    let v = app
        .gql(
            Some(&token),
            SERIES,
            json!({"n": "temp", "from": at(0), "to": at(20_000), "step": 1}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("11000"),
        "{v}"
    );
    // Unknown names have no series.
    let none = app.gql_ok(Some(&token), SERIES, json!({"n": "nope"})).await;
    assert_eq!(none["metricSeries"], json!([]));
    let v = app
        .gql(Some(&token), SERIES, json!({"n": "temp", "step": 0}))
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
}

#[tokio::test]
async fn series_points_carry_each_stored_value_exactly() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let base = an_hour_ago_on_the_minute();
    let at = |secs: i64| rfc3339(base + ChronoDuration::seconds(secs));
    let values = [
        0.1 + 0.2,
        1.0 / 3.0,
        1e-300,
        f64::MAX,
        -f64::MIN_POSITIVE,
        123_456_789.123_456_79,
        4e15 + 1.0,
    ];
    let mut items: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"name": "awkward", "metricType": "GAUGE", "value": v, "timestamp": at(60 * i as i64 + 30)}))
        .collect();
    // Two samples at one instant: the one stored last is the step's last value.
    let tie = at(60 * values.len() as i64 + 30);
    items.push(json!({"name": "awkward", "metricType": "GAUGE", "value": 1.5, "timestamp": tie}));
    items.push(json!({"name": "awkward", "metricType": "GAUGE", "value": 2.5, "timestamp": tie}));
    let r = app
        .gql_ok(Some(&token), SUBMIT_MANY, json!({"i": {"metrics": items}}))
        .await;
    assert_eq!(r["submitMetrics"]["accepted"], values.len() + 2, "{r}");
    let v = app
        .gql_ok(
            Some(&token),
            SERIES,
            json!({"n": "awkward", "from": at(0), "to": at(60 * (values.len() as i64 + 1)), "step": 60, "a": "LAST"}),
        )
        .await;
    let got: Vec<f64> = v["metricSeries"][0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect();
    let mut want = values.to_vec();
    want.push(2.5);
    assert_eq!(got.len(), want.len(), "{v}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.to_bits(), w.to_bits(), "got {g:e}, stored {w:e}");
    }
}

#[tokio::test]
async fn series_and_samples_are_selected_with_prometheus_matchers() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let t0 = Utc::now() - ChronoDuration::minutes(30);
    let mut items = Vec::new();
    for (i, (host, env)) in [("a", "prod"), ("b", "prod"), ("c", "stage"), ("d", "")]
        .into_iter()
        .enumerate()
    {
        let mut labels = json!({"host": host});
        if !env.is_empty() {
            labels["env"] = json!(env);
        }
        for k in 0..3 {
            items.push(json!({"name": "up", "metricType": "GAUGE", "value": (i * 10 + k) as f64,
                              "labels": labels, "timestamp": rfc3339(t0 + ChronoDuration::minutes(k as i64 * 5 + i as i64))}));
        }
    }
    items.push(json!({"name": "other", "metricType": "GAUGE", "value": 1, "labels": {"env": "prod"}, "timestamp": rfc3339(t0)}));
    app.gql_ok(Some(&token), SUBMIT_MANY, json!({"i": {"metrics": items}}))
        .await;
    let hosts = |v: &Value| -> Vec<String> {
        let mut h: Vec<String> = v["metricSeries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["labels"]["host"].as_str().unwrap().to_owned())
            .collect();
        h.sort();
        h
    };
    for (matchers, expected) in [
        (
            json!([{"label": "env", "op": "EQ", "value": "prod"}]),
            vec!["a", "b"],
        ),
        (
            json!([{"label": "env", "op": "NEQ", "value": "prod"}]),
            vec!["c", "d"],
        ),
        (
            json!([{"label": "env", "op": "EQ", "value": ""}]),
            vec!["d"],
        ),
        (
            json!([{"label": "host", "op": "RE", "value": "a|c"}]),
            vec!["a", "c"],
        ),
        (
            json!([{"label": "host", "op": "RE", "value": "a|"}]),
            vec!["a"],
        ),
        (
            json!([{"label": "host", "op": "NRE", "value": "[ab]"}]),
            vec!["c", "d"],
        ),
        (
            json!([{"label": "env", "op": "EQ", "value": "prod"}, {"label": "host", "op": "NEQ", "value": "a"}]),
            vec!["b"],
        ),
    ] {
        let v = app
            .gql_ok(
                Some(&token),
                SERIES,
                json!({"n": "up", "m": matchers, "a": "MAX", "step": 300}),
            )
            .await;
        assert_eq!(hosts(&v), expected, "{matchers}");
    }
    let v = app
        .gql(
            Some(&token),
            SERIES,
            json!({"n": "up", "m": [{"label": "host", "op": "RE", "value": "("}]}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");

    // Raw samples: filters and pages.
    let (app_ref, token_ref) = (&app, token.as_str());
    let page = |vars: Value| async move {
        app_ref.gql_ok(Some(token_ref), SAMPLES, vars).await["metrics"].clone()
    };
    let all = page(json!({"first": 100})).await;
    assert_eq!(all["totalCount"], 13);
    let prod = page(json!({"f": {"names": ["up"], "matchers": [{"label": "env", "op": "EQ", "value": "prod"}]}})).await;
    assert_eq!(prod["totalCount"], 6);
    let other =
        page(json!({"f": {"matchers": [{"label": "env", "op": "EQ", "value": "prod"}]}})).await;
    assert_eq!(other["totalCount"], 7);
    let gauges = page(json!({"f": {"metricTypes": ["COUNTER"]}})).await;
    assert_eq!(gauges["totalCount"], 0);
    let recent = page(json!({"f": {"from": rfc3339(t0 + ChronoDuration::minutes(10))}})).await;
    assert_eq!(recent["totalCount"], 4);
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let p = page(json!({"first": 5, "after": after})).await;
        for e in p["edges"].as_array().unwrap() {
            seen.push((
                e["node"]["timestamp"]
                    .as_str()
                    .unwrap()
                    .parse::<DateTime<Utc>>()
                    .unwrap(),
                e["node"]["id"].as_str().unwrap().parse::<i64>().unwrap(),
            ));
        }
        if !p["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = p["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen.len(), 13);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    let back = page(json!({"last": 3})).await;
    assert_eq!(back["edges"].as_array().unwrap().len(), 3);
    assert_eq!(back["pageInfo"]["hasPreviousPage"], true);
    let v = app
        .gql(Some(&token), SAMPLES, json!({"after": "bm9wZQ"}))
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
}

#[tokio::test]
async fn the_rust_api_creates_metrics_in_the_callers_transaction() {
    use sea_orm::TransactionTrait;
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    let s = create_metric(
        db,
        NewMetric::counter("jobs_done_total", 2.0, &[("queue", "mail")]),
    )
    .await
    .unwrap();
    assert_eq!(s.name, "jobs_done_total");
    let txn = db.begin().await.unwrap();
    create_metric(
        &txn,
        NewMetric::counter("jobs_done_total", 3.0, &[("queue", "mail")]),
    )
    .await
    .unwrap();
    txn.rollback().await.unwrap();
    let row = &series_row(&app, "jobs_done_total").await[0];
    assert_eq!(row.total, 2.0);
    let err = create_metric(db, NewMetric::gauge("jobs_done_total", 1.0, &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code, sightline::ErrorCode::Conflict);
    let err = sightline::metrics::create_metrics(
        db,
        vec![
            NewMetric::gauge("g", 1.0, &[]),
            NewMetric::gauge("bad name", 1.0, &[]),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(err.field.as_deref(), Some("metrics[1].name"));
    assert_eq!(
        sightline::metrics::service::totals(db).await.unwrap().total,
        1
    );
}

#[tokio::test]
async fn the_rest_endpoints_keep_the_original_shapes_and_status_codes() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let url = app.url("/api/v1/monitoring/metrics");
    let post = |body: Value| {
        app.client
            .post(&url)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let resp = post(
        json!({"name": "http_requests_total", "metric_type": "counter", "value": 1,
                           "labels": {"method": "GET", "status": "200", "endpoint": "/api/users"}}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["success"], true);
    assert_eq!(body["data"]["metric_type"], "counter");
    assert_eq!(body["data"]["labels"]["endpoint"], "/api/users");

    let resp = post(json!({"name": "http_requests_total", "metric_type": "gauge", "value": 1}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "CONFLICT");
    let resp = post(json!({"name": "x", "metric_type": "timer", "value": 1}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["field"], "metric_type");
    let resp = post(json!({"name": "x", "metric_type": "gauge", "value": "high"}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = post(json!([
        {"name": "cpu_usage", "metric_type": "gauge", "value": 81, "labels": {"host": "a"}},
        {"name": "cpu usage", "metric_type": "gauge", "value": 1}
    ]))
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"]["accepted"], 1);
    assert_eq!(body["data"]["rejected"][0]["errors"][0]["field"], "name");

    let get = |q: &str| {
        app.client
            .get(format!("{url}{q}"))
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    let start = rfc3339(Utc::now() - ChronoDuration::hours(1));
    let body: Value = get(&format!("?name=cpu_usage&start_time={start}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["value"], 81.0);
    for (q, n) in [
        ("?labels=host:a", 1),
        ("?labels=host:b", 0),
        ("?metric_type=counter", 1),
        ("?limit=1", 1),
        ("?offset=1", 1),
    ] {
        let body: Value = get(q).await.unwrap().json().await.unwrap();
        assert_eq!(body["data"].as_array().unwrap().len(), n, "{q}");
    }
    for q in [
        "?metric_type=timer",
        "?limit=-1",
        "?start_time=x",
        "?labels=__bad",
        "?nope=1",
    ] {
        let resp = get(q).await.unwrap();
        assert_eq!(resp.status(), 400, "{q}");
    }
    let resp = app.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}
