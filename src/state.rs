//! The application state shared by every request, subscription and worker.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio::sync::watch;

use crate::auth::ratelimit::LoginLimiter;
use crate::config::Config;
use crate::db::Backend;
use crate::pubsub::Hub;

/// Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    /// The database pool.
    pub db: DatabaseConnection,
    /// Which database it is.
    pub backend: Backend,
    /// Settings.
    pub config: Arc<Config>,
    /// Live updates.
    pub hub: Hub,
    /// Group-commit writers for events and metric samples.
    pub ingest: crate::ingest::Ingest,
    /// Recently resolved tokens (see [`crate::auth::cache`]).
    pub auth_cache: Arc<crate::auth::cache::AuthCache>,
    /// Failed-login throttling.
    pub login_limiter: Arc<LoginLimiter>,
    /// Open WebSocket connections, so shutdown can wait for them.
    pub ws_tracker: Arc<crate::ws::ConnectionTracker>,
    /// Executions shared by identical subscriptions (see [`crate::fanout`]).
    pub shared_subscriptions: Arc<crate::fanout::Registry>,
    /// Becomes `true` when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Background task handlers of this process, and the workers' wake-up signal.
    pub tasks: Arc<crate::tasks::TaskRegistry>,
    /// HTTP request counts and latencies, for the Prometheus exposition.
    pub http_metrics: Arc<crate::stats::telemetry::HttpMetrics>,
}
