//! Ingest counters kept by the write path, so statistics never scan the big
//! tables: one row per kind with the running total (and, for events, the
//! commit clock that makes `received_at` follow commit order), and per-minute
//! counts by time of receipt. Also replaces the plain time index of metric
//! samples by a `(timestamp, id)` one that serves keyset pagination.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum IngestCounters {
    Table,
    Kind,
    Total,
    ClockUs,
}

#[derive(DeriveIden)]
enum IngestMinutes {
    Table,
    Kind,
    Minute,
    Count,
}

#[derive(DeriveIden)]
enum MetricSamples {
    Table,
    Id,
    Timestamp,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IngestCounters::Table)
                    .col(
                        ColumnDef::new(IngestCounters::Kind)
                            .string_len(32)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(IngestCounters::Total)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(IngestCounters::ClockUs)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(IngestMinutes::Table)
                    .col(
                        ColumnDef::new(IngestMinutes::Kind)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IngestMinutes::Minute)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IngestMinutes::Count)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .primary_key(
                        Index::create()
                            .col(IngestMinutes::Kind)
                            .col(IngestMinutes::Minute),
                    )
                    .to_owned(),
            )
            .await?;
        // Seed the totals with whatever the tables already hold.
        let db = manager.get_connection();
        let backend = manager.get_database_backend();
        for (kind, table) in [("events", "events"), ("metric_samples", "metric_samples")] {
            db.execute_raw(Statement::from_string(
                backend,
                format!(
                    "INSERT INTO ingest_counters (kind, total, clock_us) \
                     SELECT '{kind}', COUNT(*), 0 FROM {table}"
                ),
            ))
            .await?;
        }

        manager
            .drop_index(
                Index::drop()
                    .name("ix_metric_samples_ts")
                    .table(MetricSamples::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_metric_samples_ts_id")
                    .table(MetricSamples::Table)
                    .col(MetricSamples::Timestamp)
                    .col(MetricSamples::Id)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_metric_samples_ts_id")
                    .table(MetricSamples::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_metric_samples_ts")
                    .table(MetricSamples::Table)
                    .col(MetricSamples::Timestamp)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(IngestMinutes::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(IngestCounters::Table).to_owned())
            .await
    }
}
