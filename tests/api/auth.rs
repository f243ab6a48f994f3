//! Login, sessions, API keys, roles and account management.

use serde_json::json;

use crate::common::{ADMIN_PASSWORD, TestApp, error_code};

const ME: &str = "{ me { id username role } }";

#[tokio::test]
async fn the_admin_logs_in_and_sees_their_role() {
    let app = TestApp::spawn().await;
    let data = app.gql_ok(Some(&app.admin_token), ME, json!({})).await;
    assert_eq!(data["me"]["username"], "admin");
    assert_eq!(data["me"]["role"], "ADMIN");
}

#[tokio::test]
async fn a_wrong_password_is_unauthenticated() {
    let app = TestApp::spawn().await;
    let v = app
        .gql(None, "mutation { login(input: {username: \"admin\", password: \"wrong-password\"}) { token } }", json!({}))
        .await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED");
    let v = app
        .gql(None, "mutation { login(input: {username: \"nobody\", password: \"wrong-password\"}) { token } }", json!({}))
        .await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED");
}

#[tokio::test]
async fn logout_ends_the_session() {
    let app = TestApp::spawn().await;
    let token = app.login("admin", ADMIN_PASSWORD).await;
    app.gql_ok(Some(&token), "mutation { logout }", json!({}))
        .await;
    let v = app.gql(Some(&token), ME, json!({})).await;
    assert_eq!(error_code(&v), "UNAUTHENTICATED");
    // The other session is untouched.
    app.gql_ok(Some(&app.admin_token), ME, json!({})).await;
}
