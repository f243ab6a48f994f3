//! The REST compatibility layer: the original design's `/api/v1/...` paths,
//! snake_case JSON bodies and the `{"success": …}` envelope, as a thin layer
//! over the same services the GraphQL API uses.

pub mod alerts;
pub mod auth;
pub mod events;
pub mod incidents;
pub mod metrics;
pub mod stats;

use axum::Router;
use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::extract::{FromRequestParts, Request};
use axum::http::header::{self, HeaderValue};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::auth::guard::RoleGuard;
use crate::auth::{Identity, RequestContext, Role};
use crate::error::{AppError, ErrorCode};
use crate::http::Server;

/// All REST routes.
pub fn router() -> Router<Server> {
    Router::new()
        .merge(auth::router())
        .merge(incidents::router())
        .merge(stats::router())
        .merge(events::router())
        .merge(metrics::router())
        .merge(alerts::router())
}

/// A successful response: `{"success": true, "data": …}`.
pub fn ok<T: Serialize>(data: T) -> Response {
    envelope(
        axum::http::StatusCode::OK,
        json!({ "success": true, "data": data }),
    )
}

/// A successful creation: 201 with the envelope.
pub fn created<T: Serialize>(data: T) -> Response {
    envelope(
        axum::http::StatusCode::CREATED,
        json!({ "success": true, "data": data }),
    )
}

fn envelope(status: axum::http::StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// REST errors: `{"success": false, "error": {"code", "message", "field"?}}`
/// with the code's HTTP status.
impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.code.http_status();
        error_with_status(status, self)
    }
}

/// A REST error response with a status other than the code's own (413, 415).
pub fn error_with_status(status: axum::http::StatusCode, err: AppError) -> Response {
    {
        let this = err;
        this.log();
        let mut error = json!({ "code": this.code.as_str(), "message": this.message });
        if let Some(field) = &this.field {
            error["field"] = Value::String(field.clone());
        }
        let mut response = envelope(status, json!({ "success": false, "error": error }));
        if let Some(secs) = this.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

/// The request context of a REST call (the caller may be anonymous).
pub struct Caller(pub RequestContext);

impl FromRequestParts<Server> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, server: &Server) -> Result<Self, AppError> {
        let ctx = crate::http::request_context(
            &server.state,
            &parts.headers,
            crate::http::peer_addr(parts),
        )
        .await?;
        Ok(Caller(ctx))
    }
}

/// An authenticated REST caller (any role); 401 otherwise.
pub struct Authed(pub Identity, pub RequestContext);

impl FromRequestParts<Server> for Authed {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, server: &Server) -> Result<Self, AppError> {
        let Caller(ctx) = Caller::from_request_parts(parts, server).await?;
        let identity = ctx.auth.identity()?.clone();
        Ok(Authed(identity, ctx))
    }
}

impl Authed {
    /// Any role, allowing callers who must change their password (like `me`).
    pub fn require_any(&self) -> Result<(), AppError> {
        RoleGuard::allowing_password_change(Role::User).check_identity(&self.0)
    }

    /// Checks the caller's role like a GraphQL guard would.
    pub fn require(&self, role: Role) -> Result<(), AppError> {
        RoleGuard::new(role).check_identity(&self.0)
    }
}

/// A JSON request body: 415 without `Content-Type: application/json`, 413
/// over the body limit, 400 with the parser's message when malformed.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Server> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, server: &Server) -> Result<Self, Response> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(error_with_status(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                AppError::new(
                    ErrorCode::BadUserInput,
                    "send the body as Content-Type: application/json",
                ),
            ));
        }
        let limit = server.state.config.body_limit;
        let bytes: Bytes = crate::http::read_body(req.into_body(), limit)
            .await
            .map_err(|_| {
                error_with_status(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    AppError::new(
                        ErrorCode::BadUserInput,
                        format!("the request body exceeds the limit of {limit} bytes"),
                    ),
                )
            })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            AppError::new(ErrorCode::BadUserInput, format!("invalid JSON body: {e}"))
                .into_response()
        })
    }
}
