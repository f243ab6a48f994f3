//! GraphQL over HTTP conformance, checked with the npm `graphql-http`
//! package's `auditServer` (installed by `.ci/run` with `npm ci` in
//! tests/http-audit). Skipped, with the reason printed, where Node.js or the
//! package is missing.

use std::path::Path;
use std::process::Command;

use crate::common::TestApp;

#[tokio::test]
async fn the_server_passes_every_graphql_over_http_audit() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/http-audit");
    if !dir.join("node_modules/graphql-http").exists() {
        eprintln!(
            "skipped: run `npm ci` in tests/http-audit to enable the GraphQL-over-HTTP audit"
        );
        return;
    }
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("skipped: Node.js is not installed");
        return;
    }
    let app = TestApp::spawn().await;
    let url = app.url("/graphql");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("audit.mjs")
            .arg(url)
            .current_dir(dir)
            .output()
    })
    .await
    .unwrap()
    .expect("run the audit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let results: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert!(results.len() > 40, "too few audits ran: {text}");
    let failed: Vec<_> = results.iter().filter(|r| r["status"] != "ok").collect();
    assert!(failed.is_empty(), "audits not passed: {failed:#?}");
}
