//! The HTTP surface: `/graphql` (POST, GET and WebSocket), health checks, the
//! playground and the REST compatibility layer, with body limits, timeouts and
//! security headers.
//!
//! The GraphQL handler follows the GraphQL-over-HTTP specification: it
//! answers in the media type the client accepts (`application/json` or
//! `application/graphql-response+json`), refuses mutations over GET with 405,
//! and with `application/graphql-response+json` reports request errors
//! (unparseable, invalid) with 400.

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::auth::{Auth, RequestContext, service as auth_service};
use crate::error::{AppError, ErrorCode};
use crate::graphql::{AppSchema, normalize_errors, prepare_request};
use crate::state::AppState;

/// What every handler gets: the app state and the schema.
#[derive(Clone)]
pub struct Server {
    /// Shared state.
    pub state: AppState,
    /// The GraphQL schema.
    pub schema: AppSchema,
}

/// Builds the router.
pub fn router(server: Server) -> Router {
    let timeout = server.state.config.request_timeout;
    let api = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(crate::rest::router())
        .merge(crate::playground::router())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ));
    let cors = cors_layer(&server.state.config.cors_origins);
    api.fallback(unknown_route)
        .layer(axum::middleware::from_fn(json_errors))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(cors)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        // Outermost, so it sees every status the layers above produce;
        // `Router::layer` runs it after routing, so the route template is known.
        .layer(axum::middleware::from_fn_with_state(
            server.state.http_metrics.clone(),
            crate::stats::telemetry::track,
        ))
        .with_state(server)
}

/// CORS: none by default (same-origin pages only); the listed origins, or any
/// with `*`. Credentials are bearer tokens, never cookies, so no
/// `Allow-Credentials`.
fn cors_layer(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return CorsLayer::new();
    }
    let base = CorsLayer::new()
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::PUT,
            axum::http::Method::DELETE,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .max_age(std::time::Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        base.allow_origin(AllowOrigin::any())
    } else {
        base.allow_origin(AllowOrigin::list(origins))
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    graphql_error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        MediaType::Json,
        ErrorCode::Internal,
        "internal server error",
    )
}

/// Unknown paths: the JSON error envelope with 404 (wrong methods on known
/// paths get 405 from the router, turned into JSON by [`json_errors`]).
async fn unknown_route() -> Response {
    AppError::new(ErrorCode::NotFound, "no such route").into_response()
}

/// Makes every error answer JSON with a stable code: responses the framework
/// produces itself (405 for a wrong method, rejected path or query
/// extractors, the 503 of the request timeout) come as plain text or empty;
/// they get the REST envelope, or GraphQL's `errors` shape under `/graphql`.
/// Headers such as `Allow` and `Retry-After` stay.
async fn json_errors(request: Request, next: axum::middleware::Next) -> Response {
    let graphql = request.uri().path().starts_with("/graphql");
    let response = next.run(request).await;
    let status = response.status();
    if status.as_u16() < 400 {
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.contains("json") || content_type.starts_with("text/html") {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Framework rejections explain themselves in a short plain-text body.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .filter(|t| !t.is_empty());
    let code = match status {
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthenticated,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::CONFLICT => ErrorCode::Conflict,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        StatusCode::REQUEST_TIMEOUT
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => ErrorCode::Unavailable,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadUserInput,
    };
    let message = match (code, status) {
        (ErrorCode::Unavailable, _) => {
            "the request took too long or the service is busy, retry shortly".to_owned()
        }
        (ErrorCode::Internal, _) => "internal server error".to_owned(),
        (_, StatusCode::METHOD_NOT_ALLOWED) => "this method is not allowed here".to_owned(),
        (_, StatusCode::NOT_FOUND) if text.is_none() => "no such route".to_owned(),
        _ => text.unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("bad request")
                .to_ascii_lowercase()
        }),
    };
    let body = if graphql {
        json!({ "errors": [{ "message": message, "extensions": { "code": code.as_str() } }] })
    } else {
        json!({ "success": false, "error": { "code": code.as_str(), "message": message } })
    };
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    if code == ErrorCode::Unavailable && !parts.headers.contains_key(header::RETRY_AFTER) {
        parts
            .headers
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    Response::from_parts(parts, Body::from(body.to_string()))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(server): State<Server>) -> Response {
    let database = crate::db::ping(&server.state.db).await;
    let listener = server.state.hub.listener_status();
    let listening = listener
        .as_ref()
        .is_none_or(|l| !l.down_longer_than(crate::pubsub::notify::READY_DOWN_LIMIT));
    let mut body = json!({
        "status": if database && listening { "ready" } else { "unavailable" },
        "database": if database { "ok" } else { "unreachable" },
    });
    if let Some(l) = listener {
        body["listener"] = json!({
            "state": if l.up { "up" } else { "down" },
            "downForMs": l.down_for.map(|d| d.as_millis() as u64),
            "reconnects": l.reconnects,
            "backendPid": l.backend_pid,
        });
    }
    if database && listening {
        Json(body).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// A JSON body with the right content type.
pub struct Json(pub Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.0.to_string(),
        )
            .into_response()
    }
}

/// The client's address and user agent, and the caller resolved from the
/// `Authorization` header: the one place HTTP requests are authenticated.
pub async fn request_context(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<RequestContext, AppError> {
    let auth = match headers.get(header::AUTHORIZATION) {
        None => Auth::Anonymous,
        Some(value) => match value.to_str() {
            Ok(v) => auth_service::authenticate_header(state, Some(v)).await?,
            Err(_) => Auth::Invalid,
        },
    };
    Ok(RequestContext {
        auth,
        client_addr: peer.map(|p| p.ip()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
    })
}

/// The peer address, when the server was started with connect info.
pub fn peer_addr(parts: &axum::http::request::Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// Media types a GraphQL response can be sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `application/json`: status 200 for every well-formed request.
    Json,
    /// `application/graphql-response+json`: request errors get 4xx.
    GraphqlResponse,
}

impl MediaType {
    fn header(self) -> HeaderValue {
        match self {
            MediaType::Json => HeaderValue::from_static("application/json"),
            MediaType::GraphqlResponse => {
                HeaderValue::from_static("application/graphql-response+json; charset=utf-8")
            }
        }
    }
}

/// Picks the response media type from `Accept`: the first acceptable one
/// listed wins; no header means `application/json`; `None` means 406.
pub fn negotiate(headers: &HeaderMap) -> Option<MediaType> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Some(MediaType::Json);
    };
    let accept = accept.to_str().ok()?;
    if accept.trim().is_empty() {
        return Some(MediaType::Json);
    }
    let mut best: Option<(f32, MediaType)> = None;
    for part in accept.split(',') {
        let mut pieces = part.split(';');
        let media = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for p in pieces {
            if let Some(v) = p.trim().strip_prefix("q=") {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
        if q <= 0.0 {
            continue;
        }
        let candidate = match media.as_str() {
            "application/graphql-response+json" => MediaType::GraphqlResponse,
            "application/json" | "application/*" | "*/*" => MediaType::Json,
            _ => continue,
        };
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, candidate));
        }
    }
    best.map(|(_, m)| m)
}

fn graphql_error_response(
    status: StatusCode,
    media: MediaType,
    code: ErrorCode,
    message: &str,
) -> Response {
    let body =
        json!({ "errors": [{ "message": message, "extensions": { "code": code.as_str() } }] });
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, media.header());
    if matches!(code, ErrorCode::Unavailable | ErrorCode::RateLimited) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn request_error(media: MediaType, message: &str) -> Response {
    graphql_error_response(
        StatusCode::BAD_REQUEST,
        media,
        ErrorCode::BadUserInput,
        message,
    )
}

/// Turns one JSON object into a GraphQL request, checking each parameter's type.
fn parse_params(value: Value) -> Result<async_graphql::Request, String> {
    let Value::Object(mut map) = value else {
        return Err("the request body must be a JSON object".to_owned());
    };
    let query = match map.remove("query") {
        Some(Value::String(q)) => q,
        Some(Value::Null) | None => return Err("the `query` parameter is required".to_owned()),
        Some(_) => return Err("the `query` parameter must be a string".to_owned()),
    };
    let mut request = async_graphql::Request::new(query);
    match map.remove("variables") {
        None | Some(Value::Null) => {}
        Some(Value::Object(vars)) => {
            request = request.variables(async_graphql::Variables::from_json(Value::Object(vars)));
        }
        Some(_) => return Err("the `variables` parameter must be an object".to_owned()),
    }
    match map.remove("operationName") {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) => request = request.operation_name(name),
        Some(_) => return Err("the `operationName` parameter must be a string".to_owned()),
    }
    match map.remove("extensions") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => return Err("the `extensions` parameter must be an object".to_owned()),
    }
    Ok(request)
}

fn is_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let media = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            media == "application/json" || media == "application/graphql-response+json"
        })
        .unwrap_or(false)
}

/// Reads a body up to the configured limit; `Err` is a ready 413 response.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ()> {
    axum::body::to_bytes(body, limit).await.map_err(|_| ())
}

async fn graphql_post(State(server): State<Server>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(media) = negotiate(&parts.headers) else {
        return graphql_error_response(
            StatusCode::NOT_ACCEPTABLE,
            MediaType::Json,
            ErrorCode::BadUserInput,
            "the Accept header allows neither application/graphql-response+json nor application/json",
        );
    };
    if !is_json_content_type(&parts.headers) {
        return graphql_error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            ErrorCode::BadUserInput,
            "send the request as Content-Type: application/json",
        );
    }
    let limit = server.state.config.body_limit;
    let Ok(bytes) = read_body(body, limit).await else {
        return graphql_error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            media,
            ErrorCode::BadUserInput,
            &format!("the request body exceeds the limit of {limit} bytes"),
        );
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return request_error(media, &format!("the request body is not valid JSON: {e}")),
    };
    let ctx = match request_context(&server.state, &parts.headers, peer_addr(&parts)).await {
        Ok(ctx) => ctx,
        Err(e) => {
            e.log();
            return graphql_error_response(e.code.http_status(), media, e.code, &e.message);
        }
    };
    match value {
        Value::Array(items) => {
            let max = server.state.config.graphql_max_batch;
            if items.is_empty() {
                return request_error(media, "a batch must contain at least one request");
            }
            if items.len() > max {
                return request_error(
                    media,
                    &format!(
                        "a batch may contain at most {max} requests, got {}",
                        items.len()
                    ),
                );
            }
            let mut requests = Vec::with_capacity(items.len());
            for item in items {
                match parse_params(item) {
                    Ok(r) => requests.push(prepare_request(r, &server.state, ctx.clone())),
                    Err(message) => return request_error(media, &message),
                }
            }
            let mut out = Vec::with_capacity(requests.len());
            let limits = crate::graphql::Limits::from_config(&server.state.config);
            for r in requests {
                let mut response = crate::graphql::execute(&server.schema, &limits, r).await;
                normalize_errors(&mut response);
                out.push(response);
            }
            let body = serde_json::to_string(&out).unwrap_or_else(|_| "[]".to_owned());
            let mut response = (StatusCode::OK, body).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, media.header());
            response
        }
        other => match parse_params(other) {
            Ok(r) => execute_one(&server, prepare_request(r, &server.state, ctx), media).await,
            Err(message) => request_error(media, &message),
        },
    }
}

async fn graphql_get(State(server): State<Server>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    if is_websocket_upgrade(&parts.headers) {
        return match axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &()).await
        {
            Ok(upgrade) => crate::ws::upgrade(server, upgrade, &parts).await,
            Err(rejection) => rejection.into_response(),
        };
    }
    let Some(media) = negotiate(&parts.headers) else {
        return graphql_error_response(
            StatusCode::NOT_ACCEPTABLE,
            MediaType::Json,
            ErrorCode::BadUserInput,
            "the Accept header allows neither application/graphql-response+json nor application/json",
        );
    };
    let params: Vec<(String, String)> = match parts.uri.query() {
        Some(q) => match serde_urlencoded_pairs(q) {
            Some(p) => p,
            None => return request_error(media, "the query string is malformed"),
        },
        None => Vec::new(),
    };
    let mut map = Map::new();
    for (key, value) in params {
        let v = match key.as_str() {
            "query" | "operationName" => Value::String(value),
            "variables" | "extensions" => match serde_json::from_str::<Value>(&value) {
                Ok(v) => v,
                Err(_) => {
                    return request_error(
                        media,
                        &format!("the `{key}` parameter is not valid JSON"),
                    );
                }
            },
            _ => continue,
        };
        map.insert(key, v);
    }
    let request = match parse_params(Value::Object(map)) {
        Ok(r) => r,
        Err(message) => return request_error(media, &message),
    };
    if is_mutation(&request) {
        let mut response = graphql_error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            media,
            ErrorCode::BadUserInput,
            "mutations must be sent with POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let ctx = match request_context(&server.state, &parts.headers, peer_addr(&parts)).await {
        Ok(ctx) => ctx,
        Err(e) => {
            e.log();
            return graphql_error_response(e.code.http_status(), media, e.code, &e.message);
        }
    };
    execute_one(&server, prepare_request(request, &server.state, ctx), media).await
}

fn serde_urlencoded_pairs(query: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((percent_decode(k)?, percent_decode(v)?));
    }
    Some(out)
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                out.push(v);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Whether the operation that would run is a mutation (unparseable documents
/// are left for execution to report).
fn is_mutation(request: &async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let ty = match (&doc.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(op), _) => Some(op.node.ty),
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, op)| op.node.ty),
        (DocumentOperations::Multiple(_), None) => None,
    };
    ty == Some(OperationType::Mutation)
}

async fn execute_one(
    server: &Server,
    request: async_graphql::Request,
    media: MediaType,
) -> Response {
    let limits = crate::graphql::Limits::from_config(&server.state.config);
    let mut response = crate::graphql::execute(&server.schema, &limits, request).await;
    normalize_errors(&mut response);
    let request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let unavailable = response.errors.iter().any(|e| {
        e.extensions
            .as_ref()
            .and_then(|x| x.get("code"))
            .is_some_and(|c| *c == async_graphql::Value::from(ErrorCode::Unavailable.as_str()))
    });
    let status = if unavailable {
        StatusCode::SERVICE_UNAVAILABLE
    } else if request_error && media == MediaType::GraphqlResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    // A request error never started execution, so the result has no `data` entry.
    let body = match serde_json::to_value(&response) {
        Ok(mut value) => {
            if request_error && let Some(map) = value.as_object_mut() {
                map.remove("data");
            }
            value.to_string()
        }
        Err(_) => json!({"errors": [{"message": "internal server error", "extensions": {"code": "INTERNAL"}}]}).to_string(),
    };
    let mut http = (status, body).into_response();
    let headers = http.headers_mut();
    headers.insert(header::CONTENT_TYPE, media.header());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if unavailable {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    http
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn no_accept_header_means_json() {
        assert_eq!(negotiate(&HeaderMap::new()), Some(MediaType::Json));
    }

    #[test]
    fn the_graphql_response_type_is_chosen_when_preferred() {
        assert_eq!(
            negotiate(&accept(
                "application/graphql-response+json, application/json;q=0.9"
            )),
            Some(MediaType::GraphqlResponse)
        );
        assert_eq!(
            negotiate(&accept("application/json")),
            Some(MediaType::Json)
        );
        assert_eq!(negotiate(&accept("*/*")), Some(MediaType::Json));
    }

    #[test]
    fn unacceptable_media_types_are_refused() {
        assert_eq!(negotiate(&accept("text/html")), None);
    }

    #[test]
    fn request_parameters_are_type_checked() {
        assert!(parse_params(json!({"query": "{ me { id } }"})).is_ok());
        assert!(parse_params(json!({})).is_err());
        assert!(parse_params(json!({"query": 1})).is_err());
        assert!(parse_params(json!({"query": "{a}", "variables": "x"})).is_err());
        assert!(parse_params(json!({"query": "{a}", "operationName": 3})).is_err());
        assert!(parse_params(json!([1])).is_err());
    }

    #[test]
    fn form_encoding_is_decoded() {
        assert_eq!(percent_decode("a+b%20c%7B").as_deref(), Some("a b c{"));
        assert_eq!(percent_decode("%zz"), None);
    }
}
