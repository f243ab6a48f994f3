//! The reconstructed timeline: contents, order and reasons for a scripted
//! scenario, filters, paging and lookback bounds.

use serde_json::{Value, json};

use super::{create, event, minutes_ago, mutate_ok};
use crate::common::{TestApp, error_code};

const TIMELINE: &str = "query($id: ID!, $first: Int, $after: String, $kinds: [TimelineEntryKind!], $min: EventLevel, $lookback: String) {
  incident(id: $id) {
    timeline(first: $first, after: $after, kinds: $kinds, minLevel: $min, lookback: $lookback) {
      totalCount windowStart windowEnd
      pageInfo { hasNextPage endCursor }
      nodes { at kind reason summary actor { username } }
    }
  }
}";

async fn timeline(app: &TestApp, token: &str, id: &str, vars: Value) -> Value {
    let mut vars = vars;
    vars["id"] = json!(id);
    app.gql(Some(token), TIMELINE, vars).await
}

fn summaries(v: &Value) -> Vec<(String, String)> {
    v["data"]["incident"]["timeline"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no timeline in {v}"))
        .iter()
        .map(|n| {
            (
                n["kind"].as_str().unwrap().to_owned(),
                n["summary"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Events around an incident on `checkout` that started 30 minutes ago.
async fn scenario(app: &TestApp, token: &str) -> String {
    event(
        app,
        "checkout",
        Some("info"),
        "too early",
        minutes_ago(100),
        json!({}),
    )
    .await;
    event(
        app,
        "checkout",
        Some("info"),
        "cart submitted",
        minutes_ago(80),
        json!({"trace_id": "t-1"}),
    )
    .await;
    event(
        app,
        "payments",
        Some("warn"),
        "slow upstream",
        minutes_ago(70),
        json!({"request_id": "r-7"}),
    )
    .await;
    event(
        app,
        "inventory",
        Some("info"),
        "stock reserved",
        minutes_ago(60),
        json!({"trace_id": "t-1"}),
    )
    .await;
    event(
        app,
        "inventory",
        Some("debug"),
        "retry scheduled",
        minutes_ago(55),
        json!({"request_id": "r-7"}),
    )
    .await;
    event(
        app,
        "inventory",
        Some("info"),
        "unrelated trace",
        minutes_ago(50),
        json!({"trace_id": "t-9"}),
    )
    .await;
    event(
        app,
        "payments",
        Some("info"),
        "routine",
        minutes_ago(40),
        json!({}),
    )
    .await;
    event(
        app,
        "checkout",
        Some("error"),
        "payment failed",
        minutes_ago(20),
        json!({}),
    )
    .await;
    let inc = create(
        app,
        token,
        "checkout failing",
        json!({"startedAt": minutes_ago(30).to_rfc3339(), "sources": ["checkout"]}),
    )
    .await;
    let id = inc["id"].as_str().unwrap().to_owned();
    mutate_ok(
        app,
        token,
        "updateIncident",
        json!({"id": id, "status": "INVESTIGATING"}),
    )
    .await;
    app.gql_ok(
        Some(token),
        "mutation($i: AddIncidentNoteInput!) { addIncidentNote(input: $i) { id } }",
        json!({"i": {"incidentId": id, "body": "payments upstream looks slow"}}),
    )
    .await;
    id
}

#[tokio::test]
async fn a_scripted_incident_tells_its_story_in_order_with_reasons() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    let id = scenario(&app, &user.token).await;
    let v = timeline(&app, &user.token, &id, json!({})).await;
    let nodes = v["data"]["incident"]["timeline"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .clone();
    let got: Vec<(String, String, String)> = nodes
        .iter()
        .map(|n| {
            (
                n["kind"].as_str().unwrap().to_owned(),
                n["summary"].as_str().unwrap().to_owned(),
                n["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(&str, &str, &str)> = vec![
        (
            "EVENT",
            "[info] checkout: cart submitted",
            "from the incident's source `checkout`",
        ),
        (
            "EVENT",
            "[warn] payments: slow upstream",
            "at level warn from `payments`",
        ),
        (
            "EVENT",
            "[info] inventory: stock reserved",
            "shares trace_id `t-1` with an event in the timeline",
        ),
        (
            "EVENT",
            "[debug] inventory: retry scheduled",
            "shares request_id `r-7` with an event in the timeline",
        ),
        (
            "EVENT",
            "[error] checkout: payment failed",
            "from the incident's source `checkout`",
        ),
        (
            "CHANGE",
            "incident created: checkout failing",
            "a change of the incident",
        ),
        (
            "CHANGE",
            "status changed from open to investigating",
            "a change of the incident",
        ),
        (
            "CHANGE",
            "acknowledgedAt changed from nothing to ",
            "a change of the incident",
        ),
        (
            "NOTE",
            "payments upstream looks slow",
            "a note on the incident",
        ),
    ];
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g.0, e.0, "{got:#?}");
        assert!(g.1.starts_with(e.1), "{:?} vs {:?}", g.1, e.1);
        assert_eq!(g.2, e.2);
    }
    // Entries are in time order; changes and notes carry their actor.
    let ats: Vec<&str> = nodes.iter().map(|n| n["at"].as_str().unwrap()).collect();
    let mut sorted = ats.clone();
    sorted.sort_by_key(|a| chrono::DateTime::parse_from_rfc3339(a).unwrap());
    assert_eq!(ats, sorted);
    assert!(nodes[0]["actor"].is_null());
    assert_eq!(nodes[8]["actor"]["username"], user.username.as_str());
    let t = &v["data"]["incident"]["timeline"];
    assert_eq!(t["totalCount"], 9);
    let start = chrono::DateTime::parse_from_rfc3339(t["windowStart"].as_str().unwrap()).unwrap();
    let expected_start = minutes_ago(90);
    assert!((start.timestamp() - expected_start.timestamp()).abs() <= 5);

    // Kinds and levels filter; the other kinds are unaffected by minLevel.
    let v = timeline(&app, &user.token, &id, json!({"kinds": ["NOTE"]})).await;
    assert_eq!(summaries(&v).len(), 1);
    assert_eq!(v["data"]["incident"]["timeline"]["totalCount"], 1);
    let v = timeline(
        &app,
        &user.token,
        &id,
        json!({"kinds": ["EVENT"], "min": "WARN"}),
    )
    .await;
    let s: Vec<String> = summaries(&v).into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        s,
        [
            "[warn] payments: slow upstream",
            "[error] checkout: payment failed"
        ]
    );
    assert_eq!(v["data"]["incident"]["timeline"]["totalCount"], 2);
}

#[tokio::test]
async fn timelines_page_with_cursors_without_gaps_or_repeats() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let id = scenario(&app, &token).await;
    let whole = summaries(&timeline(&app, &token, &id, json!({})).await);
    let mut paged = Vec::new();
    let mut after = Value::Null;
    loop {
        let v = timeline(&app, &token, &id, json!({"first": 2, "after": after})).await;
        paged.extend(summaries(&v));
        let info = &v["data"]["incident"]["timeline"]["pageInfo"];
        if !info["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = info["endCursor"].clone();
    }
    assert_eq!(paged, whole);
}

#[tokio::test]
async fn the_lookback_moves_the_window_start_within_zero_to_seven_days() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let id = scenario(&app, &token).await;
    let events = |v: &Value| {
        summaries(v)
            .into_iter()
            .filter(|(k, _)| k == "EVENT")
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
    };
    let v = timeline(&app, &token, &id, json!({"lookback": "0"})).await;
    assert_eq!(
        events(&v),
        ["[error] checkout: payment failed"],
        "nothing before startedAt"
    );
    let v = timeline(&app, &token, &id, json!({"lookback": "2h"})).await;
    assert_eq!(events(&v)[0], "[info] checkout: too early");
    let v = timeline(&app, &token, &id, json!({"lookback": "7d"})).await;
    assert!(v.get("errors").is_none(), "{v}");
    for bad in ["7d1s", "8d", "-1h", "soon", "", "99999999999999999999d"] {
        let v = timeline(&app, &token, &id, json!({"lookback": bad})).await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{bad}: {v}");
        assert_eq!(v["errors"][0]["extensions"]["field"], "lookback", "{bad}");
    }
    for (vars, field) in [
        (json!({"first": -1}), "first"),
        (json!({"first": 1001}), "first"),
        (json!({"after": "forged"}), "after"),
    ] {
        let v = timeline(&app, &token, &id, vars.clone()).await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{vars}");
        assert_eq!(v["errors"][0]["extensions"]["field"], field);
    }
}

#[tokio::test]
async fn the_window_ends_at_resolution() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    let inc = create(
        &app,
        &token,
        "brief blip",
        json!({"startedAt": minutes_ago(30).to_rfc3339(), "sources": ["api"]}),
    )
    .await;
    let id = inc["id"].as_str().unwrap();
    event(
        &app,
        "api",
        Some("info"),
        "before resolve",
        minutes_ago(10),
        json!({}),
    )
    .await;
    mutate_ok(&app, &token, "resolveIncident", json!({"id": id})).await;
    event(
        &app,
        "api",
        Some("error"),
        "after resolve",
        sightline::util::now() + chrono::Duration::seconds(1),
        json!({}),
    )
    .await;
    let v = timeline(&app, &token, id, json!({"kinds": ["EVENT"]})).await;
    let s: Vec<String> = summaries(&v).into_iter().map(|(_, s)| s).collect();
    assert_eq!(s, ["[info] api: before resolve"]);
}
