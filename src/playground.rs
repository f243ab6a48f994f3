//! Serves the GraphiQL playground (`/`) and the live dashboard
//! (`/dashboard`) from files embedded at build time (see `build.rs` and
//! `playground/`). Nothing is loaded from another host. When the files were
//! not built, `/` says how to build them and the API keeps working.

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::Server;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/playground_assets.rs"));
}

/// Content-Security-Policy of the pages: everything from this server only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Routes of the pages and their assets.
pub fn router() -> Router<Server> {
    Router::new()
        .route("/", get(|| page("/index.html")))
        .route("/dashboard", get(|| page("/dashboard.html")))
        .route("/assets/{*path}", get(asset))
}

/// Whether the built pages are embedded in this binary.
pub fn is_built() -> bool {
    find("/index.html").is_some()
}

/// URL paths of every embedded file (`/index.html`, `/assets/...`).
pub fn asset_paths() -> impl Iterator<Item = &'static str> {
    embedded::ASSETS.iter().map(|(path, _, _)| *path)
}

fn find(path: &str) -> Option<(&'static str, &'static [u8])> {
    embedded::ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, ty, bytes)| (*ty, *bytes))
}

fn html_headers(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

async fn page(path: &'static str) -> Response {
    let mut response = match find(path) {
        Some((ty, bytes)) => ([(header::CONTENT_TYPE, ty)], bytes).into_response(),
        None => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            NOT_BUILT,
        )
            .into_response(),
    };
    html_headers(&mut response);
    response
}

async fn asset(request: Request) -> Response {
    let path = request.uri().path().to_owned();
    match find(&path) {
        Some((ty, bytes)) => {
            let mut response = ([(header::CONTENT_TYPE, ty)], bytes).into_response();
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            response
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

const NOT_BUILT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sightline</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem}code,pre{background:#f3f3f3;padding:.1rem .3rem}</style>
</head><body>
<h1>Sightline is running</h1>
<p>The GraphQL API is at <code>POST /graphql</code> (WebSocket subscriptions on the same path).</p>
<p>The playground and dashboard pages were not built into this binary. Build them once, then rebuild the server:</p>
<pre>cd playground &amp;&amp; npm ci &amp;&amp; npm run build &amp;&amp; cd .. &amp;&amp; cargo build --release</pre>
<p>Until then, any GraphQL client works, e.g.:</p>
<pre>curl -s localhost:8080/graphql -H 'content-type: application/json' \
  -d '{"query":"mutation { login(input: {username: \"admin\", password: \"…\"}) { token } }"}'</pre>
</body></html>
"#;
