//! Several replicas on one PostgreSQL database: three real server processes
//! (the built binary) share a fresh database. Live updates written on any
//! replica reach subscribers on every replica exactly once and in commit
//! order; a replica whose listener connection is killed tells its
//! subscribers about the gap and recovers; tasks run exactly once; the
//! scheduler enqueues each period once. PostgreSQL only: on SQLite these
//! tests print why they are skipped and pass.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use sqlx::Connection;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::common::{ADMIN_PASSWORD, TestDb, Ws, WsEvent, backend_is_postgres, wait_until};

fn skip_unless_postgres(test: &str) -> bool {
    if backend_is_postgres() {
        return false;
    }
    eprintln!(
        "skipping {test}: several replicas need PostgreSQL; set TEST_DATABASE_URL=postgres://... to run it"
    );
    true
}

/// One server process.
struct Replica {
    child: Child,
    /// `host:port`.
    addr: String,
    log: Arc<Mutex<String>>,
    http: reqwest::Client,
}

impl Replica {
    /// Starts the binary on `db_url` and waits until it listens.
    fn start(db_url: &str, env: &[(&str, &str)]) -> Replica {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sightline"));
        cmd.env("DATABASE_URL", db_url)
            .env("SIGHTLINE_ADDR", "127.0.0.1:0")
            .env("SIGHTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("SIGHTLINE_LOG_FORMAT", "text")
            .env("SIGHTLINE_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the server");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut seen = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            assert!(Instant::now() < deadline, "no listening line:\n{seen}");
            let mut line = String::new();
            let n = out.read_line(&mut line).expect("read output");
            assert!(n > 0, "the server ended before listening:\n{seen}");
            seen.push_str(&line);
            if line.contains("playground:") {
                let url = line
                    .split_whitespace()
                    .find(|w| w.starts_with("http://"))
                    .expect("a URL");
                break url
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_owned();
            }
        };
        // Keep reading so the child never blocks on a full pipe.
        let log = Arc::new(Mutex::new(seen));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        Replica {
            child,
            addr,
            log,
            http: reqwest::Client::new(),
        }
    }

    /// The ids of the tasks this replica logged as succeeded.
    fn succeeded_task_ids(&self) -> Vec<String> {
        let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("task succeeded"))
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("task_id="))
                    .map(str::to_owned)
            })
            .collect()
    }

    async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self
            .http
            .post(format!("http://{}/graphql", self.addr))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
            .await
            .expect("request")
            .json()
            .await
            .expect("JSON")
    }

    async fn gql_ok(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let v = self.gql(token, query, variables).await;
        assert!(
            v.get("errors").is_none(),
            "errors from {}: {v}\nlog:\n{}",
            self.addr,
            self.log.lock().map(|l| l.clone()).unwrap_or_default()
        );
        v["data"].clone()
    }

    /// Writes probe event `k` (what [`make_live`] sends until subscribers see one).
    async fn write_probe_event(&self, token: &str, k: usize) {
        self.gql_ok(
            Some(token),
            CREATE_EVENT,
            json!({"i": {"eventType": "LOG", "source": "probe", "message": format!("probe-{k}")}}),
        )
        .await;
    }

    async fn login_admin(&self) -> String {
        let v = self
            .gql_ok(
                None,
                "mutation($p: String!) { login(input: {username: \"admin\", password: $p}) { token } }",
                json!({ "p": ADMIN_PASSWORD }),
            )
            .await;
        v["login"]["token"].as_str().expect("token").to_owned()
    }

    async fn readyz(&self) -> (u16, Value) {
        let r = self
            .http
            .get(format!("http://{}/readyz", self.addr))
            .send()
            .await
            .expect("readyz");
        let status = r.status().as_u16();
        (status, r.json().await.expect("readyz JSON"))
    }

    /// A `graphql-transport-ws` connection with `id` subscribed to `query`.
    async fn subscribe(&self, token: &str, id: &str, query: &str, variables: Value) -> Ws {
        let mut request = format!("ws://{}/graphql", self.addr)
            .into_client_request()
            .expect("ws request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let (stream, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket connects");
        let mut ws = Ws { stream };
        ws.send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }))
            .await;
        let ack = ws.recv_json().await.expect("connection_ack");
        assert_eq!(ack["type"], "connection_ack", "got {ack}");
        ws.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }))
            .await;
        ws
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `n` replicas one after the other (the first migrates and creates
/// the admin; the others find both done).
fn start_replicas(db: &TestDb, n: usize, env: &[(&str, &str)]) -> Vec<Replica> {
    (0..n).map(|_| Replica::start(&db.url, env)).collect()
}

/// A stream item: `Ok(data)` or `Err(first error)`.
async fn next_item(ws: &mut Ws, limit: Duration) -> Option<Result<Value, Value>> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let v = match ws.recv_within(left).await? {
            WsEvent::Json(v) => v,
            WsEvent::Closed(code, reason) => panic!("websocket closed: {code:?} {reason}"),
        };
        match v["type"].as_str() {
            Some("next") => {
                let p = &v["payload"];
                if let Some(e) = p["errors"].as_array().and_then(|e| e.first()) {
                    return Some(Err(e.clone()));
                }
                return Some(Ok(p["data"].clone()));
            }
            Some("ping") | Some("pong") | Some("ka") => continue,
            _ => panic!("unexpected message {v}"),
        }
    }
}

/// Makes every subscriber live: writes probes with `probe(k)` until each
/// websocket has received one whose text `text_of` starts with `probe-`,
/// then writes a last probe and reads each stream up to it, so the next
/// item each reads is the first written after this returns.
async fn make_live<F, Fut>(subs: &mut [Ws], text_of: fn(&Value) -> String, mut probe: F)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut live = vec![false; subs.len()];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut k = 0;
    while live.iter().any(|l| !l) {
        assert!(
            Instant::now() < deadline,
            "subscribers never went live: {live:?}"
        );
        probe(k).await;
        k += 1;
        for (ws, live) in subs.iter_mut().zip(live.iter_mut()) {
            if *live {
                continue;
            }
            if let Some(Ok(data)) = next_item(ws, Duration::from_millis(500)).await {
                *live = text_of(&data).starts_with("probe-");
            }
        }
    }
    probe(usize::MAX).await;
    let last = format!("probe-{}", usize::MAX);
    for ws in subs.iter_mut() {
        loop {
            let item = next_item(ws, Duration::from_secs(10))
                .await
                .expect("the last probe");
            if let Ok(data) = item
                && text_of(&data) == last
            {
                break;
            }
        }
    }
}

const CREATE_EVENT: &str =
    "mutation($i: CreateEventInput!) { createEvent(input: $i) { id message } }";
const CREATE_INCIDENT: &str =
    "mutation($i: CreateIncidentInput!) { createIncident(input: $i) { id title } }";
const EVENTS_SUB: &str = "subscription { eventCreated { id message payload } }";
const INCIDENTS_SUB: &str = "subscription { incidentCreated { id title } }";

fn event_text(data: &Value) -> String {
    data["eventCreated"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn incident_text(data: &Value) -> String {
    data["incidentCreated"]["title"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Reads items up to the one whose text is `end`; returns their texts.
async fn read_until(ws: &mut Ws, text_of: fn(&Value) -> String, end: &str) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        let item = next_item(ws, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("no `{end}` after {} items", got.len()));
        let data = item.unwrap_or_else(|e| panic!("error item {e}"));
        if text_of(&data) == end {
            return got;
        }
        got.push(data);
    }
}

#[tokio::test]
async fn writes_on_any_replica_reach_subscribers_on_every_replica_once_and_in_commit_order() {
    if skip_unless_postgres("replicas::writes_on_any_replica_reach_subscribers") {
        return;
    }
    let db = TestDb::create().await;
    let replicas = start_replicas(&db, 3, &[]);
    let token = replicas[0].login_admin().await;

    let mut event_subs = Vec::new();
    let mut incident_subs = Vec::new();
    for r in &replicas {
        event_subs.push(r.subscribe(&token, "e", EVENTS_SUB, json!({})).await);
        incident_subs.push(r.subscribe(&token, "i", INCIDENTS_SUB, json!({})).await);
    }
    make_live(&mut event_subs, event_text, |k| {
        let r = &replicas[k % 3];
        let token = token.clone();
        async move { r.write_probe_event(&token, k).await }
    })
    .await;
    make_live(&mut incident_subs, incident_text, |k| {
        let r = &replicas[k % 3];
        let token = token.clone();
        async move {
            r.gql_ok(
                Some(&token),
                CREATE_INCIDENT,
                json!({"i": {"title": format!("probe-{k}")}}),
            )
            .await;
        }
    })
    .await;

    // Round-robin writes, one after the other, so commit order is this order.
    // One event and one incident are far larger than a notification may be
    // (events go by commit stamp whatever their size; the incident by
    // reference to a stored payload).
    let big = "x".repeat(20_000);
    let mut expected_events = Vec::new();
    for i in 0..30 {
        let message = format!("event-{i}");
        let payload = if i == 13 {
            json!({ "blob": big })
        } else {
            json!({ "i": i })
        };
        replicas[i % 3]
            .gql_ok(
                Some(&token),
                CREATE_EVENT,
                json!({"i": {"eventType": "LOG", "source": "rr", "message": message, "payload": payload}}),
            )
            .await;
        expected_events.push((message, payload));
    }
    let mut expected_incidents = Vec::new();
    for i in 0..9 {
        let title = format!("incident-{i}");
        let input = if i == 4 {
            json!({"title": title, "description": "d".repeat(9_500)})
        } else {
            json!({"title": title})
        };
        replicas[(i + 1) % 3]
            .gql_ok(Some(&token), CREATE_INCIDENT, json!({ "i": input }))
            .await;
        expected_incidents.push(title);
    }
    replicas[2]
        .gql_ok(
            Some(&token),
            CREATE_EVENT,
            json!({"i": {"eventType": "LOG", "source": "rr", "message": "end"}}),
        )
        .await;
    replicas[1]
        .gql_ok(
            Some(&token),
            CREATE_INCIDENT,
            json!({"i": {"title": "end"}}),
        )
        .await;

    for (n, ws) in event_subs.iter_mut().enumerate() {
        let got: Vec<(String, Value)> = read_until(ws, event_text, "end")
            .await
            .into_iter()
            .map(|d| (event_text(&d), d["eventCreated"]["payload"].clone()))
            .collect();
        let texts: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
        let want: Vec<&str> = expected_events.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(texts, want, "events seen on replica {n}");
        assert_eq!(got, expected_events, "event payloads seen on replica {n}");
    }
    for (n, ws) in incident_subs.iter_mut().enumerate() {
        let got: Vec<String> = read_until(ws, incident_text, "end")
            .await
            .iter()
            .map(incident_text)
            .collect();
        assert_eq!(got, expected_incidents, "incidents seen on replica {n}");
    }
}

#[tokio::test]
async fn a_replica_whose_listener_connection_is_killed_reports_the_gap_and_keeps_delivering() {
    if skip_unless_postgres("replicas::a_replica_whose_listener_connection_is_killed") {
        return;
    }
    let db = TestDb::create().await;
    let replicas = start_replicas(&db, 3, &[]);
    let token = replicas[0].login_admin().await;
    let (status, ready) = replicas[0].readyz().await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["listener"]["state"], "up", "{ready}");
    assert_eq!(ready["listener"]["reconnects"], 0, "{ready}");
    let pid = ready["listener"]["backendPid"].as_i64().expect("a pid");

    let mut subs = vec![
        replicas[0]
            .subscribe(&token, "e", EVENTS_SUB, json!({}))
            .await,
    ];
    make_live(&mut subs, event_text, |k| {
        let r = &replicas[1 + k % 2];
        let token = token.clone();
        async move { r.write_probe_event(&token, k).await }
    })
    .await;

    let mut admin = sqlx::postgres::PgConnection::connect(&db.url)
        .await
        .expect("connect to the test database");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid as i32)
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
    assert!(killed, "the listener's backend {pid} was not found");

    // The subscriber is told it may miss items, then that they resumed.
    let ws = &mut subs[0];
    let mut errors = Vec::new();
    while errors.len() < 2 {
        match next_item(ws, Duration::from_secs(30)).await {
            Some(Err(e)) => errors.push(e),
            Some(Ok(d)) => panic!("an item before the gap was reported: {d}"),
            None => panic!("no gap item; got {errors:?}"),
        }
    }
    for e in &errors {
        assert_eq!(e["extensions"]["code"], "UNAVAILABLE", "{e}");
    }
    let first = errors[0]["message"].as_str().unwrap_or_default();
    let second = errors[1]["message"].as_str().unwrap_or_default();
    assert!(first.contains("interrupted"), "{first}");
    assert!(second.contains("resumed"), "{second}");

    let ready = wait_until(Duration::from_secs(30), "the listener back up", || async {
        let (status, v) = replicas[0].readyz().await;
        if status == 200 && v["listener"]["state"] == "up" && v["listener"]["reconnects"] == 1 {
            Ok(v)
        } else {
            Err(format!("{status} {v}"))
        }
    })
    .await;
    assert_ne!(
        ready["listener"]["backendPid"].as_i64(),
        Some(pid),
        "{ready}"
    );

    // Later writes, from another replica and from this one, still arrive.
    for (i, r) in [&replicas[1], &replicas[0], &replicas[2]]
        .iter()
        .enumerate()
    {
        r.gql_ok(
            Some(&token),
            CREATE_EVENT,
            json!({"i": {"eventType": "LOG", "source": "rr", "message": format!("after-{i}")}}),
        )
        .await;
    }
    replicas[1]
        .gql_ok(
            Some(&token),
            CREATE_EVENT,
            json!({"i": {"eventType": "LOG", "source": "rr", "message": "end"}}),
        )
        .await;
    let got: Vec<String> = read_until(&mut subs[0], event_text, "end")
        .await
        .iter()
        .map(event_text)
        .collect();
    assert_eq!(got, ["after-0", "after-1", "after-2"]);

    // An auth change made on one replica ends live subscriptions on another.
    let user = replicas[1]
        .gql_ok(
            Some(&token),
            "mutation { createUser(input: {username: \"rita\", email: \"rita@example.com\", password: \"rita-password-123\", role: USER}) { id } }",
            json!({}),
        )
        .await;
    let user_id = user["createUser"]["id"].as_str().expect("id").to_owned();
    let rita = replicas[2]
        .gql_ok(
            None,
            "mutation { login(input: {username: \"rita\", password: \"rita-password-123\"}) { token } }",
            json!({}),
        )
        .await["login"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let mut rita_ws = replicas[2]
        .subscribe(&rita, "e", EVENTS_SUB, json!({}))
        .await;
    replicas[0]
        .gql_ok(
            Some(&token),
            "mutation($id: ID!) { deactivateUser(input: {userId: $id}) { id } }",
            json!({"id": user_id}),
        )
        .await;
    let code = rita_ws.closed_code().await;
    assert_eq!(
        code,
        Some(4403),
        "a deactivated user's live connection ends"
    );
}

#[tokio::test]
async fn two_thousand_tasks_run_exactly_once_across_three_replicas_and_schedules_never_double() {
    if skip_unless_postgres("replicas::two_thousand_tasks_run_exactly_once") {
        return;
    }
    let db = TestDb::create().await;
    let env = [
        ("SIGHTLINE_TASK_WORKERS", "4"),
        ("SIGHTLINE_TASK_POLL_INTERVAL", "50ms"),
        ("SIGHTLINE_SCHEDULER_TICK", "100ms"),
        ("SIGHTLINE_RETENTION_INTERVAL", "1s"),
        ("SIGHTLINE_EVENT_PROCESSING_INTERVAL", "1s"),
    ];
    let replicas = start_replicas(&db, 3, &env);
    let token = replicas[0].login_admin().await;

    const N: usize = 2000;
    let enqueue = "mutation($i: EnqueueTaskInput!) { enqueueTask(input: $i) { id } }";
    let mut ids = Vec::with_capacity(N);
    let mut pending = futures_util::stream::iter((0..N).map(|i| {
        let r = &replicas[i % 3];
        let token = token.clone();
        async move {
            let v = r
                .gql_ok(
                    Some(&token),
                    enqueue,
                    json!({"i": {"taskType": "monitoring_data_retention"}}),
                )
                .await;
            v["enqueueTask"]["id"].as_str().expect("id").to_owned()
        }
    }))
    .buffer_unordered(16);
    while let Some(id) = pending.next().await {
        ids.push(id);
    }
    assert_eq!(ids.len(), N);

    let pool = sqlx::PgPool::connect(&db.url)
        .await
        .expect("connect to the test database");
    let done = wait_until(Duration::from_secs(120), "every task finished", || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM tasks WHERE dedupe_key IS NULL AND status = 'succeeded'",
            )
            .fetch_one(&pool)
            .await
            .map_err(|e| e.to_string())?;
            if n as usize == N {
                Ok(n)
            } else {
                Err(format!("{n} of {N} succeeded"))
            }
        }
    })
    .await;
    assert_eq!(done as usize, N);
    let rows: Vec<(String, i32)> =
        sqlx::query_as("SELECT id::text, attempts FROM tasks WHERE dedupe_key IS NULL")
            .fetch_all(&pool)
            .await
            .expect("tasks");
    assert_eq!(rows.len(), N, "no task was duplicated");
    let mut wanted = ids.clone();
    wanted.sort();
    let mut stored: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    stored.sort();
    assert_eq!(stored, wanted);
    let twice: Vec<&(String, i32)> = rows.iter().filter(|r| r.1 != 1).collect();
    assert!(twice.is_empty(), "tasks claimed more than once: {twice:?}");
    // Each run is logged by the replica that ran it: every task appears in
    // exactly one replica's log, once.
    let runs = wait_until(Duration::from_secs(30), "every run logged", || {
        let replicas = &replicas;
        async move {
            let runs: Vec<Vec<String>> = replicas.iter().map(Replica::succeeded_task_ids).collect();
            let n: usize = runs.iter().map(Vec::len).sum();
            if n >= N {
                Ok(runs)
            } else {
                Err(format!("{n} runs logged"))
            }
        }
    })
    .await;
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for id in runs.iter().flatten() {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    for id in &ids {
        assert_eq!(counts.get(id.as_str()), Some(&1), "runs of task {id}");
    }
    let per_replica: Vec<usize> = runs
        .iter()
        .map(|r| {
            r.iter()
                .filter(|id| counts.contains_key(id.as_str()) && ids.contains(id))
                .count()
        })
        .collect();
    eprintln!("tasks run per replica: {per_replica:?}");

    // The schedules (1 s each) enqueued their tasks once per period, however
    // many replicas ticked: consecutive tasks of a schedule are at least one
    // interval apart.
    for schedule in ["monitoring_data_retention", "monitoring_event_processing"] {
        let key = format!("schedule:{schedule}");
        let times: Vec<chrono::DateTime<chrono::Utc>> = wait_until(
            Duration::from_secs(60),
            "three periods of each schedule",
            || {
                let pool = pool.clone();
                let key = key.clone();
                async move {
                    let times: Vec<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
                        "SELECT run_after FROM tasks WHERE dedupe_key = $1 ORDER BY run_after",
                    )
                    .bind(&key)
                    .fetch_all(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
                    if times.len() >= 3 {
                        Ok(times)
                    } else {
                        Err(format!("{} tasks of {key}", times.len()))
                    }
                }
            },
        )
        .await;
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= chrono::Duration::seconds(1),
                "{schedule} enqueued twice within one period: {times:?}"
            );
        }
    }
}
