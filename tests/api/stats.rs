//! `monitoringStats`, `GET /api/v1/monitoring/stats` and the exposition's
//! `monitoring_*` gauges: RBAC, the six figures against the stored rows
//! (after ingest, alerting, incidents and retention), and one source for
//! all three.

use std::time::Duration;

use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use sightline::tasks::worker::run_pending_tasks;
use sightline::util;

use crate::common::{TestApp, error_code, wait_until};

const STATS: &str = "{ monitoringStats { totalEvents totalMetrics activeAlerts openIncidents eventsLastHour metricsLastHour } }";

const FIELDS: [(&str, &str); 6] = [
    ("totalEvents", "total_events"),
    ("totalMetrics", "total_metrics"),
    ("activeAlerts", "active_alerts"),
    ("openIncidents", "open_incidents"),
    ("eventsLastHour", "events_last_hour"),
    ("metricsLastHour", "metrics_last_hour"),
];

async fn rest_stats(app: &TestApp, token: Option<&str>) -> (u16, Value) {
    let mut req = app.client.get(app.url("/api/v1/monitoring/stats"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// The six figures read three ways, checked to agree; returns the GraphQL ones.
async fn stats_everywhere(app: &TestApp, token: &str) -> Value {
    let gql = app.gql_ok(Some(token), STATS, json!({})).await["monitoringStats"].clone();
    let (status, rest) = rest_stats(app, Some(token)).await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["success"], true);
    let text = app
        .client
        .get(app.url("/api/v1/monitoring/metrics/prometheus"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (camel, snake) in FIELDS {
        assert_eq!(gql[camel], rest["data"][snake], "{camel} vs {snake}");
        let line = format!("monitoring_{snake} ");
        let exposed = text
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line} in the exposition"));
        assert_eq!(
            exposed.parse::<f64>().unwrap(),
            gql[camel].as_f64().unwrap(),
            "{snake} in the exposition"
        );
        assert!(
            text.contains(&format!("# TYPE monitoring_{snake} gauge\n")),
            "{snake} is a gauge"
        );
    }
    gql
}

#[tokio::test]
async fn statistics_need_a_moderator() {
    let app = TestApp::spawn().await;
    let user = app.login_as("USER").await;
    let moderator = app.login_as("MODERATOR").await;

    let denied = app.gql(Some(&user), STATS, json!({})).await;
    assert_eq!(error_code(&denied), "FORBIDDEN");
    let anonymous = app.gql(None, STATS, json!({})).await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");

    let (status, body) = rest_stats(&app, Some(&user)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    let (status, _) = rest_stats(&app, None).await;
    assert_eq!(status, 401);

    let stats = stats_everywhere(&app, &moderator).await;
    for (camel, _) in FIELDS {
        assert_eq!(stats[camel], 0, "{camel} on an empty server");
    }
    let (_, body) = rest_stats(&app, Some(&app.admin_token)).await;
    let keys: Vec<&String> = body["data"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys.len(),
        6,
        "exactly the original design's figures: {keys:?}"
    );
}

#[tokio::test]
async fn the_figures_follow_ingest_alerts_incidents_and_retention() {
    let app = TestApp::spawn_with(|c| {
        c.event_retention_days = 30;
        c.metric_retention_days = 30;
    })
    .await;
    let token = app.admin_token.clone();
    let now = util::now();
    let days_ago = |n: i64| (now - chrono::Duration::days(n)).to_rfc3339();

    // Events: 3 recent, 2 older than an hour but kept, 4 past retention.
    let mut events = Vec::new();
    for i in 0..3 {
        events.push(json!({"eventType": "LOG", "source": "api", "message": format!("now {i}")}));
    }
    for i in 0..2 {
        events.push(json!({"eventType": "LOG", "source": "api", "message": format!("day {i}"), "timestamp": days_ago(1)}));
    }
    for i in 0..4 {
        events.push(json!({"eventType": "LOG", "source": "api", "message": format!("old {i}"), "timestamp": days_ago(40 + i)}));
    }
    let created = app
        .gql_ok(
            Some(&token),
            "mutation($i: CreateEventsInput!) { createEvents(input: $i) { accepted rejected { index } } }",
            json!({"i": {"events": events}}),
        )
        .await;
    assert_eq!(created["createEvents"]["accepted"], 9, "{created}");

    // Metrics: 2 recent samples of a gauge that fires a rule, 3 past retention.
    let mut metrics = vec![
        json!({"name": "stats_temp", "metricType": "GAUGE", "value": 95.0}),
        json!({"name": "stats_jobs", "metricType": "COUNTER", "value": 1.0}),
    ];
    for i in 0..3 {
        metrics.push(json!({"name": "stats_jobs", "metricType": "COUNTER", "value": 1.0, "timestamp": days_ago(50 + i)}));
    }
    let submitted = app
        .gql_ok(
            Some(&token),
            "mutation($i: SubmitMetricsInput!) { submitMetrics(input: $i) { accepted rejected { index } } }",
            json!({"i": {"metrics": metrics}}),
        )
        .await;
    assert_eq!(submitted["submitMetrics"]["accepted"], 5, "{submitted}");

    // Incidents: two open (one then investigating), one resolved.
    let mut ids = Vec::new();
    for title in ["disk full", "slow api", "done already"] {
        let inc = app
            .gql_ok(
                Some(&token),
                "mutation($i: CreateIncidentInput!) { createIncident(input: $i) { id } }",
                json!({"i": {"title": title}}),
            )
            .await;
        ids.push(inc["createIncident"]["id"].as_str().unwrap().to_owned());
    }
    app.gql_ok(
        Some(&token),
        "mutation($i: ResolveIncidentInput!) { resolveIncident(input: $i) { id } }",
        json!({"i": {"id": ids[2]}}),
    )
    .await;

    // An alert that fires (evaluated by the alert worker's task).
    app.gql_ok(
        Some(&token),
        "mutation($i: CreateAlertRuleInput!) { createAlertRule(input: $i) { id } }",
        json!({"i": {"name": "hot", "query": "stats_temp > 90", "evaluationInterval": 1}}),
    )
    .await;
    wait_until(Duration::from_secs(20), "the alert fires", || async {
        let s = app.gql_ok(Some(&token), STATS, json!({})).await;
        if s["monitoringStats"]["activeAlerts"] == 1 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    })
    .await;

    let db = &app.state.db;
    let events_stored = sightline::events::entity::Entity::find()
        .count(db)
        .await
        .unwrap();
    let samples_stored = sightline::metrics::entity::sample::Entity::find()
        .count(db)
        .await
        .unwrap();
    let before = stats_everywhere(&app, &token).await;
    assert_eq!(before["totalEvents"], events_stored, "{before}");
    assert_eq!(before["totalMetrics"], samples_stored, "{before}");
    assert_eq!(before["totalMetrics"], 5);
    assert_eq!(before["openIncidents"], 2);
    assert_eq!(before["activeAlerts"], 1);
    // Received in the last hour: every row sent now, whatever its timestamp.
    assert!(before["eventsLastHour"].as_u64().unwrap() >= 9, "{before}");
    assert_eq!(before["metricsLastHour"], 5);

    // Retention deletes the old rows and the totals follow exactly.
    app.enqueue("monitoring_data_retention", json!({})).await;
    let out = run_pending_tasks(&app.state).await.unwrap();
    assert!(!out.is_empty());
    let events_left = sightline::events::entity::Entity::find()
        .count(db)
        .await
        .unwrap();
    let samples_left = sightline::metrics::entity::sample::Entity::find()
        .count(db)
        .await
        .unwrap();
    assert_eq!(events_left, events_stored - 4);
    assert_eq!(samples_left, 2);
    let after = stats_everywhere(&app, &token).await;
    assert_eq!(after["totalEvents"], events_left, "{after}");
    assert_eq!(after["totalMetrics"], 2, "{after}");
    assert_eq!(after["openIncidents"], 2);
    assert_eq!(
        after["metricsLastHour"], 5,
        "received in the last hour, deleted since or not"
    );
}
