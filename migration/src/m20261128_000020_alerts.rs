//! Alert rules, their instances (one per rule and label set), the history of
//! instance transitions, and silences.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AlertRules {
    Table,
    Id,
    Name,
    Description,
    Query,
    Threshold,
    ForSecs,
    KeepFiringForSecs,
    Severity,
    Labels,
    Annotations,
    Enabled,
    EvaluationIntervalSecs,
    CreateIncident,
    IncidentSeverity,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    NextEvaluationAt,
    LastEvaluatedAt,
    LastEvaluationMs,
    LastError,
}

#[derive(DeriveIden)]
enum Silences {
    Table,
    Id,
    Matchers,
    StartsAt,
    EndsAt,
    Comment,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AlertInstances {
    Table,
    Id,
    RuleId,
    Fingerprint,
    Labels,
    State,
    ActiveAt,
    FiredAt,
    ResolvedAt,
    KeepFiringSince,
    Value,
    LastEvaluatedAt,
    SilencedBy,
    AcknowledgedBy,
    AcknowledgedAt,
    AcknowledgedComment,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AlertTransitions {
    Table,
    Id,
    RuleId,
    RuleName,
    InstanceId,
    Labels,
    Severity,
    FromState,
    ToState,
    Value,
    Silenced,
    At,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

const SEVERITIES: [&str; 3] = ["info", "warning", "critical"];
const INCIDENT_SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];
const STATES: [&str; 3] = ["inactive", "pending", "firing"];

fn timestamp(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn timestamp_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

async fn index(
    manager: &SchemaManager<'_>,
    name: &str,
    table: impl IntoIden,
    cols: Vec<DynIden>,
    unique: bool,
) -> Result<(), DbErr> {
    let mut idx = Index::create();
    idx.name(name).table(table);
    for c in cols {
        idx.col(c);
    }
    if unique {
        idx.unique();
    }
    manager.create_index(idx.to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AlertRules::Table)
                    .col(
                        ColumnDef::new(AlertRules::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AlertRules::Name).string_len(200).not_null())
                    .col(ColumnDef::new(AlertRules::Description).text().null())
                    .col(ColumnDef::new(AlertRules::Query).text().not_null())
                    .col(ColumnDef::new(AlertRules::Threshold).double().null())
                    .col(
                        ColumnDef::new(AlertRules::ForSecs)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(AlertRules::KeepFiringForSecs)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(AlertRules::Severity)
                            .string_len(16)
                            .not_null()
                            .check(Expr::col(AlertRules::Severity).is_in(SEVERITIES)),
                    )
                    .col(ColumnDef::new(AlertRules::Labels).json_binary().not_null())
                    .col(
                        ColumnDef::new(AlertRules::Annotations)
                            .json_binary()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AlertRules::Enabled).boolean().not_null())
                    .col(
                        ColumnDef::new(AlertRules::EvaluationIntervalSecs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AlertRules::CreateIncident)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(AlertRules::IncidentSeverity)
                            .string_len(16)
                            .null()
                            .check(
                                Expr::col(AlertRules::IncidentSeverity).is_in(INCIDENT_SEVERITIES),
                            ),
                    )
                    .col(ColumnDef::new(AlertRules::CreatedBy).uuid().null())
                    .col(timestamp(AlertRules::CreatedAt))
                    .col(timestamp(AlertRules::UpdatedAt))
                    .col(timestamp(AlertRules::NextEvaluationAt))
                    .col(timestamp_null(AlertRules::LastEvaluatedAt))
                    .col(ColumnDef::new(AlertRules::LastEvaluationMs).double().null())
                    .col(ColumnDef::new(AlertRules::LastError).text().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_alert_rules_created_by")
                            .from(AlertRules::Table, AlertRules::CreatedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ux_alert_rules_name",
            AlertRules::Table,
            vec![AlertRules::Name.into_iden()],
            true,
        )
        .await?;
        // The scheduler's "what is due" query, and keyset listing.
        index(
            manager,
            "ix_alert_rules_due",
            AlertRules::Table,
            vec![
                AlertRules::Enabled.into_iden(),
                AlertRules::NextEvaluationAt.into_iden(),
            ],
            false,
        )
        .await?;
        index(
            manager,
            "ix_alert_rules_created",
            AlertRules::Table,
            vec![
                AlertRules::CreatedAt.into_iden(),
                AlertRules::Id.into_iden(),
            ],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Silences::Table)
                    .col(ColumnDef::new(Silences::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Silences::Matchers).json_binary().not_null())
                    .col(timestamp(Silences::StartsAt))
                    .col(timestamp(Silences::EndsAt))
                    .col(ColumnDef::new(Silences::Comment).text().not_null())
                    .col(ColumnDef::new(Silences::CreatedBy).uuid().null())
                    .col(timestamp(Silences::CreatedAt))
                    .col(timestamp(Silences::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_silences_created_by")
                            .from(Silences::Table, Silences::CreatedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ix_silences_ends",
            Silences::Table,
            vec![Silences::EndsAt.into_iden()],
            false,
        )
        .await?;
        index(
            manager,
            "ix_silences_created",
            Silences::Table,
            vec![Silences::CreatedAt.into_iden(), Silences::Id.into_iden()],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(AlertInstances::Table)
                    .col(
                        ColumnDef::new(AlertInstances::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AlertInstances::RuleId).uuid().not_null())
                    .col(
                        ColumnDef::new(AlertInstances::Fingerprint)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AlertInstances::Labels)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AlertInstances::State)
                            .string_len(16)
                            .not_null()
                            .check(Expr::col(AlertInstances::State).is_in(STATES)),
                    )
                    .col(timestamp_null(AlertInstances::ActiveAt))
                    .col(timestamp_null(AlertInstances::FiredAt))
                    .col(timestamp_null(AlertInstances::ResolvedAt))
                    .col(timestamp_null(AlertInstances::KeepFiringSince))
                    .col(ColumnDef::new(AlertInstances::Value).double().null())
                    .col(timestamp_null(AlertInstances::LastEvaluatedAt))
                    .col(ColumnDef::new(AlertInstances::SilencedBy).uuid().null())
                    .col(ColumnDef::new(AlertInstances::AcknowledgedBy).uuid().null())
                    .col(timestamp_null(AlertInstances::AcknowledgedAt))
                    .col(
                        ColumnDef::new(AlertInstances::AcknowledgedComment)
                            .text()
                            .null(),
                    )
                    .col(timestamp(AlertInstances::CreatedAt))
                    .col(timestamp(AlertInstances::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_alert_instances_rule")
                            .from(AlertInstances::Table, AlertInstances::RuleId)
                            .to(AlertRules::Table, AlertRules::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_alert_instances_silence")
                            .from(AlertInstances::Table, AlertInstances::SilencedBy)
                            .to(Silences::Table, Silences::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_alert_instances_acknowledged_by")
                            .from(AlertInstances::Table, AlertInstances::AcknowledgedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ux_alert_instances_rule_fingerprint",
            AlertInstances::Table,
            vec![
                AlertInstances::RuleId.into_iden(),
                AlertInstances::Fingerprint.into_iden(),
            ],
            true,
        )
        .await?;
        // Counting firing instances (statistics) and listing by state.
        index(
            manager,
            "ix_alert_instances_state",
            AlertInstances::Table,
            vec![AlertInstances::State.into_iden()],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(AlertTransitions::Table)
                    .col(
                        ColumnDef::new(AlertTransitions::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    // No foreign keys: the history outlives rules and instances.
                    .col(ColumnDef::new(AlertTransitions::RuleId).uuid().not_null())
                    .col(
                        ColumnDef::new(AlertTransitions::RuleName)
                            .string_len(200)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AlertTransitions::InstanceId)
                            .uuid()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AlertTransitions::Labels)
                            .json_binary()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AlertTransitions::Severity)
                            .string_len(16)
                            .not_null()
                            .check(Expr::col(AlertTransitions::Severity).is_in(SEVERITIES)),
                    )
                    .col(
                        ColumnDef::new(AlertTransitions::FromState)
                            .string_len(16)
                            .not_null()
                            .check(Expr::col(AlertTransitions::FromState).is_in(STATES)),
                    )
                    .col(
                        ColumnDef::new(AlertTransitions::ToState)
                            .string_len(16)
                            .not_null()
                            .check(Expr::col(AlertTransitions::ToState).is_in(STATES)),
                    )
                    .col(ColumnDef::new(AlertTransitions::Value).double().null())
                    .col(
                        ColumnDef::new(AlertTransitions::Silenced)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(timestamp(AlertTransitions::At))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "ix_alert_transitions_instance_at",
            AlertTransitions::Table,
            vec![
                AlertTransitions::InstanceId.into_iden(),
                AlertTransitions::At.into_iden(),
            ],
            false,
        )
        .await?;
        index(
            manager,
            "ix_alert_transitions_rule_at",
            AlertTransitions::Table,
            vec![
                AlertTransitions::RuleId.into_iden(),
                AlertTransitions::At.into_iden(),
            ],
            false,
        )
        .await?;
        index(
            manager,
            "ix_alert_transitions_at",
            AlertTransitions::Table,
            vec![
                AlertTransitions::At.into_iden(),
                AlertTransitions::Id.into_iden(),
            ],
            false,
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AlertTransitions::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AlertInstances::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Silences::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AlertRules::Table).to_owned())
            .await
    }
}
