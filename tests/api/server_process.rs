//! The real `sightline` binary as a child process on a free port, with its
//! whole output (stdout and stderr) captured, for tests that kill it, restart
//! it or read its log.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// The admin password the child starts with.
pub const PROCESS_ADMIN_PASSWORD: &str = "process-admin-password-for-tests";

/// A running server process.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:port`.
    pub base: String,
    log: Arc<Mutex<String>>,
    /// A client for it.
    pub client: reqwest::Client,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn capture(stream: impl Read + Send + 'static, log: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => log.lock().unwrap().push_str(&line),
            }
        }
    });
}

impl ServerProcess {
    /// Starts the binary on `db_url` with extra environment and waits (30 s at
    /// most) until `/readyz` answers 200.
    pub async fn start(db_url: &str, env: &[(&str, &str)]) -> ServerProcess {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sightline"));
        cmd.env("DATABASE_URL", db_url)
            .env("SIGHTLINE_ADDR", format!("127.0.0.1:{port}"))
            .env("SIGHTLINE_ADMIN_PASSWORD", PROCESS_ADMIN_PASSWORD)
            .env("SIGHTLINE_LOG_FORMAT", "text")
            .env("SIGHTLINE_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the server binary");
        let log = Arc::new(Mutex::new(String::new()));
        capture(child.stdout.take().unwrap(), log.clone());
        capture(child.stderr.take().unwrap(), log.clone());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut process = ServerProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            client,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("the server exited with {status}:\n{}", process.log());
            }
            let ready = process
                .client
                .get(process.url("/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == 200);
            if ready {
                return process;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server did not become ready:\n{}",
                process.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL, then reaps the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and waits for the exit (30 s at most, then SIGKILL).
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
    }

    /// A GraphQL request; the whole JSON answer.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let req = crate::common::gql_request(
            &self.client,
            &self.url("/graphql"),
            token,
            query,
            variables,
        );
        let text = req.send().await.expect("request").text().await.unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Logs in; the token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let v = self
            .gql(
                None,
                "mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token } }",
                json!({ "u": username, "p": password }),
            )
            .await;
        v["data"]["login"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("login failed: {v}"))
            .to_owned()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
