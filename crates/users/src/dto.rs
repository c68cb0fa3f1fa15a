//! Wire types of the users API.

use chrono::{DateTime, Utc};
use diesel::{Queryable, Selectable};
use serde::{Deserialize, Serialize};
use synctalk_db::schema::users;
use synctalk_kernel::UserId;
use utoipa::ToSchema;

use crate::model::UserRow;

/// A user as anyone may see them.
// Also the columns of `users` that reads showing other people select: no email, no
// password hash leaves the database for them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// Unique, lower-case name: 3-32 of `a-z`, `0-9`, `_`, `.`.
    #[schema(example = "alice")]
    pub username: String,
    /// Shown instead of the username when set.
    #[schema(example = "Alice")]
    pub display_name: Option<String>,
    /// The avatar image.
    pub avatar_url: Option<String>,
    /// About me, up to 190 characters.
    pub bio: Option<String>,
    /// A custom status, up to 128 characters.
    pub status_text: Option<String>,
    /// When the account was made.
    pub created_at: DateTime<Utc>,
}

/// Yourself: a [`User`] plus the fields only you see.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CurrentUser {
    /// The user's id.
    pub id: UserId,
    /// Unique, lower-case name.
    #[schema(example = "alice")]
    pub username: String,
    /// Shown instead of the username when set.
    pub display_name: Option<String>,
    /// The avatar image.
    pub avatar_url: Option<String>,
    /// About me.
    pub bio: Option<String>,
    /// A custom status.
    pub status_text: Option<String>,
    /// When the account was made.
    pub created_at: DateTime<Utc>,
    /// Your email address (only ever in your own `@me`).
    #[schema(example = "alice@example.com")]
    pub email: String,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            username: row.username,
            display_name: row.display_name,
            avatar_url: row.avatar_url,
            bio: row.bio,
            status_text: row.status_text,
            created_at: row.created_at,
        }
    }
}

impl From<UserRow> for CurrentUser {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            username: row.username,
            display_name: row.display_name,
            avatar_url: row.avatar_url,
            bio: row.bio,
            status_text: row.status_text,
            created_at: row.created_at,
            email: row.email,
        }
    }
}

/// A profile change: a field left out stays as it is, `null` clears it.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateCurrentUser {
    /// Up to 32 characters on one line, not all blank, or `null` to clear; blanks at
    /// the ends count toward the limit and are trimmed off.
    /// No control, invisible or direction-changing characters (bidi overrides and
    /// isolates, zero-width spaces, the byte-order mark; emoji keep their zero-width
    /// joiner).
    #[serde(
        default,
        deserialize_with = "synctalk_kernel::serde_ext::double_option"
    )]
    #[schema(value_type = Option<String>, nullable, example = "Alice", max_length = 32, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*$")]
    pub display_name: Option<Option<String>>,
    /// An `http://` or `https://` URL up to 2048 characters with a host and no blanks,
    /// or `null` to clear.
    #[serde(
        default,
        deserialize_with = "synctalk_kernel::serde_ext::double_option"
    )]
    #[schema(value_type = Option<String>, nullable, max_length = 2048, pattern = "^https?://[^/?#\\u0000-\\u001f\\u007f-\\u009f\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$")]
    pub avatar_url: Option<Option<String>>,
    /// Up to 190 characters, or `null` to clear.
    /// No control, invisible or direction-changing characters (bidi overrides and
    /// isolates, zero-width spaces, the byte-order mark; emoji keep their zero-width
    /// joiner).
    #[serde(
        default,
        deserialize_with = "synctalk_kernel::serde_ext::double_option"
    )]
    #[schema(value_type = Option<String>, nullable, max_length = 190, pattern = "^[^\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*$")]
    pub bio: Option<Option<String>>,
    /// Up to 128 characters on one line, or `null` to clear.
    /// No control, invisible or direction-changing characters (bidi overrides and
    /// isolates, zero-width spaces, the byte-order mark; emoji keep their zero-width
    /// joiner).
    #[serde(
        default,
        deserialize_with = "synctalk_kernel::serde_ext::double_option"
    )]
    #[schema(value_type = Option<String>, nullable, example = "On holiday", max_length = 128, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*$")]
    pub status_text: Option<Option<String>>,
}
