//! Reading the raw samples of many series in one query: for `metricSeries`
//! and for the alert evaluator's windows.
//!
//! On PostgreSQL the rows arrive as they are. On SQLite, sqlx hands rows over
//! from its worker thread one at a time, which cost more than the query
//! itself (about 9 µs a sample: `metricSeries` over 10 series and an hour
//! of the soak's samples took 80 ms); there one row per series carries its
//! samples as text, `timestamp value,timestamp value,...` with each value
//! written with 17 significant digits, so it reads back as the same `f64`.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use crate::error::{AppError, AppResult};
use crate::ingest::counters::placeholders;

/// Which series to read.
#[derive(Debug, Clone, Copy)]
pub enum SeriesSet<'a> {
    /// These series.
    Ids(&'a [i64]),
    /// Every series of this metric family.
    Family(i64),
}

/// Samples per series id, each ascending by `(timestamp, id)`.
pub type SeriesSamples = HashMap<i64, Vec<(DateTime<Utc>, f64)>>;

/// The samples of `series` with `after < timestamp <= upto` (no upper bound
/// when `upto` is `None`), or `None` when there are more than `max`.
pub async fn read_samples(
    db: &impl ConnectionTrait,
    series: SeriesSet<'_>,
    after: DateTime<Utc>,
    upto: Option<DateTime<Utc>>,
    max: usize,
) -> AppResult<Option<SeriesSamples>> {
    let backend = db.get_database_backend();
    let Some((rows, values)) = samples_query(backend, series, after, upto, max) else {
        return Ok(Some(HashMap::new()));
    };
    let mut out = SeriesSamples::new();
    let mut read = 0usize;
    if backend == DbBackend::Postgres {
        let sql = rows.replacen(", s.id FROM", " FROM", 1);
        for row in db
            .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?
        {
            let id: i64 = row.try_get_by_index(0)?;
            out.entry(id)
                .or_default()
                .push((row.try_get_by_index(1)?, row.try_get_by_index(2)?));
            read += 1;
        }
    } else {
        let sql = format!(
            "SELECT series_id, COUNT(*), group_concat(\"timestamp\" || ' ' || printf('%!.17g', value), \
             ',' ORDER BY \"timestamp\", id) FROM ({rows}) GROUP BY series_id"
        );
        for row in db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                placeholders(backend, &sql),
                values,
            ))
            .await?
        {
            let id: i64 = row.try_get_by_index(0)?;
            let count: i64 = row.try_get_by_index(1)?;
            let text: String = row.try_get_by_index(2)?;
            let mut samples = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
            for item in text.split(',') {
                samples.push(parse_sample(item).ok_or_else(|| unreadable(item))?);
            }
            read += samples.len();
            out.insert(id, samples);
        }
    }
    Ok((read <= max).then_some(out))
}

/// The query of [`read_samples`] and its values, one row per sample in
/// `(series_id, timestamp, id)` order; `None` for no series. The index
/// `(series_id, timestamp, id, value)` answers it alone.
fn samples_query(
    backend: DbBackend,
    series: SeriesSet<'_>,
    after: DateTime<Utc>,
    upto: Option<DateTime<Utc>>,
    max: usize,
) -> Option<(String, Vec<Value>)> {
    let mut values: Vec<Value> = Vec::new();
    let within = match series {
        SeriesSet::Ids([]) => return None,
        SeriesSet::Ids(ids) => series_in(backend, &mut values, ids.to_vec()),
        SeriesSet::Family(id) => {
            values.push(id.into());
            "s.series_id IN (SELECT id FROM metric_series WHERE family_id = $1)".to_owned()
        }
    };
    values.push(after.into());
    let mut range = "s.\"timestamp\" > $2".to_owned();
    if let Some(upto) = upto {
        values.push(upto.into());
        range.push_str(" AND s.\"timestamp\" <= $3");
    }
    // LIMIT as a literal: SQLite re-prepares a statement whose LIMIT is bound.
    let rows = format!(
        "SELECT s.series_id, s.\"timestamp\", s.value, s.id FROM metric_samples s \
         WHERE {within} AND {range} ORDER BY s.series_id, s.\"timestamp\", s.id LIMIT {}",
        max.saturating_add(1)
    );
    Some((rows, values))
}

/// `series_id IN (ids)` with one parameter on either backend.
pub(crate) fn series_in(backend: DbBackend, values: &mut Vec<Value>, ids: Vec<i64>) -> String {
    match backend {
        DbBackend::Postgres => {
            values.push(ids.into());
            format!("s.series_id = ANY(${}::bigint[])", values.len())
        }
        _ => {
            values.push(
                serde_json::to_string(&ids)
                    .unwrap_or_else(|_| "[]".into())
                    .into(),
            );
            format!(
                "s.series_id IN (SELECT value FROM json_each(${}))",
                values.len()
            )
        }
    }
}

fn unreadable(item: &str) -> AppError {
    AppError::internal(std::io::Error::other(format!(
        "unreadable stored metric sample `{item}`"
    )))
}

/// One `timestamp value` item of the SQLite form.
fn parse_sample(item: &str) -> Option<(DateTime<Utc>, f64)> {
    let (at, value) = item.rsplit_once(' ')?;
    Some((parse_stored_time(at)?, value.parse().ok()?))
}

/// A timestamp as SQLite stores it: RFC 3339 as sqlx writes it, or the
/// other text forms sqlx reads (space instead of `T`, no offset meaning UTC).
fn parse_stored_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeDelta;

    use super::*;
    use crate::config::Config;
    use crate::metrics::{MetricKind, NewMetric, create_metrics};

    #[tokio::test]
    async fn samples_of_listed_series_or_a_whole_family_ascending_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display());
        let db = crate::db::connect(&Config::for_tests(&url)).await.unwrap();
        crate::db::migrate(&db).await.unwrap();
        let t0 = crate::util::to_stored_precision(Utc::now() - TimeDelta::minutes(10));
        let at = |i: i64| t0 + TimeDelta::seconds(i);
        // Three series of five samples, sent newest first.
        let mut metrics = Vec::new();
        for host in ["a", "b", "c"] {
            for i in (0..5).rev() {
                metrics.push(NewMetric {
                    name: "m".to_owned(),
                    metric_type: MetricKind::Gauge,
                    value: i as f64 + 0.1,
                    labels: BTreeMap::from([("host".to_owned(), host.to_owned())]),
                    timestamp: Some(at(i)),
                });
            }
        }
        let stored = create_metrics(&db, metrics).await.unwrap();
        let mut ids: Vec<i64> = stored.iter().map(|s| s.series_id).collect();
        ids.dedup();
        assert_eq!(ids.len(), 3);
        let family: i64 = db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT id FROM metric_families WHERE name = 'm'",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index(0)
            .unwrap();
        let all: Vec<(DateTime<Utc>, f64)> = (0..5).map(|i| (at(i), i as f64 + 0.1)).collect();

        let two = read_samples(&db, SeriesSet::Ids(&ids[..2]), at(-1), None, 100)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(two.len(), 2);
        for id in &ids[..2] {
            assert_eq!(two[id], all);
        }
        // `after` is exclusive, `upto` inclusive.
        let window = read_samples(&db, SeriesSet::Family(family), at(1), Some(at(3)), 100)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(window.len(), 3);
        for id in &ids {
            assert_eq!(window[id], all[2..4]);
        }
        let fifteen = SeriesSet::Family(family);
        assert!(
            read_samples(&db, fifteen, at(-1), None, 15)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            read_samples(&db, fifteen, at(-1), None, 14)
                .await
                .unwrap()
                .is_none()
        );
        let none = read_samples(&db, SeriesSet::Ids(&[]), at(-1), None, 10)
            .await
            .unwrap();
        assert_eq!(none, Some(SeriesSamples::new()));
    }

    #[tokio::test]
    async fn the_sample_read_is_answered_by_the_covering_index_alone() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
        let config = Config::for_tests(&url);
        let migrating = crate::db::connect(&config).await.unwrap();
        crate::db::migrate(&migrating).await.unwrap();
        migrating.close().await.unwrap();
        // Fresh connections: `EXPLAIN` does not check the schema's version,
        // so a connection that read the schema before the migration ended
        // would explain the plan for the old indexes.
        let db = crate::db::connect(&config).await.unwrap();
        let now = Utc::now();
        for series in [SeriesSet::Ids(&[1, 2, 3]), SeriesSet::Family(1)] {
            for upto in [None, Some(now)] {
                let (sql, values) =
                    samples_query(DbBackend::Sqlite, series, now, upto, 100).unwrap();
                let explain = format!("EXPLAIN QUERY PLAN {sql}");
                let plan: Vec<String> = db
                    .query_all_raw(Statement::from_sql_and_values(
                        DbBackend::Sqlite,
                        placeholders(DbBackend::Sqlite, &explain),
                        values,
                    ))
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| row.try_get_by_index::<String>(3).unwrap())
                    .collect();
                let plan = plan.join("\n");
                // No lookup of each sample's row, and no sort: one index range per series.
                assert!(
                    plan.contains("USING COVERING INDEX ix_metric_samples_series_ts_id_value"),
                    "{series:?} {upto:?}:\n{plan}"
                );
                assert!(
                    !plan.contains("TEMP B-TREE"),
                    "{series:?} {upto:?}:\n{plan}"
                );
            }
        }
    }

    #[test]
    fn stored_times_in_each_form_sqlx_reads() {
        let want: DateTime<Utc> = "2026-12-05T15:41:00.123456Z".parse().unwrap();
        for s in [
            "2026-12-05T15:41:00.123456+00:00",
            "2026-12-05T15:41:00.123456Z",
            "2026-12-05 15:41:00.123456+00:00",
            "2026-12-05T17:41:00.123456+02:00",
            "2026-12-05T15:41:00.123456",
            "2026-12-05 15:41:00.123456",
        ] {
            assert_eq!(parse_stored_time(s), Some(want), "{s}");
        }
        assert_eq!(parse_stored_time("yesterday"), None);
    }

    #[test]
    fn a_sample_splits_at_its_last_space() {
        let (at, v) = parse_sample("2026-12-05 15:41:00+00:00 -1.0000000000000001e+20").unwrap();
        assert_eq!(at, "2026-12-05T15:41:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(v, -1.0000000000000001e20);
        assert_eq!(parse_sample("2026-12-05T15:41:00Z"), None);
        assert_eq!(parse_sample("2026-12-05T15:41:00Z x"), None);
    }
}
