//! Live updates: the hub that services publish changes to and subscriptions
//! read from.
//!
//! The hub is owned by the application state (never a global). Each topic is
//! an in-process broadcast channel; a subscriber that falls behind is told how
//! many items it missed ([`Delivery::Lagged`]) instead of its stream silently
//! ending.
//!
//! Services publish through [`Hub::announce`] inside their writing
//! transaction, then call [`Announcement::committed`] once it committed:
//!
//! - On SQLite (one process) the items go to the local topics after the
//!   commit; nothing is announced for a transaction that rolled back.
//! - On PostgreSQL (possibly several replicas) the items are sent with
//!   `pg_notify` inside the transaction, so PostgreSQL delivers them, in commit
//!   order, only if it commits (events by reference to their commit stamp,
//!   see [`notify`]). Every replica, this one included, delivers to
//!   its local subscribers only what its listener ([`notify`]) receives: local
//!   and remote writes reach a subscriber the same way, exactly once. While
//!   the listener is disconnected, subscribers get [`Delivery::Gap`].

pub mod notify;

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{Stream, StreamExt};
use sea_orm::DatabaseTransaction;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::error::AppResult;

/// How many items a topic buffers for its slowest subscriber.
pub const TOPIC_CAPACITY: usize = 8192;

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery<T> {
    /// The next item, in publish order.
    Item(T),
    /// The subscriber fell behind and this many items were skipped.
    Lagged(u64),
    /// The feed of committed changes was interrupted (PostgreSQL: the
    /// listener lost its connection): items may have been missed, how many
    /// is unknown. The stream goes on.
    Gap(GapPhase),
}

/// Which side of an interruption a [`Delivery::Gap`] marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapPhase {
    /// The feed just stopped: items committed from now on are missed until
    /// it resumes (another gap item says so).
    Interrupted,
    /// The feed is back: items committed during the interruption were
    /// missed, and catching up now leaves no hole.
    Resumed,
}

impl GapPhase {
    /// The `UNAVAILABLE` error item a subscriber receives; `catch_up` says
    /// how to fetch what was missed for this stream.
    pub fn error(self, what: &str, catch_up: &str) -> crate::error::AppError {
        let message = match self {
            GapPhase::Interrupted => format!(
                "live updates are interrupted (the server lost its notification connection to the \
                 database and is reconnecting): {what} committed from now on may be missed until \
                 another error item says they resumed; this stream stays open"
            ),
            GapPhase::Resumed => format!(
                "live updates resumed after an interruption and {what} committed meanwhile may \
                 have been missed: {catch_up}, then keep reading this stream"
            ),
        };
        crate::error::AppError::new(crate::error::ErrorCode::Unavailable, message)
    }
}

#[derive(Debug, Clone)]
enum Sent<T> {
    Item(T),
    Gap(GapPhase),
}

/// Numbers everything published on the hub's topics, in publish order
/// across all of them (1, 2, …). Shared subscription executions use it to
/// tell a subscriber that joined late from the items published before it
/// joined (see [`crate::fanout`]).
#[derive(Debug, Default)]
pub struct Sequence {
    last: Mutex<u64>,
}

impl Sequence {
    /// The number of the last item published on any topic (0: none yet).
    /// Everything published later gets a higher one.
    pub fn current(&self) -> u64 {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers the next item and hands it to `send` under the same lock, so
    /// items reach subscribers in the order of their numbers.
    fn next<R>(&self, send: impl FnOnce(u64) -> R) -> R {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        *last += 1;
        send(*last)
    }
}

/// Where a subscription's source stream records the number of the item it
/// handed out last, so whoever runs the subscription knows which published
/// item each result comes from. Put it in the request data; the resolvers
/// pass it to [`Topic::subscribe_marked`].
#[derive(Debug, Clone)]
pub struct SourceMark(Arc<AtomicU64>);

impl SourceMark {
    const UNMARKED: u64 = u64::MAX;

    /// A mark with nothing recorded.
    pub fn new() -> Self {
        SourceMark(Arc::new(AtomicU64::new(Self::UNMARKED)))
    }

    pub(crate) fn set(&self, seq: u64) {
        self.0.store(seq, Ordering::Release);
    }

    /// The number recorded since the last call, if any, and clears it.
    pub fn take(&self) -> Option<u64> {
        match self.0.swap(Self::UNMARKED, Ordering::AcqRel) {
            Self::UNMARKED => None,
            seq => Some(seq),
        }
    }
}

impl Default for SourceMark {
    fn default() -> Self {
        SourceMark::new()
    }
}

/// One stream of published items of type `T`.
#[derive(Debug)]
pub struct Topic<T> {
    tx: broadcast::Sender<(u64, Sent<T>)>,
    sequence: Arc<Sequence>,
}

impl<T: Clone + Send + 'static> Topic<T> {
    /// A topic buffering `capacity` items per subscriber, with its own
    /// numbering.
    pub fn new(capacity: usize) -> Self {
        Topic::numbered(capacity, Arc::new(Sequence::default()))
    }

    fn numbered(capacity: usize, sequence: Arc<Sequence>) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Topic { tx, sequence }
    }

    /// Sends an item to every current subscriber (none is fine).
    pub fn publish(&self, item: T) {
        self.sequence.next(|seq| {
            let _ = self.tx.send((seq, Sent::Item(item)));
        });
    }

    /// Tells every current subscriber that items may have been missed.
    pub fn gap(&self, phase: GapPhase) {
        self.sequence.next(|seq| {
            let _ = self.tx.send((seq, Sent::Gap(phase)));
        });
    }

    /// The numbering of this topic's items.
    pub fn sequence(&self) -> &Sequence {
        &self.sequence
    }

    /// Number of live subscribers.
    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// A stream of everything published from now on.
    pub fn subscribe(&self) -> Pin<Box<dyn Stream<Item = Delivery<T>> + Send>> {
        self.subscribe_marked(None)
    }

    /// [`Topic::subscribe`] that also records in `mark`, as it hands out
    /// each delivery, the number of the published item it comes from (for
    /// [`Delivery::Lagged`]: the last number published when the loss was
    /// noticed, which is at least that of every item lost).
    pub fn subscribe_marked(
        &self,
        mark: Option<SourceMark>,
    ) -> Pin<Box<dyn Stream<Item = Delivery<T>> + Send>> {
        let sequence = self.sequence.clone();
        BroadcastStream::new(self.tx.subscribe())
            .map(move |r| {
                let (seq, delivery) = match r {
                    Ok((seq, Sent::Item(item))) => (seq, Delivery::Item(item)),
                    Ok((seq, Sent::Gap(phase))) => (seq, Delivery::Gap(phase)),
                    Err(BroadcastStreamRecvError::Lagged(n)) => {
                        (sequence.current(), Delivery::Lagged(n))
                    }
                };
                if let Some(mark) = &mark {
                    mark.set(seq);
                }
                delivery
            })
            .boxed()
    }
}

/// The topics of every domain; a domain that publishes adds its field here.
pub struct Topics {
    /// Numbers the items of all three topics.
    sequence: Arc<Sequence>,
    /// Committed events, in commit order.
    pub events: Topic<Arc<crate::events::entity::Model>>,
    /// Created and changed incidents, in commit order.
    pub incidents: Topic<Arc<crate::incidents::service::IncidentEvent>>,
    /// Committed alert instance transitions, in commit order.
    pub alerts: Topic<Arc<crate::alerts::entity::transition::Model>>,
}

impl Topics {
    fn new(capacity: usize) -> Self {
        let sequence = Arc::new(Sequence::default());
        Topics {
            events: Topic::numbered(capacity, sequence.clone()),
            incidents: Topic::numbered(capacity, sequence.clone()),
            alerts: Topic::numbered(capacity, sequence.clone()),
            sequence,
        }
    }

    /// The numbering shared by the topics.
    pub fn sequence(&self) -> &Sequence {
        &self.sequence
    }

    pub(crate) fn gap(&self, phase: GapPhase) {
        self.events.gap(phase);
        self.incidents.gap(phase);
        self.alerts.gap(phase);
    }
}

/// One published change, as it travels between replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "topic", content = "item", rename_all = "camelCase")]
pub enum Published {
    /// For the `events` topic.
    Event(crate::events::entity::Model),
    /// For the `incidents` topic.
    Incident(crate::incidents::service::IncidentEvent),
    /// For the `alerts` topic.
    Alert(crate::alerts::entity::transition::Model),
}

impl Published {
    /// Hands the item to the local subscribers of its topic.
    fn deliver(self, topics: &Topics) {
        match self {
            Published::Event(e) => topics.events.publish(Arc::new(e)),
            Published::Incident(i) => topics.incidents.publish(Arc::new(i)),
            Published::Alert(a) => topics.alerts.publish(Arc::new(a)),
        }
    }
}

/// The hub: one topic per kind of change, plus the auth generation.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    auth_generation: watch::Sender<u64>,
    topics: Topics,
    remote: Option<notify::Remote>,
}

impl Hub {
    /// An in-process hub (SQLite: one process).
    pub fn new() -> Self {
        Hub::build(None)
    }

    /// A hub fed by PostgreSQL `LISTEN/NOTIFY` through `pool`; start its
    /// listener with [`notify::Listener::start`].
    pub fn postgres(pool: sqlx::PgPool) -> Self {
        Hub::build(Some(notify::Remote::new(pool)))
    }

    fn build(remote: Option<notify::Remote>) -> Self {
        let (auth_generation, _) = watch::channel(0);
        Hub {
            inner: Arc::new(HubInner {
                auth_generation,
                topics: Topics::new(TOPIC_CAPACITY),
                remote,
            }),
        }
    }

    /// The domain topics.
    pub fn topics(&self) -> &Topics {
        &self.inner.topics
    }

    /// Whether items travel through PostgreSQL (and so reach every replica).
    pub fn is_distributed(&self) -> bool {
        self.inner.remote.is_some()
    }

    /// The cross-replica listener's state; `None` on an in-process hub.
    pub fn listener_status(&self) -> Option<notify::ListenerReport> {
        self.inner.remote.as_ref().map(|r| r.status.report())
    }

    /// Publishes `items` as part of `txn`. On PostgreSQL they are sent with
    /// `pg_notify` inside it (every replica delivers them once it commits);
    /// on SQLite they are held until [`Announcement::committed`]. Call that
    /// after the commit in both cases.
    pub async fn announce(
        &self,
        txn: &DatabaseTransaction,
        items: Vec<Published>,
    ) -> AppResult<Announcement> {
        if self.is_distributed() {
            notify::send_in(txn, &items).await?;
            return Ok(Announcement {
                hub: self.clone(),
                local: Vec::new(),
            });
        }
        Ok(Announcement {
            hub: self.clone(),
            local: items,
        })
    }

    /// Announces, as part of `txn`, the `count` events it stores with the
    /// commit stamp `received_at`, without building them: on PostgreSQL one
    /// small notification (listeners with event subscribers read the rows
    /// back); on SQLite nothing, the writer publishes after the commit.
    pub async fn announce_events(
        &self,
        txn: &DatabaseTransaction,
        received_at: chrono::DateTime<chrono::Utc>,
        count: usize,
    ) -> AppResult<()> {
        if self.is_distributed() {
            notify::send_events_in(txn, received_at, count).await?;
        }
        Ok(())
    }

    /// Delivers items to the local subscribers (the listener, or the
    /// in-process path after a commit).
    pub(crate) fn deliver_local(&self, items: Vec<Published>) {
        for item in items {
            item.deliver(&self.inner.topics);
        }
    }

    /// Signals that some credential or user changed (logout, revocation,
    /// deactivation, role change), once that change has committed: live
    /// connections re-check theirs, on this replica at once and on the
    /// others through PostgreSQL. Returns once the signal is committed, so
    /// anything the caller writes afterwards reaches every replica after it.
    pub async fn auth_changed(&self) {
        self.bump_auth();
        if let Some(remote) = &self.inner.remote {
            remote.send_auth_changed().await;
        }
    }

    pub(crate) fn bump_auth(&self) {
        self.inner.auth_generation.send_modify(|g| *g += 1);
    }

    /// Watches the auth generation.
    pub fn auth_watch(&self) -> watch::Receiver<u64> {
        self.inner.auth_generation.subscribe()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

/// Items published by a transaction; call [`Announcement::committed`] once
/// it has committed (dropping it instead announces nothing locally).
#[must_use = "call `committed()` after the transaction commits"]
pub struct Announcement {
    hub: Hub,
    local: Vec<Published>,
}

impl Announcement {
    /// The transaction committed: on SQLite, deliver now; on PostgreSQL the
    /// listener delivers what PostgreSQL hands it.
    pub fn committed(self) {
        self.hub.deliver_local(self.local);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_receive_items_in_publish_order() {
        let topic = Topic::new(16);
        let mut s = topic.subscribe();
        topic.publish(1);
        topic.publish(2);
        assert_eq!(s.next().await, Some(Delivery::Item(1)));
        assert_eq!(s.next().await, Some(Delivery::Item(2)));
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_how_much_it_missed_and_continues() {
        let topic = Topic::new(2);
        let mut s = topic.subscribe();
        for i in 0..5 {
            topic.publish(i);
        }
        assert_eq!(s.next().await, Some(Delivery::Lagged(3)));
        assert_eq!(s.next().await, Some(Delivery::Item(3)));
        assert_eq!(s.next().await, Some(Delivery::Item(4)));
    }

    #[tokio::test]
    async fn a_gap_is_delivered_in_place_and_the_stream_goes_on() {
        let topic = Topic::new(16);
        let mut s = topic.subscribe();
        topic.publish(1);
        topic.gap(GapPhase::Resumed);
        topic.publish(2);
        assert_eq!(s.next().await, Some(Delivery::Item(1)));
        assert_eq!(s.next().await, Some(Delivery::Gap(GapPhase::Resumed)));
        assert_eq!(s.next().await, Some(Delivery::Item(2)));
    }

    #[tokio::test]
    async fn auth_changes_wake_watchers() {
        let hub = Hub::new();
        let mut w = hub.auth_watch();
        hub.auth_changed().await;
        w.changed().await.unwrap();
        assert_eq!(*w.borrow(), 1);
    }
}
