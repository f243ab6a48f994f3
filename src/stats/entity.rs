//! The tables the exposition reads instead of scanning samples.

/// Cumulative histogram bucket counts of one histogram series.
pub mod histogram_buckets {
    use sea_orm::entity::prelude::*;

    /// A row of `metric_histogram_buckets`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "metric_histogram_buckets")]
    pub struct Model {
        /// The series.
        #[sea_orm(primary_key, auto_increment = false)]
        pub series_id: i64,
        /// The bucket upper bounds the counts are for (JSON array of numbers).
        pub bounds: Json,
        /// Cumulative counts per bound (JSON array of integers).
        pub counts: Json,
        /// Observations folded in.
        pub count: i64,
        /// Their sum.
        pub sum: f64,
        /// Last fold that changed it.
        pub updated_at: DateTimeUtc,
    }

    /// Relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Where folding has got to (one row, id 1).
pub mod rollup_state {
    use sea_orm::entity::prelude::*;

    /// The row of `metric_rollup_state`.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "metric_rollup_state")]
    pub struct Model {
        /// Always 1.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        /// The bucket bounds in use.
        pub bounds: Json,
        /// Samples with ids up to this one are folded.
        pub watermark: i64,
        /// PostgreSQL: the highest id seen while writers were in flight ...
        pub candidate_id: i64,
        /// ... and those writers' virtual transaction ids (JSON array); once
        /// none of them runs, every id up to `candidate_id` is settled.
        pub candidate_holders: Option<Json>,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    /// Relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
