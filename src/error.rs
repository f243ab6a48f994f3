//! One error type for the whole server.
//!
//! Every failure a client can cause is an [`AppError`] carrying a closed
//! [`ErrorCode`]. The code becomes `extensions.code` on GraphQL errors and an
//! HTTP status on REST responses. Database errors are translated here, in one
//! place: constraint violations become client errors, pool exhaustion and lost
//! connections become the retryable `UNAVAILABLE`, and anything else becomes
//! `INTERNAL` with a fixed message while the cause goes to the log once.

use std::fmt;

use axum::http::StatusCode;
use sea_orm::{DbErr, SqlErr};

/// The closed set of error codes clients can rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No credentials, or credentials that are invalid or expired.
    Unauthenticated,
    /// Authenticated, but the role or ownership does not allow this.
    Forbidden,
    /// The input failed validation; the message names the field.
    BadUserInput,
    /// The thing does not exist, or the caller may not know that it does.
    NotFound,
    /// The change conflicts with existing data (a duplicate name, a type clash).
    Conflict,
    /// Too many attempts; retry after the given time.
    RateLimited,
    /// A dependency (the database) is temporarily unavailable; safe to retry.
    Unavailable,
    /// A bug or an unexpected failure; details are in the server log only.
    Internal,
}

impl ErrorCode {
    /// The wire name of the code, as put in `extensions.code` and REST bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// The HTTP status REST responses use for this code.
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::BadUserInput => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error that can be shown to a client.
#[derive(Debug)]
pub struct AppError {
    /// The stable code.
    pub code: ErrorCode,
    /// A clear message safe to show to the client.
    pub message: String,
    /// The input field the error is about, when there is one.
    pub field: Option<String>,
    /// Seconds after which a retry may succeed (`RATE_LIMITED`, `UNAVAILABLE`).
    pub retry_after: Option<u64>,
    /// The underlying cause, for the log only.
    pub cause: Option<Cause>,
}

/// One validation failure of one input field (batch mutations report lists
/// of these per rejected item).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// The field, e.g. `source` or `tags.region`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<FieldError> for AppError {
    fn from(e: FieldError) -> Self {
        AppError::bad_input(e.field, e.message)
    }
}

impl AppError {
    /// `BAD_USER_INPUT` from the first of several field errors, naming them all.
    pub fn from_field_errors(errors: &[FieldError]) -> AppError {
        match errors {
            [] => AppError::new(ErrorCode::BadUserInput, "invalid input"),
            [one] => AppError::bad_input(one.field.clone(), one.message.clone()),
            [first, ..] => {
                let all: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect();
                AppError::bad_input(first.field.clone(), all.join("; "))
            }
        }
    }
}

/// Shorthand for results whose error is an [`AppError`].
pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    /// An error with a code and a client-facing message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError {
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            cause: None,
        }
    }

    /// `BAD_USER_INPUT` about one input field.
    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError {
            field: Some(field.into()),
            ..AppError::new(ErrorCode::BadUserInput, message)
        }
    }

    /// `UNAUTHENTICATED`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        AppError::new(ErrorCode::Unauthenticated, message)
    }

    /// `FORBIDDEN`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        AppError::new(ErrorCode::Forbidden, message)
    }

    /// `NOT_FOUND` for a thing of the given kind.
    pub fn not_found(what: &str) -> Self {
        AppError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// `CONFLICT`.
    pub fn conflict(message: impl Into<String>) -> Self {
        AppError::new(ErrorCode::Conflict, message)
    }

    /// `RATE_LIMITED`, retry after `secs` seconds.
    pub fn rate_limited(message: impl Into<String>, secs: u64) -> Self {
        AppError {
            retry_after: Some(secs.max(1)),
            ..AppError::new(ErrorCode::RateLimited, message)
        }
    }

    /// `UNAVAILABLE`: a temporary failure, safe to retry.
    pub fn unavailable(cause: impl Into<Cause>) -> Self {
        AppError {
            retry_after: Some(1),
            cause: Some(cause.into()),
            ..AppError::new(
                ErrorCode::Unavailable,
                "the service is temporarily unavailable, retry shortly",
            )
        }
    }

    /// `INTERNAL`: the client sees a fixed message; the cause is logged.
    pub fn internal(cause: impl Into<Cause>) -> Self {
        AppError {
            cause: Some(cause.into()),
            ..AppError::new(ErrorCode::Internal, "internal server error")
        }
    }

    /// Attaches the input field the error is about.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Prefixes the field with a path (e.g. `events[3]`), for nested inputs.
    pub fn nest_field(mut self, prefix: &str) -> Self {
        self.field = Some(match self.field.take() {
            Some(f) => format!("{prefix}.{f}"),
            None => prefix.to_owned(),
        });
        self
    }

    /// Writes the cause to the log when this error hides one from the client.
    /// Called exactly once, where the error leaves the server.
    pub fn log(&self) {
        match self.code {
            ErrorCode::Internal => {
                tracing::error!(code = %self.code, cause = ?self.cause, "request failed")
            }
            ErrorCode::Unavailable => {
                tracing::warn!(code = %self.code, cause = ?self.cause, "request failed")
            }
            ErrorCode::Unauthenticated
            | ErrorCode::Forbidden
            | ErrorCode::BadUserInput
            | ErrorCode::NotFound
            | ErrorCode::Conflict
            | ErrorCode::RateLimited => {}
        }
    }
}

// `AppError` deliberately does not implement `Display`: async-graphql converts
// any `Display` type into an error without a code, and `?` in a resolver must
// use the conversion below instead.
impl AppError {
    /// `CODE: message`, for logs and command-line output.
    pub fn describe(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }
}

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        translate_db_error(err)
    }
}

impl From<tokio::task::JoinError> for AppError {
    fn from(err: tokio::task::JoinError) -> Self {
        AppError::internal(err)
    }
}

/// The one place database errors become client errors.
pub fn translate_db_error(err: DbErr) -> AppError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(detail)) => {
            let field = constraint_field(&detail);
            let message = match &field {
                Some(f) => format!("a record with this {f} already exists"),
                None => "a record with these values already exists".to_owned(),
            };
            let mut e = AppError::conflict(message);
            e.field = field;
            e
        }
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => AppError::new(
            ErrorCode::BadUserInput,
            "a referenced record does not exist",
        ),
        _ if is_unavailable(&err) => AppError::unavailable(err),
        _ => AppError::internal(err),
    }
}

/// Whether a database error means "try again": the pool timed out, or the
/// connection to the server was lost.
pub fn is_unavailable(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(_) | DbErr::Query(_) => {
            let text = err.to_string().to_ascii_lowercase();
            [
                "pool timed out",
                "connection reset",
                "broken pipe",
                "connection refused",
                "terminating connection",
                "connection closed",
                "unexpected eof",
                "database is locked",
                "error communicating with database",
                "pool closed",
                "io error",
            ]
            .iter()
            .any(|needle| text.contains(needle))
        }
        _ => false,
    }
}

/// Extracts a column name from a unique-violation message on either backend
/// (`UNIQUE constraint failed: users.email`, or PostgreSQL's
/// `duplicate key value violates unique constraint "idx_users_email"` with
/// `Key (email)=(...)`).
fn constraint_field(detail: &str) -> Option<String> {
    if let Some(rest) = detail.split("UNIQUE constraint failed: ").nth(1) {
        let first = rest.split(',').next()?.trim();
        return first.rsplit('.').next().map(|s| s.trim().to_owned());
    }
    if let Some(rest) = detail.split("Key (").nth(1) {
        return rest.split(')').next().map(|s| s.trim().to_owned());
    }
    if let Some(rest) = detail.split("constraint \"").nth(1) {
        let name = rest.split('"').next()?;
        return name.rsplit('_').next().map(str::to_owned);
    }
    None
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        err.log();
        use async_graphql::ErrorExtensions as _;
        let mut gql = async_graphql::Error::new(err.message.clone());
        let code = err.code.as_str();
        let field = err.field.clone();
        let retry_after = err.retry_after;
        gql = gql.extend_with(|_, ext| {
            ext.set("code", code);
            if let Some(field) = &field {
                ext.set("field", field.as_str());
            }
            if let Some(secs) = retry_after {
                ext.set("retryAfter", secs);
            }
        });
        gql
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_unique_violation_names_the_column() {
        assert_eq!(
            constraint_field("UNIQUE constraint failed: users.email").as_deref(),
            Some("email")
        );
    }

    #[test]
    fn postgres_unique_violation_names_the_key() {
        let detail = "duplicate key value violates unique constraint \"idx_users_username\" Key (username)=(bob) already exists.";
        assert_eq!(constraint_field(detail).as_deref(), Some("username"));
    }

    #[test]
    fn every_code_has_a_distinct_wire_name_and_status() {
        let codes = [
            ErrorCode::Unauthenticated,
            ErrorCode::Forbidden,
            ErrorCode::BadUserInput,
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::RateLimited,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ];
        let names: std::collections::HashSet<_> = codes.iter().map(|c| c.as_str()).collect();
        let statuses: std::collections::HashSet<_> =
            codes.iter().map(|c| c.http_status()).collect();
        assert_eq!(names.len(), codes.len());
        assert_eq!(statuses.len(), codes.len());
    }

    #[test]
    fn internal_errors_never_show_their_cause() {
        let err = AppError::internal(std::io::Error::other("SELECT secret FROM users"));
        assert_eq!(err.message, "internal server error");
        assert!(!err.describe().contains("SELECT"));
    }
}
