//! REST auth endpoints of the original design: login, logout, me.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::{Authed, Caller, JsonBody, ok};
use crate::auth::entity::user;
use crate::auth::service;
use crate::error::AppError;
use crate::http::Server;

/// Auth routes.
pub fn router() -> Router<Server> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/me", get(me))
}

#[derive(Deserialize)]
struct LoginBody {
    username: Option<String>,
    email: Option<String>,
    password: String,
}

/// The user as the original design shows it.
pub fn user_json(u: &user::Model) -> serde_json::Value {
    json!({
        "id": u.id,
        "username": u.username,
        "email": u.email,
        "role": u.role,
        "is_active": u.is_active,
        "created_at": u.created_at,
        "last_login_at": u.last_login_at,
    })
}

async fn login(
    State(server): State<Server>,
    Caller(ctx): Caller,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, AppError> {
    let login = match (body.username, body.email) {
        (Some(u), None) => u,
        (None, Some(e)) => e,
        (Some(_), Some(_)) => {
            return Err(AppError::bad_input(
                "username",
                "give either username or email, not both",
            ));
        }
        (None, None) => {
            return Err(AppError::bad_input(
                "username",
                "username or email is required",
            ));
        }
    };
    let result = service::login(&server.state, &ctx, &login, &body.password).await?;
    Ok(ok(json!({
        "session_token": result.token,
        "expires_at": result.session.expires_at,
        "user": user_json(&result.user),
    })))
}

async fn logout(
    State(server): State<Server>,
    Authed(identity, _): Authed,
) -> Result<Response, AppError> {
    service::logout(&server.state, &identity).await?;
    Ok(ok(json!({ "logged_out": true })))
}

async fn me(State(server): State<Server>, authed: Authed) -> Result<Response, AppError> {
    authed.require_any()?;
    let user = service::find_user(&server.state.db, authed.0.user_id).await?;
    Ok(ok(user_json(&user)))
}
