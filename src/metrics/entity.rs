//! Metric families (one per name), series (one per label set) and samples.

/// One metric name and its type.
pub mod family {
    use sea_orm::entity::prelude::*;

    /// A row of `metric_families`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "metric_families")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Unique metric name.
        pub name: String,
        /// `counter`, `gauge`, `histogram` or `summary`, fixed for the name's lifetime.
        pub metric_type: String,
        /// Number of series (label sets), for the series cap.
        pub series_count: i64,
        /// First sample.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    /// Relations of a family.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// Its series.
        #[sea_orm(has_many = "super::series::Entity")]
        Series,
    }

    impl Related<super::series::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Series.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// One label set of a metric.
pub mod series {
    use sea_orm::entity::prelude::*;

    /// A row of `metric_series`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "metric_series")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The family.
        pub family_id: i64,
        /// Labels as a JSON object of strings, keys sorted.
        pub labels: Json,
        /// Hex SHA-256 of the canonical labels; unique per family.
        pub fingerprint: String,
        /// First sample.
        pub created_at: DateTimeUtc,
        /// Time of the latest sample.
        pub last_sample_at: Option<DateTimeUtc>,
        /// Value of the latest sample.
        pub last_value: Option<f64>,
        /// Counters: the running total of all increments ever; histograms and
        /// summaries: the sum of all observations.
        pub total: f64,
        /// Number of samples ever ingested.
        pub sample_count: i64,
    }

    /// Relations of a series.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// The family.
        #[sea_orm(
            belongs_to = "super::family::Entity",
            from = "Column::FamilyId",
            to = "super::family::Column::Id",
            on_delete = "Cascade"
        )]
        Family,
        /// Its samples.
        #[sea_orm(has_many = "super::sample::Entity")]
        Sample,
    }

    impl Related<super::family::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Family.def()
        }
    }

    impl Related<super::sample::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Sample.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// One sample.
pub mod sample {
    use sea_orm::entity::prelude::*;

    /// A row of `metric_samples`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "metric_samples")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The series.
        pub series_id: i64,
        /// Sample time.
        pub timestamp: DateTimeUtc,
        /// Gauge: the value; counter: a non-negative increment; histogram and
        /// summary: one observation.
        pub value: f64,
    }

    /// Relations of a sample.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// The series.
        #[sea_orm(
            belongs_to = "super::series::Entity",
            from = "Column::SeriesId",
            to = "super::series::Column::Id",
            on_delete = "Cascade"
        )]
        Series,
    }

    impl Related<super::series::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Series.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}
