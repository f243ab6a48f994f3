//! What each live subscriber receives from the `incidents` topic: only
//! incidents it may see, judged on the committed state carried by each
//! item (so an unassigned user stops receiving at once), and an explicit
//! `UNAVAILABLE` item when it fell behind.

use std::sync::Arc;

use uuid::Uuid;

use super::entity::incident;
use super::service::{IncidentEvent, IncidentUpdate, can_see};
use crate::auth::Identity;
use crate::error::{AppError, ErrorCode};
use crate::pubsub::Delivery;

fn lagged(n: u64, resume: &str) -> AppError {
    AppError::new(
        ErrorCode::Unavailable,
        format!(
            "this subscriber fell behind and up to {n} incident notifications were skipped; {resume}"
        ),
    )
}

const CREATED_RESUME: &str = "list `incidents` to catch up, then keep reading this stream";
const UPDATED_RESUME: &str =
    "re-read `incident(id)` (its `changes` hold every change) and keep reading this stream";

/// The item an `incidentCreated` subscriber receives after `n` were skipped.
pub fn created_lagged(n: u64) -> AppError {
    lagged(n, CREATED_RESUME)
}

/// The item an `incidentUpdated` subscriber receives after `n` were skipped.
pub fn updated_lagged(n: u64) -> AppError {
    lagged(n, UPDATED_RESUME)
}

/// For `incidentCreated`: new incidents the subscriber may see.
pub fn created_for(
    me: &Identity,
    d: Delivery<Arc<IncidentEvent>>,
) -> Option<Result<incident::Model, AppError>> {
    match d {
        Delivery::Item(ev) => match &*ev {
            IncidentEvent::Created(m) if can_see(me, m) => Some(Ok(m.clone())),
            IncidentEvent::Created(_) | IncidentEvent::Updated(_) => None,
        },
        Delivery::Lagged(n) => Some(Err(created_lagged(n))),
        Delivery::Gap(phase) => Some(Err(phase.error("incidents", "list `incidents` to catch up"))),
    }
}

/// For `incidentUpdated(id)`: changes of that incident while the subscriber may see it.
pub fn updated_for(
    me: &Identity,
    id: Uuid,
    d: Delivery<Arc<IncidentEvent>>,
) -> Option<Result<IncidentUpdate, AppError>> {
    match d {
        Delivery::Item(ev) => match &*ev {
            IncidentEvent::Updated(u) if u.incident.id == id && can_see(me, &u.incident) => {
                Some(Ok(u.clone()))
            }
            IncidentEvent::Created(_) | IncidentEvent::Updated(_) => None,
        },
        Delivery::Lagged(n) => Some(Err(updated_lagged(n))),
        Delivery::Gap(phase) => Some(Err(phase.error(
            "incident changes",
            "re-read `incident(id)` (its `changes` hold every change)",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Credential, Role};

    fn who(role: Role) -> Identity {
        Identity {
            user_id: Uuid::now_v7(),
            username: "u".into(),
            role,
            must_change_password: false,
            credential: Credential::ApiKey {
                id: Uuid::now_v7(),
                expires_at: None,
            },
        }
    }

    fn update(m: &incident::Model) -> Delivery<Arc<IncidentEvent>> {
        Delivery::Item(Arc::new(IncidentEvent::Updated(IncidentUpdate {
            incident: m.clone(),
            changes: Vec::new(),
            actor: None,
            at: crate::util::now(),
        })))
    }

    #[test]
    fn users_receive_only_incidents_they_created_or_are_assigned_to() {
        let user = who(Role::User);
        let moderator = who(Role::Moderator);
        let mut m = super::super::service::tests_support::sample(crate::util::now());
        let created = || Delivery::Item(Arc::new(IncidentEvent::Created(m.clone())));
        assert!(created_for(&user, created()).is_none());
        assert!(created_for(&moderator, created()).is_some());
        m.assigned_to = Some(user.user_id);
        let created = Delivery::Item(Arc::new(IncidentEvent::Created(m.clone())));
        assert!(created_for(&user, created).is_some());
    }

    #[test]
    fn visibility_is_judged_on_each_pushed_state() {
        let user = who(Role::User);
        let mut m = super::super::service::tests_support::sample(crate::util::now());
        m.assigned_to = Some(user.user_id);
        assert!(updated_for(&user, m.id, update(&m)).is_some());
        assert!(updated_for(&user, Uuid::now_v7(), update(&m)).is_none());
        m.assigned_to = None;
        assert!(updated_for(&user, m.id, update(&m)).is_none());
    }

    #[test]
    fn a_lagging_subscriber_gets_an_unavailable_item_saying_how_much_it_missed() {
        let user = who(Role::User);
        let e = created_for(&user, Delivery::Lagged(7))
            .unwrap()
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert!(e.message.contains("7"), "{}", e.message);
        let e = updated_for(&user, Uuid::now_v7(), Delivery::Lagged(3))
            .unwrap()
            .unwrap_err();
        assert!(e.message.contains("incident(id)"), "{}", e.message);
    }
}
