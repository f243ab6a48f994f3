//! The `tasks` and `task_schedules` tables.

/// One queued unit of background work.
pub mod task {
    use sea_orm::entity::prelude::*;

    /// A row of `tasks`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasks")]
    pub struct Model {
        /// UUIDv7.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The registered handler's name.
        pub task_type: String,
        /// Handler input (a JSON object).
        pub payload: Json,
        /// `pending`, `running`, `succeeded`, `failed`, `dead` or `cancelled`.
        pub status: String,
        /// Higher runs first.
        pub priority: i32,
        /// Attempts started so far.
        pub attempts: i32,
        /// Attempts allowed before the task is dead.
        pub max_attempts: i32,
        /// Not claimed before this time (the retry time after a failure).
        pub run_after: DateTimeUtc,
        /// While running: when the worker's claim lapses unless renewed.
        pub lease_expires_at: Option<DateTimeUtc>,
        /// While running: the worker holding the lease.
        pub locked_by: Option<String>,
        /// The error of the last failed attempt.
        pub last_error: Option<String>,
        /// What the handler returned.
        pub result: Option<Json>,
        /// At most one live (pending, running, failed) task per key.
        pub dedupe_key: Option<String>,
        /// Who enqueued it (none for the scheduler and internal callers).
        pub created_by: Option<Uuid>,
        /// When it was enqueued.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
        /// When its latest attempt started.
        pub started_at: Option<DateTimeUtc>,
        /// When it reached `succeeded`, `dead` or `cancelled`.
        pub finished_at: Option<DateTimeUtc>,
    }

    /// Relations of a task.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A periodic task the scheduler enqueues.
pub mod schedule {
    use sea_orm::entity::prelude::*;

    /// A row of `task_schedules`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "task_schedules")]
    pub struct Model {
        /// Unique name; also the dedupe key of the tasks it enqueues.
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        /// The task type it enqueues.
        pub task_type: String,
        /// The payload of the tasks it enqueues.
        pub payload: Json,
        /// Seconds between runs.
        pub interval_secs: i64,
        /// When the next task is due to be enqueued.
        pub next_run_at: DateTimeUtc,
        /// When a task was last enqueued.
        pub last_enqueued_at: Option<DateTimeUtc>,
        /// The task enqueued last.
        pub last_task_id: Option<Uuid>,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    /// Relations of a schedule.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
