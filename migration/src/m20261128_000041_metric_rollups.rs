//! What the Prometheus exposition reads instead of scanning samples:
//! cumulative histogram bucket counts per series (`metric_histogram_buckets`),
//! folded incrementally from new samples up to a watermark kept in
//! `metric_rollup_state`, and an index to list series still within retention.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MetricHistogramBuckets {
    Table,
    SeriesId,
    Bounds,
    Counts,
    Count,
    Sum,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MetricRollupState {
    Table,
    Id,
    Bounds,
    Watermark,
    CandidateId,
    CandidateHolders,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MetricSeries {
    Table,
    Id,
    LastSampleAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MetricHistogramBuckets::Table)
                    .col(
                        ColumnDef::new(MetricHistogramBuckets::SeriesId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(MetricHistogramBuckets::Bounds)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MetricHistogramBuckets::Counts)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MetricHistogramBuckets::Count)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(MetricHistogramBuckets::Sum)
                            .double()
                            .not_null()
                            .default(0.0),
                    )
                    .col(
                        ColumnDef::new(MetricHistogramBuckets::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_metric_histogram_buckets_series")
                            .from(
                                MetricHistogramBuckets::Table,
                                MetricHistogramBuckets::SeriesId,
                            )
                            .to(MetricSeries::Table, MetricSeries::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MetricRollupState::Table)
                    .col(
                        ColumnDef::new(MetricRollupState::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(MetricRollupState::Bounds)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MetricRollupState::Watermark)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(MetricRollupState::CandidateId)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(MetricRollupState::CandidateHolders)
                            .json_binary()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(MetricRollupState::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_metric_series_last_sample")
                    .table(MetricSeries::Table)
                    .col(MetricSeries::LastSampleAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_metric_series_last_sample")
                    .table(MetricSeries::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(MetricRollupState::Table).to_owned())
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(MetricHistogramBuckets::Table)
                    .to_owned(),
            )
            .await
    }
}
