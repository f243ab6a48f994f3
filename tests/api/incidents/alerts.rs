//! Incidents opened by the system for firing alerts (`open_for_alert`).

use std::collections::BTreeMap;

use serde_json::json;
use sightline::incidents::{FiringAlert, Severity, open_for_alert};
use uuid::Uuid;

use super::{audit, fetch, minutes_ago, mutate_ok};
use crate::common::TestApp;

fn firing(instance: Uuid) -> FiringAlert {
    let mut labels = BTreeMap::new();
    labels.insert("host".to_owned(), "db-1".to_owned());
    labels.insert("service".to_owned(), "postgres".to_owned());
    FiringAlert {
        instance_id: instance,
        rule_id: Uuid::now_v7(),
        rule_name: "HighCPU".to_owned(),
        labels,
        severity: Severity::Critical,
        value: Some(97.5),
        fired_at: minutes_ago(3),
        summary: Some("CPU above 90% for 5 minutes".to_owned()),
    }
}

#[tokio::test]
async fn a_firing_alert_opens_one_incident_until_that_incident_is_resolved() {
    let app = TestApp::spawn().await;
    let moderator = app.create_user("MODERATOR").await;
    let user = app.create_user("USER").await;
    let mut ws = app
        .subscribe(
            Some(&moderator.token),
            "subscription { incidentCreated { id title createdBy { id } } }",
            json!({}),
        )
        .await;
    crate::common::wait_until(std::time::Duration::from_secs(10), "subscriber", || async {
        if app.state.hub.topics().incidents.subscriber_count() > 0 {
            Ok(())
        } else {
            Err("none".to_owned())
        }
    })
    .await;
    let alert = firing(Uuid::now_v7());
    let inc = open_for_alert(&app.state, &alert)
        .await
        .unwrap_or_else(|e| panic!("{}", e.describe()))
        .expect("a new incident");
    assert_eq!(inc.title, "HighCPU {host=db-1, service=postgres}");
    assert_eq!(inc.created_by, None);
    assert_eq!(inc.started_at, alert.fired_at);
    assert_eq!(inc.severity, "critical");
    assert_eq!(inc.status, "open");

    let pushed = ws.next_payload().await;
    assert_eq!(
        pushed["data"]["incidentCreated"]["id"],
        inc.id.to_string().as_str()
    );
    assert!(pushed["data"]["incidentCreated"]["createdBy"].is_null());

    let id = inc.id.to_string();
    let v = fetch(&app, &moderator.token, &id, "alerts { id }").await;
    let i = &v["data"]["incident"];
    assert_eq!(i["labels"], json!({"host": "db-1", "service": "postgres"}));
    assert_eq!(i["sources"], json!(["postgres"]));
    assert_eq!(i["severity"], "CRITICAL");
    assert!(i["description"].as_str().unwrap().contains("97.5"));
    // The instance here is made up, not a stored alert: `alerts` lists
    // stored alerts only (evaluated.rs links real ones).
    assert_eq!(i["alerts"], json!([]));
    let trail = audit(&app, &id).await;
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].0, "created");
    assert!(trail[0].3.is_null(), "created by the system");
    assert_eq!(trail[0].2["alert"]["ruleName"], "HighCPU");

    // Users do not see system incidents that are not assigned to them.
    let v = fetch(&app, &user.token, &id, "").await;
    assert_eq!(crate::common::error_code(&v), "NOT_FOUND");

    // Still open, or investigating: no second incident.
    assert!(open_for_alert(&app.state, &alert).await.unwrap().is_none());
    mutate_ok(
        &app,
        &moderator.token,
        "updateIncident",
        json!({"id": id, "status": "INVESTIGATING"}),
    )
    .await;
    assert!(open_for_alert(&app.state, &alert).await.unwrap().is_none());
    // Another instance gets its own.
    assert!(
        open_for_alert(&app.state, &firing(Uuid::now_v7()))
            .await
            .unwrap()
            .is_some()
    );
    // Once resolved, the next firing opens a new incident.
    mutate_ok(&app, &moderator.token, "resolveIncident", json!({"id": id})).await;
    let again = open_for_alert(&app.state, &alert)
        .await
        .unwrap()
        .expect("a new incident after resolution");
    assert_ne!(again.id, inc.id);
    assert_eq!(
        sightline::incidents::open_count(&app.state.db)
            .await
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn concurrent_firings_of_one_instance_open_exactly_one_incident() {
    let app = TestApp::spawn().await;
    let alert = firing(Uuid::now_v7());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let state = app.state.clone();
        let alert = alert.clone();
        tasks.push(tokio::spawn(
            async move { open_for_alert(&state, &alert).await },
        ));
    }
    let mut opened = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Some(_)) => opened += 1,
            Ok(None) => {}
            Err(e) => panic!("{}", e.describe()),
        }
    }
    assert_eq!(opened, 1);
    assert_eq!(
        sightline::incidents::open_count(&app.state.db)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn concurrent_updates_of_one_incident_are_all_applied_and_audited() {
    let app = TestApp::spawn().await;
    let token = app.login_as("MODERATOR").await;
    let inc = super::create(&app, &token, "t0", json!({})).await;
    let id = inc["id"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let q = "mutation($i: UpdateIncidentInput!) { updateIncident(input: $i) { id } }";
        let client = app.client.clone();
        let url = app.url("/graphql");
        let token = token.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let body =
                json!({"query": q, "variables": {"i": {"id": id, "title": format!("t{}", i + 1)}}});
            let r = client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            r.json::<serde_json::Value>().await.unwrap()
        }));
    }
    for t in tasks {
        let v = t.await.unwrap();
        assert!(v.get("errors").is_none(), "{v}");
    }
    let trail = audit(&app, &id).await;
    let titles: Vec<_> = trail.iter().filter(|a| a.0 == "title").collect();
    assert_eq!(titles.len(), 8);
    // Each change starts from the value the previous one left.
    for pair in titles.windows(2) {
        assert_eq!(pair[0].2, pair[1].1);
    }
}
