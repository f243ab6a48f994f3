//! The measured scenarios. Each takes the running server and returns a
//! JSON record for the results file (and prints a line). Add a scenario by
//! writing a function here and listing it in `main.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::data::{self, Rng};
use crate::http::Conn;
use crate::server::Server;
use crate::stats::Summary;

const CREATE_EVENT: &str = "mutation($i: CreateEventInput!) { createEvent(input: $i) { id } }";
const CREATE_EVENTS: &str =
    "mutation($i: CreateEventsInput!) { createEvents(input: $i) { accepted rejected { index } } }";
const QUERY: &str = "query($s: String!, $from: DateTime!) { events(filter: {sources: [$s], from: $from}, first: 100) { edges { cursor node { id eventType source level message timestamp tags } } pageInfo { hasNextPage endCursor } } }";

/// Whether a GraphQL response is a success.
fn ok_response(status: u16, body: &[u8]) -> bool {
    status == 200 && !body.windows(9).any(|w| w == b"\"errors\":")
}

/// Runs `workers` loops sending bodies from `bodies` (round robin) for
/// `duration`; `items` is how many items one request carries.
async fn load(
    addr: SocketAddr,
    token: &str,
    bodies: Arc<Vec<Vec<u8>>>,
    workers: usize,
    duration: Duration,
    items: u64,
    max_requests: Option<u64>,
) -> Summary {
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let issued = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let (ok, errors, issued, first_error, latencies, bodies) = (
            ok.clone(),
            errors.clone(),
            issued.clone(),
            first_error.clone(),
            latencies.clone(),
            bodies.clone(),
        );
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut mine = Vec::with_capacity(4096);
            let mut i = w;
            while Instant::now() < deadline {
                if let Some(max) = max_requests
                    && issued.fetch_add(1, Ordering::Relaxed) >= max
                {
                    break;
                }
                let body = &bodies[i % bodies.len()];
                i += workers;
                let t = Instant::now();
                match conn.post_json("/graphql", Some(&token), body).await {
                    Ok(r) if ok_response(r.status, &r.body) => {
                        mine.push(t.elapsed());
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        let mut f = first_error.lock().await;
                        if f.is_none() {
                            *f = Some(format!(
                                "{}: {}",
                                r.status,
                                r.text().chars().take(300).collect::<String>()
                            ));
                        }
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        let mut f = first_error.lock().await;
                        if f.is_none() {
                            *f = Some(e);
                        }
                    }
                }
            }
            latencies.lock().await.extend(mine);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let ok = ok.load(Ordering::Relaxed);
    let latencies = std::mem::take(&mut *latencies.lock().await);
    let first_error = first_error.lock().await.clone();
    Summary::new(
        ok,
        errors.load(Ordering::Relaxed),
        ok * items,
        elapsed,
        latencies,
        first_error,
    )
}

fn body(query: &str, variables: Value) -> Vec<u8> {
    json!({ "query": query, "variables": variables })
        .to_string()
        .into_bytes()
}

/// `createEvents` bodies of `size` realistic events each.
pub fn batch_bodies(
    seed: u64,
    count: usize,
    size: usize,
    spread: Option<chrono::Duration>,
) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let now = Utc::now();
    (0..count)
        .map(|_| {
            let events: Vec<Value> = (0..size)
                .map(|_| data::event(&mut rng, now, spread).to_input())
                .collect();
            body(CREATE_EVENTS, json!({"i": {"events": events}}))
        })
        .collect()
}

async fn sequential(conn: &mut Conn, token: Option<&str>, body: &[u8], n: usize) -> Summary {
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        if let Ok(r) = conn.post_json("/graphql", token, body).await
            && ok_response(r.status, &r.body)
        {
            lat.push(t.elapsed());
        }
    }
    let ok = lat.len() as u64;
    Summary::new(ok, n as u64 - ok, ok, start.elapsed(), lat, None)
}

/// The cost of authentication: `{ __typename }` anonymous vs with a token
/// (one indexed read of the credential per request, no cache).
pub async fn auth_cost(server: &Server, n: usize) -> Value {
    let mut conn = Conn::new(server.addr);
    let q = json!({"query": "{ __typename }"}).to_string().into_bytes();
    let _ = sequential(&mut conn, None, &q, n / 4).await;
    let anon = sequential(&mut conn, None, &q, n).await;
    let authed = sequential(&mut conn, Some(&server.token), &q, n).await;
    let cost = authed.ms(0.5) - anon.ms(0.5);
    println!(
        "  auth: anonymous p50 {:.3} ms, authenticated p50 {:.3} ms -> one credential lookup costs ~{:.3} ms",
        anon.ms(0.5),
        authed.ms(0.5),
        cost
    );
    json!({"anonymous": anon.to_json(), "authenticated": authed.to_json(), "auth_cost_p50_ms": cost})
}

/// Batch ingest: `createEvents` with 1,000 realistic events per request.
pub async fn batch(server: &Server, workers: usize, total_events: u64) -> Value {
    let bodies = Arc::new(batch_bodies(7, 16, 1000, None));
    // Warm up.
    let _ = load(
        server.addr,
        &server.token,
        bodies.clone(),
        workers,
        Duration::from_secs(60),
        1000,
        Some(4),
    )
    .await;
    let requests = total_events.div_ceil(1000);
    let s = load(
        server.addr,
        &server.token,
        bodies,
        workers,
        Duration::from_secs(600),
        1000,
        Some(requests),
    )
    .await;
    println!(
        "  batch createEvents (1,000 events/request, {workers} clients): {:.0} events/s over {} events, p50 {:.1} ms, p99 {:.1} ms, errors {}{}",
        s.items_per_sec(),
        s.items,
        s.ms(0.5),
        s.ms(0.99),
        s.errors,
        s.first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    json!({"workers": workers, "summary": s.to_json()})
}

/// `COPY` of the same kind of rows into the same table by `psql`: the ceiling.
pub async fn copy(psql_url: &str, rows: u64, dir: &Path) -> Result<Value, String> {
    let path = dir.join("bench-copy.csv");
    let mut rng = Rng::new(11);
    let now = Utc::now();
    let mut csv = String::with_capacity(rows as usize * 400);
    for _ in 0..rows {
        let e = data::event(&mut rng, now, None);
        csv.push_str(&e.to_csv(uuid::Uuid::now_v7(), now));
    }
    std::fs::write(&path, csv).map_err(|e| format!("write {}: {e}", path.display()))?;
    let command = format!(
        "\\copy events (id, event_type, source, message, level, tags, payload, \"timestamp\", received_at) FROM '{}' WITH (FORMAT csv)",
        path.display()
    );
    let start = Instant::now();
    let out = tokio::process::Command::new("psql")
        .arg(psql_url)
        .arg("-v")
        .arg("ON_ERROR_STOP=1")
        .arg("-q")
        .arg("-c")
        .arg(&command)
        .output()
        .await
        .map_err(|e| format!("psql: {e}"))?;
    let elapsed = start.elapsed();
    let _ = std::fs::remove_file(&path);
    if !out.status.success() {
        return Err(format!(
            "psql COPY failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let rate = rows as f64 / elapsed.as_secs_f64();
    println!(
        "  psql COPY of {rows} rows into events: {rate:.0} rows/s ({:.2} s)",
        elapsed.as_secs_f64()
    );
    Ok(json!({"rows": rows, "elapsed_s": elapsed.as_secs_f64(), "rows_per_s": rate}))
}

/// Single `createEvent` requests at each concurrency for `secs` seconds.
pub async fn single(server: &Server, levels: &[usize], secs: u64) -> Value {
    let mut rng = Rng::new(3);
    let now = Utc::now();
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..4096)
            .map(|_| {
                body(
                    CREATE_EVENT,
                    json!({"i": data::event(&mut rng, now, None).to_input()}),
                )
            })
            .collect(),
    );
    let mut runs = Vec::new();
    let mut peak: f64 = 0.0;
    for &c in levels {
        let _ = load(
            server.addr,
            &server.token,
            bodies.clone(),
            c,
            Duration::from_secs(1),
            1,
            None,
        )
        .await;
        let s = load(
            server.addr,
            &server.token,
            bodies.clone(),
            c,
            Duration::from_secs(secs),
            1,
            None,
        )
        .await;
        peak = peak.max(s.ops_per_sec());
        println!(
            "  single createEvent, {c:>3} clients: {:>7.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, errors {}{}",
            s.ops_per_sec(),
            s.ms(0.5),
            s.ms(0.99),
            s.ms(1.0),
            s.errors,
            s.first_error
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
        runs.push(json!({"clients": c, "summary": s.to_json()}));
    }
    let at_max = runs
        .last()
        .and_then(|r| r["summary"]["ops_per_s"].as_f64())
        .unwrap_or(0.0);
    println!(
        "  single createEvent: peak {peak:.0} req/s; at {} clients {:.0}% of peak",
        levels.last().copied().unwrap_or(0),
        100.0 * at_max / peak.max(1.0)
    );
    json!({"runs": runs, "peak_ops_per_s": peak, "last_vs_peak": at_max / peak.max(1.0)})
}

/// Fills the table up to `target` events, back-dated over the last 24 hours.
pub async fn fill(server: &Server, stored: u64, target: u64) -> Value {
    if stored >= target {
        return json!({"added": 0});
    }
    let bodies = Arc::new(batch_bodies(
        21,
        32,
        1000,
        Some(chrono::Duration::hours(24)),
    ));
    let requests = (target - stored).div_ceil(1000);
    let s = load(
        server.addr,
        &server.token,
        bodies,
        4,
        Duration::from_secs(3600),
        1000,
        Some(requests),
    )
    .await;
    println!(
        "  filled {} events (back-dated over 24 h) at {:.0} events/s, errors {}",
        s.items,
        s.items_per_sec(),
        s.errors
    );
    json!({"added": s.items, "summary": s.to_json()})
}

const SWEEPS: &str = "{ tasks(filter: {taskType: \"monitoring_event_processing\", statuses: [SUCCEEDED]}, last: 1) { edges { node { startedAt result } } } }";

/// Waits until the server's background enrichment (the event-processing
/// sweeps, which fingerprint every stored event) has caught up with what was
/// stored before `since`: the latest finished sweep started after `since`
/// and left nothing remaining. Returns how long that took, or `None` if it
/// did not happen within `limit`.
pub async fn settle(
    server: &Server,
    since: chrono::DateTime<Utc>,
    limit: Duration,
) -> Option<Duration> {
    let body = json!({ "query": SWEEPS }).to_string().into_bytes();
    let mut conn = Conn::new(server.addr);
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(r) = conn.post_json("/graphql", Some(&server.token), &body).await {
            let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            let node = &v["data"]["tasks"]["edges"][0]["node"];
            let started = node["startedAt"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            if started.is_some_and(|t| t >= since)
                && node["result"]["more_remaining"] == json!(false)
            {
                return Some(start.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// `events(filter: {sources: [one], from: now - 1h}, first: 100)`, one client;
/// `when` says what else the server is doing (printed).
pub async fn query(server: &Server, n: usize, when: &str) -> Value {
    let from = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let bodies: Vec<Vec<u8>> = (0..data::SOURCES)
        .map(|i| body(QUERY, json!({"s": data::source(i), "from": from})))
        .collect();
    let mut conn = Conn::new(server.addr);
    // Check the result shape once.
    let r = conn
        .post_json("/graphql", Some(&server.token), &bodies[0])
        .await
        .unwrap_or_else(|e| crate::http::Response {
            status: 0,
            body: e.into_bytes(),
        });
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let returned = v["data"]["events"]["edges"]
        .as_array()
        .map(|a| a.len())
        .unwrap_or(0);
    for i in 0..200 {
        let _ = conn
            .post_json("/graphql", Some(&server.token), &bodies[i % bodies.len()])
            .await;
    }
    let mut lat = Vec::with_capacity(n);
    let mut errors = 0;
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        match conn
            .post_json("/graphql", Some(&server.token), &bodies[i % bodies.len()])
            .await
        {
            Ok(r) if ok_response(r.status, &r.body) => lat.push(t.elapsed()),
            _ => errors += 1,
        }
    }
    let s = Summary::new(
        lat.len() as u64,
        errors,
        lat.len() as u64,
        start.elapsed(),
        lat,
        None,
    );
    println!(
        "  query events(sources: [one of 10], from: now-1h, first: 100), {when} -> {returned} rows: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, errors {}",
        s.ms(0.5),
        s.ms(0.95),
        s.ms(0.99),
        s.errors
    );
    json!({"rows_returned": returned, "summary": s.to_json()})
}
