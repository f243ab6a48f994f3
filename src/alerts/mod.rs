//! Alert rules that really evaluate: the expression language ([`expr`]),
//! the Prometheus-style instance state machine ([`state`]), validated rule
//! and silence input ([`model`]), pure evaluation over loaded data
//! ([`eval`]) and the queries that load it ([`data`]), the background
//! evaluator ([`evaluator`]), the services behind the API ([`service`]), and
//! the GraphQL types and resolvers ([`graphql`], [`loader`]).
//!
//! Tables: `alert_rules`, `alert_instances` (one row per rule and label
//! set), `alert_transitions` (the history) and `silences`. Committed
//! transitions are published on the hub's `alerts` topic; firing and
//! resolved transitions are also written as `alert` events.

pub mod data;
pub mod entity;
pub mod eval;
pub mod evaluator;
pub mod expr;
pub mod graphql;
pub mod loader;
pub mod model;
pub mod service;
pub mod state;
