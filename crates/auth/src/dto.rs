//! Wire types of the auth API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use synctalk_kernel::SessionId;
use synctalk_users::dto::CurrentUser;
use utoipa::ToSchema;

/// Create an account.
#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// 3-32 of lower-case `a-z`, `0-9`, `_`, `.` (`Alice` is refused).
    #[schema(
        example = "alice",
        min_length = 3,
        max_length = 32,
        pattern = "^[a-z0-9_.]{3,32}$"
    )]
    pub username: String,
    /// Unique without regard to case. At most 254 characters, an ASCII local part and a
    /// host name of two or more labels (no display text, no address literal).
    #[schema(
        example = "alice@example.com",
        max_length = 254,
        format = Email,
        pattern = "@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+$"
    )]
    pub email: String,
    /// 8-128 characters.
    #[schema(
        example = "correct horse battery staple",
        min_length = 8,
        max_length = 128
    )]
    pub password: String,
    /// Optional stable id of this device; signing in again with the same id replaces
    /// that device's previous session. 1-128 characters, no control characters, not
    /// all blank.
    #[serde(default)]
    #[schema(
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u001f\\u007f-\\u009f\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub device_id: Option<String>,
}

synctalk_kernel::debug_redacted!(RegisterRequest { username, email, device_id } secret { password });

/// Sign in.
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    /// Your username or your email.
    #[schema(example = "alice")]
    pub login: String,
    /// Your password.
    #[schema(example = "correct horse battery staple")]
    pub password: String,
    /// Optional stable id of this device; signing in again with the same id replaces
    /// that device's previous session. 1-128 characters, no control characters, not
    /// all blank.
    #[serde(default)]
    #[schema(
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u001f\\u007f-\\u009f\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub device_id: Option<String>,
}

synctalk_kernel::debug_redacted!(LoginRequest { login, device_id } secret { password });

/// Trade a refresh token for a new pair.
#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token from register, login or the last refresh. Each works once.
    pub refresh_token: String,
}

synctalk_kernel::debug_redacted!(RefreshRequest {} secret { refresh_token });

/// Tokens for a session.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// You.
    pub user: CurrentUser,
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Use once with `POST /auth/refresh` before the session expires; you get a new one.
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: u64,
    /// The session (device) these tokens belong to.
    pub session_id: SessionId,
}

synctalk_kernel::debug_redacted!(
    TokenResponse { user, token_type, expires_in, session_id }
    secret { access_token, refresh_token }
);

/// A signed-in device.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Session {
    /// The session's id.
    pub id: SessionId,
    /// The device id the client gave, if any.
    pub device_id: Option<String>,
    /// The user agent at sign-in or last refresh.
    pub user_agent: Option<String>,
    /// The client address at sign-in or last refresh.
    pub ip: Option<String>,
    /// When it signed in.
    pub created_at: DateTime<Utc>,
    /// When it was last used.
    pub last_used_at: DateTime<Utc>,
    /// When it ends unless refreshed.
    pub expires_at: DateTime<Utc>,
    /// Whether this is the session making the request.
    pub current: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_never_print_passwords_or_tokens() {
        let register: RegisterRequest = serde_json::from_value(serde_json::json!({
            "username": "alice", "email": "a@example.com", "password": "hunter2-secret"
        }))
        .unwrap();
        let login: LoginRequest = serde_json::from_value(
            serde_json::json!({"login": "alice", "password": "hunter2-secret"}),
        )
        .unwrap();
        let refresh: RefreshRequest =
            serde_json::from_value(serde_json::json!({"refresh_token": "rt-secret-value"}))
                .unwrap();
        for printed in [
            format!("{register:?}"),
            format!("{login:?}"),
            format!("{refresh:?}"),
        ] {
            assert!(!printed.contains("secret"), "{printed}");
            assert!(printed.contains("[redacted]"), "{printed}");
        }
        assert!(format!("{login:?}").contains("alice"));
    }
}
