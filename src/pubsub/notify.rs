//! The cross-replica transport on PostgreSQL: `NOTIFY` inside the writing
//! transaction, one `LISTEN` connection per replica.
//!
//! A transaction's items are packed into notifications of at most
//! [`MAX_NOTIFY_BYTES`] (PostgreSQL refuses payloads of 8,000 bytes or more).
//! An item too large for one notification is stored in `pubsub_payloads`
//! within the same transaction and notified by id; each listener reads it
//! back, in place, so order is kept. PostgreSQL delivers notifications only
//! for committed transactions and in commit order, to every listener,
//! including the one of the replica that wrote.
//!
//! The listener reconnects with backoff after losing its connection. Items
//! committed meanwhile are lost for this replica, so every local subscriber
//! gets a [`Delivery::Gap`](super::Delivery::Gap) when the loss is noticed and
//! another when the listener is back, and live connections re-check their
//! credentials (auth changes may have been missed too).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseTransaction, Statement};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgNotification};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{Hub, Published};
use crate::error::{AppError, AppResult};

/// The notification channel all replicas listen on.
pub const CHANNEL: &str = "sightline_live";

/// The largest notification payload sent (PostgreSQL's limit is 8,000 bytes).
pub const MAX_NOTIFY_BYTES: usize = 7900;

/// How long oversized payloads are kept for listeners to read.
const PAYLOAD_RETENTION_SECS: i64 = 600;

/// How often old oversized payloads are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// `/readyz` answers 503 once the listener has been down this long.
pub const READY_DOWN_LIMIT: Duration = Duration::from_secs(5);

/// First and longest wait between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// One notification's payload.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
enum Wire {
    /// Items, in publish order.
    Items(Vec<Published>),
    /// Items stored in `pubsub_payloads` under this id.
    Ref(Uuid),
    /// Some credential or user changed.
    Auth,
}

/// What a transaction sends: notification payloads in order, and the
/// oversized bodies (id, `Wire::Items` JSON) to store first.
#[derive(Debug, Default, PartialEq)]
struct Packed {
    notifications: Vec<String>,
    stored: Vec<(Uuid, String)>,
}

const ITEMS_OPEN: &str = "{\"items\":[";
const ITEMS_CLOSE: &str = "]}";

fn items_payload(parts: &[String]) -> String {
    let mut s = String::with_capacity(
        ITEMS_OPEN.len() + ITEMS_CLOSE.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>(),
    );
    s.push_str(ITEMS_OPEN);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(p);
    }
    s.push_str(ITEMS_CLOSE);
    s
}

/// Packs items into as few notifications as fit, keeping their order.
fn pack(items: &[Published], limit: usize) -> AppResult<Packed> {
    let overhead = ITEMS_OPEN.len() + ITEMS_CLOSE.len();
    let mut packed = Packed::default();
    let mut chunk: Vec<String> = Vec::new();
    let mut chunk_len = overhead;
    for item in items {
        let json = serde_json::to_string(item).map_err(AppError::internal)?;
        if overhead + json.len() > limit {
            if !chunk.is_empty() {
                packed.notifications.push(items_payload(&chunk));
                chunk.clear();
                chunk_len = overhead;
            }
            let id = Uuid::now_v7();
            packed.stored.push((id, items_payload(&[json])));
            let reference = serde_json::to_string(&Wire::Ref(id)).map_err(AppError::internal)?;
            packed.notifications.push(reference);
            continue;
        }
        let extra = json.len() + usize::from(!chunk.is_empty());
        if chunk_len + extra > limit {
            packed.notifications.push(items_payload(&chunk));
            chunk.clear();
            chunk_len = overhead;
        }
        chunk_len += json.len() + usize::from(!chunk.is_empty());
        chunk.push(json);
    }
    if !chunk.is_empty() {
        packed.notifications.push(items_payload(&chunk));
    }
    Ok(packed)
}

/// Sends `items` with `pg_notify` inside `txn` (PostgreSQL only).
pub(crate) async fn send_in(txn: &DatabaseTransaction, items: &[Published]) -> AppResult<()> {
    if items.is_empty() {
        return Ok(());
    }
    let packed = pack(items, MAX_NOTIFY_BYTES)?;
    for (id, body) in packed.stored {
        txn.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "INSERT INTO pubsub_payloads (id, body) VALUES ($1, $2)",
            [id.into(), body.into()],
        ))
        .await?;
    }
    let list = serde_json::to_string(&packed.notifications).map_err(AppError::internal)?;
    // One round trip; the set-returning function yields the payloads in
    // array order, and PostgreSQL keeps a transaction's notification order.
    txn.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "SELECT pg_notify($1, n) FROM json_array_elements_text($2::text::json) AS n",
        [CHANNEL.into(), list.into()],
    ))
    .await?;
    Ok(())
}

/// The PostgreSQL side of a hub.
pub(crate) struct Remote {
    pool: PgPool,
    pub(crate) status: Arc<Status>,
}

impl Remote {
    pub(crate) fn new(pool: PgPool) -> Self {
        Remote {
            pool,
            status: Arc::new(Status::default()),
        }
    }

    /// Tells every replica's listener that an auth change committed.
    pub(crate) async fn send_auth_changed(&self) {
        let payload = serde_json::to_string(&Wire::Auth).unwrap_or_default();
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not tell other replicas about an auth change; they re-check credentials when their listener reconnects");
        }
    }
}

/// The listener's state, shared with `/readyz`.
#[derive(Debug)]
pub(crate) struct Status {
    inner: Mutex<StatusInner>,
}

#[derive(Debug)]
struct StatusInner {
    up: bool,
    since: Instant,
    reconnects: u64,
    backend_pid: Option<i32>,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            inner: Mutex::new(StatusInner {
                up: false,
                since: Instant::now(),
                reconnects: 0,
                backend_pid: None,
            }),
        }
    }
}

impl Status {
    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_up(&self, backend_pid: Option<i32>, reconnected: bool) {
        let mut s = self.lock();
        s.up = true;
        s.since = Instant::now();
        s.backend_pid = backend_pid;
        if reconnected {
            s.reconnects += 1;
        }
    }

    fn set_down(&self) {
        let mut s = self.lock();
        if s.up {
            s.up = false;
            s.since = Instant::now();
            s.backend_pid = None;
        }
    }

    pub(crate) fn report(&self) -> ListenerReport {
        let s = self.lock();
        ListenerReport {
            up: s.up,
            down_for: (!s.up).then(|| s.since.elapsed()),
            reconnects: s.reconnects,
            backend_pid: s.backend_pid,
        }
    }
}

/// The listener's state as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerReport {
    /// Whether the listener is connected and listening.
    pub up: bool,
    /// How long it has been disconnected (`None` while up).
    pub down_for: Option<Duration>,
    /// How many times it reconnected since startup.
    pub reconnects: u64,
    /// The PostgreSQL backend process id of its connection, while up.
    pub backend_pid: Option<i32>,
}

impl ListenerReport {
    /// Whether the listener has been down for longer than `limit`.
    pub fn down_longer_than(&self, limit: Duration) -> bool {
        self.down_for.is_some_and(|d| d > limit)
    }
}

/// A connected listener, ready to run.
pub struct Listener {
    hub: Hub,
    pool: PgPool,
    conn: PgListener,
}

async fn connect(pool: &PgPool) -> Result<(PgListener, i32), sqlx::Error> {
    let mut conn = PgListener::connect_with(pool).await?;
    conn.eager_reconnect(false);
    conn.listen(CHANNEL).await?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await?;
    Ok((conn, pid))
}

enum Ended {
    Shutdown,
    Lost(String),
}

impl Listener {
    /// Connects and starts listening; `None` for an in-process hub. Startup
    /// waits for this, so nothing committed after startup is missed.
    pub async fn connect(hub: &Hub) -> Result<Option<Listener>, sqlx::Error> {
        let Some(remote) = &hub.inner.remote else {
            return Ok(None);
        };
        let (conn, pid) = connect(&remote.pool).await?;
        remote.status.set_up(Some(pid), false);
        tracing::info!(
            channel = CHANNEL,
            backend_pid = pid,
            "listening for live updates of other replicas"
        );
        Ok(Some(Listener {
            hub: hub.clone(),
            pool: remote.pool.clone(),
            conn,
        }))
    }

    /// Runs until shutdown: delivers notifications, reconnects with backoff,
    /// and prunes old oversized payloads.
    pub fn start(self, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let Listener { hub, pool, conn } = self;
        let Some(remote) = &hub.inner.remote else {
            return;
        };
        let status = Arc::clone(&remote.status);
        let pruner = tokio::spawn(prune_loop(pool.clone(), shutdown.clone()));
        let mut conn = Some(conn);
        let mut backoff = BACKOFF_MIN;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let mut listener = match conn.take() {
                Some(l) => l,
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => break,
                    }
                    match connect(&pool).await {
                        Ok((l, pid)) => {
                            status.set_up(Some(pid), true);
                            backoff = BACKOFF_MIN;
                            tracing::info!(backend_pid = pid, "live-update listener reconnected");
                            // Whatever committed while we were away is lost
                            // here: say so, and re-check credentials.
                            hub.topics().gap(super::GapPhase::Resumed);
                            hub.bump_auth();
                            l
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, retry_in = ?backoff, "live-update listener cannot reconnect");
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                            continue;
                        }
                    }
                }
            };
            match receive(&hub, &pool, &mut listener, &mut shutdown).await {
                Ended::Shutdown => break,
                Ended::Lost(why) => {
                    status.set_down();
                    tracing::warn!(cause = %why, "live-update listener lost its connection; reconnecting");
                    hub.topics().gap(super::GapPhase::Interrupted);
                    drop(listener);
                }
            }
        }
        pruner.abort();
    }
}

async fn receive(
    hub: &Hub,
    pool: &PgPool,
    listener: &mut PgListener,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    loop {
        let next = tokio::select! {
            n = listener.try_recv() => n,
            _ = shutdown.changed() => return Ended::Shutdown,
        };
        match next {
            Ok(Some(n)) => handle(hub, pool, &n).await,
            Ok(None) => return Ended::Lost("connection closed".to_owned()),
            Err(e) => return Ended::Lost(e.to_string()),
        }
    }
}

async fn handle(hub: &Hub, pool: &PgPool, n: &PgNotification) {
    let wire: Wire = match serde_json::from_str(n.payload()) {
        Ok(w) => w,
        Err(e) => {
            // Another version of the server may speak a newer format.
            tracing::warn!(error = %e, "ignoring an unreadable live-update notification");
            return;
        }
    };
    match wire {
        Wire::Items(items) => hub.deliver_local(items),
        Wire::Auth => hub.bump_auth(),
        Wire::Ref(id) => match load(pool, id).await {
            Ok(items) => hub.deliver_local(items),
            Err(e) => {
                tracing::warn!(%id, error = %e, "could not load an oversized live update");
                hub.topics().gap(super::GapPhase::Resumed);
            }
        },
    }
}

async fn load(pool: &PgPool, id: Uuid) -> Result<Vec<Published>, String> {
    let body: Option<String> = sqlx::query_scalar("SELECT body FROM pubsub_payloads WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(|e| e.to_string())?;
    let body = body.ok_or_else(|| "the payload was already pruned".to_owned())?;
    match serde_json::from_str(&body).map_err(|e| e.to_string())? {
        Wire::Items(items) => Ok(items),
        Wire::Ref(_) | Wire::Auth => Err("a stored payload holds no items".to_owned()),
    }
}

async fn prune_loop(pool: PgPool, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        let pruned = sqlx::query(
            "DELETE FROM pubsub_payloads WHERE created_at < now() - make_interval(secs => $1)",
        )
        .bind(PAYLOAD_RETENTION_SECS as f64)
        .execute(&pool)
        .await;
        if let Err(e) = pruned {
            tracing::debug!(error = %e, "could not prune old live-update payloads");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;

    fn event(message: &str) -> Published {
        Published::Event(crate::events::entity::Model {
            id: Uuid::now_v7(),
            event_type: "log".into(),
            source: "api".into(),
            message: Some(message.into()),
            level: Some("info".into()),
            tags: json!({"region": "eu"}),
            payload: json!({"n": 1.5}),
            timestamp: Utc::now(),
            received_at: Utc::now(),
            created_by: None,
            api_key_id: None,
            fingerprint: None,
        })
    }

    fn unpack(p: &Packed) -> Vec<Published> {
        let mut out = Vec::new();
        for n in &p.notifications {
            match serde_json::from_str::<Wire>(n).unwrap() {
                Wire::Items(items) => out.extend(items),
                Wire::Ref(id) => {
                    let body = &p.stored.iter().find(|(i, _)| *i == id).unwrap().1;
                    match serde_json::from_str::<Wire>(body).unwrap() {
                        Wire::Items(items) => out.extend(items),
                        other => panic!("stored {other:?}"),
                    }
                }
                Wire::Auth => panic!("auth in items"),
            }
        }
        out
    }

    #[test]
    fn small_items_share_notifications_under_the_limit_and_keep_their_order() {
        let items: Vec<Published> = (0..200).map(|i| event(&format!("m{i}"))).collect();
        let p = pack(&items, MAX_NOTIFY_BYTES).unwrap();
        assert!(p.notifications.len() > 1 && p.notifications.len() < 200);
        assert!(p.notifications.iter().all(|n| n.len() <= MAX_NOTIFY_BYTES));
        assert!(p.stored.is_empty());
        assert_eq!(unpack(&p), items);
    }

    #[test]
    fn an_oversized_item_goes_by_reference_in_its_place() {
        let items = vec![event("a"), event(&"x".repeat(20_000)), event("c")];
        let p = pack(&items, MAX_NOTIFY_BYTES).unwrap();
        assert_eq!(p.stored.len(), 1);
        assert_eq!(p.notifications.len(), 3);
        assert!(p.notifications[1].starts_with("{\"ref\":"));
        assert_eq!(unpack(&p), items);
    }

    #[test]
    fn the_auth_signal_is_a_bare_word() {
        assert_eq!(serde_json::to_string(&Wire::Auth).unwrap(), "\"auth\"");
    }

    #[test]
    fn a_report_is_unhealthy_only_past_the_limit() {
        let s = Status::default();
        s.set_up(Some(7), false);
        assert!(!s.report().down_longer_than(Duration::ZERO));
        s.set_down();
        assert!(s.report().down_longer_than(Duration::ZERO));
        assert!(!s.report().down_longer_than(Duration::from_secs(3600)));
    }
}
