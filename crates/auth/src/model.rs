//! Rows and forms of `sessions` and `refresh_tokens`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use synctalk_db::schema::{refresh_tokens, sessions};
use synctalk_kernel::{SessionId, UserId};

/// A row of `sessions`: one signed-in device.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = sessions, check_for_backend(diesel::pg::Pg))]
pub struct SessionRow {
    /// Id (carried in access tokens as `sid`).
    pub id: SessionId,
    /// Whose.
    pub user_id: UserId,
    /// The client's device id, when it sent one.
    pub device_id: Option<String>,
    /// The user agent at sign-in or last refresh.
    pub user_agent: Option<String>,
    /// The client address at sign-in or last refresh.
    pub ip: Option<String>,
    /// Signed in.
    pub created_at: DateTime<Utc>,
    /// Last refresh or request.
    pub last_used_at: DateTime<Utc>,
    /// Ends unless refreshed before.
    pub expires_at: DateTime<Utc>,
    /// Ended (logout, revoke, refresh-token reuse, new sign-in on the same device).
    pub revoked_at: Option<DateTime<Utc>>,
    /// Why it ended.
    pub revoked_reason: Option<String>,
}

/// A new session.
#[derive(Debug, Insertable)]
#[diesel(table_name = sessions)]
pub struct NewSession<'a> {
    /// Id.
    pub id: SessionId,
    /// Whose.
    pub user_id: UserId,
    /// Device id.
    pub device_id: Option<&'a str>,
    /// User agent.
    pub user_agent: Option<&'a str>,
    /// Address.
    pub ip: Option<&'a str>,
    /// Ends unless refreshed.
    pub expires_at: DateTime<Utc>,
}

/// A row of `refresh_tokens`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = refresh_tokens, check_for_backend(diesel::pg::Pg))]
pub struct RefreshTokenRow {
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// The session it belongs to.
    pub session_id: SessionId,
    /// Issued.
    pub created_at: DateTime<Utc>,
    /// Spent.
    pub used_at: Option<DateTime<Utc>>,
    /// SHA-256 of the token it was exchanged for.
    pub successor_hash: Option<Vec<u8>>,
    /// That token, sealed with a key derived from this one (see `tokens::seal`).
    pub successor_sealed: Option<Vec<u8>>,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    /// `POST /auth/logout`.
    Logout,
    /// `DELETE /auth/sessions/{id}`.
    Revoked,
    /// A spent refresh token was presented again.
    RefreshTokenReused,
    /// The same device signed in again.
    Replaced,
}

impl RevokeReason {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Logout => "logout",
            RevokeReason::Revoked => "revoked",
            RevokeReason::RefreshTokenReused => "refresh_token_reused",
            RevokeReason::Replaced => "replaced",
        }
    }
}
