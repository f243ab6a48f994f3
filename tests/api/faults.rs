//! Faults under sustained ingest: the real binary killed with SIGKILL and
//! restarted (every event acknowledged with a 2xx is there afterwards), and
//! on PostgreSQL the server's database connections terminated repeatedly
//! (requests fail fast with a retryable 503 / `UNAVAILABLE`, nothing hangs,
//! the server recovers by itself and nothing acknowledged is lost).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::common::{TestApp, TestDb, backend_is_postgres, wait_until};
use crate::server_process::{PROCESS_ADMIN_PASSWORD, ServerProcess};

/// What the ingest clients saw.
#[derive(Default)]
struct Tally {
    acked: Mutex<Vec<String>>,
    acked_count: AtomicUsize,
    unavailable: AtomicUsize,
    /// Anything but a 2xx, a 503 `UNAVAILABLE` or (after a kill) a refused connection.
    failures: Mutex<Vec<String>>,
    slowest_503: Mutex<Duration>,
}

/// One client: single events and batches of 20 in turn, until `stop` or the
/// first transport error when `stop_on_transport_error`.
async fn ingest_client(
    client: reqwest::Client,
    base: String,
    token: String,
    n: usize,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    stop_on_transport_error: bool,
) {
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let batch = i.is_multiple_of(2);
        let body = if batch {
            Value::Array(
                (0..20)
                    .map(|j| json!({"event_type": "log", "source": "faults", "message": format!("c{n} r{i} e{j}")}))
                    .collect(),
            )
        } else {
            json!({"event_type": "log", "source": "faults", "message": format!("c{n} r{i}")})
        };
        let started = Instant::now();
        let sent = client
            .post(format!("{base}/api/v1/monitoring/events"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if stop_on_transport_error => {
                let _ = e;
                return;
            }
            Err(e) => {
                tally.failures.lock().await.push(format!(
                    "transport error after {:?}: {e}",
                    started.elapsed()
                ));
                continue;
            }
        };
        let status = resp.status().as_u16();
        let text = match resp.text().await {
            Ok(t) => t,
            Err(_) if stop_on_transport_error => return,
            Err(e) => {
                tally.failures.lock().await.push(format!("body lost: {e}"));
                continue;
            }
        };
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match status {
            200 | 201 => {
                let ids: Vec<String> = if batch {
                    let rejected = v["data"]["rejected"].as_array().map_or(0, Vec::len);
                    if rejected > 0 {
                        tally
                            .failures
                            .lock()
                            .await
                            .push(format!("rejected: {text}"));
                    }
                    v["data"]["ids"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default()
                } else {
                    v["data"]["id"]
                        .as_str()
                        .map(|s| vec![s.to_owned()])
                        .unwrap_or_default()
                };
                tally.acked_count.fetch_add(ids.len(), Ordering::Relaxed);
                tally.acked.lock().await.extend(ids);
            }
            503 if v["error"]["code"] == "UNAVAILABLE" => {
                tally.unavailable.fetch_add(1, Ordering::Relaxed);
                let took = started.elapsed();
                let mut slowest = tally.slowest_503.lock().await;
                if took > *slowest {
                    *slowest = took;
                }
            }
            _ => tally
                .failures
                .lock()
                .await
                .push(format!("status {status}: {text}")),
        }
    }
}

/// Every event id stored, read back page by page.
async fn stored_ids(gql: impl AsyncFn(&str, Value) -> Value) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let v = gql(
            "query($a: String) { events(first: 1000, after: $a, filter: {sources: [\"faults\"]}) { pageInfo { hasNextPage endCursor } nodes { id } } }",
            json!({ "a": after }),
        )
        .await;
        let page = &v["data"]["events"];
        assert!(page.is_object(), "{v}");
        for n in page["nodes"].as_array().unwrap() {
            ids.insert(n["id"].as_str().unwrap().to_owned());
        }
        if page["pageInfo"]["hasNextPage"] != json!(true) {
            return ids;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_ingest_keeps_every_acknowledged_event() {
    let db = TestDb::create().await;
    let mut server = ServerProcess::start(&db.url, &[]).await;
    let token = server.login("admin", PROCESS_ADMIN_PASSWORD).await;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|n| {
            tokio::spawn(ingest_client(
                server.client.clone(),
                server.base.clone(),
                token.clone(),
                n,
                tally.clone(),
                stop.clone(),
                true,
            ))
        })
        .collect();
    wait_until(
        Duration::from_secs(120),
        "1,000 acknowledged events",
        || {
            let tally = tally.clone();
            async move {
                let n = tally.acked_count.load(Ordering::Relaxed);
                if n >= 1_000 {
                    Ok(())
                } else {
                    Err(n.to_string())
                }
            }
        },
    )
    .await;
    server.kill9();
    for c in clients {
        c.await.unwrap();
    }
    let acked: Vec<String> = tally.acked.lock().await.clone();
    let failures = tally.failures.lock().await.clone();
    assert!(failures.is_empty(), "{failures:?}");

    let server = ServerProcess::start(&db.url, &[]).await;
    let token = server.login("admin", PROCESS_ADMIN_PASSWORD).await;
    let stored =
        stored_ids(async |q: &str, vars: Value| server.gql(Some(&token), q, vars).await).await;
    let missing: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    eprintln!(
        "kill -9 ({}): {} acknowledged, {} stored, {} missing",
        if backend_is_postgres() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        acked.len(),
        stored.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

/// Terminates every backend connected to `db_name` but our own.
async fn terminate_backends(admin_url: &str, db_name: &str) -> i64 {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::postgres::PgConnection::connect(admin_url)
        .await
        .unwrap();
    let row = sqlx::query(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(db_name)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    row.get::<i64, _>(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminated_postgres_connections_give_fast_503s_and_the_server_recovers() {
    if !backend_is_postgres() {
        eprintln!("skipped: needs TEST_DATABASE_URL (PostgreSQL)");
        return;
    }
    let admin_url = std::env::var("TEST_DATABASE_URL").unwrap();
    let app = TestApp::spawn_with(|c| {
        c.request_timeout = Duration::from_secs(10);
        c.db_acquire_timeout = Duration::from_secs(2);
    })
    .await;
    let db_name = app
        .db_url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let sub = app
        .subscribe(
            Some(&app.admin_token),
            "subscription { eventCreated(filter: {sources: [\"faults\"]}) { id cursor } }",
            json!({}),
        )
        .await;
    let live = Arc::new(Live::default());
    let reader = tokio::spawn(read_live(sub, live.clone()));
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    // The client gives up well after the server's request timeout: a
    // request that outlives it has hung.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(25))
        .build()
        .unwrap();
    let clients: Vec<_> = (0..6)
        .map(|n| {
            tokio::spawn(ingest_client(
                client.clone(),
                app.base.clone(),
                app.admin_token.clone(),
                n,
                tally.clone(),
                stop.clone(),
                false,
            ))
        })
        .collect();
    let mut recoveries = Vec::new();
    let mut killed = 0;
    for _ in 0..5 {
        let before = tally.acked_count.load(Ordering::Relaxed);
        killed += terminate_backends(&admin_url, &db_name).await;
        let at = Instant::now();
        // Recovery: new events are acknowledged again.
        wait_until(Duration::from_secs(60), "ingest to resume", || {
            let tally = tally.clone();
            async move {
                let n = tally.acked_count.load(Ordering::Relaxed);
                if n >= before + 50 {
                    Ok(())
                } else {
                    Err(format!("{n} acknowledged"))
                }
            }
        })
        .await;
        recoveries.push(at.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let failures = tally.failures.lock().await.clone();
    let acked: Vec<String> = tally.acked.lock().await.clone();
    let slowest_503 = *tally.slowest_503.lock().await;
    eprintln!(
        "pg_terminate_backend x5 ({killed} connections): {} acknowledged, {} answered 503, slowest 503 {:?}, recoveries {:?}",
        acked.len(),
        tally.unavailable.load(Ordering::Relaxed),
        slowest_503,
        recoveries
    );
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(
        slowest_503 < app.state.config.request_timeout + Duration::from_secs(5),
        "a 503 came only after {slowest_503:?}"
    );

    let stored =
        stored_ids(async |q: &str, vars: Value| app.gql(Some(&app.admin_token), q, vars).await)
            .await;
    let missing: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost",
        missing.len()
    );

    // The live subscription either delivered everything acknowledged or
    // closed with a code; a client resuming from the last cursor it saw
    // misses nothing.
    let acked_set: HashSet<String> = acked.iter().cloned().collect();
    wait_until(
        Duration::from_secs(30),
        "the subscription to catch up or close",
        || {
            let live = live.clone();
            let acked_set = acked_set.clone();
            async move {
                let state = live.state.lock().await;
                if state.closed.is_some()
                    || state.gap_from.is_some()
                    || acked_set.is_subset(&state.received)
                {
                    Ok(())
                } else {
                    Err(format!(
                        "{} of {} received",
                        state.received.len(),
                        acked_set.len()
                    ))
                }
            }
        },
    )
    .await;
    reader.abort();
    let state = live.state.lock().await;
    let mut seen = state.received.clone();
    if let Some((code, reason)) = &state.closed {
        assert!(
            code.is_some(),
            "the subscription closed without a code: {reason}"
        );
    }
    if state.closed.is_some() || state.gap_from.is_some() {
        let mut after = match &state.gap_from {
            Some(from) => from.clone(),
            None => state.last_cursor.clone(),
        };
        loop {
            let v = app
                .gql(
                    Some(&app.admin_token),
                    "query($a: String) { events(first: 1000, after: $a, filter: {sources: [\"faults\"]}) { pageInfo { hasNextPage endCursor } nodes { id } } }",
                    json!({ "a": after }),
                )
                .await;
            let page = &v["data"]["events"];
            for n in page["nodes"].as_array().unwrap() {
                seen.insert(n["id"].as_str().unwrap().to_owned());
            }
            if page["pageInfo"]["hasNextPage"] != json!(true) {
                break;
            }
            after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        }
    }
    let missed = acked_set.difference(&seen).count();
    eprintln!(
        "live subscription: {} received, closed {:?}, interrupted {}, {missed} missed after resuming",
        state.received.len(),
        state.closed,
        state.gap_from.is_some()
    );
    assert_eq!(
        missed, 0,
        "a resuming subscriber missed acknowledged events"
    );
}

#[derive(Default)]
struct LiveState {
    received: HashSet<String>,
    last_cursor: Option<String>,
    closed: Option<(Option<u16>, String)>,
    /// The last cursor seen before the first "live updates are interrupted"
    /// item: a client resumes from there.
    gap_from: Option<Option<String>>,
}

#[derive(Default)]
struct Live {
    state: Mutex<LiveState>,
}

/// Reads a subscription until it closes, keeping what it delivered.
async fn read_live(mut ws: crate::common::Ws, live: Arc<Live>) {
    loop {
        match ws.recv_within(Duration::from_secs(3600)).await {
            Some(crate::common::WsEvent::Json(v)) => match v["type"].as_str() {
                Some("next") => {
                    let e = &v["payload"]["data"]["eventCreated"];
                    let mut state = live.state.lock().await;
                    if let (Some(id), Some(cursor)) = (e["id"].as_str(), e["cursor"].as_str()) {
                        state.received.insert(id.to_owned());
                        state.last_cursor = Some(cursor.to_owned());
                    } else if v["payload"]["errors"][0]["extensions"]["code"] == "UNAVAILABLE" {
                        // The server says live delivery was interrupted (its
                        // notification connection was cut); the stream stays.
                        if state.gap_from.is_none() {
                            state.gap_from = Some(state.last_cursor.clone());
                        }
                    } else {
                        state.closed = Some((None, format!("unexpected payload: {v}")));
                        return;
                    }
                }
                Some("error") | Some("complete") => {
                    // Ended by the server with a message the client can act on.
                    live.state.lock().await.closed = Some((Some(4500), v.to_string()));
                    return;
                }
                _ => {}
            },
            Some(crate::common::WsEvent::Closed(code, reason)) => {
                live.state.lock().await.closed = Some((code, reason));
                return;
            }
            None => return,
        }
    }
}

/// Writes that read before they write, made while ingest commits all the
/// time. On SQLite a transaction that began without the write lock reads
/// under one snapshot, and once another connection has committed it can no
/// longer write: SQLite answers "database is locked" (`SQLITE_BUSY_SNAPSHOT`)
/// at once, without waiting, and the request failed with `UNAVAILABLE`. (A
/// role change in CI failed that way once, behind the `last_used_at` write
/// of the API key used just before it.) Every write transaction takes the
/// write lock when it begins, so none of these may fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_that_read_first_succeed_while_ingest_commits() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token.clone();
    let target = app.create_user("USER").await;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|n| {
            tokio::spawn(ingest_client(
                reqwest::Client::new(),
                app.url(""),
                admin.clone(),
                n,
                tally.clone(),
                stop.clone(),
                false,
            ))
        })
        .collect();
    wait_until(Duration::from_secs(10), "ingest to start", || async {
        match tally.acked_count.load(Ordering::Relaxed) {
            0 => Err("nothing acknowledged yet".to_owned()),
            _ => Ok(()),
        }
    })
    .await;
    let acked_before = tally.acked_count.load(Ordering::Relaxed);

    let user = json!(target.id);
    let silence = "mutation($i: CreateSilenceInput!) { createSilence(input: $i) { id } }";
    let ends_at = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let mut failed = Vec::new();
    let mut writes = 0;
    for round in 0..15 {
        let role = if round % 2 == 0 { "MODERATOR" } else { "USER" };
        let created = app
            .gql(
                Some(&admin),
                silence,
                json!({"i": {"matchers": [{"label": "job", "value": format!("r{round}")}],
                             "endsAt": ends_at, "comment": "maintenance"}}),
            )
            .await;
        let silence_id = created["data"]["createSilence"]["id"].clone();
        let ops = [
            (
                "mutation($i: SetUserRoleInput!) { setUserRole(input: $i) { role } }",
                json!({"i": {"userId": user, "role": role}}),
            ),
            (
                "mutation($i: DeactivateUserInput!) { deactivateUser(input: $i) { isActive } }",
                json!({"i": {"userId": user}}),
            ),
            (
                "mutation($i: ReactivateUserInput!) { reactivateUser(input: $i) { isActive } }",
                json!({"i": {"userId": user}}),
            ),
            (
                "mutation($i: ForcePasswordResetInput!) { forcePasswordReset(input: $i) { id } }",
                json!({"i": {"userId": user}}),
            ),
            (
                "mutation($i: CreateIncidentInput!) { createIncident(input: $i) { id } }",
                json!({"i": {"title": format!("round {round}"), "assignedTo": user}}),
            ),
            (
                "mutation($i: ExpireSilenceInput!) { expireSilence(input: $i) { state } }",
                json!({"i": {"id": silence_id}}),
            ),
        ];
        if created.get("errors").is_some() {
            failed.push(format!("createSilence: {}", created["errors"]));
        }
        for (query, variables) in ops {
            writes += 1;
            let v = app.gql(Some(&admin), query, variables).await;
            if let Some(errors) = v.get("errors") {
                failed.push(format!("{query}: {errors}"));
            }
        }
    }
    let acked_during = tally.acked_count.load(Ordering::Relaxed) - acked_before;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert!(
        failed.is_empty(),
        "{} of {writes} writes failed while {acked_during} events were ingested: {failed:#?}",
        failed.len()
    );
    assert!(acked_during > 0, "ingest ran during the writes");
    assert!(tally.failures.lock().await.is_empty());
}
