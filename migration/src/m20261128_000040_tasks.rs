//! The task queue (`tasks`), the periodic schedules that feed it
//! (`task_schedules`), and the partial indexes event enrichment uses to find
//! events it has not processed yet.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    TaskType,
    Payload,
    Status,
    Priority,
    Attempts,
    MaxAttempts,
    RunAfter,
    LeaseExpiresAt,
    LockedBy,
    LastError,
    Result,
    DedupeKey,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum TaskSchedules {
    Table,
    Name,
    TaskType,
    Payload,
    IntervalSecs,
    NextRunAt,
    LastEnqueuedAt,
    LastTaskId,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

const STATUSES: [&str; 6] = [
    "pending",
    "running",
    "succeeded",
    "failed",
    "dead",
    "cancelled",
];

/// Indexes written as SQL because they are partial (both backends support
/// `CREATE INDEX ... WHERE`).
const PARTIAL_INDEXES: [&str; 5] = [
    // The claim: due tasks by priority, oldest first.
    "CREATE INDEX ix_tasks_due ON tasks (priority DESC, run_after, id) \
     WHERE status IN ('pending', 'failed')",
    // The lease reaper.
    "CREATE INDEX ix_tasks_lease ON tasks (lease_expires_at) WHERE status = 'running'",
    // At most one live instance per dedupe key (a schedule, an alert rule...).
    "CREATE UNIQUE INDEX ux_tasks_dedupe ON tasks (dedupe_key) \
     WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'running', 'failed')",
    // Event enrichment finds unprocessed events without touching the rest;
    // new rows enter it at no cost beyond one index entry.
    "CREATE INDEX ix_events_unprocessed ON events (received_at, id) WHERE fingerprint IS NULL",
    // Grouping repeats of one issue.
    "CREATE INDEX ix_events_fingerprint ON events (fingerprint, timestamp) \
     WHERE fingerprint IS NOT NULL",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tasks::Table)
                    .col(ColumnDef::new(Tasks::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Tasks::TaskType).string_len(64).not_null())
                    .col(ColumnDef::new(Tasks::Payload).json_binary().not_null())
                    .col(
                        ColumnDef::new(Tasks::Status)
                            .string_len(16)
                            .not_null()
                            .check(Expr::col(Tasks::Status).is_in(STATUSES)),
                    )
                    .col(
                        ColumnDef::new(Tasks::Priority)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Tasks::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Tasks::MaxAttempts).integer().not_null())
                    .col(
                        ColumnDef::new(Tasks::RunAfter)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Tasks::LeaseExpiresAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Tasks::LockedBy).string_len(100).null())
                    .col(ColumnDef::new(Tasks::LastError).text().null())
                    .col(ColumnDef::new(Tasks::Result).json_binary().null())
                    .col(ColumnDef::new(Tasks::DedupeKey).string_len(200).null())
                    .col(ColumnDef::new(Tasks::CreatedBy).uuid().null())
                    .col(
                        ColumnDef::new(Tasks::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Tasks::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Tasks::StartedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Tasks::FinishedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_tasks_created_by")
                            .from(Tasks::Table, Tasks::CreatedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        // Listing (newest or oldest first) and per-status listing and counts.
        manager
            .create_index(
                Index::create()
                    .name("ix_tasks_created")
                    .table(Tasks::Table)
                    .col(Tasks::CreatedAt)
                    .col(Tasks::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_tasks_status_created")
                    .table(Tasks::Table)
                    .col(Tasks::Status)
                    .col(Tasks::CreatedAt)
                    .col(Tasks::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_tasks_finished")
                    .table(Tasks::Table)
                    .col(Tasks::FinishedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TaskSchedules::Table)
                    .col(
                        ColumnDef::new(TaskSchedules::Name)
                            .string_len(200)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(TaskSchedules::TaskType)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TaskSchedules::Payload)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TaskSchedules::IntervalSecs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TaskSchedules::NextRunAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TaskSchedules::LastEnqueuedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(TaskSchedules::LastTaskId).uuid().null())
                    .col(
                        ColumnDef::new(TaskSchedules::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;

        let db = manager.get_connection();
        for sql in PARTIAL_INDEXES {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS ix_events_fingerprint")
            .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS ix_events_unprocessed")
            .await?;
        manager
            .drop_table(Table::drop().table(TaskSchedules::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Tasks::Table).to_owned())
            .await
    }
}
