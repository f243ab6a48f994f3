//! Metrics: families (one per name, one type for life), series (one per label
//! set) and samples; aggregation over samples ([`aggregate`]) and the
//! Prometheus text exposition ([`exposition`]).

pub mod aggregate;
pub mod entity;
pub mod exposition;
