//! Identical subscriptions share one execution (`sightline::fanout`): every
//! member still receives each of its results once, in order, from its own
//! start; subscriptions that differ in their document, variables or caller
//! never share.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestApp, Ws, WsEvent, wait_until};

const SUB: &str =
    "subscription($f: EventFilter) { eventCreated(filter: $f) { id source message } }";

async fn create(app: &TestApp, token: &str, source: &str, message: &str) -> String {
    app.gql_ok(
        Some(token),
        "mutation($i: CreateEventInput!) { createEvent(input: $i) { id } }",
        json!({"i": {"eventType": "LOG", "source": source, "message": message}}),
    )
    .await["createEvent"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The message of the next result, failing on anything else.
async fn next_message(ws: &mut Ws) -> String {
    let p = ws.next_payload().await;
    assert!(p.get("errors").is_none(), "{p}");
    p["data"]["eventCreated"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {p}"))
        .to_owned()
}

/// The messages received before the one saying `end`.
async fn messages_until_end(ws: &mut Ws) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let m = next_message(ws).await;
        if m == "end" {
            return got;
        }
        got.push(m);
    }
}

/// Writes probes (`source`, messages `probe-<k>`) until every connection
/// received one: from then on each is known to be live. Returns the
/// connections with the probes they received drained, so the next message
/// each reads is the first one written after this returns.
async fn until_live(app: &TestApp, token: &str, source: &str, conns: &mut [Ws]) {
    let mut live = vec![false; conns.len()];
    let mut k = 0;
    while live.iter().any(|l| !l) {
        assert!(k < 200, "subscribers never became live");
        create(app, token, source, &format!("probe-{k}")).await;
        for (i, ws) in conns.iter_mut().enumerate() {
            if !live[i]
                && let Some(WsEvent::Json(v)) = ws.recv_within(Duration::from_millis(100)).await
                && v["type"] != "ka"
            {
                assert!(v["type"] == "next" || v["type"] == "data", "{v}");
                live[i] = true;
            }
        }
        k += 1;
    }
    // Drain the probes: a marker written now is the last thing before the
    // test's own events.
    create(app, token, source, "live").await;
    for ws in conns.iter_mut() {
        while next_message(ws).await != "live" {}
    }
}

async fn groups(app: &TestApp, n: usize) {
    wait_until(Duration::from_secs(10), "shared executions", || async {
        let got = app.state.shared_subscriptions.groups_running();
        if got == n {
            Ok(())
        } else {
            Err(got.to_string())
        }
    })
    .await;
}

/// A `graphql-ws` (legacy protocol) connection subscribed to `query`.
async fn legacy_subscribe(app: &TestApp, token: &str, query: &str, variables: Value) -> Ws {
    let mut ws = app.ws_raw("graphql-ws").await;
    ws.send(
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}}),
    )
    .await;
    let ack = ws.recv_json().await.expect("connection_ack");
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws.send(json!({"id": "legacy", "type": "start", "payload": {"query": query, "variables": variables}}))
        .await;
    ws
}

#[tokio::test]
async fn identical_subscriptions_share_one_execution_and_each_receive_every_event_once_in_order() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    // Another session of the same user shares too: the credential is not
    // part of what is shared.
    let second_session = app.login(&user.username, &user.password).await;
    let f = json!({"f": {"sources": ["same"]}});
    let mut conns = Vec::new();
    for token in [&user.token, &user.token, &second_session, &user.token] {
        conns.push(app.subscribe(Some(token), SUB, f.clone()).await);
    }
    conns.push(legacy_subscribe(&app, &user.token, SUB, f.clone()).await);
    until_live(&app, &user.token, "same", &mut conns).await;
    groups(&app, 1).await;
    assert_eq!(app.state.hub.topics().events.subscriber_count(), 1);

    let mut expected = Vec::new();
    for i in 0..15 {
        let message = format!("e{i}");
        create(&app, &user.token, "same", &message).await;
        create(&app, &user.token, "other", "not this one").await;
        expected.push(message);
    }
    create(&app, &user.token, "same", "end").await;
    expected.push("end".to_owned());
    for ws in &mut conns {
        let mut got = Vec::new();
        while got.len() < expected.len() {
            got.push(next_message(ws).await);
        }
        assert_eq!(got, expected);
    }
    // The ids are each connection's own.
    let mut last = conns.pop().unwrap();
    create(&app, &user.token, "same", "id check").await;
    let v = last.recv_json().await.unwrap();
    assert_eq!(
        (v["type"].as_str(), v["id"].as_str()),
        (Some("data"), Some("legacy")),
        "{v}"
    );
    let v = conns[0].recv_json().await.unwrap();
    assert_eq!(
        (v["type"].as_str(), v["id"].as_str()),
        (Some("next"), Some("1")),
        "{v}"
    );
    // Everyone leaving ends the shared execution and its topic subscription.
    drop(conns);
    drop(last);
    groups(&app, 0).await;
    wait_until(Duration::from_secs(10), "no event subscriber", || async {
        let n = app.state.hub.topics().events.subscriber_count();
        if n == 0 { Ok(()) } else { Err(n.to_string()) }
    })
    .await;
}

#[tokio::test]
async fn different_filters_and_different_callers_do_not_share() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    let other = app.create_user("USER").await;
    // The same filter for this user, another user and an admin; another
    // filter for this user.
    let mut a = vec![
        app.subscribe(Some(&user.token), SUB, json!({"f": {"sources": ["a"]}}))
            .await,
        app.subscribe(Some(&other.token), SUB, json!({"f": {"sources": ["a"]}}))
            .await,
        app.subscribe(
            Some(&app.admin_token),
            SUB,
            json!({"f": {"sources": ["a"]}}),
        )
        .await,
    ];
    let mut b = app
        .subscribe(Some(&user.token), SUB, json!({"f": {"sources": ["b"]}}))
        .await;
    until_live(&app, &user.token, "a", &mut a).await;
    until_live(&app, &user.token, "b", std::slice::from_mut(&mut b)).await;
    groups(&app, 4).await;
    create(&app, &user.token, "b", "for b").await;
    create(&app, &user.token, "a", "for a").await;
    for ws in &mut a {
        assert_eq!(next_message(ws).await, "for a");
    }
    assert_eq!(next_message(&mut b).await, "for b");
}

#[tokio::test]
async fn callers_who_may_see_different_results_never_share_them() {
    let app = TestApp::spawn().await;
    let alice = app.create_user("USER").await;
    let bob = app.create_user("USER").await;
    let moderator = app.create_user("MODERATOR").await;
    const CREATED: &str = "subscription { incidentCreated { title } }";
    let mut alice_ws = app.subscribe(Some(&alice.token), CREATED, json!({})).await;
    let mut mod_ws = app
        .subscribe(Some(&moderator.token), CREATED, json!({}))
        .await;
    let mut mod_ws2 = app
        .subscribe(Some(&moderator.token), CREATED, json!({}))
        .await;
    // Live once each has seen an incident it may see.
    let mut k = 0;
    let mut live = [false; 3];
    while live.iter().any(|l| !l) {
        assert!(k < 200, "subscribers never became live");
        crate::incidents::create(&app, &alice.token, &format!("probe-{k}"), json!({})).await;
        for (i, ws) in [&mut alice_ws, &mut mod_ws, &mut mod_ws2]
            .into_iter()
            .enumerate()
        {
            if !live[i] && ws.recv_within(Duration::from_millis(100)).await.is_some() {
                live[i] = true;
            }
        }
        k += 1;
    }
    groups(&app, 2).await;
    crate::incidents::create(&app, &bob.token, "bob only", json!({})).await;
    crate::incidents::create(&app, &alice.token, "alice's", json!({})).await;
    for ws in [&mut mod_ws, &mut mod_ws2] {
        let mut titles = Vec::new();
        while titles.last().map(String::as_str) != Some("alice's") {
            let p = ws.next_payload().await;
            titles.push(
                p["data"]["incidentCreated"]["title"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        assert!(titles.iter().any(|t| t == "bob only"), "{titles:?}");
    }
    loop {
        let p = alice_ws.next_payload().await;
        let title = p["data"]["incidentCreated"]["title"].as_str().unwrap();
        assert_ne!(title, "bob only", "alice received bob's private incident");
        if title == "alice's" {
            break;
        }
    }
}

#[tokio::test]
async fn a_member_leaving_does_not_disturb_the_others() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let f = json!({"f": {"sources": ["leave"]}});
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(app.subscribe(Some(&token), SUB, f.clone()).await);
    }
    until_live(&app, &token, "leave", &mut conns).await;
    groups(&app, 1).await;
    // One completes its operation, one closes its socket.
    conns[0].send(json!({"id": "1", "type": "complete"})).await;
    let closed = conns.remove(1);
    drop(closed);
    create(&app, &token, "leave", "after").await;
    let survivor = &mut conns[1];
    assert_eq!(next_message(survivor).await, "after");
    // The one that completed gets nothing more; it may subscribe again.
    match conns[0].recv_within(Duration::from_millis(200)).await {
        None => {}
        other => panic!("a completed operation received {other:?}"),
    }
    conns[0]
        .send(json!({"id": "1", "type": "subscribe", "payload": {"query": SUB, "variables": f}}))
        .await;
    until_live(&app, &token, "leave", &mut conns).await;
    groups(&app, 1).await;
}

#[tokio::test]
async fn a_member_joining_while_events_flow_misses_nothing_after_its_start() {
    let app = Arc::new(TestApp::spawn().await);
    let token = app.login_as("USER").await;
    let f = json!({"f": {"sources": ["flow"]}});
    let mut first = app.subscribe(Some(&token), SUB, f.clone()).await;
    until_live(&app, &token, "flow", std::slice::from_mut(&mut first)).await;

    // Events `0..TOTAL` written one after another; `done` counts those whose
    // write returned (committed).
    const TOTAL: usize = 120;
    let done = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (app, token, done) = (app.clone(), token.clone(), done.clone());
        tokio::spawn(async move {
            for k in 0..TOTAL {
                create(&app, &token, "flow", &format!("{k}")).await;
                done.store(k + 1, Ordering::SeqCst);
            }
        })
    };
    // Join mid-flow, several times over.
    let mut joined = Vec::new();
    for _ in 0..4 {
        wait_until(Duration::from_secs(20), "more events", || async {
            let n = done.load(Ordering::SeqCst);
            if n >= (joined.len() + 1) * TOTAL / 6 {
                Ok(())
            } else {
                Err(n.to_string())
            }
        })
        .await;
        let committed_before = done.load(Ordering::SeqCst);
        let ws = app.subscribe(Some(&token), SUB, f.clone()).await;
        joined.push((committed_before, ws));
    }
    writer.await.unwrap();
    create(&app, &token, "flow", "end").await;

    let all: Vec<String> = (0..TOTAL).map(|k| k.to_string()).collect();
    assert_eq!(
        messages_until_end(&mut first).await,
        all,
        "the first member"
    );
    for (committed_before, mut ws) in joined {
        let got = messages_until_end(&mut ws).await;
        // Nothing committed before it subscribed, then everything from its
        // first event on, in order.
        let start: usize = got.first().map_or(TOTAL, |m| m.parse().unwrap());
        assert!(
            start >= committed_before,
            "received {start}, committed before joining: {committed_before}"
        );
        assert_eq!(got, all[start..].to_vec());
    }
    groups(&app, 1).await;
}
