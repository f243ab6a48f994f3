//! Benchmark of the monitoring statistics (`monitoringStats`,
//! `GET /api/v1/monitoring/stats`, the exposition's `monitoring_*` gauges)
//! at 1,000,000 stored events, on SQLite or PostgreSQL; target ≤ 5 ms.
//!
//! ```text
//! cargo run --release --example stats_bench                      # SQLite (temp file)
//! DATABASE_URL=postgres://postgres@127.0.0.1/bench_stats \
//!     cargo run --release --example stats_bench                  # PostgreSQL (an empty database)
//! BENCH_EVENTS=200000 cargo run --example stats_bench            # fewer events
//! ```
//!
//! Data, through the real write path (`create_events` / `create_metrics`,
//! which keep the counters in their transactions): `BENCH_EVENTS` events
//! (default 1,000,000) from 20 sources spread over the last two days,
//! 20,000 metric samples over 200 series, 50 incidents (half open) and one
//! firing alert. It then times [`monitoring_stats`] (200 calls after 10
//! warm-up calls: median, p95, max), checks its figures against full
//! counts, and for comparison times what the original design does on each
//! call: `COUNT(*)` over the whole events table and over the last hour.

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Statement};
use sightline::auth::{Credential, Identity, Role};
use sightline::incidents::service::NewIncident;
use sightline::metrics::NewMetric;
use sightline::stats::service::monitoring_stats;
use sightline::{Application, Config};

const SOURCES: usize = 20;
const SERIES: usize = 200;
const SAMPLES: usize = 20_000;
const INCIDENTS: usize = 50;
const CALLS: usize = 200;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

async fn scalar(db: &impl ConnectionTrait, sql: &str) -> Result<i64, Box<dyn std::error::Error>> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .ok_or("no row")?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events_wanted: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        )
    });
    let mut config = Config::for_tests(&url);
    config.admin_password = Some("bench-admin-password".into());
    config.alert_evaluator = false;
    config.task_workers = 0;
    config.scheduler = false;
    let app = Application::build(config).await?;
    let state = app.state().clone();
    let db = &state.db;
    println!("backend: {:?}", state.backend);

    let now = sightline::util::now();
    let started = Instant::now();
    // A database seeded by an earlier run is measured again as it is.
    let already = sightline::events::service::totals(db)
        .await
        .map_err(|e| e.describe())?
        .total as usize;
    if already >= events_wanted {
        println!("reusing the {already} events already stored");
    } else {
        seed(&state, events_wanted, now).await?;
    }
    println!(
        "data: {events_wanted} events, {SAMPLES} samples, {INCIDENTS} incidents, 1 rule, in {:.1?}",
        started.elapsed()
    );
    measure(&state, now).await
}

async fn seed(
    state: &sightline::AppState,
    events_wanted: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Box<dyn std::error::Error>> {
    let db = &state.db;
    let started = Instant::now();
    let mut stored = 0usize;
    while stored < events_wanted {
        let n = (events_wanted - stored).min(1_000);
        let batch: Vec<_> = (stored..stored + n)
            .map(|i| {
                let level = if i % 7 == 0 { "error" } else { "info" };
                let mut e = sightline::events::NewEvent::log(
                    format!("svc{}", i % SOURCES),
                    Some(level),
                    "x",
                );
                // Spread over two days, so "last hour" is a small part.
                e.timestamp =
                    Some(now - TimeDelta::milliseconds(((i * 172_800) % 172_800_000) as i64));
                e
            })
            .collect();
        sightline::events::create_events(db, None, batch)
            .await
            .map_err(|e| e.describe())?;
        stored += n;
        if stored.is_multiple_of(100_000) {
            println!("  {stored} events stored ({:.0?})", started.elapsed());
        }
    }
    for chunk in 0..SAMPLES / 1_000 {
        let batch: Vec<NewMetric> = (0..1_000)
            .map(|i| {
                let host = format!("h{}", (chunk * 1_000 + i) % SERIES);
                NewMetric::gauge("bench_load", (i % 100) as f64, &[("host", host.as_str())])
            })
            .collect();
        sightline::metrics::create_metrics(db, batch)
            .await
            .map_err(|e| e.describe())?;
    }
    let admin_row = sightline::auth::entity::user::Entity::find()
        .filter(sightline::auth::entity::user::Column::Username.eq("admin"))
        .one(db)
        .await?
        .ok_or("no admin user")?;
    let admin = Identity {
        user_id: admin_row.id,
        username: admin_row.username.clone(),
        role: Role::Admin,
        must_change_password: false,
        credential: Credential::Session {
            id: uuid::Uuid::nil(),
            expires_at: chrono::Utc::now() + TimeDelta::hours(1),
        },
    };
    let mut incident_ids = Vec::new();
    for i in 0..INCIDENTS {
        let inc = sightline::incidents::service::create(
            state,
            &admin,
            NewIncident {
                title: format!("bench incident {i}"),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.describe())?;
        incident_ids.push(inc.id);
    }
    for id in incident_ids.iter().take(INCIDENTS / 2) {
        sightline::incidents::service::resolve(state, &admin, *id, None)
            .await
            .map_err(|e| e.describe())?;
    }
    let rule = sightline::alerts::service::create_rule(
        state,
        &admin,
        sightline::alerts::model::RuleDraft::new("bench hot", "bench_load > 10"),
    )
    .await
    .map_err(|e| e.describe())?;
    sightline::alerts::evaluator::evaluate_rule(state, rule.id, sightline::util::now())
        .await
        .map_err(|e| e.describe())?;
    Ok(())
}

async fn measure(
    state: &sightline::AppState,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Box<dyn std::error::Error>> {
    let db = &state.db;
    if state.backend == sightline::db::Backend::Postgres {
        db.execute_unprepared("ANALYZE").await?;
    }

    for _ in 0..10 {
        monitoring_stats(db).await.map_err(|e| e.describe())?;
    }
    let mut times = Vec::with_capacity(CALLS);
    let mut last = None;
    for _ in 0..CALLS {
        let t = Instant::now();
        last = Some(monitoring_stats(db).await.map_err(|e| e.describe())?);
        times.push(t.elapsed());
    }
    times.sort();
    let stats = last.ok_or("no call")?;
    println!("figures: {}", serde_json::to_string(&stats)?);
    println!(
        "monitoring_stats over {CALLS} calls: median {}, p95 {}, max {}",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.95)),
        ms(*times.last().ok_or("no call")?)
    );

    // The original design's way, once each, for comparison (and as the check).
    let t = Instant::now();
    let total = scalar(db, "SELECT COUNT(*) FROM events").await?;
    let full_count = t.elapsed();
    let since = (now - TimeDelta::hours(1)).to_rfc3339();
    let t = Instant::now();
    let last_hour = scalar(
        db,
        &format!("SELECT COUNT(*) FROM events WHERE timestamp >= '{since}'"),
    )
    .await?;
    let hour_count = t.elapsed();
    println!(
        "for comparison, scanning: COUNT(*) FROM events = {total} in {}; events with a timestamp in the last hour = {last_hour} in {}",
        ms(full_count),
        ms(hour_count)
    );
    let samples = scalar(db, "SELECT COUNT(*) FROM metric_samples").await?;
    let firing = scalar(
        db,
        "SELECT COUNT(*) FROM alert_instances WHERE state = 'firing'",
    )
    .await?;
    let open = scalar(
        db,
        "SELECT COUNT(*) FROM incidents WHERE status IN ('open', 'investigating')",
    )
    .await?;
    let ok = stats.total_events == total as u64
        && stats.total_metrics == samples as u64
        && stats.open_incidents == open as u64
        && open as usize == INCIDENTS - INCIDENTS / 2
        && stats.active_alerts == firing as u64
        && firing > 0;
    println!(
        "figures match full counts: {}",
        if ok { "yes" } else { "NO" }
    );
    if !ok {
        return Err("the maintained figures disagree with full counts".into());
    }
    Ok(())
}
