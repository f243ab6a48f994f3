//! Database migrations for Sightline, shared by SQLite and PostgreSQL.
//!
//! One file per change, never edited after it lands, and never importing the
//! application's entities: each migration describes tables with its own
//! identifiers so it keeps meaning the same thing as the code moves on.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_auth;
mod m20261128_000002_events_metrics;
mod m20261128_000010_ingest_counters;
mod m20261128_000020_alerts;
mod m20261128_000030_incidents;
mod m20261128_000040_tasks;
mod m20261128_000041_metric_rollups;
mod m20261205_000070_pubsub_payloads;
mod m20261205_000080_metric_samples_covering_index;

/// The ordered list of migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_auth::Migration),
            Box::new(m20261128_000002_events_metrics::Migration),
            Box::new(m20261128_000030_incidents::Migration),
            Box::new(m20261128_000040_tasks::Migration),
            Box::new(m20261128_000041_metric_rollups::Migration),
            Box::new(m20261128_000010_ingest_counters::Migration),
            Box::new(m20261128_000020_alerts::Migration),
            Box::new(m20261205_000070_pubsub_payloads::Migration),
            Box::new(m20261205_000080_metric_samples_covering_index::Migration),
        ]
    }
}
