//! The real binary as a newcomer runs it: startup output, signals, CLI.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestDb, backend_is_postgres};

fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sightline"));
    cmd.env_remove("SIGHTLINE_ADMIN_PASSWORD")
        .env("SIGHTLINE_LOG_FORMAT", "text")
        .env("SIGHTLINE_LOG", "info")
        .env("NO_COLOR", "1");
    cmd
}

/// Reads the child's output until a line contains `needle`, within 30 s.
fn wait_for_line(reader: &mut impl BufRead, needle: &str, seen: &mut String) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in output:\n{seen}"
        );
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read output");
        assert!(n > 0, "process ended before `{needle}`:\n{seen}");
        seen.push_str(&line);
        if line.contains(needle) {
            return line;
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn a_fresh_start_prints_the_url_and_admin_login_and_sigterm_exits_zero() {
    let db = TestDb::create().await;
    let mut child = binary()
        .env("DATABASE_URL", &db.url)
        .env("SIGHTLINE_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the server");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let url_line = strip_ansi(&wait_for_line(&mut out, "playground:", &mut seen));
    let url = url_line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("a URL")
        .to_owned();
    let pw_line = strip_ansi(&wait_for_line(&mut out, "initial admin", &mut seen));
    let password = pw_line
        .split('`')
        .nth(3)
        .expect("the password in backticks")
        .to_owned();

    let client = reqwest::Client::new();
    let v: serde_json::Value = client
        .post(format!("{url}graphql"))
        .json(&serde_json::json!({
            "query": "mutation($p: String!) { login(input: {username: \"admin\", password: $p}) { token user { role } } }",
            "variables": {"p": password}
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"]["login"]["user"]["role"], "ADMIN", "{v}");

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");

    // A second start on the same database does not create or print an admin again.
    let mut child = binary()
        .env("DATABASE_URL", &db.url)
        .env("SIGHTLINE_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    wait_for_line(&mut out, "playground:", &mut seen);
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let _ = child.wait();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    assert!(!seen.contains("initial admin") && !rest.contains("initial admin"));
}

#[tokio::test]
async fn create_user_reads_the_password_from_stdin() {
    let app = crate::common::TestApp::spawn().await;
    let mut child = binary()
        .env("DATABASE_URL", &app.db_url)
        .args([
            "create-user",
            "--username",
            "carol",
            "--role",
            "moderator",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"carol-password\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = app.login("carol", "carol-password").await;
    let me = app
        .gql_ok(Some(&token), "{ me { role } }", serde_json::json!({}))
        .await;
    assert_eq!(me["me"]["role"], "MODERATOR");

    let bad = binary()
        .env("DATABASE_URL", &app.db_url)
        .args([
            "create-user",
            "--username",
            "dave",
            "--role",
            "emperor",
            "--password-stdin",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn help_documents_every_setting() {
    let out = binary().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for env in [
        "DATABASE_URL",
        "SIGHTLINE_ADDR",
        "SIGHTLINE_ADMIN_PASSWORD",
        "SIGHTLINE_LOG",
        "SIGHTLINE_LOG_FORMAT",
        "SIGHTLINE_SESSION_TTL",
        "SIGHTLINE_BODY_LIMIT",
        "MONITORING_EVENT_RETENTION_DAYS",
        "MONITORING_METRIC_RETENTION_DAYS",
    ] {
        assert!(text.contains(env), "--help does not mention {env}");
    }
    let _ = backend_is_postgres();
}
