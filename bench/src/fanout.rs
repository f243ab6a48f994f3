//! Subscriber fan-out: `N` WebSocket subscribers of `eventCreated`, spread
//! round-robin over the servers given (one, or several replicas on one
//! PostgreSQL), while events are written at a fixed rate round-robin through
//! the same servers. Reports the delivery latency, how many deliveries were
//! missed, and each server's resident memory.
//!
//! What the latency is: from just before the `createEvent` request is
//! written to the moment the subscriber's task has read the frame carrying
//! that event off its socket. It therefore includes the write's commit, the
//! notification (PostgreSQL), the server's fan-out, the loopback and the
//! time this client's own tasks wait for a core: on a small machine the
//! client competes with the servers, so the figures are an upper bound.
//!
//! The client is kept cheap so that it measures the servers rather than
//! itself: each socket reads with a small buffer (tungstenite's default
//! 128 KiB is zero-filled on every read attempt), and a frame is recognised
//! by a substring search for its `fanout-<k>` message, without JSON parsing
//! or allocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::http::Conn;
use crate::server::Server;
use crate::stats::Summary;

const SUBSCRIBE: &str =
    "subscription { eventCreated(filter: {sources: [\"fanout\"]}) { message } }";
const CREATE: &str = "mutation($i: CreateEventInput!) { createEvent(input: $i) { id } }";

/// Read buffer of each subscriber socket: the frames are a few hundred bytes.
const READ_BUFFER: usize = 4 * 1024;

/// The number in a delivered message `<prefix><n>`, if it is one.
fn number_after(text: &str, prefix: &str) -> Option<usize> {
    let start = text.find(prefix)? + prefix.len();
    let mut n: usize = 0;
    let mut digits = 0;
    for b in text.as_bytes()[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
    {
        n = n.checked_mul(10)?.checked_add(usize::from(b - b'0'))?;
        digits += 1;
    }
    (digits > 0).then_some(n)
}

struct Shared {
    /// The clock the send times count from.
    epoch: Instant,
    /// When event `k` was sent, in nanoseconds after `epoch` plus one (0: not
    /// sent yet).
    sent: Vec<AtomicU64>,
    /// Subscribers that have seen a probe.
    live: AtomicUsize,
}

impl Shared {
    fn mark_sent(&self, k: usize) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.sent[k].store(nanos + 1, Ordering::Release);
    }

    fn sent_at(&self, k: usize) -> Option<Instant> {
        match self.sent[k].load(Ordering::Acquire) {
            0 => None,
            n => Some(self.epoch + Duration::from_nanos(n - 1)),
        }
    }
}

/// What one subscriber saw.
struct Seen {
    latencies: Vec<Duration>,
    distinct: usize,
    duplicates: usize,
    error: Option<String>,
}

async fn subscriber(
    addr: std::net::SocketAddr,
    token: String,
    shared: Arc<Shared>,
    events: usize,
    connect_gate: Arc<Semaphore>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen {
        latencies: Vec::new(),
        distinct: 0,
        duplicates: 0,
        error: None,
    };
    let permit = connect_gate.acquire_owned().await;
    let mut request = match format!("ws://{addr}/graphql").into_client_request() {
        Ok(r) => r,
        Err(e) => {
            seen.error = Some(e.to_string());
            return seen;
        }
    };
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let mut ws =
        match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
            Ok((ws, _)) => ws,
            Err(e) => {
                seen.error = Some(format!("connect: {e}"));
                return seen;
            }
        };
    let init =
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
    let sub = json!({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE}});
    for m in [init, sub] {
        if let Err(e) = ws.send(Message::Text(m.to_string().into())).await {
            seen.error = Some(format!("send: {e}"));
            return seen;
        }
    }
    drop(permit);
    let mut got = vec![false; events];
    let mut is_live = false;
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = stop.changed() => break,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Ping(p))) => {
                let _ = ws.send(Message::Pong(p)).await;
                continue;
            }
            Some(Ok(Message::Close(frame))) => {
                seen.error = Some(match frame {
                    Some(f) => format!("closed by the server: {} {}", u16::from(f.code), f.reason),
                    None => "closed by the server".into(),
                });
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                seen.error = Some(format!("receive: {e}"));
                break;
            }
            None => {
                seen.error = Some("closed".into());
                break;
            }
        };
        let now = Instant::now();
        let text = text.as_str();
        if let Some(k) = number_after(text, "\"fanout-") {
            if k >= events {
                continue;
            }
            if got[k] {
                seen.duplicates += 1;
                continue;
            }
            got[k] = true;
            seen.distinct += 1;
            if let Some(at) = shared.sent_at(k) {
                seen.latencies.push(now.saturating_duration_since(at));
            }
            if seen.distinct == events {
                break;
            }
        } else if text.contains("\"probe-") {
            if !is_live {
                is_live = true;
                shared.live.fetch_add(1, Ordering::SeqCst);
            }
        } else if text.contains("\"errors\"") && seen.error.is_none() {
            seen.error = Some(text.chars().take(300).collect());
        }
    }
    let _ = ws.close(None).await;
    seen
}

async fn create(conn: &mut Conn, token: &str, message: &str) -> Result<(), String> {
    let body = json!({"query": CREATE, "variables": {"i": {"eventType": "LOG", "source": "fanout", "message": message}}});
    let r = conn
        .post_json("/graphql", Some(token), body.to_string().as_bytes())
        .await?;
    if r.status != 200 || r.text().contains("\"errors\"") {
        return Err(format!("createEvent: {} {}", r.status, r.text()));
    }
    Ok(())
}

/// Resident memory of a process, in MiB (Linux).
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU time (user and system) a process has used, in seconds (Linux:
/// `/proc/<pid>/stat`, in ticks of 1/100 s, the `USER_HZ` of every Linux
/// build). `None` for a process this machine does not show.
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU seconds of each server, then of this client.
fn cpu_now(servers: &[&Server]) -> (Vec<Option<f64>>, Option<f64>) {
    let servers = servers
        .iter()
        .map(|s| s.pid().and_then(|p| cpu_secs(&p.to_string())))
        .collect();
    (servers, cpu_secs("self"))
}

/// Microseconds of CPU per delivery between two readings.
fn us_per(before: Option<f64>, after: Option<f64>, delivered: usize) -> Option<f64> {
    let (before, after) = (before?, after?);
    (delivered > 0).then(|| (after - before) * 1e6 / delivered as f64)
}

/// One fan-out run with `n` subscribers over `servers`, `rate` events per
/// second for `secs` seconds.
pub async fn run(servers: &[&Server], n: usize, rate: u32, secs: u64) -> Value {
    let events = (rate as u64 * secs) as usize;
    println!(
        "  fanout: {n} subscribers over {} server(s), {events} events at {rate}/s",
        servers.len()
    );
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        sent: (0..events).map(|_| AtomicU64::new(0)).collect(),
        live: AtomicUsize::new(0),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let gate = Arc::new(Semaphore::new(64));
    let started = Instant::now();
    let mut subs = Vec::with_capacity(n);
    for i in 0..n {
        let s = &servers[i % servers.len()];
        subs.push(tokio::spawn(subscriber(
            s.addr,
            s.token.clone(),
            Arc::clone(&shared),
            events,
            Arc::clone(&gate),
            stop_rx.clone(),
        )));
    }
    // Probe until every subscriber is live (or give up after 120 s).
    let mut conns: Vec<Conn> = servers.iter().map(|s| Conn::new(s.addr)).collect();
    let mut k = 0usize;
    let live_deadline = Instant::now() + Duration::from_secs(120);
    while shared.live.load(Ordering::SeqCst) < n && Instant::now() < live_deadline {
        let i = k % servers.len();
        if let Err(e) = create(&mut conns[i], &servers[i].token, &format!("probe-{k}")).await {
            println!("  probe failed: {e}");
        }
        k += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let live = shared.live.load(Ordering::SeqCst);
    let setup = started.elapsed();
    println!("  {live} of {n} subscribers live after {setup:.1?}");
    let rss_loaded: Vec<Option<f64>> = servers.iter().map(|s| s.pid().and_then(rss_mib)).collect();

    // Publish at a fixed rate, round-robin through the servers.
    let (cpu_servers_start, cpu_client_start) = cpu_now(servers);
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let publish_start = tokio::time::Instant::now();
    let mut publish_errors = 0u64;
    let mut first_publish_error = None;
    for k in 0..events {
        tokio::time::sleep_until(publish_start + period * k as u32).await;
        let i = k % servers.len();
        shared.mark_sent(k);
        if let Err(e) = create(&mut conns[i], &servers[i].token, &format!("fanout-{k}")).await {
            publish_errors += 1;
            first_publish_error.get_or_insert(e);
        }
    }
    // Let deliveries drain (each subscriber stops once it has every event).
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    while subs.iter().any(|h| !h.is_finished()) && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_end: Vec<Option<f64>> = servers.iter().map(|s| s.pid().and_then(rss_mib)).collect();
    let (cpu_servers_end, cpu_client_end) = cpu_now(servers);
    let _ = stop_tx.send(true);
    let mut latencies = Vec::new();
    let mut delivered = 0usize;
    let mut duplicates = 0usize;
    let mut errors = 0usize;
    let mut first_error = None;
    for h in subs {
        if let Ok(seen) = h.await {
            delivered += seen.distinct;
            duplicates += seen.duplicates;
            latencies.extend(seen.latencies);
            if let Some(e) = seen.error {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let expected = n * events;
    let missed = expected.saturating_sub(delivered);
    // CPU per delivery while publishing and draining: all servers together
    // (each delivers its own subscribers' share), and this client.
    let server_cpu: Option<f64> = cpu_servers_start
        .iter()
        .zip(&cpu_servers_end)
        .map(|(a, b)| Some(b.as_ref()? - a.as_ref()?))
        .sum();
    let server_us = us_per(Some(0.0), server_cpu, delivered);
    let client_us = us_per(cpu_client_start, cpu_client_end, delivered);
    let summary = Summary::new(
        delivered as u64,
        errors as u64,
        delivered as u64,
        Duration::from_secs(secs),
        latencies,
        first_error.clone(),
    );
    println!(
        "  delivered {delivered}/{expected} (missed {missed}, duplicates {duplicates}); latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; RSS MiB per server {:?}",
        summary.ms(0.50),
        summary.ms(0.99),
        summary.ms(1.0),
        rss_end
            .iter()
            .map(|r| r.map(|m| (m * 10.0).round() / 10.0))
            .collect::<Vec<_>>()
    );
    if let (Some(server), Some(client)) = (server_us, client_us) {
        println!(
            "  CPU per delivery: servers {server:.2} µs, this client {client:.2} µs (publish and drain)"
        );
    }
    if let Some(e) = &first_error {
        println!("  first subscriber error: {e}");
    }
    if let Some(e) = &first_publish_error {
        println!("  first publish error: {e}");
    }
    json!({
        "servers": servers.len(),
        "subscribers": n,
        "live_subscribers": live,
        "setup_s": setup.as_secs_f64(),
        "rate_per_s": rate,
        "events": events,
        "expected_deliveries": expected,
        "delivered": delivered,
        "missed": missed,
        "duplicates": duplicates,
        "subscriber_errors": errors,
        "publish_errors": publish_errors,
        "latency_ms": {
            "p50": summary.ms(0.50),
            "p90": summary.ms(0.90),
            "p99": summary.ms(0.99),
            "max": summary.ms(1.0),
        },
        "rss_mib_loaded": rss_loaded,
        "rss_mib_end": rss_end,
        "cpu_us_per_delivery": {"servers": server_us, "client": client_us},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_number_is_read_from_the_message() {
        let text = r#"{"id":"1","type":"next","payload":{"data":{"eventCreated":{"message":"fanout-42"}}}}"#;
        assert_eq!(number_after(text, "\"fanout-"), Some(42));
        assert_eq!(number_after(text, "\"probe-"), None);
        assert_eq!(number_after("\"fanout-\"", "\"fanout-"), None);
        assert_eq!(
            number_after("\"fanout-99999999999999999999999\"", "\"fanout-"),
            None
        );
    }
}
