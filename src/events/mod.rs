//! Events: logs, metric samples, trace spans and alerts sent by services.
//!
//! [`model`] holds the validated domain types, [`filter`] the one definition
//! of which events match a filter (SQL and live stream alike), [`store`] the
//! bulk insert used by group commit, [`service`] the functions other Rust
//! code calls, and [`graphql`] the API. Committed events are published on the
//! hub's `events` topic, in commit order, for the live stream.

pub mod entity;
pub mod filter;
pub mod graphql;
pub mod model;
pub mod service;
pub mod store;

pub use filter::{EventFilter, TagMatch, TagValue};
pub use model::{EventType, Level, NewEvent, ValidEvent};
pub use service::{create_event, create_events, publish_created};
