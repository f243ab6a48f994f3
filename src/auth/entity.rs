//! Database models of the auth domain: users, sessions and API keys.

/// A person (or service owner) who can log in.
pub mod user {
    use sea_orm::entity::prelude::*;

    /// A row of `users`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Unique, stored lower-case.
        pub username: String,
        /// Unique, stored lower-case.
        pub email: String,
        /// Argon2id PHC string.
        pub password_hash: String,
        /// `user`, `moderator` or `admin`.
        pub role: String,
        /// Inactive users cannot authenticate.
        pub is_active: bool,
        /// Set by a forced password reset.
        pub must_change_password: bool,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
        /// Last successful login.
        pub last_login_at: Option<DateTimeUtc>,
    }

    /// Relations of a user.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// Login sessions.
        #[sea_orm(has_many = "super::session::Entity")]
        Session,
        /// API keys.
        #[sea_orm(has_many = "super::api_key::Entity")]
        ApiKey,
    }

    impl Related<super::session::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Session.def()
        }
    }

    impl Related<super::api_key::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::ApiKey.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// A login session; only a SHA-256 hash of its token is stored.
pub mod session {
    use sea_orm::entity::prelude::*;

    /// A row of `sessions`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owner.
        pub user_id: Uuid,
        /// Hex SHA-256 of the bearer token.
        pub token_hash: String,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Expiry time.
        pub expires_at: DateTimeUtc,
        /// Last time the token was used (updated at most once a minute).
        pub last_used_at: DateTimeUtc,
        /// Client address at login.
        pub client_addr: Option<String>,
        /// Client `User-Agent` at login.
        pub user_agent: Option<String>,
    }

    /// Relations of a session.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// The owner.
        #[sea_orm(
            belongs_to = "super::user::Entity",
            from = "Column::UserId",
            to = "super::user::Column::Id",
            on_delete = "Cascade"
        )]
        User,
    }

    impl Related<super::user::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::User.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// A long-lived key for services; only a SHA-256 hash of the secret is stored.
pub mod api_key {
    use sea_orm::entity::prelude::*;

    /// A row of `api_keys`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Creator.
        pub user_id: Uuid,
        /// Human-chosen name.
        pub name: String,
        /// The first characters of the secret, shown to humans to tell keys apart.
        pub prefix: String,
        /// Hex SHA-256 of the whole secret.
        pub secret_hash: String,
        /// Role granted (never above the creator's current role).
        pub role: String,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Expiry time, if any.
        pub expires_at: Option<DateTimeUtc>,
        /// Revocation time, if revoked.
        pub revoked_at: Option<DateTimeUtc>,
        /// Last use (updated at most once a minute).
        pub last_used_at: Option<DateTimeUtc>,
    }

    /// Relations of an API key.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        /// The creator.
        #[sea_orm(
            belongs_to = "super::user::Entity",
            from = "Column::UserId",
            to = "super::user::Column::Id",
            on_delete = "Cascade"
        )]
        User,
    }

    impl Related<super::user::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::User.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}
