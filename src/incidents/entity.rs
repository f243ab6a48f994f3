//! Database models of the incidents domain: incidents, their audit trail,
//! notes, linked alert instances and the stored analysis.

/// An incident.
pub mod incident {
    use sea_orm::entity::prelude::*;

    /// A row of `incidents`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
    #[sea_orm(table_name = "incidents")]
    pub struct Model {
        /// Primary key (UUIDv7).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// 1–200 characters.
        pub title: String,
        /// At most 10,000 characters.
        pub description: Option<String>,
        /// `low`, `medium`, `high` or `critical`.
        pub severity: String,
        /// `open`, `investigating`, `resolved` or `closed`.
        pub status: String,
        /// When the incident began (may be before it was recorded).
        pub started_at: DateTimeUtc,
        /// First acknowledgement.
        pub acknowledged_at: Option<DateTimeUtc>,
        /// Set on resolve, cleared on reopen.
        pub resolved_at: Option<DateTimeUtc>,
        /// Set on close.
        pub closed_at: Option<DateTimeUtc>,
        /// What caused it.
        pub root_cause: Option<String>,
        /// The creator; `None` for incidents opened by the system.
        pub created_by: Option<Uuid>,
        /// The assignee.
        pub assigned_to: Option<Uuid>,
        /// JSON object of string labels.
        pub labels: Json,
        /// JSON array of the services involved.
        pub sources: Json,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    /// Relations of an incident.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One audited change of one field of an incident.
pub mod change {
    use sea_orm::entity::prelude::*;

    /// A row of `incident_changes`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "incident_changes")]
    pub struct Model {
        /// Primary key (UUIDv7).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The incident.
        pub incident_id: Uuid,
        /// Who made the change; `None` for the system.
        pub actor_id: Option<Uuid>,
        /// When.
        pub at: DateTimeUtc,
        /// The field (`created`, `title`, `status`, `note`, `alert`, ...).
        pub field: String,
        /// The value before (`None` when there was none).
        pub old_value: Option<Json>,
        /// The value after (`None` when cleared).
        pub new_value: Option<Json>,
    }

    /// Relations of a change.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A note written on an incident.
pub mod note {
    use sea_orm::entity::prelude::*;

    /// A row of `incident_notes`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "incident_notes")]
    pub struct Model {
        /// Primary key (UUIDv7).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The incident.
        pub incident_id: Uuid,
        /// The author.
        pub author_id: Option<Uuid>,
        /// 1–10,000 characters.
        pub body: String,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last edit.
        pub updated_at: DateTimeUtc,
    }

    /// Relations of a note.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An alert instance linked to an incident.
pub mod incident_alert {
    use sea_orm::entity::prelude::*;

    /// A row of `incident_alerts`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "incident_alerts")]
    pub struct Model {
        /// The incident.
        #[sea_orm(primary_key, auto_increment = false)]
        pub incident_id: Uuid,
        /// The alert instance (in the alerts domain).
        #[sea_orm(primary_key, auto_increment = false)]
        pub instance_id: Uuid,
        /// The instance's rule.
        pub rule_id: Uuid,
        /// The rule's name when the link was made.
        pub rule_name: String,
        /// When the link was made.
        pub linked_at: DateTimeUtc,
    }

    /// Relations of a link.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The latest suggested-root-cause analysis of an incident.
pub mod analysis {
    use sea_orm::entity::prelude::*;

    /// A row of `incident_analyses`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "incident_analyses")]
    pub struct Model {
        /// The incident (one analysis per incident; re-analysing replaces it).
        #[sea_orm(primary_key, auto_increment = false)]
        pub incident_id: Uuid,
        /// When it was computed.
        pub computed_at: DateTimeUtc,
        /// Start of the analysed window.
        pub window_start: DateTimeUtc,
        /// End of the analysed window (exclusive).
        pub window_end: DateTimeUtc,
        /// Start of the baseline, which ends where the window starts.
        pub baseline_start: DateTimeUtc,
        /// The findings with their evidence (`analysis::Findings` as JSON).
        pub result: Json,
    }

    /// Relations of an analysis.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
