//! Live incident streams: each subscriber receives only incidents it may
//! see, re-checked on every push.

use std::time::Duration;

use serde_json::json;

use super::{create, mutate_ok};
use crate::common::{TestApp, Ws, WsEvent};

const CREATED: &str = "subscription { incidentCreated { id title createdBy { username } } }";
const UPDATED: &str = "subscription($id: ID!) { incidentUpdated(id: $id) { incident { id title status assignedTo { username } } changes { field from to } actor { username } at } }";

/// Waits until the subscription is registered on the server: the hub counts
/// subscribers, so poll until it has `n`.
pub(super) async fn wait_for_subscribers(app: &TestApp, n: usize) {
    crate::common::wait_until(Duration::from_secs(10), "subscribers", || async {
        let have = app.state.hub.topics().incidents.subscriber_count();
        if have >= n {
            Ok(())
        } else {
            Err(format!("{have} subscribers"))
        }
    })
    .await;
}

/// Asserts nothing arrives within a short grace period (used only after a
/// later item has been received, so ordering makes it conclusive).
async fn assert_quiet(ws: &mut Ws) {
    match ws.recv_within(Duration::from_millis(200)).await {
        None => {}
        Some(WsEvent::Json(v)) if v["type"] == "ka" => {}
        other => panic!("unexpected message: {other:?}"),
    }
}

#[tokio::test]
async fn incident_created_reaches_only_subscribers_who_may_see_the_incident() {
    let app = TestApp::spawn().await;
    let alice = app.create_user("USER").await;
    let bob = app.create_user("USER").await;
    let moderator = app.create_user("MODERATOR").await;
    let mut alice_ws = app.subscribe(Some(&alice.token), CREATED, json!({})).await;
    let mut mod_ws = app
        .subscribe(Some(&moderator.token), CREATED, json!({}))
        .await;
    wait_for_subscribers(&app, 2).await;

    create(&app, &bob.token, "bob only", json!({})).await;
    create(
        &app,
        &bob.token,
        "for alice",
        json!({"assignedTo": alice.id}),
    )
    .await;
    create(&app, &alice.token, "alice's", json!({})).await;

    let m1 = mod_ws.next_payload().await;
    let m2 = mod_ws.next_payload().await;
    let m3 = mod_ws.next_payload().await;
    assert_eq!(
        [
            &m1["data"]["incidentCreated"]["title"],
            &m2["data"]["incidentCreated"]["title"],
            &m3["data"]["incidentCreated"]["title"]
        ],
        ["bob only", "for alice", "alice's"]
    );
    // Alice's first push is the incident assigned to her: bob's private one was skipped.
    let a1 = alice_ws.next_payload().await;
    assert_eq!(a1["data"]["incidentCreated"]["title"], "for alice");
    assert_eq!(
        a1["data"]["incidentCreated"]["createdBy"]["username"],
        bob.username.as_str()
    );
    let a2 = alice_ws.next_payload().await;
    assert_eq!(a2["data"]["incidentCreated"]["title"], "alice's");
    assert_quiet(&mut alice_ws).await;

    // Anonymous subscribers are refused.
    let mut anon = app.subscribe(None, CREATED, json!({})).await;
    let msg = anon.recv_json().await.unwrap();
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(msg["payload"][0]["extensions"]["code"], "UNAUTHENTICATED");
}

#[tokio::test]
async fn incident_updated_pushes_each_change_while_the_subscriber_may_see_the_incident() {
    let app = TestApp::spawn().await;
    let creator = app.create_user("USER").await;
    let assignee = app.create_user("USER").await;
    let stranger = app.create_user("USER").await;
    let moderator = app.create_user("MODERATOR").await;
    let inc = create(
        &app,
        &creator.token,
        "latency",
        json!({"assignedTo": assignee.id}),
    )
    .await;
    let id = inc["id"].as_str().unwrap().to_owned();

    // A stranger may not even know the incident exists.
    let mut s_ws = app
        .subscribe(Some(&stranger.token), UPDATED, json!({"id": id}))
        .await;
    let msg = s_ws.recv_json().await.unwrap();
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(msg["payload"][0]["extensions"]["code"], "NOT_FOUND");

    let mut a_ws = app
        .subscribe(Some(&assignee.token), UPDATED, json!({"id": id}))
        .await;
    let mut m_ws = app
        .subscribe(Some(&moderator.token), UPDATED, json!({"id": id}))
        .await;
    wait_for_subscribers(&app, 2).await;

    // 1. A change the assignee may see.
    mutate_ok(
        &app,
        &creator.token,
        "updateIncident",
        json!({"id": id, "title": "latency on checkout", "status": "INVESTIGATING"}),
    )
    .await;
    // 2. The creator takes it away from the assignee.
    mutate_ok(
        &app,
        &creator.token,
        "assignIncident",
        json!({"id": id, "assignedTo": null}),
    )
    .await;
    // 3. A change while the assignee may not see it.
    mutate_ok(
        &app,
        &creator.token,
        "updateIncident",
        json!({"id": id, "severity": "HIGH"}),
    )
    .await;
    // 4. Given back.
    mutate_ok(
        &app,
        &creator.token,
        "assignIncident",
        json!({"id": id, "assignedTo": assignee.id}),
    )
    .await;
    // Unrelated incidents never show up.
    create(&app, &creator.token, "other", json!({})).await;

    let first = a_ws.next_payload().await["data"]["incidentUpdated"].clone();
    assert_eq!(first["incident"]["title"], "latency on checkout");
    assert_eq!(first["actor"]["username"], creator.username.as_str());
    let fields: Vec<&str> = first["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["title", "status", "acknowledgedAt"]);
    assert_eq!(
        first["changes"][1],
        json!({"field": "status", "from": "OPEN", "to": "INVESTIGATING"})
    );
    let second = a_ws.next_payload().await["data"]["incidentUpdated"].clone();
    assert_eq!(
        second["changes"],
        json!([{"field": "assignedTo", "from": null, "to": assignee.id}]),
        "the unassignment and the severity change were not pushed to the former assignee"
    );
    assert_eq!(
        second["incident"]["assignedTo"]["username"],
        assignee.username.as_str()
    );
    assert_quiet(&mut a_ws).await;

    // The moderator saw all four.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let p = m_ws.next_payload().await;
        seen.push(p["data"]["incidentUpdated"]["changes"][0]["field"].clone());
    }
    assert_eq!(seen, ["title", "assignedTo", "severity", "assignedTo"]);
    assert_quiet(&mut m_ws).await;
}

#[tokio::test]
async fn notes_are_pushed_as_changes() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    let inc = create(&app, &user.token, "x", json!({})).await;
    let id = inc["id"].as_str().unwrap();
    let mut ws = app
        .subscribe(Some(&user.token), UPDATED, json!({"id": id}))
        .await;
    wait_for_subscribers(&app, 1).await;
    let note = app
        .gql_ok(
            Some(&user.token),
            "mutation($i: AddIncidentNoteInput!) { addIncidentNote(input: $i) { id } }",
            json!({"i": {"incidentId": id, "body": "on it"}}),
        )
        .await;
    let p = ws.next_payload().await["data"]["incidentUpdated"].clone();
    assert_eq!(p["changes"][0]["field"], "note");
    assert!(p["changes"][0]["from"].is_null());
    assert_eq!(
        p["changes"][0]["to"],
        json!({"id": note["addIncidentNote"]["id"], "body": "on it"})
    );
}
