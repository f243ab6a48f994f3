//! Alert rules end to end: a real server evaluates rules over metrics and
//! events with short intervals, and the tests poll (with a deadline) for the
//! states, history, silences, acknowledgements, restarts and previews they
//! expect; plus validation, RBAC on every operation, and the REST shape.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
};
use serde_json::{Value, json};

use crate::common::{TestApp, error_code, wait_until};

const WAIT: Duration = Duration::from_secs(30);

const RULE_FIELDS: &str = "id createdAt name query condition threshold for keepFiringFor severity labels \
    enabled evaluationInterval createIncident incidentSeverity lastEvaluatedAt lastError \
    annotations { summary description runbookUrl } createdBy { username }";

const ALERT_FIELDS: &str = "id ruleId state labels value activeAt firedAt resolvedAt \
    lastEvaluatedAt keepFiringSince silenced silencedBy { id } acknowledged acknowledgedBy { username } \
    acknowledgedAt acknowledgementComment rule { name }";

/// Stores one metric sample the way ingest does (family, series and sample
/// rows, with the series' latest value, running total and count).
pub(crate) async fn put_sample(
    app: &TestApp,
    name: &str,
    kind: &str,
    labels: &[(&str, &str)],
    value: f64,
    at: DateTime<Utc>,
) {
    use sightline::metrics::entity::{family, sample, series};
    let db = &app.state.db;
    let now = sightline::util::now();
    let fam = match family::Entity::find()
        .filter(family::Column::Name.eq(name))
        .one(db)
        .await
        .unwrap()
    {
        Some(f) => f,
        None => family::ActiveModel {
            name: Set(name.to_owned()),
            metric_type: Set(kind.to_owned()),
            series_count: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(db)
        .await
        .unwrap(),
    };
    let mut map = serde_json::Map::new();
    let mut sorted: Vec<_> = labels.to_vec();
    sorted.sort();
    for (k, v) in sorted {
        map.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    let labels_json = Value::Object(map);
    let fingerprint = sightline::util::sha256_hex(&labels_json.to_string());
    let at = sightline::util::to_stored_precision(at);
    let existing = series::Entity::find()
        .filter(series::Column::FamilyId.eq(fam.id))
        .filter(series::Column::Fingerprint.eq(fingerprint.clone()))
        .one(db)
        .await
        .unwrap();
    let added = if kind == "counter" {
        value.max(0.0)
    } else {
        value
    };
    let s = match existing {
        Some(s) => {
            let newer = s.last_sample_at.is_none_or(|t| at >= t);
            let mut a: series::ActiveModel = s.clone().into();
            if newer {
                a.last_sample_at = Set(Some(at));
                a.last_value = Set(Some(value));
            }
            a.total = Set(s.total + added);
            a.sample_count = Set(s.sample_count + 1);
            a.update(db).await.unwrap()
        }
        None => {
            let s = series::ActiveModel {
                family_id: Set(fam.id),
                labels: Set(labels_json),
                fingerprint: Set(fingerprint),
                created_at: Set(now),
                last_sample_at: Set(Some(at)),
                last_value: Set(Some(value)),
                total: Set(added),
                sample_count: Set(1),
                ..Default::default()
            }
            .insert(db)
            .await
            .unwrap();
            let mut f: family::ActiveModel = fam.clone().into();
            f.series_count = Set(fam.series_count + 1);
            f.update(db).await.unwrap();
            s
        }
    };
    sample::ActiveModel {
        series_id: Set(s.id),
        timestamp: Set(at),
        value: Set(value),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
}

/// A gauge sample stamped now.
async fn gauge(app: &TestApp, name: &str, labels: &[(&str, &str)], value: f64) {
    put_sample(app, name, "gauge", labels, value, sightline::util::now()).await;
}

pub(crate) async fn create_rule(app: &TestApp, token: &str, input: Value) -> Value {
    let q = format!(
        "mutation($i: CreateAlertRuleInput!) {{ createAlertRule(input: $i) {{ {RULE_FIELDS} }} }}"
    );
    app.gql_ok(Some(token), &q, json!({ "i": input })).await["createAlertRule"].clone()
}

async fn alerts_of(app: &TestApp, rule_id: &str) -> Vec<Value> {
    let q = format!("query($r: ID) {{ alerts(ruleId: $r) {{ {ALERT_FIELDS} }} }}");
    let d = app
        .gql_ok(Some(&app.admin_token), &q, json!({ "r": rule_id }))
        .await;
    d["alerts"].as_array().cloned().unwrap_or_default()
}

/// Waits until the rule has an alert whose labels include `labels` and
/// whose state satisfies `check`; returns it.
async fn wait_alert(
    app: &TestApp,
    rule_id: &str,
    what: &str,
    labels: Value,
    check: impl Fn(&Value) -> bool,
) -> Value {
    wait_until(WAIT, what, || {
        let labels = labels.clone();
        let check = &check;
        async move {
            let alerts = alerts_of(app, rule_id).await;
            let found = alerts.iter().find(|a| {
                labels
                    .as_object()
                    .unwrap()
                    .iter()
                    .all(|(k, v)| a["labels"][k] == *v)
            });
            match found {
                Some(a) if check(a) => Ok(a.clone()),
                _ => Err(format!("{alerts:?}")),
            }
        }
    })
    .await
}

fn is_state(state: &'static str) -> impl Fn(&Value) -> bool {
    move |a: &Value| a["state"] == state
}

async fn history(app: &TestApp, rule_id: &str) -> Vec<Value> {
    let d = app
        .gql_ok(
            Some(&app.admin_token),
            "query($r: ID) { alertHistory(filter: {ruleId: $r}, first: 1000) { totalCount nodes { cursor ruleId ruleName alertId labels from to value silenced at severity rule { name } alert { id } } } }",
            json!({ "r": rule_id }),
        )
        .await;
    let nodes = d["alertHistory"]["nodes"].as_array().cloned().unwrap();
    assert_eq!(d["alertHistory"]["totalCount"], nodes.len());
    nodes
}

fn path(history: &[Value]) -> Vec<(String, String)> {
    history
        .iter()
        .map(|t| {
            (
                t["from"].as_str().unwrap().to_owned(),
                t["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

async fn alert_events(app: &TestApp) -> Vec<sightline::events::entity::Model> {
    use sightline::events::entity as events;
    let mut rows = events::Entity::find()
        .filter(events::Column::EventType.eq("alert"))
        .all(&app.state.db)
        .await
        .unwrap();
    rows.sort_by_key(|e| (e.received_at, e.id));
    rows
}

#[tokio::test]
async fn an_alert_goes_pending_then_firing_then_resolved_and_records_everything() {
    let app = TestApp::spawn().await;
    let moderator = app.create_user("MODERATOR").await;
    gauge(&app, "cpu_usage", &[("host", "a")], 50.0).await;
    gauge(&app, "cpu_usage", &[("host", "b")], 99.0).await;
    let rule = create_rule(
        &app,
        &moderator.token,
        json!({
            "name": "High CPU",
            "query": "cpu_usage{host=\"a\"} > 80",
            "for": 2,
            "evaluationInterval": 1,
            "severity": "CRITICAL",
            "labels": {"team": "core"},
            "annotations": {"summary": "CPU above 80%"},
        }),
    )
    .await;
    let id = rule["id"].as_str().unwrap().to_owned();
    assert_eq!(rule["condition"], "cpu_usage{host=\"a\"} > 80");
    assert_eq!(rule["createdBy"]["username"], moderator.username);
    assert_eq!(rule["for"], 2);

    // Below the threshold: evaluated, nothing pending.
    wait_until(WAIT, "a first evaluation", || async {
        let d = app
            .gql_ok(
                Some(&app.admin_token),
                "query($id: ID!) { alertRule(id: $id) { lastEvaluatedAt } }",
                json!({ "id": id }),
            )
            .await;
        if d["alertRule"]["lastEvaluatedAt"].is_string() {
            Ok(())
        } else {
            Err(d.to_string())
        }
    })
    .await;
    assert!(alerts_of(&app, &id).await.is_empty());

    gauge(&app, "cpu_usage", &[("host", "a")], 93.5).await;
    let pending = wait_alert(
        &app,
        &id,
        "pending",
        json!({"host": "a"}),
        is_state("PENDING"),
    )
    .await;
    assert_eq!(pending["labels"], json!({"host": "a", "team": "core"}));
    assert_eq!(pending["value"], 93.5);
    assert!(pending["firedAt"].is_null());
    let firing = wait_alert(
        &app,
        &id,
        "firing",
        json!({"host": "a"}),
        is_state("FIRING"),
    )
    .await;
    let held = time(&firing["firedAt"]) - time(&firing["activeAt"]);
    assert!(held >= chrono::TimeDelta::seconds(2), "fired after {held}");
    assert_eq!(firing["activeAt"], pending["activeAt"]);
    assert_eq!(firing["rule"]["name"], "High CPU");
    assert_eq!(firing["silenced"], false);

    gauge(&app, "cpu_usage", &[("host", "a")], 12.0).await;
    let resolved = wait_alert(
        &app,
        &id,
        "resolved",
        json!({"host": "a"}),
        is_state("INACTIVE"),
    )
    .await;
    assert!(time(&resolved["resolvedAt"]) > time(&resolved["firedAt"]));
    assert_eq!(resolved["id"], firing["id"], "the same alert, resolved");

    let h = history(&app, &id).await;
    assert_eq!(
        path(&h),
        pairs(&[
            ("INACTIVE", "PENDING"),
            ("PENDING", "FIRING"),
            ("FIRING", "INACTIVE")
        ])
    );
    assert!(
        h.iter()
            .all(|t| t["labels"] == json!({"host": "a", "team": "core"}))
    );
    assert!(
        h.iter()
            .all(|t| t["alertId"] == firing["id"] && t["ruleName"] == "High CPU")
    );
    assert_eq!(
        h[2]["value"], 93.5,
        "a resolution carries the last true value"
    );
    assert_eq!(h[0]["severity"], "CRITICAL");
    // Filtering the history by target state and by alert.
    let d = app
        .gql_ok(
            Some(&app.admin_token),
            "query($a: ID) { alertHistory(filter: {alertId: $a, toStates: [FIRING]}) { totalCount nodes { to } } }",
            json!({ "a": firing["id"] }),
        )
        .await;
    assert_eq!(d["alertHistory"]["totalCount"], 1);

    // Firing and resolved transitions were written as alert events.
    let events = alert_events(&app).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].source, "sightline.alerts");
    assert_eq!(events[0].level.as_deref(), Some("error"));
    assert_eq!(events[0].tags["alertname"], "High CPU");
    assert_eq!(events[0].tags["host"], "a");
    assert_eq!(events[0].tags["team"], "core");
    assert_eq!(events[0].tags["severity"], "critical");
    assert_eq!(events[0].tags["rule_id"], id.as_str());
    assert_eq!(events[0].payload["state"], "firing");
    assert_eq!(events[0].payload["value"], 93.5);
    assert_eq!(events[0].payload["rule"]["name"], "High CPU");
    assert!(
        events[0]
            .message
            .as_deref()
            .unwrap()
            .contains("CPU above 80%")
    );
    assert_eq!(events[1].payload["state"], "resolved");
    assert_eq!(events[1].level.as_deref(), Some("info"));

    // Host b was never selected.
    assert_eq!(alerts_of(&app, &id).await.len(), 1);
}

#[tokio::test]
async fn keep_firing_for_holds_a_firing_alert_after_the_condition_stops() {
    let app = TestApp::spawn().await;
    gauge(&app, "queue_depth", &[], 500.0).await;
    let rule = create_rule(
        &app,
        &app.admin_token,
        json!({"name": "Deep queue", "query": "queue_depth", "threshold": 100,
               "keepFiringFor": 3, "evaluationInterval": 1}),
    )
    .await;
    let id = rule["id"].as_str().unwrap().to_owned();
    assert_eq!(rule["condition"], "queue_depth > 100");
    wait_alert(&app, &id, "firing", json!({}), is_state("FIRING")).await;
    gauge(&app, "queue_depth", &[], 3.0).await;
    let kept = wait_alert(&app, &id, "kept firing", json!({}), |a| {
        a["state"] == "FIRING" && a["keepFiringSince"].is_string()
    })
    .await;
    assert_eq!(kept["value"], 500.0, "the value stays the last true one");
    let resolved = wait_alert(&app, &id, "resolved", json!({}), is_state("INACTIVE")).await;
    let kept_for = time(&resolved["resolvedAt"]) - time(&kept["keepFiringSince"]);
    assert!(
        kept_for >= chrono::TimeDelta::seconds(3),
        "kept for {kept_for}"
    );
    assert_eq!(
        path(&history(&app, &id).await),
        pairs(&[("INACTIVE", "FIRING"), ("FIRING", "INACTIVE")])
    );
}

#[tokio::test]
async fn silences_mark_matching_alerts_and_leave_the_others_alone() {
    let app = TestApp::spawn().await;
    let moderator = app.create_user("MODERATOR").await;
    for host in ["a", "b"] {
        gauge(&app, "disk_full", &[("host", host)], 1.0).await;
    }
    let rule = create_rule(
        &app,
        &moderator.token,
        json!({"name": "Disk full", "query": "disk_full == 1", "evaluationInterval": 1}),
    )
    .await;
    let id = rule["id"].as_str().unwrap().to_owned();
    for host in ["a", "b"] {
        wait_alert(
            &app,
            &id,
            "firing",
            json!({"host": host}),
            is_state("FIRING"),
        )
        .await;
    }
    let q = "mutation($i: CreateSilenceInput!) { createSilence(input: $i) { id state comment matchers { label op value } createdBy { username } startsAt endsAt } }";
    let ends = (Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let silence = app
        .gql_ok(
            Some(&moderator.token),
            q,
            json!({"i": {
                "matchers": [{"label": "host", "value": "a"}, {"label": "alertname", "op": "RE", "value": "Disk.*"}],
                "endsAt": ends, "comment": "replacing the disk"}}),
        )
        .await["createSilence"]
        .clone();
    assert_eq!(silence["state"], "ACTIVE");
    assert_eq!(
        silence["matchers"][0],
        json!({"label": "host", "op": "EQ", "value": "a"})
    );
    assert_eq!(silence["createdBy"]["username"], moderator.username);
    let silenced = wait_alert(&app, &id, "a silenced", json!({"host": "a"}), |a| {
        a["silenced"] == true
    })
    .await;
    assert_eq!(silenced["silencedBy"]["id"], silence["id"]);
    assert_eq!(
        silenced["state"], "FIRING",
        "a silenced alert keeps its state"
    );
    let b = alerts_of(&app, &id)
        .await
        .into_iter()
        .find(|a| a["labels"]["host"] == "b")
        .unwrap();
    assert_eq!(b["silenced"], false);
    assert!(b["silencedBy"].is_null());

    // A silenced alert still records its history.
    gauge(&app, "disk_full", &[("host", "a")], 0.0).await;
    wait_alert(
        &app,
        &id,
        "a resolved",
        json!({"host": "a"}),
        is_state("INACTIVE"),
    )
    .await;
    let h = history(&app, &id).await;
    let resolution = h
        .iter()
        .find(|t| t["labels"]["host"] == "a" && t["to"] == "INACTIVE")
        .expect("resolution recorded");
    assert_eq!(resolution["silenced"], true);
    gauge(&app, "disk_full", &[("host", "a")], 1.0).await;
    wait_alert(&app, &id, "a silenced again", json!({"host": "a"}), |a| {
        a["state"] == "FIRING" && a["silenced"] == true
    })
    .await;

    // Expiring keeps the record and unsilences at once.
    let expired = app
        .gql_ok(
            Some(&moderator.token),
            "mutation($i: ExpireSilenceInput!) { expireSilence(input: $i) { state endsAt } }",
            json!({"i": {"id": silence["id"]}}),
        )
        .await;
    assert_eq!(expired["expireSilence"]["state"], "EXPIRED");
    wait_alert(&app, &id, "a unsilenced", json!({"host": "a"}), |a| {
        a["silenced"] == false && a["state"] == "FIRING"
    })
    .await;
    let v = app
        .gql(
            Some(&moderator.token),
            "mutation($i: ExpireSilenceInput!) { expireSilence(input: $i) { id } }",
            json!({"i": {"id": silence["id"]}}),
        )
        .await;
    assert_eq!(error_code(&v), "CONFLICT");
    let d = app
        .gql_ok(
            Some(&app.admin_token),
            "{ all: silences { totalCount nodes { id state } } active: silences(filter: {states: [ACTIVE, PENDING]}) { totalCount } expired: silences(filter: {states: [EXPIRED]}) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(d["all"]["totalCount"], 1);
    assert_eq!(d["active"]["totalCount"], 0);
    assert_eq!(d["expired"]["totalCount"], 1);

    // A silence that starts later is pending.
    let starts = (Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let ends = (Utc::now() + chrono::TimeDelta::hours(2)).to_rfc3339();
    let later = app
        .gql_ok(
            Some(&moderator.token),
            q,
            json!({"i": {"matchers": [{"label": "host", "value": "b"}], "startsAt": starts, "endsAt": ends, "comment": "later"}}),
        )
        .await;
    assert_eq!(later["createSilence"]["state"], "PENDING");
}

#[tokio::test]
async fn silences_are_validated() {
    let app = TestApp::spawn().await;
    let q = "mutation($i: CreateSilenceInput!) { createSilence(input: $i) { id } }";
    let ends = (Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let past = (Utc::now() - chrono::TimeDelta::hours(1)).to_rfc3339();
    let cases = [
        (
            json!({"matchers": [], "endsAt": ends, "comment": "x"}),
            "matchers",
        ),
        (
            json!({"matchers": [{"label": "host", "op": "RE", "value": ".*"}], "endsAt": ends, "comment": "x"}),
            "matchers",
        ),
        (
            json!({"matchers": [{"label": "host", "op": "RE", "value": "(a"}], "endsAt": ends, "comment": "x"}),
            "matchers[0].value",
        ),
        (
            json!({"matchers": [{"label": "bad-label", "value": "a"}], "endsAt": ends, "comment": "x"}),
            "matchers[0].label",
        ),
        (
            json!({"matchers": [{"label": "host", "value": "a\u{0}"}], "endsAt": ends, "comment": "x"}),
            "matchers[0].value",
        ),
        (
            json!({"matchers": [{"label": "host", "value": "a"}], "endsAt": ends, "comment": " "}),
            "comment",
        ),
        (
            json!({"matchers": [{"label": "host", "value": "a"}], "endsAt": past, "comment": "x"}),
            "endsAt",
        ),
        (
            json!({"matchers": [{"label": "host", "value": "a"}], "endsAt": "9999-01-01T00:00:00Z", "comment": "x"}),
            "endsAt",
        ),
    ];
    for (input, field) in cases {
        let v = app
            .gql(Some(&app.admin_token), q, json!({"i": input}))
            .await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{input}: {v}");
        assert_eq!(v["errors"][0]["extensions"]["field"], field, "{input}: {v}");
    }
    let v = app
        .gql(
            Some(&app.admin_token),
            "mutation { expireSilence(input: {id: \"00000000-0000-0000-0000-000000000000\"}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&v), "NOT_FOUND");
}

#[tokio::test]
async fn acknowledgement_records_who_and_when_until_the_alert_resolves() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    gauge(&app, "errors_ratio", &[("svc", "api")], 0.5).await;
    let rule = create_rule(
        &app,
        &app.admin_token,
        json!({"name": "Errors", "query": "errors_ratio > 0.1", "evaluationInterval": 1}),
    )
    .await;
    let id = rule["id"].as_str().unwrap().to_owned();
    let firing = wait_alert(
        &app,
        &id,
        "firing",
        json!({"svc": "api"}),
        is_state("FIRING"),
    )
    .await;
    let q = format!(
        "mutation($i: AcknowledgeAlertInput!) {{ acknowledgeAlert(input: $i) {{ {ALERT_FIELDS} }} }}"
    );
    let acked = app
        .gql_ok(
            Some(&user.token),
            &q,
            json!({"i": {"id": firing["id"], "comment": " looking into it "}}),
        )
        .await["acknowledgeAlert"]
        .clone();
    assert_eq!(acked["acknowledged"], true);
    assert_eq!(acked["acknowledgedBy"]["username"], user.username);
    assert_eq!(acked["acknowledgementComment"], "looking into it");
    assert!(time(&acked["acknowledgedAt"]) >= time(&firing["firedAt"]));
    // Later evaluations keep the acknowledgement while the alert fires.
    let evaluated_at = time(&acked["acknowledgedAt"]);
    let still = wait_until(WAIT, "a later evaluation", || async {
        let a = alerts_of(&app, &id).await.remove(0);
        let later = app
            .gql_ok(
                Some(&app.admin_token),
                "query($id: ID!) { alertRule(id: $id) { lastEvaluatedAt } }",
                json!({"id": id}),
            )
            .await;
        if time(&later["alertRule"]["lastEvaluatedAt"]) > evaluated_at {
            Ok(a)
        } else {
            Err(a.to_string())
        }
    })
    .await;
    assert_eq!(still["acknowledgedBy"]["username"], user.username);

    let v = app
        .gql(
            Some(&user.token),
            &q,
            json!({"i": {"id": firing["id"], "comment": "x".repeat(2001)}}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    assert_eq!(v["errors"][0]["extensions"]["field"], "comment");

    gauge(&app, "errors_ratio", &[("svc", "api")], 0.0).await;
    let resolved = wait_alert(&app, &id, "resolved", json!({}), is_state("INACTIVE")).await;
    assert_eq!(resolved["acknowledged"], false, "the acknowledgement ends");
    assert!(resolved["acknowledgedBy"].is_null());
    let v = app
        .gql(Some(&user.token), &q, json!({"i": {"id": firing["id"]}}))
        .await;
    assert_eq!(
        error_code(&v),
        "CONFLICT",
        "an inactive alert cannot be acknowledged"
    );
    let v = app
        .gql(
            Some(&user.token),
            &q,
            json!({"i": {"id": "00000000-0000-0000-0000-000000000000"}}),
        )
        .await;
    assert_eq!(error_code(&v), "NOT_FOUND");
}

#[tokio::test]
async fn alert_state_and_pending_timers_survive_a_restart() {
    let app = TestApp::spawn().await;
    gauge(&app, "temp", &[("room", "a")], 40.0).await;
    gauge(&app, "temp", &[("room", "b")], 40.0).await;
    let firing_rule = create_rule(
        &app,
        &app.admin_token,
        json!({"name": "Hot A", "query": "temp{room=\"a\"} > 30", "evaluationInterval": 1}),
    )
    .await;
    let fid = firing_rule["id"].as_str().unwrap().to_owned();
    let before_firing = wait_alert(&app, &fid, "firing", json!({}), is_state("FIRING")).await;
    let pending_rule = create_rule(
        &app,
        &app.admin_token,
        json!({"name": "Hot B", "query": "temp{room=\"b\"} > 30", "for": 8, "evaluationInterval": 1}),
    )
    .await;
    let pid = pending_rule["id"].as_str().unwrap().to_owned();
    let before_pending = wait_alert(&app, &pid, "pending", json!({}), is_state("PENDING")).await;

    let db = app.stop().await;
    let app = TestApp::spawn_on(db, |_| {}).await;
    // Keep the data fresh across the restart.
    gauge(&app, "temp", &[("room", "a")], 41.0).await;
    gauge(&app, "temp", &[("room", "b")], 41.0).await;

    let fired = wait_alert(&app, &pid, "pending fires", json!({}), is_state("FIRING")).await;
    assert_eq!(
        fired["activeAt"], before_pending["activeAt"],
        "the pending timer kept running across the restart"
    );
    let held = time(&fired["firedAt"]) - time(&fired["activeAt"]);
    assert!(held >= chrono::TimeDelta::seconds(8), "fired after {held}");
    let still = alerts_of(&app, &fid).await.remove(0);
    assert_eq!(still["state"], "FIRING");
    assert_eq!(still["firedAt"], before_firing["firedAt"]);
    assert_eq!(
        path(&history(&app, &fid).await),
        pairs(&[("INACTIVE", "FIRING")]),
        "no new episode after the restart"
    );
    assert_eq!(
        path(&history(&app, &pid).await),
        pairs(&[("INACTIVE", "PENDING"), ("PENDING", "FIRING")])
    );
}

#[tokio::test]
async fn the_preview_replays_what_live_evaluation_did() {
    let app = TestApp::spawn().await;
    let start = sightline::util::now();
    gauge(&app, "latency_p99", &[("route", "/x")], 0.2).await;
    let rule = create_rule(
        &app,
        &app.admin_token,
        json!({"name": "Slow", "query": "latency_p99 > 1", "for": 2, "evaluationInterval": 1}),
    )
    .await;
    let id = rule["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(10)).await;
    gauge(&app, "latency_p99", &[("route", "/x")], 2.5).await;
    let firing = wait_alert(&app, &id, "firing", json!({}), is_state("FIRING")).await;
    // Change the value well after the firing time, so that the preview's
    // firing step (within one step of the live one) sees the same value.
    let fired_at = time(&firing["firedAt"]);
    wait_alert(&app, &id, "evaluations after firing", json!({}), |a| {
        a["lastEvaluatedAt"]
            .as_str()
            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
            .is_some_and(|t| t - fired_at >= chrono::TimeDelta::seconds(3))
    })
    .await;
    gauge(&app, "latency_p99", &[("route", "/x")], 3.5).await;
    wait_alert(&app, &id, "value updated", json!({}), |a| a["value"] == 3.5).await;
    gauge(&app, "latency_p99", &[("route", "/x")], 0.1).await;
    wait_alert(&app, &id, "resolved", json!({}), is_state("INACTIVE")).await;
    let live = history(&app, &id).await;

    let q = "query($q: String!, $from: DateTime!, $to: DateTime!) { previewAlertRule(query: $q, for: 2, from: $from, to: $to, step: 1) { evaluations labelSets truncated transitions { labels from to value at } } }";
    let to = sightline::util::now();
    let d = app
        .gql_ok(
            Some(&app.admin_token),
            q,
            json!({"q": "latency_p99 > 1", "from": start.to_rfc3339(), "to": to.to_rfc3339()}),
        )
        .await;
    let preview = &d["previewAlertRule"];
    let replayed = preview["transitions"].as_array().unwrap();
    assert_eq!(
        path(replayed),
        path(&live),
        "preview: {preview}\nlive: {live:?}"
    );
    for (p, l) in replayed.iter().zip(&live) {
        assert_eq!(p["value"], l["value"]);
        assert_eq!(p["labels"], json!({"route": "/x"}));
        let gap = (time(&p["at"]) - time(&l["at"])).num_milliseconds().abs();
        // Both evaluate every second; allow for a loaded machine.
        assert!(
            gap <= 5_000,
            "preview at {} vs live at {}",
            p["at"],
            l["at"]
        );
    }
    assert_eq!(preview["labelSets"], 1);
    assert_eq!(preview["truncated"], false);
    assert!(preview["evaluations"].as_i64().unwrap() >= 3);

    // Bad previews are refused with the field named.
    for (vars, field) in [
        (
            json!({"q": "latency_p99 >", "from": start.to_rfc3339(), "to": to.to_rfc3339()}),
            "query",
        ),
        (
            json!({"q": "latency_p99 > 1", "from": to.to_rfc3339(), "to": start.to_rfc3339()}),
            "to",
        ),
        (
            json!({"q": "latency_p99 > 1", "from": "2000-01-01T00:00:00Z", "to": to.to_rfc3339()}),
            "step",
        ),
    ] {
        let v = app.gql(Some(&app.admin_token), q, vars.clone()).await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{vars}");
        assert_eq!(v["errors"][0]["extensions"]["field"], field, "{vars}: {v}");
    }
}

#[tokio::test]
async fn event_rules_count_events_per_source_and_ignore_their_own_alert_events() {
    let app = TestApp::spawn().await;
    let rule = create_rule(
        &app,
        &app.admin_token,
        json!({"name": "API errors", "query": "count(events{level=\"error\", source=~\"api|web\"}[1m]) > 2",
               "evaluationInterval": 1, "severity": "CRITICAL"}),
    )
    .await;
    let id = rule["id"].as_str().unwrap().to_owned();
    let emit = |source: &'static str, level: &'static str, n: usize| {
        let db = app.state.db.clone();
        async move {
            for i in 0..n {
                sightline::events::create_event(
                    &db,
                    None,
                    sightline::events::NewEvent::log(source, Some(level), format!("boom {i}")),
                )
                .await
                .unwrap();
            }
        }
    };
    emit("api", "error", 3).await;
    emit("web", "error", 2).await;
    emit("api", "info", 5).await;
    emit("worker", "error", 9).await;
    let firing = wait_alert(
        &app,
        &id,
        "api firing",
        json!({"source": "api"}),
        is_state("FIRING"),
    )
    .await;
    assert_eq!(firing["value"], 3.0);
    assert_eq!(firing["labels"], json!({"source": "api"}));
    // The rule's own (critical, level error) alert event must not feed it.
    let alerts = alerts_of(&app, &id).await;
    assert_eq!(
        alerts.len(),
        1,
        "web has too few, worker does not match: {alerts:?}"
    );
    emit("web", "error", 1).await;
    wait_alert(
        &app,
        &id,
        "web firing",
        json!({"source": "web"}),
        is_state("FIRING"),
    )
    .await;

    // A rule over every error event fires per source, but never for the
    // (level error) alert events the evaluator itself writes...
    let any = create_rule(
        &app,
        &app.admin_token,
        json!({"name": "Any errors", "query": "count(events{level=\"error\"}[1m]) > 0",
               "evaluationInterval": 1, "severity": "CRITICAL"}),
    )
    .await;
    let any_id = any["id"].as_str().unwrap().to_owned();
    wait_alert(
        &app,
        &any_id,
        "worker firing",
        json!({"source": "worker"}),
        is_state("FIRING"),
    )
    .await;
    assert!(
        alert_events(&app)
            .await
            .iter()
            .any(|e| e.level.as_deref() == Some("error")),
        "error-level alert events exist"
    );
    let created = time(&any["createdAt"]);
    wait_alert(
        &app,
        &any_id,
        "a few more evaluations",
        json!({"source": "worker"}),
        |a| {
            a["lastEvaluatedAt"]
                .as_str()
                .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                .is_some_and(|t| t - created >= chrono::TimeDelta::seconds(3))
        },
    )
    .await;
    let sources: Vec<Value> = alerts_of(&app, &any_id)
        .await
        .iter()
        .map(|a| a["labels"]["source"].clone())
        .collect();
    assert_eq!(sources.len(), 3, "api, web and worker only: {sources:?}");
    assert!(!sources.contains(&json!("sightline.alerts")));
    // ...unless asked for by source.
    let own = create_rule(
        &app,
        &app.admin_token,
        json!({"name": "Alert storm", "query": "count(events{source=\"sightline.alerts\"}[1m]) > 0",
               "evaluationInterval": 1}),
    )
    .await;
    wait_alert(
        &app,
        own["id"].as_str().unwrap(),
        "own events counted",
        json!({"source": "sightline.alerts"}),
        is_state("FIRING"),
    )
    .await;

    // A rate over tags, grouped by a tag.
    let by_tag = create_rule(
        &app,
        &app.admin_token,
        json!({"name": "Region errors", "query": "rate(events{region=\"eu\"}[1m]) by (region) > 0.01",
               "evaluationInterval": 1}),
    )
    .await;
    let db = app.state.db.clone();
    let mut e = sightline::events::NewEvent::log("api", Some("error"), "tagged");
    e.tags.insert("region".into(), json!("eu"));
    sightline::events::create_event(&db, None, e).await.unwrap();
    let tagged = wait_alert(
        &app,
        by_tag["id"].as_str().unwrap(),
        "tag rule firing",
        json!({"region": "eu"}),
        is_state("FIRING"),
    )
    .await;
    assert_eq!(tagged["labels"], json!({"region": "eu"}));
    assert!((tagged["value"].as_f64().unwrap() - 1.0 / 60.0).abs() < 1e-9);
}

#[tokio::test]
async fn window_functions_group_by_labels_and_counters_use_their_totals() {
    let app = TestApp::spawn().await;
    let now = sightline::util::now();
    for (pod, v) in [("1", 1.5), ("2", 2.5)] {
        put_sample(
            &app,
            "req_seconds",
            "gauge",
            &[("route", "/a"), ("pod", pod)],
            v,
            now,
        )
        .await;
    }
    put_sample(
        &app,
        "req_seconds",
        "gauge",
        &[("route", "/b"), ("pod", "1")],
        0.1,
        now,
    )
    .await;
    let rule = create_rule(
        &app,
        &app.admin_token,
        json!({"name": "Slow routes", "query": "avg(req_seconds[5m]) by (route) > 1",
               "evaluationInterval": 1, "labels": {"team": "web"}}),
    )
    .await;
    let slow = wait_alert(
        &app,
        rule["id"].as_str().unwrap(),
        "route firing",
        json!({"route": "/a"}),
        is_state("FIRING"),
    )
    .await;
    assert_eq!(slow["labels"], json!({"route": "/a", "team": "web"}));
    assert_eq!(slow["value"], 2.0);

    for v in [5.0, 7.0] {
        put_sample(
            &app,
            "jobs_failed_total",
            "counter",
            &[("queue", "q")],
            v,
            now,
        )
        .await;
    }
    let counter = create_rule(
        &app,
        &app.admin_token,
        json!({"name": "Failed jobs", "query": "jobs_failed_total >= 12", "evaluationInterval": 1}),
    )
    .await;
    let fired = wait_alert(
        &app,
        counter["id"].as_str().unwrap(),
        "counter firing",
        json!({"queue": "q"}),
        is_state("FIRING"),
    )
    .await;
    assert_eq!(fired["value"], 12.0, "the running total");
    let increase = create_rule(
        &app,
        &app.admin_token,
        json!({"name": "Failing now", "query": "sum(jobs_failed_total[1m]) > 11", "evaluationInterval": 1}),
    )
    .await;
    let fired = wait_alert(
        &app,
        increase["id"].as_str().unwrap(),
        "increase firing",
        json!({"queue": "q"}),
        is_state("FIRING"),
    )
    .await;
    assert_eq!(fired["value"], 12.0, "the increase over the window");

    // Filters on the alerts list.
    let d = app
        .gql_ok(
            Some(&app.admin_token),
            "{ byName: alerts(labels: [{label: \"alertname\", value: \"Slow routes\"}]) { id } byRe: alerts(state: FIRING, labels: [{label: \"queue\", op: RE, value: \"q|x\"}]) { id } none: alerts(state: PENDING) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(d["byName"].as_array().unwrap().len(), 1);
    assert_eq!(d["byRe"].as_array().unwrap().len(), 2);
    assert_eq!(d["none"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn disabling_or_deleting_a_rule_resolves_its_alerts_and_keeps_history() {
    let app = TestApp::spawn().await;
    gauge(&app, "up_down", &[], 1.0).await;
    let rule = create_rule(
        &app,
        &app.admin_token,
        json!({"name": "Flag", "query": "up_down > 0", "evaluationInterval": 1}),
    )
    .await;
    let id = rule["id"].as_str().unwrap().to_owned();
    wait_alert(&app, &id, "firing", json!({}), is_state("FIRING")).await;
    let d = app
        .gql_ok(
            Some(&app.admin_token),
            "mutation($i: SetAlertRuleEnabledInput!) { setAlertRuleEnabled(input: $i) { enabled activeAlerts { id } } }",
            json!({"i": {"id": id, "enabled": false}}),
        )
        .await;
    assert_eq!(d["setAlertRuleEnabled"]["enabled"], false);
    assert_eq!(d["setAlertRuleEnabled"]["activeAlerts"], json!([]));
    assert_eq!(alerts_of(&app, &id).await[0]["state"], "INACTIVE");
    app.gql_ok(
        Some(&app.admin_token),
        "mutation($i: SetAlertRuleEnabledInput!) { setAlertRuleEnabled(input: $i) { enabled } }",
        json!({"i": {"id": id, "enabled": true}}),
    )
    .await;
    wait_alert(&app, &id, "firing again", json!({}), is_state("FIRING")).await;
    let deleted = app
        .gql_ok(
            Some(&app.admin_token),
            "mutation($i: DeleteAlertRuleInput!) { deleteAlertRule(input: $i) { id name } }",
            json!({"i": {"id": id}}),
        )
        .await;
    assert_eq!(deleted["deleteAlertRule"]["name"], "Flag");
    let v = app
        .gql(
            Some(&app.admin_token),
            "query($id: ID!) { alertRule(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(error_code(&v), "NOT_FOUND");
    assert!(alerts_of(&app, &id).await.is_empty());
    let h = history(&app, &id).await;
    assert_eq!(
        path(&h),
        pairs(&[
            ("INACTIVE", "FIRING"),
            ("FIRING", "INACTIVE"),
            ("INACTIVE", "FIRING"),
            ("FIRING", "INACTIVE")
        ])
    );
    assert!(h[3]["rule"].is_null(), "the rule is gone");
    assert!(h[3]["alert"].is_null(), "its alerts are gone");
    assert_eq!(h[3]["ruleName"], "Flag");
    assert_eq!(alert_events(&app).await.len(), 4);
}

#[tokio::test]
async fn rules_are_validated_and_updated_field_by_field() {
    let app = TestApp::spawn().await;
    let q = "mutation($i: CreateAlertRuleInput!) { createAlertRule(input: $i) { id } }";
    let cases = [
        (
            json!({"name": "x", "query": "avg(cpu_usage) > 5"}),
            "query",
            Some("at position 13"),
        ),
        (
            json!({"name": "x", "query": "cpu_usage"}),
            "query",
            Some("needs a condition"),
        ),
        (json!({"name": "", "query": "cpu > 1"}), "name", None),
        (json!({"name": "a\u{0}b", "query": "cpu > 1"}), "name", None),
        (
            json!({"name": "x".repeat(201), "query": "cpu > 1"}),
            "name",
            None,
        ),
        (json!({"name": "x", "query": "cpu > 1\u{0}"}), "query", None),
        (
            json!({"name": "x", "query": "x".repeat(5000)}),
            "query",
            None,
        ),
        (
            json!({"name": "x", "query": "cpu > 1", "evaluationInterval": 0}),
            "evaluationInterval",
            None,
        ),
        (
            json!({"name": "x", "query": "cpu > 1", "for": -1}),
            "for",
            None,
        ),
        (
            json!({"name": "x", "query": "cpu > 1", "keepFiringFor": 9_999_999_999i64}),
            "keepFiringFor",
            None,
        ),
        (
            json!({"name": "x", "query": "cpu > 1", "labels": {"alertname": "y"}}),
            "labels.alertname",
            None,
        ),
        (
            json!({"name": "x", "query": "cpu > 1", "labels": ["a"]}),
            "labels",
            None,
        ),
        (
            json!({"name": "x", "query": "cpu > 1", "annotations": {"runbookUrl": "ftp://x"}}),
            "annotations.runbookUrl",
            None,
        ),
        (
            json!({"name": "x", "query": "cpu > 1", "incidentSeverity": "HIGH"}),
            "incidentSeverity",
            None,
        ),
    ];
    for (input, field, fragment) in cases {
        let v = app
            .gql(Some(&app.admin_token), q, json!({"i": input}))
            .await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{input}: {v}");
        assert_eq!(v["errors"][0]["extensions"]["field"], field, "{input}: {v}");
        if let Some(fragment) = fragment {
            let message = v["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains(fragment), "{message}");
        }
    }
    let rule = create_rule(
        &app,
        &app.admin_token,
        json!({"name": "Rule", "query": "cpu > 1", "description": "d", "createIncident": true}),
    )
    .await;
    assert_eq!(
        rule["incidentSeverity"], "MEDIUM",
        "from the WARNING default"
    );
    assert_eq!(rule["evaluationInterval"], 30);
    let v = app
        .gql(
            Some(&app.admin_token),
            q,
            json!({"i": {"name": "Rule", "query": "x > 1"}}),
        )
        .await;
    assert_eq!(error_code(&v), "CONFLICT");
    assert_eq!(v["errors"][0]["extensions"]["field"], "name");

    let u = format!(
        "mutation($i: UpdateAlertRuleInput!) {{ updateAlertRule(input: $i) {{ description {RULE_FIELDS} }} }}"
    );
    let d = app
        .gql_ok(
            Some(&app.admin_token),
            &u,
            json!({"i": {"id": rule["id"], "description": null, "query": "cpu", "threshold": 5, "severity": "CRITICAL"}}),
        )
        .await;
    let updated = &d["updateAlertRule"];
    assert!(updated["description"].is_null(), "null clears");
    assert_eq!(updated["condition"], "cpu > 5");
    assert_eq!(updated["name"], "Rule", "absent fields are kept");
    assert_eq!(
        updated["incidentSeverity"], "HIGH",
        "the default follows the severity"
    );
    let v = app
        .gql(
            Some(&app.admin_token),
            &u,
            json!({"i": {"id": rule["id"], "threshold": null}}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT", "no condition left: {v}");
    let v = app
        .gql(
            Some(&app.admin_token),
            &u,
            json!({"i": {"id": "not-a-uuid"}}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    let v = app
        .gql(
            Some(&app.admin_token),
            &u,
            json!({"i": {"id": "00000000-0000-0000-0000-000000000000", "name": "y"}}),
        )
        .await;
    assert_eq!(error_code(&v), "NOT_FOUND");

    // Paging: negative or oversized sizes and forged cursors are refused.
    for (query, vars) in [
        (
            "query($f: Int) { alertRules(first: $f) { totalCount } }",
            json!({"f": -1}),
        ),
        (
            "query($f: Int) { alertRules(first: $f) { totalCount } }",
            json!({"f": 100000}),
        ),
        (
            "query($a: String) { alertHistory(after: $a) { totalCount } }",
            json!({"a": "forged"}),
        ),
        (
            "query($f: Int) { alerts(first: $f) { id } }",
            json!({"f": -5}),
        ),
        (
            "query($f: Int) { alerts(first: $f) { id } }",
            json!({"f": 2147483647}),
        ),
        (
            "query($a: String) { silences(after: $a) { totalCount } }",
            json!({"a": "%%%"}),
        ),
    ] {
        let v = app.gql(Some(&app.admin_token), query, vars.clone()).await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{query} {vars}: {v}");
    }
    let d = app
        .gql_ok(
            Some(&app.admin_token),
            "{ alertRules(filter: {enabled: true, severities: [CRITICAL]}) { totalCount nodes { name } } none: alertRules(filter: {severities: [INFO]}) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(d["alertRules"]["totalCount"], 1);
    assert_eq!(d["none"]["totalCount"], 0);
}

#[tokio::test]
async fn every_alert_operation_checks_the_role() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    let moderator = app.create_user("MODERATOR").await;
    gauge(&app, "rbac_metric", &[], 5.0).await;
    let rule = create_rule(
        &app,
        &app.admin_token,
        json!({"name": "RBAC", "query": "rbac_metric > 1", "evaluationInterval": 1}),
    )
    .await;
    let rule_id = rule["id"].as_str().unwrap().to_owned();
    let alert = wait_alert(&app, &rule_id, "firing", json!({}), is_state("FIRING")).await;
    let ends = (Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let silence = app
        .gql_ok(
            Some(&app.admin_token),
            "mutation($e: DateTime!) { createSilence(input: {matchers: [{label: \"x\", value: \"y\"}], endsAt: $e, comment: \"c\"}) { id } }",
            json!({"e": ends}),
        )
        .await["createSilence"]["id"]
        .clone();
    let vars = json!({"rule": rule_id, "alert": alert["id"], "silence": silence, "ends": ends,
                      "from": (Utc::now() - chrono::TimeDelta::minutes(5)).to_rfc3339(),
                      "to": Utc::now().to_rfc3339()});
    const U: &str = "UNAUTHENTICATED";
    const F: &str = "FORBIDDEN";
    // (operation, expected error for [anonymous, user, moderator, admin]; None = allowed)
    let table: Vec<(&str, [Option<&str>; 4])> = vec![
        (
            "query { alertRules { totalCount } }",
            [Some(U), None, None, None],
        ),
        (
            "query($rule: ID!) { alertRule(id: $rule) { id } }",
            [Some(U), None, None, None],
        ),
        ("query { alerts { id } }", [Some(U), None, None, None]),
        (
            "query($alert: ID!) { alert(id: $alert) { id } }",
            [Some(U), None, None, None],
        ),
        (
            "query { alertHistory { totalCount } }",
            [Some(U), None, None, None],
        ),
        (
            "query { silences { totalCount } }",
            [Some(U), None, None, None],
        ),
        (
            "query($from: DateTime!, $to: DateTime!) { previewAlertRule(query: \"rbac_metric > 1\", from: $from, to: $to) { evaluations } }",
            [Some(U), None, None, None],
        ),
        (
            "mutation { createAlertRule(input: {name: \"new\", query: \"x > 1\"}) { id } }",
            [Some(U), Some(F), None, Some("CONFLICT")],
        ),
        (
            "mutation($rule: ID!) { updateAlertRule(input: {id: $rule, description: \"d\"}) { id } }",
            [Some(U), Some(F), None, None],
        ),
        (
            "mutation($rule: ID!) { setAlertRuleEnabled(input: {id: $rule, enabled: true}) { id } }",
            [Some(U), Some(F), None, None],
        ),
        (
            "mutation($ends: DateTime!) { createSilence(input: {matchers: [{label: \"x\", value: \"y\"}], endsAt: $ends, comment: \"c\"}) { id } }",
            [Some(U), Some(F), None, None],
        ),
        (
            "mutation($alert: ID!) { acknowledgeAlert(input: {id: $alert}) { id } }",
            [Some(U), None, None, None],
        ),
        (
            "mutation($silence: ID!) { expireSilence(input: {id: $silence}) { id } }",
            [Some(U), Some(F), None, Some("CONFLICT")],
        ),
        (
            "mutation($rule: ID!) { deleteAlertRule(input: {id: $rule}) { id } }",
            [Some(U), Some(F), None, Some("NOT_FOUND")],
        ),
    ];
    let tokens = [
        None,
        Some(user.token.as_str()),
        Some(moderator.token.as_str()),
        Some(app.admin_token.as_str()),
    ];
    for (query, expected) in &table {
        for (i, token) in tokens.iter().enumerate() {
            let v = app.gql(*token, query, vars.clone()).await;
            let got = v.get("errors").map(|_| error_code(&v));
            assert_eq!(got.as_deref(), expected[i], "caller {i} on {query}: {v}");
        }
    }
}

#[tokio::test]
async fn the_rest_alert_endpoints_keep_the_original_shapes() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    let moderator = app.create_user("MODERATOR").await;
    let url = app.url("/api/v1/monitoring/alerts");
    let body = json!({
        "name": "High CPU Usage",
        "description": "CPU usage above 80% for more than 5 minutes",
        "query": "cpu_usage > 80",
        "threshold_value": 80.0
    });
    let r = app
        .client
        .post(&url)
        .bearer_auth(&moderator.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], true);
    let rule = &v["data"];
    assert_eq!(rule["name"], "High CPU Usage");
    assert_eq!(rule["threshold_value"], 80.0);
    assert_eq!(rule["severity"], "warning");
    assert_eq!(rule["evaluation_interval"], 30);
    let id = rule["id"].as_str().unwrap().to_owned();

    let bare = json!({"name": "Bare", "query": "cpu_usage", "threshold_value": 90, "severity": "critical", "for": 60});
    let r = app
        .client
        .post(&url)
        .bearer_auth(&app.admin_token)
        .json(&bare)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let r = app
        .client
        .post(&url)
        .bearer_auth(&user.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .post(&url)
        .bearer_auth(&moderator.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "duplicate name");
    let r = app
        .client
        .post(&url)
        .bearer_auth(&moderator.token)
        .json(&json!({"name": "x", "query": "cpu_usage >"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "BAD_USER_INPUT");
    assert_eq!(v["error"]["field"], "query");
    let r = app
        .client
        .post(&url)
        .bearer_auth(&moderator.token)
        .json(&json!({"name": "x", "query": "cpu_usage > 1", "evaluation_interval": 0}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["field"], "evaluation_interval");
    let r = app
        .client
        .post(&url)
        .bearer_auth(&moderator.token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = app
        .client
        .get(&url)
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let v: Value = app
        .client
        .get(format!("{url}?limit=1&offset=1"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["name"], "Bare");
    let r = app
        .client
        .get(format!("{url}?limit=-1"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let one = format!("{url}/{id}");
    let v: Value = app
        .client
        .get(&one)
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"]["query"], "cpu_usage > 80");
    let r = app
        .client
        .put(&one)
        .bearer_auth(&moderator.token)
        .json(&json!({"threshold_value": 95, "query": "cpu_usage", "description": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["threshold_value"], 95.0);
    assert!(v["data"]["description"].is_null());
    assert_eq!(v["data"]["name"], "High CPU Usage");
    let r = app
        .client
        .put(&one)
        .bearer_auth(&user.token)
        .json(&json!({"name": "n"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .client
        .get(format!("{url}/not-a-uuid"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .client
        .get(format!("{url}/00000000-0000-0000-0000-000000000000"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .client
        .delete(&one)
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .client
        .delete(&one)
        .bearer_auth(&moderator.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["deleted"], true);
    let r = app
        .client
        .get(&one)
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let rules = sightline::alerts::entity::rule::Entity::find()
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(rules, 1);
}

#[tokio::test]
async fn evaluate_rule_can_be_called_directly_and_is_idempotent_per_time() {
    let app = TestApp::spawn_with(|c| c.alert_evaluator = false).await;
    gauge(&app, "direct", &[], 10.0).await;
    let rule = create_rule(
        &app,
        &app.admin_token,
        json!({"name": "Direct", "query": "direct > 1", "for": 60}),
    )
    .await;
    let id: uuid::Uuid = rule["id"].as_str().unwrap().parse().unwrap();
    let now = sightline::util::now();
    let first = sightline::alerts::evaluator::evaluate_rule(&app.state, id, now)
        .await
        .unwrap();
    assert!(first.evaluated);
    assert_eq!(first.matching, 1);
    assert_eq!(first.transitions.len(), 1);
    assert_eq!(first.transitions[0].to_state, "pending");
    let again = sightline::alerts::evaluator::evaluate_rule(&app.state, id, now)
        .await
        .unwrap();
    assert!(!again.evaluated, "the same time is not evaluated twice");
    let later = sightline::alerts::evaluator::evaluate_rule(
        &app.state,
        id,
        now + chrono::TimeDelta::seconds(61),
    )
    .await
    .unwrap();
    assert_eq!(later.transitions.len(), 1);
    assert_eq!(later.transitions[0].to_state, "firing");
    let round = sightline::alerts::evaluator::evaluate_due_rules(
        &app.state,
        now + chrono::TimeDelta::seconds(62),
    )
    .await
    .unwrap();
    assert_eq!(round.evaluated, 1);
    assert_eq!(round.transitions, 0);
    assert!(round.next_due.is_some());
    let missing =
        sightline::alerts::evaluator::evaluate_rule(&app.state, uuid::Uuid::nil(), now).await;
    assert!(missing.is_err());
}
