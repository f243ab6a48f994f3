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
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, SqliteTransactionMode,
    SqlxPostgresConnector, SqlxSqliteConnector, TransactionOptions, TransactionTrait,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

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

/// SQLite page cache of each connection of the shared pool (up to 8), in
/// KiB (as a negative `cache_size`). Every connection fills its own cache
/// as it reads different pages, and never gives it back, so the caches
/// bound the server's memory: at 4 MiB each the shared pool's caches kept
/// filling for the whole 10-minute soak (RSS grew 36 MiB after warm-up,
/// 11–23 MiB at 1 MiB; 16 MiB each, earlier, read as 160 MiB). Reads fall
/// back to the OS page cache: at 1 MiB each the filtered query over 1M
/// events kept p95 1.7–2.0 ms (1.64 at 4 MiB) and single-event ingest its
/// rate.
const SQLITE_CACHE_KIB: i64 = -1000;

/// SQLite page cache of each of the 2 ingest writers' connections, in KiB.
/// They write all the time, so theirs fill within seconds; at 1 MiB batch
/// ingest fell from 89k to 67k events/s (index pages read back for every
/// group).
const SQLITE_INGEST_CACHE_KIB: i64 = -4000;

/// How long a SQLite statement waits for another connection's lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// WAL size (in frames, one page each: 16 MiB at 4 KiB pages) beyond which
/// [`keep_wal_small`] restarts the log.
pub const WAL_RESTART_FRAMES: i64 = 4096;

/// How often the WAL keeper looks at the log.
const WAL_CHECK_EVERY: Duration = Duration::from_secs(2);

/// How long a restart may hold the write lock while it waits for readers
/// that still use the log (they take milliseconds; a restart that cannot
/// finish in time checkpoints what it can and is tried again later).
const WAL_RESTART_WAIT: Duration = Duration::from_millis(250);

/// Whether a SQLite URL names an in-memory database.
fn sqlite_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// The page cache of a SQLite connection: `size` is `Some` for the ingest
/// writers' pool.
fn sqlite_cache_kib(size: Option<u32>) -> i64 {
    match size {
        Some(_) => SQLITE_INGEST_CACHE_KIB,
        None => SQLITE_CACHE_KIB,
    }
}

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
    if sqlite_in_memory(url) {
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
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true)
            // Sorts and temporary tables in temporary files (unlinked, in
            // `SQLITE_TMPDIR` or `/tmp`, used only past a page cache of their
            // own), not in the heap. With `temp_store = memory` the soak's
            // RSS kept rising after warm-up (medians +15 % in 10 minutes)
            // while the live heap did not: in a build with the system
            // allocator, `malloc_stats` showed 42-55 MB in use throughout,
            // but 8 arenas (as many as this pool's connection threads, where
            // SQLite runs) grew from ~9 to ~15 MB apiece, single ones seen
            // holding 8-11 MB at once.
            // With temporary files it grew 4.8 % and 6.0 % (two runs).
            .pragma("temp_store", "file")
            .pragma("cache_size", sqlite_cache_kib(size).to_string());
        let in_memory = sqlite_in_memory(url);
        if !in_memory {
            sqlite_use_wal(&options).await?;
        }
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

/// Switches a SQLite file to WAL mode on one connection of its own, before
/// any pool opens it. WAL is a property of the file, kept across
/// connections and restarts, so pool connections need not ask for it. When
/// each did, every new connection (a pool's first one and its
/// `min_connections` filler at start, or one opened later under load) ran
/// the switch. It reads the file's header and then needs the write lock,
/// and SQLite answers busy at once there instead of calling the busy
/// handler (waiting while holding a read lock could deadlock): two
/// connections switching a new file together, one failed with "database is
/// locked" and the server did not start (CI, once). Here a busy answer is
/// retried until [`SQLITE_BUSY_TIMEOUT`], as the busy handler would have.
async fn sqlite_use_wal(options: &SqliteConnectOptions) -> Result<(), DbErr> {
    let open = |e: sqlx::Error| DbErr::Custom(format!("cannot open SQLite database: {e}"));
    let mut conn = options.connect().await.map_err(open)?;
    let deadline = tokio::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
    let mode = loop {
        match sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL")
            .fetch_one(&mut conn)
            .await
        {
            Ok(mode) => break mode,
            Err(e) if sqlite_busy(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(open(e)),
        }
    };
    conn.close().await.map_err(open)?;
    if mode.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        Err(DbErr::Custom(format!(
            "cannot open SQLite database: it stays in journal mode `{mode}` instead of WAL \
             (WAL needs write access and a local file system with shared memory)"
        )))
    }
}

/// Whether SQLite answered `SQLITE_BUSY` (or one of its extended codes).
fn sqlite_busy(e: &sqlx::Error) -> bool {
    const SQLITE_BUSY: i32 = 5;
    match e {
        sqlx::Error::Database(e) => e
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| code & 0xff == SQLITE_BUSY),
        _ => false,
    }
}

/// Starts a transaction that will write. On SQLite it takes the write lock
/// as it begins (`BEGIN IMMEDIATE`, waiting for another writer as long as
/// the busy timeout allows). A plain (deferred) transaction reads under the
/// snapshot of its first read and cannot write once another connection has
/// committed after it: SQLite answers "database is locked"
/// (`SQLITE_BUSY_SNAPSHOT`) at once, without waiting, so under ingest almost
/// every write that read first (a role change, an incident with an assignee)
/// failed with `UNAVAILABLE`. Inside a transaction (`db` is one) this opens
/// a savepoint, and on PostgreSQL a plain transaction. Reads that need one
/// snapshot and write nothing keep using `begin`.
pub async fn begin_write<C: TransactionTrait>(db: &C) -> Result<C::Transaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
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

/// What [`keep_wal_small`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalCheck {
    /// Frames in the log when it looked.
    pub frames: i64,
    /// Whether it restarted (and truncated) the log.
    pub restarted: bool,
}

/// Keeps a SQLite write-ahead log from growing without bound.
///
/// SQLite's automatic checkpoints copy the log back into the database but
/// can only start the log over when no reader is using it; under steady
/// load some short read transaction always is, so the log grows forever
/// (measured: 1.1 GB of log beside a 107 MB database after 80 s of the
/// soak), and with it the shared-memory index every connection maps and
/// every reader searches. When the log holds `max_frames` or more, this
/// runs a `TRUNCATE` checkpoint, which waits (at most [`WAL_RESTART_WAIT`],
/// holding the write lock) for the readers of the log to finish. New
/// readers then read the database file alone, and the next writer starts
/// the log over.
pub async fn keep_wal_small(db: &DatabaseConnection, max_frames: i64) -> Result<WalCheck, DbErr> {
    let pool = db.get_sqlite_connection_pool();
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| DbErr::Custom(format!("cannot acquire a connection: {e}")))?;
    let query = |e: sqlx::Error| DbErr::Custom(format!("WAL checkpoint failed: {e}"));
    // (busy, frames in the log, frames checkpointed); -1 when not in WAL mode.
    let (_, frames, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut *conn)
        .await
        .map_err(query)?;
    if frames < max_frames {
        return Ok(WalCheck {
            frames,
            restarted: false,
        });
    }
    let timeout =
        |d: Duration| sqlx::AssertSqlSafe(format!("PRAGMA busy_timeout = {}", d.as_millis()));
    sqlx::query(timeout(WAL_RESTART_WAIT))
        .execute(&mut *conn)
        .await
        .map_err(query)?;
    let restart: Result<(i64, i64, i64), sqlx::Error> =
        sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await;
    if sqlx::query(timeout(SQLITE_BUSY_TIMEOUT))
        .execute(&mut *conn)
        .await
        .is_err()
    {
        // Never hand the pool a connection with the short timeout.
        drop(conn.detach());
    }
    Ok(WalCheck {
        frames,
        // busy = 1: readers outlasted the wait; the log restarts next time.
        restarted: matches!(restart, Ok((0, _, _))),
    })
}

/// How often the statistics keeper looks at PostgreSQL's tables.
const STATS_CHECK_EVERY: Duration = Duration::from_secs(30);

/// Rows changed since a table's last `ANALYZE`, as a share of its rows,
/// beyond which [`analyze_stale_tables`] analyzes it again (autovacuum's
/// default is the same 10 %).
const STATS_STALE_SHARE: f64 = 0.1;

/// Rows changed since the last `ANALYZE` below which a table is left alone
/// however small it is.
const STATS_STALE_MIN_ROWS: i64 = 1000;

/// Runs `ANALYZE` on each of this schema's tables whose planner statistics
/// are stale (more than [`STATS_STALE_SHARE`] of its rows, and at least
/// [`STATS_STALE_MIN_ROWS`], changed since they were gathered), and returns
/// their names. PostgreSQL's autovacuum does this where it is on; where it
/// is off (some managed and CI configurations) the planner kept estimating
/// from an empty `events` table, chose a bitmap scan of a million rows for a
/// filtered list (105 ms instead of 19 ms at 800k events), and a 10-minute
/// soak lost most of its throughput.
pub async fn analyze_stale_tables(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    let pool = db.get_postgres_connection_pool();
    let query = |e: sqlx::Error| DbErr::Custom(format!("statistics check failed: {e}"));
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_stat_user_tables \
         WHERE schemaname = current_schema() \
           AND n_mod_since_analyze >= $1 \
           AND n_mod_since_analyze > $2 * n_live_tup \
         ORDER BY relname",
    )
    .bind(STATS_STALE_MIN_ROWS)
    .bind(STATS_STALE_SHARE)
    .fetch_all(pool)
    .await
    .map_err(query)?;
    for table in &stale {
        let quoted = format!("\"{}\"", table.replace('"', "\"\""));
        sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {quoted}")))
            .execute(pool)
            .await
            .map_err(query)?;
    }
    Ok(stale)
}

/// Runs [`analyze_stale_tables`] every half minute until `stop` turns true;
/// `None` for SQLite, whose planner works without gathered statistics.
pub fn spawn_stats_keeper(
    db: &DatabaseConnection,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if Backend::of(db) != Backend::Postgres {
        return None;
    }
    let db = db.clone();
    Some(spawn_every(STATS_CHECK_EVERY, stop, move || {
        let db = db.clone();
        async move {
            let started = std::time::Instant::now();
            match analyze_stale_tables(&db).await {
                Ok(tables) if !tables.is_empty() => tracing::debug!(
                    ?tables,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "PostgreSQL statistics refreshed"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "PostgreSQL statistics refresh failed"),
            }
        }
    }))
}

/// Runs [`keep_wal_small`] every few seconds until `stop` turns true; `None`
/// for PostgreSQL and in-memory SQLite, which have no log to keep.
pub fn spawn_wal_keeper(
    db: &DatabaseConnection,
    config: &Config,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if Backend::of(db) != Backend::Sqlite || sqlite_in_memory(&config.database_url) {
        return None;
    }
    let db = db.clone();
    Some(spawn_every(WAL_CHECK_EVERY, stop, move || {
        let db = db.clone();
        async move {
            let started = std::time::Instant::now();
            match keep_wal_small(&db, WAL_RESTART_FRAMES).await {
                Ok(WalCheck { frames, restarted }) if frames >= WAL_RESTART_FRAMES => {
                    tracing::debug!(
                        frames,
                        restarted,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "SQLite WAL checkpoint"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "SQLite WAL checkpoint failed"),
            }
        }
    }))
}

/// Runs `round` once every `period` (the first after one period) until
/// `stop` turns true; a round in progress finishes first.
fn spawn_every<F, Fut>(
    period: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut round: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = tokio::time::sleep(period) => {}
            }
            round().await;
        }
    })
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
    async fn a_log_held_by_a_reader_is_restarted_once_the_reader_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let db = connect(&Config::for_tests(&url)).await.unwrap();
        let pool = db.get_sqlite_connection_pool();
        sqlx::query("CREATE TABLE t (x BLOB)")
            .execute(pool)
            .await
            .unwrap();
        // A reader holds a snapshot, so automatic checkpoints cannot start
        // the log over while rows are written.
        let mut reader = pool.acquire().await.unwrap();
        sqlx::query("BEGIN").execute(&mut *reader).await.unwrap();
        let _: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut *reader)
            .await
            .unwrap();
        for _ in 0..200 {
            sqlx::query("INSERT INTO t VALUES (zeroblob(16000))")
                .execute(pool)
                .await
                .unwrap();
        }
        let wal = dir.path().join("w.db-wal");
        let grown = std::fs::metadata(&wal).unwrap().len();
        assert!(grown > 3_000_000, "the log holds the rows: {grown} bytes");
        // Below the threshold nothing happens.
        let check = keep_wal_small(&db, i64::MAX).await.unwrap();
        assert!(check.frames >= 600, "{check:?}");
        assert!(!check.restarted);
        // While the reader is still in its transaction the restart gives up
        // after its short wait, and the connection keeps the long timeout.
        let check = keep_wal_small(&db, 100).await.unwrap();
        assert!(!check.restarted, "{check:?}");
        sqlx::query("COMMIT").execute(&mut *reader).await.unwrap();
        drop(reader);
        let check = keep_wal_small(&db, 100).await.unwrap();
        assert!(check.restarted, "{check:?}");
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
        let mut conns = Vec::new();
        for _ in 0..3 {
            conns.push(pool.acquire().await.unwrap());
        }
        for conn in &mut conns {
            let ms: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(ms, SQLITE_BUSY_TIMEOUT.as_millis() as i64);
        }
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut *conns[0])
            .await
            .unwrap();
        assert_eq!(rows, 200);
    }

    #[tokio::test]
    async fn switching_to_wal_waits_for_a_writer_in_the_old_journal() {
        // A file in rollback-journal mode with another connection in a write
        // transaction. The switch reads the header, then needs the write
        // lock; SQLite answers busy at once instead of calling the busy
        // handler (waiting while holding the read lock could deadlock), as it
        // did when two new connections switched a new file at the same time.
        // The server waits for the lock instead of failing to start.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut writer = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut writer)
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut writer)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut writer)
            .await
            .unwrap();
        let config = Config::for_tests(&url);
        let mut opening = tokio::spawn(async move { connect(&config).await });
        // The opener keeps trying while the writer holds its lock.
        if let Ok(early) = tokio::time::timeout(Duration::from_millis(300), &mut opening).await {
            panic!(
                "done while the writer held its lock: {:?}",
                early.unwrap().err()
            );
        }
        sqlx::query("COMMIT").execute(&mut writer).await.unwrap();
        let db = opening.await.unwrap().unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(db.get_sqlite_connection_pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(db.get_sqlite_connection_pool())
            .await
            .unwrap();
        assert_eq!(rows, 1, "the writer's row is kept");
    }

    #[tokio::test]
    async fn every_pooled_sqlite_connection_is_in_wal_mode_with_bounded_memory() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
        let config = Config::for_tests(&url);
        for (db, want) in [
            (connect(&config).await.unwrap(), SQLITE_CACHE_KIB),
            (
                connect_ingest(&config).await.unwrap().unwrap(),
                SQLITE_INGEST_CACHE_KIB,
            ),
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
                assert_eq!(size, want);
                // Temporary tables and sorts go to temporary files (1),
                // not the heap.
                let temp: i64 = sqlx::query_scalar("PRAGMA temp_store")
                    .fetch_one(&mut **conn)
                    .await
                    .unwrap();
                assert_eq!(temp, 1);
                // Set once on the file, not by each connection.
                let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                    .fetch_one(&mut **conn)
                    .await
                    .unwrap();
                assert_eq!(mode, "wal");
            }
        }
    }
}
