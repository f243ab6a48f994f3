//! The `events` table.

use sea_orm::entity::prelude::*;

/// A stored event.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "events")]
pub struct Model {
    /// UUIDv7, assigned at ingest (monotonic per server).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `log`, `metric`, `trace` or `alert`.
    pub event_type: String,
    /// The service that sent it (1–200 chars).
    pub source: String,
    /// Free text (≤ 10,000 chars).
    pub message: Option<String>,
    /// `trace`, `debug`, `info`, `warn`, `error` or `fatal`.
    pub level: Option<String>,
    /// Flat JSON object of tags (string, number or boolean values).
    pub tags: Json,
    /// Free-form JSON payload.
    pub payload: Json,
    /// When it happened (client-supplied or the time of receipt).
    pub timestamp: DateTimeUtc,
    /// When it was committed (server time, monotonic per server).
    pub received_at: DateTimeUtc,
    /// The user who sent it.
    pub created_by: Option<Uuid>,
    /// The API key it was sent with, if any.
    pub api_key_id: Option<Uuid>,
    /// Grouping fingerprint computed by enrichment.
    pub fingerprint: Option<String>,
}

/// Relations of an event.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
