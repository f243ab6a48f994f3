//! System statistics and the Prometheus exposition: the server's own HTTP
//! figures ([`telemetry`]), histogram bucket counts folded incrementally from
//! stored samples ([`rollup`]), and the exposition document itself
//! ([`prometheus`]).

pub mod entity;
pub mod prometheus;
pub mod rollup;
pub mod telemetry;
