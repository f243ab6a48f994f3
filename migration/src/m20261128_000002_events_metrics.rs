//! Events, and metric families, series and samples.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    EventType,
    Source,
    Message,
    Level,
    Tags,
    Payload,
    Timestamp,
    ReceivedAt,
    CreatedBy,
    ApiKeyId,
    Fingerprint,
}

#[derive(DeriveIden)]
enum MetricFamilies {
    Table,
    Id,
    Name,
    MetricType,
    SeriesCount,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MetricSeries {
    Table,
    Id,
    FamilyId,
    Labels,
    Fingerprint,
    CreatedAt,
    LastSampleAt,
    LastValue,
    Total,
    SampleCount,
}

#[derive(DeriveIden)]
enum MetricSamples {
    Table,
    Id,
    SeriesId,
    Timestamp,
    Value,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
}

const EVENT_TYPES: [&str; 4] = ["log", "metric", "trace", "alert"];
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "fatal"];
const METRIC_TYPES: [&str; 4] = ["counter", "gauge", "histogram", "summary"];

async fn index(
    manager: &SchemaManager<'_>,
    name: &str,
    table: impl IntoIden,
    cols: Vec<DynIden>,
) -> Result<(), DbErr> {
    let mut idx = Index::create();
    idx.name(name).table(table);
    for c in cols {
        idx.col(c);
    }
    manager.create_index(idx.to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(ColumnDef::new(Events::Id).uuid().not_null().primary_key())
                    .col(
                        ColumnDef::new(Events::EventType)
                            .string_len(16)
                            .not_null()
                            .check(Expr::col(Events::EventType).is_in(EVENT_TYPES)),
                    )
                    .col(ColumnDef::new(Events::Source).string_len(200).not_null())
                    .col(ColumnDef::new(Events::Message).text().null())
                    .col(
                        ColumnDef::new(Events::Level)
                            .string_len(8)
                            .null()
                            .check(Expr::col(Events::Level).is_in(LEVELS)),
                    )
                    .col(ColumnDef::new(Events::Tags).json_binary().not_null())
                    .col(ColumnDef::new(Events::Payload).json_binary().not_null())
                    .col(
                        ColumnDef::new(Events::Timestamp)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Events::ReceivedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Events::CreatedBy).uuid().null())
                    .col(ColumnDef::new(Events::ApiKeyId).uuid().null())
                    .col(ColumnDef::new(Events::Fingerprint).string_len(64).null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_events_created_by")
                            .from(Events::Table, Events::CreatedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_events_api_key")
                            .from(Events::Table, Events::ApiKeyId)
                            .to(ApiKeys::Table, ApiKeys::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        // Time-ordered listing, commit-ordered resume, and the common filters.
        index(
            manager,
            "ix_events_timestamp",
            Events::Table,
            vec![Events::Timestamp.into_iden(), Events::Id.into_iden()],
        )
        .await?;
        index(
            manager,
            "ix_events_received",
            Events::Table,
            vec![Events::ReceivedAt.into_iden(), Events::Id.into_iden()],
        )
        .await?;
        index(
            manager,
            "ix_events_source_ts",
            Events::Table,
            vec![
                Events::Source.into_iden(),
                Events::Timestamp.into_iden(),
                Events::Id.into_iden(),
            ],
        )
        .await?;
        index(
            manager,
            "ix_events_level_ts",
            Events::Table,
            vec![Events::Level.into_iden(), Events::Timestamp.into_iden()],
        )
        .await?;
        index(
            manager,
            "ix_events_type_ts",
            Events::Table,
            vec![Events::EventType.into_iden(), Events::Timestamp.into_iden()],
        )
        .await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "CREATE INDEX ix_events_tags ON events USING GIN (tags jsonb_path_ops)",
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(MetricFamilies::Table)
                    .col(
                        ColumnDef::new(MetricFamilies::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(MetricFamilies::Name)
                            .string_len(200)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MetricFamilies::MetricType)
                            .string_len(16)
                            .not_null()
                            .check(Expr::col(MetricFamilies::MetricType).is_in(METRIC_TYPES)),
                    )
                    .col(
                        ColumnDef::new(MetricFamilies::SeriesCount)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(MetricFamilies::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MetricFamilies::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_metric_families_name")
                    .table(MetricFamilies::Table)
                    .col(MetricFamilies::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MetricSeries::Table)
                    .col(
                        ColumnDef::new(MetricSeries::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(MetricSeries::FamilyId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MetricSeries::Labels)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MetricSeries::Fingerprint)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MetricSeries::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MetricSeries::LastSampleAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(MetricSeries::LastValue).double().null())
                    .col(
                        ColumnDef::new(MetricSeries::Total)
                            .double()
                            .not_null()
                            .default(0.0),
                    )
                    .col(
                        ColumnDef::new(MetricSeries::SampleCount)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_metric_series_family")
                            .from(MetricSeries::Table, MetricSeries::FamilyId)
                            .to(MetricFamilies::Table, MetricFamilies::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_metric_series_family_fingerprint")
                    .table(MetricSeries::Table)
                    .col(MetricSeries::FamilyId)
                    .col(MetricSeries::Fingerprint)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MetricSamples::Table)
                    .col(
                        ColumnDef::new(MetricSamples::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(MetricSamples::SeriesId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MetricSamples::Timestamp)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(MetricSamples::Value).double().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_metric_samples_series")
                            .from(MetricSamples::Table, MetricSamples::SeriesId)
                            .to(MetricSeries::Table, MetricSeries::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ix_metric_samples_series_ts",
            MetricSamples::Table,
            vec![
                MetricSamples::SeriesId.into_iden(),
                MetricSamples::Timestamp.into_iden(),
            ],
        )
        .await?;
        index(
            manager,
            "ix_metric_samples_ts",
            MetricSamples::Table,
            vec![MetricSamples::Timestamp.into_iden()],
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MetricSamples::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(MetricSeries::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(MetricFamilies::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Events::Table).to_owned())
            .await
    }
}
