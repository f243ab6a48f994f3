//! Alert rules: the expression language ([`expr`]) and the Prometheus-style
//! instance state machine ([`state`]).

pub mod expr;
pub mod state;
