//! Status transitions, timestamps, derived fields, clearing and validation.

use serde_json::{Value, json};

use super::{audit, create, fetch, mutate, mutate_ok};
use crate::common::{TestApp, error_code};

const STATUSES: [&str; 4] = ["OPEN", "INVESTIGATING", "RESOLVED", "CLOSED"];
const LEGAL: [(&str, &str); 5] = [
    ("OPEN", "INVESTIGATING"),
    ("OPEN", "RESOLVED"),
    ("INVESTIGATING", "RESOLVED"),
    ("RESOLVED", "CLOSED"),
    ("RESOLVED", "INVESTIGATING"),
];

/// A shortest legal path from OPEN to each status.
fn path_to(status: &str) -> &'static [&'static str] {
    match status {
        "OPEN" => &[],
        "INVESTIGATING" => &["INVESTIGATING"],
        "RESOLVED" => &["RESOLVED"],
        "CLOSED" => &["RESOLVED", "CLOSED"],
        other => panic!("unknown status {other}"),
    }
}

async fn incident_in(app: &TestApp, token: &str, status: &str) -> String {
    let inc = create(app, token, &format!("in {status}"), json!({})).await;
    let id = inc["id"].as_str().unwrap().to_owned();
    for step in path_to(status) {
        mutate_ok(
            app,
            token,
            "updateIncident",
            json!({"id": id, "status": step}),
        )
        .await;
    }
    id
}

#[tokio::test]
async fn every_legal_transition_succeeds_and_every_illegal_one_names_both_states() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    for from in STATUSES {
        for to in STATUSES {
            if from == to {
                continue;
            }
            let id = incident_in(&app, &token, from).await;
            let v = mutate(
                &app,
                &token,
                "updateIncident",
                json!({"id": id, "status": to}),
            )
            .await;
            if LEGAL.contains(&(from, to)) {
                assert!(v.get("errors").is_none(), "{from} -> {to}: {v}");
                assert_eq!(v["data"]["updateIncident"]["status"], to);
            } else {
                assert_eq!(error_code(&v), "BAD_USER_INPUT", "{from} -> {to}: {v}");
                let msg = v["errors"][0]["message"].as_str().unwrap();
                assert!(
                    msg.contains(&from.to_lowercase()) && msg.contains(&to.to_lowercase()),
                    "{from} -> {to}: {msg}"
                );
                assert_eq!(v["errors"][0]["extensions"]["field"], "status");
                // Nothing changed.
                let now = fetch(&app, &token, &id, "").await;
                assert_eq!(now["data"]["incident"]["status"], from);
            }
        }
    }
}

#[tokio::test]
async fn the_dedicated_mutations_follow_the_same_lifecycle() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    // (mutation, extra input, statuses it is legal from, resulting status)
    let cases: [(&str, Value, &[&str], &str); 3] = [
        (
            "resolveIncident",
            json!({"rootCause": "a full disk"}),
            &["OPEN", "INVESTIGATING"],
            "RESOLVED",
        ),
        ("closeIncident", json!({}), &["RESOLVED"], "CLOSED"),
        ("reopenIncident", json!({}), &["RESOLVED"], "INVESTIGATING"),
    ];
    for (name, extra, legal_from, result) in cases {
        for from in STATUSES {
            let id = incident_in(&app, &token, from).await;
            let mut input = extra.clone();
            input["id"] = json!(id);
            let v = mutate(&app, &token, name, input).await;
            if legal_from.contains(&from) {
                assert!(v.get("errors").is_none(), "{name} from {from}: {v}");
                assert_eq!(v["data"][name]["status"], result, "{name} from {from}");
            } else {
                assert_eq!(error_code(&v), "BAD_USER_INPUT", "{name} from {from}: {v}");
                let msg = v["errors"][0]["message"].as_str().unwrap();
                assert!(
                    msg.contains(&from.to_lowercase()),
                    "{name} from {from}: {msg}"
                );
            }
        }
    }
}

#[tokio::test]
async fn timestamps_follow_the_lifecycle_and_feed_the_derived_durations() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let started = sightline::util::now() - chrono::Duration::minutes(10);
    let inc = create(
        &app,
        &token,
        "checkout is slow",
        json!({"startedAt": started.to_rfc3339(), "severity": "HIGH"}),
    )
    .await;
    let id = inc["id"].as_str().unwrap();
    assert_eq!(inc["status"], "OPEN");
    assert_eq!(inc["severity"], "HIGH");
    assert!(inc["timeToAcknowledge"].is_null());
    assert!(inc["timeToResolve"].is_null());

    let acked = mutate_ok(&app, &token, "acknowledgeIncident", json!({"id": id})).await;
    let ack_at = acked["acknowledgedAt"].as_str().unwrap().to_owned();
    let tta = acked["timeToAcknowledge"].as_f64().unwrap();
    assert!((600.0..700.0).contains(&tta), "{tta}");
    // Acknowledging again changes nothing.
    let again = mutate_ok(&app, &token, "acknowledgeIncident", json!({"id": id})).await;
    assert_eq!(again["acknowledgedAt"], ack_at.as_str());

    let resolved = mutate_ok(
        &app,
        &token,
        "resolveIncident",
        json!({"id": id, "rootCause": "connection pool exhausted"}),
    )
    .await;
    assert_eq!(resolved["rootCause"], "connection pool exhausted");
    assert!(resolved["resolvedAt"].is_string());
    assert!(resolved["timeToResolve"].as_f64().unwrap() >= tta);
    // An acknowledgement after resolution is refused.
    let v = mutate(&app, &token, "acknowledgeIncident", json!({"id": id})).await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");

    let reopened = mutate_ok(&app, &token, "reopenIncident", json!({"id": id})).await;
    assert_eq!(reopened["status"], "INVESTIGATING");
    assert!(reopened["resolvedAt"].is_null(), "reopen clears resolvedAt");
    assert!(reopened["timeToResolve"].is_null());
    assert_eq!(
        reopened["acknowledgedAt"],
        ack_at.as_str(),
        "the first acknowledgement stays"
    );

    mutate_ok(&app, &token, "resolveIncident", json!({"id": id})).await;
    let closed = mutate_ok(&app, &token, "closeIncident", json!({"id": id})).await;
    assert_eq!(closed["status"], "CLOSED");
    assert!(closed["closedAt"].is_string());
    assert!(closed["resolvedAt"].is_string());
    assert_eq!(
        closed["rootCause"], "connection pool exhausted",
        "a resolve without a root cause keeps the earlier one"
    );

    let fields: Vec<String> = audit(&app, id).await.into_iter().map(|a| a.0).collect();
    assert_eq!(
        fields,
        [
            "created",
            "acknowledgedAt",
            "status",
            "resolvedAt",
            "rootCause",
            "status",
            "resolvedAt",
            "status",
            "resolvedAt",
            "status",
            "closedAt",
        ]
    );
}

#[tokio::test]
async fn moving_to_investigating_acknowledges_an_unacknowledged_incident() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let inc = create(&app, &token, "x", json!({})).await;
    let v = mutate_ok(
        &app,
        &token,
        "updateIncident",
        json!({"id": inc["id"], "status": "INVESTIGATING"}),
    )
    .await;
    assert!(v["acknowledgedAt"].is_string());
    assert!(v["timeToAcknowledge"].as_f64().is_some());
}

#[tokio::test]
async fn null_clears_a_field_and_required_fields_cannot_be_cleared() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let assignee = app.create_user("USER").await;
    let inc = create(
        &app,
        &token,
        "disk full",
        json!({
            "description": "on db-1",
            "assignedTo": assignee.id,
            "labels": {"team": "storage"},
            "sources": ["db", "api"],
        }),
    )
    .await;
    let id = inc["id"].as_str().unwrap();
    assert_eq!(inc["assignedTo"]["id"], assignee.id.as_str());
    assert_eq!(inc["sources"], json!(["api", "db"]));
    let v = mutate_ok(
        &app,
        &token,
        "updateIncident",
        json!({"id": id, "rootCause": "logs not rotated"}),
    )
    .await;
    assert_eq!(v["rootCause"], "logs not rotated");
    assert_eq!(v["description"], "on db-1", "omitted fields stay");

    let cleared = mutate_ok(
        &app,
        &token,
        "updateIncident",
        json!({"id": id, "description": null, "rootCause": null, "assignedTo": null, "labels": null, "sources": null}),
    )
    .await;
    assert!(cleared["description"].is_null());
    assert!(cleared["rootCause"].is_null());
    assert!(cleared["assignedTo"].is_null());
    assert_eq!(cleared["labels"], json!({}));
    assert_eq!(cleared["sources"], json!([]));
    assert_eq!(cleared["title"], "disk full");

    for field in ["title", "severity", "status"] {
        let v = mutate(
            &app,
            &token,
            "updateIncident",
            json!({"id": id, field: null}),
        )
        .await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{field}: {v}");
        assert_eq!(v["errors"][0]["extensions"]["field"], field);
    }

    let trail = audit(&app, id).await;
    let cleared_fields: Vec<&str> = trail[2..].iter().map(|a| a.0.as_str()).collect();
    assert_eq!(
        cleared_fields,
        [
            "description",
            "rootCause",
            "assignedTo",
            "labels",
            "sources"
        ]
    );
    let unassign = &trail[4];
    assert_eq!(unassign.1, json!(assignee.id));
    assert!(unassign.2.is_null());
}

#[tokio::test]
async fn updates_are_audited_field_by_field_with_actor_and_old_and_new_values() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    let inc = create(&app, &user.token, "api errors", json!({"severity": "LOW"})).await;
    let id = inc["id"].as_str().unwrap();
    mutate_ok(
        &app,
        &user.token,
        "updateIncident",
        json!({"id": id, "title": "api 5xx", "severity": "CRITICAL", "labels": {"env": "prod"}, "sources": ["api"], "status": "INVESTIGATING"}),
    )
    .await;
    // Re-stating the same values is not a change.
    mutate_ok(
        &app,
        &user.token,
        "updateIncident",
        json!({"id": id, "title": "api 5xx", "severity": "CRITICAL"}),
    )
    .await;
    let trail = audit(&app, id).await;
    let me = json!(user.username);
    let expected = [
        ("created", Value::Null),
        ("title", json!("api errors")),
        ("severity", json!("LOW")),
        ("status", json!("OPEN")),
        ("acknowledgedAt", Value::Null),
        ("labels", json!({})),
        ("sources", json!([])),
    ];
    assert_eq!(trail.len(), expected.len(), "{trail:?}");
    for ((field, from), got) in expected.iter().zip(&trail) {
        assert_eq!(got.0, *field);
        assert_eq!(&got.1, from, "{field}");
        assert_eq!(got.3, me, "{field} is attributed to its actor");
    }
    assert_eq!(trail[0].2["title"], "api errors");
    assert_eq!(trail[0].2["status"], "OPEN");
    assert_eq!(trail[1].2, json!("api 5xx"));
    assert_eq!(trail[2].2, json!("CRITICAL"));
    assert_eq!(trail[3].2, json!("INVESTIGATING"));
    assert!(trail[4].2.is_string());
    assert_eq!(trail[5].2, json!({"env": "prod"}));
    assert_eq!(trail[6].2, json!(["api"]));
}

#[tokio::test]
async fn invalid_input_is_bad_user_input_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let future = (sightline::util::now() + chrono::Duration::hours(2)).to_rfc3339();
    let cases = [
        (json!({"title": ""}), "title"),
        (json!({"title": "x".repeat(201)}), "title"),
        (json!({"title": "nul\u{0}byte"}), "title"),
        (
            json!({"title": "t", "description": "d".repeat(10_001)}),
            "description",
        ),
        (json!({"title": "t", "startedAt": future}), "startedAt"),
        (json!({"title": "t", "labels": ["a"]}), "labels"),
        (json!({"title": "t", "labels": {"n": 1}}), "labels.n"),
        (json!({"title": "t", "sources": [""]}), "sources[0]"),
        (
            json!({"title": "t", "assignedTo": "not-an-id"}),
            "assignedTo",
        ),
        (
            json!({"title": "t", "assignedTo": uuid::Uuid::new_v4().to_string()}),
            "assignedTo",
        ),
    ];
    for (input, field) in cases {
        let v = app
            .gql(
                Some(&token),
                "mutation($i: CreateIncidentInput!) { createIncident(input: $i) { id } }",
                json!({ "i": input }),
            )
            .await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{input}: {v}");
        assert_eq!(v["errors"][0]["extensions"]["field"], field, "{v}");
    }
    let v = app
        .gql_ok(
            Some(&app.admin_token),
            "{ incidents { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(v["incidents"]["totalCount"], 0);

    let inc = create(&app, &token, "ok", json!({})).await;
    let v = mutate(
        &app,
        &token,
        "updateIncident",
        json!({"id": inc["id"], "title": "fine", "rootCause": "x\u{0}"}),
    )
    .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    let after = fetch(&app, &token, inc["id"].as_str().unwrap(), "").await;
    assert_eq!(
        after["data"]["incident"]["title"], "ok",
        "a rejected update writes nothing"
    );
    for bad in ["nope", ""] {
        let v = fetch(&app, &token, bad, "").await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT");
    }
}
