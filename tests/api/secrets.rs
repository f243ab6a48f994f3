//! Passwords, session tokens and API keys appear exactly once — in the answer
//! that hands them out — and never in the log, in error messages, in later
//! responses or in the database (which keeps only hashes).

use serde_json::{Value, json};

use crate::common::{TestApp, backend_is_postgres};
use crate::server_process::{PROCESS_ADMIN_PASSWORD, ServerProcess};

const USER_PASSWORD: &str = "Secret-Passw0rd-Xyzzy-4821";
const NEW_PASSWORD: &str = "Another-Secret-Plugh-7733";
const WRONG_PASSWORD: &str = "Wrong-Password-Frobozz-1234";

/// Every secret a scenario handed out or sent.
struct Secrets(Vec<String>);

impl Secrets {
    fn assert_absent(&self, what: &str, text: &str) {
        for s in &self.0 {
            assert!(
                !text.contains(s.as_str()),
                "a secret ({}…) appears in {what}",
                &s[..6]
            );
            // Tokens are long: even a large piece of one must not leak.
            if s.len() >= 32 {
                let middle = &s[s.len() / 4..s.len() / 4 + 16];
                assert!(!text.contains(middle), "part of a secret appears in {what}");
            }
        }
    }
}

/// Logs in through GraphQL and REST, fails logins, changes a password, makes
/// and uses an API key and a session, and returns everything the server
/// answered along with the secrets involved.
async fn scenario(
    gql: impl AsyncFn(Option<&str>, &str, Value) -> Value,
    rest: impl AsyncFn(&str, &str, Option<&str>, Option<Value>) -> (u16, String),
    admin_password: &str,
) -> (Secrets, String) {
    let mut answers = String::new();
    let mut secrets = vec![
        admin_password.to_owned(),
        USER_PASSWORD.to_owned(),
        NEW_PASSWORD.to_owned(),
        WRONG_PASSWORD.to_owned(),
    ];
    let login = "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token user { id username } } }";
    let log_in = async |u: &str, p: &str| -> String {
        let v = gql(None, login, json!({"u": u, "p": p})).await;
        v["data"]["login"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("a token for {u}: {v}"))
            .to_owned()
    };
    let admin = log_in("admin", admin_password).await;
    secrets.push(admin.clone());

    let v = gql(
        Some(&admin),
        "mutation($i: CreateUserInput!) { createUser(input: $i) { id username email role } }",
        json!({"i": {"username": "secretive", "email": "secretive@example.com", "password": USER_PASSWORD, "role": "USER"}}),
    )
    .await;
    answers.push_str(&v.to_string());
    // A duplicate and a too-short password: errors must not echo them.
    let v = gql(
        Some(&admin),
        "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
        json!({"i": {"username": "secretive", "email": "s2@example.com", "password": USER_PASSWORD}}),
    )
    .await;
    assert!(v["errors"].is_array(), "{v}");
    answers.push_str(&v.to_string());
    let v = gql(
        Some(&admin),
        "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
        json!({"i": {"username": "shorty", "email": "shorty@example.com", "password": "Xyzzy1"}}),
    )
    .await;
    assert!(v["errors"].is_array(), "{v}");
    answers.push_str(&v.to_string());

    // Failed logins, over both APIs.
    for u in ["secretive", "nobody"] {
        let v = gql(None, login, json!({"u": u, "p": WRONG_PASSWORD})).await;
        assert!(v["errors"].is_array(), "{v}");
        answers.push_str(&v.to_string());
        let (status, body) = rest(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": u, "password": WRONG_PASSWORD})),
        )
        .await;
        assert_eq!(status, 401, "{body}");
        answers.push_str(&body);
    }

    let user = log_in("secretive", USER_PASSWORD).await;
    secrets.push(user.clone());
    let (status, body) = rest(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "secretive", "password": USER_PASSWORD})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let rest_token = serde_json::from_str::<Value>(&body).unwrap()["data"]["session_token"]
        .as_str()
        .expect("REST token")
        .to_owned();
    secrets.push(rest_token.clone());

    // A wrong current password, then a real change.
    let change = "mutation($c: String!, $n: String!) { changePassword(input: {currentPassword: $c, newPassword: $n}) { id } }";
    let v = gql(
        Some(&user),
        change,
        json!({"c": WRONG_PASSWORD, "n": NEW_PASSWORD}),
    )
    .await;
    assert!(v["errors"].is_array(), "{v}");
    answers.push_str(&v.to_string());
    let v = gql(
        Some(&user),
        change,
        json!({"c": USER_PASSWORD, "n": NEW_PASSWORD}),
    )
    .await;
    assert!(v["errors"].is_null(), "{v}");
    answers.push_str(&v.to_string());
    let user = log_in("secretive", NEW_PASSWORD).await;
    secrets.push(user.clone());

    // An API key: shown once, used, listed (without the secret), revoked.
    let v = gql(
        Some(&user),
        "mutation { createApiKey(input: {name: \"ingest\"}) { secret apiKey { id prefix } } }",
        json!({}),
    )
    .await;
    let key = v["data"]["createApiKey"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let key_id = v["data"]["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    secrets.push(key.clone());
    let v = gql(
        Some(&key),
        "mutation { createEvent(input: {eventType: LOG, source: \"secrets\"}) { id createdBy { username } } }",
        json!({}),
    )
    .await;
    assert!(v["errors"].is_null(), "{v}");
    answers.push_str(&v.to_string());
    let (status, body) = rest(
        "POST",
        "/api/v1/monitoring/events",
        Some(&key),
        Some(json!({"event_type": "log", "source": "secrets-rest"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    answers.push_str(&body);
    for q in [
        "{ apiKeys { id name prefix role active lastUsedAt } }",
        "{ me { id username email role } }",
        "{ events(first: 10) { nodes { id source payload tags createdBy { username } } } }",
    ] {
        let v = gql(Some(&user), q, json!({})).await;
        assert!(v["errors"].is_null(), "{v}");
        answers.push_str(&v.to_string());
    }
    let v = gql(
        Some(&admin),
        "{ users(first: 50) { nodes { id username email role } } }",
        json!({}),
    )
    .await;
    answers.push_str(&v.to_string());
    let (_, body) = rest("GET", "/api/v1/auth/me", Some(&rest_token), None).await;
    answers.push_str(&body);
    let v = gql(
        Some(&user),
        "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { id active } }",
        json!({"id": key_id}),
    )
    .await;
    answers.push_str(&v.to_string());
    // Using a revoked key, an unknown token and a malformed header: the
    // errors do not repeat what was sent.
    for bad in [
        key.as_str(),
        "slk_forged_token_value_that_is_long_enough",
        admin.as_str(),
    ] {
        let v = gql(Some(bad), "{ me { id } }", json!({})).await;
        answers.push_str(&v.to_string());
    }
    let (_, body) = rest("GET", "/api/v1/auth/me", Some(&key), None).await;
    answers.push_str(&body);
    let v = gql(Some(&user), "mutation { logoutAll }", json!({})).await;
    answers.push_str(&v.to_string());
    (Secrets(secrets), answers)
}

/// The answers that hand a secret out are not in `answers`; check them.
fn assert_answers_clean(secrets: &Secrets, answers: &str) {
    secrets.assert_absent("a response", answers);
}

#[tokio::test]
async fn secrets_never_reach_the_log_later_responses_or_the_database() {
    let db = crate::common::TestDb::create().await;
    let mut server = ServerProcess::start(&db.url, &[("SIGHTLINE_LOG", "debug")]).await;
    let gql = async |token: Option<&str>, q: &str, vars: Value| server.gql(token, q, vars).await;
    let rest = async |method: &str, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut req = server
            .client
            .request(method.parse().unwrap(), server.url(path));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    let (secrets, answers) = scenario(gql, rest, PROCESS_ADMIN_PASSWORD).await;
    assert_answers_clean(&secrets, &answers);
    server.stop();
    let log = server.log();
    assert!(
        log.contains("INFO") || log.contains("DEBUG"),
        "no log captured:\n{log}"
    );
    secrets.assert_absent("the server log", &log);

    // The database keeps hashes only.
    let dump = dump_database(&db.url).await;
    assert!(!dump.is_empty());
    secrets.assert_absent("the database", &dump);
    assert!(
        dump.contains("secretive@example.com"),
        "the dump is readable"
    );
    assert!(dump.contains("$argon2"), "password hashes are argon2");
}

/// Every row of every table as text (PostgreSQL), or the SQLite files' bytes.
async fn dump_database(url: &str) -> String {
    if backend_is_postgres() {
        use sqlx::{Connection, Row};
        let mut conn = sqlx::postgres::PgConnection::connect(url).await.unwrap();
        let tables: Vec<String> = sqlx::query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
        let mut out = String::new();
        for t in tables {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT row_to_json(t)::text FROM \"{t}\" t"
            )))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            for r in rows {
                out.push_str(&r.get::<String, _>(0));
                out.push('\n');
            }
        }
        out
    } else {
        let path = url
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap()
            .to_owned();
        let mut out = String::new();
        for suffix in ["", "-wal", "-journal"] {
            if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
        out
    }
}

#[tokio::test]
async fn the_in_process_server_gives_the_same_guarantees_for_responses() {
    let app = TestApp::spawn().await;
    let gql = async |token: Option<&str>, q: &str, vars: Value| app.gql(token, q, vars).await;
    let rest = async |method: &str, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut req = app.client.request(method.parse().unwrap(), app.url(path));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    let (secrets, answers) = scenario(gql, rest, crate::common::ADMIN_PASSWORD).await;
    assert_answers_clean(&secrets, &answers);
}
