//! GraphQL API of events.
