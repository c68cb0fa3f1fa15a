//! Errors: which type to use where.
//!
//! - Handlers return [`AppResult<T>`]. [`AppError`] carries an [`ErrorCode`], a human
//!   message, optional per-field problems and, for faults, the cause.
//! - Domain crates define their own `thiserror` enums for what callers match on and
//!   convert them into [`AppError`] with a code from the table below.
//! - Anything unexpected (database down, a bug) becomes [`AppError::internal`]: the
//!   client sees `internal_error` and the request id, the cause goes to the log.
//!
//! [`ErrorCode`] is the one table of error codes; the HTTP status comes from the code,
//! so the two can never drift apart.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

macro_rules! error_codes {
    ($( $variant:ident => ($status:literal, $code:literal, $doc:literal), )*) => {
        /// Every error code SyncTalk answers with, and its HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( #[doc = $doc] $variant, )*
        }

        impl ErrorCode {
            /// All codes, in table order (for documentation and tests).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The `snake_case` code that goes on the wire.
            pub const fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $code, )* }
            }

            /// The HTTP status this code is always sent with.
            pub fn status(self) -> StatusCode {
                let status = match self { $( ErrorCode::$variant => $status, )* };
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }

            /// What the code means, for the README and the OpenAPI document.
            pub const fn description(self) -> &'static str {
                match self { $( ErrorCode::$variant => $doc, )* }
            }
        }
    };
}

error_codes! {
    InvalidJson => (400, "invalid_json", "The body is not valid JSON."),
    InvalidBody => (400, "invalid_body", "The body is not a well-formed `multipart/form-data` upload."),
    InvalidQuery => (400, "invalid_query", "A query parameter is missing, malformed or out of range."),
    Unauthorized => (401, "unauthorized", "No bearer token was sent."),
    InvalidToken => (401, "invalid_token", "The bearer token is malformed, expired, or its session has ended."),
    InvalidCredentials => (401, "invalid_credentials", "Wrong login or password (the same answer for both)."),
    InvalidRefreshToken => (401, "invalid_refresh_token", "The refresh token is unknown, expired or already used."),
    Forbidden => (403, "forbidden", "Authenticated, but not allowed to do this."),
    Blocked => (403, "blocked", "The other user has blocked you."),
    MissingPermissions => (403, "missing_permissions", "You can see this, but your roles do not allow this action (or the target is above your highest role)."),
    Banned => (403, "banned", "You are banned from this guild."),
    NotFound => (404, "not_found", "Nothing is there, or it is not visible to you."),
    MethodNotAllowed => (405, "method_not_allowed", "The route exists but not with this method."),
    UsernameTaken => (409, "username_taken", "The username is already taken."),
    EmailTaken => (409, "email_taken", "The email is already registered."),
    Conflict => (409, "conflict", "The request conflicts with the current state."),
    GroupFull => (409, "group_full", "The group DM already has the most members it may have."),
    PayloadTooLarge => (413, "payload_too_large", "The body is larger than the limit."),
    UnsupportedMediaType => (415, "unsupported_media_type", "The body's media type is not accepted: JSON where JSON is expected, `multipart/form-data` for uploads, and no executables."),
    ValidationFailed => (422, "validation_failed", "The body is well-formed but some fields are invalid; see `fields`."),
    RateLimited => (429, "rate_limited", "Too many requests; retry after `retry_after_ms`."),
    InternalError => (500, "internal_error", "Something went wrong on our side; the request id identifies it in the logs."),
    ServiceUnavailable => (503, "service_unavailable", "A dependency (the database) is unavailable, or the server is saturated (too many password checks at once); retry after `Retry-After`."),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-field problems of a 422: field name to a list of human-readable problems.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// Keeps a parsed value, or files its problem under `name` (to answer every field's
/// problem in one 422 with [`fields_checked`]).
pub fn gather<T>(fields: &mut FieldErrors, name: &str, result: Result<T, String>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(problem) => {
            fields.entry(name.to_owned()).or_default().push(problem);
            None
        }
    }
}

/// 422 with every gathered problem, or nothing to complain about.
pub fn fields_checked(fields: FieldErrors) -> Result<(), AppError> {
    if fields.is_empty() {
        Ok(())
    } else {
        Err(AppError::validation(fields))
    }
}

/// The error every handler returns.
pub struct AppError {
    code: ErrorCode,
    message: Cow<'static, str>,
    fields: Option<FieldErrors>,
    retry_after_ms: Option<u64>,
    source: Option<anyhow::Error>,
}

/// Shorthand for handler results.
pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    /// An error with a code and a message for the client.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
            fields: None,
            retry_after_ms: None,
            source: None,
        }
    }

    /// A fault: the client sees `internal_error`, the cause is logged.
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Self {
            source: Some(source.into()),
            ..Self::new(ErrorCode::InternalError, "internal error")
        }
    }

    /// A 422 with its per-field problems.
    pub fn validation(fields: FieldErrors) -> Self {
        Self {
            fields: Some(fields),
            ..Self::new(ErrorCode::ValidationFailed, "some fields are invalid")
        }
    }

    /// A 422 for a single field.
    pub fn field(field: &str, problem: impl Into<String>) -> Self {
        let mut fields = FieldErrors::new();
        fields.insert(field.to_owned(), vec![problem.into()]);
        Self::validation(fields)
    }

    /// A 404.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("unknown {what}"))
    }

    /// A 503 that says when to retry (the server is saturated, not broken).
    pub fn unavailable(message: impl Into<Cow<'static, str>>, retry_after_ms: u64) -> Self {
        Self {
            retry_after_ms: Some(retry_after_ms),
            ..Self::new(ErrorCode::ServiceUnavailable, message)
        }
    }

    /// A 429 that says when to retry.
    pub fn rate_limited(retry_after_ms: u64) -> Self {
        Self {
            retry_after_ms: Some(retry_after_ms),
            ..Self::new(ErrorCode::RateLimited, "you are being rate limited")
        }
    }

    /// The same error with another message for the client.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = message.into();
        self
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message sent to the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The per-field problems, for a 422.
    pub fn fields(&self) -> Option<&FieldErrors> {
        self.fields.as_ref()
    }

    /// The body this error is sent with.
    pub fn body(&self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorBody {
                code: self.code.as_str().to_owned(),
                message: self.message.to_string(),
                fields: self.fields.clone(),
                retry_after_ms: self.retry_after_ms,
            },
        }
    }
}

impl fmt::Debug for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("AppError");
        d.field("code", &self.code).field("message", &self.message);
        if let Some(fields) = &self.fields {
            d.field("fields", fields);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            match &self.source {
                Some(source) => {
                    tracing::error!(code = %self.code, error = ?source, "request failed")
                }
                None => {
                    tracing::error!(code = %self.code, message = %self.message, "request failed")
                }
            }
        }
        let mut response = HttpResponse::build(status);
        if let Some(ms) = self.retry_after_ms {
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.insert_header((header::RETRY_AFTER, value));
            }
        }
        if self.code == ErrorCode::Unauthorized || self.code == ErrorCode::InvalidToken {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.json(self.body())
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(error: diesel::result::Error) -> Self {
        Self::internal(error)
    }
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: ErrorBody,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable `snake_case` code to match on (see the README's table).
    #[schema(example = "validation_failed")]
    pub code: String,
    /// A human-readable message; may change, do not match on it.
    #[schema(example = "some fields are invalid")]
    pub message: String,
    /// For `validation_failed`: each invalid field and its problems.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!({"username": ["must be 3 to 32 characters"]}))]
    pub fields: Option<FieldErrors>,
    /// For `rate_limited`: how long to wait before retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case_with_a_description() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "duplicate code {text}");
            assert!(
                text.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{text}"
            );
            assert!(!code.description().is_empty(), "{text} has no description");
        }
    }

    #[test]
    fn status_comes_from_the_code() {
        assert_eq!(
            ErrorCode::ValidationFailed.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            ErrorCode::InvalidCredentials.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ErrorCode::RateLimited.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            AppError::not_found("user").status_code(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let error = AppError::internal(anyhow::anyhow!("relation \"users\" does not exist"));
        let body = serde_json::to_string(&error.body()).unwrap();
        assert!(!body.contains("relation"), "{body}");
        assert!(body.contains("internal_error"));
    }
}
