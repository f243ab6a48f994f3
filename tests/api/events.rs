//! Events: validated ingest (single and batch), filters, cursors in time and
//! commit order, the live stream, resuming after a reconnect, REST.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, SubsecRound, Utc};
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use sightline::events::entity;
use sightline::events::filter::{EventFilter, TagMatch, TagValue};
use sightline::events::{EventType, Level, NewEvent};

use crate::common::{TestApp, error_code, wait_until};

const EVENT_FIELDS: &str = "id cursor eventType source message level tags payload timestamp receivedAt apiKeyId createdBy { id username }";

fn create_query() -> String {
    format!("mutation($i: CreateEventInput!) {{ createEvent(input: $i) {{ {EVENT_FIELDS} }} }}")
}

const CREATE_MANY: &str = "mutation($i: CreateEventsInput!) { createEvents(input: $i) { accepted ids rejected { index errors { field message } } } }";

fn page_query() -> String {
    format!(
        "query($f: EventFilter, $first: Int, $after: String, $last: Int, $before: String, $offset: Int, $limit: Int) {{
          events(filter: $f, first: $first, after: $after, last: $last, before: $before, offset: $offset, limit: $limit) {{
            totalCount
            pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
            edges {{ cursor node {{ {EVENT_FIELDS} }} }}
          }}
        }}"
    )
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

async fn create(app: &TestApp, token: &str, input: Value) -> Value {
    app.gql_ok(Some(token), &create_query(), json!({ "i": input }))
        .await["createEvent"]
        .clone()
}

async fn events(app: &TestApp, token: &str, vars: Value) -> Value {
    app.gql_ok(Some(token), &page_query(), vars).await["events"].clone()
}

/// Up to 1,000 ids (a full page of every field would exceed the complexity limit).
async fn all_ids(app: &TestApp, token: &str, filter: Value) -> (Vec<String>, u64) {
    let conn = app
        .gql_ok(
            Some(token),
            "query($f: EventFilter) { events(filter: $f, first: 1000) { totalCount edges { node { id } } } }",
            json!({ "f": filter }),
        )
        .await["events"]
        .clone();
    (ids_of(&conn), conn["totalCount"].as_u64().unwrap())
}

fn ids_of(conn: &Value) -> Vec<String> {
    conn["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn count(app: &TestApp, token: &str) -> u64 {
    events(app, token, json!({ "first": 0 })).await["totalCount"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn an_event_is_stored_with_defaults_and_returned_once_committed() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    let before = Utc::now() - ChronoDuration::seconds(1);
    let e = create(
        &app,
        &user.token,
        json!({"eventType": "LOG", "source": "web-server", "message": "Request processed",
               "level": "WARNING", "tags": {"service": "api", "code": 200, "ok": true},
               "payload": {"request_id": "req-123", "duration_ms": 245}}),
    )
    .await;
    assert_eq!(e["eventType"], "LOG");
    assert_eq!(e["level"], "WARN");
    assert_eq!(
        e["tags"],
        json!({"service": "api", "code": 200, "ok": true})
    );
    assert_eq!(e["payload"]["duration_ms"], 245);
    assert_eq!(e["createdBy"]["username"], user.username.as_str());
    assert!(e["apiKeyId"].is_null());
    let ts: DateTime<Utc> = e["timestamp"].as_str().unwrap().parse().unwrap();
    assert!(ts >= before && ts <= Utc::now());
    let got = app
        .gql_ok(
            Some(&user.token),
            &format!("query($id: ID!) {{ event(id: $id) {{ {EVENT_FIELDS} }} }}"),
            json!({ "id": e["id"] }),
        )
        .await;
    assert_eq!(got["event"], e);
    let totals = sightline::events::service::totals(&app.state.db)
        .await
        .unwrap();
    assert_eq!((totals.total, totals.last_hour), (1, 1));
}

#[tokio::test]
async fn each_validation_rule_is_bad_user_input_naming_the_field() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let base = json!({"eventType": "LOG", "source": "svc"});
    let with = |k: &str, v: Value| {
        let mut i = base.clone();
        i[k] = v;
        i
    };
    let many_tags: serde_json::Map<String, Value> =
        (0..101).map(|i| (format!("t{i}"), json!("v"))).collect();
    let big_tags: serde_json::Map<String, Value> = (0..20)
        .map(|i| (format!("t{i}"), json!("x".repeat(4000))))
        .collect();
    let future = rfc3339(Utc::now() + ChronoDuration::minutes(6));
    let cases = vec![
        (with("source", json!("")), "source"),
        (with("source", json!("s".repeat(201))), "source"),
        (with("source", json!("a\u{0}b")), "source"),
        (with("message", json!("m".repeat(10_001))), "message"),
        (with("level", json!("loud")), "level"),
        (with("tags", json!(["a"])), "tags"),
        (with("tags", Value::Object(many_tags)), "tags"),
        (with("tags", Value::Object(big_tags)), "tags"),
        (with("tags", json!({"k": {"nested": 1}})), "tags.k"),
        (with("tags", json!({"k": null})), "tags.k"),
        (with("payload", json!("text")), "payload"),
        (
            with("payload", json!({"blob": "x".repeat(1024 * 1024)})),
            "payload",
        ),
        (with("timestamp", json!(future)), "timestamp"),
    ];
    for (input, field) in cases {
        let v = app
            .gql(Some(&token), &create_query(), json!({ "i": input }))
            .await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{field}: {v}");
        assert_eq!(v["errors"][0]["extensions"]["field"], field, "{v}");
    }
    // An unknown enum value is refused by the schema itself.
    let v = app
        .gql(
            Some(&token),
            &create_query(),
            json!({"i": {"eventType": "METRICZ", "source": "s"}}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    // Back-dated and up to five minutes ahead are fine.
    for t in [
        Utc::now() - ChronoDuration::days(3),
        Utc::now() + ChronoDuration::minutes(4),
    ] {
        create(&app, &token, with("timestamp", json!(rfc3339(t)))).await;
    }
    assert_eq!(count(&app, &token).await, 2);
}

#[tokio::test]
async fn anonymous_callers_cannot_ingest_but_api_keys_can() {
    let app = TestApp::spawn().await;
    let v = app
        .gql(
            None,
            &create_query(),
            json!({"i": {"eventType": "LOG", "source": "s"}}),
        )
        .await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED");
    let user = app.create_user("USER").await;
    let key = app
        .gql_ok(
            Some(&user.token),
            "mutation { createApiKey(input: {name: \"ingest\"}) { secret apiKey { id } } }",
            json!({}),
        )
        .await["createApiKey"]
        .clone();
    let e = create(
        &app,
        key["secret"].as_str().unwrap(),
        json!({"eventType": "TRACE", "source": "svc"}),
    )
    .await;
    assert_eq!(e["apiKeyId"], key["apiKey"]["id"]);
    assert_eq!(e["createdBy"]["id"], user.id.as_str());
}

#[tokio::test]
async fn a_batch_stores_the_valid_items_and_reports_each_invalid_one_with_all_its_errors() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let items = json!([
        {"eventType": "LOG", "source": "a", "message": "one"},
        {"eventType": "LOG", "source": "", "level": "loud", "tags": "x"},
        {"eventType": "ALERT", "source": "b", "level": "error"},
    ]);
    let r = app
        .gql_ok(Some(&token), CREATE_MANY, json!({"i": {"events": items}}))
        .await["createEvents"]
        .clone();
    assert_eq!(r["accepted"], 2);
    assert_eq!(r["ids"].as_array().unwrap().len(), 2);
    assert_eq!(r["rejected"].as_array().unwrap().len(), 1);
    assert_eq!(r["rejected"][0]["index"], 1);
    let fields: Vec<&str> = r["rejected"][0]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["tags", "source", "level"]);
    let conn = events(&app, &token, json!({})).await;
    let mut stored = ids_of(&conn);
    stored.sort();
    let mut ids: Vec<String> = r["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(stored, ids);

    // Atomic: one bad item and nothing is written.
    let r = app
        .gql_ok(
            Some(&token),
            CREATE_MANY,
            json!({"i": {"atomic": true, "events": [
                {"eventType": "LOG", "source": "c"},
                {"eventType": "LOG", "source": "d", "timestamp": rfc3339(Utc::now() + ChronoDuration::hours(1))},
            ]}}),
        )
        .await["createEvents"]
        .clone();
    assert_eq!(r["accepted"], 0);
    assert_eq!(r["ids"], json!([]));
    assert_eq!(r["rejected"][0]["index"], 1);
    assert_eq!(r["rejected"][0]["errors"][0]["field"], "timestamp");
    assert_eq!(count(&app, &token).await, 2);

    // Atomic and valid: all written.
    let r = app
        .gql_ok(
            Some(&token),
            CREATE_MANY,
            json!({"i": {"atomic": true, "events": [
                {"eventType": "LOG", "source": "c"}, {"eventType": "LOG", "source": "d"}]}}),
        )
        .await["createEvents"]
        .clone();
    assert_eq!(r["accepted"], 2);
    assert_eq!(count(&app, &token).await, 4);

    // Too many.
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({"eventType": "LOG", "source": "x"}))
        .collect();
    let v = app
        .gql(Some(&token), CREATE_MANY, json!({"i": {"events": many}}))
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    assert_eq!(v["errors"][0]["extensions"]["field"], "events");
    // A full batch of 1,000 goes through in one call.
    let full: Vec<Value> = (0..1000)
        .map(|i| json!({"eventType": "LOG", "source": format!("s{}", i % 7), "tags": {"i": i}}))
        .collect();
    let r = app
        .gql_ok(Some(&token), CREATE_MANY, json!({"i": {"events": full}}))
        .await["createEvents"]
        .clone();
    assert_eq!(r["accepted"], 1000);
    assert_eq!(count(&app, &token).await, 1004);
    let totals = sightline::events::service::totals(&app.state.db)
        .await
        .unwrap();
    assert_eq!(totals.total, 1004);
}

/// A corpus covering every filter dimension.
async fn corpus(app: &TestApp, token: &str) -> DateTime<Utc> {
    let t0 = (Utc::now() - ChronoDuration::hours(2)).trunc_subsecs(0);
    let types = ["LOG", "METRIC", "TRACE", "ALERT"];
    let sources = ["web", "db", "queue"];
    let levels = [
        Value::Null,
        json!("trace"),
        json!("debug"),
        json!("info"),
        json!("warn"),
        json!("error"),
        json!("fatal"),
    ];
    let messages = [
        Value::Null,
        json!("Disk FULL on /var (100%)"),
        json!("disk usage 100 percent"),
        json!("user a_b logged in"),
        json!("user axb logged in"),
        json!("Étape terminée"),
        json!("back\\slash"),
    ];
    let tag_sets = [
        json!({}),
        json!({"status": 200, "env": "prod"}),
        json!({"status": "200", "env": "stage"}),
        json!({"status": 200.0, "ok": true}),
        json!({"ok": false, "env": "prod"}),
        json!({"k'\"); DROP TABLE events; --": "v'\"$1?", "env": "prod"}),
        json!({"a.b": "dot", "$.x": "path", "env": "dev"}),
    ];
    let mut items = Vec::new();
    for i in 0..84usize {
        let mut e = json!({
            "eventType": types[i % 4],
            "source": sources[i % 3],
            "tags": tag_sets[i % 7],
            "timestamp": rfc3339(t0 + ChronoDuration::minutes(i as i64)),
        });
        if !levels[(i / 2) % 7].is_null() {
            e["level"] = levels[(i / 2) % 7].clone();
        }
        if !messages[(i / 3) % 7].is_null() {
            e["message"] = messages[(i / 3) % 7].clone();
        }
        items.push(e);
    }
    let r = app
        .gql_ok(Some(token), CREATE_MANY, json!({"i": {"events": items}}))
        .await["createEvents"]
        .clone();
    assert_eq!(r["accepted"], 84, "{r}");
    t0
}

fn tag(key: &str, v: Value) -> TagMatch {
    TagMatch::new(key, TagValue::from_json(&v).unwrap())
}

/// The GraphQL form of a filter.
fn filter_json(f: &EventFilter) -> Value {
    let mut v = json!({});
    if !f.event_types.is_empty() {
        v["eventTypes"] = json!(
            f.event_types
                .iter()
                .map(|t| t.as_str().to_uppercase())
                .collect::<Vec<_>>()
        );
    }
    if !f.sources.is_empty() {
        v["sources"] = json!(f.sources);
    }
    if !f.levels.is_empty() {
        v["levels"] = json!(
            f.levels
                .iter()
                .map(|l| l.as_str().to_uppercase())
                .collect::<Vec<_>>()
        );
    }
    if let Some(l) = f.min_level {
        v["minLevel"] = json!(l.as_str().to_uppercase());
    }
    if let Some(t) = f.from {
        v["from"] = json!(rfc3339(t));
    }
    if let Some(t) = f.to {
        v["to"] = json!(rfc3339(t));
    }
    if !f.tags.is_empty() {
        v["tags"] = json!(
            f.tags
                .iter()
                .map(|m| {
                    let value = match &m.values[0] {
                        TagValue::String(s) => json!(s),
                        TagValue::Number(n) => json!(n),
                        TagValue::Bool(b) => json!(b),
                    };
                    json!({"key": m.key, "value": value})
                })
                .collect::<Vec<_>>()
        );
    }
    if let Some(t) = &f.text {
        v["text"] = json!(t);
    }
    v
}

#[tokio::test]
async fn every_filter_alone_and_combined_returns_exactly_what_the_stream_matcher_accepts() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let t0 = corpus(&app, &token).await;
    let all: Vec<entity::Model> = entity::Entity::find().all(&app.state.db).await.unwrap();
    assert_eq!(all.len(), 84);
    let f = |build: &dyn Fn(&mut EventFilter)| {
        let mut filter = EventFilter::default();
        build(&mut filter);
        filter
    };
    let filters: Vec<(&str, EventFilter, Option<usize>)> = vec![
        (
            "types",
            f(&|f| f.event_types = vec![EventType::Alert, EventType::Trace]),
            Some(42),
        ),
        (
            "one source",
            f(&|f| f.sources = vec!["db".into()]),
            Some(28),
        ),
        (
            "sources",
            f(&|f| f.sources = vec!["db".into(), "web".into()]),
            Some(56),
        ),
        (
            "unknown source",
            f(&|f| f.sources = vec!["nope".into()]),
            Some(0),
        ),
        (
            "levels",
            f(&|f| f.levels = vec![Level::Info, Level::Fatal]),
            None,
        ),
        ("min level", f(&|f| f.min_level = Some(Level::Warn)), None),
        (
            "levels and min",
            f(&|f| {
                f.levels = vec![Level::Debug, Level::Error];
                f.min_level = Some(Level::Info);
            }),
            None,
        ),
        (
            "from",
            f(&|f| f.from = Some(t0 + ChronoDuration::minutes(80))),
            Some(4),
        ),
        (
            "to",
            f(&|f| f.to = Some(t0 + ChronoDuration::minutes(3))),
            Some(3),
        ),
        (
            "range",
            f(&|f| {
                f.from = Some(t0 + ChronoDuration::minutes(10));
                f.to = Some(t0 + ChronoDuration::minutes(20));
            }),
            Some(10),
        ),
        (
            "tag number",
            f(&|f| f.tags = vec![tag("status", json!(200))]),
            Some(24),
        ),
        (
            "tag number as float",
            f(&|f| f.tags = vec![tag("status", json!(200.0))]),
            Some(24),
        ),
        (
            "tag string",
            f(&|f| f.tags = vec![tag("status", json!("200"))]),
            Some(12),
        ),
        (
            "tag bool true",
            f(&|f| f.tags = vec![tag("ok", json!(true))]),
            Some(12),
        ),
        (
            "tag bool false",
            f(&|f| f.tags = vec![tag("ok", json!(false))]),
            Some(12),
        ),
        (
            "tag bool as string",
            f(&|f| f.tags = vec![tag("ok", json!("true"))]),
            Some(0),
        ),
        (
            "two tags",
            f(&|f| f.tags = vec![tag("env", json!("prod")), tag("ok", json!(false))]),
            Some(12),
        ),
        (
            "hostile key",
            f(&|f| f.tags = vec![tag("k'\"); DROP TABLE events; --", json!("v'\"$1?"))]),
            Some(12),
        ),
        (
            "dotted key",
            f(&|f| f.tags = vec![tag("a.b", json!("dot"))]),
            Some(12),
        ),
        (
            "path-like key",
            f(&|f| f.tags = vec![tag("$.x", json!("path"))]),
            Some(12),
        ),
        (
            "missing tag",
            f(&|f| f.tags = vec![tag("nope", json!("x"))]),
            Some(0),
        ),
        (
            "text case",
            f(&|f| f.text = Some("disk full".into())),
            Some(12),
        ),
        (
            "text percent",
            f(&|f| f.text = Some("100%".into())),
            Some(12),
        ),
        (
            "text underscore",
            f(&|f| f.text = Some("a_b".into())),
            Some(12),
        ),
        (
            "text backslash",
            f(&|f| f.text = Some("k\\s".into())),
            Some(12),
        ),
        (
            "text non-ascii exact",
            f(&|f| f.text = Some("Étape".into())),
            Some(12),
        ),
        (
            "text non-ascii case",
            f(&|f| f.text = Some("étape".into())),
            Some(0),
        ),
        (
            "combined",
            f(&|f| {
                f.event_types = vec![EventType::Log, EventType::Alert];
                f.sources = vec!["web".into(), "queue".into()];
                f.min_level = Some(Level::Debug);
                f.from = Some(t0 + ChronoDuration::minutes(5));
                f.tags = vec![tag("env", json!("prod"))];
            }),
            None,
        ),
        (
            "combined with text",
            f(&|f| {
                f.sources = vec!["db".into()];
                f.text = Some("LOGGED".into());
                f.to = Some(t0 + ChronoDuration::minutes(70));
            }),
            None,
        ),
    ];
    for (name, filter, expected_len) in filters {
        let filter = filter.validate().unwrap();
        let mut expected: Vec<&entity::Model> = all.iter().filter(|e| filter.matches(e)).collect();
        expected.sort_by_key(|e| (e.timestamp, e.id));
        let expected: Vec<String> = expected.iter().map(|e| e.id.to_string()).collect();
        if let Some(n) = expected_len {
            assert_eq!(expected.len(), n, "matcher, {name}");
        }
        let (ids, total) = all_ids(&app, &token, filter_json(&filter)).await;
        assert_eq!(ids, expected, "{name}");
        assert_eq!(total, expected.len() as u64, "{name}");
    }
    // The hostile key did no harm.
    assert_eq!(count(&app, &token).await, 84);
}

#[tokio::test]
async fn malformed_filters_and_page_arguments_are_bad_user_input() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let now = Utc::now();
    let cases = vec![
        json!({"f": {"from": rfc3339(now), "to": rfc3339(now - ChronoDuration::hours(1))}}),
        json!({"f": {"tags": [{"key": "k", "value": {"a": 1}}]}}),
        json!({"f": {"tags": [{"key": "", "value": "x"}]}}),
        json!({"f": {"text": "x".repeat(1001)}}),
        json!({"first": -1}),
        json!({"first": 1001}),
        json!({"first": 1, "last": 1}),
        json!({"first": 1, "limit": 1}),
        json!({"offset": -5}),
        json!({"offset": 100_001}),
        json!({"after": "bm90LWEtY3Vyc29y"}),
        json!({"after": "%%%"}),
        json!({"last": 2, "offset": 3}),
    ];
    for vars in cases {
        let v = app.gql(Some(&token), &page_query(), vars.clone()).await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{vars}: {v}");
    }
    let v = app
        .gql(
            Some(&token),
            "query($id: ID!) { event(id: $id) { id } }",
            json!({"id": "nope"}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    let v = app
        .gql(
            Some(&token),
            "query($id: ID!) { event(id: $id) { id } }",
            json!({"id": uuid::Uuid::now_v7().to_string()}),
        )
        .await;
    assert_eq!(error_code(&v), "NOT_FOUND");
    let v = app.gql(None, "{ events { totalCount } }", json!({})).await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED");
}

#[tokio::test]
async fn paging_forwards_and_backwards_while_events_arrive_has_no_duplicates_or_gaps() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let t0 = Utc::now() - ChronoDuration::hours(1);
    let initial: Vec<Value> = (0..40)
        .map(|i| {
            json!({"eventType": "LOG", "source": "p",
                   "timestamp": rfc3339(t0 + ChronoDuration::seconds(i / 2))})
        })
        .collect();
    app.gql_ok(Some(&token), CREATE_MANY, json!({"i": {"events": initial}}))
        .await;
    let initial_ids: HashSet<String> = all_ids(&app, &token, Value::Null)
        .await
        .0
        .into_iter()
        .collect();
    assert_eq!(initial_ids.len(), 40);
    let filter = json!({"sources": ["p"]});

    for backward in [false, true] {
        let mut seen: Vec<(String, String)> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut round = 0;
        loop {
            // Arrivals before, inside and after the range being paged.
            let at = [
                t0 - ChronoDuration::minutes(1),
                t0 + ChronoDuration::seconds(5),
                t0 + ChronoDuration::minutes(50),
            ][round % 3];
            create(
                &app,
                &token,
                json!({"eventType": "LOG", "source": "p", "timestamp": rfc3339(at)}),
            )
            .await;
            round += 1;
            let vars = if backward {
                json!({"f": filter, "last": 7, "before": cursor})
            } else {
                json!({"f": filter, "first": 7, "after": cursor})
            };
            let conn = events(&app, &token, vars).await;
            let edges = conn["edges"].as_array().unwrap().clone();
            let mut page: Vec<(String, String)> = edges
                .iter()
                .map(|e| {
                    (
                        e["node"]["timestamp"].as_str().unwrap().to_owned(),
                        e["node"]["id"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            if backward {
                page.reverse();
            }
            seen.extend(page);
            let info = &conn["pageInfo"];
            let more = if backward {
                info["hasPreviousPage"].as_bool().unwrap()
            } else {
                info["hasNextPage"].as_bool().unwrap()
            };
            if !more {
                break;
            }
            cursor = Some(
                if backward {
                    info["startCursor"].as_str()
                } else {
                    info["endCursor"].as_str()
                }
                .unwrap()
                .to_owned(),
            );
            assert!(round < 100, "paging does not end");
        }
        let ids: Vec<&String> = seen.iter().map(|(_, id)| id).collect();
        let unique: HashSet<&String> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "duplicates (backward: {backward})");
        for id in &initial_ids {
            assert!(
                unique.contains(id),
                "gap: {id} missing (backward: {backward})"
            );
        }
        // In order: ascending forwards, descending backwards.
        let keys: Vec<(DateTime<Utc>, uuid::Uuid)> = seen
            .iter()
            .map(|(t, id)| (t.parse().unwrap(), id.parse().unwrap()))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        if backward {
            sorted.reverse();
        }
        assert_eq!(keys, sorted, "order (backward: {backward})");
    }
}

#[tokio::test]
async fn offset_and_limit_page_like_the_rest_api() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let items: Vec<Value> = (0..10)
        .map(|i| json!({"eventType": "LOG", "source": "o", "message": format!("m{i}")}))
        .collect();
    app.gql_ok(Some(&token), CREATE_MANY, json!({"i": {"events": items}}))
        .await;
    let all = ids_of(&events(&app, &token, json!({})).await);
    let conn = events(&app, &token, json!({"offset": 3, "limit": 4})).await;
    assert_eq!(ids_of(&conn), all[3..7].to_vec());
    assert_eq!(conn["pageInfo"]["hasPreviousPage"], true);
    assert_eq!(conn["pageInfo"]["hasNextPage"], true);
}

#[tokio::test]
async fn commit_order_cursors_page_by_arrival_even_for_back_dated_events() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let first = create(&app, &token, json!({"eventType": "LOG", "source": "c"})).await;
    let old = rfc3339(Utc::now() - ChronoDuration::days(1));
    let mut later = Vec::new();
    for i in 0..5 {
        let ts = if i % 2 == 0 { json!(old) } else { Value::Null };
        let mut input = json!({"eventType": "LOG", "source": "c", "message": format!("{i}")});
        if !ts.is_null() {
            input["timestamp"] = ts;
        }
        later.push(create(&app, &token, input).await["id"].clone());
    }
    let conn = events(&app, &token, json!({"after": first["cursor"], "first": 3})).await;
    assert_eq!(
        ids_of(&conn),
        later[..3]
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    );
    assert_eq!(conn["pageInfo"]["hasNextPage"], true);
    let conn = events(
        &app,
        &token,
        json!({"after": conn["pageInfo"]["endCursor"]}),
    )
    .await;
    assert_eq!(
        ids_of(&conn),
        later[3..]
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    );
    // In time order, the back-dated ones come first instead.
    let conn = events(&app, &token, json!({})).await;
    assert_eq!(ids_of(&conn)[0], later[0].as_str().unwrap());
    // The two cursor kinds do not mix.
    let time_cursor = conn["edges"][0]["cursor"].clone();
    let v = app
        .gql(
            Some(&token),
            &page_query(),
            json!({"after": first["cursor"], "before": time_cursor}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
}

const SUBSCRIBE: &str =
    "subscription($f: EventFilter) { eventCreated(filter: $f) { id cursor source level message } }";

#[tokio::test]
async fn the_live_stream_delivers_matching_events_in_commit_order() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let mut ws = app
        .subscribe(
            Some(&token),
            SUBSCRIBE,
            json!({"f": {"sources": ["s1"], "minLevel": "WARN", "tags": [{"key": "n", "value": 1}]}}),
        )
        .await;
    // The subscription is live once the server has a subscriber.
    wait_until(Duration::from_secs(10), "the subscriber", || async {
        let n = app.state.hub.topics().events.subscriber_count();
        if n > 0 { Ok(()) } else { Err(n.to_string()) }
    })
    .await;
    let mut expected = Vec::new();
    for i in 0..6 {
        let items: Vec<Value> = vec![
            json!({"eventType": "LOG", "source": "s1", "level": "error", "message": format!("b{i}"), "tags": {"n": 1}}),
            json!({"eventType": "LOG", "source": "s2", "level": "error", "tags": {"n": 1}}),
            json!({"eventType": "LOG", "source": "s1", "level": "info", "tags": {"n": 1}}),
            json!({"eventType": "LOG", "source": "s1", "level": "fatal", "tags": {"n": "1"}}),
            json!({"eventType": "LOG", "source": "s1", "level": "warning", "message": format!("c{i}"), "tags": {"n": 1.0}}),
        ];
        let r = app
            .gql_ok(Some(&token), CREATE_MANY, json!({"i": {"events": items}}))
            .await["createEvents"]
            .clone();
        expected.push(r["ids"][0].as_str().unwrap().to_owned());
        expected.push(r["ids"][4].as_str().unwrap().to_owned());
        let single = create(
            &app,
            &token,
            json!({"eventType": "ALERT", "source": "s1", "level": "ERROR", "tags": {"n": 1}}),
        )
        .await;
        expected.push(single["id"].as_str().unwrap().to_owned());
    }
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let p = ws.next_payload().await;
        assert!(p.get("errors").is_none(), "{p}");
        got.push(p["data"]["eventCreated"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(got, expected);
    // Nothing else arrives.
    create(
        &app,
        &token,
        json!({"eventType": "LOG", "source": "s2", "level": "fatal"}),
    )
    .await;
    let marker = create(
        &app,
        &token,
        json!({"eventType": "LOG", "source": "s1", "level": "fatal", "tags": {"n": 1}}),
    )
    .await;
    let p = ws.next_payload().await;
    assert_eq!(p["data"]["eventCreated"]["id"], marker["id"]);
}

#[tokio::test]
async fn subscribing_requires_credentials_and_a_valid_filter() {
    let app = TestApp::spawn().await;
    let mut ws = app.subscribe(None, SUBSCRIBE, json!({})).await;
    let msg = ws.recv_json().await.expect("a reply");
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(msg["payload"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let token = app.login_as("USER").await;
    let mut ws = app
        .subscribe(Some(&token), SUBSCRIBE, json!({"f": {"text": "\u{0}"}}))
        .await;
    let msg = ws.recv_json().await.expect("a reply");
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(msg["payload"][0]["extensions"]["code"], "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_subscriber_that_reconnects_fetches_exactly_what_it_missed_with_its_last_cursor() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let filter = json!({"sources": ["r"]});
    let mut ws = app
        .subscribe(Some(&token), SUBSCRIBE, json!({"f": filter}))
        .await;
    wait_until(Duration::from_secs(10), "the subscriber", || async {
        let n = app.state.hub.topics().events.subscriber_count();
        if n > 0 { Ok(()) } else { Err(n.to_string()) }
    })
    .await;
    for i in 0..3 {
        create(
            &app,
            &token,
            json!({"eventType": "LOG", "source": "r", "message": format!("seen {i}")}),
        )
        .await;
    }
    let mut last_cursor = Value::Null;
    for _ in 0..3 {
        let p = ws.next_payload().await;
        last_cursor = p["data"]["eventCreated"]["cursor"].clone();
    }
    drop(ws);
    wait_until(
        Duration::from_secs(10),
        "the subscriber to leave",
        || async {
            let n = app.state.hub.topics().events.subscriber_count();
            if n == 0 { Ok(()) } else { Err(n.to_string()) }
        },
    )
    .await;
    // Missed while away: some back-dated, some for another source, a batch.
    let day_ago = rfc3339(Utc::now() - ChronoDuration::days(1));
    let mut missed = Vec::new();
    missed.push(
        create(
            &app,
            &token,
            json!({"eventType": "LOG", "source": "r", "timestamp": day_ago}),
        )
        .await["id"]
            .clone(),
    );
    create(&app, &token, json!({"eventType": "LOG", "source": "other"})).await;
    let r = app
        .gql_ok(
            Some(&token),
            CREATE_MANY,
            json!({"i": {"events": [
                {"eventType": "LOG", "source": "r"},
                {"eventType": "LOG", "source": "r", "timestamp": day_ago},
            ]}}),
        )
        .await["createEvents"]
        .clone();
    missed.extend(r["ids"].as_array().unwrap().iter().cloned());
    missed.push(
        create(&app, &token, json!({"eventType": "TRACE", "source": "r"})).await["id"].clone(),
    );

    // Reconnect, then catch up from the last cursor.
    let mut ws = app
        .subscribe(Some(&token), SUBSCRIBE, json!({"f": filter}))
        .await;
    wait_until(Duration::from_secs(10), "the subscriber", || async {
        let n = app.state.hub.topics().events.subscriber_count();
        if n > 0 { Ok(()) } else { Err(n.to_string()) }
    })
    .await;
    let conn = events(&app, &token, json!({"f": filter, "after": last_cursor})).await;
    let got: Vec<Value> = conn["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].clone())
        .collect();
    assert_eq!(got, missed);
    assert_eq!(conn["pageInfo"]["hasNextPage"], false);
    // And the stream continues after that.
    let next = create(&app, &token, json!({"eventType": "LOG", "source": "r"})).await;
    let p = ws.next_payload().await;
    assert_eq!(p["data"]["eventCreated"]["id"], next["id"]);
    let conn = events(
        &app,
        &token,
        json!({"f": filter, "after": conn["pageInfo"]["endCursor"]}),
    )
    .await;
    assert_eq!(ids_of(&conn), vec![next["id"].as_str().unwrap().to_owned()]);
}

#[tokio::test]
async fn the_rust_api_stores_in_the_callers_transaction_and_keeps_totals_right() {
    use sea_orm::TransactionTrait;
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    let txn = db.begin().await.unwrap();
    let e = sightline::events::create_event(
        &txn,
        None,
        NewEvent::log("internal", Some("info"), "done"),
    )
    .await
    .unwrap();
    txn.rollback().await.unwrap();
    assert!(
        sightline::events::service::find_event(db, e.id)
            .await
            .is_err()
    );
    assert_eq!(
        sightline::events::service::totals(db).await.unwrap().total,
        0
    );

    let txn = db.begin().await.unwrap();
    let stored = sightline::events::create_events(
        &txn,
        None,
        vec![
            NewEvent::log("internal", None, "a"),
            NewEvent::log("internal", None, "b"),
        ],
    )
    .await
    .unwrap();
    let announced = sightline::events::publish_created(&app.state.hub, &txn, stored.clone())
        .await
        .unwrap();
    txn.commit().await.unwrap();
    announced.committed();
    assert_eq!(stored.len(), 2);
    assert!(stored[0].received_at <= stored[1].received_at);
    let bad = sightline::events::create_events(
        db,
        None,
        vec![NewEvent::log("ok", None, "a"), NewEvent::log("", None, "b")],
    )
    .await
    .unwrap_err();
    assert_eq!(bad.field.as_deref(), Some("events[1].source"));
    let totals = sightline::events::service::totals(db).await.unwrap();
    assert_eq!(totals.total, 2);
    // Retention keeps the totals right through record_deleted.
    let txn = db.begin().await.unwrap();
    sightline::events::service::record_deleted(&txn, 1)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(
        sightline::events::service::totals(db).await.unwrap().total,
        1
    );
    // Events from the Rust API come after earlier ones in commit order.
    let user = app.login_as("USER").await;
    let via_api = create(&app, &user, json!({"eventType": "LOG", "source": "x"})).await;
    let mut received: Vec<DateTime<Utc>> = stored.iter().map(|e| e.received_at).collect();
    received.push(via_api["receivedAt"].as_str().unwrap().parse().unwrap());
    assert!(received.windows(2).all(|w| w[0] <= w[1]));
}

#[tokio::test]
async fn ingest_fails_fast_with_unavailable_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    let pool = app.state.ingest.pool().await.expect("the writers' pool");
    pool.close().await.unwrap();
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let err =
            sightline::events::service::ingest(&app.state, None, NewEvent::log("x", None, "y"))
                .await
                .unwrap_err();
        assert_eq!(err.code, sightline::ErrorCode::Unavailable);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_rest_endpoints_keep_the_original_shapes_and_status_codes() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let url = app.url("/api/v1/monitoring/events");
    let post = |body: String| {
        app.client
            .post(&url)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body)
    };
    let resp = post(
        json!({"event_type": "log", "source": "web-server", "message": "Request processed successfully",
               "level": "info", "tags": {"service": "api", "environment": "production"},
               "payload": {"request_id": "req-123", "duration_ms": 245}})
        .to_string(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["success"], true);
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["data"]["event_type"], "log");
    assert_eq!(body["data"]["tags"]["service"], "api");

    let resp = post(json!({"event_type": "metricz", "source": "s"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], "BAD_USER_INPUT");
    assert_eq!(body["error"]["field"], "event_type");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("log, metric, trace, alert")
    );
    let resp = post("{not json".into()).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let resp = post(json!({"event_type": "log", "source": "s", "mesage": "typo"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(json!({"event_type": "log", "source": "s"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = app
        .client
        .post(&url)
        .header("authorization", format!("Bearer {token}"))
        .body(json!({"event_type": "log", "source": "s"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let huge = json!({"event_type": "log", "source": "s", "payload": {"x": "y".repeat(9 << 20)}});
    let resp = post(huge.to_string()).send().await.unwrap();
    assert_eq!(resp.status(), 413);

    // A JSON array is a partial-success batch.
    let resp = post(
        json!([{"event_type": "trace", "source": "db", "level": "warning", "tags": {"env": "prod", "code": 500}},
               {"event_type": "bogus", "source": "db"}])
        .to_string(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"]["accepted"], 1);
    assert_eq!(body["data"]["rejected"][0]["index"], 1);
    assert_eq!(
        body["data"]["rejected"][0]["errors"][0]["field"],
        "event_type"
    );

    let get = |q: &str| {
        app.client
            .get(format!("{url}{q}"))
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    let body: Value = get("?event_type=log&source=web-server&limit=50")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["id"], id.as_str());
    for (q, n) in [
        ("?tags=env:prod", 1),
        ("?tags=code:500", 1),
        ("?tags=code:500,env:stage", 0),
        ("?level=WARN", 1),
        ("?min_level=info", 2),
        ("?source=db,web-server&limit=1", 1),
        ("?offset=1", 1),
        ("?text=SUCCESSFULLY", 1),
    ] {
        let resp = get(q).await.unwrap();
        assert_eq!(resp.status(), 200, "{q}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["data"].as_array().unwrap().len(), n, "{q}");
    }
    let start = rfc3339(Utc::now() - ChronoDuration::hours(1));
    let body: Value = get(&format!("?start_time={start}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    for q in [
        "?event_type=bogus",
        "?limit=-1",
        "?limit=5000",
        "?limit=abc",
        "?offset=-1",
        "?start_time=yesterday",
        "?tags=novalue",
        "?level=loud",
        "?colour=red",
    ] {
        let resp = get(q).await.unwrap();
        assert_eq!(resp.status(), 400, "{q}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "BAD_USER_INPUT", "{q}");
    }
    let resp = get(&format!("/{id}")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"]["source"], "web-server");
    let resp = get(&format!("/{}", uuid::Uuid::now_v7())).await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = get("/not-a-uuid").await.unwrap();
    assert_eq!(resp.status(), 400);
    let resp = app.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn a_flood_of_concurrent_single_events_is_all_stored_with_distinct_commit_positions() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let app = Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let app = app.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let e = create(
                &app,
                &token,
                json!({"eventType": "LOG", "source": "flood", "message": format!("{i}")}),
            )
            .await;
            e["cursor"].as_str().unwrap().to_owned()
        }));
    }
    let mut cursors = HashSet::new();
    for t in tasks {
        cursors.insert(t.await.unwrap());
    }
    assert_eq!(cursors.len(), 64);
    assert_eq!(count(&app, &token).await, 64);
    let all: Vec<entity::Model> = entity::Entity::find().all(&app.state.db).await.unwrap();
    let mut by_commit: Vec<_> = all.iter().map(|e| (e.received_at, e.id)).collect();
    by_commit.sort();
    by_commit.dedup();
    assert_eq!(by_commit.len(), 64);
}

#[tokio::test]
async fn postgres_planner_statistics_are_gathered_after_bulk_ingest() {
    if !crate::common::backend_is_postgres() {
        eprintln!(
            "skipping postgres_planner_statistics_are_gathered_after_bulk_ingest: planner statistics are PostgreSQL's; set TEST_DATABASE_URL=postgres://... to run it"
        );
        return;
    }
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    for batch in 0..3 {
        let items: Vec<Value> = (0..1000)
            .map(|i| json!({"eventType": "LOG", "source": format!("bulk-{batch}"), "message": format!("m{i}")}))
            .collect();
        let r = app
            .gql_ok(Some(&token), CREATE_MANY, json!({"i": {"events": items}}))
            .await;
        assert_eq!(r["createEvents"]["accepted"], 1000);
    }
    let pool = app.state.db.get_postgres_connection_pool().clone();
    // PostgreSQL counts the inserts once the writing backend reports them
    // (within a second): wait for all of them, or an ANALYZE between two
    // reports leaves the last batch counted as changed since.
    wait_until(Duration::from_secs(30), "the inserts counted", || {
        let pool = pool.clone();
        async move {
            let inserted: i64 = sqlx::query_scalar(
                "SELECT n_tup_ins FROM pg_stat_user_tables \
                 WHERE relname = 'events' AND schemaname = current_schema()",
            )
            .fetch_one(&pool)
            .await
            .map_err(|e| e.to_string())?;
            if inserted >= 3000 {
                Ok(())
            } else {
                Err(format!("{inserted} inserts counted"))
            }
        }
    })
    .await;
    // The server's own keeper may analyze first.
    wait_until(Duration::from_secs(30), "events analyzed", || {
        let db = app.state.db.clone();
        let pool = pool.clone();
        async move {
            let refreshed = sightline::db::analyze_stale_tables(&db)
                .await
                .map_err(|e| e.to_string())?;
            let analyzed: bool = sqlx::query_scalar(
                "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables \
                 WHERE relname = 'events' AND schemaname = current_schema()",
            )
            .fetch_one(&pool)
            .await
            .map_err(|e| e.to_string())?;
            if refreshed.iter().any(|t| t == "events") || analyzed {
                Ok(())
            } else {
                Err(format!("refreshed {refreshed:?}"))
            }
        }
    })
    .await;
    let estimate: f32 = sqlx::query_scalar(
        "SELECT reltuples FROM pg_class WHERE relname = 'events' \
         AND relnamespace = current_schema()::regnamespace",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(estimate >= 3000.0, "the planner's row estimate: {estimate}");
    // Fresh statistics are left alone.
    let again = sightline::db::analyze_stale_tables(&app.state.db)
        .await
        .unwrap();
    assert!(!again.iter().any(|t| t == "events"), "{again:?}");
}
