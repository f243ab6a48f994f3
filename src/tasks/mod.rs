//! Background tasks that really run: a database-backed queue ([`service`])
//! with leases, retries with exponential backoff and jitter, and dead tasks
//! that keep their error; workers in the server process ([`worker`]); a
//! scheduler that enqueues periodic tasks once per period across replicas
//! ([`scheduler`]); and the monitoring handlers ([`handlers`]), registered at
//! startup in the [`registry`].
//!
//! Other code enqueues with [`service::enqueue`] (or [`service::enqueue_with`]
//! inside its own transaction, so the task exists exactly when its cause
//! does). Tests drain the queue with [`worker::run_pending_tasks`].

pub mod enrich;
pub mod entity;
pub mod graphql;
pub mod handlers;
pub mod model;
pub mod registry;
pub mod scheduler;
pub mod service;
pub mod worker;

pub use handlers::incident_analysis::enqueue_incident_analysis;
pub use model::{NewTask, TaskStatus};
pub use registry::{TaskContext, TaskError, TaskRegistry};
pub use worker::{Outcome, run_pending_tasks, try_execute_task};
