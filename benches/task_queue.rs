//! Task queue throughput: enqueues no-op tasks, then drains them with
//! several concurrent workers (each claim is the real `FOR UPDATE SKIP
//! LOCKED` / single-statement claim, each completion the real update).
//!
//! ```sh
//! cargo bench --bench task_queue                                  # SQLite
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1/postgres cargo bench --bench task_queue
//! ```
//! Options (env): `BENCH_TASKS` (default 5000), `BENCH_WORKERS` (default 4).

// A benchmark reports on standard output.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use serde_json::json;
use sightline::tasks::registry::{Options, handler_fn};
use sightline::tasks::worker::{Outcome, try_execute_task};
use sightline::tasks::{NewTask, service};
use sightline::{Application, Config};
use sqlx::Connection;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let tasks = env_num("BENCH_TASKS", 5000);
    let workers = env_num("BENCH_WORKERS", 4);
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, pg) = match std::env::var("BENCH_DATABASE_URL") {
        Ok(admin) if !admin.is_empty() => {
            let name = format!("sightline_bench_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::postgres::PgConnection::connect(&admin)
                .await
                .expect("connect");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create database");
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
            (format!("{base}/{name}"), Some((admin, name)))
        }
        _ => (
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("bench.db").display()
            ),
            None,
        ),
    };
    let mut config = Config::for_tests(&url);
    config.task_workers = 0;
    config.scheduler = false;
    config.admin_password = Some("bench-password-123".into());
    let app = Application::build(config).await.expect("server builds");
    let state = app.state().clone();
    state.tasks.register(
        "bench_noop",
        "does nothing",
        Options::default(),
        handler_fn(|_| async { Ok(json!(null)) }),
    );

    let started = Instant::now();
    for i in 0..tasks {
        service::enqueue(&state, None, NewTask::new("bench_noop", json!({"i": i})))
            .await
            .expect("enqueue");
    }
    let enqueue = started.elapsed();

    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let state = state.clone();
        handles.push(tokio::spawn(async move {
            let name = format!("bench-{w}");
            let mut done = 0usize;
            loop {
                match try_execute_task(&state, &name).await {
                    Ok(Outcome::Idle) => break,
                    Ok(Outcome::Succeeded { .. }) => done += 1,
                    Ok(other) => panic!("unexpected outcome {other:?}"),
                    // SQLite's single writer may be busy: try again.
                    Err(e) if e.code == sightline::ErrorCode::Unavailable => {}
                    Err(e) => panic!("worker failed: {}", e.describe()),
                }
            }
            done
        }));
    }
    let mut done = 0;
    for h in handles {
        done += h.await.expect("worker");
    }
    let drain = started.elapsed();
    assert_eq!(done, tasks, "every task ran exactly once");
    let backend = if pg.is_some() { "PostgreSQL" } else { "SQLite" };
    println!(
        "{backend}: enqueued {tasks} tasks in {:.2?} ({:.0}/s); {workers} workers ran them in {:.2?} ({:.0}/s)",
        enqueue,
        tasks as f64 / enqueue.as_secs_f64(),
        drain,
        tasks as f64 / drain.as_secs_f64(),
    );
    drop(state);
    drop(app);
    if let Some((admin, name)) = pg
        && let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&admin).await
    {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}
