//! `sightline-bench`: starts the release server on a database and measures
//! ingest and query performance (see `bench/run.sh` for the usual run on
//! SQLite and then on a fresh PostgreSQL database).
//!
//! Scenarios, in order (choose with `--only`):
//! - `auth`: the per-request cost of authentication;
//! - `batch`: `createEvents` with 1,000 realistic events per request;
//! - `copy` (PostgreSQL, needs `--psql-url`): `psql \copy` of as many rows of
//!   the same kind into the same table, the ceiling batch ingest is held to;
//! - `single`: single `createEvent` requests at each `--levels` concurrency;
//! - `fill`: tops the table up to `--stored` events back-dated over 24 hours;
//! - `query`: `events(filter: {sources: [s], from: now-1h}, first: 100)`,
//!   right after the writes and again once background enrichment (the
//!   event-processing sweeps) has caught up with them;
//! - `fanout` (not in the default list): `--subscribers` WebSocket
//!   subscribers of `eventCreated` spread over `--replicas` servers (more
//!   than one needs PostgreSQL), events written at `--fanout-rate` per second
//!   through all of them; delivery latency, missed count and RSS per server.
//!
//! New scenarios go in `scenarios.rs` (or a module of their own) and get a
//! name here; they receive the running [`server::Server`].

#![allow(clippy::print_stdout)]

mod data;
mod fanout;
mod http;
mod scenarios;
mod server;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};

/// Measures a release Sightline server.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Database the server runs on (a fresh one: the run fills it).
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: String,
    /// PostgreSQL URL for `psql` to `COPY` into the same database (enables `copy`).
    #[arg(long)]
    psql_url: Option<String>,
    /// The server binary.
    #[arg(long, default_value_os_t = server::default_bin())]
    server_bin: PathBuf,
    /// Where to write the JSON results.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Directory for logs and scratch files.
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// Scenarios to run, comma-separated.
    #[arg(long, default_value = "auth,batch,copy,single,fill,query")]
    only: String,
    /// Events written by the batch scenario (and copied by `copy`).
    #[arg(long, default_value_t = 200_000)]
    batch_events: u64,
    /// Concurrent clients of the batch scenario.
    #[arg(long, default_value_t = 4)]
    batch_clients: usize,
    /// Concurrency levels of the single-event scenario.
    #[arg(long, default_value = "1,4,16,64,256", value_delimiter = ',')]
    levels: Vec<usize>,
    /// Seconds per concurrency level.
    #[arg(long, default_value_t = 8)]
    single_secs: u64,
    /// Events stored before the query scenario.
    #[arg(long, default_value_t = 1_000_000)]
    stored: u64,
    /// Queries measured.
    #[arg(long, default_value_t = 2000)]
    queries: usize,
    /// Measure an already running server at this address (e.g. one started
    /// under a profiler) instead of starting one; it must use the bench
    /// admin password.
    #[arg(long)]
    attach: Option<std::net::SocketAddr>,
    /// Servers the fan-out scenario runs on (several replicas of one
    /// PostgreSQL database; 1 on SQLite).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Subscriber counts of the fan-out scenario (one run each).
    #[arg(long, default_value = "1000", value_delimiter = ',')]
    subscribers: Vec<usize>,
    /// Events per second written during a fan-out run.
    #[arg(long, default_value_t = 20)]
    fanout_rate: u32,
    /// Seconds of writing per fan-out run.
    #[arg(long, default_value_t = 10)]
    fanout_secs: u64,
    /// A label for this run (default: the database kind).
    #[arg(long)]
    label: Option<String>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("sightline-bench: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let kind = if args.database_url.starts_with("postgres") {
        "postgresql"
    } else {
        "sqlite"
    };
    let label = args.label.clone().unwrap_or_else(|| kind.to_owned());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    std::fs::create_dir_all(&args.work_dir).map_err(|e| e.to_string())?;
    let log = args.work_dir.join(format!("server-{label}.log"));
    println!(
        "== {label}: {} cores; server {} (log {})",
        cores,
        args.server_bin.display(),
        log.display()
    );
    let server = match args.attach {
        Some(addr) => server::Server::attach(addr).await?,
        None => server::Server::start(&args.server_bin, &args.database_url, &log).await?,
    };
    let only: Vec<&str> = args.only.split(',').map(str::trim).collect();
    let mut results = serde_json::Map::new();
    results.insert("label".into(), json!(label));
    results.insert("backend".into(), json!(kind));
    results.insert("cores".into(), json!(cores));
    results.insert("started_at".into(), json!(chrono::Utc::now().to_rfc3339()));
    let mut stored: u64 = 0;
    let mut replicas: Vec<server::Server> = Vec::new();
    let outcome: Result<(), String> = async {
        if only.contains(&"auth") {
            results.insert("auth".into(), scenarios::auth_cost(&server, 3000).await);
        }
        if only.contains(&"batch") {
            let r = scenarios::batch(&server, args.batch_clients, args.batch_events).await;
            stored += r["summary"]["items"].as_u64().unwrap_or(0) + 4000;
            results.insert("batch".into(), r);
        }
        if only.contains(&"copy")
            && let Some(url) = &args.psql_url
        {
            let r = scenarios::copy(url, args.batch_events, &args.work_dir).await?;
            stored += args.batch_events;
            if let (Some(copy), Some(batch)) = (
                r["rows_per_s"].as_f64(),
                results
                    .get("batch")
                    .and_then(|b| b["summary"]["items_per_s"].as_f64()),
            ) {
                println!(
                    "  batch ingest reaches {:.0}% of the COPY rate",
                    100.0 * batch / copy
                );
                results.insert("batch_vs_copy".into(), json!(batch / copy));
            }
            results.insert("copy".into(), r);
        }
        if only.contains(&"single") {
            let r = scenarios::single(&server, &args.levels, args.single_secs).await;
            for run in r["runs"].as_array().into_iter().flatten() {
                stored += run["summary"]["ok"].as_u64().unwrap_or(0);
            }
            results.insert("single".into(), r);
        }
        if only.contains(&"fill") {
            let r = scenarios::fill(&server, stored, args.stored).await;
            stored += r["added"].as_u64().unwrap_or(0);
            results.insert("fill".into(), r);
        }
        results.insert("stored_events_approx".into(), json!(stored));
        if only.contains(&"query") {
            // First as it is right after the writes (background enrichment
            // of the new events competes), then once that has caught up.
            let stored_until = chrono::Utc::now();
            let busy = scenarios::query(&server, args.queries, "right after the writes").await;
            let waited = scenarios::settle(&server, stored_until, Duration::from_secs(900)).await;
            let settled = match waited {
                Some(w) => {
                    let when = format!("enrichment caught up (after {:.0} s)", w.as_secs_f64());
                    scenarios::query(&server, args.queries, &when).await
                }
                None => {
                    println!("  background enrichment did not catch up within 15 minutes");
                    Value::Null
                }
            };
            results.insert(
                "query".into(),
                json!({
                    "right_after_writes": busy,
                    "enrichment_caught_up": settled,
                    "settle_secs": waited.map(|w| w.as_secs_f64()),
                }),
            );
        }
        if only.contains(&"fanout") {
            if args.replicas > 1 && kind != "postgresql" {
                return Err("--replicas above 1 needs a PostgreSQL database".to_owned());
            }
            for i in 1..args.replicas {
                let log = args.work_dir.join(format!("server-{label}-r{i}.log"));
                replicas
                    .push(server::Server::start(&args.server_bin, &args.database_url, &log).await?);
            }
            let all: Vec<&server::Server> = std::iter::once(&server).chain(&replicas).collect();
            let mut runs = Vec::new();
            for &n in &args.subscribers {
                runs.push(fanout::run(&all, n, args.fanout_rate, args.fanout_secs).await);
            }
            results.insert("fanout".into(), json!(runs));
        }
        Ok(())
    }
    .await;
    for r in replicas.drain(..) {
        r.stop().await;
    }
    server.stop().await;
    outcome?;
    let results = Value::Object(results);
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(
            out,
            serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("write {}: {e}", out.display()))?;
        println!("results written to {}", out.display());
    }
    Ok(())
}
