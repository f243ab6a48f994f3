//! PostgreSQL only: live-update payloads too large for one `NOTIFY`. The
//! writing transaction stores the payload here and notifies its id; every
//! replica's listener reads it back. Rows are pruned after a few minutes.
//! SQLite delivers live updates in-process and gets no table.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PubsubPayloads {
    Table,
    Id,
    Body,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        manager
            .create_table(
                Table::create()
                    .table(PubsubPayloads::Table)
                    .col(
                        ColumnDef::new(PubsubPayloads::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(PubsubPayloads::Body).text().not_null())
                    .col(
                        ColumnDef::new(PubsubPayloads::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null()
                            .default(Expr::current_timestamp()),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_pubsub_payloads_created_at")
                    .table(PubsubPayloads::Table)
                    .col(PubsubPayloads::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        manager
            .drop_table(Table::drop().table(PubsubPayloads::Table).to_owned())
            .await
    }
}
