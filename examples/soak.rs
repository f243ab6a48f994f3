//! Soak load against a running Sightline server (see `scripts/soak.sh`,
//! which starts one and runs this): for `--seconds`, concurrent workers mix
//! single and batch event ingest, metric batches, filtered event queries,
//! metric series queries and incident changes, while `--subscribers` live
//! `eventCreated` subscriptions stay open and `--rules` alert rules evaluate
//! every few seconds. Metric batches spread over 500 hosts of one gauge, so
//! each series gets about a sample a second, and each `metricSeries` reads
//! ten of them over the last hour. Every `--sample-secs` it prints the
//! server's RSS (from `/proc/<pid>/status`, with its anonymous, file and
//! shared parts), the throughput, and the count, p99 and worst latency per
//! operation over the interval; at the end, p50/p99 per operation over the
//! whole run and the error count.
//!
//! Exit status 1 when any request failed, when a subscriber missed events,
//! or when RSS grew by more than `--max-growth` percent after warm-up (the
//! first quarter of the run). RSS is also read every `--rss-every` seconds,
//! and growth compares the median of the reads in the eighth of the run
//! right after warm-up with the median of the reads in its last eighth: one
//! read swings by ±10 MiB within a minute as requests come and go (124 to
//! 137 MiB between two 30-s samples of one run), so growth from one sample
//! to another measured that swing more than any trend; the medians do not.
//! The growth from the warm-up sample to the last one is printed too.
//!
//! ```text
//! cargo run --release --example soak -- --base http://127.0.0.1:8080 \
//!     --password "$ADMIN_PASSWORD" --pid "$SERVER_PID" --seconds 600
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// The server, e.g. `http://127.0.0.1:8080`.
    #[arg(long)]
    base: String,
    /// The admin password.
    #[arg(long, env = "SOAK_ADMIN_PASSWORD")]
    password: String,
    /// The server's process id, for RSS samples.
    #[arg(long)]
    pid: u32,
    /// How long to run.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 30)]
    sample_secs: u64,
    /// Concurrent request loops.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Live subscribers.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Alert rules evaluating during the run.
    #[arg(long, default_value_t = 20)]
    rules: usize,
    /// Largest allowed RSS growth after warm-up, in percent.
    #[arg(long, default_value_t = 10.0)]
    max_growth: f64,
    /// Seconds between the RSS reads that growth is computed from.
    #[arg(long, default_value_t = 5)]
    rss_every: u64,
    /// The server's SQLite file: each sample also gives its size and its
    /// write-ahead log's, and the log must stay under `--max-wal-mib`.
    #[arg(long)]
    database_file: Option<std::path::PathBuf>,
    /// Largest allowed SQLite write-ahead log, in MiB.
    #[arg(long, default_value_t = 256)]
    max_wal_mib: u64,
}

/// Reads the server's RSS every `every` until `stop`, as (seconds since
/// `started`, KiB).
async fn read_rss(
    pid: u32,
    every: Duration,
    started: Instant,
    out: Arc<Mutex<Vec<(f64, u64)>>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        if let Some(rss) = status_kib(pid, "VmRSS") {
            out.lock()
                .await
                .push((started.elapsed().as_secs_f64(), rss));
        }
        tokio::time::sleep(every).await;
    }
}

/// The median of the reads taken in `[from, to)` seconds (0 when none).
fn median_within(reads: &[(f64, u64)], from: f64, to: f64) -> u64 {
    let mut v: Vec<u64> = reads
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|r| r.1)
        .collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// The size of a file in MiB (0 when it does not exist).
fn file_mib(path: &std::path::Path) -> f64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64 / (1024.0 * 1024.0)
}

/// The database file and its write-ahead log, in MiB.
fn database_mib(file: &std::path::Path) -> (f64, f64) {
    let mut wal = file.as_os_str().to_owned();
    wal.push("-wal");
    (file_mib(file), file_mib(std::path::Path::new(&wal)))
}

/// Hosts (label sets) of the `soak_load` metric; `metricSeries` reads ten.
const SERIES: usize = 500;

const OPS: [&str; 7] = [
    "createEvent",
    "createEvents(100)",
    "submitMetrics(50)",
    "events(filter)",
    "metricSeries",
    "incident lifecycle",
    "live event",
];

#[derive(Default)]
struct Stats {
    latencies: Mutex<BTreeMap<&'static str, Vec<u32>>>,
    errors: AtomicU64,
    requests: AtomicU64,
    first_errors: Mutex<Vec<String>>,
    live_sent: AtomicU64,
    delivered: AtomicU64,
}

impl Stats {
    async fn record(&self, op: &'static str, took: Duration, result: Result<(), String>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.latencies
            .lock()
            .await
            .entry(op)
            .or_default()
            .push(took.as_micros().min(u128::from(u32::MAX)) as u32);
        if let Err(e) = result {
            self.errors.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first_errors.lock().await;
            if first.len() < 10 {
                first.push(format!("{op}: {e}"));
            }
        }
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn gql(&self, query: &str, variables: Value) -> Result<Value, String> {
        let resp = self
            .http
            .post(format!("{}/graphql", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(json!({ "query": query, "variables": variables }).to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        let v: Value =
            serde_json::from_str(&text).map_err(|_| format!("status {status}: {text}"))?;
        if status != 200 || v.get("errors").is_some() {
            return Err(format!("status {status}: {}", truncate(&text)));
        }
        Ok(v["data"].clone())
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `RssAnon`, `RssFile`,
/// `RssShmem`).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.split(':').next() == Some(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn mib(kib: Option<u64>) -> f64 {
    kib.unwrap_or(0) as f64 / 1024.0
}

async fn login(http: &reqwest::Client, base: &str, password: &str) -> String {
    let body = json!({
        "query": "mutation($p: String!) { login(input: {username: \"admin\", password: $p}) { token } }",
        "variables": { "p": password },
    });
    let v: Value = http
        .post(format!("{base}/graphql"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("login request")
        .json()
        .await
        .expect("login answer");
    v["data"]["login"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("login failed: {v}"))
        .to_owned()
}

/// One live subscriber: counts the `next` messages it receives.
async fn subscriber(
    base: String,
    token: String,
    stats: Arc<Stats>,
    ready: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let url = format!("{}/graphql", base.replacen("http", "ws", 1));
    let mut request = url.into_client_request().expect("ws request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut ws, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(c) => c,
        Err(e) => {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            stats
                .first_errors
                .lock()
                .await
                .push(format!("subscriber connect: {e}"));
            return;
        }
    };
    let init =
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
    let sub = json!({"id": "1", "type": "subscribe", "payload": {
        "query": "subscription { eventCreated(filter: {sources: [\"soak-live\"]}) { id } }"
    }});
    if ws
        .send(Message::Text(init.to_string().into()))
        .await
        .is_err()
        || ws
            .send(Message::Text(sub.to_string().into()))
            .await
            .is_err()
    {
        stats.errors.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut counted_ready = false;
    while !stop.load(Ordering::Relaxed) {
        let msg = match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            Err(_) => continue,
            Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(m))) => m,
        };
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
            match v["type"].as_str() {
                Some("connection_ack") if !counted_ready => {
                    counted_ready = true;
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                Some("next") => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Some("error") => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    stats
                        .first_errors
                        .lock()
                        .await
                        .push(format!("subscription: {t}"));
                }
                _ => {}
            }
        }
    }
    if !stop.load(Ordering::Relaxed) {
        stats.errors.fetch_add(1, Ordering::Relaxed);
        stats
            .first_errors
            .lock()
            .await
            .push("a subscriber was disconnected".to_owned());
    }
    let _ = ws.close(None).await;
}

async fn worker(n: usize, client: Arc<Client>, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let op = OPS[(n + i) % (OPS.len() - 1)];
        let started = Instant::now();
        let result = match op {
            "createEvent" => client
                .gql(
                    "mutation($i: CreateEventInput!) { createEvent(input: $i) { id } }",
                    json!({"i": {"eventType": "LOG", "source": format!("soak-{}", i % 10), "level": "info",
                        "message": format!("w{n} i{i}"), "tags": {"worker": n, "env": "soak"}}}),
                )
                .await
                .map(drop),
            "createEvents(100)" => {
                let events: Vec<Value> = (0..100)
                    .map(|j| json!({"eventType": "LOG", "source": format!("soak-{}", j % 10),
                        "level": if j % 7 == 0 { "error" } else { "info" }, "tags": {"j": j}}))
                    .collect();
                client
                    .gql(
                        "mutation($e: [CreateEventInput!]!) { createEvents(input: {events: $e}) { accepted rejected { index } } }",
                        json!({"e": events}),
                    )
                    .await
                    .and_then(|d| {
                        if d["createEvents"]["accepted"] == 100 { Ok(()) } else { Err(d.to_string()) }
                    })
            }
            "submitMetrics(50)" => {
                // Spread over SERIES hosts, so each series gets a sample
                // every second or so (as from a scraper), not dozens a second.
                let metrics: Vec<Value> = (0..50)
                    .map(|j| json!({"name": "soak_load", "metricType": "GAUGE",
                        "value": ((i * 31 + j) % 100) as f64,
                        "labels": {"host": format!("h{}", (n * 7919 + i * 50 + j) % SERIES)}}))
                    .collect();
                client
                    .gql(
                        "mutation($m: [SubmitMetricInput!]!) { submitMetrics(input: {metrics: $m}) { accepted } }",
                        json!({"m": metrics}),
                    )
                    .await
                    .map(drop)
            }
            "events(filter)" => client
                .gql(
                    "query($s: [String!]) { events(first: 50, filter: {sources: $s, minLevel: INFO, tags: [{key: \"env\", value: \"soak\"}]}) { edges { node { id source } } } }",
                    json!({"s": [format!("soak-{}", i % 10)]}),
                )
                .await
                .map(drop),
            "metricSeries" => client
                .gql(
                    "query($re: String!) { metricSeries(name: \"soak_load\", matchers: [{label: \"host\", op: RE, value: $re}], step: 10, aggregation: AVG) { labels points { value } } }",
                    json!({"re": format!("h{}[0-9]", i % 49 + 1)}),
                )
                .await
                .map(drop),
            _ => incident_lifecycle(&client, n, i).await,
        };
        stats.record(op, started.elapsed(), result).await;
    }
}

async fn incident_lifecycle(client: &Client, n: usize, i: usize) -> Result<(), String> {
    let d = client
        .gql(
            "mutation($t: String!) { createIncident(input: {title: $t, severity: LOW}) { id } }",
            json!({"t": format!("soak w{n} i{i}")}),
        )
        .await?;
    let id = d["createIncident"]["id"].clone();
    client
        .gql(
            "mutation($id: ID!) { acknowledgeIncident(input: {id: $id}) { id } }",
            json!({"id": id}),
        )
        .await?;
    client
        .gql(
            "mutation($id: ID!) { resolveIncident(input: {id: $id, rootCause: \"soak\"}) { id } }",
            json!({"id": id}),
        )
        .await?;
    Ok(())
}

/// Two live events a second: each should reach every subscriber.
async fn live_events(client: Arc<Client>, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let started = Instant::now();
        let result = client
            .gql(
                "mutation { createEvent(input: {eventType: LOG, source: \"soak-live\"}) { id } }",
                json!({}),
            )
            .await
            .map(drop);
        if result.is_ok() {
            stats.live_sent.fetch_add(1, Ordering::Relaxed);
        }
        stats.record("live event", started.elapsed(), result).await;
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx]) / 1000.0
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let token = login(&http, &args.base, &args.password).await;
    let client = Arc::new(Client {
        http,
        base: args.base.clone(),
        token: token.clone(),
    });
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));

    for r in 0..args.rules {
        client
            .gql(
                "mutation($n: String!, $q: String!) { createAlertRule(input: {name: $n, query: $q, threshold: 90, evaluationInterval: 5, severity: INFO}) { id } }",
                json!({"n": format!("soak rule {r}"), "q": format!("avg(soak_load{{host=\"h{}\"}}[1m])", r % 10)}),
            )
            .await
            .expect("create alert rule");
    }

    let ready = Arc::new(AtomicU64::new(0));
    // Subscribers stop only after the last deliveries were counted.
    let stop_subs = Arc::new(AtomicBool::new(false));
    let mut subs = Vec::new();
    for _ in 0..args.subscribers {
        subs.push(tokio::spawn(subscriber(
            args.base.clone(),
            token.clone(),
            stats.clone(),
            ready.clone(),
            stop_subs.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while (ready.load(Ordering::Relaxed) as usize) < args.subscribers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "soak: {} subscribers connected, {} rules, {} workers, {} s",
        ready.load(Ordering::Relaxed),
        args.rules,
        args.workers,
        args.seconds
    );
    // Subscriptions are set up right after the ack; one live event after a
    // short settling period is counted only if all could see it.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..args.workers {
        tasks.push(tokio::spawn(worker(
            n,
            client.clone(),
            stats.clone(),
            stop.clone(),
        )));
    }
    tasks.push(tokio::spawn(live_events(
        client.clone(),
        stats.clone(),
        stop.clone(),
    )));

    let rss_reads: Arc<Mutex<Vec<(f64, u64)>>> = Arc::default();
    tasks.push(tokio::spawn(read_rss(
        args.pid,
        Duration::from_secs(args.rss_every.max(1)),
        started,
        rss_reads.clone(),
        stop.clone(),
    )));
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let mut largest_wal: f64 = 0.0;
    let mut last_requests = 0;
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    let end = started + Duration::from_secs(args.seconds);
    println!(
        "{:>6} {:>10} {:>8} {:>8} {:>8} {:>10} {:>8}",
        "t(s)", "RSS(MiB)", "anon", "file", "shmem", "req/s", "errors"
    );
    loop {
        let next = (Instant::now() + Duration::from_secs(args.sample_secs)).min(end);
        tokio::time::sleep_until(next.into()).await;
        let t = started.elapsed().as_secs();
        let rss = status_kib(args.pid, "VmRSS").unwrap_or(0);
        let requests = stats.requests.load(Ordering::Relaxed);
        let rate = (requests - last_requests) as f64 / args.sample_secs.max(1) as f64;
        last_requests = requests;
        samples.push((t, rss));
        println!(
            "{t:>6} {:>10.1} {:>8.1} {:>8.1} {:>8.1} {rate:>10.1} {:>8}",
            rss as f64 / 1024.0,
            mib(status_kib(args.pid, "RssAnon")),
            mib(status_kib(args.pid, "RssFile")),
            mib(status_kib(args.pid, "RssShmem")),
            stats.errors.load(Ordering::Relaxed)
        );
        if let Some(file) = &args.database_file {
            let (db, wal) = database_mib(file);
            largest_wal = largest_wal.max(wal);
            println!("       database {db:.1} MiB, write-ahead log {wal:.1} MiB");
        }
        // p99 and worst latency per operation over this interval.
        let lat = stats.latencies.lock().await;
        let mut parts = Vec::new();
        for op in OPS {
            let all = lat.get(op).map(Vec::as_slice).unwrap_or_default();
            let from = seen.insert(op, all.len()).unwrap_or(0).min(all.len());
            let mut v = all[from..].to_vec();
            v.sort_unstable();
            let worst = v.last().map(|m| f64::from(*m) / 1000.0).unwrap_or(0.0);
            parts.push(format!(
                "{op} {}:{:.0}/{worst:.0}",
                v.len(),
                percentile(&v, 0.99)
            ));
        }
        drop(lat);
        println!("       count:p99/max ms  {}", parts.join("  "));
        if Instant::now() >= end {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // Let the last live events reach the subscribers before counting.
    let expected = stats.live_sent.load(Ordering::Relaxed) * ready.load(Ordering::Relaxed);
    let settle = Instant::now() + Duration::from_secs(10);
    while stats.delivered.load(Ordering::Relaxed) < expected && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_subs.store(true, Ordering::Relaxed);
    for s in subs {
        let _ = s.await;
    }

    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "\n{:<20} {:>8} {:>9} {:>9} {:>9}",
        "operation", "count", "per s", "p50 ms", "p99 ms"
    );
    let lat = stats.latencies.lock().await;
    for op in OPS {
        let mut v = lat.get(op).cloned().unwrap_or_default();
        v.sort_unstable();
        println!(
            "{op:<20} {:>8} {:>9.1} {:>9.2} {:>9.2}",
            v.len(),
            v.len() as f64 / elapsed,
            percentile(&v, 0.5),
            percentile(&v, 0.99)
        );
    }
    let errors = stats.errors.load(Ordering::Relaxed);
    let delivered = stats.delivered.load(Ordering::Relaxed);
    println!(
        "live events: {} sent, {delivered} of {expected} deliveries",
        stats.live_sent.load(Ordering::Relaxed)
    );
    println!("errors: {errors}");
    for e in stats.first_errors.lock().await.iter() {
        println!("  {e}");
    }
    let warm_sample = samples
        .iter()
        .find(|(t, _)| *t >= args.seconds / 4)
        .or(samples.first())
        .map(|s| s.1)
        .unwrap_or(0);
    let last = samples.last().map(|s| s.1).unwrap_or(0);
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let percent = |from: u64, to: u64| {
        if from > 0 {
            (to as f64 - from as f64) / from as f64 * 100.0
        } else {
            0.0
        }
    };
    let reads = rss_reads.lock().await.clone();
    let run = args.seconds as f64;
    let (warm_from, window) = (run / 4.0, run / 8.0);
    let warm = median_within(&reads, warm_from, warm_from + window);
    let end = median_within(&reads, run - window, f64::INFINITY);
    let growth = percent(warm, end);
    println!(
        "RSS: median {:.1} MiB over {warm_from:.0}-{:.0} s, {:.1} MiB over the last {window:.0} s \
         ({} reads): growth {growth:.1} % (limit {} %); peak {:.1} MiB; \
         from the {:.0}-s sample to the last {:.1} %",
        mib(Some(warm)),
        warm_from + window,
        mib(Some(end)),
        reads.len(),
        args.max_growth,
        mib(Some(peak)),
        warm_from,
        percent(warm_sample, last)
    );
    let mut failed = false;
    if errors > 0 {
        println!("FAIL: {errors} errors");
        failed = true;
    }
    if delivered < expected {
        println!(
            "FAIL: subscribers missed {} deliveries",
            expected - delivered
        );
        failed = true;
    }
    if growth > args.max_growth {
        println!("FAIL: RSS grew {growth:.1} % after warm-up");
        failed = true;
    }
    if args.database_file.is_some() {
        println!(
            "largest write-ahead log: {largest_wal:.1} MiB (limit {} MiB)",
            args.max_wal_mib
        );
        if largest_wal > args.max_wal_mib as f64 {
            println!("FAIL: the write-ahead log grew to {largest_wal:.1} MiB");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
    println!("soak passed");
}
