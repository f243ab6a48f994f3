//! Login, sessions, API keys, roles and account management.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{ADMIN_PASSWORD, TestApp, USER_PASSWORD, WsEvent, error_code, wait_until};

const ME: &str = "{ me { id username role mustChangePassword } }";

async fn me_code(app: &TestApp, token: &str) -> Option<String> {
    let v = app.gql(Some(token), ME, json!({})).await;
    v.get("errors").map(|_| error_code(&v))
}

#[tokio::test]
async fn the_admin_logs_in_and_sees_their_role() {
    let app = TestApp::spawn().await;
    let data = app.gql_ok(Some(&app.admin_token), ME, json!({})).await;
    assert_eq!(data["me"]["username"], "admin");
    assert_eq!(data["me"]["role"], "ADMIN");
}

#[tokio::test]
async fn logging_in_by_email_works_and_both_names_at_once_is_refused() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    let v = app
        .gql(
            None,
            "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { token user { username } } }",
            json!({"e": format!("{}@EXAMPLE.com", user.username), "p": USER_PASSWORD}),
        )
        .await;
    assert_eq!(
        v["data"]["login"]["user"]["username"],
        user.username.as_str()
    );
    let v = app
        .gql(
            None,
            "mutation { login(input: {username: \"a\", email: \"a@b.c\", password: \"xxxxxxxx\"}) { token } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
}

#[tokio::test]
async fn wrong_passwords_and_unknown_users_are_unauthenticated_alike() {
    let app = TestApp::spawn().await;
    let q = "mutation($u: String!) { login(input: {username: $u, password: \"wrong-password\"}) { token } }";
    let wrong = app.gql(None, q, json!({"u": "admin"})).await;
    let unknown = app.gql(None, q, json!({"u": "nobody"})).await;
    assert_eq!(error_code(&wrong), "UNAUTHENTICATED");
    assert_eq!(error_code(&unknown), "UNAUTHENTICATED");
    assert_eq!(
        wrong["errors"][0]["message"],
        unknown["errors"][0]["message"]
    );
}

#[tokio::test]
async fn logout_ends_only_the_current_session_and_logout_all_ends_every_one() {
    let app = TestApp::spawn().await;
    let t1 = app.login("admin", ADMIN_PASSWORD).await;
    let t2 = app.login("admin", ADMIN_PASSWORD).await;
    app.gql_ok(Some(&t1), "mutation { logout }", json!({}))
        .await;
    assert_eq!(me_code(&app, &t1).await.as_deref(), Some("UNAUTHENTICATED"));
    assert_eq!(me_code(&app, &t2).await, None);
    let data = app
        .gql_ok(Some(&t2), "mutation { logoutAll }", json!({}))
        .await;
    assert!(data["logoutAll"].as_u64().unwrap() >= 2);
    assert_eq!(me_code(&app, &t2).await.as_deref(), Some("UNAUTHENTICATED"));
    assert_eq!(
        me_code(&app, &app.admin_token).await.as_deref(),
        Some("UNAUTHENTICATED")
    );
}

#[tokio::test]
async fn sessions_expire_after_their_lifetime() {
    let app = TestApp::spawn_with(|c| c.session_ttl = Duration::from_secs(1)).await;
    let v = app
        .gql_ok(
            None,
            "mutation { login(input: {username: \"admin\", password: \"admin-password-for-tests\"}) { token expiresAt } }",
            json!({}),
        )
        .await;
    let token = v["login"]["token"].as_str().unwrap().to_owned();
    assert!(v["login"]["expiresAt"].as_str().is_some());
    assert_eq!(me_code(&app, &token).await, None);
    wait_until(Duration::from_secs(5), "the session to expire", || async {
        match me_code(&app, &token).await {
            Some(code) if code == "UNAUTHENTICATED" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn wrong_and_malformed_authorization_headers_are_unauthenticated_never_500() {
    let app = TestApp::spawn().await;
    let headers: Vec<&[u8]> = vec![
        b"Bearer",
        b"Bearer ",
        b"Basic YWRtaW46YWRtaW4=",
        b"Bearer sls_not-a-real-token",
        b"Bearer slk_ABCDEFGH_not-a-real-key",
        b"Bearer random-garbage",
        b"bearer\ttab",
        b"Bearer \xc3\xa9\xc3\xa9",
        b"Token abc",
    ];
    let long = format!("Bearer {}", "a".repeat(5000));
    let mut all: Vec<Vec<u8>> = headers.into_iter().map(|h| h.to_vec()).collect();
    all.push(long.into_bytes());
    for h in all {
        let resp = app
            .client
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .header(
                "authorization",
                reqwest::header::HeaderValue::from_bytes(&h).unwrap(),
            )
            .body(json!({"query": ME}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            200,
            "header {:?}",
            String::from_utf8_lossy(&h)
        );
        let v: Value = resp.json().await.unwrap();
        assert_eq!(
            error_code(&v),
            "UNAUTHENTICATED",
            "header {:?}",
            String::from_utf8_lossy(&h)
        );
        let rest = app
            .client
            .get(app.url("/api/v1/auth/me"))
            .header(
                "authorization",
                reqwest::header::HeaderValue::from_bytes(&h).unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(rest.status(), 401);
    }
    // No header at all says so, and is also UNAUTHENTICATED.
    let v = app.gql(None, ME, json!({})).await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED");
}

const CREATE_KEY: &str = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret apiKey { id name prefix role active } } }";

#[tokio::test]
async fn an_api_key_authenticates_until_revoked() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    let data = app
        .gql_ok(
            Some(&user.token),
            CREATE_KEY,
            json!({"i": {"name": "ingest"}}),
        )
        .await;
    let secret = data["createApiKey"]["secret"].as_str().unwrap().to_owned();
    let prefix = data["createApiKey"]["apiKey"]["prefix"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = data["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(secret.starts_with(&prefix));
    assert_eq!(data["createApiKey"]["apiKey"]["role"], "USER");

    let me = app.gql_ok(Some(&secret), ME, json!({})).await;
    assert_eq!(me["me"]["username"], user.username.as_str());
    let keys = app
        .gql_ok(
            Some(&user.token),
            "{ apiKeys { id prefix active } }",
            json!({}),
        )
        .await;
    assert_eq!(keys["apiKeys"][0]["prefix"], prefix.as_str());
    assert!(
        !keys.to_string().contains(&secret),
        "the secret is shown only once"
    );

    // A key cannot mint keys or manage the account.
    let v = app
        .gql(Some(&secret), CREATE_KEY, json!({"i": {"name": "child"}}))
        .await;
    assert_eq!(error_code(&v), "FORBIDDEN");

    app.gql_ok(
        Some(&user.token),
        "mutation($i: RevokeApiKeyInput!) { revokeApiKey(input: $i) { active revokedAt } }",
        json!({"i": {"id": id}}),
    )
    .await;
    assert_eq!(
        me_code(&app, &secret).await.as_deref(),
        Some("UNAUTHENTICATED")
    );
}

#[tokio::test]
async fn an_api_key_role_never_exceeds_its_creator() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    let v = app
        .gql(
            Some(&user.token),
            CREATE_KEY,
            json!({"i": {"name": "x", "role": "MODERATOR"}}),
        )
        .await;
    assert_eq!(error_code(&v), "FORBIDDEN");

    let moderator = app.create_user("MODERATOR").await;
    let data = app
        .gql_ok(
            Some(&moderator.token),
            CREATE_KEY,
            json!({"i": {"name": "mod-key"}}),
        )
        .await;
    let key = data["createApiKey"]["secret"].as_str().unwrap().to_owned();
    let q = "query($id: ID!) { user(id: $id) { username } }";
    app.gql_ok(Some(&key), q, json!({"id": user.id})).await;
    // Demote the creator: the key's effective role drops with them at once.
    app.gql_ok(
        Some(&app.admin_token),
        "mutation($i: SetUserRoleInput!) { setUserRole(input: $i) { role } }",
        json!({"i": {"userId": moderator.id, "role": "USER"}}),
    )
    .await;
    let v = app.gql(Some(&key), q, json!({"id": user.id})).await;
    assert_eq!(error_code(&v), "FORBIDDEN");
}

#[tokio::test]
async fn api_keys_with_past_expiry_or_bad_names_are_rejected() {
    let app = TestApp::spawn().await;
    let v = app
        .gql(
            Some(&app.admin_token),
            CREATE_KEY,
            json!({"i": {"name": "x", "expiresAt": "2001-01-01T00:00:00Z"}}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
    assert_eq!(v["errors"][0]["extensions"]["field"], "expiresAt");
    let v = app
        .gql(
            Some(&app.admin_token),
            CREATE_KEY,
            json!({"i": {"name": "  "}}),
        )
        .await;
    assert_eq!(error_code(&v), "BAD_USER_INPUT");
}

/// Every auth field × every caller: `None` means it succeeds.
#[tokio::test]
async fn every_guarded_auth_field_enforces_its_role() {
    let app = TestApp::spawn().await;
    let target = app.create_user("USER").await;
    let callers = ["ANON", "USER", "MODERATOR", "ADMIN"];
    let mut tokens = std::collections::HashMap::new();
    tokens.insert("USER", app.create_user("USER").await.token);
    tokens.insert("MODERATOR", app.create_user("MODERATOR").await.token);
    tokens.insert("ADMIN", app.login("admin", ADMIN_PASSWORD).await);

    let u = "UNAUTHENTICATED";
    let f = "FORBIDDEN";
    // (operation, expected outcome for ANON, USER, MODERATOR, ADMIN)
    let table: Vec<(&str, [Option<&str>; 4])> = vec![
        ("{ me { id } }", [Some(u), None, None, None]),
        (
            "{ users(first: 5) { totalCount nodes { id } } }",
            [Some(u), Some(f), Some(f), None],
        ),
        (
            "query($t: ID!) { user(id: $t) { id } }",
            [Some(u), Some(f), None, None],
        ),
        ("{ apiKeys { id } }", [Some(u), None, None, None]),
        (
            "mutation { createApiKey(input: {name: \"k\"}) { secret } }",
            [Some(u), None, None, None],
        ),
        (
            "mutation($t: ID!) { forcePasswordReset(input: {userId: $t}) { id } }",
            [Some(u), Some(f), None, None],
        ),
        (
            "mutation { createUser(input: {username: \"newbie\", email: \"n@example.com\", password: \"longenough\"}) { id } }",
            [Some(u), Some(f), Some(f), None],
        ),
        (
            "mutation($t: ID!) { setUserRole(input: {userId: $t, role: USER}) { id } }",
            [Some(u), Some(f), Some(f), None],
        ),
        (
            "mutation($t: ID!) { reactivateUser(input: {userId: $t}) { id } }",
            [Some(u), Some(f), Some(f), None],
        ),
        (
            "mutation($t: ID!) { deactivateUser(input: {userId: $t}) { id } }",
            [Some(u), Some(f), Some(f), None],
        ),
        (
            "mutation { changePassword(input: {currentPassword: \"wrong-one\", newPassword: \"another-one\"}) { id } }",
            [
                Some(u),
                Some("BAD_USER_INPUT"),
                Some("BAD_USER_INPUT"),
                Some("BAD_USER_INPUT"),
            ],
        ),
        (
            "mutation { revokeApiKey(input: {id: \"00000000-0000-0000-0000-000000000000\"}) { id } }",
            [
                Some(u),
                Some("NOT_FOUND"),
                Some("NOT_FOUND"),
                Some("NOT_FOUND"),
            ],
        ),
    ];
    for (query, expected) in &table {
        for (i, caller) in callers.iter().enumerate() {
            let token = tokens.get(caller).map(String::as_str);
            let v = app.gql(token, query, json!({"t": target.id})).await;
            let got = v.get("errors").map(|_| error_code(&v));
            assert_eq!(got.as_deref(), expected[i], "{caller} on {query}: {v}");
        }
    }
    // Logout last (it ends the sessions used above).
    for caller in callers {
        let token = tokens.get(caller).map(String::as_str);
        let v = app.gql(token, "mutation { logout }", json!({})).await;
        let got = v.get("errors").map(|_| error_code(&v));
        assert_eq!(
            got.as_deref(),
            if caller == "ANON" { Some(u) } else { None },
            "{caller} logout"
        );
    }
}

#[tokio::test]
async fn a_forced_password_reset_revokes_sessions_and_requires_a_new_password() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    let moderator = app.create_user("MODERATOR").await;
    app.gql_ok(
        Some(&moderator.token),
        "mutation($i: ForcePasswordResetInput!) { forcePasswordReset(input: $i) { id username } }",
        json!({"i": {"userId": user.id}}),
    )
    .await;
    assert_eq!(
        me_code(&app, &user.token).await.as_deref(),
        Some("UNAUTHENTICATED")
    );

    let token = app.login(&user.username, USER_PASSWORD).await;
    let me = app.gql_ok(Some(&token), ME, json!({})).await;
    assert_eq!(me["me"]["mustChangePassword"], true);
    let v = app
        .gql(Some(&token), CREATE_KEY, json!({"i": {"name": "k"}}))
        .await;
    assert_eq!(error_code(&v), "FORBIDDEN");
    app.gql_ok(
        Some(&token),
        "mutation($i: ChangePasswordInput!) { changePassword(input: $i) { mustChangePassword } }",
        json!({"i": {"currentPassword": USER_PASSWORD, "newPassword": "a-brand-new-password"}}),
    )
    .await;
    app.gql_ok(Some(&token), CREATE_KEY, json!({"i": {"name": "k"}}))
        .await;
    let fresh = app.login(&user.username, "a-brand-new-password").await;
    assert_eq!(me_code(&app, &fresh).await, None);

    // A moderator may not do this to an admin.
    let admins = app
        .gql_ok(Some(&app.admin_token), "{ me { id } }", json!({}))
        .await;
    let v = app
        .gql(
            Some(&moderator.token),
            "mutation($i: ForcePasswordResetInput!) { forcePasswordReset(input: $i) { id } }",
            json!({"i": {"userId": admins["me"]["id"]}}),
        )
        .await;
    assert_eq!(error_code(&v), "FORBIDDEN");
}

#[tokio::test]
async fn deactivation_cuts_off_sessions_keys_and_live_connections_at_once() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    let key = app
        .gql_ok(Some(&user.token), CREATE_KEY, json!({"i": {"name": "k"}}))
        .await["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ws = app.ws(Some(&user.token)).await;
    app.gql_ok(
        Some(&app.admin_token),
        "mutation($i: DeactivateUserInput!) { deactivateUser(input: $i) { isActive } }",
        json!({"i": {"userId": user.id}}),
    )
    .await;
    assert_eq!(ws.closed_code().await, Some(4403));
    assert_eq!(
        me_code(&app, &user.token).await.as_deref(),
        Some("UNAUTHENTICATED")
    );
    assert_eq!(
        me_code(&app, &key).await.as_deref(),
        Some("UNAUTHENTICATED")
    );
    let v = app
        .gql(
            None,
            "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token } }",
            json!({"u": user.username, "p": USER_PASSWORD}),
        )
        .await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED");

    app.gql_ok(
        Some(&app.admin_token),
        "mutation($i: ReactivateUserInput!) { reactivateUser(input: $i) { isActive } }",
        json!({"i": {"userId": user.id}}),
    )
    .await;
    app.login(&user.username, USER_PASSWORD).await;
    assert_eq!(
        me_code(&app, &key).await,
        None,
        "the key works again once reactivated"
    );
}

#[tokio::test]
async fn repeated_failed_logins_are_refused_for_a_while() {
    let app = TestApp::spawn_with(|c| c.login_max_failures = 3).await;
    let q = "mutation($p: String!) { login(input: {username: \"admin\", password: $p}) { token } }";
    for _ in 0..3 {
        let v = app.gql(None, q, json!({"p": "wrong-password"})).await;
        assert_eq!(error_code(&v), "UNAUTHENTICATED");
    }
    let v = app.gql(None, q, json!({"p": ADMIN_PASSWORD})).await;
    assert_eq!(
        error_code(&v),
        "RATE_LIMITED",
        "even the right password is refused while locked"
    );
    assert!(v["errors"][0]["extensions"]["retryAfter"].as_u64().unwrap() > 0);
    let rest = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 429);
    assert!(rest.headers().get("retry-after").is_some());
    // Other accounts from another address are not affected; this test runs
    // from one address, so check the account key alone via a fresh server.
}

#[tokio::test]
async fn the_last_active_admin_cannot_be_demoted_or_deactivated() {
    let app = TestApp::spawn().await;
    let me = app
        .gql_ok(Some(&app.admin_token), "{ me { id } }", json!({}))
        .await;
    let id = me["me"]["id"].as_str().unwrap();
    let v = app
        .gql(
            Some(&app.admin_token),
            "mutation($i: SetUserRoleInput!) { setUserRole(input: $i) { id } }",
            json!({"i": {"userId": id, "role": "USER"}}),
        )
        .await;
    assert_eq!(error_code(&v), "CONFLICT");
    let v = app
        .gql(
            Some(&app.admin_token),
            "mutation($i: DeactivateUserInput!) { deactivateUser(input: $i) { id } }",
            json!({"i": {"userId": id}}),
        )
        .await;
    assert_eq!(error_code(&v), "CONFLICT");
}

#[tokio::test]
async fn creating_users_validates_every_field_and_refuses_duplicates() {
    let app = TestApp::spawn().await;
    let q = "mutation($i: CreateUserInput!) { createUser(input: $i) { id username role } }";
    let cases = [
        (
            json!({"username": "ab", "email": "a@example.com", "password": "longenough"}),
            "username",
        ),
        (
            json!({"username": "alice", "email": "not-an-email", "password": "longenough"}),
            "email",
        ),
        (
            json!({"username": "alice", "email": "a@example.com", "password": "short"}),
            "password",
        ),
        (
            json!({"username": "al ice", "email": "a@example.com", "password": "longenough"}),
            "username",
        ),
    ];
    for (input, field) in cases {
        let v = app
            .gql(Some(&app.admin_token), q, json!({"i": input}))
            .await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{input}");
        assert_eq!(v["errors"][0]["extensions"]["field"], field, "{input}");
    }
    let ok = json!({"username": "Alice", "email": "alice@example.com", "password": "longenough", "role": "MODERATOR"});
    let data = app
        .gql_ok(Some(&app.admin_token), q, json!({"i": ok}))
        .await;
    assert_eq!(data["createUser"]["username"], "alice");
    assert_eq!(data["createUser"]["role"], "MODERATOR");
    let dup = json!({"username": "ALICE", "email": "other@example.com", "password": "longenough"});
    let v = app.gql(Some(&app.admin_token), q, json!({"i": dup})).await;
    assert_eq!(error_code(&v), "CONFLICT");
    assert_eq!(v["errors"][0]["extensions"]["field"], "username");
    let dup = json!({"username": "bob", "email": "Alice@Example.com", "password": "longenough"});
    let v = app.gql(Some(&app.admin_token), q, json!({"i": dup})).await;
    assert_eq!(error_code(&v), "CONFLICT");
    assert_eq!(v["errors"][0]["extensions"]["field"], "email");
}

#[tokio::test]
async fn the_users_list_pages_with_cursors_and_counts_on_demand() {
    let app = TestApp::spawn().await;
    for _ in 0..4 {
        app.create_user("USER").await;
    }
    let q = "query($a: String) { users(first: 2, after: $a) { totalCount pageInfo { hasNextPage endCursor } nodes { username } } }";
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let d = app
            .gql_ok(Some(&app.admin_token), q, json!({"a": after}))
            .await;
        assert_eq!(d["users"]["totalCount"], 5);
        for n in d["users"]["nodes"].as_array().unwrap() {
            seen.push(n["username"].as_str().unwrap().to_owned());
        }
        if !d["users"]["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = d["users"]["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0], "admin");
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 5);
    for bad in [
        json!({"first": -1}),
        json!({"first": 5000}),
        json!({"after": "forged"}),
    ] {
        let v = app
            .gql(
                Some(&app.admin_token),
                "query($first: Int, $after: String) { users(first: $first, after: $after) { nodes { id } } }",
                bad.clone(),
            )
            .await;
        assert_eq!(error_code(&v), "BAD_USER_INPUT", "{bad}");
    }
}

#[tokio::test]
async fn users_see_their_own_email_but_not_private_fields_of_others() {
    let app = TestApp::spawn().await;
    let user = app.create_user("USER").await;
    let me = app
        .gql_ok(
            Some(&user.token),
            "{ me { email isActive lastLoginAt } }",
            json!({}),
        )
        .await;
    assert!(
        me["me"]["email"]
            .as_str()
            .unwrap()
            .ends_with("@example.com")
    );
    let moderator = app.create_user("MODERATOR").await;
    let v = app
        .gql(
            Some(&moderator.token),
            "query($id: ID!) { user(id: $id) { email isActive } }",
            json!({"id": user.id}),
        )
        .await;
    assert!(
        v["data"]["user"]["email"].is_string(),
        "moderators see emails: {v}"
    );
    assert_eq!(
        error_code(&v),
        "FORBIDDEN",
        "isActive is for the user and admins: {v}"
    );
}

#[tokio::test]
async fn the_rest_auth_endpoints_keep_the_original_shapes() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], true);
    let token = v["data"]["session_token"].as_str().unwrap().to_owned();
    assert!(v["data"]["expires_at"].is_string());
    assert_eq!(v["data"]["user"]["role"], "admin");
    assert_eq!(v["data"]["user"]["username"], "admin");

    let me: Value = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["data"]["email"], "admin@localhost.localdomain");

    let bad = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": "nope-nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let v: Value = bad.json().await.unwrap();
    assert_eq!(v["success"], false);
    assert_eq!(v["error"]["code"], "UNAUTHENTICATED");

    let malformed = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let wrong_type = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);

    let out = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    let me = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
}

#[tokio::test]
async fn a_websocket_without_credentials_cannot_use_guarded_fields() {
    let app = TestApp::spawn().await;
    let mut ws = app.ws(None).await;
    ws.send(json!({"id": "a", "type": "subscribe", "payload": {"query": "{ me { id } }"}}))
        .await;
    let msg = ws.recv_json().await.unwrap();
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(msg["payload"][0]["extensions"]["code"], "UNAUTHENTICATED");
    // With a token in connection_init the same operation works.
    let mut ws = app.ws(Some(&app.admin_token)).await;
    ws.send(json!({"id": "a", "type": "subscribe", "payload": {"query": "{ me { username } }"}}))
        .await;
    let payload = ws.next_payload().await;
    assert_eq!(payload["data"]["me"]["username"], "admin");
    assert_eq!(ws.recv_json().await.unwrap()["type"], "complete");
    // An invalid token is refused at connection_init.
    let mut raw = app.ws_raw("graphql-transport-ws").await;
    raw.send(json!({"type": "connection_init", "payload": {"token": "sls_bogus"}}))
        .await;
    match raw.recv().await {
        Some(WsEvent::Closed(code, _)) => assert_eq!(code, Some(4403)),
        other => panic!("expected close 4403, got {other:?}"),
    }
}
