//! Database connection and migrations, for SQLite and PostgreSQL.
//!
//! SQLite is opened in WAL mode with a busy timeout and foreign keys on; the
//! PostgreSQL pool fails fast when exhausted so requests get `UNAVAILABLE`
//! instead of hanging. Where SQL must differ between backends, code asks
//! [`Backend`] here rather than inspecting URLs itself.

use std::str::FromStr;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, SqlxPostgresConnector,
    SqlxSqliteConnector,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::config::Config;

/// The two supported database backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The backend of an open connection.
    pub fn of(db: &impl ConnectionTrait) -> Backend {
        match db.get_database_backend() {
            DatabaseBackend::Postgres => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }
}

/// SQLite page cache per connection, in KiB (as a negative `cache_size`).
/// Every pooled connection (up to 8 shared and 2 for the ingest writers)
/// fills its own cache as the database grows, so this bounds the server's
/// memory: 4 MiB each, 40 MiB in all (16 MiB each, as before, took several
/// minutes of sustained ingest to fill and read as 160 MiB of growth). Pages
/// beyond it are read from the OS page cache, and the hot pages (the tails
/// of the time and id indexes) stay within it.
const SQLITE_CACHE_KIB: i64 = -4000;

/// Opens the database named by the configuration.
pub async fn connect(config: &Config) -> Result<DatabaseConnection, DbErr> {
    open(config, None).await
}

/// Opens the small pool of the ingest writers (one connection each), so
/// they never wait behind request reads for a connection. `None` for an
/// in-memory SQLite database, which only the main pool can see. On
/// PostgreSQL, with `--ingest-synchronous-commit false` its transactions
/// commit without waiting for the WAL flush.
pub async fn connect_ingest(config: &Config) -> Result<Option<DatabaseConnection>, DbErr> {
    let url = config.database_url.as_str();
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Ok(None);
    }
    open(config, Some(2)).await.map(Some)
}

async fn open(config: &Config, size: Option<u32>) -> Result<DatabaseConnection, DbErr> {
    let url = config.database_url.as_str();
    let acquire = config.db_acquire_timeout;
    if config.is_postgres() {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| DbErr::Custom(format!("invalid DATABASE_URL: {e}")))?
            .application_name("sightline");
        if size.is_some() && !config.ingest_synchronous_commit {
            options = options.options([("synchronous_commit", "off")]);
        }
        let max = match (size, config.db_max_connections) {
            (Some(n), _) => n,
            (None, 0) => 16,
            (None, n) => n,
        };
        let pool = PgPoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .acquire_timeout(acquire)
            .idle_timeout(Some(Duration::from_secs(300)))
            // The shared pool checks a connection before handing it out, so
            // after PostgreSQL drops connections (restart, failover,
            // pg_terminate_backend) a request is not answered 503 by a dead
            // idle one long after the database is back; the ingest writers'
            // own pool skips the round trip (a write on a dead connection
            // answers 503 and that connection is dropped).
            .test_before_acquire(size.is_none())
            .connect_with(options)
            .await
            .map_err(|e| DbErr::Custom(format!("cannot connect to PostgreSQL: {e}")))?;
        Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
    } else if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| DbErr::Custom(format!("invalid DATABASE_URL: {e}")))?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            .pragma("cache_size", SQLITE_CACHE_KIB.to_string());
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let max = match (size, config.db_max_connections, in_memory) {
            (_, _, true) => 1,
            (Some(n), _, false) => n,
            (None, 0, false) => 8,
            (None, n, false) => n,
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .acquire_timeout(acquire)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| DbErr::Custom(format!("cannot open SQLite database: {e}")))?;
        Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
    } else {
        Err(DbErr::Custom(format!(
            "unsupported DATABASE_URL `{}`: use sqlite://... or postgres://...",
            redact_url(url)
        )))
    }
}

/// Applies pending migrations. On PostgreSQL an advisory lock makes replicas
/// that start together migrate one at a time.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    match Backend::of(db) {
        Backend::Postgres => {
            // A dedicated connection holds the session-level lock for the whole run.
            let pool = db.get_postgres_connection_pool();
            let mut conn = pool
                .acquire()
                .await
                .map_err(|e| DbErr::Custom(format!("cannot acquire a connection: {e}")))?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK_KEY)
                .execute(&mut *conn)
                .await
                .map_err(|e| DbErr::Custom(format!("cannot take the migration lock: {e}")))?;
            let result = Migrator::up(db, None).await;
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MIGRATION_LOCK_KEY)
                .execute(&mut *conn)
                .await;
            result
        }
        Backend::Sqlite => Migrator::up(db, None).await,
    }
}

/// Key of the PostgreSQL advisory lock held while migrating.
const MIGRATION_LOCK_KEY: i64 = 0x5167_4c69_6e65_0001;

/// Whether the database answers a trivial query.
pub async fn ping(db: &DatabaseConnection) -> bool {
    db.execute_unprepared("SELECT 1").await.is_ok()
}

/// The URL with any password replaced, for log lines and error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_database_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://bob:s3cret@db:5432/x"),
            "postgres://bob:***@db:5432/x"
        );
        assert_eq!(
            redact_url("sqlite://a.db?mode=rwc"),
            "sqlite://a.db?mode=rwc"
        );
        assert_eq!(redact_url("postgres://bob@db/x"), "postgres://bob@db/x");
    }

    #[tokio::test]
    async fn every_pooled_sqlite_connection_has_the_bounded_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
        let config = Config::for_tests(&url);
        for db in [
            connect(&config).await.unwrap(),
            connect_ingest(&config).await.unwrap().unwrap(),
        ] {
            let pool = db.get_sqlite_connection_pool();
            // Hold two connections at once, so both are checked.
            let mut a = pool.acquire().await.unwrap();
            let mut b = pool.acquire().await.unwrap();
            for conn in [&mut a, &mut b] {
                let size: i64 = sqlx::query_scalar("PRAGMA cache_size")
                    .fetch_one(&mut **conn)
                    .await
                    .unwrap();
                assert_eq!(size, SQLITE_CACHE_KIB);
            }
        }
    }
}
