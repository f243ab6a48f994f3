//! Database models of the alerts domain: rules, instances (one per rule and
//! label set), the transition history, and silences.

/// An alert rule.
pub mod rule {
    use sea_orm::entity::prelude::*;

    /// A row of `alert_rules`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "alert_rules")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Unique name (1–200 characters); the `alertname` of its alerts.
        pub name: String,
        /// Free text.
        pub description: Option<String>,
        /// The expression, as the user wrote it (see `alerts::expr`).
        pub query: String,
        /// Threshold used with `>` when the expression has no comparison.
        pub threshold: Option<f64>,
        /// Seconds the condition must hold before pending becomes firing.
        pub for_secs: i64,
        /// Seconds a firing alert keeps firing after the condition stops holding.
        pub keep_firing_for_secs: i64,
        /// `info`, `warning` or `critical`.
        pub severity: String,
        /// Labels added to every alert of the rule (JSON object of strings).
        pub labels: Json,
        /// `{summary, description, runbook_url}`, each optional.
        pub annotations: Json,
        /// Whether the rule is evaluated.
        pub enabled: bool,
        /// Seconds between evaluations (at least 1).
        pub evaluation_interval_secs: i64,
        /// Whether a firing alert opens an incident.
        pub create_incident: bool,
        /// `low`, `medium`, `high` or `critical`: the severity of opened incidents.
        pub incident_severity: Option<String>,
        /// The user who created the rule.
        pub created_by: Option<Uuid>,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change of the definition.
        pub updated_at: DateTimeUtc,
        /// When the scheduler next evaluates the rule.
        pub next_evaluation_at: DateTimeUtc,
        /// Time of the last evaluation.
        pub last_evaluated_at: Option<DateTimeUtc>,
        /// How long the last evaluation took, in milliseconds.
        pub last_evaluation_ms: Option<f64>,
        /// Why the last evaluation failed, when it did.
        pub last_error: Option<String>,
    }

    /// Relations of a rule.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// Its alert instances.
        #[sea_orm(has_many = "super::instance::Entity")]
        Instance,
    }

    impl Related<super::instance::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Instance.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// One alert: a rule and one label set, with its Prometheus-style state.
pub mod instance {
    use sea_orm::entity::prelude::*;

    /// A row of `alert_instances`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "alert_instances")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The rule.
        pub rule_id: Uuid,
        /// Hex SHA-256 of the canonical labels; unique per rule.
        pub fingerprint: String,
        /// The alert's labels (series or group labels plus the rule's labels).
        pub labels: Json,
        /// `inactive`, `pending` or `firing`.
        pub state: String,
        /// When the condition started holding in the current (or last) episode.
        pub active_at: Option<DateTimeUtc>,
        /// When it started firing in the current (or last) episode.
        pub fired_at: Option<DateTimeUtc>,
        /// When the last firing episode was resolved.
        pub resolved_at: Option<DateTimeUtc>,
        /// When the condition stopped holding while kept firing by `keep_firing_for`.
        pub keep_firing_since: Option<DateTimeUtc>,
        /// The latest value that made the condition true.
        pub value: Option<f64>,
        /// Time of the last evaluation that changed it (an active alert is
        /// also evaluated at each of its rule's `last_evaluated_at`).
        pub last_evaluated_at: Option<DateTimeUtc>,
        /// The active silence that matched it at the last evaluation.
        pub silenced_by: Option<Uuid>,
        /// Who acknowledged it (cleared when it resolves).
        pub acknowledged_by: Option<Uuid>,
        /// When it was acknowledged.
        pub acknowledged_at: Option<DateTimeUtc>,
        /// The acknowledgement's comment.
        pub acknowledged_comment: Option<String>,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    /// Relations of an instance.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// The rule.
        #[sea_orm(
            belongs_to = "super::rule::Entity",
            from = "Column::RuleId",
            to = "super::rule::Column::Id",
            on_delete = "Cascade"
        )]
        Rule,
    }

    impl Related<super::rule::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Rule.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// The alert history: one row per state change of an instance.
pub mod transition {
    use sea_orm::entity::prelude::*;

    /// A row of `alert_transitions` (kept after its rule is deleted).
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
    #[sea_orm(table_name = "alert_transitions")]
    pub struct Model {
        /// UUIDv7.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The rule (which may since have been deleted).
        pub rule_id: Uuid,
        /// The rule's name at the time.
        pub rule_name: String,
        /// The instance (which may since have been deleted with its rule).
        pub instance_id: Uuid,
        /// The instance's labels.
        pub labels: Json,
        /// The rule's severity at the time.
        pub severity: String,
        /// State before.
        pub from_state: String,
        /// State after.
        pub to_state: String,
        /// The instance's value after the change.
        pub value: Option<f64>,
        /// Whether a silence matched the instance at the time.
        pub silenced: bool,
        /// When it happened (the evaluation time).
        pub at: DateTimeUtc,
    }

    /// Relations of a transition (none: history outlives its rule).
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A silence: label matchers and a time span during which matching alerts
/// open no incident.
pub mod silence {
    use sea_orm::entity::prelude::*;

    /// A row of `silences`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "silences")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// `[{label, op: eq|ne|re|nre, value}]`.
        pub matchers: Json,
        /// Start of the silence.
        pub starts_at: DateTimeUtc,
        /// End of the silence (set to the time of expiry when expired early).
        pub ends_at: DateTimeUtc,
        /// Why.
        pub comment: String,
        /// Who created it.
        pub created_by: Option<Uuid>,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    /// Relations of a silence.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
