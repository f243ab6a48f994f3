//! Ownership scoping (users see what they created or are assigned to,
//! moderators everything), assignment rules, and notes.

use serde_json::json;

use super::{audit, create, fetch, mutate, mutate_ok};
use crate::common::{TestApp, error_code};

async fn listed(app: &TestApp, token: &str, filter: serde_json::Value) -> Vec<String> {
    let v = app
        .gql_ok(
            Some(token),
            "query($f: IncidentFilter) { incidents(filter: $f, first: 100) { totalCount nodes { title } } }",
            json!({ "f": filter }),
        )
        .await;
    let titles: Vec<String> = v["incidents"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        v["incidents"]["totalCount"].as_u64(),
        Some(titles.len() as u64)
    );
    titles
}

#[tokio::test]
async fn users_see_and_change_only_incidents_they_created_or_are_assigned_to() {
    let app = TestApp::spawn().await;
    let alice = app.create_user("USER").await;
    let bob = app.create_user("USER").await;
    let moderator = app.create_user("MODERATOR").await;
    let a1 = create(&app, &alice.token, "alice's own", json!({})).await;
    let b1 = create(&app, &bob.token, "bob's own", json!({})).await;
    let b2 = create(
        &app,
        &bob.token,
        "bob's, assigned to alice",
        json!({"assignedTo": alice.id}),
    )
    .await;

    let mut seen = listed(&app, &alice.token, json!(null)).await;
    seen.sort();
    assert_eq!(seen, ["alice's own", "bob's, assigned to alice"]);
    assert_eq!(
        listed(&app, &moderator.token, json!(null)).await.len(),
        3,
        "moderators see every incident"
    );
    assert_eq!(listed(&app, &app.admin_token, json!(null)).await.len(), 3);

    // Another user's incident does not exist for alice.
    let b1_id = b1["id"].as_str().unwrap();
    let v = fetch(&app, &alice.token, b1_id, "").await;
    assert_eq!(error_code(&v), "NOT_FOUND");
    let v = mutate(
        &app,
        &alice.token,
        "updateIncident",
        json!({"id": b1_id, "title": "mine now"}),
    )
    .await;
    assert_eq!(error_code(&v), "NOT_FOUND");
    for name in [
        "acknowledgeIncident",
        "resolveIncident",
        "closeIncident",
        "reopenIncident",
    ] {
        let v = mutate(&app, &alice.token, name, json!({"id": b1_id})).await;
        assert_eq!(error_code(&v), "NOT_FOUND", "{name}");
    }
    let v = app
        .gql(
            Some(&alice.token),
            "mutation($i: AddIncidentNoteInput!) { addIncidentNote(input: $i) { id } }",
            json!({"i": {"incidentId": b1_id, "body": "peek"}}),
        )
        .await;
    assert_eq!(error_code(&v), "NOT_FOUND");
    let v = app
        .gql(
            Some(&alice.token),
            "mutation($i: AnalyzeIncidentInput!) { analyzeIncident(input: $i) { computedAt } }",
            json!({"i": {"id": b1_id}}),
        )
        .await;
    assert_eq!(error_code(&v), "NOT_FOUND");
    // ... and is indistinguishable from one that does not exist.
    let v = fetch(&app, &alice.token, &uuid::Uuid::now_v7().to_string(), "").await;
    assert_eq!(error_code(&v), "NOT_FOUND");

    // Alice may work on the incident assigned to her.
    let b2_id = b2["id"].as_str().unwrap();
    let v = mutate_ok(
        &app,
        &alice.token,
        "updateIncident",
        json!({"id": b2_id, "status": "INVESTIGATING"}),
    )
    .await;
    assert_eq!(v["status"], "INVESTIGATING");
    // A moderator may change any incident.
    mutate_ok(
        &app,
        &moderator.token,
        "updateIncident",
        json!({"id": a1["id"], "severity": "CRITICAL"}),
    )
    .await;

    // Filters work within the caller's scope.
    assert_eq!(
        listed(&app, &alice.token, json!({"createdBy": bob.id})).await,
        ["bob's, assigned to alice"]
    );
    assert_eq!(
        listed(&app, &moderator.token, json!({"createdBy": bob.id}))
            .await
            .len(),
        2
    );
    assert_eq!(
        listed(&app, &moderator.token, json!({"assignedTo": alice.id})).await,
        ["bob's, assigned to alice"]
    );
    assert_eq!(
        listed(
            &app,
            &moderator.token,
            json!({"status": ["INVESTIGATING"], "severity": ["MEDIUM"]})
        )
        .await,
        ["bob's, assigned to alice"]
    );
    assert_eq!(
        listed(&app, &moderator.token, json!({"text": "ASSIGNED"})).await,
        ["bob's, assigned to alice"]
    );
    assert_eq!(
        listed(&app, &moderator.token, json!({"text": "%"}))
            .await
            .len(),
        0,
        "wildcards are literal"
    );
}

#[tokio::test]
async fn only_moderators_or_the_creator_may_set_the_assignee_and_it_must_be_an_active_user() {
    let app = TestApp::spawn().await;
    let creator = app.create_user("USER").await;
    let assignee = app.create_user("USER").await;
    let other = app.create_user("USER").await;
    let moderator = app.create_user("MODERATOR").await;
    let inc = create(
        &app,
        &creator.token,
        "queue stuck",
        json!({"assignedTo": assignee.id}),
    )
    .await;
    let id = inc["id"].as_str().unwrap();

    // The assignee sees it but may not hand it on.
    for (name, input) in [
        ("assignIncident", json!({"id": id, "assignedTo": other.id})),
        ("assignIncident", json!({"id": id, "assignedTo": null})),
        ("updateIncident", json!({"id": id, "assignedTo": other.id})),
    ] {
        let v = mutate(&app, &assignee.token, name, input).await;
        assert_eq!(error_code(&v), "FORBIDDEN", "{v}");
    }
    // Re-stating the current assignee is not a change, so it is allowed.
    mutate_ok(
        &app,
        &assignee.token,
        "updateIncident",
        json!({"id": id, "assignedTo": assignee.id, "title": "queue stuck (consumer)"}),
    )
    .await;

    // The creator may reassign their own incident; a moderator anyone's.
    let v = mutate_ok(
        &app,
        &creator.token,
        "assignIncident",
        json!({"id": id, "assignedTo": other.id}),
    )
    .await;
    assert_eq!(v["assignedTo"]["id"], other.id.as_str());
    let v = mutate_ok(
        &app,
        &moderator.token,
        "assignIncident",
        json!({"id": id, "assignedTo": moderator.id}),
    )
    .await;
    assert_eq!(v["assignedTo"]["username"], moderator.username.as_str());
    // The previous assignee no longer sees it.
    let v = fetch(&app, &other.token, id, "").await;
    assert_eq!(error_code(&v), "NOT_FOUND");

    // The assignee must be an active user: never a 500.
    app.gql_ok(
        Some(&app.admin_token),
        "mutation($i: DeactivateUserInput!) { deactivateUser(input: $i) { id } }",
        json!({"i": {"userId": other.id}}),
    )
    .await;
    for bad in [
        other.id.clone(),
        uuid::Uuid::now_v7().to_string(),
        "x".to_owned(),
    ] {
        let v = mutate(
            &app,
            &moderator.token,
            "assignIncident",
            json!({"id": id, "assignedTo": bad}),
        )
        .await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{v}");
        assert_eq!(v["errors"][0]["extensions"]["field"], "assignedTo");
    }
    let v = mutate_ok(
        &app,
        &moderator.token,
        "assignIncident",
        json!({"id": id, "assignedTo": null}),
    )
    .await;
    assert!(v["assignedTo"].is_null());

    let assignments: Vec<_> = audit(&app, id)
        .await
        .into_iter()
        .filter(|a| a.0 == "assignedTo")
        .map(|a| (a.1, a.2, a.3))
        .collect();
    assert_eq!(
        assignments,
        [
            (json!(assignee.id), json!(other.id), json!(creator.username)),
            (
                json!(other.id),
                json!(moderator.id),
                json!(moderator.username)
            ),
            (json!(moderator.id), json!(null), json!(moderator.username)),
        ]
    );
}

#[tokio::test]
async fn notes_are_added_edited_and_deleted_by_their_authors_and_audited() {
    let app = TestApp::spawn().await;
    let author = app.create_user("USER").await;
    let assignee = app.create_user("USER").await;
    let moderator = app.create_user("MODERATOR").await;
    let inc = create(
        &app,
        &author.token,
        "cache misses",
        json!({"assignedTo": assignee.id}),
    )
    .await;
    let id = inc["id"].as_str().unwrap();
    let add = "mutation($i: AddIncidentNoteInput!) { addIncidentNote(input: $i) { id body author { username } } }";
    let edit =
        "mutation($i: UpdateIncidentNoteInput!) { updateIncidentNote(input: $i) { id body } }";
    let delete =
        "mutation($i: DeleteIncidentNoteInput!) { deleteIncidentNote(input: $i) { id body } }";
    let n1 = app
        .gql_ok(
            Some(&author.token),
            add,
            json!({"i": {"incidentId": id, "body": "hit rate fell to 20%"}}),
        )
        .await["addIncidentNote"]
        .clone();
    assert_eq!(n1["author"]["username"], author.username.as_str());
    let n2 = app
        .gql_ok(
            Some(&assignee.token),
            add,
            json!({"i": {"incidentId": id, "body": "looking"}}),
        )
        .await["addIncidentNote"]
        .clone();
    for body in ["", "  ", "a\u{0}b"] {
        let v = app
            .gql(
                Some(&author.token),
                add,
                json!({"i": {"incidentId": id, "body": body}}),
            )
            .await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT");
        assert_eq!(v["errors"][0]["extensions"]["field"], "body");
    }
    let long = "n".repeat(10_001);
    let v = app
        .gql(
            Some(&author.token),
            add,
            json!({"i": {"incidentId": id, "body": long}}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");

    // Only the author edits; others are refused.
    let v = app
        .gql(
            Some(&assignee.token),
            edit,
            json!({"i": {"id": n1["id"], "body": "changed"}}),
        )
        .await;
    assert_eq!(error_code(&v), "FORBIDDEN");
    let v = app
        .gql_ok(
            Some(&author.token),
            edit,
            json!({"i": {"id": n1["id"], "body": "hit rate fell to 15%"}}),
        )
        .await;
    assert_eq!(v["updateIncidentNote"]["body"], "hit rate fell to 15%");
    // Users who cannot see the incident cannot see its notes either.
    let stranger = app.create_user("USER").await;
    let v = app
        .gql(
            Some(&stranger.token),
            delete,
            json!({"i": {"id": n1["id"]}}),
        )
        .await;
    assert_eq!(error_code(&v), "NOT_FOUND");
    let v = app
        .gql(Some(&author.token), delete, json!({"i": {"id": n2["id"]}}))
        .await;
    assert_eq!(error_code(&v), "FORBIDDEN");
    app.gql_ok(Some(&author.token), delete, json!({"i": {"id": n1["id"]}}))
        .await;
    // Moderators may remove any note.
    app.gql_ok(
        Some(&moderator.token),
        delete,
        json!({"i": {"id": n2["id"]}}),
    )
    .await;
    let v = app
        .gql(Some(&author.token), delete, json!({"i": {"id": n1["id"]}}))
        .await;
    assert_eq!(error_code(&v), "NOT_FOUND");

    let v = fetch(&app, &author.token, id, "notes { totalCount nodes { id } }").await;
    assert_eq!(v["data"]["incident"]["notes"]["totalCount"], 0);
    let notes: Vec<_> = audit(&app, id)
        .await
        .into_iter()
        .filter(|a| a.0 == "note")
        .collect();
    assert_eq!(notes.len(), 5, "{notes:?}");
    assert!(notes[0].1.is_null());
    assert_eq!(notes[0].2["body"], "hit rate fell to 20%");
    assert_eq!(notes[1].3, json!(assignee.username));
    assert_eq!(notes[2].1["body"], "hit rate fell to 20%");
    assert_eq!(notes[2].2["body"], "hit rate fell to 15%");
    assert_eq!(notes[3].1["body"], "hit rate fell to 15%");
    assert!(notes[3].2.is_null());
    assert_eq!(notes[4].3, json!(moderator.username));
}

#[tokio::test]
async fn lists_page_newest_first_with_cursors_and_reject_bad_arguments() {
    let app = TestApp::spawn().await;
    let token = app.login_as("USER").await;
    for i in 0..5 {
        let started = super::minutes_ago(10 * (5 - i));
        create(
            &app,
            &token,
            &format!("incident {i}"),
            json!({"startedAt": started.to_rfc3339()}),
        )
        .await;
    }
    let q = "query($after: String) { incidents(first: 2, after: $after) { nodes { title } pageInfo { hasNextPage endCursor } } }";
    let mut after = serde_json::Value::Null;
    let mut titles = Vec::new();
    loop {
        let v = app.gql_ok(Some(&token), q, json!({"after": after})).await;
        for n in v["incidents"]["nodes"].as_array().unwrap() {
            titles.push(n["title"].as_str().unwrap().to_owned());
        }
        if !v["incidents"]["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = v["incidents"]["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(
        titles,
        [
            "incident 4",
            "incident 3",
            "incident 2",
            "incident 1",
            "incident 0"
        ]
    );
    let v = app
        .gql_ok(
            Some(&token),
            "{ incidents(last: 2) { nodes { title } pageInfo { hasPreviousPage } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        v["incidents"]["nodes"],
        json!([{"title": "incident 1"}, {"title": "incident 0"}])
    );
    assert_eq!(v["incidents"]["pageInfo"]["hasPreviousPage"], true);
    for (args, field) in [
        ("first: -1", "first"),
        ("first: 501", "first"),
        ("after: \"forged\"", "after"),
        ("filter: {text: \"a\\u0000\"}", "filter.text"),
        (
            "filter: {from: \"2026-01-02T00:00:00Z\", to: \"2026-01-01T00:00:00Z\"}",
            "filter.to",
        ),
        ("filter: {createdBy: \"zz\"}", "filter.createdBy"),
    ] {
        let v = app
            .gql(
                Some(&token),
                &format!("{{ incidents({args}) {{ nodes {{ id }} }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{args}: {v}");
        assert_eq!(v["errors"][0]["extensions"]["field"], field, "{args}");
    }
    let v = app
        .gql(None, "{ incidents { nodes { id } } }", json!({}))
        .await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED");
}
