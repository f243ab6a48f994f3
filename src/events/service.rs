//! Event services usable from any Rust code: validate and store an event in
//! the caller's connection or transaction, and publish it once committed.

use std::sync::Arc;

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait};
use serde_json::Value;
use uuid::Uuid;

use super::entity;
use super::model::{NewEvent, ValidEvent};
use crate::auth::{Credential, Identity};
use crate::error::{AppError, AppResult};
use crate::pubsub::Hub;
use crate::util;

/// The row to insert for a validated event.
pub fn to_active_model(
    event: ValidEvent,
    id: Uuid,
    received_at: chrono::DateTime<chrono::Utc>,
    actor: Option<&Identity>,
) -> entity::ActiveModel {
    let api_key_id = actor.and_then(|a| match &a.credential {
        Credential::ApiKey { id, .. } => Some(*id),
        Credential::Session { .. } => None,
    });
    entity::ActiveModel {
        id: Set(id),
        event_type: Set(event.event_type.as_str().to_owned()),
        source: Set(event.source),
        message: Set(event.message),
        level: Set(event.level.map(|l| l.as_str().to_owned())),
        tags: Set(Value::Object(event.tags)),
        payload: Set(event.payload),
        timestamp: Set(event.timestamp),
        received_at: Set(received_at),
        created_by: Set(actor.map(|a| a.user_id)),
        api_key_id: Set(api_key_id),
        fingerprint: Set(None),
    }
}

/// Validates and stores one event through `db` (a connection or an open
/// transaction). It is not published: call [`publish_created`] after the
/// transaction commits.
///
/// ```no_run
/// # async fn demo(db: &sea_orm::DatabaseConnection) -> sightline::AppResult<()> {
/// use sightline::events::{create_event, NewEvent};
/// let event = create_event(db, None, NewEvent::log("billing", Some("info"), "invoice sent")).await?;
/// # Ok(()) }
/// ```
pub async fn create_event(
    db: &impl ConnectionTrait,
    actor: Option<&Identity>,
    new: NewEvent,
) -> AppResult<entity::Model> {
    let now = util::now();
    let valid = new
        .validate(now)
        .map_err(|e| AppError::from_field_errors(&e))?;
    let model = to_active_model(valid, Uuid::now_v7(), now, actor);
    Ok(model.insert(db).await?)
}

/// Sends a committed event to live subscribers.
pub fn publish_created(hub: &Hub, event: entity::Model) {
    hub.topics().events.publish(Arc::new(event));
}
