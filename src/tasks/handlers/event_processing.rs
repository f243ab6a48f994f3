//! `monitoring_event_processing`: enriches stored events with the rules of
//! [`crate::tasks::enrich`]: a level read from the payload when the event has
//! none, the grouping fingerprint, and `trace_id` / `request_id` tags lifted
//! from the payload.
//!
//! When it runs: never on the ingest path. The scheduler enqueues a sweep
//! every `SIGHTLINE_EVENT_PROCESSING_INTERVAL` (10 s by default, one live
//! sweep at a time). A sweep takes events whose `fingerprint` is still null,
//! oldest first, through the partial index `ix_events_unprocessed` (which
//! holds only unprocessed events, so finding them costs nothing however
//! large the table), and enriches them in batches of
//! `SIGHTLINE_EVENT_PROCESSING_BATCH`, one transaction per batch, until none
//! is left or its time budget is spent (the next sweep continues). Ingest
//! pays only for one more index entry per event. A task may also name
//! events to (re)process: `{"event_ids": [...]}`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::FieldError;
use crate::events::entity as event;
use crate::tasks::enrich;
use crate::tasks::registry::{TaskContext, TaskError};

/// Most event ids one task may name.
pub const MAX_EVENT_IDS: usize = 10_000;
/// How long one sweep keeps taking batches.
pub const SWEEP_BUDGET: Duration = Duration::from_secs(30);

/// Checks a payload: `{}` (sweep), or `{"event_ids": [uuid, ...]}`, or
/// `{"limit": n}` (sweep at most n events).
pub fn validate(payload: &Value) -> Result<(), FieldError> {
    super::only_keys(payload, &["event_ids", "limit"])?;
    parse(payload).map(|_| ())
}

enum Mode {
    Ids(Vec<Uuid>),
    Sweep(Option<u64>),
}

fn parse(payload: &Value) -> Result<Mode, FieldError> {
    if let Some(ids) = payload.get("event_ids") {
        let Some(items) = ids.as_array() else {
            return Err(FieldError::new(
                "event_ids",
                "event_ids must be an array of event ids",
            ));
        };
        if items.is_empty() || items.len() > MAX_EVENT_IDS {
            return Err(FieldError::new(
                "event_ids",
                format!("event_ids must hold 1 to {MAX_EVENT_IDS} ids"),
            ));
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let id = item
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| {
                    FieldError::new(format!("event_ids[{i}]"), "not a valid event id")
                })?;
            out.push(id);
        }
        if payload.get("limit").is_some() {
            return Err(FieldError::new(
                "limit",
                "limit applies to sweeps; do not combine it with event_ids",
            ));
        }
        return Ok(Mode::Ids(out));
    }
    match payload.get("limit") {
        None | Some(Value::Null) => Ok(Mode::Sweep(None)),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=1_000_000).contains(&n) => Ok(Mode::Sweep(Some(n))),
            _ => Err(FieldError::new(
                "limit",
                "limit must be an integer from 1 to 1000000",
            )),
        },
    }
}

/// What enrichment changes in one event.
struct Change {
    id: Uuid,
    fingerprint: String,
    /// The new level, when it changes (`None` inside: set to NULL).
    level: Option<Option<String>>,
    /// The new tags (JSON text), when they change.
    tags: Option<String>,
}

/// One row of either update statement: `(id, fp, set_level, lvl, tags)`.
type Row = (Uuid, String, bool, String, String);

impl Change {
    /// Its row. An empty level or tags text means "unchanged" (tags are a
    /// JSON object, never empty text; a level is set only with `set_level`).
    fn row(&self) -> Row {
        (
            self.id,
            self.fingerprint.clone(),
            self.level.is_some(),
            self.level.clone().flatten().unwrap_or_default(),
            self.tags.clone().unwrap_or_default(),
        )
    }
}

/// Enriches `rows` with ONE statement; returns how many changed. A sweep
/// batch holds the write lock (SQLite) or its row locks (PostgreSQL) only
/// for that statement, not for a round trip per row, so ingest waits little.
async fn enrich_rows(db: &DatabaseConnection, rows: Vec<event::Model>) -> Result<u64, TaskError> {
    let mut changes = Vec::with_capacity(rows.len());
    for e in rows {
        let level = enrich::normalized_level(e.level.as_deref(), &e.payload);
        let fingerprint = enrich::fingerprint(&e.source, level, e.message.as_deref());
        let tags = enrich::correlation_tags(&e.tags, &e.payload);
        let level_text = level.map(|l| l.as_str().to_owned());
        if e.fingerprint.as_deref() == Some(fingerprint.as_str())
            && e.level == level_text
            && tags.is_none()
        {
            continue;
        }
        changes.push(Change {
            id: e.id,
            fingerprint,
            level: (e.level != level_text).then_some(level_text),
            tags: tags.map(|t| Value::Object(t).to_string()),
        });
    }
    if changes.is_empty() {
        return Ok(0);
    }
    let statement = match db.get_database_backend() {
        DbBackend::Postgres => update_unnest(&changes),
        _ => update_values(&changes),
    };
    Ok(db.execute_raw(statement).await?.rows_affected())
}

/// The PostgreSQL statement: the rows as five arrays, unnested.
fn update_unnest(changes: &[Change]) -> Statement {
    let mut ids = Vec::with_capacity(changes.len());
    let mut fingerprints = Vec::with_capacity(changes.len());
    let mut set_level = Vec::with_capacity(changes.len());
    let mut levels = Vec::with_capacity(changes.len());
    let mut tags = Vec::with_capacity(changes.len());
    for (id, fp, set, lvl, t) in changes.iter().map(Change::row) {
        ids.push(id);
        fingerprints.push(fp);
        set_level.push(set);
        levels.push(lvl);
        tags.push(t);
    }
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE events AS e SET fingerprint = u.fp, \
         level = CASE WHEN u.set_level THEN NULLIF(u.lvl, '') ELSE e.level END, \
         tags = CASE WHEN u.tags = '' THEN e.tags ELSE u.tags::jsonb END \
         FROM UNNEST($1::uuid[], $2::text[], $3::bool[], $4::text[], $5::text[]) \
         AS u(id, fp, set_level, lvl, tags) WHERE e.id = u.id",
        [
            ids.into(),
            fingerprints.into(),
            set_level.into(),
            levels.into(),
            tags.into(),
        ],
    )
}

/// The SQLite statement, its `VALUES` padded to a power of two rows with the
/// nil id (which no event has). A connection keeps each distinct statement
/// it ran prepared (up to 100), and one of a few hundred rows is a large
/// program: with one statement per batch size, each shared connection could
/// come to hold a hundred of them as sweeps of new sizes ran. Padded, there
/// are at most ten.
fn update_values(changes: &[Change]) -> Statement {
    let rows = changes.len().next_power_of_two();
    let mut sql = String::from("WITH u(id, fp, set_level, lvl, tags) AS (VALUES ");
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(rows * 5);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?,?)");
        let (id, fp, set_level, lvl, tags) = changes.get(i).map_or_else(
            || {
                (
                    Uuid::nil(),
                    String::new(),
                    false,
                    String::new(),
                    String::new(),
                )
            },
            Change::row,
        );
        values.extend([
            id.into(),
            fp.into(),
            set_level.into(),
            lvl.into(),
            tags.into(),
        ]);
    }
    sql.push_str(
        ") UPDATE events SET fingerprint = u.fp, \
         level = CASE WHEN u.set_level THEN NULLIF(u.lvl, '') ELSE events.level END, \
         tags = CASE WHEN u.tags = '' THEN events.tags ELSE u.tags END \
         FROM u WHERE events.id = u.id",
    );
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

/// Runs one task.
pub async fn run(ctx: TaskContext) -> Result<Value, TaskError> {
    let mode = parse(&ctx.task.payload).map_err(|e| {
        TaskError::Permanent(format!("invalid payload: {}: {}", e.field, e.message))
    })?;
    let db = &ctx.state.db;
    let batch = ctx.state.config.event_processing_batch;
    match mode {
        Mode::Ids(ids) => {
            let unique: Vec<Uuid> = ids
                .into_iter()
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let mut processed = 0;
            let mut found = 0;
            for chunk in unique.chunks(batch as usize) {
                let rows = event::Entity::find()
                    .filter(event::Column::Id.is_in(chunk.to_vec()))
                    .all(db)
                    .await?;
                found += rows.len() as u64;
                processed += enrich_rows(db, rows).await?;
            }
            Ok(json!({
                "mode": "ids",
                "requested": unique.len(),
                "found": found,
                "processed": processed,
            }))
        }
        Mode::Sweep(limit) => {
            let started = Instant::now();
            let mut processed = 0u64;
            let mut seen = 0u64;
            let mut remaining = true;
            while started.elapsed() < SWEEP_BUDGET {
                let take = match limit {
                    Some(l) if l <= seen => break,
                    Some(l) => batch.min(l - seen),
                    None => batch,
                };
                let rows = event::Entity::find()
                    .filter(event::Column::Fingerprint.is_null())
                    .order_by_asc(event::Column::ReceivedAt)
                    .order_by_asc(event::Column::Id)
                    .limit(take)
                    .all(db)
                    .await?;
                let n = rows.len() as u64;
                seen += n;
                processed += enrich_rows(db, rows).await?;
                if n < take {
                    remaining = false;
                    break;
                }
                tokio::task::yield_now().await;
            }
            Ok(json!({
                "mode": "sweep",
                "processed": processed,
                "more_remaining": remaining,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_updates_come_in_a_few_padded_sizes() {
        let change = |i: usize| Change {
            id: Uuid::now_v7(),
            fingerprint: format!("fp{i}"),
            level: None,
            tags: None,
        };
        let mut shapes = std::collections::HashSet::new();
        for n in 1..=500 {
            let changes: Vec<Change> = (0..n).map(change).collect();
            let stmt = update_values(&changes);
            let rows = stmt.sql.matches("(?,?,?,?,?)").count();
            assert_eq!(rows, n.next_power_of_two(), "{n} changes");
            let values = stmt.values.expect("bound values").0;
            assert_eq!(values.len(), rows * 5);
            // The real changes first, in order; then rows no event matches.
            assert_eq!(values[5 * (n - 1)], changes[n - 1].id.into());
            if rows > n {
                assert_eq!(values[5 * n], Uuid::nil().into());
            }
            shapes.insert(stmt.sql);
        }
        assert_eq!(shapes.len(), 10, "1, 2, 4, ..., 512 rows");
    }

    #[test]
    fn payloads_are_a_sweep_a_limit_or_ids() {
        assert!(validate(&json!({})).is_ok());
        assert!(validate(&json!({"limit": 10})).is_ok());
        assert!(validate(&json!({"event_ids": [Uuid::now_v7().to_string()]})).is_ok());
    }

    #[test]
    fn bad_payloads_name_the_offending_key() {
        assert_eq!(validate(&json!({"limit": 0})).unwrap_err().field, "limit");
        assert_eq!(validate(&json!({"limit": "x"})).unwrap_err().field, "limit");
        assert_eq!(
            validate(&json!({"event_ids": ["nope"]})).unwrap_err().field,
            "event_ids[0]"
        );
        assert_eq!(
            validate(&json!({"event_ids": []})).unwrap_err().field,
            "event_ids"
        );
        assert_eq!(
            validate(&json!({"source": "x"})).unwrap_err().field,
            "source"
        );
    }
}
