//! Starting and stopping the server under test: the release binary on a
//! free port against the given database, logging to a file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::http::Conn;

/// The admin password the bench server starts with.
pub const ADMIN_PASSWORD: &str = "bench-admin-password";

/// A running server.
pub struct Server {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The admin's session token.
    pub token: String,
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

impl Server {
    /// Starts `bin` on `database_url`, waits until it answers and logs in.
    pub async fn start(bin: &Path, database_url: &str, log: &Path) -> Result<Server, String> {
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}")
            .parse()
            .map_err(|e| format!("{e}"))?;
        let log_file = std::fs::File::create(log).map_err(|e| format!("log file: {e}"))?;
        let child = Command::new(bin)
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("SIGHTLINE_ADDR", addr.to_string())
            .env("SIGHTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("SIGHTLINE_LOG", "warn")
            .env("SIGHTLINE_REQUEST_TIMEOUT", "60s")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut server = Server {
            child: Some(child),
            addr,
            token: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut conn = Conn::new(addr);
        loop {
            if let Ok(r) = conn.get("/healthz", None).await
                && r.status == 200
            {
                break;
            }
            if let Some(Ok(Some(status))) = server.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!(
                    "the server exited with {status}; see {}",
                    log.display()
                ));
            }
            if Instant::now() > deadline {
                return Err("the server did not become healthy within 120 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.token = login(&mut conn).await?;
        Ok(server)
    }

    /// The process id of a server started here.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// A server started elsewhere (not stopped by [`Server::stop`]).
    pub async fn attach(addr: SocketAddr) -> Result<Server, String> {
        let mut conn = Conn::new(addr);
        let token = login(&mut conn).await?;
        Ok(Server {
            child: None,
            addr,
            token,
        })
    }

    /// Stops the server gracefully (SIGTERM), killing it after 30 s.
    pub async fn stop(self) {
        let Some(mut child) = self.child else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

async fn login(conn: &mut Conn) -> Result<String, String> {
    {
        let body = json!({
            "query": "mutation($p: String!) { login(input: {username: \"admin\", password: $p}) { token } }",
            "variables": {"p": ADMIN_PASSWORD},
        });
        let r = conn
            .post_json("/graphql", None, body.to_string().as_bytes())
            .await?;
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
        Ok(v["data"]["login"]["token"]
            .as_str()
            .ok_or_else(|| format!("login failed: {v}"))?
            .to_owned())
    }
}

/// The default location of the release server binary.
pub fn default_bin() -> PathBuf {
    PathBuf::from("target/release/sightline")
}
