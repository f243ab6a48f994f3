//! The playground (`/`) and dashboard (`/dashboard`) pages and their assets,
//! as the server embeds them from `playground/dist` (built or not).

use reqwest::header;

use crate::common::TestApp;

const CSP_PARTS: [&str; 4] = [
    "default-src 'self'",
    "script-src 'self'",
    "connect-src 'self'",
    "frame-ancestors 'none'",
];

#[tokio::test]
async fn pages_are_served_with_a_same_origin_content_security_policy() {
    let app = TestApp::spawn().await;
    for path in ["/", "/dashboard"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "text/html; charset=utf-8",
            "{path}"
        );
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        for part in CSP_PARTS {
            assert!(csp.contains(part), "{path}: CSP {csp:?} lacks {part:?}");
        }
        assert!(
            !csp.contains("http"),
            "{path}: CSP names another host: {csp}"
        );
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        let body = response.text().await.unwrap();
        if sightline::playground::is_built() {
            assert!(body.contains("<script type=\"module\""), "{path}: {body}");
            assert!(
                !body.contains("://"),
                "{path} refers to another host: {body}"
            );
        } else {
            assert!(body.contains("npm run build"), "{path}: {body}");
        }
    }
}

#[tokio::test]
async fn every_embedded_asset_is_served_with_its_type_and_cached_for_good() {
    let app = TestApp::spawn().await;
    let missing = app
        .client
        .get(app.url("/assets/no-such-file.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    for path in sightline::playground::asset_paths().filter(|p| p.starts_with("/assets/")) {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let ty = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
        let expected = match path.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            "ttf" => "font/ttf",
            "woff2" => "font/woff2",
            other => panic!("unexpected asset type {other} for {path}"),
        };
        assert_eq!(ty, expected, "{path}");
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable",
            "{path}"
        );
        assert!(
            !response.bytes().await.unwrap().is_empty(),
            "{path} is empty"
        );
    }
}

#[tokio::test]
async fn the_pages_refer_only_to_embedded_assets() {
    let app = TestApp::spawn().await;
    let embedded: Vec<&str> = sightline::playground::asset_paths().collect();
    for path in ["/", "/dashboard"] {
        let body = app
            .client
            .get(app.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let refs: Vec<&str> = body
            .split('"')
            .filter(|s| s.starts_with("/assets/"))
            .collect();
        if sightline::playground::is_built() {
            assert!(!refs.is_empty(), "{path} loads no script: {body}");
        }
        for r in refs {
            assert!(embedded.contains(&r), "{path} refers to {r}, not embedded");
        }
    }
}
