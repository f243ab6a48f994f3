//! Settings: every one a command-line flag with an environment variable and a
//! default that runs out of the box (`sightline --help` lists them all).
//!
//! Tests build a [`Config`] in code with [`Config::for_tests`] and change what
//! they need; `main` parses it from the command line. Both then call the same
//! [`crate::Application::build`].

use std::time::Duration;

use clap::{Args, ValueEnum};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// All server settings.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Database: a SQLite file (`sqlite://path.db?mode=rwc`) or `postgres://...`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://sightline.db?mode=rwc",
        global = true
    )]
    pub database_url: String,

    /// Address to listen on; `:0` or a port of 0 picks a free port (the chosen address is logged).
    #[arg(
        long,
        env = "SIGHTLINE_ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub addr: String,

    /// Password of the `admin` user created on an empty database (random and printed once when unset).
    #[arg(
        long,
        env = "SIGHTLINE_ADMIN_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub admin_password: Option<String>,

    /// Log filter, in `tracing` env-filter syntax (e.g. `info`, `sightline=debug`).
    #[arg(
        long = "log",
        env = "SIGHTLINE_LOG",
        default_value = "info",
        global = true
    )]
    pub log_filter: String,

    /// Log format.
    #[arg(
        long,
        env = "SIGHTLINE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// Lifetime of a login session (e.g. `24h`, `30m`, `7d`).
    #[arg(long, env = "SIGHTLINE_SESSION_TTL", default_value = "24h", value_parser = parse_duration, global = true)]
    pub session_ttl: Duration,

    /// How long a resolved token is reused before its session and user are
    /// read again (`0` reads them on every request). Changes made through
    /// this process apply at once whatever this is; it bounds how long a
    /// change made by another replica can go unseen.
    #[arg(long, env = "SIGHTLINE_AUTH_CACHE_TTL", default_value = "2s", value_parser = parse_duration, global = true)]
    pub auth_cache_ttl: Duration,

    /// Largest accepted request body (e.g. `8MiB`, `512KiB`, or bytes).
    #[arg(long, env = "SIGHTLINE_BODY_LIMIT", default_value = "8MiB", value_parser = parse_bytes, global = true)]
    pub body_limit: usize,

    /// Longest time one HTTP request may take before it is answered with 503.
    #[arg(long, env = "SIGHTLINE_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration, global = true)]
    pub request_timeout: Duration,

    /// How long shutdown waits for in-flight requests and WebSockets to finish.
    #[arg(long, env = "SIGHTLINE_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub shutdown_timeout: Duration,

    /// How long a WebSocket may stay open without sending `connection_init`.
    #[arg(long, env = "SIGHTLINE_WS_INIT_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub ws_init_timeout: Duration,

    /// Largest database connection pool (0 picks a default for the backend).
    #[arg(
        long,
        env = "SIGHTLINE_DB_MAX_CONNECTIONS",
        default_value_t = 0,
        global = true
    )]
    pub db_max_connections: u32,

    /// How long a request waits for a free database connection before failing with `UNAVAILABLE`.
    #[arg(long, env = "SIGHTLINE_DB_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration, global = true)]
    pub db_acquire_timeout: Duration,

    /// Deepest allowed GraphQL selection nesting.
    #[arg(
        long,
        env = "SIGHTLINE_GRAPHQL_MAX_DEPTH",
        default_value_t = 15,
        global = true
    )]
    pub graphql_max_depth: usize,

    /// Largest allowed GraphQL query complexity (each field counts 1, lists count their page size).
    #[arg(
        long,
        env = "SIGHTLINE_GRAPHQL_MAX_COMPLEXITY",
        default_value_t = 20_000,
        global = true
    )]
    pub graphql_max_complexity: usize,

    /// Most aliased fields allowed in one GraphQL document.
    #[arg(
        long,
        env = "SIGHTLINE_GRAPHQL_MAX_ALIASES",
        default_value_t = 30,
        global = true
    )]
    pub graphql_max_aliases: usize,

    /// Most root fields allowed in one GraphQL operation.
    #[arg(
        long,
        env = "SIGHTLINE_GRAPHQL_MAX_ROOT_FIELDS",
        default_value_t = 20,
        global = true
    )]
    pub graphql_max_root_fields: usize,

    /// Most operations allowed in one batched GraphQL HTTP request.
    #[arg(
        long,
        env = "SIGHTLINE_GRAPHQL_MAX_BATCH",
        default_value_t = 10,
        global = true
    )]
    pub graphql_max_batch: usize,

    /// Whether GraphQL introspection is allowed (turn off in production if you wish).
    #[arg(long, env = "SIGHTLINE_GRAPHQL_INTROSPECTION", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub graphql_introspection: bool,

    /// Origins allowed to call the API from browsers on other sites, comma-separated, or `*`
    /// (default: none — only pages served by Sightline itself).
    #[arg(
        long,
        env = "SIGHTLINE_CORS_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    pub cors_origins: Vec<String>,

    /// Failed logins (per account and per client address) before logins are refused for a while.
    #[arg(
        long,
        env = "SIGHTLINE_LOGIN_MAX_FAILURES",
        default_value_t = 5,
        global = true
    )]
    pub login_max_failures: u32,

    /// How long logins stay refused after too many failures.
    #[arg(long, env = "SIGHTLINE_LOGIN_LOCKOUT", default_value = "15m", value_parser = parse_duration, global = true)]
    pub login_lockout: Duration,

    /// Most series (label sets) one metric name may have; beyond it new label sets are refused.
    #[arg(
        long,
        env = "SIGHTLINE_METRIC_MAX_SERIES",
        default_value_t = 10_000,
        global = true
    )]
    pub metric_max_series: u64,

    /// PostgreSQL only: whether ingest transactions wait for the WAL flush before events are
    /// acknowledged. `false` trades the last moments of acknowledged ingest on a database crash
    /// (never corruption, never reordering) for much higher single-event throughput on slow disks.
    #[arg(long, env = "SIGHTLINE_INGEST_SYNCHRONOUS_COMMIT", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub ingest_synchronous_commit: bool,

    /// Events older than this many days are deleted by retention.
    #[arg(
        long,
        env = "MONITORING_EVENT_RETENTION_DAYS",
        default_value_t = 30,
        global = true
    )]
    pub event_retention_days: u32,

    /// Metric samples older than this many days are deleted by retention.
    #[arg(
        long,
        env = "MONITORING_METRIC_RETENTION_DAYS",
        default_value_t = 90,
        global = true
    )]
    pub metric_retention_days: u32,

    /// Finished tasks (succeeded, dead, cancelled) older than this many days are deleted by retention.
    #[arg(
        long,
        env = "SIGHTLINE_TASK_RETENTION_DAYS",
        default_value_t = 7,
        global = true
    )]
    pub task_retention_days: u32,

    /// How often the data retention task runs.
    #[arg(long, env = "SIGHTLINE_RETENTION_INTERVAL", default_value = "1h", value_parser = parse_duration, global = true)]
    pub retention_interval: Duration,

    /// Rows deleted per retention batch (each batch is one short transaction).
    #[arg(
        long,
        env = "SIGHTLINE_RETENTION_BATCH",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(1..=100_000),
        global = true
    )]
    pub retention_batch: u64,

    /// Number of background task workers in this process (0 runs none: tasks
    /// wait for another replica).
    #[arg(
        long,
        env = "SIGHTLINE_TASK_WORKERS",
        default_value_t = 2,
        value_parser = clap::value_parser!(u64).range(0..=64),
        global = true
    )]
    pub task_workers: u64,

    /// How often an idle worker looks for due tasks (new tasks enqueued in
    /// this process wake workers at once).
    #[arg(long, env = "SIGHTLINE_TASK_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration, global = true)]
    pub task_poll_interval: Duration,

    /// How long a worker's claim on a task lasts without renewal; the task of a
    /// crashed worker returns to the queue after this.
    #[arg(long, env = "SIGHTLINE_TASK_LEASE", default_value = "60s", value_parser = parse_duration, global = true)]
    pub task_lease: Duration,

    /// Longest one task attempt may run before it is stopped and counted as failed
    /// (handlers may set a shorter limit of their own).
    #[arg(long, env = "SIGHTLINE_TASK_TIMEOUT", default_value = "5m", value_parser = parse_duration, global = true)]
    pub task_timeout: Duration,

    /// Attempts a task gets before it is marked dead (unless enqueued with its own limit).
    #[arg(
        long,
        env = "SIGHTLINE_TASK_MAX_ATTEMPTS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..=100),
        global = true
    )]
    pub task_max_attempts: u32,

    /// Delay before the first retry; each further retry doubles it (with jitter).
    #[arg(long, env = "SIGHTLINE_TASK_BACKOFF_BASE", default_value = "5s", value_parser = parse_duration, global = true)]
    pub task_backoff_base: Duration,

    /// Longest delay between retries.
    #[arg(long, env = "SIGHTLINE_TASK_BACKOFF_MAX", default_value = "1h", value_parser = parse_duration, global = true)]
    pub task_backoff_max: Duration,

    /// Whether this process enqueues periodic tasks (several replicas may all
    /// run it: each period is enqueued once).
    #[arg(long, env = "SIGHTLINE_SCHEDULER", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub scheduler: bool,

    /// How often the scheduler checks for due periodic tasks and expired leases.
    #[arg(long, env = "SIGHTLINE_SCHEDULER_TICK", default_value = "1s", value_parser = parse_duration, global = true)]
    pub scheduler_tick: Duration,

    /// How often event enrichment (fingerprints, level, correlation tags) sweeps new events.
    #[arg(long, env = "SIGHTLINE_EVENT_PROCESSING_INTERVAL", default_value = "10s", value_parser = parse_duration, global = true)]
    pub event_processing_interval: Duration,

    /// Events enriched per event-processing transaction.
    #[arg(
        long,
        env = "SIGHTLINE_EVENT_PROCESSING_BATCH",
        default_value_t = 500,
        value_parser = clap::value_parser!(u64).range(1..=10_000),
        global = true
    )]
    pub event_processing_batch: u64,

    /// Who may read `GET /metrics`: `public` (anyone) or `bearer` (any valid
    /// session token or API key).
    #[arg(
        long,
        env = "SIGHTLINE_METRICS_AUTH",
        value_enum,
        default_value = "bearer",
        global = true
    )]
    pub metrics_auth: MetricsAuth,

    /// Largest Prometheus exposition, in bytes; families beyond it are left out
    /// and a `# truncated` comment says so.
    #[arg(long, env = "SIGHTLINE_PROMETHEUS_MAX_BYTES", default_value = "4MiB", value_parser = parse_bytes, global = true)]
    pub prometheus_max_bytes: usize,

    /// Most stored series one exposition reads.
    #[arg(
        long,
        env = "SIGHTLINE_PROMETHEUS_MAX_SERIES",
        default_value_t = 20_000,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000),
        global = true
    )]
    pub prometheus_max_series: u64,

    /// Upper bounds of the histogram buckets the exposition writes for stored
    /// histograms (ascending, comma-separated; `+Inf` is always added).
    #[arg(
        long,
        env = "SIGHTLINE_HISTOGRAM_BUCKETS",
        value_delimiter = ',',
        default_value = "0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10",
        value_parser = parse_bucket_bound,
        global = true
    )]
    pub histogram_buckets: Vec<f64>,

    /// Window over which stored summaries' quantiles (0.5, 0.9, 0.99) are computed.
    #[arg(long, env = "SIGHTLINE_SUMMARY_WINDOW", default_value = "10m", value_parser = parse_duration, global = true)]
    pub summary_window: Duration,

    /// Whether this server evaluates alert rules: when on, it runs one worker dedicated to `monitoring_alert_evaluation` tasks (one live task per enabled rule, claimed with SKIP LOCKED, so each rule is evaluated by exactly one worker across replicas); when off, this replica leaves rule evaluation to the others (its general workers never take those tasks).
    #[arg(long, env = "SIGHTLINE_ALERT_EVALUATOR", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub alert_evaluator: bool,

    /// How far back an instant alert selector (`cpu_usage > 80`) looks for a gauge's latest sample; older series count as having no data.
    #[arg(long, env = "SIGHTLINE_ALERT_LOOKBACK", default_value = "5m", value_parser = parse_duration, global = true)]
    pub alert_lookback: Duration,

    /// Most samples (or events) one alert evaluation or preview may read; beyond it the evaluation fails with a message.
    #[arg(
        long,
        env = "SIGHTLINE_ALERT_MAX_SAMPLES",
        default_value_t = 1_000_000,
        global = true
    )]
    pub alert_max_samples: usize,
}

/// Who may read `GET /metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricsAuth {
    /// Anyone who can reach the server.
    Public,
    /// Callers with a valid bearer token (session or API key, any role).
    Bearer,
}

/// Parses one histogram bucket bound: a finite number.
pub fn parse_bucket_bound(input: &str) -> Result<f64, String> {
    let v: f64 = input
        .trim()
        .parse()
        .map_err(|_| format!("invalid bucket bound `{input}`: expected a number"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!(
            "invalid bucket bound `{input}`: must be finite (+Inf is always added)"
        ))
    }
}

impl Config {
    /// Defaults as the command line would give them, with a free port and the
    /// given database: the starting point for tests and embedders.
    pub fn for_tests(database_url: &str) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        let mut config = Only::parse_from(["sightline"]).config;
        config.database_url = database_url.to_owned();
        config.addr = "127.0.0.1:0".to_owned();
        config.admin_password = None;
        config
    }

    /// The listen address with `:port` shorthand expanded to loopback.
    pub fn listen_addr(&self) -> String {
        if self.addr.starts_with(':') {
            format!("127.0.0.1{}", self.addr)
        } else {
            self.addr.clone()
        }
    }

    /// Checks settings that depend on each other; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.histogram_buckets.is_empty() {
            return Err("SIGHTLINE_HISTOGRAM_BUCKETS must list at least one bound".to_owned());
        }
        if !self.histogram_buckets.windows(2).all(|w| w[0] < w[1]) {
            return Err("SIGHTLINE_HISTOGRAM_BUCKETS must be strictly ascending".to_owned());
        }
        if self.task_lease < Duration::from_secs(1) {
            return Err("SIGHTLINE_TASK_LEASE must be at least 1s".to_owned());
        }
        if self.task_timeout.is_zero() {
            return Err("SIGHTLINE_TASK_TIMEOUT must be positive".to_owned());
        }
        for (name, d) in [
            ("SIGHTLINE_TASK_POLL_INTERVAL", self.task_poll_interval),
            ("SIGHTLINE_SCHEDULER_TICK", self.scheduler_tick),
            ("SIGHTLINE_RETENTION_INTERVAL", self.retention_interval),
            (
                "SIGHTLINE_EVENT_PROCESSING_INTERVAL",
                self.event_processing_interval,
            ),
            ("SIGHTLINE_SUMMARY_WINDOW", self.summary_window),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be positive"));
            }
        }
        Ok(())
    }

    /// Whether the database is PostgreSQL (otherwise SQLite).
    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://")
    }
}

/// Parses durations such as `30s`, `5m`, `24h`, `7d`, `250ms`, `1h30m`, or a
/// bare number of seconds.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration `{input}`: expected a number"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration `{input}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            unit => {
                return Err(format!(
                    "invalid duration `{input}`: unknown unit `{unit}` (use ms, s, m, h or d)"
                ));
            }
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Parses sizes such as `8MiB`, `512KiB`, `1GiB`, `100KB` or a bare number of bytes.
pub fn parse_bytes(input: &str) -> Result<usize, String> {
    let s = input.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return Err(format!("invalid size `{input}`: expected a number"));
    }
    let n: usize = s[..digits]
        .parse()
        .map_err(|_| format!("invalid size `{input}`: number too large"))?;
    let factor: usize = match s[digits..].trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        unit => return Err(format!("invalid size `{input}`: unknown unit `{unit}`")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("invalid size `{input}`: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units_and_combinations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("42").unwrap(), Duration::from_secs(42));
    }

    #[test]
    fn durations_reject_unknown_units_and_garbage() {
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("m5").is_err());
    }

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_bytes("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_bytes("100KB").unwrap(), 100_000);
        assert_eq!(parse_bytes("1234").unwrap(), 1234);
        assert!(parse_bytes("12 parsecs").is_err());
    }

    #[test]
    fn the_defaults_run_out_of_the_box() {
        let c = Config::for_tests("sqlite::memory:");
        assert_eq!(c.event_retention_days, 30);
        assert_eq!(c.metric_retention_days, 90);
        assert_eq!(c.metric_max_series, 10_000);
        assert_eq!(c.session_ttl, Duration::from_secs(86_400));
        assert!(!c.is_postgres());
        assert_eq!(c.task_workers, 2);
        assert_eq!(c.metrics_auth, MetricsAuth::Bearer);
        assert_eq!(
            c.histogram_buckets,
            crate::metrics::aggregate::DEFAULT_BUCKETS
        );
        assert!(c.validate().is_ok());
    }

    #[test]
    fn bucket_bounds_must_be_finite_and_ascending() {
        assert!(parse_bucket_bound("inf").is_err());
        assert!(parse_bucket_bound("NaN").is_err());
        assert!(parse_bucket_bound("x").is_err());
        assert_eq!(parse_bucket_bound(" 2.5 ").unwrap(), 2.5);
        let mut c = Config::for_tests("sqlite::memory:");
        c.histogram_buckets = vec![1.0, 0.5];
        assert!(c.validate().unwrap_err().contains("ascending"));
        c.histogram_buckets = vec![];
        assert!(c.validate().is_err());
    }

    #[test]
    fn a_bare_port_listens_on_loopback() {
        let mut c = Config::for_tests("sqlite::memory:");
        c.addr = ":0".into();
        assert_eq!(c.listen_addr(), "127.0.0.1:0");
    }
}
