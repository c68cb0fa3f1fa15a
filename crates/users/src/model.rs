//! Database rows and forms of the `users` table. Rows never go on the wire: see `dto`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use synctalk_db::schema::users;
use synctalk_kernel::UserId;

/// A row of `users`.
#[derive(Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct UserRow {
    /// Id.
    pub id: UserId,
    /// Unique among live users.
    pub username: String,
    /// Unique among live users, ignoring case.
    pub email: String,
    /// The argon2id PHC string.
    pub password_hash: String,
    /// Shown instead of the username.
    pub display_name: Option<String>,
    /// Avatar image.
    pub avatar_url: Option<String>,
    /// About me.
    pub bio: Option<String>,
    /// Custom status.
    pub status_text: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Soft delete.
    pub deleted_at: Option<DateTime<Utc>>,
}

synctalk_kernel::debug_redacted!(
    UserRow { id, username, email, display_name, avatar_url, bio, status_text, created_at, updated_at, deleted_at }
    secret { password_hash }
);

/// A new account.
#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    /// Id.
    pub id: UserId,
    /// Parsed username.
    pub username: &'a str,
    /// Parsed email.
    pub email: &'a str,
    /// The argon2id PHC string.
    pub password_hash: &'a str,
}

synctalk_kernel::debug_redacted!(NewUser<'a> { id, username, email } secret { password_hash });

/// A profile change; `None` leaves a column alone, `Some(None)` clears it.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserChanges {
    /// Display name.
    pub display_name: Option<Option<String>>,
    /// Avatar.
    pub avatar_url: Option<Option<String>>,
    /// Bio.
    pub bio: Option<Option<String>>,
    /// Custom status.
    pub status_text: Option<Option<String>>,
    /// Always set.
    pub updated_at: Option<DateTime<Utc>>,
}
