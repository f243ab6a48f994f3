//! Subscriber fan-out: `N` WebSocket subscribers of `eventCreated`, spread
//! round-robin over the servers given (one, or several replicas on one
//! PostgreSQL), while events are written at a fixed rate round-robin through
//! the same servers. Reports the delivery latency (from the moment the
//! `createEvent` request is sent to the moment a subscriber has the item),
//! how many deliveries were missed, and each server's resident memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::http::Conn;
use crate::server::Server;
use crate::stats::Summary;

const SUBSCRIBE: &str =
    "subscription { eventCreated(filter: {sources: [\"fanout\"]}) { message } }";
const CREATE: &str = "mutation($i: CreateEventInput!) { createEvent(input: $i) { id } }";

/// The number in a delivered message `<prefix><n>`, if it is one.
fn number_after(text: &str, prefix: &str) -> Option<usize> {
    let start = text.find(prefix)? + prefix.len();
    let digits: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

struct Shared {
    /// When event `k` was sent.
    sent: Mutex<Vec<Option<Instant>>>,
    /// Subscribers that have seen a probe.
    live: AtomicUsize,
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
    let mut ws = match tokio_tungstenite::connect_async(request).await {
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
            let sent = shared.sent.lock().ok().and_then(|s| s[k]);
            if let Some(at) = sent {
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

/// One fan-out run with `n` subscribers over `servers`, `rate` events per
/// second for `secs` seconds.
pub async fn run(servers: &[&Server], n: usize, rate: u32, secs: u64) -> Value {
    let events = (rate as u64 * secs) as usize;
    println!(
        "  fanout: {n} subscribers over {} server(s), {events} events at {rate}/s",
        servers.len()
    );
    let shared = Arc::new(Shared {
        sent: Mutex::new(vec![None; events]),
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
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let publish_start = tokio::time::Instant::now();
    let mut publish_errors = 0u64;
    let mut first_publish_error = None;
    for k in 0..events {
        tokio::time::sleep_until(publish_start + period * k as u32).await;
        let i = k % servers.len();
        if let Ok(mut s) = shared.sent.lock() {
            s[k] = Some(Instant::now());
        }
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
    }
}
