//! Shared executions of identical subscriptions.
//!
//! Ten thousand clients subscribing to the same `eventCreated` selection
//! used to cost ten thousand executions of that selection per event. Here
//! subscriptions that are identical in everything that can change their
//! results — document text, operation name, variables and the caller
//! (user, name, role, pending password change: everything of the identity
//! but the credential it came with; see [`Caller`]) — share one execution
//! (a *group*). Each result is serialised once; every member gets it as the
//! same bytes and only wraps them in its own frame (its id).
//!
//! Only subscription operations with a single root field from
//! [`SharedField`] are shared; everything else runs on its own as before.
//! Those fields' resolvers record, through a [`SourceMark`], the number
//! ([`crate::pubsub::Sequence`]) of the published item each result comes
//! from. A member remembers the last number published when it joined and
//! receives exactly the results of later items, so joining a running group
//! shows nothing committed before the member subscribed and misses nothing
//! committed after (results without a number, such as a validation or
//! guard error, go to every member).
//!
//! A group starts with its first member and is dropped (its execution
//! cancelled, its topic subscription released) when its last member leaves.
//! When the execution ends (an error before the first result, say), every
//! member receives what it produced and then the end; a member joining
//! after that starts a new group.
//!
//! Each member has its own bounded queue of [`MEMBER_CAPACITY`] results: a
//! member that falls that far behind loses the newest results, not the
//! others' pace, and gets an `UNAVAILABLE` item saying how many it missed in
//! their place (the same item its field sends when the subscription itself
//! falls behind), then the stream goes on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use async_graphql::{PathSegment, Pos, Response};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use uuid::Uuid;

use crate::auth::{Auth, Role};
use crate::error::AppError;
use crate::pubsub::{Sequence, SourceMark};

/// How many results a member may have waiting before it loses some.
pub const MEMBER_CAPACITY: usize = crate::pubsub::TOPIC_CAPACITY;

/// The root fields whose subscriptions may be shared: their resolvers
/// record a [`SourceMark`], and each says what a lagging member receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedField {
    /// `eventCreated`.
    EventCreated,
    /// `alertStateChanged`.
    AlertStateChanged,
    /// `incidentCreated`.
    IncidentCreated,
    /// `incidentUpdated`.
    IncidentUpdated,
}

impl SharedField {
    fn from_name(name: &str) -> Option<SharedField> {
        match name {
            "eventCreated" => Some(SharedField::EventCreated),
            "alertStateChanged" => Some(SharedField::AlertStateChanged),
            "incidentCreated" => Some(SharedField::IncidentCreated),
            "incidentUpdated" => Some(SharedField::IncidentUpdated),
            _ => None,
        }
    }

    fn lagged(self, n: u64) -> AppError {
        match self {
            SharedField::EventCreated => crate::events::graphql::lagged(n),
            SharedField::AlertStateChanged => crate::alerts::graphql::lagged(n),
            SharedField::IncidentCreated => crate::incidents::live::created_lagged(n),
            SharedField::IncidentUpdated => crate::incidents::live::updated_lagged(n),
        }
    }
}

/// What a shareable subscription selects at its root.
#[derive(Debug, Clone)]
pub struct Root {
    field: SharedField,
    /// The field's alias or name: the key of its results and errors.
    response_key: String,
    pos: Pos,
}

impl Root {
    /// The item a member that missed `n` results receives, shaped like the
    /// one the field's own stream sends when it falls behind.
    fn lagged(&self, n: u64) -> Response {
        let error = async_graphql::Error::from(self.field.lagged(n))
            .into_server_error(self.pos)
            .with_path(vec![PathSegment::Field(self.response_key.clone())]);
        Response::from_errors(vec![error])
    }
}

/// The root field of `request` when it may share an execution: a
/// subscription operation (the one that will run) selecting exactly one
/// field, from [`SharedField`]. Parses the document (kept in the request).
pub fn shareable(request: &mut async_graphql::Request) -> Option<Root> {
    let name = request.operation_name.clone();
    let doc = request.parsed_query().ok()?;
    let op = match (&doc.operations, name) {
        (DocumentOperations::Single(op), None) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name.as_str())?,
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next()?,
        _ => return None,
    };
    if op.node.ty != OperationType::Subscription {
        return None;
    }
    let [item] = op.node.selection_set.node.items.as_slice() else {
        return None;
    };
    let Selection::Field(field) = &item.node else {
        return None;
    };
    Some(Root {
        field: SharedField::from_name(field.node.name.node.as_str())?,
        response_key: field.node.response_key().node.to_string(),
        pos: field.pos,
    })
}

/// Everything about a caller that can change a subscription's results or
/// whether it may run: resolvers and guards read the user, its role and
/// whether it must change its password; none reads which credential (session
/// or API key) it came with, whose expiry and revocation each connection
/// checks for itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Caller {
    Anonymous,
    Invalid,
    User {
        user_id: Uuid,
        username: String,
        role: Role,
        must_change_password: bool,
    },
}

impl Caller {
    fn of(auth: &Auth) -> Caller {
        match auth {
            Auth::Anonymous => Caller::Anonymous,
            Auth::Invalid => Caller::Invalid,
            Auth::User(i) => Caller::User {
                user_id: i.user_id,
                username: i.username.clone(),
                role: i.role,
                must_change_password: i.must_change_password,
            },
        }
    }
}

/// What makes two subscriptions the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    query: String,
    operation_name: Option<String>,
    /// The variables as JSON text.
    variables: String,
    caller: Caller,
}

impl Key {
    /// The key of `request` run by `auth`.
    pub fn new(request: &async_graphql::Request, auth: &Auth) -> Key {
        Key {
            query: request.query.clone(),
            operation_name: request.operation_name.clone(),
            variables: serde_json::to_string(&request.variables).unwrap_or_default(),
            caller: Caller::of(auth),
        }
    }
}

/// One result of a shared execution, serialised once for every member.
#[derive(Debug)]
pub struct SharedResult {
    /// The response as JSON: a frame's `payload`.
    pub payload: String,
    /// When the response carries only errors: them, as a JSON array (the
    /// `payload` of an `error` message, sent instead when this is a
    /// member's first result).
    pub errors_only: Option<String>,
}

impl SharedResult {
    fn new(response: &Response) -> serde_json::Result<SharedResult> {
        let errors_only = (response.data == async_graphql::Value::Null
            && !response.errors.is_empty())
        .then(|| serde_json::to_string(&response.errors))
        .transpose()?;
        Ok(SharedResult {
            payload: serde_json::to_string(response)?,
            errors_only,
        })
    }
}

/// What a member receives.
#[derive(Debug)]
pub enum MemberItem {
    /// The next result, shared.
    Shared(Arc<SharedResult>),
    /// A result of its own (it fell behind: how many it missed).
    Own(Box<Response>),
    /// A result could not be serialised; the connection should close.
    Failed,
}

#[derive(Debug, Clone)]
enum Msg {
    Result(Arc<SharedResult>),
    Lagged(u64),
    Failed,
}

struct Member {
    id: u64,
    /// The last sequence number published when it joined.
    joined_at: u64,
    tx: mpsc::Sender<Msg>,
    /// Results it lost since its queue was last free.
    dropped: u64,
}

#[derive(Default)]
struct Members {
    list: Vec<Member>,
    /// The execution ended: members get nothing more, joiners start anew.
    closed: bool,
}

struct Group {
    id: u64,
    members: Mutex<Members>,
    driver: Mutex<Option<AbortHandle>>,
}

impl Group {
    fn members(&self) -> MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands a result of item `seq` (`None`: of no item) to every member
    /// that joined before that item was published.
    fn send(&self, seq: Option<u64>, msg: &Msg) {
        let mut members = self.members();
        for m in members.list.iter_mut() {
            if seq.is_some_and(|s| s <= m.joined_at) {
                continue;
            }
            if m.dropped > 0 {
                match m.tx.try_send(Msg::Lagged(m.dropped)) {
                    Ok(()) => m.dropped = 0,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        m.dropped += 1;
                        continue;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => continue,
                }
            }
            if let Err(mpsc::error::TrySendError::Full(_)) = m.tx.try_send(msg.clone()) {
                m.dropped += 1;
            }
        }
    }
}

/// The running shared executions of one server.
#[derive(Default)]
pub struct Registry {
    groups: Mutex<HashMap<Key, Arc<Group>>>,
    next_id: AtomicU64,
}

impl Registry {
    fn groups(&self) -> MutexGuard<'_, HashMap<Key, Arc<Group>>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of running shared executions.
    pub fn groups_running(&self) -> usize {
        self.groups().len()
    }

    /// Joins the group of `key`, starting it with `start` (the execution,
    /// given the mark its resolver must record into) when there is none.
    /// `sequence` numbers what the resolvers read. The stream ends when
    /// the execution does; dropping it leaves the group.
    pub fn join<F>(
        self: &Arc<Self>,
        key: Key,
        root: Root,
        sequence: &Sequence,
        start: F,
    ) -> impl Stream<Item = MemberItem> + Send + 'static
    where
        F: FnOnce(SourceMark) -> BoxStream<'static, Response>,
    {
        let (tx, rx) = mpsc::channel(MEMBER_CAPACITY);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Called under the lock that hands out results (see below).
        let member = || Member {
            id,
            joined_at: sequence.current(),
            tx: tx.clone(),
            dropped: 0,
        };
        let mut groups = self.groups();
        let existing = groups.get(&key).cloned();
        let group = match existing {
            Some(group) => {
                let mut members = group.members();
                if members.closed {
                    None
                } else {
                    // Read under the members' lock: a result of any later
                    // item is handed out after this member is listed.
                    members.list.push(member());
                    drop(members);
                    Some(group)
                }
            }
            None => None,
        };
        let group = match group {
            Some(group) => group,
            None => {
                let group = Arc::new(Group {
                    id: self.next_id.fetch_add(1, Ordering::Relaxed),
                    members: Mutex::new(Members {
                        list: vec![member()],
                        closed: false,
                    }),
                    driver: Mutex::new(None),
                });
                let mark = SourceMark::new();
                let execution = start(mark.clone());
                let task = tokio::spawn(drive(
                    self.clone(),
                    key.clone(),
                    group.clone(),
                    execution,
                    mark,
                ));
                *group.driver.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
                groups.insert(key.clone(), group.clone());
                group
            }
        };
        drop(groups);
        drop(tx);
        let membership = Membership {
            registry: self.clone(),
            key,
            group,
            member: id,
        };
        futures_util::stream::unfold(
            (rx, membership, root),
            |(mut rx, membership, root)| async move {
                let item = match rx.recv().await? {
                    Msg::Result(r) => MemberItem::Shared(r),
                    Msg::Lagged(n) => MemberItem::Own(Box::new(root.lagged(n))),
                    Msg::Failed => MemberItem::Failed,
                };
                Some((item, (rx, membership, root)))
            },
        )
    }

    /// The execution of `group` ended: its members get the end, and the
    /// group leaves the registry.
    fn finish(&self, key: &Key, group: &Group) {
        let mut groups = self.groups();
        {
            let mut members = group.members();
            members.closed = true;
            members.list.clear();
        }
        if groups.get(key).is_some_and(|g| g.id == group.id) {
            groups.remove(key);
        }
    }

    fn leave(&self, key: &Key, group: &Group, member: u64) {
        let mut groups = self.groups();
        let empty = {
            let mut members = group.members();
            if let Some(i) = members.list.iter().position(|m| m.id == member) {
                members.list.swap_remove(i);
            }
            members.list.is_empty()
        };
        if !empty {
            return;
        }
        if groups.get(key).is_some_and(|g| g.id == group.id) {
            groups.remove(key);
        }
        drop(groups);
        if let Some(driver) = group
            .driver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            driver.abort();
        }
    }
}

/// A member's place in its group, left when dropped.
struct Membership {
    registry: Arc<Registry>,
    key: Key,
    group: Arc<Group>,
    member: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.registry.leave(&self.key, &self.group, self.member);
    }
}

/// Ends the group however the driver stops (its execution ended, it
/// panicked, or it was cancelled after its last member left).
struct Finish {
    registry: Arc<Registry>,
    key: Key,
    group: Arc<Group>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.registry.finish(&self.key, &self.group);
    }
}

/// Runs a group's execution, serialising each result once and handing it to
/// the members.
async fn drive(
    registry: Arc<Registry>,
    key: Key,
    group: Arc<Group>,
    mut execution: BoxStream<'static, Response>,
    mark: SourceMark,
) {
    let _finish = Finish {
        registry,
        key,
        group: group.clone(),
    };
    while let Some(mut response) = execution.next().await {
        // The execution yields a result before it reads the next item, so
        // the mark names the item this result comes from.
        let seq = mark.take();
        crate::graphql::normalize_errors(&mut response);
        match SharedResult::new(&response) {
            Ok(result) => group.send(seq, &Msg::Result(Arc::new(result))),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialise a subscription result");
                group.send(None, &Msg::Failed);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_of(query: &str, name: Option<&str>) -> Option<SharedField> {
        let mut request = async_graphql::Request::new(query);
        if let Some(name) = name {
            request = request.operation_name(name);
        }
        shareable(&mut request).map(|r| r.field)
    }

    #[test]
    fn only_single_field_subscriptions_of_known_fields_are_shared() {
        assert_eq!(
            root_of("subscription { eventCreated { id } }", None),
            Some(SharedField::EventCreated)
        );
        assert_eq!(
            root_of("subscription S { a: alertStateChanged { id } }", Some("S")),
            Some(SharedField::AlertStateChanged)
        );
        assert_eq!(
            root_of(
                "subscription S { incidentCreated { id } } query Q { me { id } }",
                Some("S")
            ),
            Some(SharedField::IncidentCreated)
        );
        // Two root fields, a query, a mutation, a fragment at the root, an
        // unknown field, a name that picks nothing, unparseable text.
        for (query, name) in [
            (
                "subscription { eventCreated { id } alertStateChanged { id } }",
                None,
            ),
            ("query { eventCreated { id } }", None),
            ("mutation { eventCreated { id } }", None),
            (
                "subscription { ...F } fragment F on Subscription { eventCreated { id } }",
                None,
            ),
            ("subscription { somethingElse }", None),
            ("subscription { eventCreated { id } }", Some("S")),
            (
                "subscription A { eventCreated { id } } subscription B { eventCreated { id } }",
                None,
            ),
            ("subscription {", None),
        ] {
            assert_eq!(root_of(query, name), None, "{query}");
        }
    }

    fn event_root() -> Root {
        shareable(&mut async_graphql::Request::new(
            "subscription { eventCreated { message } }",
        ))
        .expect("shareable")
    }

    fn anonymous_key() -> Key {
        Key::new(
            &async_graphql::Request::new("subscription { eventCreated { message } }"),
            &Auth::Anonymous,
        )
    }

    /// The `data` of a shared result.
    fn data(item: Option<MemberItem>) -> serde_json::Value {
        match item {
            Some(MemberItem::Shared(r)) => {
                serde_json::from_str::<serde_json::Value>(&r.payload).unwrap()["data"].clone()
            }
            other => panic!("expected a shared result, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_late_member_gets_only_what_was_published_after_it_joined() {
        let registry = Arc::new(Registry::default());
        let topic = crate::pubsub::Topic::<u64>::new(16);
        let source = |mark: SourceMark| {
            topic
                .subscribe_marked(Some(mark))
                .map(|d| match d {
                    crate::pubsub::Delivery::Item(n) => {
                        Response::new(async_graphql::Value::from(n))
                    }
                    other => panic!("unexpected {other:?}"),
                })
                .boxed()
        };
        let mut first =
            Box::pin(registry.join(anonymous_key(), event_root(), topic.sequence(), source));
        // Published before the second member joins, and not yet run by the
        // shared execution (this runtime has run nothing since).
        topic.publish(1);
        topic.publish(2);
        let mut second = Box::pin(registry.join(
            anonymous_key(),
            event_root(),
            topic.sequence(),
            |_| futures_util::stream::empty().boxed(),
        ));
        topic.publish(3);
        assert_eq!(registry.groups_running(), 1);
        for n in [1, 2, 3] {
            assert_eq!(data(first.next().await), serde_json::json!(n));
        }
        assert_eq!(data(second.next().await), serde_json::json!(3));
        // The last member leaving ends the execution and its subscription.
        drop(first);
        drop(second);
        assert_eq!(registry.groups_running(), 0);
        for _ in 0..100 {
            if topic.subscriber_count() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(topic.subscriber_count(), 0);
    }

    #[tokio::test]
    async fn a_member_that_falls_behind_is_told_how_many_it_missed_without_slowing_the_others() {
        let registry = Arc::new(Registry::default());
        let sequence = Sequence::default();
        let (tx, rx) = mpsc::unbounded_channel::<Response>();
        let mut rx = Some(rx);
        let mut slow = Box::pin(
            registry.join(anonymous_key(), event_root(), &sequence, |_| {
                tokio_stream::wrappers::UnboundedReceiverStream::new(rx.take().unwrap()).boxed()
            }),
        );
        let mut fast = Box::pin(
            registry.join(anonymous_key(), event_root(), &sequence, |_| {
                futures_util::stream::empty().boxed()
            }),
        );
        let total = MEMBER_CAPACITY as u64 + 5;
        for n in 0..total {
            tx.send(Response::new(async_graphql::Value::from(n)))
                .unwrap();
            assert_eq!(data(fast.next().await), serde_json::json!(n));
        }
        for n in 0..MEMBER_CAPACITY as u64 {
            assert_eq!(data(slow.next().await), serde_json::json!(n));
        }
        tx.send(Response::new(async_graphql::Value::from(total)))
            .unwrap();
        assert_eq!(data(fast.next().await), serde_json::json!(total));
        match slow.next().await {
            Some(MemberItem::Own(r)) => {
                assert_eq!(r.errors.len(), 1);
                assert!(
                    r.errors[0].message.contains(" 5 events were skipped"),
                    "{:?}",
                    r.errors
                );
            }
            other => panic!("expected the lag item, got {other:?}"),
        }
        assert_eq!(data(slow.next().await), serde_json::json!(total));
        // The execution ending ends every member.
        drop(tx);
        assert!(fast.next().await.is_none());
        assert!(slow.next().await.is_none());
        assert_eq!(registry.groups_running(), 0);
    }

    #[test]
    fn the_key_tells_callers_apart_but_not_their_credentials() {
        use crate::auth::{Credential, Identity};
        let request = async_graphql::Request::new("subscription { eventCreated { id } }");
        let user = |role, credential| {
            Auth::User(Identity {
                user_id: Uuid::nil(),
                username: "u".into(),
                role,
                must_change_password: false,
                credential,
            })
        };
        let session = Credential::Session {
            id: Uuid::now_v7(),
            expires_at: chrono::Utc::now(),
        };
        let key = Credential::ApiKey {
            id: Uuid::now_v7(),
            expires_at: None,
        };
        assert_eq!(
            Key::new(&request, &user(Role::User, session.clone())),
            Key::new(&request, &user(Role::User, key))
        );
        assert_ne!(
            Key::new(&request, &user(Role::User, session.clone())),
            Key::new(&request, &user(Role::Admin, session.clone()))
        );
        assert_ne!(
            Key::new(&request, &user(Role::User, session)),
            Key::new(&request, &Auth::Anonymous)
        );
        let with_vars = async_graphql::Request::new("subscription { eventCreated { id } }")
            .variables(async_graphql::Variables::from_json(
                serde_json::json!({"a": 1}),
            ));
        assert_ne!(
            Key::new(&request, &Auth::Anonymous),
            Key::new(&with_vars, &Auth::Anonymous)
        );
    }
}
