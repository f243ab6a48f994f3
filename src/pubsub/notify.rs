//! The cross-replica transport on PostgreSQL: `NOTIFY` inside the writing
//! transaction, one `LISTEN` connection per replica.
//!
//! Events, the bulk of what is written, are announced by reference: one
//! small notification per transaction naming its commit-clock stamp (the
//! `received_at` all its events share, unique per transaction, see
//! [`crate::ingest::counters`]) and how many events it stored. A listener
//! that has event subscribers reads those rows back (one indexed read for all
//! the stamps already waiting); one without skips them. So ingest pays for
//! one tiny notification per commit, whatever the batch size.
//!
//! Other items are packed into notifications of at most [`MAX_NOTIFY_BYTES`]
//! (PostgreSQL refuses payloads of 8,000 bytes or more). An item too large
//! for one notification is stored in `pubsub_payloads` within the same
//! transaction and notified by id; each listener reads it back, in place, so
//! order is kept. PostgreSQL delivers notifications only for committed
//! transactions and in commit order, to every listener, including the one of
//! the replica that wrote.
//!
//! The listener reconnects with backoff after losing its connection. Items
//! committed meanwhile are lost for this replica, so every local subscriber
//! gets a [`Delivery::Gap`](super::Delivery::Gap) when the loss is noticed and
//! another when the listener is back, and live connections re-check their
//! credentials (auth changes may have been missed too).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, EntityTrait,
    SqlxPostgresConnector, Statement,
};
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
    /// `count` events committed with `received_at` = `at` (Unix µs).
    Events {
        /// The transaction's commit-clock stamp.
        at: i64,
        /// How many events it stored.
        count: u64,
    },
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

fn events_payload(at: DateTime<Utc>, count: usize) -> AppResult<String> {
    serde_json::to_string(&Wire::Events {
        at: at.timestamp_micros(),
        count: count as u64,
    })
    .map_err(AppError::internal)
}

/// Packs items into as few notifications as fit, keeping their order;
/// each run of events sharing a commit stamp becomes one reference.
fn pack(items: &[Published], limit: usize) -> AppResult<Packed> {
    let mut packed = Packed::default();
    let mut others: Vec<&Published> = Vec::new();
    let mut rest = items;
    while let Some(first) = rest.first() {
        let Published::Event(event) = first else {
            others.push(first);
            rest = &rest[1..];
            continue;
        };
        let at = event.received_at;
        let run = rest
            .iter()
            .take_while(|p| matches!(p, Published::Event(e) if e.received_at == at))
            .count();
        pack_items(&others, limit, &mut packed)?;
        others.clear();
        packed.notifications.push(events_payload(at, run)?);
        rest = &rest[run..];
    }
    pack_items(&others, limit, &mut packed)?;
    Ok(packed)
}

fn pack_items(items: &[&Published], limit: usize, packed: &mut Packed) -> AppResult<()> {
    let overhead = ITEMS_OPEN.len() + ITEMS_CLOSE.len();
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
    Ok(())
}

/// Sends `items` with `pg_notify` inside `txn` (PostgreSQL only).
pub(crate) async fn send_in(txn: &DatabaseTransaction, items: &[Published]) -> AppResult<()> {
    if items.is_empty() {
        return Ok(());
    }
    let packed = pack(items, MAX_NOTIFY_BYTES)?;
    send_packed(txn, packed).await
}

/// Announces, inside `txn`, the `count` events it stores with `received_at`
/// = `at` (PostgreSQL only).
pub(crate) async fn send_events_in(
    txn: &DatabaseTransaction,
    at: DateTime<Utc>,
    count: usize,
) -> AppResult<()> {
    if count == 0 {
        return Ok(());
    }
    let packed = Packed {
        notifications: vec![events_payload(at, count)?],
        stored: Vec::new(),
    };
    send_packed(txn, packed).await
}

async fn send_packed(txn: &DatabaseTransaction, packed: Packed) -> AppResult<()> {
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

/// One read of committed events serves at most this many commit stamps, and
/// stops gathering more once they hold this many events.
const MAX_STAMPS_PER_READ: usize = 256;
const MAX_EVENTS_PER_READ: u64 = 2_000;

async fn receive(
    hub: &Hub,
    pool: &PgPool,
    listener: &mut PgListener,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    let db = SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
    // A notification read ahead while gathering event stamps, handled next.
    let mut ahead: Option<Wire> = None;
    loop {
        let wire = match ahead.take() {
            Some(w) => w,
            None => {
                let next = tokio::select! {
                    n = listener.try_recv() => n,
                    _ = shutdown.changed() => return Ended::Shutdown,
                };
                match next {
                    Ok(Some(n)) => match decode(&n) {
                        Some(w) => w,
                        None => continue,
                    },
                    Ok(None) => return Ended::Lost("connection closed".to_owned()),
                    Err(e) => return Ended::Lost(e.to_string()),
                }
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
            Wire::Events { at, count } => {
                // The commits already waiting are read together.
                let mut stamps = vec![(at, count)];
                let mut events = count;
                while stamps.len() < MAX_STAMPS_PER_READ && events < MAX_EVENTS_PER_READ {
                    let Some(n) = listener.next_buffered() else {
                        break;
                    };
                    match decode(&n) {
                        Some(Wire::Events { at, count }) => {
                            stamps.push((at, count));
                            events += count;
                        }
                        Some(other) => {
                            ahead = Some(other);
                            break;
                        }
                        None => {}
                    }
                }
                deliver_events(hub, &db, &stamps).await;
            }
        }
    }
}

fn decode(n: &PgNotification) -> Option<Wire> {
    match serde_json::from_str(n.payload()) {
        Ok(w) => Some(w),
        Err(e) => {
            // Another version of the server may speak a newer format.
            tracing::warn!(error = %e, "ignoring an unreadable live-update notification");
            None
        }
    }
}

/// Reads back the events committed with `stamps` and hands them to the local
/// subscribers in commit order; nothing is read when nobody subscribes.
async fn deliver_events(hub: &Hub, db: &DatabaseConnection, stamps: &[(i64, u64)]) {
    let topic = &hub.topics().events;
    if topic.subscriber_count() == 0 {
        return;
    }
    match read_events(db, stamps).await {
        Ok(events) => {
            for event in events {
                topic.publish(Arc::new(event));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, commits = stamps.len(), "could not read committed events for live delivery");
            topic.gap(super::GapPhase::Resumed);
        }
    }
}

async fn read_events(
    db: &DatabaseConnection,
    stamps: &[(i64, u64)],
) -> Result<Vec<crate::events::entity::Model>, sea_orm::DbErr> {
    let times: Vec<DateTime<Utc>> = stamps
        .iter()
        .filter_map(|(at, _)| Utc.timestamp_micros(*at).single())
        .collect();
    let expected: u64 = stamps.iter().map(|(_, n)| n).sum();
    // One statement text whatever the number of stamps (prepared once).
    let events = crate::events::entity::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT * FROM events WHERE received_at = ANY($1) ORDER BY received_at, id",
            [times.into()],
        ))
        .all(db)
        .await?;
    if (events.len() as u64) < expected {
        // Retention (or an admin) deleted some before they were read.
        tracing::debug!(
            expected,
            read = events.len(),
            "some committed events were deleted before live delivery"
        );
    }
    Ok(events)
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
        Wire::Ref(_) | Wire::Events { .. } | Wire::Auth => {
            Err("a stored payload holds no items".to_owned())
        }
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
    use serde_json::json;

    fn event(message: &str, received_at: DateTime<Utc>) -> Published {
        Published::Event(crate::events::entity::Model {
            id: Uuid::now_v7(),
            event_type: "log".into(),
            source: "api".into(),
            message: Some(message.into()),
            level: Some("info".into()),
            tags: json!({"region": "eu"}),
            payload: json!({"n": 1.5}),
            timestamp: Utc::now(),
            received_at,
            created_by: None,
            api_key_id: None,
            fingerprint: None,
        })
    }

    fn transition(rule_name: &str) -> Published {
        Published::Alert(crate::alerts::entity::transition::Model {
            id: Uuid::now_v7(),
            rule_id: Uuid::now_v7(),
            rule_name: rule_name.into(),
            instance_id: Uuid::now_v7(),
            labels: json!({"job": "api"}),
            severity: "critical".into(),
            from_state: "pending".into(),
            to_state: "firing".into(),
            value: Some(2.5),
            silenced: false,
            at: Utc::now(),
        })
    }

    /// What listeners get: items inline or by reference, and event stamps.
    #[derive(Debug, PartialEq)]
    enum Got {
        Item(Box<Published>),
        Events(i64, u64),
    }

    fn unpack(p: &Packed) -> Vec<Got> {
        let mut out = Vec::new();
        for n in &p.notifications {
            match serde_json::from_str::<Wire>(n).unwrap() {
                Wire::Items(items) => out.extend(items.into_iter().map(|i| Got::Item(Box::new(i)))),
                Wire::Ref(id) => {
                    let body = &p.stored.iter().find(|(i, _)| *i == id).unwrap().1;
                    match serde_json::from_str::<Wire>(body).unwrap() {
                        Wire::Items(items) => {
                            out.extend(items.into_iter().map(|i| Got::Item(Box::new(i))))
                        }
                        other => panic!("stored {other:?}"),
                    }
                }
                Wire::Events { at, count } => out.push(Got::Events(at, count)),
                Wire::Auth => panic!("auth in items"),
            }
        }
        out
    }

    #[test]
    fn small_items_share_notifications_under_the_limit_and_keep_their_order() {
        let items: Vec<Published> = (0..200).map(|i| transition(&format!("r{i}"))).collect();
        let p = pack(&items, MAX_NOTIFY_BYTES).unwrap();
        assert!(p.notifications.len() > 1 && p.notifications.len() < 200);
        assert!(p.notifications.iter().all(|n| n.len() <= MAX_NOTIFY_BYTES));
        assert!(p.stored.is_empty());
        let want: Vec<Got> = items.into_iter().map(|i| Got::Item(Box::new(i))).collect();
        assert_eq!(unpack(&p), want);
    }

    #[test]
    fn an_oversized_item_goes_by_reference_in_its_place() {
        let items = vec![
            transition("a"),
            transition(&"x".repeat(20_000)),
            transition("c"),
        ];
        let p = pack(&items, MAX_NOTIFY_BYTES).unwrap();
        assert_eq!(p.stored.len(), 1);
        assert_eq!(p.notifications.len(), 3);
        assert!(p.notifications[1].starts_with("{\"ref\":"));
        let want: Vec<Got> = items.into_iter().map(|i| Got::Item(Box::new(i))).collect();
        assert_eq!(unpack(&p), want);
    }

    #[test]
    fn events_go_as_one_stamp_per_commit_whatever_their_size_and_in_place() {
        let t1 = Utc.timestamp_micros(1_700_000_000_000_001).unwrap();
        let t2 = Utc.timestamp_micros(1_700_000_000_000_002).unwrap();
        let big = "x".repeat(50_000);
        let items = vec![
            event("a", t1),
            event(&big, t1),
            event("c", t1),
            transition("between"),
            event("d", t2),
        ];
        let p = pack(&items, MAX_NOTIFY_BYTES).unwrap();
        assert!(p.stored.is_empty(), "events are never stored as payloads");
        assert_eq!(p.notifications.len(), 3);
        assert!(p.notifications[0].len() < 64 && p.notifications[2].len() < 64);
        assert_eq!(
            unpack(&p),
            vec![
                Got::Events(t1.timestamp_micros(), 3),
                Got::Item(Box::new(items[3].clone())),
                Got::Events(t2.timestamp_micros(), 1),
            ]
        );
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
