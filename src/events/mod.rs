//! Events: logs, metric samples, trace spans and alerts sent by services.
//!
//! [`model`] holds the validated domain types, [`entity`] the table, and
//! [`service`] the functions other Rust code calls (`create_event`,
//! `publish_created`). Committed events are published on the hub's `events`
//! topic for the live stream.

pub mod entity;
pub mod model;
pub mod service;

pub use model::{EventType, Level, NewEvent, ValidEvent};
pub use service::{create_event, publish_created};
