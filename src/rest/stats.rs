//! REST endpoints of the original design for statistics
//! (`GET /api/v1/monitoring/stats`) and the Prometheus exposition, plus the
//! conventional `GET /metrics` scrape endpoint.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Authed, Caller, ok};
use crate::auth::Role;
use crate::config::MetricsAuth;
use crate::error::AppError;
use crate::http::Server;
use crate::metrics::exposition::CONTENT_TYPE;

/// Statistics and exposition routes.
pub fn router() -> Router<Server> {
    Router::new()
        .route("/api/v1/monitoring/stats", get(monitoring_stats))
        .route(
            "/api/v1/monitoring/metrics/prometheus",
            get(prometheus_authenticated),
        )
        .route("/metrics", get(metrics_endpoint))
}

/// `GET /api/v1/monitoring/stats`: the six figures (moderator and above, as
/// in the original design; a user gets 403 `FORBIDDEN`), read through
/// [`crate::stats::service::monitoring_stats`] (no table scan).
async fn monitoring_stats(State(server): State<Server>, caller: Authed) -> Response {
    if let Err(e) = caller.require(Role::Moderator) {
        return e.into_response();
    }
    match crate::stats::service::monitoring_stats(&server.state.db).await {
        Ok(stats) => ok(stats),
        Err(e) => e.into_response(),
    }
}

async fn exposition(server: &Server) -> Response {
    match crate::stats::prometheus::render(&server.state).await {
        Ok(text) => {
            let mut response = text.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/monitoring/metrics/prometheus`: any authenticated caller.
async fn prometheus_authenticated(State(server): State<Server>, caller: Authed) -> Response {
    if let Err(e) = caller.require(Role::User) {
        return e.into_response();
    }
    exposition(&server).await
}

/// `GET /metrics`: public or bearer-protected, as `SIGHTLINE_METRICS_AUTH` says.
async fn metrics_endpoint(State(server): State<Server>, Caller(ctx): Caller) -> Response {
    if server.state.config.metrics_auth == MetricsAuth::Bearer {
        let checked: Result<(), AppError> = ctx.auth.identity().and_then(|identity| {
            crate::auth::guard::RoleGuard::new(Role::User).check_identity(identity)
        });
        if let Err(e) = checked {
            let mut response = e.into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sightline\""),
            );
            return response;
        }
    }
    exposition(&server).await
}
