//! System statistics and the Prometheus exposition: the server's own HTTP
//! figures ([`telemetry`]), histogram bucket counts folded incrementally from
//! stored samples ([`rollup`]), and the exposition document itself
//! ([`prometheus`]), and the monitoring figures ([`service`], [`graphql`]).

pub mod entity;
pub mod graphql;
pub mod prometheus;
pub mod rollup;
pub mod service;
pub mod telemetry;
