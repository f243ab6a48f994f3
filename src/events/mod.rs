//! Events: logs, metric samples, trace spans and alerts sent by services.
//!
//! The table lives in [`entity`]; ingest, queries and the live stream are
//! added by the events work.

pub mod entity;
