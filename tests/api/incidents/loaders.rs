//! Nested lookups go through DataLoaders: listing incidents with their
//! users, notes and audit trails costs the same number of SQL statements
//! for 10 incidents as for 100.
//!
//! Statements are counted with SeaORM's metric callback
//! (`DatabaseConnection::set_metric_callback`), which fires once per
//! statement the connection executes, inside transactions too. The test
//! runs the real schema (`build_schema` + `prepare_request`, as the HTTP
//! handler does) on a clone of the server's connection that carries the
//! callback, so only this query's statements are counted.

use std::sync::{Arc, Mutex};

use sightline::auth::{Auth, Identity, RequestContext};
use sightline::incidents::service::{self, NewIncident};

use crate::common::TestApp;

const LIST: &str = "{ incidents(first: 100) {
  nodes {
    id title
    createdBy { username }
    assignedTo { username }
    notes(first: 5) { nodes { body author { username } } }
    changes(first: 5) { nodes { field actor { username } } }
  }
} }";

struct Counted {
    state: sightline::AppState,
    statements: Arc<Mutex<Vec<String>>>,
}

fn counted(app: &TestApp) -> Counted {
    let statements = Arc::new(Mutex::new(Vec::new()));
    let sink = statements.clone();
    let mut db = app.state.db.clone();
    db.set_metric_callback(move |info| {
        sink.lock().unwrap().push(info.statement.sql.clone());
    });
    Counted {
        state: sightline::AppState {
            db,
            ..app.state.clone()
        },
        statements,
    }
}

pub(super) async fn identity(app: &TestApp, token: &str) -> Identity {
    sightline::auth::service::authenticate(&app.state.db, token)
        .await
        .unwrap()
        .expect("a valid token")
}

/// Runs `query` as `viewer` through the real schema, as the HTTP handler
/// does; returns its data and the statements it ran.
pub(super) async fn run_counted(
    app: &TestApp,
    viewer: &Identity,
    query: &str,
) -> (serde_json::Value, Vec<String>) {
    let c = counted(app);
    let schema = sightline::graphql::build_schema(c.state.clone());
    let request = sightline::graphql::prepare_request(
        async_graphql::Request::new(query),
        &c.state,
        RequestContext::internal(Auth::User(viewer.clone())),
    );
    let response = schema.execute(request).await;
    assert!(response.errors.is_empty(), "{:?}", response.errors);
    let data = response.data.into_json().unwrap();
    let statements = c.statements.lock().unwrap().clone();
    (data, statements)
}

async fn statements_for_list(app: &TestApp, viewer: &Identity, expect: usize) -> Vec<String> {
    let (data, statements) = run_counted(app, viewer, LIST).await;
    let nodes = data["incidents"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), expect);
    for n in nodes {
        assert!(n["createdBy"]["username"].is_string());
        assert!(n["assignedTo"]["username"].is_string());
        assert_eq!(n["notes"]["nodes"].as_array().unwrap().len(), 2);
        assert_eq!(n["changes"]["nodes"][0]["field"], "created");
    }
    statements
}

/// One statement for the page, one per nested list, and at most three for
/// users (creators and assignees; note authors and change actors, which the
/// DataLoader may or may not merge into one batch): never one per incident.
fn assert_flat(statements: &[String]) {
    let count = |table: &str| {
        statements
            .iter()
            .filter(|s| s.contains(&format!("FROM \"{table}\"")))
            .count()
    };
    assert_eq!(count("incidents"), 1, "{statements:#?}");
    assert_eq!(count("incident_notes"), 1, "{statements:#?}");
    assert_eq!(count("incident_changes"), 1, "{statements:#?}");
    assert!((2..=3).contains(&count("users")), "{statements:#?}");
    assert!(statements.len() <= 6, "{statements:#?}");
}

async fn add_incidents(app: &TestApp, creators: &[Identity], assignees: &[uuid::Uuid], n: usize) {
    for i in 0..n {
        let creator = &creators[i % creators.len()];
        let inc = service::create(
            &app.state,
            creator,
            NewIncident {
                title: format!("incident {i}"),
                assigned_to: Some(assignees[i % assignees.len()]),
                ..NewIncident::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{}", e.describe()));
        for body in ["first look", "second look"] {
            service::add_note(&app.state, creator, inc.id, body)
                .await
                .unwrap_or_else(|e| panic!("{}", e.describe()));
        }
    }
}

#[tokio::test]
async fn listing_a_hundred_incidents_with_users_and_notes_runs_a_constant_number_of_statements() {
    let app = TestApp::spawn().await;
    let mut creators = Vec::new();
    let mut assignees = Vec::new();
    for _ in 0..5 {
        let u = app.create_user("USER").await;
        creators.push(identity(&app, &u.token).await);
        let a = app.create_user("USER").await;
        assignees.push(a.id.parse().unwrap());
    }
    let admin = identity(&app, &app.admin_token).await;

    add_incidents(&app, &creators, &assignees, 10).await;
    let small = statements_for_list(&app, &admin, 10).await;
    add_incidents(&app, &creators, &assignees, 90).await;
    let large = statements_for_list(&app, &admin, 100).await;
    let own = statements_for_list(&app, &creators[0], 20).await;
    for statements in [&small, &large, &own] {
        assert_flat(statements);
    }
}
