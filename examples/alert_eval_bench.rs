//! Benchmark of the alert evaluator: the time to evaluate 1,000 rules over
//! 10,000 metric series (plus events), on SQLite or PostgreSQL.
//!
//! ```text
//! cargo run --release --example alert_eval_bench                 # SQLite (temp file)
//! DATABASE_URL=postgres://postgres@127.0.0.1/bench_alerts \
//!     cargo run --release --example alert_eval_bench             # PostgreSQL (an empty database)
//! ```
//!
//! Data: 10 gauge metrics × 1,000 series (labels `host`, `env`, `region`),
//! 10 samples per series over the last 5 minutes (100,000 samples), and
//! 10,000 log events from 20 sources. Rules, 1,000 in all:
//! 300 instant selectors over a whole metric (`m3{env=~"prod|stage"} > 95`),
//! 300 windowed per-series functions over ~110 series (`avg(m5{host=~"h1.*"}[5m]) > 90`),
//! 200 grouped windowed functions over 1,000 series (`p95(m7[5m]) by (region) > 80`),
//! 200 event counts (`count(events{level="error"}[5m]) > 40`).
//! It then times `evaluate_due_rules` three times: the first round (alerts
//! appear, transitions and alert events are written), a steady round (the
//! same alerts keep firing), and a round after the values changed (many
//! alerts resolve).

#![allow(clippy::print_stdout)]

use std::time::Instant;

use chrono::{TimeDelta, Utc};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use sightline::alerts::entity::{instance, transition};
use sightline::alerts::evaluator::evaluate_due_rules;
use sightline::alerts::model::RuleDraft;
use sightline::alerts::service::create_rule;
use sightline::auth::{Credential, Identity, Role};
use sightline::metrics::entity::{family, sample, series};
use sightline::{Application, Config};

const METRICS: usize = 10;
const SERIES_PER_METRIC: usize = 1_000;
const SAMPLES_PER_SERIES: usize = 10;
const EVENTS: usize = 10_000;

/// A deterministic pseudo-random number in `0..100`.
fn noise(a: usize, b: usize) -> f64 {
    let x = (a as u64)
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add((b as u64).wrapping_mul(1_442_695_040_888_963_407));
    ((x >> 33) % 100) as f64
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    let app = Application::build(config).await?;
    let state = app.state().clone();
    let db = &state.db;
    println!("backend: {:?}", state.backend);

    let now = sightline::util::now();
    let started = Instant::now();
    let mut series_rows = Vec::new();
    for m in 0..METRICS {
        let fam = family::Entity::insert(family::ActiveModel {
            name: Set(format!("m{m}")),
            metric_type: Set("gauge".into()),
            series_count: Set(SERIES_PER_METRIC as i64),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .exec(db)
        .await?
        .last_insert_id;
        for h in 0..SERIES_PER_METRIC {
            let labels = serde_json::json!({
                "env": if h % 2 == 0 { "prod" } else { "stage" },
                "host": format!("h{h}"),
                "region": format!("r{}", h % 10),
            });
            series_rows.push(series::ActiveModel {
                family_id: Set(fam),
                fingerprint: Set(sightline::util::sha256_hex(&labels.to_string())),
                labels: Set(labels),
                created_at: Set(now),
                last_sample_at: Set(Some(now)),
                last_value: Set(Some(noise(m, h))),
                total: Set(0.0),
                sample_count: Set(SAMPLES_PER_SERIES as i64),
                ..Default::default()
            });
        }
    }
    for chunk in series_rows.chunks(1_000) {
        series::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    let ids: Vec<i64> = series::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    let mut samples = Vec::with_capacity(ids.len() * SAMPLES_PER_SERIES);
    for (i, id) in ids.iter().enumerate() {
        for k in 0..SAMPLES_PER_SERIES {
            samples.push(sample::ActiveModel {
                series_id: Set(*id),
                timestamp: Set(now - TimeDelta::seconds(30 * (SAMPLES_PER_SERIES - 1 - k) as i64)),
                value: Set(noise(i, k)),
                ..Default::default()
            });
        }
    }
    for chunk in samples.chunks(1_000) {
        sample::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    let mut events = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let level = if i % 5 == 0 { "error" } else { "info" };
        let mut e = sightline::events::NewEvent::log(format!("svc{}", i % 20), Some(level), "x");
        e.timestamp = Some(now - TimeDelta::milliseconds((i * 25) as i64));
        events.push(e);
    }
    while !events.is_empty() {
        let rest = events.split_off(events.len().min(1_000));
        sightline::events::create_events(db, None, std::mem::replace(&mut events, rest))
            .await
            .map_err(|e| e.describe())?;
    }
    println!(
        "seeded {} series, {} samples, {EVENTS} events in {:.1?}",
        ids.len(),
        samples.len(),
        started.elapsed()
    );

    let admin = sightline::auth::entity::user::Entity::find()
        .filter(sightline::auth::entity::user::Column::Username.eq("admin"))
        .one(db)
        .await?
        .ok_or("no admin user")?;
    let actor = Identity {
        user_id: admin.id,
        username: admin.username.clone(),
        role: Role::Admin,
        must_change_password: false,
        credential: Credential::Session {
            id: uuid::Uuid::nil(),
            expires_at: Utc::now() + TimeDelta::hours(1),
        },
    };
    // BENCH_KINDS=instant,window,grouped,events keeps only some kinds (each
    // then gets all 1,000 rules' worth of its share), to see what costs what.
    let kinds = std::env::var("BENCH_KINDS").unwrap_or_default();
    let wanted = |kind: &str| kinds.is_empty() || kinds.split(',').any(|k| k == kind);
    let mut created = 0;
    for r in 0..1_000 {
        let m = r % METRICS;
        let (kind, query) = match r % 10 {
            0..=2 => ("instant", format!("m{m}{{env=~\"prod|stage\"}} > 95")),
            3..=5 => (
                "window",
                format!("avg(m{m}{{host=~\"h{}.*\"}}[5m]) > 90", r % 9 + 1),
            ),
            6 | 7 => ("grouped", format!("p95(m{m}[5m]) by (region) > 80")),
            _ => (
                "events",
                "count(events{level=\"error\"}[5m]) > 40".to_owned(),
            ),
        };
        if !wanted(kind) {
            continue;
        }
        created += 1;
        let mut draft = RuleDraft::new(format!("rule {r}"), query);
        draft.evaluation_interval_secs = 30;
        create_rule(&state, &actor, draft)
            .await
            .map_err(|e| e.describe())?;
    }

    println!("{created} rules");
    // Rules are due from their creation on.
    let mut at = sightline::util::now();
    for round in [
        "first (alerts appear)",
        "steady (alerts keep firing)",
        "after a change",
    ] {
        if round == "after a change" {
            // Every latest value drops: instant alerts resolve.
            sightline::metrics::entity::series::Entity::update_many()
                .col_expr(
                    series::Column::LastValue,
                    sea_orm::sea_query::Expr::value(1.0),
                )
                .exec(db)
                .await?;
        }
        let t = Instant::now();
        let outcome = evaluate_due_rules(&state, at)
            .await
            .map_err(|e| e.describe())?;
        let elapsed = t.elapsed();
        println!(
            "round {round}: {} rules evaluated ({} failed), {} transitions in {:.1?} \
             ({:.2} ms per rule)",
            outcome.evaluated,
            outcome.failed,
            outcome.transitions,
            elapsed,
            elapsed.as_secs_f64() * 1000.0 / outcome.evaluated.max(1) as f64
        );
        at += TimeDelta::seconds(30);
    }
    println!(
        "alert instances: {}, transitions stored: {}",
        instance::Entity::find().count(db).await?,
        transition::Entity::find().count(db).await?
    );
    Ok(())
}
