//! Incidents: the lifecycle (open → investigating → resolved → closed),
//! ownership-scoped access, notes and a complete audit trail, reconstructed
//! timelines, suggested root causes, and live updates.
//!
//! [`model`] validates client input, [`lifecycle`] holds the legal status
//! transitions, [`service`] applies changes (one transaction each, audited,
//! published after commit), [`timeline`] merges the incident's story with
//! the events and alerts around it, [`analysis`] ranks likely causes,
//! [`loader`] batches nested lookups, [`live`] decides what each subscriber
//! receives and [`graphql`] exposes it all.

pub mod analysis;
pub mod entity;
pub mod graphql;
pub mod lifecycle;
pub mod live;
pub mod loader;
pub mod model;
pub mod service;
pub mod timeline;

pub use model::{Severity, Status};
pub use service::{FiringAlert, open_count, open_for_alert};
