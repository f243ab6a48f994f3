//! Incidents, their audit trail, notes, linked alerts and stored analyses.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Incidents {
    Table,
    Id,
    Title,
    Description,
    Severity,
    Status,
    StartedAt,
    AcknowledgedAt,
    ResolvedAt,
    ClosedAt,
    RootCause,
    CreatedBy,
    AssignedTo,
    Labels,
    Sources,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum IncidentChanges {
    Table,
    Id,
    IncidentId,
    ActorId,
    At,
    Field,
    OldValue,
    NewValue,
}

#[derive(DeriveIden)]
enum IncidentNotes {
    Table,
    Id,
    IncidentId,
    AuthorId,
    Body,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum IncidentAlerts {
    Table,
    IncidentId,
    InstanceId,
    RuleId,
    RuleName,
    LinkedAt,
}

#[derive(DeriveIden)]
enum IncidentAnalyses {
    Table,
    IncidentId,
    ComputedAt,
    WindowStart,
    WindowEnd,
    BaselineStart,
    Result,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];
const STATUSES: [&str; 4] = ["open", "investigating", "resolved", "closed"];

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn ts_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

fn user_fk(name: &str, table: impl IntoIden, col: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, col)
        .to(Users::Table, Users::Id)
        .on_delete(ForeignKeyAction::SetNull)
        .to_owned()
}

fn incident_fk(name: &str, table: impl IntoIden, col: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, col)
        .to(Incidents::Table, Incidents::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

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
                    .table(Incidents::Table)
                    .col(
                        ColumnDef::new(Incidents::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Incidents::Title).string_len(200).not_null())
                    .col(ColumnDef::new(Incidents::Description).text().null())
                    .col(
                        ColumnDef::new(Incidents::Severity)
                            .string_len(16)
                            .not_null()
                            .check(Expr::col(Incidents::Severity).is_in(SEVERITIES)),
                    )
                    .col(
                        ColumnDef::new(Incidents::Status)
                            .string_len(16)
                            .not_null()
                            .check(Expr::col(Incidents::Status).is_in(STATUSES)),
                    )
                    .col(ts(Incidents::StartedAt))
                    .col(ts_null(Incidents::AcknowledgedAt))
                    .col(ts_null(Incidents::ResolvedAt))
                    .col(ts_null(Incidents::ClosedAt))
                    .col(ColumnDef::new(Incidents::RootCause).text().null())
                    .col(ColumnDef::new(Incidents::CreatedBy).uuid().null())
                    .col(ColumnDef::new(Incidents::AssignedTo).uuid().null())
                    .col(ColumnDef::new(Incidents::Labels).json_binary().not_null())
                    .col(ColumnDef::new(Incidents::Sources).json_binary().not_null())
                    .col(ts(Incidents::CreatedAt))
                    .col(ts(Incidents::UpdatedAt))
                    .foreign_key(&mut user_fk(
                        "fk_incidents_created_by",
                        Incidents::Table,
                        Incidents::CreatedBy,
                    ))
                    .foreign_key(&mut user_fk(
                        "fk_incidents_assigned_to",
                        Incidents::Table,
                        Incidents::AssignedTo,
                    ))
                    .to_owned(),
            )
            .await?;
        // Newest-first listing (and time-range filters) for moderators.
        index(
            manager,
            "ix_incidents_started",
            Incidents::Table,
            vec![Incidents::StartedAt.into_iden(), Incidents::Id.into_iden()],
        )
        .await?;
        // Open counts and status filters.
        index(
            manager,
            "ix_incidents_status",
            Incidents::Table,
            vec![Incidents::Status.into_iden()],
        )
        .await?;
        // A user's own incidents: created by or assigned to them.
        index(
            manager,
            "ix_incidents_created_by",
            Incidents::Table,
            vec![
                Incidents::CreatedBy.into_iden(),
                Incidents::StartedAt.into_iden(),
                Incidents::Id.into_iden(),
            ],
        )
        .await?;
        index(
            manager,
            "ix_incidents_assigned_to",
            Incidents::Table,
            vec![
                Incidents::AssignedTo.into_iden(),
                Incidents::StartedAt.into_iden(),
                Incidents::Id.into_iden(),
            ],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(IncidentChanges::Table)
                    .col(
                        ColumnDef::new(IncidentChanges::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(IncidentChanges::IncidentId)
                            .uuid()
                            .not_null(),
                    )
                    .col(ColumnDef::new(IncidentChanges::ActorId).uuid().null())
                    .col(ts(IncidentChanges::At))
                    .col(
                        ColumnDef::new(IncidentChanges::Field)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IncidentChanges::OldValue)
                            .json_binary()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(IncidentChanges::NewValue)
                            .json_binary()
                            .null(),
                    )
                    .foreign_key(&mut incident_fk(
                        "fk_incident_changes_incident",
                        IncidentChanges::Table,
                        IncidentChanges::IncidentId,
                    ))
                    .foreign_key(&mut user_fk(
                        "fk_incident_changes_actor",
                        IncidentChanges::Table,
                        IncidentChanges::ActorId,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ix_incident_changes_incident_at",
            IncidentChanges::Table,
            vec![
                IncidentChanges::IncidentId.into_iden(),
                IncidentChanges::At.into_iden(),
                IncidentChanges::Id.into_iden(),
            ],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(IncidentNotes::Table)
                    .col(
                        ColumnDef::new(IncidentNotes::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(IncidentNotes::IncidentId).uuid().not_null())
                    .col(ColumnDef::new(IncidentNotes::AuthorId).uuid().null())
                    .col(ColumnDef::new(IncidentNotes::Body).text().not_null())
                    .col(ts(IncidentNotes::CreatedAt))
                    .col(ts(IncidentNotes::UpdatedAt))
                    .foreign_key(&mut incident_fk(
                        "fk_incident_notes_incident",
                        IncidentNotes::Table,
                        IncidentNotes::IncidentId,
                    ))
                    .foreign_key(&mut user_fk(
                        "fk_incident_notes_author",
                        IncidentNotes::Table,
                        IncidentNotes::AuthorId,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ix_incident_notes_incident_at",
            IncidentNotes::Table,
            vec![
                IncidentNotes::IncidentId.into_iden(),
                IncidentNotes::CreatedAt.into_iden(),
                IncidentNotes::Id.into_iden(),
            ],
        )
        .await?;

        // Alert instances live in the alerts domain; a link outlives the
        // instance it names, so there is no foreign key to it.
        manager
            .create_table(
                Table::create()
                    .table(IncidentAlerts::Table)
                    .col(ColumnDef::new(IncidentAlerts::IncidentId).uuid().not_null())
                    .col(ColumnDef::new(IncidentAlerts::InstanceId).uuid().not_null())
                    .col(ColumnDef::new(IncidentAlerts::RuleId).uuid().not_null())
                    .col(
                        ColumnDef::new(IncidentAlerts::RuleName)
                            .string_len(200)
                            .not_null(),
                    )
                    .col(ts(IncidentAlerts::LinkedAt))
                    .primary_key(
                        Index::create()
                            .col(IncidentAlerts::IncidentId)
                            .col(IncidentAlerts::InstanceId),
                    )
                    .foreign_key(&mut incident_fk(
                        "fk_incident_alerts_incident",
                        IncidentAlerts::Table,
                        IncidentAlerts::IncidentId,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ix_incident_alerts_instance",
            IncidentAlerts::Table,
            vec![IncidentAlerts::InstanceId.into_iden()],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(IncidentAnalyses::Table)
                    .col(
                        ColumnDef::new(IncidentAnalyses::IncidentId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ts(IncidentAnalyses::ComputedAt))
                    .col(ts(IncidentAnalyses::WindowStart))
                    .col(ts(IncidentAnalyses::WindowEnd))
                    .col(ts(IncidentAnalyses::BaselineStart))
                    .col(
                        ColumnDef::new(IncidentAnalyses::Result)
                            .json_binary()
                            .not_null(),
                    )
                    .foreign_key(&mut incident_fk(
                        "fk_incident_analyses_incident",
                        IncidentAnalyses::Table,
                        IncidentAnalyses::IncidentId,
                    ))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IncidentAnalyses::Table.into_iden(),
            IncidentAlerts::Table.into_iden(),
            IncidentNotes::Table.into_iden(),
            IncidentChanges::Table.into_iden(),
            Incidents::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
