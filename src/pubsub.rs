//! Live updates: the hub that services publish changes to and subscriptions
//! read from.
//!
//! The hub is owned by the application state (never a global). Each topic is
//! an in-process broadcast channel; a subscriber that falls behind is told how
//! many items it missed ([`Delivery::Lagged`]) instead of its stream silently
//! ending. A cross-replica transport (PostgreSQL `LISTEN/NOTIFY`) plugs in
//! behind [`Topic::publish`] by feeding the same channels.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// How many items a topic buffers for its slowest subscriber.
pub const TOPIC_CAPACITY: usize = 8192;

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery<T> {
    /// The next item, in publish order.
    Item(T),
    /// The subscriber fell behind and this many items were skipped.
    Lagged(u64),
}

/// One stream of published items of type `T`.
#[derive(Debug)]
pub struct Topic<T> {
    tx: broadcast::Sender<T>,
}

impl<T: Clone + Send + 'static> Topic<T> {
    /// A topic buffering `capacity` items per subscriber.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Topic { tx }
    }

    /// Sends an item to every current subscriber (none is fine).
    pub fn publish(&self, item: T) {
        let _ = self.tx.send(item);
    }

    /// Number of live subscribers.
    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// A stream of everything published from now on.
    pub fn subscribe(&self) -> Pin<Box<dyn Stream<Item = Delivery<T>> + Send>> {
        BroadcastStream::new(self.tx.subscribe())
            .map(|r| match r {
                Ok(item) => Delivery::Item(item),
                Err(BroadcastStreamRecvError::Lagged(n)) => Delivery::Lagged(n),
            })
            .boxed()
    }
}

/// The topics of every domain; a domain that publishes adds its field here.
pub struct Topics {
    /// Committed events, in commit order.
    pub events: Topic<Arc<crate::events::entity::Model>>,
    /// Created and changed incidents, in commit order.
    pub incidents: Topic<Arc<crate::incidents::service::IncidentEvent>>,
    /// Committed alert instance transitions, in commit order.
    pub alerts: Topic<Arc<crate::alerts::entity::transition::Model>>,
}

impl Topics {
    fn new(capacity: usize) -> Self {
        Topics {
            events: Topic::new(capacity),
            incidents: Topic::new(capacity),
            alerts: Topic::new(capacity),
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
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        let (auth_generation, _) = watch::channel(0);
        Hub {
            inner: Arc::new(HubInner {
                auth_generation,
                topics: Topics::new(TOPIC_CAPACITY),
            }),
        }
    }

    /// The domain topics.
    pub fn topics(&self) -> &Topics {
        &self.inner.topics
    }

    /// Signals that some credential or user changed (logout, revocation,
    /// deactivation, role change): live connections re-check theirs.
    pub fn auth_changed(&self) {
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
    async fn auth_changes_wake_watchers() {
        let hub = Hub::new();
        let mut w = hub.auth_watch();
        hub.auth_changed();
        w.changed().await.unwrap();
        assert_eq!(*w.borrow(), 1);
    }
}
