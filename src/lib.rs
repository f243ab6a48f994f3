//! Sightline: a self-hosted monitoring and incident server with a GraphQL API.
//!
//! The crate is a library plus a thin `main.rs`: [`Application::build`] opens
//! the database, migrates it, creates the first admin and binds the listener;
//! [`Application::run_until_stopped`] serves until a shutdown signal. Tests and
//! `main` share this one path. Other Rust code can also call the domain
//! services directly (e.g. `sightline::auth::service::create_user`).

#![forbid(unsafe_code)]

pub mod alerts;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod fanout;
pub mod graphql;
pub mod http;
pub mod incidents;
pub mod ingest;
pub mod metrics;
pub mod pagination;
pub mod playground;
pub mod pubsub;
pub mod rest;
pub mod state;
pub mod stats;
pub mod tasks;
pub mod util;
pub mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use sea_orm::DbErr;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::Config;
pub use error::{AppError, AppResult, ErrorCode};
pub use state::AppState;

use crate::auth::ratelimit::LoginLimiter;
use crate::db::Backend;
use crate::pubsub::Hub;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(#[from] DbErr),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The first admin could not be created.
    #[error("cannot create the initial admin: {}", .0.describe())]
    Admin(AppError),
    /// Settings contradict each other.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// A built, bound, not yet serving server.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    shutdown_tx: watch::Sender<bool>,
    initial_admin_password: Option<String>,
    live_listener: Option<pubsub::notify::Listener>,
}

/// Triggers a graceful shutdown from outside the server (tests, embedders).
#[derive(Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    /// Starts shutting down.
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

impl Application {
    /// Opens and migrates the database, creates the first admin on an empty
    /// database, and binds the listen address.
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        config.validate().map_err(StartupError::Config)?;
        let db = db::connect(&config).await?;
        db::migrate(&db).await?;
        let initial_admin_password =
            auth::service::ensure_initial_admin(&db, config.admin_password.as_deref())
                .await
                .map_err(StartupError::Admin)?;
        let addr_text = config.listen_addr();
        let listener =
            TcpListener::bind(&addr_text)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: addr_text.clone(),
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: addr_text,
            source,
        })?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let task_registry = Arc::new(tasks::TaskRegistry::new(
            config.task_timeout,
            config.task_max_attempts,
        ));
        tasks::handlers::register_monitoring_handlers(&task_registry);
        let hub = match Backend::of(&db) {
            Backend::Postgres => Hub::postgres(db.get_postgres_connection_pool().clone()),
            Backend::Sqlite => Hub::new(),
        };
        let live_listener = pubsub::notify::Listener::connect(&hub).await.map_err(|e| {
            StartupError::Database(DbErr::Custom(format!(
                "cannot listen for live updates: {e}"
            )))
        })?;
        let ingest = ingest::Ingest::start(&config, &db, &hub, config.metric_max_series).await?;
        let state = AppState {
            backend: Backend::of(&db),
            db,
            ingest,
            auth_cache: Arc::new(auth::cache::AuthCache::new(config.auth_cache_ttl)),
            login_limiter: Arc::new(LoginLimiter::new(
                config.login_max_failures,
                config.login_lockout,
            )),
            config: Arc::new(config),
            hub,
            ws_tracker: Arc::new(ws::ConnectionTracker::default()),
            shared_subscriptions: Arc::new(fanout::Registry::default()),
            shutdown: shutdown_rx,
            tasks: task_registry,
            http_metrics: Arc::new(stats::telemetry::HttpMetrics::default()),
        };
        Ok(Application {
            listener,
            addr,
            state,
            shutdown_tx,
            initial_admin_password,
            live_listener,
        })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state, for calling services directly.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A handle that starts a graceful shutdown.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown_tx.clone())
    }

    /// The URL of the playground.
    pub fn url(&self) -> String {
        let host = if self.addr.ip().is_unspecified() {
            "localhost".to_owned()
        } else {
            self.addr.ip().to_string()
        };
        format!("http://{}:{}/", host, self.addr.port())
    }

    /// Serves until `signal` completes or a [`ShutdownHandle`] fires, then
    /// stops accepting, lets in-flight requests finish (bounded by the
    /// shutdown timeout) and closes WebSockets with a close frame.
    pub async fn run_until_stopped(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Application {
            listener,
            addr,
            state,
            shutdown_tx,
            initial_admin_password,
            live_listener,
        } = self;
        let url = {
            let host = if addr.ip().is_unspecified() {
                "localhost".to_owned()
            } else {
                addr.ip().to_string()
            };
            format!("http://{}:{}/", host, addr.port())
        };
        tracing::info!(%addr, backend = ?state.backend, "sightline listening");
        tracing::info!("playground: {url}  (GraphQL endpoint: {url}graphql)");
        if let Some(password) = initial_admin_password {
            tracing::warn!(
                "created the initial admin user; log in with username `admin` and password `{password}` (shown only once; set SIGHTLINE_ADMIN_PASSWORD to choose it)"
            );
        }
        let grace = state.config.shutdown_timeout;
        let tracker = state.ws_tracker.clone();
        let schema = graphql::build_schema(state.clone());
        let app = http::router(http::Server {
            state: state.clone(),
            schema,
        });

        let tx = shutdown_tx.clone();
        tokio::spawn(async move {
            signal.await;
            let _ = tx.send(true);
        });
        let mut stop = state.shutdown.clone();
        // No Nagle delay: a WebSocket frame (or a response) written while an
        // earlier one to the same client is still unacknowledged goes out at
        // once instead of waiting for that acknowledgement.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let serve = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
            tracing::info!("shutting down: no longer accepting connections");
        });
        let mut stop = state.shutdown.clone();
        let serving = tokio::spawn(async move { serve.await });
        // Background work: task workers (alert evaluation included, see
        // `SIGHTLINE_ALERT_EVALUATOR`) and the scheduler stop taking new
        // work at shutdown and finish what they run within the grace period.
        let mut background = tasks::worker::spawn_workers(&state);
        if let Some(l) = live_listener {
            background.push(l.start(state.shutdown.clone()));
        }
        if state.config.scheduler {
            background.push(tasks::scheduler::spawn(&state));
        }
        background.extend(db::spawn_wal_keeper(
            &state.db,
            &state.config,
            state.shutdown.clone(),
        ));
        background.extend(db::spawn_stats_keeper(&state.db, state.shutdown.clone()));
        let _ = stop.wait_for(|s| *s).await;
        let drained = tokio::time::timeout(grace, async {
            let _ = serving.await;
            tracker.wait_idle().await;
            for handle in &mut background {
                let _ = handle.await;
            }
        })
        .await;
        for handle in &background {
            // Past the grace period: a task still running is abandoned; its
            // lease expires and another worker retries it.
            handle.abort();
        }
        if drained.is_err() {
            tracing::warn!(
                timeout = ?grace,
                open_websockets = tracker.live(),
                "shutdown timeout reached; closing remaining connections"
            );
        }
        // Requests are done: write what the ingest writers still hold.
        state.ingest.close().await;
        state.db.clone().close().await.ok();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Sets up logging as configured (used by `main`; tests log only with `TEST_LOG=1`).
pub fn init_tracing(filter: &str, format: config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Text => builder.try_init(),
    };
}

/// Resolves when the process receives Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
