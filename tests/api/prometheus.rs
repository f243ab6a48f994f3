//! The Prometheus exposition: access rules, content type, and a document
//! that parses strictly (`exposition::check`) with the right values for
//! every stored metric kind, tricky names and label values, retention, and
//! the size bounds.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use sightline::config::MetricsAuth;
use sightline::metrics::entity::{family, sample, series};
use sightline::metrics::exposition::{self, CONTENT_TYPE, ParsedFamily};
use sightline::util;

use crate::common::TestApp;

fn ago(secs: i64) -> DateTime<Utc> {
    util::now() - chrono::Duration::seconds(secs)
}

/// Stores one series of a metric (creating the family when needed) with
/// its samples, and the series' maintained figures as ingest keeps them:
/// last sample time and value, running total (counters: sum of increments;
/// histograms and summaries: sum of observations) and sample count.
async fn store_series(
    app: &TestApp,
    name: &str,
    metric_type: &str,
    labels: Value,
    samples: &[(DateTime<Utc>, f64)],
) -> i64 {
    let db = &app.state.db;
    let now = util::now();
    let fam = match family::Entity::find()
        .filter(family::Column::Name.eq(name))
        .one(db)
        .await
        .unwrap()
    {
        Some(f) => f,
        None => family::ActiveModel {
            name: Set(name.to_owned()),
            metric_type: Set(metric_type.to_owned()),
            series_count: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap(),
    };
    let last = samples.iter().max_by_key(|(t, _)| *t).copied();
    let total = if metric_type == "gauge" {
        0.0
    } else {
        samples.iter().map(|(_, v)| v).sum()
    };
    let s = series::ActiveModel {
        family_id: Set(fam.id),
        labels: Set(labels.clone()),
        fingerprint: Set(util::sha256_hex(&labels.to_string())),
        created_at: Set(now),
        last_sample_at: Set(last.map(|l| l.0)),
        last_value: Set(last.map(|l| l.1)),
        total: Set(total),
        sample_count: Set(samples.len() as i64),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    for (t, v) in samples {
        sample::ActiveModel {
            series_id: Set(s.id),
            timestamp: Set(*t),
            value: Set(*v),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
    }
    s.id
}

/// Adds samples to a stored series, keeping its figures as ingest would.
async fn add_samples(app: &TestApp, series_id: i64, samples: &[(DateTime<Utc>, f64)]) {
    let db = &app.state.db;
    let row = series::Entity::find_by_id(series_id)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    for (t, v) in samples {
        sample::ActiveModel {
            series_id: Set(series_id),
            timestamp: Set(*t),
            value: Set(*v),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
    }
    let last = samples.iter().max_by_key(|(t, _)| *t).copied().unwrap();
    let mut active: series::ActiveModel = row.clone().into();
    active.total = Set(row.total + samples.iter().map(|(_, v)| v).sum::<f64>());
    active.sample_count = Set(row.sample_count + samples.len() as i64);
    if row.last_sample_at.is_none_or(|t| last.0 > t) {
        active.last_sample_at = Set(Some(last.0));
        active.last_value = Set(Some(last.1));
    }
    active.update(db).await.unwrap();
}

async fn scrape(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(app.url(path));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.send().await.unwrap()
}

/// Fetches `/metrics` with the admin's token and checks it strictly.
async fn document(app: &TestApp) -> (String, Vec<ParsedFamily>) {
    let resp = scrape(app, "/metrics", Some(&app.admin_token)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], CONTENT_TYPE);
    let text = resp.text().await.unwrap();
    if let Err(e) = exposition::check(&text) {
        panic!("invalid exposition: {e}\n{text}");
    }
    let families = exposition::parse(&text).unwrap();
    (text, families)
}

fn family<'a>(families: &'a [ParsedFamily], name: &str) -> &'a ParsedFamily {
    families
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no family {name}"))
}

fn value(f: &ParsedFamily, sample: &str, labels: &[(&str, &str)]) -> f64 {
    f.samples
        .iter()
        .find(|s| s.name == sample && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {sample} {labels:?} in {f:?}"))
        .value
}

#[tokio::test]
async fn the_exposition_is_valid_and_holds_every_kind_of_stored_metric() {
    let app = TestApp::spawn().await;
    // Gauge with labels that need escaping, and a name that needs sanitising.
    store_series(
        &app,
        "cpu.usage",
        "gauge",
        json!({"host": "a\"b\\c\nd", "region": "eü"}),
        &[(ago(120), 10.0), (ago(60), 42.5)],
    )
    .await;
    store_series(
        &app,
        "cpu.usage",
        "gauge",
        json!({"host": "plain", "region": "x"}),
        &[(ago(30), 7.0)],
    )
    .await;
    // Counter without `_total`: exposed with it, as the running total.
    store_series(
        &app,
        "jobs_done",
        "counter",
        json!({"queue": "mail"}),
        &[(ago(90), 1.0), (ago(60), 2.0), (ago(30), 3.0)],
    )
    .await;
    // Histogram with a user label named `le`.
    store_series(
        &app,
        "request_latency_seconds",
        "histogram",
        json!({"le": "mine", "path": "/a"}),
        &[
            (ago(50), 0.003),
            (ago(40), 0.2),
            (ago(30), 0.2),
            (ago(20), 7.0),
            (ago(10), 100.0),
        ],
    )
    .await;
    // Summary: 100 recent observations plus old ones outside the quantile
    // window (but inside retention): quantiles see only the recent ones.
    let mut obs: Vec<(DateTime<Utc>, f64)> =
        (1..=100).map(|i| (ago(100 - i + 1), i as f64)).collect();
    obs.push((ago(3 * 3600), 5000.0));
    store_series(
        &app,
        "rpc_duration_seconds",
        "summary",
        json!({"method": "get"}),
        &obs,
    )
    .await;
    // Outside the metric retention window: not exposed.
    store_series(
        &app,
        "stale_gauge",
        "gauge",
        json!({}),
        &[(ago(100 * 86_400), 1.0)],
    )
    .await;
    store_series(&app, "9bad-name", "gauge", json!({}), &[(ago(5), 3.0)]).await;
    // Some HTTP traffic to count.
    assert_eq!(scrape(&app, "/healthz", None).await.status(), 200);
    assert_eq!(scrape(&app, "/no/such/path", None).await.status(), 404);

    let (text, families) = document(&app).await;

    // One HELP and one TYPE per family.
    for f in &families {
        let help = format!("# HELP {} ", f.name);
        let ty = format!("# TYPE {} ", f.name);
        assert_eq!(text.matches(&help).count(), 1, "{}", f.name);
        assert_eq!(text.matches(&ty).count(), 1, "{}", f.name);
    }

    let cpu = family(&families, "cpu_usage");
    assert_eq!(cpu.kind, exposition::FamilyType::Gauge);
    assert_eq!(
        value(
            cpu,
            "cpu_usage",
            &[("host", "a\"b\\c\nd"), ("region", "eü")]
        ),
        42.5
    );
    assert_eq!(value(cpu, "cpu_usage", &[("host", "plain")]), 7.0);
    assert!(
        text.contains(r#"cpu_usage{host="a\"b\\c\nd",region="eü"} 42.5"#),
        "{text}"
    );

    let jobs = family(&families, "jobs_done_total");
    assert_eq!(jobs.kind, exposition::FamilyType::Counter);
    assert_eq!(value(jobs, "jobs_done_total", &[("queue", "mail")]), 6.0);

    let h = family(&families, "request_latency_seconds");
    assert_eq!(h.kind, exposition::FamilyType::Histogram);
    let b = |le: &str| {
        value(
            h,
            "request_latency_seconds_bucket",
            &[("le", le), ("exported_le", "mine"), ("path", "/a")],
        )
    };
    assert_eq!(b("0.005"), 1.0);
    assert_eq!(b("0.1"), 1.0);
    assert_eq!(b("0.25"), 3.0);
    assert_eq!(b("5"), 3.0);
    assert_eq!(b("10"), 4.0);
    assert_eq!(b("+Inf"), 5.0);
    assert_eq!(
        value(h, "request_latency_seconds_count", &[("path", "/a")]),
        5.0
    );
    let sum = value(h, "request_latency_seconds_sum", &[("path", "/a")]);
    assert!((sum - 107.403).abs() < 1e-9, "{sum}");

    let s = family(&families, "rpc_duration_seconds");
    assert_eq!(s.kind, exposition::FamilyType::Summary);
    let q = |q: &str| {
        value(
            s,
            "rpc_duration_seconds",
            &[("quantile", q), ("method", "get")],
        )
    };
    assert_eq!(q("0.5"), 50.5);
    assert!((q("0.9") - 90.1).abs() < 1e-9);
    assert!((q("0.99") - 99.01).abs() < 1e-9);
    assert_eq!(
        value(s, "rpc_duration_seconds_count", &[("method", "get")]),
        101.0
    );
    assert_eq!(
        value(s, "rpc_duration_seconds_sum", &[("method", "get")]),
        10_050.0
    );

    assert!(families.iter().all(|f| f.name != "stale_gauge"));
    assert_eq!(
        value(family(&families, "_9bad_name"), "_9bad_name", &[]),
        3.0
    );

    // Sightline's own figures.
    let http = family(&families, "sightline_http_requests_total");
    assert!(
        value(
            http,
            "sightline_http_requests_total",
            &[("method", "GET"), ("route", "/healthz"), ("status", "200")]
        ) >= 1.0
    );
    assert!(
        value(
            http,
            "sightline_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ) >= 1.0
    );
    assert!(
        !text.contains("/no/such/path"),
        "raw paths never become labels"
    );
    let latency = family(&families, "sightline_http_request_duration_seconds");
    assert!(
        value(
            latency,
            "sightline_http_request_duration_seconds_count",
            &[("route", "/healthz")]
        ) >= 1.0
    );
    let tasks = family(&families, "sightline_tasks");
    for status in [
        "pending",
        "running",
        "succeeded",
        "failed",
        "dead",
        "cancelled",
    ] {
        assert_eq!(value(tasks, "sightline_tasks", &[("status", status)]), 0.0);
    }
    family(&families, "sightline_websocket_connections");
    family(&families, "sightline_live_subscriptions");
}

#[tokio::test]
async fn histogram_buckets_only_grow_and_end_at_the_count() {
    let app = TestApp::spawn().await;
    let id = store_series(
        &app,
        "payload_bytes",
        "histogram",
        json!({}),
        &[(ago(30), 0.5), (ago(20), 3.0)],
    )
    .await;
    let (_, first) = document(&app).await;
    let h = family(&first, "payload_bytes");
    assert_eq!(value(h, "payload_bytes_bucket", &[("le", "0.5")]), 1.0);
    assert_eq!(value(h, "payload_bytes_bucket", &[("le", "+Inf")]), 2.0);

    add_samples(&app, id, &[(ago(5), 0.1), (ago(4), 0.1), (ago(3), 50.0)]).await;
    let (_, second) = document(&app).await;
    let h2 = family(&second, "payload_bytes");
    assert_eq!(value(h2, "payload_bytes_bucket", &[("le", "0.1")]), 2.0);
    assert_eq!(value(h2, "payload_bytes_bucket", &[("le", "0.5")]), 3.0);
    assert_eq!(value(h2, "payload_bytes_bucket", &[("le", "5")]), 4.0);
    assert_eq!(value(h2, "payload_bytes_bucket", &[("le", "+Inf")]), 5.0);
    assert_eq!(value(h2, "payload_bytes_count", &[]), 5.0);
    for s in h
        .samples
        .iter()
        .filter(|s| s.name == "payload_bytes_bucket")
    {
        let le = s.label("le").unwrap();
        assert!(value(h2, "payload_bytes_bucket", &[("le", le)]) >= s.value);
    }

    // Retention deletes the old samples; the buckets keep counting them.
    let mut old = vec![];
    for i in 0..3 {
        old.push((util::now() - chrono::Duration::days(200 + i), 0.01));
    }
    add_samples(&app, id, &old).await;
    app.enqueue("monitoring_data_retention", json!({})).await;
    sightline::tasks::run_pending_tasks(&app.state)
        .await
        .unwrap();
    let left = sample::Entity::find()
        .filter(sample::Column::SeriesId.eq(id))
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(left.len(), 5, "the old samples are gone");
    let (_, third) = document(&app).await;
    let h3 = family(&third, "payload_bytes");
    assert_eq!(value(h3, "payload_bytes_bucket", &[("le", "0.01")]), 3.0);
    assert_eq!(value(h3, "payload_bytes_bucket", &[("le", "+Inf")]), 8.0);
    assert_eq!(value(h3, "payload_bytes_count", &[]), 8.0);
}

#[tokio::test]
async fn bucket_bounds_are_configurable() {
    let app = TestApp::spawn_with(|c| c.histogram_buckets = vec![1.0, 10.0]).await;
    store_series(
        &app,
        "job_seconds",
        "histogram",
        json!({}),
        &[(ago(3), 0.5), (ago(2), 5.0), (ago(1), 50.0)],
    )
    .await;
    let (_, families) = document(&app).await;
    let h = family(&families, "job_seconds");
    let les: Vec<&str> = h
        .samples
        .iter()
        .filter(|s| s.name == "job_seconds_bucket")
        .map(|s| s.label("le").unwrap())
        .collect();
    assert_eq!(les, ["1", "10", "+Inf"]);
    assert_eq!(value(h, "job_seconds_bucket", &[("le", "10")]), 2.0);
}

#[tokio::test]
async fn metrics_is_bearer_protected_by_default_and_public_when_configured() {
    let app = TestApp::spawn().await;
    let resp = scrape(&app, "/metrics", None).await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    let resp = scrape(&app, "/metrics", Some("not-a-token")).await;
    assert_eq!(resp.status(), 401);
    let user = app.login_as("USER").await;
    let resp = scrape(&app, "/metrics", Some(&user)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], CONTENT_TYPE);

    // The original design's endpoint: any authenticated caller.
    let path = "/api/v1/monitoring/metrics/prometheus";
    let resp = scrape(&app, path, None).await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], "UNAUTHENTICATED");
    let resp = scrape(&app, path, Some(&user)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], CONTENT_TYPE);
    exposition::check(&resp.text().await.unwrap()).unwrap();

    let public = TestApp::spawn_with(|c| c.metrics_auth = MetricsAuth::Public).await;
    let resp = scrape(&public, "/metrics", None).await;
    assert_eq!(resp.status(), 200);
    exposition::check(&resp.text().await.unwrap()).unwrap();
    // The REST endpoint stays authenticated.
    assert_eq!(scrape(&public, path, None).await.status(), 401);
}

#[tokio::test]
async fn the_output_is_bounded_and_says_when_it_is_cut() {
    let app = TestApp::spawn_with(|c| c.prometheus_max_bytes = 4000).await;
    for i in 0..40 {
        store_series(
            &app,
            &format!("filler_metric_number_{i:02}"),
            "gauge",
            json!({"label": "x".repeat(40)}),
            &[(ago(5), i as f64)],
        )
        .await;
    }
    let resp = scrape(&app, "/metrics", Some(&app.admin_token)).await;
    let text = resp.text().await.unwrap();
    exposition::check(&text).unwrap();
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("# truncated: output limit of 4000 bytes"),
        "{last}"
    );
    let body_len: usize = text.len() - last.len() - 1;
    assert!(body_len <= 4000, "{body_len}");

    let capped = TestApp::spawn_with(|c| c.prometheus_max_series = 3).await;
    for name in ["a_metric", "b_metric", "c_metric"] {
        for host in ["h1", "h2"] {
            store_series(
                &capped,
                name,
                "gauge",
                json!({"host": host}),
                &[(ago(5), 1.0)],
            )
            .await;
        }
    }
    let (text, families) = document(&capped).await;
    assert!(
        text.contains("# truncated: only the first 3 stored series"),
        "{text}"
    );
    // The family the cap cut through is left out whole.
    let a = family(&families, "a_metric");
    assert_eq!(a.samples.len(), 2);
    assert!(
        families
            .iter()
            .all(|f| f.name != "b_metric" && f.name != "c_metric")
    );
}

#[tokio::test]
async fn stored_names_that_collide_with_ours_are_left_out_visibly() {
    let app = TestApp::spawn().await;
    store_series(
        &app,
        "sightline_tasks",
        "gauge",
        json!({}),
        &[(ago(5), 99.0)],
    )
    .await;
    store_series(&app, "done", "counter", json!({}), &[(ago(5), 1.0)]).await;
    store_series(&app, "done_total", "gauge", json!({}), &[(ago(5), 2.0)]).await;
    let (text, families) = document(&app).await;
    assert!(text.contains("# rejected: 2 families"), "{text}");
    // Ours is intact (all zeros, no 99).
    let tasks = family(&families, "sightline_tasks");
    assert!(tasks.samples.iter().all(|s| s.value == 0.0));
    // `done` (a counter) is exposed as `done_total`, so the stored gauge of
    // that name, which comes after it, is the one left out.
    let done = family(&families, "done_total");
    assert_eq!(done.kind, exposition::FamilyType::Counter);
    assert_eq!(value(done, "done_total", &[]), 1.0);
}

#[tokio::test]
async fn a_histogram_sample_committed_after_a_higher_id_is_still_folded() {
    // Only PostgreSQL lets two transactions insert samples at once, so only
    // there can a lower id commit after a higher one.
    if !crate::common::backend_is_postgres() {
        return;
    }
    use sightline::stats::rollup;
    use sqlx::Connection;
    let app = TestApp::spawn().await;
    let bounds = app.state.config.histogram_buckets.clone();
    let id = store_series(
        &app,
        "late_seconds",
        "histogram",
        json!({}),
        &[(ago(9), 0.001)],
    )
    .await;
    rollup::fold(&app.state.db, &bounds).await.unwrap();
    let first = rollup::watermark(&app.state.db).await.unwrap();

    // A slow writer takes an id and does not commit yet ...
    let mut slow = sqlx::postgres::PgConnection::connect(&app.db_url)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut slow).await.unwrap();
    sqlx::query(
        "INSERT INTO metric_samples (series_id, timestamp, value) VALUES ($1, now(), 0.002)",
    )
    .bind(id)
    .execute(&mut slow)
    .await
    .unwrap();
    // ... while a later sample with a higher id commits.
    add_samples(&app, id, &[(ago(1), 0.003)]).await;
    let report = rollup::fold(&app.state.db, &bounds).await.unwrap();
    assert_eq!(report.folded, 0, "nothing is settled while the writer runs");
    assert_eq!(rollup::watermark(&app.state.db).await.unwrap(), first);
    let report = rollup::fold(&app.state.db, &bounds).await.unwrap();
    assert_eq!(report.folded, 0);

    sqlx::query("COMMIT").execute(&mut slow).await.unwrap();
    let report = rollup::fold(&app.state.db, &bounds).await.unwrap();
    assert_eq!(report.folded, 2, "both the late and the later sample");
    let counts = rollup::buckets_of(&app.state.db, &[id], &bounds)
        .await
        .unwrap();
    assert_eq!(counts[&id].1, 3);
    assert_eq!(counts[&id].0[0], 3, "all three are at most 0.005");
}
