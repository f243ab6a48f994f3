//! GraphQL over WebSocket: the `graphql-transport-ws` protocol and the legacy
//! `graphql-ws` (subscriptions-transport-ws) protocol, on `GET /graphql`.
//!
//! The protocol is handled here rather than by async-graphql's built-in
//! handler so that every close code is the one the specification names
//! (4400 malformed message, 4401 subscribe before `connection_ack`, 4408 no
//! `connection_init` in time, 4409 duplicate id, 4429 second
//! `connection_init`), and so credentials are re-checked while a connection
//! lives: when any credential changes anywhere, each connection re-reads its
//! own and closes with 4403 if it no longer holds, and every delivery first
//! checks the credential's expiry.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use futures_util::{FutureExt, SinkExt, Stream, StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_stream::StreamMap;

use crate::auth::{Auth, Identity, RequestContext, service as auth_service};
use crate::fanout::{MemberItem, SharedResult};
use crate::graphql::{normalize_errors, prepare_request};
use crate::http::Server;

/// Most operations one connection may run at once.
pub const MAX_OPERATIONS_PER_CONNECTION: usize = 200;
/// How often the legacy protocol sends `ka` and the new one a WebSocket ping.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Read buffer of each connection. Clients send small JSON messages
/// (`connection_init`, `subscribe`, `ping`, `complete`); tungstenite's default
/// of 128 KiB is allocated per connection and zero-filled on every read
/// attempt, which made it most of a subscriber's memory and a cost on every
/// delivery. A bigger message (up to the body limit) still arrives whole:
/// the buffer grows to the frame's length and is filled this much per read.
pub const READ_BUFFER_SIZE: usize = 4 * 1024;
/// Write buffer of each connection: what is queued for the socket is
/// written out once it passes this size (and at every flush). tungstenite's
/// out buffer keeps the largest capacity it ever reached for the life of the
/// connection; with its default of 128 KiB, every subscriber that once got a
/// burst of results could keep up to that much (128 MiB for a thousand).
/// Now each keeps at most this plus one frame, and a batch of results still
/// goes out in a few `send` calls.
pub const WRITE_BUFFER_SIZE: usize = 8 * 1024;
/// Most results written to one connection before they are flushed: results
/// already waiting when one is written go out with it, in one `send`.
const MAX_BATCH: usize = 64;

/// The two subprotocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws` (the graphql-ws library).
    TransportWs,
    /// `graphql-ws` (the legacy subscriptions-transport-ws library).
    Legacy,
}

/// Counts live WebSocket connections so shutdown can wait for them to close,
/// and the operations (subscriptions) running on them, for the exposition.
#[derive(Debug, Default)]
pub struct ConnectionTracker {
    live: AtomicUsize,
    idle: Notify,
    operations: AtomicUsize,
}

impl ConnectionTracker {
    /// Number of open connections.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Waits until no connection is open.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.live() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn enter(self: &Arc<Self>) -> TrackerGuard {
        self.live.fetch_add(1, Ordering::SeqCst);
        TrackerGuard(self.clone())
    }

    /// Number of operations (mostly subscriptions) running on open connections.
    pub fn operations(&self) -> usize {
        self.operations.load(Ordering::Relaxed)
    }

    fn operation(self: &Arc<Self>) -> OperationGuard {
        self.operations.fetch_add(1, Ordering::Relaxed);
        OperationGuard(self.clone())
    }
}

/// Counts one running operation until dropped with its stream.
struct OperationGuard(Arc<ConnectionTracker>);

impl Drop for OperationGuard {
    fn drop(&mut self) {
        self.0.operations.fetch_sub(1, Ordering::Relaxed);
    }
}

struct TrackerGuard(Arc<ConnectionTracker>);

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Picks the subprotocol from `Sec-WebSocket-Protocol`; `None` when the
/// client offers only protocols we do not speak.
pub fn choose_protocol(parts: &Parts) -> Option<Protocol> {
    let Some(offered) = parts
        .headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
    else {
        return Some(Protocol::TransportWs);
    };
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    if offered.contains(&"graphql-transport-ws") {
        Some(Protocol::TransportWs)
    } else if offered.contains(&"graphql-ws") {
        Some(Protocol::Legacy)
    } else {
        None
    }
}

/// Answers the upgrade request and runs the connection.
pub async fn upgrade(server: Server, upgrade: WebSocketUpgrade, parts: &Parts) -> Response {
    let Some(protocol) = choose_protocol(parts) else {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            "unsupported WebSocket subprotocol: use graphql-transport-ws or graphql-ws",
        )
            .into_response();
    };
    let peer = crate::http::peer_addr(parts);
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect::<String>());
    let header_token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let limit = server.state.config.body_limit;
    upgrade
        .protocols(["graphql-transport-ws", "graphql-ws"])
        .read_buffer_size(READ_BUFFER_SIZE)
        .write_buffer_size(WRITE_BUFFER_SIZE)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            let conn = Connection::new(server, protocol, peer, user_agent, header_token);
            conn.run(socket).await;
        })
}

/// What an operation's stream yields to its connection.
enum OpItem {
    /// A result of the operation's own execution.
    Own(Box<async_graphql::Response>),
    /// A result of an execution shared with identical subscriptions.
    Shared(Arc<SharedResult>),
    /// A shared result could not be serialised.
    Failed,
    /// The operation ended.
    End,
}

type OpStream = Pin<Box<dyn Stream<Item = OpItem> + Send>>;

/// Why a connection ends.
enum Close {
    /// Close with this code and reason.
    With(u16, String),
    /// The peer went away; nothing to send.
    Gone,
}

struct Connection {
    server: Server,
    protocol: Protocol,
    peer: Option<SocketAddr>,
    user_agent: Option<String>,
    header_authorization: Option<String>,
    /// The `Authorization` value the connection authenticated with.
    authorization: Option<String>,
    identity: Option<Identity>,
    init_received: bool,
    acked: bool,
    ops: StreamMap<String, OpStream>,
    started: HashSet<String>,
}

impl Connection {
    fn new(
        server: Server,
        protocol: Protocol,
        peer: Option<SocketAddr>,
        user_agent: Option<String>,
        header_authorization: Option<String>,
    ) -> Self {
        Connection {
            server,
            protocol,
            peer,
            user_agent,
            header_authorization,
            authorization: None,
            identity: None,
            init_received: false,
            acked: false,
            ops: StreamMap::new(),
            started: HashSet::new(),
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        let _guard = self.server.state.ws_tracker.enter();
        let mut shutdown = self.server.state.shutdown.clone();
        let mut auth_watch = self.server.state.hub.auth_watch();
        auth_watch.mark_unchanged();
        let init_deadline = Instant::now() + self.server.state.config.ws_init_timeout;
        let mut keepalive = tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);

        let close = loop {
            if *shutdown.borrow() {
                break Close::With(1001, "server shutting down".to_owned());
            }
            tokio::select! {
                // What the client sent comes first: on a busy server a
                // connection may be polled only after its init deadline has
                // passed, and a `connection_init` that arrived in time must
                // then be answered rather than closed with 4408.
                biased;
                incoming = socket.recv() => {
                    let outcome = match incoming {
                        None | Some(Err(_)) => Err(Close::Gone),
                        Some(Ok(Message::Text(text))) => self.on_text(&mut socket, text.as_str()).await,
                        Some(Ok(Message::Binary(_))) => Err(Close::With(4400, "binary messages are not supported".to_owned())),
                        Some(Ok(Message::Close(_))) => Err(Close::Gone),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
                    };
                    if let Err(close) = outcome {
                        break close;
                    }
                }
                Some((id, item)) = self.ops.next(), if !self.ops.is_empty() => {
                    // Write this result and those already waiting, then
                    // flush them together.
                    let mut next = Some((id, item));
                    let mut written = 0;
                    let mut outcome = Ok(());
                    while let Some((id, item)) = next.take() {
                        if auth_watch.has_changed().unwrap_or(false) {
                            auth_watch.mark_unchanged();
                            outcome = self.recheck_credentials().await;
                            if outcome.is_err() {
                                break;
                            }
                        }
                        outcome = self.deliver(&mut socket, id, item).await;
                        written += 1;
                        if outcome.is_err() || written == MAX_BATCH {
                            break;
                        }
                        next = self.ops.next().now_or_never().flatten();
                    }
                    if outcome.is_ok() {
                        outcome = socket.flush().await.map_err(|_| Close::Gone);
                    }
                    if let Err(close) = outcome {
                        break close;
                    }
                }
                _ = tokio::time::sleep_until(init_deadline), if !self.init_received => {
                    break Close::With(4408, "Connection initialisation timeout".to_owned());
                }
                changed = auth_watch.changed(), if self.identity.is_some() => {
                    if changed.is_err() {
                        continue;
                    }
                    if let Err(close) = self.recheck_credentials().await {
                        break close;
                    }
                }
                _ = shutdown.changed() => {
                    break Close::With(1001, "server shutting down".to_owned());
                }
                _ = keepalive.tick() => {
                    let msg = match (self.protocol, self.acked) {
                        (Protocol::Legacy, true) => Message::Text(json!({"type": "ka"}).to_string().into()),
                        _ => Message::Ping(Default::default()),
                    };
                    if socket.send(msg).await.is_err() {
                        break Close::Gone;
                    }
                }
            }
        };
        if let Close::With(code, reason) = close {
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: Utf8Bytes::from(truncate_reason(&reason)),
                })))
                .await;
        }
    }

    async fn on_text(&mut self, socket: &mut WebSocket, text: &str) -> Result<(), Close> {
        let malformed = |why: &str| Close::With(4400, why.to_owned());
        let value: Value =
            serde_json::from_str(text).map_err(|_| malformed("Invalid message: not JSON"))?;
        let Value::Object(mut msg) = value else {
            return Err(malformed("Invalid message: not an object"));
        };
        let Some(Value::String(ty)) = msg.remove("type") else {
            return Err(malformed("Invalid message: missing type"));
        };
        match (self.protocol, ty.as_str()) {
            (_, "connection_init") => {
                if self.init_received {
                    return Err(Close::With(
                        4429,
                        "Too many initialisation requests".to_owned(),
                    ));
                }
                self.init_received = true;
                let payload = msg.remove("payload");
                match payload {
                    None | Some(Value::Null) | Some(Value::Object(_)) => {}
                    Some(_) => {
                        return Err(malformed(
                            "Invalid message: connection_init payload must be an object",
                        ));
                    }
                }
                let authorization = authorization_from_payload(payload.as_ref())
                    .or_else(|| self.header_authorization.clone());
                if let Some(value) = &authorization {
                    let auth = auth_service::authenticate_header(&self.server.state, Some(value))
                        .await
                        .map_err(|e| {
                            e.log();
                            Close::With(1011, "service unavailable, retry".to_owned())
                        })?;
                    match auth {
                        Auth::User(identity) => self.identity = Some(identity),
                        Auth::Anonymous | Auth::Invalid => {
                            if self.protocol == Protocol::Legacy {
                                let _ = send_json(socket, json!({"type": "connection_error", "payload": {"message": "Forbidden: invalid, expired or revoked credentials"}}))
                                    .await;
                            }
                            return Err(Close::With(
                                4403,
                                "Forbidden: invalid, expired or revoked credentials".to_owned(),
                            ));
                        }
                    }
                    self.authorization = authorization;
                }
                self.acked = true;
                send_json(socket, json!({"type": "connection_ack"})).await?;
                if self.protocol == Protocol::Legacy {
                    send_json(socket, json!({"type": "ka"})).await?;
                }
                Ok(())
            }
            (Protocol::TransportWs, "ping") => {
                let mut pong = json!({"type": "pong"});
                if let Some(payload) = msg.remove("payload").filter(|p| !p.is_null()) {
                    pong["payload"] = payload;
                }
                send_json(socket, pong).await
            }
            (Protocol::TransportWs, "pong") => Ok(()),
            (Protocol::TransportWs, "subscribe") | (Protocol::Legacy, "start") => {
                let id = match msg.remove("id") {
                    Some(Value::String(id)) if !id.is_empty() && id.len() <= 128 => id,
                    _ => return Err(malformed("Invalid message: missing or invalid id")),
                };
                let payload = msg
                    .remove("payload")
                    .ok_or_else(|| malformed("Invalid message: missing payload"))?;
                if !self.acked {
                    return Err(Close::With(4401, "Unauthorized".to_owned()));
                }
                if self.ops.contains_key(&id) {
                    if self.protocol == Protocol::TransportWs {
                        return Err(Close::With(
                            4409,
                            format!("Subscriber for {id} already exists"),
                        ));
                    }
                    self.ops.remove(&id);
                }
                let request = match payload_to_request(payload) {
                    Ok(r) => r,
                    Err(why) if self.protocol == Protocol::TransportWs => {
                        return Err(malformed(&format!("Invalid message: {why}")));
                    }
                    Err(why) => {
                        return send_json(socket, json!({"type": "error", "id": id, "payload": [{"message": why, "extensions": {"code": "BAD_USER_INPUT"}}]}))
                            .await;
                    }
                };
                if self.ops.len() >= MAX_OPERATIONS_PER_CONNECTION {
                    let err = json!([{"message": format!("at most {MAX_OPERATIONS_PER_CONNECTION} operations may run on one connection"), "extensions": {"code": "BAD_USER_INPUT"}}]);
                    return send_json(socket, json!({"type": "error", "id": id, "payload": err}))
                        .await;
                }
                let ctx = self.operation_context().await?;
                let mut request = request;
                let counted = self.server.state.ws_tracker.operation();
                let limits = crate::graphql::Limits::from_config(&self.server.state.config);
                let items: OpStream = match crate::fanout::shareable(&mut request) {
                    Some(root) => {
                        let key = crate::fanout::Key::new(&request, &ctx.auth);
                        let state = self.server.state.clone();
                        let schema = self.server.schema.clone();
                        self.server
                            .state
                            .shared_subscriptions
                            .join(
                                key,
                                root,
                                self.server.state.hub.topics().sequence(),
                                move |mark| {
                                    let request = prepare_request(request, &state, ctx).data(mark);
                                    crate::graphql::execute_stream(&schema, &limits, request)
                                },
                            )
                            .map(|item| match item {
                                MemberItem::Shared(result) => OpItem::Shared(result),
                                MemberItem::Own(response) => OpItem::Own(response),
                                MemberItem::Failed => OpItem::Failed,
                            })
                            .boxed()
                    }
                    None => {
                        let request = prepare_request(request, &self.server.state, ctx);
                        crate::graphql::execute_stream(&self.server.schema, &limits, request)
                            .map(|response| OpItem::Own(Box::new(response)))
                            .boxed()
                    }
                };
                let stream: OpStream = items
                    .chain(stream::once(async { OpItem::End }))
                    .map(move |item| {
                        let _running = &counted;
                        item
                    })
                    .boxed();
                self.started.remove(&id);
                self.ops.insert(id, stream);
                Ok(())
            }
            (Protocol::TransportWs, "complete") | (Protocol::Legacy, "stop") => {
                if let Some(Value::String(id)) = msg.remove("id") {
                    self.ops.remove(&id);
                    self.started.remove(&id);
                    if self.protocol == Protocol::Legacy {
                        send_json(socket, json!({"type": "complete", "id": id})).await?;
                    }
                    Ok(())
                } else {
                    Err(malformed("Invalid message: missing id"))
                }
            }
            (Protocol::Legacy, "connection_terminate") => {
                Err(Close::With(1000, "terminated".to_owned()))
            }
            (_, other) => Err(malformed(&format!(
                "Invalid message: unknown type `{}`",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }

    /// The context an operation runs with: credentials re-read now, so a
    /// role change or revocation applies to the next operation at once.
    async fn operation_context(&mut self) -> Result<RequestContext, Close> {
        let auth = match &self.authorization {
            None => Auth::Anonymous,
            Some(value) => {
                let auth = auth_service::authenticate_header(&self.server.state, Some(value))
                    .await
                    .map_err(|e| {
                        e.log();
                        Close::With(1011, "service unavailable, retry".to_owned())
                    })?;
                match auth {
                    Auth::User(identity) => {
                        self.identity = Some(identity.clone());
                        Auth::User(identity)
                    }
                    Auth::Anonymous | Auth::Invalid => {
                        return Err(Close::With(
                            4403,
                            "Forbidden: credentials are no longer valid".to_owned(),
                        ));
                    }
                }
            }
        };
        Ok(RequestContext {
            auth,
            client_addr: self.peer.map(|p| p.ip()),
            user_agent: self.user_agent.clone(),
        })
    }

    /// Re-reads the connection's credential after a change somewhere: the
    /// connection closes with 4403 if it was revoked or its user changed
    /// (deactivated, role changed, forced reset).
    async fn recheck_credentials(&mut self) -> Result<(), Close> {
        let (Some(value), Some(before)) = (&self.authorization, &self.identity) else {
            return Ok(());
        };
        let auth = auth_service::authenticate_header(&self.server.state, Some(value))
            .await
            .map_err(|e| {
                e.log();
                Close::With(1011, "service unavailable, retry".to_owned())
            })?;
        match auth {
            Auth::User(now) if &now == before => Ok(()),
            Auth::User(_) => Err(Close::With(
                4403,
                "Forbidden: credentials changed, reconnect".to_owned(),
            )),
            Auth::Anonymous | Auth::Invalid => Err(Close::With(
                4403,
                "Forbidden: credentials are no longer valid".to_owned(),
            )),
        }
    }

    /// Writes one item of operation `id` to the socket, without flushing.
    async fn deliver(
        &mut self,
        socket: &mut WebSocket,
        id: String,
        item: OpItem,
    ) -> Result<(), Close> {
        if let Some(identity) = &self.identity
            && identity.is_expired(crate::util::now())
        {
            return Err(Close::With(
                4403,
                "Forbidden: credentials expired".to_owned(),
            ));
        }
        let ty = match self.protocol {
            Protocol::TransportWs => "next",
            Protocol::Legacy => "data",
        };
        match item {
            OpItem::End => {
                self.started.remove(&id);
                feed_json(socket, json!({"type": "complete", "id": id})).await
            }
            OpItem::Failed => Err(Close::With(1011, "internal error".to_owned())),
            OpItem::Own(mut response) => {
                normalize_errors(&mut response);
                let failed_before_start = self.first_result(&id)
                    && response.data == async_graphql::Value::Null
                    && !response.errors.is_empty();
                if failed_before_start {
                    self.ops.remove(&id);
                    self.started.remove(&id);
                    let errors =
                        serde_json::to_value(&response.errors).unwrap_or(Value::Array(vec![]));
                    return feed_json(
                        socket,
                        json!({"type": "error", "id": id, "payload": errors}),
                    )
                    .await;
                }
                feed_frame(socket, ty, &id, &response).await
            }
            OpItem::Shared(result) => {
                if self.first_result(&id)
                    && let Some(errors) = &result.errors_only
                {
                    self.ops.remove(&id);
                    self.started.remove(&id);
                    return feed_spliced(socket, "error", &id, errors).await;
                }
                feed_spliced(socket, ty, &id, &result.payload).await
            }
        }
    }

    /// Whether operation `id` has not delivered a result yet (and records
    /// that it now does).
    fn first_result(&mut self, id: &str) -> bool {
        if self.started.contains(id) {
            return false;
        }
        self.started.insert(id.to_owned());
        true
    }
}

/// A message carrying an operation's result, serialised straight from the
/// response (no intermediate JSON tree: this runs once per delivery).
#[derive(serde::Serialize)]
struct ResultFrame<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    id: &'a str,
    payload: &'a async_graphql::Response,
}

async fn feed_frame(
    socket: &mut WebSocket,
    ty: &str,
    id: &str,
    payload: &async_graphql::Response,
) -> Result<(), Close> {
    let text = serde_json::to_string(&ResultFrame { ty, id, payload }).map_err(|e| {
        tracing::error!(error = %e, "cannot serialise a subscription result");
        Close::With(1011, "internal error".to_owned())
    })?;
    feed_text(socket, text).await
}

/// The message `{"type":<ty>,"id":<id>,"payload":<payload>}`, with
/// `payload` already JSON (a shared result, serialised once for all).
fn spliced_frame(ty: &str, id: &str, payload: &str) -> String {
    let id = serde_json::to_string(id).unwrap_or_else(|_| "\"\"".to_owned());
    let mut text = String::with_capacity(32 + ty.len() + id.len() + payload.len());
    text.push_str("{\"type\":\"");
    text.push_str(ty);
    text.push_str("\",\"id\":");
    text.push_str(&id);
    text.push_str(",\"payload\":");
    text.push_str(payload);
    text.push('}');
    text
}

async fn feed_spliced(
    socket: &mut WebSocket,
    ty: &str,
    id: &str,
    payload: &str,
) -> Result<(), Close> {
    feed_text(socket, spliced_frame(ty, id, payload)).await
}

async fn feed_json(socket: &mut WebSocket, value: Value) -> Result<(), Close> {
    feed_text(socket, value.to_string()).await
}

/// Queues a text message without flushing (the caller flushes).
async fn feed_text(socket: &mut WebSocket, text: String) -> Result<(), Close> {
    socket
        .feed(Message::Text(text.into()))
        .await
        .map_err(|_| Close::Gone)
}

async fn send_json(socket: &mut WebSocket, value: Value) -> Result<(), Close> {
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .map_err(|_| Close::Gone)
}

/// The `Authorization` value from a `connection_init` payload: accepts
/// `{"Authorization": "Bearer …"}` (any case), `{"token": "…"}` and
/// `{"headers": {"Authorization": "…"}}`.
pub fn authorization_from_payload(payload: Option<&Value>) -> Option<String> {
    let Value::Object(map) = payload? else {
        return None;
    };
    for (key, value) in map {
        if key.eq_ignore_ascii_case("authorization")
            && let Value::String(s) = value
        {
            return Some(s.clone());
        }
    }
    if let Some(Value::String(token)) = map.get("token") {
        return Some(format!("Bearer {token}"));
    }
    if let Some(headers @ Value::Object(_)) = map.get("headers") {
        return authorization_from_payload(Some(headers));
    }
    None
}

fn payload_to_request(payload: Value) -> Result<async_graphql::Request, String> {
    let Value::Object(mut map) = payload else {
        return Err("payload must be an object".to_owned());
    };
    let query = match map.remove("query") {
        Some(Value::String(q)) => q,
        _ => return Err("payload.query must be a string".to_owned()),
    };
    let mut request = async_graphql::Request::new(query);
    match map.remove("variables") {
        None | Some(Value::Null) => {}
        Some(v @ Value::Object(_)) => {
            request = request.variables(async_graphql::Variables::from_json(v))
        }
        Some(_) => return Err("payload.variables must be an object".to_owned()),
    }
    match map.remove("operationName") {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) => request = request.operation_name(name),
        Some(_) => return Err("payload.operationName must be a string".to_owned()),
    }
    Ok(request)
}

/// Close reasons are limited to 123 bytes by the WebSocket protocol.
fn truncate_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_payloads_carry_the_token_in_several_shapes() {
        assert_eq!(
            authorization_from_payload(Some(&json!({"Authorization": "Bearer a"}))).as_deref(),
            Some("Bearer a")
        );
        assert_eq!(
            authorization_from_payload(Some(&json!({"authorization": "Bearer b"}))).as_deref(),
            Some("Bearer b")
        );
        assert_eq!(
            authorization_from_payload(Some(&json!({"token": "c"}))).as_deref(),
            Some("Bearer c")
        );
        assert_eq!(
            authorization_from_payload(Some(&json!({"headers": {"Authorization": "Bearer d"}})))
                .as_deref(),
            Some("Bearer d")
        );
        assert_eq!(authorization_from_payload(Some(&json!({}))), None);
        assert_eq!(authorization_from_payload(None), None);
    }

    #[test]
    fn close_reasons_fit_the_protocol_limit() {
        let long = "é".repeat(100);
        let r = truncate_reason(&long);
        assert!(r.len() <= 123);
        assert!(long.starts_with(&r));
    }

    #[test]
    fn spliced_frames_are_the_json_they_stand_for() {
        let payload = r#"{"data":{"eventCreated":{"message":"a\"b"}}}"#;
        let text = spliced_frame("next", "id \"1\"\\", payload);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            json!({"type": "next", "id": "id \"1\"\\", "payload": {"data": {"eventCreated": {"message": "a\"b"}}}})
        );
    }

    #[test]
    fn subscribe_payloads_are_type_checked() {
        assert!(payload_to_request(json!({"query": "subscription { x }"})).is_ok());
        assert!(payload_to_request(json!({"query": 5})).is_err());
        assert!(payload_to_request(json!({"query": "{x}", "variables": []})).is_err());
        assert!(payload_to_request(json!("x")).is_err());
    }
}
