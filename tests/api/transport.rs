//! GraphQL over HTTP and WebSocket: media types, status codes, limits, the
//! graphql-transport-ws and graphql-ws protocols, health, shutdown, schema.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestApp, WsEvent, error_code};

async fn post_raw(
    app: &TestApp,
    accept: Option<&str>,
    content_type: &str,
    body: String,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", content_type)
        .body(body);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    req.send().await.unwrap()
}

fn content_type(r: &reqwest::Response) -> String {
    r.headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["database"], "ok");
}

#[tokio::test]
async fn responses_use_the_media_type_the_client_accepts() {
    let app = TestApp::spawn().await;
    let body = json!({"query": "{ __typename }"}).to_string();
    let r = post_raw(
        &app,
        Some("application/json"),
        "application/json",
        body.clone(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(content_type(&r), "application/json");
    let r = post_raw(
        &app,
        Some("application/graphql-response+json"),
        "application/json",
        body.clone(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(content_type(&r).starts_with("application/graphql-response+json"));
    let r = post_raw(&app, None, "application/json", body.clone()).await;
    assert_eq!(content_type(&r), "application/json");
    let r = post_raw(&app, Some("text/html"), "application/json", body).await;
    assert_eq!(r.status(), 406);
}

#[tokio::test]
async fn request_errors_are_400_with_graphql_response_json_and_200_with_json() {
    let app = TestApp::spawn().await;
    for (accept, status) in [
        ("application/graphql-response+json", 400),
        ("application/json", 200),
    ] {
        for body in [
            json!({"query": "{ me { "}),
            json!({"query": "{ noSuchField }"}),
        ] {
            let r = post_raw(&app, Some(accept), "application/json", body.to_string()).await;
            assert_eq!(r.status(), status, "{accept} {body}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(error_code(&v), "BAD_USER_INPUT");
        }
    }
    // Malformed requests are 400 whatever the media type.
    for body in [
        "{\"query\": ",
        "{}",
        "{\"query\": 1}",
        "{\"query\": \"{a}\", \"variables\": []}",
        "[]",
    ] {
        let r = post_raw(
            &app,
            Some("application/json"),
            "application/json",
            body.to_owned(),
        )
        .await;
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{body}");
    }
    let r = post_raw(&app, None, "text/plain", "{}".into()).await;
    assert_eq!(r.status(), 415);
}

#[tokio::test]
async fn get_runs_queries_and_refuses_mutations() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", "{ me { username } }")])
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["me"]["username"], "admin");
    let r = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", "mutation { logout }")])
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers().get("allow").unwrap(), "POST");
    // The session survived: the mutation did not run.
    app.gql_ok(Some(&app.admin_token), "{ me { id } }", json!({}))
        .await;
}

#[tokio::test]
async fn batches_run_each_operation_and_are_capped() {
    let app = TestApp::spawn_with(|c| c.graphql_max_batch = 3).await;
    let body = json!([{"query": "{ __typename }"}, {"query": "{ me { id } }"}]).to_string();
    let r = post_raw(&app, None, "application/json", body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v[0]["data"]["__typename"], "Query");
    assert_eq!(v[1]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let body = json!(vec![json!({"query": "{ __typename }"}); 4]).to_string();
    let r = post_raw(&app, None, "application/json", body).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let app = TestApp::spawn_with(|c| c.body_limit = 1024).await;
    let body = json!({"query": format!("{{ __typename }} # {}", "x".repeat(4096))}).to_string();
    let r = post_raw(&app, None, "application/json", body).await;
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    let r = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(format!("{{\"username\": \"{}\"}}", "x".repeat(4096)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // The server keeps serving.
    app.gql_ok(Some(&app.admin_token), "{ me { id } }", json!({}))
        .await;
}

#[tokio::test]
async fn depth_complexity_alias_and_root_field_limits_are_clear_errors() {
    let app = TestApp::spawn().await;
    let deep = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } } } } } }";
    let aliases: String = (0..40).map(|i| format!("a{i}: __typename ")).collect();
    let roots: String = (0..25).map(|i| format!("r{i}: __typename ")).collect();
    let complex = "{ users(first: 1000) { nodes { id username role createdAt } } }";
    let app2 = TestApp::spawn_with(|c| c.graphql_max_complexity = 50).await;
    for (a, q) in [
        (&app, deep.to_owned()),
        (&app, format!("{{ {aliases} }}")),
        (&app, format!("{{ {roots} }}")),
        (&app2, complex.to_owned()),
    ] {
        let r = a
            .client
            .post(a.url("/graphql"))
            .header("accept", "application/graphql-response+json")
            .bearer_auth(&a.admin_token)
            .json(&json!({"query": q}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{v}");
        assert!(v["errors"][0]["message"].as_str().unwrap().len() > 10);
    }
}

#[tokio::test]
async fn cross_origin_calls_are_refused_unless_the_origin_is_configured() {
    let preflight = |app: &TestApp| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/graphql"))
            .header("origin", "https://dash.example.com")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let app = TestApp::spawn().await;
    let r = preflight(&app).await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let app =
        TestApp::spawn_with(|c| c.cors_origins = vec!["https://dash.example.com".into()]).await;
    let r = preflight(&app).await.unwrap();
    assert_eq!(
        r.headers().get("access-control-allow-origin").unwrap(),
        "https://dash.example.com"
    );
    let r = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/graphql"))
        .header("origin", "https://evil.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn introspection_can_be_turned_off() {
    let app = TestApp::spawn_with(|c| c.graphql_introspection = false).await;
    for q in [
        "{ __schema { queryType { name } } }",
        "{ __type(name: \"Query\") { name } }",
    ] {
        let v = app.gql(None, q, json!({})).await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{v}");
    }
    // __typename stays available.
    app.gql_ok(None, "{ __typename }", json!({})).await;
}

// ---- graphql-transport-ws ----

async fn expect_close(ws: &mut crate::common::Ws, code: u16) {
    match ws.recv().await {
        Some(WsEvent::Closed(got, reason)) => assert_eq!(got, Some(code), "reason: {reason}"),
        other => panic!("expected close {code}, got {other:?}"),
    }
}

#[tokio::test]
async fn subscribing_before_the_ack_closes_with_4401() {
    let app = TestApp::spawn().await;
    let mut ws = app.ws_raw("graphql-transport-ws").await;
    ws.send(json!({"id": "1", "type": "subscribe", "payload": {"query": "{ __typename }"}}))
        .await;
    expect_close(&mut ws, 4401).await;
}

#[tokio::test]
async fn no_connection_init_in_time_closes_with_4408() {
    let app = TestApp::spawn_with(|c| c.ws_init_timeout = Duration::from_millis(300)).await;
    let mut ws = app.ws_raw("graphql-transport-ws").await;
    expect_close(&mut ws, 4408).await;
}

#[tokio::test]
async fn a_second_connection_init_closes_with_4429() {
    let app = TestApp::spawn().await;
    let mut ws = app.ws(None).await;
    ws.send(json!({"type": "connection_init"})).await;
    expect_close(&mut ws, 4429).await;
}

#[tokio::test]
async fn malformed_and_unknown_messages_close_with_4400() {
    let app = TestApp::spawn().await;
    for bad in [
        "not json",
        "[]",
        "{\"type\": 5}",
        "{\"type\": \"bogus\"}",
        "{\"type\": \"subscribe\", \"payload\": {}}",
    ] {
        let mut ws = app.ws(None).await;
        ws.send_text(bad).await;
        expect_close(&mut ws, 4400).await;
    }
    let mut ws = app.ws(None).await;
    ws.send(json!({"id": "1", "type": "subscribe", "payload": {"query": 42}}))
        .await;
    expect_close(&mut ws, 4400).await;
}

#[tokio::test]
async fn ping_is_answered_with_pong() {
    let app = TestApp::spawn().await;
    let mut ws = app.ws(None).await;
    ws.send(json!({"type": "ping", "payload": {"n": 1}})).await;
    let pong = ws.recv_json().await.unwrap();
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["payload"]["n"], 1);
}

#[tokio::test]
async fn messages_bigger_than_the_read_buffer_arrive_whole_up_to_the_body_limit() {
    let app = TestApp::spawn_with(|c| c.body_limit = 64 * 1024).await;
    let mut ws = app.ws(None).await;
    // Several times the per-connection read buffer, within the body limit.
    let big = "x".repeat(8 * sightline::ws::READ_BUFFER_SIZE);
    ws.send(json!({"type": "ping", "payload": {"big": big}}))
        .await;
    let pong = ws.recv_json().await.unwrap();
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["payload"]["big"].as_str(), Some(big.as_str()));
    // A document padded past the buffer with a comment still runs.
    let query = format!(
        "# {}\n{{ __typename }}",
        "y".repeat(3 * sightline::ws::READ_BUFFER_SIZE)
    );
    ws.send(json!({"id": "big", "type": "subscribe", "payload": {"query": query}}))
        .await;
    let next = ws.recv_json().await.unwrap();
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(next["payload"]["data"]["__typename"], "Query");
    assert_eq!(
        ws.recv_json().await.unwrap(),
        json!({"type": "complete", "id": "big"})
    );
    // Past the body limit the connection ends.
    ws.send(json!({"type": "ping", "payload": {"big": "z".repeat(64 * 1024)}}))
        .await;
    match ws.recv().await {
        Some(WsEvent::Closed(_, _)) => {}
        other => panic!("expected the connection to end, got {other:?}"),
    }
}

#[tokio::test]
async fn queries_run_over_the_socket_and_invalid_operations_get_an_error_message() {
    let app = TestApp::spawn().await;
    let mut ws = app.ws(None).await;
    ws.send(json!({"id": "q", "type": "subscribe", "payload": {"query": "{ __typename }"}}))
        .await;
    let next = ws.recv_json().await.unwrap();
    assert_eq!(next["type"], "next");
    assert_eq!(next["id"], "q");
    assert_eq!(next["payload"]["data"]["__typename"], "Query");
    let done = ws.recv_json().await.unwrap();
    assert_eq!(done, json!({"type": "complete", "id": "q"}));
    ws.send(json!({"id": "v", "type": "subscribe", "payload": {"query": "{ noSuchField }"}}))
        .await;
    let err = ws.recv_json().await.unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["id"], "v");
    assert_eq!(err["payload"][0]["extensions"]["code"], "BAD_USER_INPUT");
    // The connection stays usable.
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv_json().await.unwrap()["type"], "pong");
}

#[tokio::test]
async fn unknown_subprotocols_are_refused() {
    let app = TestApp::spawn().await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/graphql", app.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
}

// ---- legacy graphql-ws ----

#[tokio::test]
async fn the_legacy_graphql_ws_protocol_works() {
    let app = TestApp::spawn().await;
    let mut ws = app.ws_raw("graphql-ws").await;
    ws.send(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {}", app.admin_token)}}))
        .await;
    assert_eq!(ws.recv_json().await.unwrap()["type"], "connection_ack");
    assert_eq!(ws.recv_json().await.unwrap()["type"], "ka");
    ws.send(json!({"id": "1", "type": "start", "payload": {"query": "{ me { username } }"}}))
        .await;
    let data = ws.recv_json().await.unwrap();
    assert_eq!(data["type"], "data");
    assert_eq!(data["payload"]["data"]["me"]["username"], "admin");
    assert_eq!(
        ws.recv_json().await.unwrap(),
        json!({"type": "complete", "id": "1"})
    );
    ws.send(json!({"type": "connection_terminate"})).await;
    expect_close(&mut ws, 1000).await;
}

// ---- lifecycle ----

#[tokio::test]
async fn graceful_shutdown_closes_websockets_with_a_close_frame() {
    let app = TestApp::spawn().await;
    let mut ws = app.ws(Some(&app.admin_token)).await;
    let stopping = tokio::spawn(async move { app.stop().await });
    expect_close(&mut ws, 1001).await;
    let db = tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .unwrap()
        .unwrap();
    drop(db);
}

#[tokio::test]
async fn the_server_restarts_on_its_database_without_migrating_again() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    let db = app.stop().await;
    let app = TestApp::spawn_on(db, |_| {}).await;
    let token = app.login(&user.username, &user.password).await;
    app.gql_ok(Some(&token), "{ me { id } }", json!({})).await;
    let applied = sightline::db::migrate(&app.state.db).await;
    assert!(applied.is_ok());
}

#[test]
fn schema_graphql_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    let from_code = sightline::graphql::export_sdl();
    assert!(
        on_disk == from_code,
        "schema.graphql is out of date with the code; regenerate it with `cargo run -- export-schema`"
    );
}

const EVENT_SUB: &str = "subscription { eventCreated { id source } }";

/// Waits until the server holds `n` event subscribers.
async fn event_subscribers(app: &TestApp, n: usize) {
    crate::common::wait_until(Duration::from_secs(10), "event subscribers", || async {
        let got = app.state.hub.topics().events.subscriber_count();
        if got >= n {
            Ok(())
        } else {
            Err(got.to_string())
        }
    })
    .await;
}

async fn ingest(app: &TestApp, token: &str, source: &str) -> String {
    app.gql_ok(
        Some(token),
        "mutation($i: CreateEventInput!) { createEvent(input: $i) { id } }",
        json!({"i": {"eventType": "LOG", "source": source, "level": "info", "message": "m"}}),
    )
    .await["createEvent"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_second_subscription_with_a_live_id_closes_with_4409() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let mut ws = app.subscribe(Some(&token), EVENT_SUB, json!({})).await;
    event_subscribers(&app, 1).await;
    // The first subscription is live: it receives events.
    let id = ingest(&app, &token, "dup").await;
    assert_eq!(ws.next_payload().await["data"]["eventCreated"]["id"], id);
    ws.send(json!({"id": "1", "type": "subscribe", "payload": {"query": EVENT_SUB}}))
        .await;
    expect_close(&mut ws, 4409).await;
    // Closing the socket ended its subscription on the server.
    crate::common::wait_until(
        Duration::from_secs(10),
        "the subscription to end",
        || async {
            let got = app.state.hub.topics().events.subscriber_count();
            if got == 0 {
                Ok(())
            } else {
                Err(got.to_string())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_finished_subscription_id_may_be_reused() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let mut ws = app.subscribe(Some(&token), EVENT_SUB, json!({})).await;
    event_subscribers(&app, 1).await;
    ws.send(json!({"id": "1", "type": "complete"})).await;
    crate::common::wait_until(
        Duration::from_secs(10),
        "the subscription to end",
        || async {
            let got = app.state.hub.topics().events.subscriber_count();
            if got == 0 {
                Ok(())
            } else {
                Err(got.to_string())
            }
        },
    )
    .await;
    ws.send(json!({"id": "1", "type": "subscribe", "payload": {"query": EVENT_SUB}}))
        .await;
    event_subscribers(&app, 1).await;
    let id = ingest(&app, &token, "again").await;
    assert_eq!(ws.next_payload().await["data"]["eventCreated"]["id"], id);
}

#[tokio::test]
async fn deactivating_a_user_ends_their_live_subscriptions() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    let mut ws = app.subscribe(Some(&user.token), EVENT_SUB, json!({})).await;
    event_subscribers(&app, 1).await;
    let id = ingest(&app, &app.admin_token, "before").await;
    assert_eq!(ws.next_payload().await["data"]["eventCreated"]["id"], id);
    app.gql_ok(
        Some(&app.admin_token),
        "mutation($i: DeactivateUserInput!) { deactivateUser(input: $i) { isActive } }",
        json!({"i": {"userId": user.id}}),
    )
    .await;
    // The connection is closed with 4403 before anything written afterwards
    // can reach it.
    ingest(&app, &app.admin_token, "after").await;
    loop {
        match ws.recv().await {
            Some(WsEvent::Closed(code, _)) => {
                assert_eq!(code, Some(4403));
                break;
            }
            Some(WsEvent::Json(v)) => {
                assert_ne!(
                    v["payload"]["data"]["eventCreated"]["source"], "after",
                    "an event written after deactivation reached the user"
                );
            }
            other => panic!("expected close 4403, got {other:?}"),
        }
    }
}
