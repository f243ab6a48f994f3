//! Metrics: families (one per name, one type for life), series (one per label
//! set) and samples; validation ([`model`]), group-commit writes ([`store`]),
//! the Rust API ([`service`]), GraphQL ([`graphql`]), aggregation over
//! samples ([`aggregate`]) and the Prometheus text exposition
//! ([`exposition`]).
//!
//! A name keeps the type of its first sample: `gauge` (last value wins),
//! `counter` (each sample a non-negative increment; the value is the running
//! total), `histogram` or `summary` (each sample one observation).

pub mod aggregate;
pub mod entity;
pub mod exposition;
pub mod graphql;
pub mod model;
pub mod read;
pub mod service;
pub mod store;

pub use model::{MetricKind, NewMetric, ValidMetric};
pub use service::{create_metric, create_metrics};
pub use store::StoredSample;
