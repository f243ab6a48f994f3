//! Incidents opened by real alert evaluation: a rule with `createIncident`
//! that fires opens exactly one incident, in the evaluation's transaction,
//! linked to the alert; its timeline shows the alert's transitions (with
//! their alert events, not repeated as events); the alert's resolution is
//! audited and pushed; the analysis lists the fired alert; and
//! `Incident.alerts` is batched.
//!
//! Evaluation is driven explicitly (`evaluate_rule` at chosen times in the
//! recent past, over samples stored at chosen times), never by a background
//! loop, so every step is deterministic.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use sightline::alerts::evaluator::{EvaluationOutcome, evaluate_rule};
use uuid::Uuid;

use super::live::wait_for_subscribers;
use super::loaders::{identity, run_counted};
use super::{audit, fetch, mutate_ok};
use crate::alerts::{create_rule, put_sample};
use crate::common::TestApp;

fn secs_ago(s: i64) -> DateTime<Utc> {
    sightline::util::now() - TimeDelta::seconds(s)
}

async fn app() -> TestApp {
    TestApp::spawn_with(|c| c.alert_evaluator = false).await
}

async fn rule(app: &TestApp, input: Value) -> Uuid {
    let r = create_rule(app, &app.admin_token, input).await;
    r["id"].as_str().unwrap().parse().unwrap()
}

async fn gauge_at(app: &TestApp, name: &str, labels: &[(&str, &str)], value: f64, ago: i64) {
    put_sample(app, name, "gauge", labels, value, secs_ago(ago)).await;
}

async fn evaluate(app: &TestApp, rule: Uuid, at: DateTime<Utc>) -> EvaluationOutcome {
    let out = evaluate_rule(&app.state, rule, at)
        .await
        .unwrap_or_else(|e| panic!("evaluation failed: {}", e.describe()));
    assert!(out.evaluated, "the rule was evaluated at {at}");
    assert_eq!(out.error, None);
    out
}

fn to_states(out: &EvaluationOutcome) -> Vec<&str> {
    out.transitions
        .iter()
        .map(|t| t.to_state.as_str())
        .collect()
}

/// Every incident, newest first, with its alerts.
async fn incidents(app: &TestApp) -> Vec<Value> {
    let v = app
        .gql_ok(
            Some(&app.admin_token),
            "{ incidents(first: 100) { nodes { id title status severity startedAt createdBy { id } alerts { id state } } } }",
            json!({}),
        )
        .await;
    v["incidents"]["nodes"].as_array().unwrap().clone()
}

const TIMELINE: &str = "timeline { totalCount nodes { kind reason summary at \
    alertTransition { from to ruleName alertId } event { id source eventType } } }";

fn kinds(timeline: &Value) -> Vec<String> {
    timeline["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_firing_rule_opens_one_linked_incident_whose_timeline_and_analysis_show_the_alert() {
    let app = app().await;
    let admin = app.admin_token.clone();
    let mut created = app
        .subscribe(
            Some(&admin),
            "subscription { incidentCreated { id severity createdBy { id } alerts { id state } } }",
            json!({}),
        )
        .await;
    wait_for_subscribers(&app, 1).await;
    let labels = [("host", "db-1"), ("service", "postgres")];
    gauge_at(&app, "evald_cpu", &labels, 97.0, 300).await;
    let rule_id = rule(
        &app,
        json!({"name": "EvaldCPU", "query": "evald_cpu > 90", "for": 60, "severity": "CRITICAL",
               "createIncident": true, "annotations": {"summary": "CPU above 90%"}}),
    )
    .await;

    let pending = evaluate(&app, rule_id, secs_ago(280)).await;
    assert_eq!(to_states(&pending), ["pending"]);
    assert!(
        incidents(&app).await.is_empty(),
        "a pending alert opens nothing"
    );

    let fired = evaluate(&app, rule_id, secs_ago(200)).await;
    assert_eq!(to_states(&fired), ["firing"]);
    let alert_id = fired.transitions[0].instance_id.to_string();
    let list = incidents(&app).await;
    assert_eq!(list.len(), 1, "exactly one incident: {list:?}");
    let inc = list[0].clone();
    let id = inc["id"].as_str().unwrap().to_owned();
    assert_eq!(inc["title"], "EvaldCPU {host=db-1, service=postgres}");
    assert_eq!(inc["status"], "OPEN");
    assert_eq!(inc["severity"], "HIGH", "the default for a critical rule");
    assert!(inc["createdBy"].is_null(), "opened by the system");
    assert_eq!(inc["alerts"], json!([{"id": alert_id, "state": "FIRING"}]));

    let pushed = created.next_payload().await;
    let pushed = &pushed["data"]["incidentCreated"];
    assert_eq!(pushed["id"], id.as_str());
    assert_eq!(
        pushed["alerts"][0]["id"],
        alert_id.as_str(),
        "pushed after the link committed"
    );

    // Still firing: no second incident.
    let steady = evaluate(&app, rule_id, secs_ago(150)).await;
    assert!(steady.transitions.is_empty());
    assert_eq!(incidents(&app).await.len(), 1);

    let v = fetch(
        &app,
        &admin,
        &id,
        &format!("alerts {{ id state labels rule {{ name }} }} {TIMELINE}"),
    )
    .await;
    let i = &v["data"]["incident"];
    assert_eq!(i["alerts"][0]["rule"]["name"], "EvaldCPU");
    assert_eq!(
        i["alerts"][0]["labels"],
        json!({"host": "db-1", "service": "postgres"})
    );
    assert_eq!(kinds(&i["timeline"]), ["ALERT", "ALERT", "CHANGE"]);
    assert_eq!(
        i["timeline"]["totalCount"], 3,
        "the alert event is not repeated"
    );
    let nodes = i["timeline"]["nodes"].as_array().unwrap();
    assert_eq!(
        nodes[0]["alertTransition"],
        json!({"from": "INACTIVE", "to": "PENDING", "ruleName": "EvaldCPU", "alertId": alert_id})
    );
    assert!(nodes[0]["event"].is_null(), "no alert event for pending");
    assert_eq!(nodes[1]["alertTransition"]["to"], "FIRING");
    assert_eq!(nodes[1]["event"]["source"], "sightline.alerts");
    assert_eq!(nodes[1]["event"]["eventType"], "ALERT");
    assert!(
        nodes[1]["reason"].as_str().unwrap().contains("EvaldCPU"),
        "{}",
        nodes[1]["reason"]
    );
    assert!(
        nodes[1]["summary"].as_str().unwrap().contains("firing"),
        "{}",
        nodes[1]["summary"]
    );
    assert!(nodes[2]["alertTransition"].is_null());

    // The alert resolves: audited on the incident, pushed, shown; the
    // incident stays open.
    let mut updated = app
        .subscribe(
            Some(&admin),
            "subscription($id: ID!) { incidentUpdated(id: $id) { incident { id status } changes { field from to } actor { id } } }",
            json!({"id": id}),
        )
        .await;
    wait_for_subscribers(&app, 2).await;
    gauge_at(&app, "evald_cpu", &labels, 10.0, 120).await;
    let resolved = evaluate(&app, rule_id, secs_ago(100)).await;
    assert_eq!(to_states(&resolved), ["inactive"]);
    let pushed = updated.next_payload().await;
    let change = &pushed["data"]["incidentUpdated"];
    assert_eq!(change["incident"]["status"], "OPEN");
    assert!(change["actor"].is_null());
    assert_eq!(change["changes"][0]["field"], "alert");
    assert_eq!(change["changes"][0]["from"]["state"], "FIRING");
    assert_eq!(change["changes"][0]["to"]["state"], "INACTIVE");
    assert_eq!(change["changes"][0]["to"]["alertId"], alert_id.as_str());

    let trail = audit(&app, &id).await;
    let fields: Vec<&str> = trail.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(fields, ["created", "alert"]);
    let v = fetch(&app, &admin, &id, &format!("alerts {{ state }} {TIMELINE}")).await;
    let i = &v["data"]["incident"];
    assert_eq!(i["status"], "OPEN");
    assert_eq!(i["alerts"][0]["state"], "INACTIVE");
    assert_eq!(
        kinds(&i["timeline"]),
        ["ALERT", "ALERT", "ALERT", "CHANGE"],
        "the resolution is an ALERT entry, not a CHANGE"
    );
    let resolution = &i["timeline"]["nodes"][2];
    assert_eq!(resolution["alertTransition"]["from"], "FIRING");
    assert_eq!(resolution["alertTransition"]["to"], "INACTIVE");
    assert_eq!(resolution["event"]["source"], "sightline.alerts");

    // REST timeline entries carry the alert.
    let body: Value = app
        .client
        .get(app.url(&format!("/api/v1/monitoring/incidents/{id}/timeline")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = body["data"]["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[1]["kind"], "alert");
    assert_eq!(entries[1]["alert"]["rule_name"], "EvaldCPU");
    assert_eq!(entries[1]["alert"]["alert_id"], alert_id.as_str());
    assert_eq!(entries[1]["alert"]["to"], "firing");
    assert_eq!(entries[1]["source"], "sightline.alerts");
    assert!(entries[3]["alert"].is_null());

    // The analysis lists the alert that fired in its window.
    let v = app
        .gql_ok(
            Some(&admin),
            "mutation($i: AnalyzeIncidentInput!) { analyzeIncident(input: $i) { alerts { ruleName labels linked severity at value } } }",
            json!({"i": {"id": id}}),
        )
        .await;
    let alerts = v["analyzeIncident"]["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["ruleName"], "EvaldCPU");
    assert_eq!(
        alerts[0]["labels"],
        json!({"host": "db-1", "service": "postgres"})
    );
    assert_eq!(alerts[0]["linked"], true);
    assert_eq!(alerts[0]["severity"], "CRITICAL");
    assert_eq!(alerts[0]["value"], 97.0);
    assert_eq!(
        alerts[0]["at"], inc["startedAt"],
        "fired when the incident started"
    );
}

/// Stores a `flappy` sample just before `ago` and evaluates the rule then.
async fn flap(app: &TestApp, rule_id: Uuid, value: f64, ago: i64) -> Vec<String> {
    gauge_at(app, "flappy", &[], value, ago + 5).await;
    to_states(&evaluate(app, rule_id, secs_ago(ago)).await)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_firing_again_joins_the_open_incident_and_only_a_later_one_opens_another() {
    let app = app().await;
    let admin = app.admin_token.clone();
    let rule_id = rule(
        &app,
        json!({"name": "Flappy", "query": "flappy > 1", "createIncident": true,
               "incidentSeverity": "CRITICAL"}),
    )
    .await;
    let quiet = rule(&app, json!({"name": "Quiet", "query": "quiet > 1"})).await;
    gauge_at(&app, "quiet", &[], 5.0, 300).await;
    assert_eq!(
        to_states(&evaluate(&app, quiet, secs_ago(290)).await),
        ["firing"]
    );

    assert_eq!(flap(&app, rule_id, 5.0, 280).await, ["firing"]);
    let list = incidents(&app).await;
    assert_eq!(list.len(), 1, "the rule without createIncident opened none");
    let first = list[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list[0]["severity"], "CRITICAL");

    assert_eq!(flap(&app, rule_id, 0.0, 260).await, ["inactive"]);
    assert_eq!(flap(&app, rule_id, 5.0, 240).await, ["firing"]);
    let list = incidents(&app).await;
    assert_eq!(list.len(), 1, "firing again joins the open incident");
    let trail = audit(&app, &first).await;
    let states: Vec<(&str, &Value)> = trail
        .iter()
        .map(|t| (t.0.as_str(), &t.2["state"]))
        .collect();
    assert_eq!(
        states,
        [
            ("created", &Value::Null),
            ("alert", &json!("INACTIVE")),
            ("alert", &json!("FIRING"))
        ]
    );

    // Once the incident is resolved, the next firing opens a new one.
    mutate_ok(&app, &admin, "resolveIncident", json!({"id": first})).await;
    assert_eq!(flap(&app, rule_id, 0.0, 220).await, ["inactive"]);
    assert_eq!(flap(&app, rule_id, 5.0, 200).await, ["firing"]);
    let list = incidents(&app).await;
    assert_eq!(list.len(), 2);
    let second = list
        .iter()
        .find(|i| i["id"] != first.as_str())
        .expect("a second incident");
    assert_eq!(second["status"], "OPEN");
    assert_eq!(
        second["alerts"],
        list.iter().find(|i| i["id"] == first.as_str()).unwrap()["alerts"]
    );
    assert_eq!(
        sightline::incidents::open_count(&app.state.db)
            .await
            .unwrap(),
        1
    );
    let alert_changes = audit(&app, &first)
        .await
        .iter()
        .filter(|t| t.0 == "alert")
        .count();
    assert_eq!(
        alert_changes, 2,
        "a resolved incident's trail is left alone"
    );
}

#[tokio::test]
async fn a_silenced_alert_opens_its_incident_only_once_the_silence_ends() {
    let app = app().await;
    let moderator = app.create_user("MODERATOR").await;
    let rule_id = rule(
        &app,
        json!({"name": "Hushed", "query": "hushed > 1", "createIncident": true}),
    )
    .await;
    let silence = app
        .gql_ok(
            Some(&moderator.token),
            "mutation($i: CreateSilenceInput!) { createSilence(input: $i) { id state } }",
            json!({"i": {"matchers": [{"label": "alertname", "value": "Hushed"}],
                   "endsAt": (Utc::now() + TimeDelta::hours(1)).to_rfc3339(),
                   "comment": "maintenance"}}),
        )
        .await["createSilence"]
        .clone();
    assert_eq!(silence["state"], "ACTIVE");
    gauge_at(&app, "hushed", &[], 5.0, 1).await;
    let fired = evaluate(&app, rule_id, sightline::util::now()).await;
    assert_eq!(to_states(&fired), ["firing"]);
    assert!(fired.transitions[0].silenced);
    assert!(incidents(&app).await.is_empty(), "silenced: no incident");

    app.gql_ok(
        Some(&moderator.token),
        "mutation($i: ExpireSilenceInput!) { expireSilence(input: $i) { state } }",
        json!({"i": {"id": silence["id"]}}),
    )
    .await;
    let later = sightline::util::now() + TimeDelta::milliseconds(1);
    let unsilenced = evaluate(&app, rule_id, later).await;
    assert!(unsilenced.transitions.is_empty(), "still firing");
    let list = incidents(&app).await;
    assert_eq!(list.len(), 1, "the silence ended while it fired");
    assert_eq!(
        list[0]["alerts"][0]["id"],
        fired.transitions[0].instance_id.to_string().as_str()
    );
}

const LIST_ALERTS: &str =
    "{ incidents(first: 100) { nodes { id alerts { id state labels firedAt } } } }";

/// Lists the incidents with their alerts; returns the statements it ran.
async fn statements_for_alerts(app: &TestApp, expect: usize) -> Vec<String> {
    let viewer = identity(app, &app.admin_token).await;
    let (data, statements) = run_counted(app, &viewer, LIST_ALERTS).await;
    let nodes = data["incidents"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), expect);
    for n in nodes {
        assert_eq!(n["alerts"].as_array().unwrap().len(), 1, "{n}");
        assert_eq!(n["alerts"][0]["state"], "FIRING");
    }
    statements
}

async fn fire_rules(app: &TestApp, from: usize, to: usize) {
    for k in from..to {
        let name = format!("batched_{k}");
        gauge_at(app, &name, &[("k", &k.to_string())], 5.0, 60).await;
        let id = rule(
            app,
            json!({"name": name, "query": format!("{name} > 1"), "createIncident": true}),
        )
        .await;
        assert_eq!(
            to_states(&evaluate(app, id, secs_ago(50)).await),
            ["firing"]
        );
    }
}

#[tokio::test]
async fn incident_alerts_are_loaded_in_a_constant_number_of_statements() {
    let app = app().await;
    fire_rules(&app, 0, 2).await;
    let few = statements_for_alerts(&app, 2).await;
    fire_rules(&app, 2, 8).await;
    let many = statements_for_alerts(&app, 8).await;
    assert_eq!(
        few.len(),
        many.len(),
        "statements do not grow with the number of incidents: {many:#?}"
    );
    let from = |table: &str| {
        many.iter()
            .filter(|s| s.contains(&format!("FROM \"{table}\"")))
            .count()
    };
    assert_eq!(from("incidents"), 1, "{many:#?}");
    assert_eq!(from("incident_alerts"), 1, "{many:#?}");
    assert_eq!(from("alert_instances"), 1, "{many:#?}");
}
