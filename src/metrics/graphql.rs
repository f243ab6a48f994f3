//! GraphQL API of metrics.
