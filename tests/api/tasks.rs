//! The task queue: claims, leases and their expiry, retries with backoff
//! until dead, handler panics and timeouts, results, the scheduler's
//! once-per-period enqueue, the monitoring handlers' real effects, the
//! workers running in the server, and the GraphQL API with its RBAC.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use sightline::events::entity as event;
use sightline::events::{NewEvent, create_event};
use sightline::tasks::entity::task;
use sightline::tasks::registry::{Options, handler_fn};
use sightline::tasks::scheduler::{self, Schedule};
use sightline::tasks::service;
use sightline::tasks::worker::{
    Outcome, run_pending_tasks, run_pending_tasks_at, try_execute_task_at,
};
use sightline::tasks::{NewTask, TaskError};
use sightline::util;
use uuid::Uuid;

use crate::common::{TestApp, error_code, wait_until};

const ENQUEUE: &str = "mutation($i: EnqueueTaskInput!) { enqueueTask(input: $i) { id taskType status payload priority maxAttempts runAfter } }";
const TASK: &str = "query($id: ID!) { task(id: $id) { id status attempts maxAttempts lastError result runAfter finishedAt createdById } }";

/// Registers handlers tests use: one that succeeds with its payload, one
/// that always fails, one that panics, one that outlives its timeout, and
/// one that counts its runs.
fn register_test_handlers(app: &TestApp) -> Arc<AtomicUsize> {
    let registry = &app.state.tasks;
    registry.register(
        "test_echo",
        "returns its payload",
        Options::default(),
        handler_fn(|ctx| async move { Ok(json!({"echo": ctx.task.payload})) }),
    );
    registry.register(
        "test_fail",
        "always fails",
        Options {
            max_attempts: Some(3),
            ..Default::default()
        },
        handler_fn(|ctx| async move {
            Err(TaskError::Retry(format!(
                "boom on attempt {}",
                ctx.task.attempts
            )))
        }),
    );
    registry.register(
        "test_permanent",
        "fails for good",
        Options::default(),
        handler_fn(|_| async { Err(TaskError::Permanent("cannot ever work".into())) }),
    );
    registry.register(
        "test_panic",
        "panics",
        Options::default(),
        handler_fn(|_| async {
            if util::now().timestamp() > 0 {
                panic!("the handler exploded");
            }
            Ok(Value::Null)
        }),
    );
    registry.register(
        "test_slow",
        "sleeps past its timeout",
        Options {
            timeout: Some(Duration::from_millis(200)),
            ..Default::default()
        },
        handler_fn(|_| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(Value::Null)
        }),
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    registry.register(
        "test_count",
        "counts runs",
        Options::default(),
        handler_fn(move |_| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(json!({"ok": true}))
            }
        }),
    );
    runs
}

async fn reload(app: &TestApp, id: Uuid) -> task::Model {
    service::find(&app.state.db, id).await.expect("task")
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

#[tokio::test]
async fn a_successful_task_stores_its_result() {
    let app = TestApp::spawn().await;
    register_test_handlers(&app);
    let t = app.enqueue("test_echo", json!({"x": 1})).await;
    let outcomes = run_pending_tasks(&app.state).await.unwrap();
    assert_eq!(
        outcomes,
        vec![Outcome::Succeeded {
            id: t.id,
            task_type: "test_echo".into()
        }]
    );
    let done = reload(&app, t.id).await;
    assert_eq!(done.status, "succeeded");
    assert_eq!(done.attempts, 1);
    assert_eq!(done.result, Some(json!({"echo": {"x": 1}})));
    assert!(done.finished_at.is_some());
    assert!(done.locked_by.is_none() && done.lease_expires_at.is_none());
}

#[tokio::test]
async fn failures_retry_with_growing_backoff_then_die_with_the_error() {
    let app = TestApp::spawn_with(|c| {
        c.task_backoff_base = Duration::from_secs(60);
        c.task_backoff_max = Duration::from_secs(3600);
    })
    .await;
    register_test_handlers(&app);
    let t = app.enqueue("test_fail", json!({})).await;
    assert_eq!(t.max_attempts, 3, "the handler's own limit applies");
    let t0 = util::now();

    // Attempt 1 fails: retried after 30..60 s (equal jitter on 60 s).
    let first = try_execute_task_at(&app.state, "w", t0).await.unwrap();
    let Outcome::Retrying {
        run_after, error, ..
    } = first
    else {
        panic!("expected a retry, got {first:?}");
    };
    assert_eq!(error, "boom on attempt 1");
    assert!(
        run_after >= t0 + secs(30) && run_after <= t0 + secs(61),
        "{run_after} vs {t0}"
    );
    let row = reload(&app, t.id).await;
    assert_eq!(row.status, "failed");
    assert_eq!(row.last_error.as_deref(), Some("boom on attempt 1"));

    // Not due yet: nothing runs.
    assert_eq!(
        run_pending_tasks_at(&app.state, run_after - secs(1))
            .await
            .unwrap(),
        vec![]
    );

    // Attempt 2 at its time: the delay doubles (60..120 s).
    let second = try_execute_task_at(&app.state, "w", run_after)
        .await
        .unwrap();
    let Outcome::Retrying {
        run_after: again, ..
    } = second
    else {
        panic!("expected a retry, got {second:?}");
    };
    assert!(again >= run_after + secs(60) && again <= run_after + secs(121));

    // Attempt 3 is the last: dead, with the error kept.
    let third = try_execute_task_at(&app.state, "w", again).await.unwrap();
    assert!(
        matches!(&third, Outcome::Dead { error, .. } if error == "boom on attempt 3"),
        "{third:?}"
    );
    let dead = reload(&app, t.id).await;
    assert_eq!(dead.status, "dead");
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.last_error.as_deref(), Some("boom on attempt 3"));
    assert!(dead.finished_at.is_some());
    // A dead task never runs again by itself.
    assert_eq!(
        run_pending_tasks_at(&app.state, again + secs(86_400))
            .await
            .unwrap(),
        vec![]
    );
}

#[tokio::test]
async fn a_permanent_failure_is_dead_at_once() {
    let app = TestApp::spawn().await;
    register_test_handlers(&app);
    let t = app.enqueue("test_permanent", json!({})).await;
    let out = run_pending_tasks(&app.state).await.unwrap();
    assert!(matches!(&out[..], [Outcome::Dead { error, .. }] if error == "cannot ever work"));
    assert_eq!(reload(&app, t.id).await.attempts, 1);
}

#[tokio::test]
async fn a_panicking_handler_fails_its_attempt_and_the_worker_goes_on() {
    let app = TestApp::spawn().await;
    register_test_handlers(&app);
    let bad = app.enqueue("test_panic", json!({})).await;
    let good = app.enqueue("test_echo", json!({})).await;
    let out = run_pending_tasks(&app.state).await.unwrap();
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(
        out.iter().any(|o| matches!(o, Outcome::Retrying { id, error, .. }
            if *id == bad.id && error.contains("panicked") && error.contains("the handler exploded"))),
        "{out:?}"
    );
    assert_eq!(reload(&app, good.id).await.status, "succeeded");
    assert_eq!(reload(&app, bad.id).await.status, "failed");
}

#[tokio::test]
async fn a_handler_past_its_timeout_is_stopped_and_retried() {
    let app = TestApp::spawn().await;
    register_test_handlers(&app);
    let t = app.enqueue("test_slow", json!({})).await;
    let started = std::time::Instant::now();
    let out = run_pending_tasks(&app.state).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the timeout applied"
    );
    assert!(
        matches!(&out[..], [Outcome::Retrying { error, .. }] if error.contains("timed out after 200ms")),
        "{out:?}"
    );
    assert_eq!(reload(&app, t.id).await.status, "failed");
}

#[tokio::test]
async fn a_crashed_workers_task_returns_to_the_queue_when_its_lease_expires() {
    let app = TestApp::spawn_with(|c| c.task_lease = Duration::from_secs(30)).await;
    let runs = register_test_handlers(&app);
    let t = app.enqueue("test_count", json!({})).await;
    let now = util::now();
    // A worker claims it and "crashes": it never renews nor finishes.
    let claimed = service::claim(&app.state.db, "crashed-worker", now, now + secs(30))
        .await
        .unwrap()
        .expect("claimed");
    assert_eq!(claimed.id, t.id);
    assert_eq!(claimed.status, "running");
    assert_eq!(claimed.attempts, 1);
    // While the lease holds, nobody else runs it.
    assert_eq!(
        run_pending_tasks_at(&app.state, now + secs(29))
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    // After it lapses, the task is reclaimed and runs.
    let out = run_pending_tasks_at(&app.state, now + secs(31))
        .await
        .unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(matches!(out[0], Outcome::Succeeded { .. }));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let done = reload(&app, t.id).await;
    assert_eq!(done.attempts, 2, "the crashed attempt counts");
    assert!(done.last_error.unwrap().contains("lease"));
    // The crashed worker's late report is refused.
    assert!(
        !service::complete(&app.state.db, t.id, "crashed-worker", 1, json!({}), now)
            .await
            .unwrap()
    );
    assert_eq!(reload(&app, t.id).await.status, "succeeded");
}

#[tokio::test]
async fn a_task_whose_last_attempt_crashed_is_dead() {
    let app = TestApp::spawn().await;
    register_test_handlers(&app);
    let mut new = NewTask::new("test_count", json!({}));
    new.max_attempts = Some(1);
    let t = service::enqueue(&app.state, None, new)
        .await
        .unwrap()
        .unwrap();
    let now = util::now();
    service::claim(&app.state.db, "crashed", now, now + secs(5))
        .await
        .unwrap()
        .unwrap();
    let (returned, died) = service::reap_expired(&app.state.db, now + secs(6))
        .await
        .unwrap();
    assert_eq!((returned, died), (0, 1));
    let row = reload(&app, t.id).await;
    assert_eq!(row.status, "dead");
    assert!(row.last_error.unwrap().contains("lease"));
}

#[tokio::test]
async fn concurrent_claims_never_take_the_same_task() {
    let app = TestApp::spawn().await;
    register_test_handlers(&app);
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(app.enqueue("test_echo", json!({"i": i})).await.id);
    }
    let now = util::now();
    let mut claimers = Vec::new();
    for w in 0..6 {
        let db = app.state.db.clone();
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                match service::claim(&db, &format!("w{w}"), now, now + secs(60)).await {
                    Ok(Some(t)) => mine.push(t.id),
                    Ok(None) => break,
                    // SQLite may report a busy database under contention: retry.
                    Err(e) if e.code == sightline::ErrorCode::Unavailable => continue,
                    Err(e) => panic!("claim failed: {}", e.describe()),
                }
            }
            mine
        }));
    }
    let mut claimed = Vec::new();
    for c in claimers {
        claimed.extend(c.await.unwrap());
    }
    claimed.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(claimed, expected, "every task claimed exactly once");
}

#[tokio::test]
async fn higher_priority_runs_first_and_future_tasks_wait() {
    let app = TestApp::spawn().await;
    register_test_handlers(&app);
    let low = app.enqueue("test_echo", json!({"p": "low"})).await;
    let mut high = NewTask::new("test_echo", json!({"p": "high"}));
    high.priority = Some(10);
    let high = service::enqueue(&app.state, None, high)
        .await
        .unwrap()
        .unwrap();
    let later = service::enqueue(
        &app.state,
        None,
        NewTask::new("test_echo", json!({})).run_after(util::now() + secs(3600)),
    )
    .await
    .unwrap()
    .unwrap();
    let out = run_pending_tasks(&app.state).await.unwrap();
    let order: Vec<Uuid> = out
        .iter()
        .map(|o| match o {
            Outcome::Succeeded { id, .. } => *id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(order, vec![high.id, low.id]);
    assert_eq!(reload(&app, later.id).await.status, "pending");
}

#[tokio::test]
async fn a_dedupe_key_allows_one_live_task() {
    let app = TestApp::spawn().await;
    register_test_handlers(&app);
    let first = service::enqueue(
        &app.state,
        None,
        NewTask::new("test_echo", json!({})).dedupe("k"),
    )
    .await
    .unwrap();
    assert!(first.is_some());
    let second = service::enqueue(
        &app.state,
        None,
        NewTask::new("test_echo", json!({})).dedupe("k"),
    )
    .await
    .unwrap();
    assert!(second.is_none(), "a live task holds the key");
    run_pending_tasks(&app.state).await.unwrap();
    // Once it finished, the key is free again.
    let third = service::enqueue(
        &app.state,
        None,
        NewTask::new("test_echo", json!({})).dedupe("k"),
    )
    .await
    .unwrap();
    assert!(third.is_some());
}

fn schedules() -> Vec<Schedule> {
    vec![Schedule {
        name: "test-every-minute".into(),
        task_type: "test_count".into(),
        payload: json!({}),
        interval: Duration::from_secs(60),
    }]
}

async fn scheduled_tasks(app: &TestApp) -> Vec<task::Model> {
    task::Entity::find()
        .filter(task::Column::TaskType.eq("test_count"))
        .all(&app.state.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_scheduler_enqueues_once_per_period_and_never_doubles_a_live_task() {
    let app = TestApp::spawn().await;
    register_test_handlers(&app);
    let s = schedules();
    let t0 = util::now();
    scheduler::register(&app.state, &s, t0).await.unwrap();
    // Several replicas tick at the same moment: one enqueues.
    let mut ticks = Vec::new();
    for _ in 0..4 {
        let state = app.state.clone();
        let s = s.clone();
        ticks.push(tokio::spawn(async move {
            loop {
                match scheduler::tick(&state, &s, t0).await {
                    Ok(r) => return r,
                    Err(e) if e.code == sightline::ErrorCode::Unavailable => continue,
                    Err(e) => panic!("tick failed: {}", e.describe()),
                }
            }
        }));
    }
    let mut enqueued = 0;
    for t in ticks {
        enqueued += t.await.unwrap().enqueued.len();
    }
    assert_eq!(enqueued, 1);
    assert_eq!(scheduled_tasks(&app).await.len(), 1);

    // Before the period is over nothing more is enqueued.
    let r = scheduler::tick(&app.state, &s, t0 + secs(59))
        .await
        .unwrap();
    assert!(r.enqueued.is_empty() && r.skipped.is_empty());

    // The next period while the first task is still pending: skipped.
    let r = scheduler::tick(&app.state, &s, t0 + secs(61))
        .await
        .unwrap();
    assert_eq!(r.skipped, vec!["test-every-minute".to_owned()]);
    assert_eq!(scheduled_tasks(&app).await.len(), 1);

    // Once it ran, the following period enqueues again.
    run_pending_tasks_at(&app.state, t0 + secs(62))
        .await
        .unwrap();
    let r = scheduler::tick(&app.state, &s, t0 + secs(122))
        .await
        .unwrap();
    assert_eq!(r.enqueued, vec!["test-every-minute".to_owned()]);
    let tasks = scheduled_tasks(&app).await;
    assert_eq!(tasks.len(), 2);
    assert!(
        tasks
            .iter()
            .all(|t| t.dedupe_key.as_deref() == Some("schedule:test-every-minute"))
    );
}

#[tokio::test]
async fn registering_a_shorter_interval_brings_the_next_run_forward() {
    let app = TestApp::spawn().await;
    register_test_handlers(&app);
    let mut s = schedules();
    s[0].interval = Duration::from_secs(3600);
    let t0 = util::now();
    scheduler::register(&app.state, &s, t0).await.unwrap();
    scheduler::tick(&app.state, &s, t0).await.unwrap();
    run_pending_tasks_at(&app.state, t0).await.unwrap();
    s[0].interval = Duration::from_secs(60);
    scheduler::register(&app.state, &s, t0).await.unwrap();
    let r = scheduler::tick(&app.state, &s, t0 + secs(61))
        .await
        .unwrap();
    assert_eq!(r.enqueued.len(), 1);
}

#[tokio::test]
async fn workers_in_the_server_run_enqueued_and_scheduled_tasks() {
    let app = TestApp::spawn_with(|c| {
        c.task_workers = 2;
        c.scheduler = true;
        c.scheduler_tick = Duration::from_millis(50);
        c.event_processing_interval = Duration::from_millis(100);
    })
    .await;
    register_test_handlers(&app);
    let moderator = app.login_as("MODERATOR").await;
    let data = app
        .gql_ok(
            Some(&moderator),
            ENQUEUE,
            json!({"i": {"taskType": "test_echo", "payload": {"hello": "world"}}}),
        )
        .await;
    let id = data["enqueueTask"]["id"].as_str().unwrap().to_owned();
    let task = wait_until(Duration::from_secs(20), "the task to succeed", || {
        let id = id.clone();
        let app = &app;
        let moderator = moderator.clone();
        async move {
            let d = app.gql_ok(Some(&moderator), TASK, json!({"id": id})).await;
            if d["task"]["status"] == "SUCCEEDED" {
                Ok(d["task"].clone())
            } else {
                Err(d.to_string())
            }
        }
    })
    .await;
    assert_eq!(task["result"], json!({"echo": {"hello": "world"}}));

    // The scheduler's event-processing sweep reaches a new event.
    let e = create_event(
        &app.state.db,
        None,
        NewEvent::log("billing", Some("error"), "invoice 1234 failed"),
    )
    .await
    .unwrap();
    wait_until(Duration::from_secs(20), "the event to be enriched", || {
        let db = app.state.db.clone();
        async move {
            let row = event::Entity::find_by_id(e.id)
                .one(&db)
                .await
                .unwrap()
                .unwrap();
            row.fingerprint
                .ok_or_else(|| "no fingerprint yet".to_owned())
        }
    })
    .await;
    // Shutdown stops the workers and the scheduler.
    let started = std::time::Instant::now();
    app.stop().await;
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn event_processing_groups_repeats_and_extracts_correlation_ids() {
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    let mut a = NewEvent::log("api", Some("error"), "user 42 not found in shard 3");
    a.payload = json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "request_id": "req-1"});
    let a = create_event(db, None, a).await.unwrap();
    let b = create_event(
        db,
        None,
        NewEvent::log("api", Some("error"), "user 9001 not found in shard 12"),
    )
    .await
    .unwrap();
    let other = create_event(db, None, NewEvent::log("api", Some("error"), "disk full"))
        .await
        .unwrap();
    let mut unlevelled = NewEvent::log("worker", None, "retrying job 77");
    unlevelled.payload = json!({"severity": "WARNING", "context": {"request_id": "r-9"}});
    unlevelled.tags = serde_json::Map::from_iter([("request_id".to_owned(), json!("mine"))]);
    let unlevelled = create_event(db, None, unlevelled).await.unwrap();

    app.enqueue("monitoring_event_processing", json!({})).await;
    let out = run_pending_tasks(&app.state).await.unwrap();
    assert!(matches!(out[..], [Outcome::Succeeded { .. }]), "{out:?}");

    let state = &app.state;
    let load = |id: Uuid| async move {
        event::Entity::find_by_id(id)
            .one(&state.db)
            .await
            .unwrap()
            .unwrap()
    };
    let (a, b, other, unlevelled) = (
        load(a.id).await,
        load(b.id).await,
        load(other.id).await,
        load(unlevelled.id).await,
    );
    let fa = a.fingerprint.clone().expect("fingerprinted");
    assert_eq!(fa.len(), 64);
    assert_eq!(b.fingerprint.as_deref(), Some(fa.as_str()), "repeats group");
    assert_ne!(other.fingerprint.as_deref(), Some(fa.as_str()));
    // Repeats can be counted as one issue through the fingerprint index.
    let group = event::Entity::find()
        .filter(event::Column::Fingerprint.eq(fa.clone()))
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(group.len(), 2);
    assert_eq!(a.tags["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(a.tags["request_id"], "req-1");
    assert_eq!(
        unlevelled.level.as_deref(),
        Some("warn"),
        "level read from payload"
    );
    assert_eq!(unlevelled.tags["request_id"], "mine", "client tags win");
    assert_eq!(
        unlevelled.tags["trace_id"],
        Value::Null,
        "only ids the payload has are lifted"
    );
    // What enrichment does not change is left as it was.
    assert_eq!(other.level.as_deref(), Some("error"));
    assert_eq!(other.tags, json!({}));
    assert_eq!(other.message.as_deref(), Some("disk full"));

    // The result reports the work; a second sweep finds nothing left.
    let done = task::Entity::find()
        .filter(task::Column::TaskType.eq("monitoring_event_processing"))
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.result.unwrap()["processed"], 4);
    app.enqueue("monitoring_event_processing", json!({})).await;
    run_pending_tasks(&app.state).await.unwrap();
    let all = task::Entity::find()
        .filter(task::Column::TaskType.eq("monitoring_event_processing"))
        .all(&app.state.db)
        .await
        .unwrap();
    assert!(
        all.iter()
            .any(|t| t.result.as_ref().unwrap()["processed"] == 0)
    );
}

#[tokio::test]
async fn event_processing_can_target_named_events() {
    let app = TestApp::spawn().await;
    let e = create_event(
        &app.state.db,
        None,
        NewEvent::log("api", Some("info"), "hello 1"),
    )
    .await
    .unwrap();
    let untouched = create_event(
        &app.state.db,
        None,
        NewEvent::log("api", Some("info"), "hello 2"),
    )
    .await
    .unwrap();
    service::enqueue(
        &app.state,
        None,
        NewTask::new(
            "monitoring_event_processing",
            json!({"event_ids": [e.id.to_string(), Uuid::now_v7().to_string()]}),
        ),
    )
    .await
    .unwrap();
    run_pending_tasks(&app.state).await.unwrap();
    let row = event::Entity::find_by_id(e.id)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert!(row.fingerprint.is_some());
    let row = event::Entity::find_by_id(untouched.id)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert!(row.fingerprint.is_none());
    let t = task::Entity::find()
        .filter(task::Column::TaskType.eq("monitoring_event_processing"))
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        t.result.unwrap(),
        json!({"mode": "ids", "requested": 2, "found": 1, "processed": 1})
    );
}

/// Stores a metric family, one series and samples at the given times, with
/// the series' maintained figures consistent.
async fn store_samples(
    app: &TestApp,
    name: &str,
    metric_type: &str,
    times: &[DateTime<Utc>],
) -> i64 {
    use sightline::metrics::entity::{family, sample, series};
    let db = &app.state.db;
    let now = util::now();
    let f = family::ActiveModel {
        name: Set(name.to_owned()),
        metric_type: Set(metric_type.to_owned()),
        series_count: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    let s = series::ActiveModel {
        family_id: Set(f.id),
        labels: Set(json!({})),
        fingerprint: Set(util::sha256_hex(name)),
        created_at: Set(now),
        last_sample_at: Set(times.iter().max().copied()),
        last_value: Set(Some(1.0)),
        total: Set(times.len() as f64),
        sample_count: Set(times.len() as i64),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    for t in times {
        sample::ActiveModel {
            series_id: Set(s.id),
            timestamp: Set(*t),
            value: Set(1.0),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap();
    }
    s.id
}

#[tokio::test]
async fn retention_deletes_exactly_the_old_rows_and_reports_counts() {
    let app = TestApp::spawn_with(|c| {
        c.event_retention_days = 30;
        c.metric_retention_days = 90;
        c.task_retention_days = 7;
        c.retention_batch = 3;
    })
    .await;
    register_test_handlers(&app);
    let db = &app.state.db;
    let now = util::now();
    let day = |n: i64| now - chrono::Duration::days(n);
    let mut old_events = Vec::new();
    let mut new_events = Vec::new();
    for i in 0..7 {
        let mut e = NewEvent::log("api", Some("info"), format!("old {i}"));
        e.timestamp = Some(day(31 + i));
        old_events.push(create_event(db, None, e).await.unwrap().id);
    }
    for i in 0..4 {
        let mut e = NewEvent::log("api", Some("info"), format!("new {i}"));
        e.timestamp = Some(day(29 - i));
        new_events.push(create_event(db, None, e).await.unwrap().id);
    }
    let series = store_samples(
        &app,
        "queue_depth",
        "gauge",
        &[day(120), day(100), day(91), day(89), day(1)],
    )
    .await;
    // A finished task older than the task retention, and a recent one.
    let old_task = app.enqueue("test_echo", json!({})).await;
    run_pending_tasks(&app.state).await.unwrap();
    let mut row: task::ActiveModel = reload(&app, old_task.id).await.into();
    row.finished_at = Set(Some(day(8)));
    row.update(db).await.unwrap();
    let recent_task = app.enqueue("test_echo", json!({})).await;
    run_pending_tasks(&app.state).await.unwrap();

    let retention = app.enqueue("monitoring_data_retention", json!({})).await;
    let out = run_pending_tasks(&app.state).await.unwrap();
    assert!(matches!(out[..], [Outcome::Succeeded { .. }]), "{out:?}");
    let result = reload(&app, retention.id).await.result.unwrap();
    assert_eq!(result["events_deleted"], 7);
    assert_eq!(result["metric_samples_deleted"], 3);
    assert_eq!(result["tasks_deleted"], 1);

    let left: Vec<Uuid> = event::Entity::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let mut expected = new_events.clone();
    expected.sort();
    let mut left_sorted = left.clone();
    left_sorted.sort();
    assert_eq!(left_sorted, expected);
    let samples = sightline::metrics::entity::sample::Entity::find()
        .filter(sightline::metrics::entity::sample::Column::SeriesId.eq(series))
        .all(db)
        .await
        .unwrap();
    assert_eq!(samples.len(), 2);
    assert!(samples.iter().all(|s| s.timestamp > day(90)));
    assert!(service::find(db, old_task.id).await.is_err());
    assert!(service::find(db, recent_task.id).await.is_ok());
    assert!(service::find(db, retention.id).await.is_ok());
}

#[tokio::test]
async fn enqueue_checks_the_type_and_the_payload() {
    let app = TestApp::spawn().await;
    let moderator = app.login_as("MODERATOR").await;
    let v = app
        .gql(
            Some(&moderator),
            ENQUEUE,
            json!({"i": {"taskType": "no_such_type"}}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    assert_eq!(v["errors"][0]["extensions"]["field"], "taskType");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("monitoring_data_retention")
    );
    for (input, field) in [
        (
            json!({"taskType": "monitoring_event_processing", "payload": {"limit": -1}}),
            "payload.limit",
        ),
        (
            json!({"taskType": "monitoring_data_retention", "payload": {"days": 1}}),
            "payload.days",
        ),
        (
            json!({"taskType": "monitoring_data_retention", "payload": [1, 2]}),
            "payload",
        ),
        (
            json!({"taskType": "monitoring_data_retention", "payload": {"a": "b\u{0}"}}),
            "payload",
        ),
        (
            json!({"taskType": "monitoring_data_retention", "priority": 99999}),
            "priority",
        ),
        (
            json!({"taskType": "monitoring_data_retention", "maxAttempts": 0}),
            "maxAttempts",
        ),
        (
            json!({"taskType": "monitoring_data_retention", "runAfter": "9999-01-01T00:00:00Z"}),
            "runAfter",
        ),
        (
            json!({"taskType": "monitoring_data_retention", "payload": {"big": "x".repeat(300 * 1024)}}),
            "payload",
        ),
        (
            json!({"taskType": "monitoring_data_retention", "dedupeKey": ""}),
            "dedupeKey",
        ),
        (json!({"taskType": "x\u{0}"}), "taskType"),
        (json!({"taskType": "x".repeat(100)}), "taskType"),
    ] {
        let v = app
            .gql(Some(&moderator), ENQUEUE, json!({"i": input}))
            .await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{input} -> {v}");
        assert_eq!(
            v["errors"][0]["extensions"]["field"], field,
            "{input} -> {v}"
        );
    }
    // Nothing was stored by the refused calls.
    assert_eq!(service::counts(&app.state.db).await.unwrap().total(), 0);

    let ok = app
        .gql_ok(
            Some(&moderator),
            ENQUEUE,
            json!({"i": {"taskType": "monitoring_data_retention", "priority": 5, "dedupeKey": "only-one"}}),
        )
        .await;
    assert_eq!(ok["enqueueTask"]["status"], "PENDING");
    assert_eq!(ok["enqueueTask"]["priority"], 5);
    assert_eq!(ok["enqueueTask"]["payload"], json!({}));
    let dup = app
        .gql(
            Some(&moderator),
            ENQUEUE,
            json!({"i": {"taskType": "monitoring_data_retention", "dedupeKey": "only-one"}}),
        )
        .await;
    assert_eq!(error_code(&dup), "CONFLICT");
}

#[tokio::test]
async fn retry_and_cancel_follow_the_life_cycle() {
    let app = TestApp::spawn().await;
    register_test_handlers(&app);
    let moderator = app.login_as("MODERATOR").await;
    let retry = "mutation($id: ID!) { retryTask(input: {id: $id}) { id status attempts } }";
    let cancel = "mutation($id: ID!) { cancelTask(input: {id: $id}) { id status finishedAt } }";

    let dead = app.enqueue("test_permanent", json!({})).await;
    run_pending_tasks(&app.state).await.unwrap();
    let d = app
        .gql_ok(Some(&moderator), retry, json!({"id": dead.id.to_string()}))
        .await;
    assert_eq!(d["retryTask"]["status"], "PENDING");
    assert_eq!(d["retryTask"]["attempts"], 0);
    // Retrying a pending task is a conflict.
    let v = app
        .gql(Some(&moderator), retry, json!({"id": dead.id.to_string()}))
        .await;
    assert_eq!(error_code(&v), "CONFLICT");
    // Cancel it; it never runs.
    let d = app
        .gql_ok(Some(&moderator), cancel, json!({"id": dead.id.to_string()}))
        .await;
    assert_eq!(d["cancelTask"]["status"], "CANCELLED");
    assert!(d["cancelTask"]["finishedAt"].is_string());
    assert_eq!(run_pending_tasks(&app.state).await.unwrap(), vec![]);
    // A succeeded task can be neither cancelled nor retried.
    let ok = app.enqueue("test_echo", json!({})).await;
    run_pending_tasks(&app.state).await.unwrap();
    for q in [retry, cancel] {
        let v = app
            .gql(Some(&moderator), q, json!({"id": ok.id.to_string()}))
            .await;
        assert_eq!(error_code(&v), "CONFLICT", "{v}");
    }
    // Unknown and malformed ids.
    let v = app
        .gql(
            Some(&moderator),
            retry,
            json!({"id": Uuid::now_v7().to_string()}),
        )
        .await;
    assert_eq!(error_code(&v), "NOT_FOUND");
    let v = app
        .gql(Some(&moderator), cancel, json!({"id": "nope"}))
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    // A cancelled task can be retried and then runs.
    app.gql_ok(Some(&moderator), retry, json!({"id": dead.id.to_string()}))
        .await;
    let out = run_pending_tasks(&app.state).await.unwrap();
    assert_eq!(out.len(), 1);
}

#[tokio::test]
async fn tasks_can_be_listed_filtered_paged_and_counted() {
    let app = TestApp::spawn().await;
    register_test_handlers(&app);
    let moderator = app.login_as("MODERATOR").await;
    for i in 0..5 {
        app.enqueue("test_echo", json!({"i": i})).await;
    }
    let failing = app.enqueue("test_permanent", json!({})).await;
    run_pending_tasks(&app.state).await.unwrap();
    app.enqueue("test_echo", json!({"i": "pending"})).await;

    let list = "query($f: TaskFilter, $first: Int, $after: String) { tasks(filter: $f, first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id taskType status } } } }";
    let d = app
        .gql_ok(Some(&moderator), list, json!({"first": 4}))
        .await;
    assert_eq!(d["tasks"]["totalCount"], 7);
    assert_eq!(d["tasks"]["edges"].as_array().unwrap().len(), 4);
    assert_eq!(d["tasks"]["pageInfo"]["hasNextPage"], true);
    let after = d["tasks"]["pageInfo"]["endCursor"].as_str().unwrap();
    let d2 = app
        .gql_ok(Some(&moderator), list, json!({"first": 4, "after": after}))
        .await;
    assert_eq!(d2["tasks"]["edges"].as_array().unwrap().len(), 3);
    assert_eq!(d2["tasks"]["pageInfo"]["hasNextPage"], false);

    let d = app
        .gql_ok(Some(&moderator), list, json!({"f": {"statuses": ["DEAD"]}}))
        .await;
    let edges = d["tasks"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0]["node"]["id"], failing.id.to_string());
    let d = app
        .gql_ok(
            Some(&moderator),
            list,
            json!({"f": {"taskType": "test_echo", "statuses": ["PENDING", "SUCCEEDED"]}}),
        )
        .await;
    assert_eq!(d["tasks"]["totalCount"], 6);

    // A huge page is refused (by the complexity limit before the resolver).
    let v = app
        .gql(Some(&moderator), list, json!({"first": 5000}))
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT", "{v}");
    for (vars, field) in [
        (json!({"first": -1}), "first"),
        (json!({"after": "forged"}), "after"),
        (
            json!({"f": {"from": "2030-01-01T00:00:00Z", "to": "2020-01-01T00:00:00Z"}}),
            "filter.from",
        ),
        (
            json!({"f": {"taskType": "t".repeat(500)}}),
            "filter.taskType",
        ),
    ] {
        let v = app.gql(Some(&moderator), list, vars.clone()).await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{vars}");
        assert_eq!(v["errors"][0]["extensions"]["field"], field, "{vars}");
    }

    let stats = app
        .gql_ok(
            Some(&moderator),
            "{ taskStats { pending running succeeded failed dead cancelled total oldestWaitingSince byType { taskType pending succeeded dead total } registeredTypes { name description } } }",
            json!({}),
        )
        .await;
    let s = &stats["taskStats"];
    assert_eq!(s["pending"], 1);
    assert_eq!(s["succeeded"], 5);
    assert_eq!(s["dead"], 1);
    assert_eq!(s["total"], 7);
    assert!(s["oldestWaitingSince"].is_string());
    let echo = s["byType"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["taskType"] == "test_echo")
        .unwrap();
    assert_eq!(echo["total"], 6);
    let names: Vec<&str> = s["registeredTypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for t in ["monitoring_event_processing", "monitoring_data_retention"] {
        assert!(names.contains(&t), "{names:?}");
    }
}

#[tokio::test]
async fn every_task_operation_requires_a_moderator() {
    let app = TestApp::spawn().await;
    register_test_handlers(&app);
    let t = app.enqueue("test_echo", json!({})).await;
    let user = app.login_as("USER").await;
    let moderator = app.login_as("MODERATOR").await;
    let id = t.id.to_string();
    let ops: Vec<(&str, Value)> = vec![
        ("{ tasks { totalCount } }", json!({})),
        (
            "query($id: ID!) { task(id: $id) { id } }",
            json!({"id": id}),
        ),
        ("{ taskStats { total } }", json!({})),
        (
            ENQUEUE,
            json!({"i": {"taskType": "monitoring_data_retention"}}),
        ),
        (
            "mutation($id: ID!) { retryTask(input: {id: $id}) { id } }",
            json!({"id": id}),
        ),
        (
            "mutation($id: ID!) { cancelTask(input: {id: $id}) { id } }",
            json!({"id": id}),
        ),
    ];
    for (q, vars) in &ops {
        let v = app.gql(Some(&user), q, vars.clone()).await;
        assert_eq!(error_code(&v), "FORBIDDEN", "user: {q}");
        let v = app.gql(None, q, vars.clone()).await;
        assert_eq!(error_code(&v), "UNAUTHENTICATED", "anonymous: {q}");
    }
    // Nothing changed through the refused calls.
    assert_eq!(service::counts(&app.state.db).await.unwrap().total(), 1);
    assert_eq!(reload(&app, t.id).await.status, "pending");
    // Moderators (and so admins) may.
    for (q, vars) in &ops[..3] {
        app.gql_ok(Some(&moderator), q, vars.clone()).await;
        app.gql_ok(Some(&app.admin_token), q, vars.clone()).await;
    }
    let d = app
        .gql_ok(
            Some(&moderator),
            "mutation($id: ID!) { cancelTask(input: {id: $id}) { status } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(d["cancelTask"]["status"], "CANCELLED");
    let d = app.gql_ok(Some(&moderator), TASK, json!({"id": id})).await;
    assert_eq!(d["task"]["createdById"], Value::Null);
    let mine = app
        .gql_ok(
            Some(&moderator),
            ENQUEUE,
            json!({"i": {"taskType": "test_echo"}}),
        )
        .await;
    let d = app
        .gql_ok(
            Some(&moderator),
            TASK,
            json!({"id": mine["enqueueTask"]["id"]}),
        )
        .await;
    assert!(d["task"]["createdById"].is_string());
}

#[tokio::test]
async fn a_long_attempt_renews_its_lease_so_nobody_else_takes_the_task() {
    let app = TestApp::spawn_with(|c| c.task_lease = Duration::from_secs(1)).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    app.state.tasks.register(
        "test_long",
        "takes three lease lengths",
        Options::default(),
        handler_fn(move |_| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok(json!("done"))
            }
        }),
    );
    let t = app.enqueue("test_long", json!({})).await;
    let state = app.state.clone();
    let first =
        tokio::spawn(
            async move { sightline::tasks::worker::try_execute_task(&state, "first").await },
        );
    wait_until(
        Duration::from_secs(10),
        "the first worker to claim it",
        || {
            let app = &app;
            async move {
                let row = reload(app, t.id).await;
                if row.locked_by.as_deref() == Some("first") {
                    Ok(())
                } else {
                    Err(format!("{} {:?}", row.status, row.locked_by))
                }
            }
        },
    )
    .await;
    // Another worker keeps looking while the first one runs.
    let until = std::time::Instant::now() + Duration::from_millis(2500);
    while std::time::Instant::now() < until {
        let out = sightline::tasks::worker::try_execute_task(&app.state, "second")
            .await
            .unwrap();
        assert_eq!(out, Outcome::Idle);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = first.await.unwrap().unwrap();
    assert!(matches!(out, Outcome::Succeeded { .. }), "{out:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let done = reload(&app, t.id).await;
    assert_eq!(done.attempts, 1);
    assert_eq!(done.result, Some(json!("done")));
}

// ---------------------------------------------------------------------------
// Alert evaluation and incident analysis as tasks.

/// The live (pending, running or failed) evaluation task of a rule.
async fn rule_task(app: &TestApp, rule_id: &str) -> Option<task::Model> {
    task::Entity::find()
        .filter(task::Column::DedupeKey.eq(format!("alert_rule:{rule_id}")))
        .filter(task::Column::Status.is_in(["pending", "running", "failed"]))
        .one(&app.state.db)
        .await
        .unwrap()
}

async fn rule_tasks(app: &TestApp, rule_id: &str) -> Vec<task::Model> {
    task::Entity::find()
        .filter(task::Column::DedupeKey.eq(format!("alert_rule:{rule_id}")))
        .all(&app.state.db)
        .await
        .unwrap()
}

async fn firing(app: &TestApp) -> usize {
    sightline::stats::service::firing_alerts(&app.state.db)
        .await
        .unwrap() as usize
}

#[tokio::test]
async fn each_rule_has_one_evaluation_task_that_runs_and_rearms_on_its_interval() {
    // No alert worker: the test drains the queue itself.
    let app = TestApp::spawn_with(|c| c.alert_evaluator = false).await;
    let token = app.admin_token.clone();
    app.gql_ok(
        Some(&token),
        "mutation($i: SubmitMetricInput!) { submitMetric(input: $i) { value } }",
        json!({"i": {"name": "task_temp", "metricType": "GAUGE", "value": 99.0}}),
    )
    .await;
    let rule = app
        .gql_ok(
            Some(&token),
            "mutation($i: CreateAlertRuleInput!) { createAlertRule(input: $i) { id } }",
            json!({"i": {"name": "task hot", "query": "task_temp > 90", "evaluationInterval": 30}}),
        )
        .await["createAlertRule"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = rule_task(&app, &rule).await.expect("created with the rule");
    assert_eq!(t.task_type, "monitoring_alert_evaluation");
    assert_eq!(t.status, "pending");
    assert_eq!(t.payload, json!({"rule_id": rule, "interval_secs": 30}));

    let now = util::now();
    let out = run_pending_tasks_at(&app.state, now).await.unwrap();
    let [Outcome::Rearmed { id, run_after, .. }] = &out[..] else {
        panic!("one evaluation, re-armed: {out:?}");
    };
    assert_eq!(*id, t.id, "the same task is re-armed");
    let delta = (*run_after - now).num_milliseconds();
    assert!(
        (29_000..=31_000).contains(&delta),
        "next slot in one interval: {delta} ms"
    );
    assert_eq!(
        firing(&app).await,
        1,
        "for = 0 fires on the first true evaluation"
    );
    let after = reload(&app, t.id).await;
    assert_eq!(after.status, "pending");
    assert_eq!(after.attempts, 0);
    assert!(after.lease_expires_at.is_none() && after.locked_by.is_none());
    let result = after.result.unwrap();
    assert_eq!(result["evaluated"], true);
    assert_eq!(result["transitions"], 1);

    // Not due again before its interval; due after it.
    assert!(
        run_pending_tasks_at(&app.state, now)
            .await
            .unwrap()
            .is_empty()
    );
    let later = run_pending_tasks_at(&app.state, now + secs(31))
        .await
        .unwrap();
    assert!(
        matches!(&later[..], [Outcome::Rearmed { id, .. }] if *id == t.id),
        "{later:?}"
    );
    assert_eq!(
        rule_tasks(&app, &rule).await.len(),
        1,
        "one row for the rule's life"
    );

    // An update moves the task to the rule's new slot (due at once) and interval.
    app.gql_ok(
        Some(&token),
        "mutation($i: UpdateAlertRuleInput!) { updateAlertRule(input: $i) { id } }",
        json!({"i": {"id": rule, "evaluationInterval": 5}}),
    )
    .await;
    let moved = rule_task(&app, &rule).await.unwrap();
    assert_eq!(moved.id, t.id);
    assert_eq!(moved.payload["interval_secs"], 5);
    assert!(moved.run_after <= util::now());

    // Disabling cancels it, enabling brings one back, deleting cancels it.
    let set_enabled =
        "mutation($i: SetAlertRuleEnabledInput!) { setAlertRuleEnabled(input: $i) { id } }";
    app.gql_ok(
        Some(&token),
        set_enabled,
        json!({"i": {"id": rule, "enabled": false}}),
    )
    .await;
    assert!(rule_task(&app, &rule).await.is_none());
    assert_eq!(reload(&app, t.id).await.status, "cancelled");
    assert_eq!(firing(&app).await, 0, "disabling resolved the alert");
    app.gql_ok(
        Some(&token),
        set_enabled,
        json!({"i": {"id": rule, "enabled": true}}),
    )
    .await;
    let back = rule_task(&app, &rule).await.expect("enabled again");
    assert_eq!(back.status, "pending");
    app.gql_ok(
        Some(&token),
        "mutation($i: DeleteAlertRuleInput!) { deleteAlertRule(input: $i) { id } }",
        json!({"i": {"id": rule}}),
    )
    .await;
    assert!(rule_task(&app, &rule).await.is_none());
    assert_eq!(reload(&app, back.id).await.status, "cancelled");
    assert!(
        run_pending_tasks_at(&app.state, util::now() + secs(60))
            .await
            .unwrap()
            .is_empty(),
        "nothing left to evaluate"
    );
}

#[tokio::test]
async fn the_scheduler_recreates_a_missing_rule_task_and_a_crashed_evaluation_is_taken_over() {
    let app = TestApp::spawn_with(|c| c.alert_evaluator = false).await;
    let token = app.admin_token.clone();
    let rule = app
        .gql_ok(
            Some(&token),
            "mutation($i: CreateAlertRuleInput!) { createAlertRule(input: $i) { id } }",
            json!({"i": {"name": "quiet", "query": "nothing_here > 1", "evaluationInterval": 10}}),
        )
        .await["createAlertRule"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = rule_task(&app, &rule).await.unwrap();

    // Cancelled by hand: the periodic sync puts a new one in place, once.
    app.gql_ok(
        Some(&token),
        "mutation($i: CancelTaskInput!) { cancelTask(input: $i) { id } }",
        json!({"i": {"id": t.id.to_string()}}),
    )
    .await;
    assert!(rule_task(&app, &rule).await.is_none());
    use sightline::tasks::handlers::alert_evaluation::ensure_rule_tasks;
    assert_eq!(ensure_rule_tasks(&app.state).await.unwrap(), 1);
    assert_eq!(
        ensure_rule_tasks(&app.state).await.unwrap(),
        0,
        "never doubled"
    );
    let fresh = rule_task(&app, &rule).await.unwrap();
    assert_ne!(fresh.id, t.id);

    // A worker claims it and dies; after its lease (one interval) another
    // worker takes the rule over and evaluates it.
    let now = util::now();
    let claimed = service::claim(&app.state.db, "crashed-alert-worker", now, now + secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, fresh.id);
    assert!(
        run_pending_tasks_at(&app.state, now + secs(5))
            .await
            .unwrap()
            .is_empty(),
        "the lease still holds"
    );
    let out = run_pending_tasks_at(&app.state, now + secs(11))
        .await
        .unwrap();
    assert!(
        matches!(&out[..], [Outcome::Rearmed { id, .. }] if *id == fresh.id),
        "{out:?}"
    );
    let rule_row =
        sightline::alerts::entity::rule::Entity::find_by_id(rule.parse::<Uuid>().unwrap())
            .one(&app.state.db)
            .await
            .unwrap()
            .unwrap();
    assert!(rule_row.last_evaluated_at.is_some());
    assert_eq!(reload(&app, fresh.id).await.status, "pending");
}

#[tokio::test]
async fn the_alert_worker_evaluates_rules_and_general_workers_leave_them_alone() {
    // General workers only: alert tasks wait.
    let app = TestApp::spawn_with(|c| {
        c.alert_evaluator = false;
        c.task_workers = 2;
    })
    .await;
    let token = app.admin_token.clone();
    let rule = app
        .gql_ok(
            Some(&token),
            "mutation($i: CreateAlertRuleInput!) { createAlertRule(input: $i) { id } }",
            json!({"i": {"name": "left alone", "query": "x > 1", "evaluationInterval": 1}}),
        )
        .await["createAlertRule"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    register_test_handlers(&app);
    let echo = app.enqueue("test_echo", json!({"n": 1})).await;
    wait_until(
        Duration::from_secs(20),
        "a general worker runs the echo task",
        || async {
            let t = reload(&app, echo.id).await;
            if t.status == "succeeded" {
                Ok(())
            } else {
                Err(t.status)
            }
        },
    )
    .await;
    let t = rule_task(&app, &rule).await.unwrap();
    assert_eq!(t.attempts, 0);
    assert!(
        t.result.is_none(),
        "SIGHTLINE_ALERT_EVALUATOR=false: not evaluated here"
    );

    // The alert worker (on by default) evaluates it.
    let db = app.stop().await;
    let app = TestApp::spawn_on(db, |_| {}).await;
    wait_until(
        Duration::from_secs(20),
        "the alert worker evaluates the rule",
        || async {
            let t = rule_task(&app, &rule).await.unwrap();
            match t.result {
                Some(r) if r["evaluated"] == true => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn creating_an_incident_queues_its_analysis_in_the_same_transaction() {
    let app = TestApp::spawn().await;
    let moderator = app.login_as("MODERATOR").await;
    let id = app
        .gql_ok(
            Some(&moderator),
            "mutation($i: CreateIncidentInput!) { createIncident(input: $i) { id } }",
            json!({"i": {"title": "checkout down", "sources": ["checkout"]}}),
        )
        .await["createIncident"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let queued = task::Entity::find()
        .filter(task::Column::TaskType.eq("monitoring_incident_analysis"))
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].payload, json!({"incident_id": id}));
    assert_eq!(queued[0].status, "pending");

    let out = run_pending_tasks(&app.state).await.unwrap();
    assert!(matches!(&out[..], [Outcome::Succeeded { .. }]), "{out:?}");
    let done = reload(&app, queued[0].id).await;
    assert_eq!(done.result.as_ref().unwrap()["incident_id"], json!(id));
    let stored =
        sightline::incidents::entity::analysis::Entity::find_by_id(id.parse::<Uuid>().unwrap())
            .one(&app.state.db)
            .await
            .unwrap();
    assert!(stored.is_some(), "the analysis is stored");

    // A bad payload by hand is refused; a good one is accepted.
    let bad = app
        .gql(
            Some(&moderator),
            ENQUEUE,
            json!({"i": {"taskType": "monitoring_incident_analysis", "payload": {"incident_id": "nope"}}}),
        )
        .await;
    assert_eq!(error_code(&bad), "BAD_USER_INPUT");
    let by_hand = app
        .gql_ok(
            Some(&moderator),
            "mutation($i: EnqueueTaskInput!) { enqueueTask(input: $i) { id createdBy { id username } } }",
            json!({"i": {"taskType": "monitoring_incident_analysis", "payload": {"incident_id": id}}}),
        )
        .await;
    assert!(
        by_hand["enqueueTask"]["createdBy"]["username"].is_string(),
        "{by_hand}"
    );
}

/// A server process on `url` that only evaluates alert rules.
fn alert_replica(url: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_sightline"))
        .env("DATABASE_URL", url)
        .env("SIGHTLINE_ADDR", "127.0.0.1:0")
        .env("SIGHTLINE_ADMIN_PASSWORD", "replica-admin-password")
        .env("SIGHTLINE_TASK_WORKERS", "0")
        .env("SIGHTLINE_SCHEDULER", "false")
        .env("SIGHTLINE_ALERT_EVALUATOR", "true")
        .env("SIGHTLINE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start a replica")
}

struct Replica(std::process::Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn two_replicas_evaluate_each_rule_once_and_take_over_a_crashed_workers_rule() {
    if !crate::common::backend_is_postgres() {
        // SKIP LOCKED across processes: PostgreSQL only (SQLite serves one process).
        return;
    }
    use sightline::alerts::entity::{instance, rule as alert_rule, transition};
    let db = crate::common::TestDb::create().await;
    let url = db.url.clone();
    let app = TestApp::spawn_on(db, |c| c.alert_evaluator = false).await;
    let token = app.admin_token.clone();
    app.gql_ok(
        Some(&token),
        "mutation($i: SubmitMetricInput!) { submitMetric(input: $i) { value } }",
        json!({"i": {"name": "replica_temp", "metricType": "GAUGE", "value": 50.0}}),
    )
    .await;
    const RULES: usize = 12;
    for i in 0..RULES {
        app.gql_ok(
            Some(&token),
            "mutation($i: CreateAlertRuleInput!) { createAlertRule(input: $i) { id } }",
            json!({"i": {"name": format!("replica {i}"), "query": "replica_temp > 10", "evaluationInterval": 2}}),
        )
        .await;
    }
    // A worker takes one rule's task and dies holding it (lease: one interval).
    let now = util::now();
    let crashed = service::claim_scoped(
        &app.state.db,
        "crashed-replica-worker",
        now,
        now + secs(2),
        &service::ClaimScope::Only(vec!["monitoring_alert_evaluation".to_owned()]),
    )
    .await
    .unwrap()
    .expect("a rule task to claim");
    let crashed_rule: Uuid = crashed.payload["rule_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let _a = Replica(alert_replica(&url));
    let _b = Replica(alert_replica(&url));
    wait_until(
        Duration::from_secs(60),
        "every rule fires, the crashed one included",
        || async {
            let n = instance::Entity::find()
                .filter(instance::Column::State.eq("firing"))
                .all(&app.state.db)
                .await
                .unwrap()
                .len();
            if n == RULES {
                Ok(())
            } else {
                Err(format!("{n} firing"))
            }
        },
    )
    .await;
    // The evaluation commits before the worker re-arms the task: wait for both.
    wait_until(
        Duration::from_secs(30),
        "another worker re-arms the crashed task",
        || async {
            let t = reload(&app, crashed.id).await;
            match (&t.result, t.locked_by.as_deref()) {
                (Some(_), by) if by != Some("crashed-replica-worker") => Ok(()),
                _ => Err(format!("{} {:?} {:?}", t.status, t.locked_by, t.result)),
            }
        },
    )
    .await;
    // Let both replicas evaluate several more rounds, then check that no
    // rule was ever evaluated twice for a slot: one firing transition each,
    // and every rule's slot moved on.
    let before: Vec<_> = alert_rule::Entity::find().all(&app.state.db).await.unwrap();
    wait_until(
        Duration::from_secs(60),
        "every rule is evaluated again",
        || async {
            let rules = alert_rule::Entity::find().all(&app.state.db).await.unwrap();
            let behind = rules
                .iter()
                .filter(|r| {
                    let old = before.iter().find(|b| b.id == r.id).unwrap();
                    r.last_evaluated_at <= old.last_evaluated_at
                })
                .count();
            if behind == 0 {
                Ok(())
            } else {
                Err(format!("{behind} rules not re-evaluated"))
            }
        },
    )
    .await;
    let transitions = transition::Entity::find().all(&app.state.db).await.unwrap();
    assert_eq!(
        transitions.len(),
        RULES,
        "one transition per rule: {transitions:?}"
    );
    assert!(transitions.iter().any(|t| t.rule_id == crashed_rule));
    for r in alert_rule::Entity::find().all(&app.state.db).await.unwrap() {
        let live = rule_tasks(&app, &r.id.to_string())
            .await
            .into_iter()
            .filter(|t| ["pending", "running", "failed"].contains(&t.status.as_str()))
            .count();
        assert_eq!(live, 1, "one live task for rule {}", r.id);
    }
}
