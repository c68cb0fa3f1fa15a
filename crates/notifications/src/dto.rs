//! Wire types of notifications.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use synctalk_db::schema::notifications;
use synctalk_kernel::UserId;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A DM or group DM message, or a mention.
    Message,
    /// Someone asked to be your friend.
    FriendRequest,
    /// Someone invited you to a guild.
    GuildInvite,
    /// A call you did not answer.
    CallMissed,
    /// A notice from the service (a sign-in from a new device).
    System,
}

impl NotificationKind {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::FriendRequest => "friend_request",
            Self::GuildInvite => "guild_invite",
            Self::CallMissed => "call_missed",
            Self::System => "system",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "message" => Self::Message,
            "friend_request" => Self::FriendRequest,
            "guild_invite" => Self::GuildInvite,
            "call_missed" => Self::CallMissed,
            _ => Self::System,
        }
    }
}

/// A notification.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    /// Its id (time-ordered).
    pub id: Uuid,
    /// What it is about.
    pub kind: NotificationKind,
    /// One line to show.
    #[schema(example = "alice")]
    pub title: String,
    /// More to show (a message's first 200 characters).
    #[schema(example = "are you coming tonight?")]
    pub body: String,
    /// The ids a client needs to open what it is about: `channel_id`, `guild_id`,
    /// `message_id`, `author_id` for a message; `user_id` for a friend request; `code`
    /// and `guild_id` for an invite.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// Whether you have read it.
    pub read: bool,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// A row of `notifications`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = notifications, check_for_backend(diesel::pg::Pg))]
pub struct NotificationRow {
    /// Id.
    pub id: Uuid,
    /// Whose.
    pub user_id: UserId,
    /// Kind, as stored.
    pub kind: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Data.
    pub data: serde_json::Value,
    /// When read.
    pub read_at: Option<DateTime<Utc>>,
    /// Made.
    pub created_at: DateTime<Utc>,
}

impl From<NotificationRow> for Notification {
    fn from(row: NotificationRow) -> Self {
        Self {
            id: row.id,
            kind: NotificationKind::parse(&row.kind),
            title: row.title,
            body: row.body,
            data: row.data,
            read: row.read_at.is_some(),
            created_at: row.created_at,
        }
    }
}

/// NOTIFICATION_UPDATE: some of your notifications were read or deleted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotificationUpdate {
    /// The notifications changed (empty with `all`).
    pub ids: Vec<Uuid>,
    /// Every notification made up to now changed (read-all).
    pub all: bool,
    /// They are read now.
    pub read: bool,
    /// They are deleted now.
    pub deleted: bool,
    /// Your unread notifications after the change.
    pub unread_count: i64,
}

/// The query of `GET /notifications`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// Only unread ones.
    pub unread: Option<bool>,
    /// Only ones older than this id (the next page).
    pub before: Option<Uuid>,
    /// Only ones newer than this id: the oldest of them (still listed newest first);
    /// with `before` too, those between the two.
    pub after: Option<Uuid>,
    /// How many, 1-100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}
