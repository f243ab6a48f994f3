//! The REST incident endpoints keep the original design's shapes.

use serde_json::{Value, json};

use super::{event, minutes_ago};
use crate::common::TestApp;

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

#[tokio::test]
async fn incidents_are_created_listed_read_and_updated_over_rest() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    let other = app.create_user("USER").await;
    let (status, v) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/monitoring/incidents",
        &user.token,
        Some(json!({
            "title": "API Response Time Degradation",
            "description": "Average response time increased to 2+ seconds",
            "severity": "high",
            "assigned_to": other.id,
        })),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["success"], true);
    let inc = &v["data"];
    assert_eq!(inc["severity"], "high");
    assert_eq!(inc["status"], "open");
    assert_eq!(inc["assigned_to"], other.id.as_str());
    assert_eq!(inc["created_by"], user.id.as_str());
    for key in [
        "id",
        "title",
        "description",
        "started_at",
        "acknowledged_at",
        "resolved_at",
        "closed_at",
        "root_cause",
        "labels",
        "sources",
        "created_at",
        "updated_at",
    ] {
        assert!(inc.get(key).is_some(), "missing {key} in {inc}");
    }
    let id = inc["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/monitoring/incidents/{id}");

    let (status, v) = call(
        &app,
        reqwest::Method::PUT,
        &path,
        &user.token,
        Some(json!({"status": "investigating", "root_cause": "Database connection pool exhaustion", "severity": "critical"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["status"], "investigating");
    assert_eq!(v["data"]["severity"], "critical");
    assert_eq!(
        v["data"]["root_cause"],
        "Database connection pool exhaustion"
    );
    // null clears; absent keeps.
    let (_, v) = call(
        &app,
        reqwest::Method::PUT,
        &path,
        &user.token,
        Some(json!({"root_cause": null})),
    )
    .await;
    assert!(v["data"]["root_cause"].is_null());
    assert_eq!(v["data"]["severity"], "critical");

    // An illegal transition is a 400 naming both states.
    let (status, v) = call(
        &app,
        reqwest::Method::PUT,
        &path,
        &user.token,
        Some(json!({"status": "closed"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(v["success"], false);
    assert_eq!(v["error"]["code"], "BAD_USER_INPUT");
    assert_eq!(v["error"]["field"], "status");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("investigating") && msg.contains("closed"),
        "{msg}"
    );

    for (body, field) in [
        (json!({"severity": "urgent"}), "severity"),
        (json!({"status": "done"}), "status"),
        (json!({"title": null}), "title"),
        (json!({"assigned_to": uuid::Uuid::now_v7()}), "assignedTo"),
    ] {
        let (status, v) = call(&app, reqwest::Method::PUT, &path, &user.token, Some(body)).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["field"], field);
    }
    let (status, _) = call(
        &app,
        reqwest::Method::PUT,
        &path,
        &user.token,
        Some(json!({"unknown_field": 1})),
    )
    .await;
    assert_eq!(status, 400);

    let (status, v) = call(&app, reqwest::Method::GET, &path, &other.token, None).await;
    assert_eq!(status, 200, "the assignee sees it: {v}");
    let stranger = app.create_user("USER").await;
    let (status, v) = call(&app, reqwest::Method::GET, &path, &stranger.token, None).await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["code"], "NOT_FOUND");
    let (status, _) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/monitoring/incidents/not-a-uuid",
        &user.token,
        None,
    )
    .await;
    assert_eq!(status, 400);

    let (status, v) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/monitoring/incidents?status=investigating&limit=10",
        &user.token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let (_, v) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/monitoring/incidents",
        &stranger.token,
        None,
    )
    .await;
    assert_eq!(v["data"], json!([]));
    for bad in [
        "limit=-1",
        "limit=5000",
        "offset=x",
        "status=nope",
        "created_by=zz",
    ] {
        let (status, v) = call(
            &app,
            reqwest::Method::GET,
            &format!("/api/v1/monitoring/incidents?{bad}"),
            &user.token,
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "BAD_USER_INPUT");
    }
    let r = app
        .client
        .get(app.url("/api/v1/monitoring/incidents"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn the_rest_timeline_has_the_original_shape_and_validates_its_parameters() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    event(&app, "api", Some("info"), "one", minutes_ago(50), json!({})).await;
    event(&app, "api", Some("info"), "two", minutes_ago(40), json!({})).await;
    event(
        &app,
        "api",
        Some("info"),
        "old",
        minutes_ago(120),
        json!({}),
    )
    .await;
    let (_, v) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/monitoring/incidents",
        &token,
        Some(json!({"title": "api down", "sources": ["api"], "started_at": minutes_ago(30)})),
    )
    .await;
    let id = v["data"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/monitoring/incidents/{id}/timeline");
    let (status, v) = call(&app, reqwest::Method::GET, &path, &token, None).await;
    assert_eq!(status, 200, "{v}");
    let t = &v["data"];
    assert_eq!(t["incident_id"], id.as_str());
    assert!(t["start_time"].is_string() && t["end_time"].is_string());
    assert_eq!(t["total_count"], 3);
    let entries = t["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["kind"], "event");
    assert_eq!(entries[0]["source"], "api");
    assert_eq!(entries[0]["message"], "one");
    assert!(entries[0]["timestamp"].is_string());
    assert!(entries[0]["event_id"].is_string());
    assert_eq!(entries[2]["kind"], "change");

    let (_, v) = call(
        &app,
        reqwest::Method::GET,
        &format!("{path}?limit=1&offset=1"),
        &token,
        None,
    )
    .await;
    assert_eq!(v["data"]["entries"][0]["message"], "two");
    assert_eq!(v["data"]["entries"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"]["total_count"], 3);
    let (_, v) = call(
        &app,
        reqwest::Method::GET,
        &format!("{path}?lookback_hours=2"),
        &token,
        None,
    )
    .await;
    assert_eq!(v["data"]["total_count"], 4);
    for bad in [
        "lookback_hours=169",
        "lookback_hours=-1",
        "lookback_hours=NaN",
        "lookback_hours=abc",
        "limit=1001",
        "offset=-5",
    ] {
        let (status, v) = call(
            &app,
            reqwest::Method::GET,
            &format!("{path}?{bad}"),
            &token,
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "BAD_USER_INPUT", "{bad}");
    }
    let stranger = app.login_as("USER").await;
    let (status, _) = call(&app, reqwest::Method::GET, &path, &stranger, None).await;
    assert_eq!(status, 404);
}
