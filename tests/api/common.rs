//! The test harness: a real server on a free port against a fresh database
//! (a temp SQLite file, or a fresh PostgreSQL database when
//! `TEST_DATABASE_URL` is set), with typed helpers for GraphQL over HTTP and
//! WebSocket. Logs only with `TEST_LOG=1`.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Once;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sightline::{Application, Config, ShutdownHandle};
use sqlx::Connection;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

/// The admin password every test server starts with.
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";
/// Password of users made by `create_user`.
pub const USER_PASSWORD: &str = "user-password-for-tests";

static TRACING: Once = Once::new();

fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var("TEST_LOG").is_ok_and(|v| v == "1" || v == "true") {
            sightline::init_tracing(
                &std::env::var("SIGHTLINE_LOG").unwrap_or_else(|_| "info".into()),
                sightline::config::LogFormat::Text,
            );
        }
    });
}

/// Which backend tests run on.
pub fn backend_is_postgres() -> bool {
    std::env::var("TEST_DATABASE_URL").is_ok_and(|v| !v.is_empty())
}

/// A fresh database that disappears with the value.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn create() -> TestDb {
        match std::env::var("TEST_DATABASE_URL") {
            Ok(base) if !base.is_empty() => {
                let name = format!("sightline_test_{}", Uuid::new_v4().simple());
                let admin_url = base.clone();
                let mut conn = sqlx::postgres::PgConnection::connect(&admin_url)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                // The name is ours: a fixed prefix and a UUID.
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let url = replace_db_name(&base, &name);
                TestDb {
                    url,
                    _dir: None,
                    pg: Some((admin_url, name)),
                }
            }
            _ => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("sightline.db");
                TestDb {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    _dir: Some(dir),
                    pg: None,
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.pg.take() {
            // Drop the database from a thread of its own: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async move {
                        if let Ok(mut conn) =
                            sqlx::postgres::PgConnection::connect(&admin_url).await
                        {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            )))
                            .execute(&mut conn)
                            .await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

/// Replaces the database name in a PostgreSQL URL.
pub fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let host_part = match path_start {
        Some(i) => &base[..i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

/// A user made for a test.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub username: String,
    pub password: String,
    pub token: String,
}

/// A running server.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub state: sightline::AppState,
    pub admin_token: String,
    pub db_url: String,
    shutdown: ShutdownHandle,
    join: Option<JoinHandle<std::io::Result<()>>>,
    db: Option<TestDb>,
}

impl TestApp {
    /// A server with the default test configuration.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// A server whose configuration `f` may change first.
    pub async fn spawn_with(f: impl FnOnce(&mut Config)) -> TestApp {
        let db = TestDb::create().await;
        Self::spawn_on(db, f).await
    }

    /// A server on an existing test database (e.g. to restart on it).
    pub async fn spawn_on(db: TestDb, f: impl FnOnce(&mut Config)) -> TestApp {
        init_tracing();
        let mut config = Config::for_tests(&db.url);
        config.admin_password = Some(ADMIN_PASSWORD.to_owned());
        // Background work runs only when a test asks for it: tests drain the
        // queue deterministically with `run_pending_tasks`, and the tests of
        // the workers and the scheduler turn them on.
        config.task_workers = 0;
        config.scheduler = false;
        f(&mut config);
        let app = Application::build(config).await.expect("server starts");
        let addr = app.local_addr();
        let state = app.state().clone();
        let shutdown = app.shutdown_handle();
        let join = tokio::spawn(app.run_until_stopped(std::future::pending()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let mut test_app = TestApp {
            addr,
            base: format!("http://{addr}"),
            client,
            state,
            admin_token: String::new(),
            db_url: db.url.clone(),
            shutdown,
            join: Some(join),
            db: Some(db),
        };
        test_app.admin_token = test_app.login("admin", ADMIN_PASSWORD).await;
        test_app
    }

    /// Stops the server gracefully and returns its database for a restart.
    pub async fn stop(mut self) -> TestDb {
        self.shutdown.shutdown();
        if let Some(join) = self.join.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), join).await;
        }
        self.db.take().expect("database")
    }

    /// The URL of a path on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Posts a GraphQL request; returns the whole JSON response.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let req = gql_request(&self.client, &self.url("/graphql"), token, query, variables);
        let resp = req.send().await.expect("request sent");
        let text = resp.text().await.expect("body");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Like `gql`, but fails the test on any error and returns `data`.
    pub async fn gql_ok(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let v = self.gql(token, query, variables).await;
        if let Some(errors) = v.get("errors") {
            panic!("unexpected GraphQL errors: {errors}\nquery: {query}");
        }
        v["data"].clone()
    }

    /// Logs in and returns the token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let data = self
            .gql_ok(
                None,
                "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token } }",
                json!({ "u": username, "p": password }),
            )
            .await;
        data["login"]["token"].as_str().expect("token").to_owned()
    }

    /// Creates a user with the role (`USER`, `MODERATOR`, `ADMIN`) and logs in.
    pub async fn create_user(&self, role: &str) -> TestUser {
        let username = format!("u{}", &Uuid::new_v4().simple().to_string()[..12]);
        let data = self
            .gql_ok(
                Some(&self.admin_token),
                "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
                json!({ "i": {
                    "username": username, "email": format!("{username}@example.com"),
                    "password": USER_PASSWORD, "role": role,
                }}),
            )
            .await;
        let id = data["createUser"]["id"].as_str().expect("id").to_owned();
        let token = self.login(&username, USER_PASSWORD).await;
        TestUser {
            id,
            username,
            password: USER_PASSWORD.to_owned(),
            token,
        }
    }

    /// A token of a fresh user with the role (`ADMIN` returns the admin's).
    pub async fn login_as(&self, role: &str) -> String {
        if role == "ADMIN" {
            return self.admin_token.clone();
        }
        self.create_user(role).await.token
    }

    /// Enqueues a task as the system would (no actor); it must not be
    /// deduplicated away.
    pub async fn enqueue(
        &self,
        task_type: &str,
        payload: Value,
    ) -> sightline::tasks::entity::task::Model {
        sightline::tasks::service::enqueue(
            &self.state,
            None,
            sightline::tasks::NewTask::new(task_type, payload),
        )
        .await
        .expect("enqueue")
        .expect("not deduplicated")
    }

    /// Opens a WebSocket speaking `protocol` (not yet initialised).
    pub async fn ws_raw(&self, protocol: &str) -> Ws {
        let mut request = format!("ws://{}/graphql", self.addr)
            .into_client_request()
            .expect("ws request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(protocol).unwrap(),
        );
        let (stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket connects");
        Ws { stream }
    }

    /// A `graphql-transport-ws` connection, initialised with the token.
    pub async fn ws(&self, token: Option<&str>) -> Ws {
        let mut ws = self.ws_raw("graphql-transport-ws").await;
        let payload = match token {
            Some(t) => json!({ "Authorization": format!("Bearer {t}") }),
            None => json!({}),
        };
        ws.send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        let ack = ws.recv_json().await.expect("connection_ack");
        assert_eq!(ack["type"], "connection_ack", "got {ack}");
        ws
    }

    /// Starts a subscription on a new connection; returns the connection.
    pub async fn subscribe(&self, token: Option<&str>, query: &str, variables: Value) -> Ws {
        let mut ws = self.ws(token).await;
        ws.send(json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": variables } }))
            .await;
        ws
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.shutdown();
        if let Some(join) = self.join.take() {
            join.abort();
        }
    }
}

/// A WebSocket client.
pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What a WebSocket read produced.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    Json(Value),
    Closed(Option<u16>, String),
}

impl Ws {
    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("ws send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("ws send");
    }

    /// The next JSON message or close, skipping pings; `None` on timeout (10 s).
    pub async fn recv(&mut self) -> Option<WsEvent> {
        self.recv_within(Duration::from_secs(10)).await
    }

    pub async fn recv_within(&mut self, limit: Duration) -> Option<WsEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()?;
            match msg {
                None => return Some(WsEvent::Closed(None, String::new())),
                Some(Err(e)) => return Some(WsEvent::Closed(None, e.to_string())),
                Some(Ok(Message::Text(t))) => {
                    return Some(WsEvent::Json(
                        serde_json::from_str(t.as_str()).expect("JSON message"),
                    ));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(WsEvent::Closed(
                        frame.as_ref().map(|f| u16::from(f.code)),
                        frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    ));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next JSON message; panics on close or timeout.
    pub async fn recv_json(&mut self) -> Option<Value> {
        match self.recv().await {
            Some(WsEvent::Json(v)) => Some(v),
            Some(WsEvent::Closed(code, reason)) => panic!("websocket closed: {code:?} {reason}"),
            None => None,
        }
    }

    /// The payload of the next `next` message (skipping `ka`/`pong`).
    pub async fn next_payload(&mut self) -> Value {
        loop {
            let v = self.recv_json().await.expect("a message within 10 s");
            match v["type"].as_str() {
                Some("next") | Some("data") => return v["payload"].clone(),
                Some("ka") | Some("pong") | Some("ping") => continue,
                _ => panic!("expected next, got {v}"),
            }
        }
    }

    /// Waits for the close frame; returns its code.
    pub async fn closed_code(&mut self) -> Option<u16> {
        loop {
            match self.recv().await {
                Some(WsEvent::Closed(code, _)) => return code,
                Some(WsEvent::Json(_)) => continue,
                None => panic!("no close within 10 s"),
            }
        }
    }
}

/// Polls `f` until it returns `Some`, failing with the last value seen after
/// `limit`. Never sleeps longer than a poll interval.
pub async fn wait_until<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match f().await {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `extensions.code` of the first error.
pub fn error_code(v: &Value) -> String {
    v["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {v}"))
        .to_owned()
}

/// A GraphQL POST to `url`, with the bearer token when given (shared by the
/// in-process [`TestApp`] and the real-binary helpers).
pub fn gql_request(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> reqwest::RequestBuilder {
    let req = client
        .post(url)
        .header("content-type", "application/json")
        .body(json!({ "query": query, "variables": variables }).to_string());
    match token {
        Some(t) => req.header("authorization", format!("Bearer {t}")),
        None => req,
    }
}
