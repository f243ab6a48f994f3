//! Black-box tests: the real server on a free port, a fresh database per
//! test, real HTTP and WebSocket clients. One test binary for the whole API.

mod common;

mod alerts;
mod auth;
mod conformance;
mod events;
mod fanout;
mod faults;
mod hostile;
mod incidents;
mod metrics;
mod playground;
mod process;
mod prometheus;
mod rbac;
mod replicas;
mod secrets;
mod server_process;
mod stats;
mod tasks;
mod transport;
