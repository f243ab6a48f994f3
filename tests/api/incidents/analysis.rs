//! Suggested root causes: the source whose errors jumped ranks first, with
//! its evidence; metrics that moved are found; results are deterministic.

use chrono::Duration;
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use serde_json::{Value, json};
use sightline::metrics::entity::{family, sample, series};

use super::{create, event, minutes_ago, mutate_ok};
use crate::common::{TestApp, error_code};

const ANALYZE: &str = "mutation($i: AnalyzeIncidentInput!) { analyzeIncident(input: $i) {
  computedAt windowStart windowEnd baselineStart
  suspects { rank source windowErrors baselineErrors windowRatePerMinute baselineRatePerMinute risePerMinute score firstError { eventId at level message } }
  alerts { ruleId at }
  metrics { rank name labels windowMean baselineMean baselineStddev windowSamples baselineSamples zScore }
} }";

async fn series_with(app: &TestApp, name: &str, host: &str, samples: &[(i64, f64)]) {
    let now = sightline::util::now();
    let db = &app.state.db;
    let fam = match <family::Entity as sea_orm::EntityTrait>::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.name == name)
    {
        Some(f) => f,
        None => family::ActiveModel {
            name: Set(name.to_owned()),
            metric_type: Set("gauge".to_owned()),
            series_count: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap(),
    };
    let s = series::ActiveModel {
        family_id: Set(fam.id),
        labels: Set(json!({"host": host})),
        fingerprint: Set(sightline::util::sha256_hex(host)),
        created_at: Set(now),
        last_sample_at: Set(None),
        last_value: Set(None),
        total: Set(0.0),
        sample_count: Set(0),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    for (minutes, value) in samples {
        sample::ActiveModel {
            series_id: Set(s.id),
            timestamp: Set(minutes_ago(*minutes)),
            value: Set(*value),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
    }
}

/// An incident that started 3 h ago: window [−4 h, −2 h], baseline [−6 h, −4 h].
async fn scenario(app: &TestApp, token: &str) -> String {
    // `steady` errs at the same pace throughout.
    for i in 0..10 {
        event(
            app,
            "steady",
            Some("error"),
            "flaky",
            minutes_ago(350 - i * 10),
            json!({}),
        )
        .await;
        event(
            app,
            "steady",
            Some("error"),
            "flaky",
            minutes_ago(230 - i * 10),
            json!({}),
        )
        .await;
    }
    event(
        app,
        "steady",
        Some("error"),
        "flaky",
        minutes_ago(125),
        json!({}),
    )
    .await;
    // `db` was nearly silent, then started failing.
    event(
        app,
        "db",
        Some("error"),
        "old hiccup",
        minutes_ago(300),
        json!({}),
    )
    .await;
    for i in 0..25 {
        event(
            app,
            "db",
            Some(if i == 0 { "fatal" } else { "error" }),
            &format!("pool exhausted #{i}"),
            minutes_ago(200 - i * 2),
            json!({}),
        )
        .await;
    }
    // `web` picked up a few errors downstream; warnings do not count.
    for i in 0..3 {
        event(
            app,
            "web",
            Some("error"),
            "502",
            minutes_ago(150 - i),
            json!({}),
        )
        .await;
    }
    for i in 0..30 {
        event(
            app,
            "web",
            Some("warn"),
            "slow",
            minutes_ago(160 - i),
            json!({}),
        )
        .await;
    }
    // Outside both periods: ignored.
    for i in 0..50 {
        event(
            app,
            "db",
            Some("error"),
            "ancient",
            minutes_ago(400 + i),
            json!({}),
        )
        .await;
    }
    // Latency of db-1 jumped; db-2 stayed put.
    series_with(
        app,
        "query_latency_ms",
        "db-1",
        &[
            (300, 10.0),
            (290, 12.0),
            (280, 11.0),
            (270, 9.0),
            (200, 50.0),
            (190, 58.0),
        ],
    )
    .await;
    series_with(
        app,
        "query_latency_ms",
        "db-2",
        &[
            (300, 10.0),
            (290, 12.0),
            (280, 11.0),
            (270, 9.0),
            (200, 11.0),
            (190, 10.0),
        ],
    )
    .await;
    let inc = create(
        app,
        token,
        "orders failing",
        json!({"startedAt": minutes_ago(180).to_rfc3339()}),
    )
    .await;
    inc["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_source_whose_errors_jumped_is_the_top_suspect_with_its_evidence() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let id = scenario(&app, &token).await;
    let v = app
        .gql_ok(Some(&token), ANALYZE, json!({"i": {"id": id}}))
        .await;
    let a = &v["analyzeIncident"];
    let suspects = a["suspects"].as_array().unwrap();
    let names: Vec<&str> = suspects
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db", "web", "steady"], "{a:#}");
    let db = &suspects[0];
    assert_eq!(db["rank"], 1);
    assert_eq!(db["windowErrors"], 25);
    assert_eq!(db["baselineErrors"], 1);
    let rate = db["windowRatePerMinute"].as_f64().unwrap();
    assert!((rate - 25.0 / 120.0).abs() < 1e-5, "{rate}");
    let rise = db["risePerMinute"].as_f64().unwrap();
    assert!((rise - 24.0 / 120.0).abs() < 1e-5, "{rise}");
    assert_eq!(db["firstError"]["level"], "fatal");
    assert_eq!(db["firstError"]["message"], "pool exhausted #0");
    assert_eq!(suspects[1]["windowErrors"], 3);
    assert_eq!(suspects[1]["baselineErrors"], 0);
    assert_eq!(suspects[2]["windowErrors"], 11);
    assert_eq!(suspects[2]["baselineErrors"], 10);
    assert!(a["alerts"].as_array().unwrap().is_empty());

    let metrics = a["metrics"].as_array().unwrap();
    assert_eq!(metrics[0]["name"], "query_latency_ms");
    assert_eq!(metrics[0]["labels"], json!({"host": "db-1"}));
    assert_eq!(metrics[0]["windowMean"], 54.0);
    assert_eq!(metrics[0]["baselineMean"], 10.5);
    assert_eq!(metrics[0]["windowSamples"], 2);
    assert_eq!(metrics[0]["baselineSamples"], 4);
    assert!(metrics[0]["zScore"].as_f64().unwrap() > 10.0);
    if let Some(second) = metrics.get(1) {
        assert!(second["zScore"].as_f64().unwrap().abs() < metrics[0]["zScore"].as_f64().unwrap());
    }

    // The window is [startedAt − 1h, startedAt + 1h]; the baseline as long, before it.
    let ws = chrono::DateTime::parse_from_rfc3339(a["windowStart"].as_str().unwrap()).unwrap();
    let we = chrono::DateTime::parse_from_rfc3339(a["windowEnd"].as_str().unwrap()).unwrap();
    let bs = chrono::DateTime::parse_from_rfc3339(a["baselineStart"].as_str().unwrap()).unwrap();
    assert_eq!(we - ws, Duration::hours(2));
    assert_eq!(ws - bs, Duration::hours(2));

    // Stored and readable through the incident, and the same when re-run.
    let stored = app
        .gql_ok(
            Some(&token),
            "query($id: ID!) { incident(id: $id) { analysis { suspects { source score firstError { eventId } } metrics { name zScore } } } }",
            json!({"id": id}),
        )
        .await;
    let again = app
        .gql_ok(Some(&token), ANALYZE, json!({"i": {"id": id}}))
        .await;
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("computedAt");
        v
    };
    assert_eq!(strip(&again["analyzeIncident"]), strip(a), "deterministic");
    assert_eq!(
        stored["incident"]["analysis"]["suspects"][0]["firstError"]["eventId"],
        db["firstError"]["eventId"]
    );
}

#[tokio::test]
async fn the_analysis_service_is_callable_directly_and_validates_its_lookback() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let inc = create(&app, &token, "quiet", json!({})).await;
    let id: uuid::Uuid = inc["id"].as_str().unwrap().parse().unwrap();
    let a = sightline::incidents::analysis::analyze(&app.state, id)
        .await
        .unwrap_or_else(|e| panic!("{}", e.describe()));
    assert!(a.findings.suspects.is_empty());
    assert!(a.findings.metrics.is_empty());
    let missing = sightline::incidents::analysis::analyze(&app.state, uuid::Uuid::now_v7()).await;
    assert_eq!(missing.unwrap_err().code, sightline::ErrorCode::NotFound);
    for bad in ["8d", "x"] {
        let v = app
            .gql(
                Some(&token),
                ANALYZE,
                json!({"i": {"id": id.to_string(), "lookback": bad}}),
            )
            .await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT");
    }
    // Resolving caps the window.
    mutate_ok(
        &app,
        &token,
        "resolveIncident",
        json!({"id": id.to_string()}),
    )
    .await;
    let a = app
        .gql_ok(
            Some(&token),
            ANALYZE,
            json!({"i": {"id": id.to_string(), "lookback": "30m"}}),
        )
        .await;
    let ws =
        chrono::DateTime::parse_from_rfc3339(a["analyzeIncident"]["windowStart"].as_str().unwrap())
            .unwrap();
    let we =
        chrono::DateTime::parse_from_rfc3339(a["analyzeIncident"]["windowEnd"].as_str().unwrap())
            .unwrap();
    assert!(we - ws <= Duration::minutes(31));
    assert!(we - ws >= Duration::minutes(30));
}
