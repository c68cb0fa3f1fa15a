//! Database rows of messages and reactions. Rows never go on the wire: see `dto`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use synctalk_db::schema::messages;
use synctalk_kernel::{ChannelId, MessageId, UserId};
use uuid::Uuid;

/// The columns of a [`MessageRow`], in its order, of `messages` aliased `m` (for
/// statements written out).
#[macro_export]
macro_rules! message_columns {
    () => {
        "m.channel_id, m.id, m.author_id, m.content, m.nonce, m.reply_to, m.mentions, \
         m.mention_roles, m.mention_everyone, m.pinned_at, m.created_at, m.edited_at, \
         m.deleted_at, m.has_reactions, m.has_attachments"
    };
}

/// A row of `messages` (without its search vector).
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = messages, check_for_backend(diesel::pg::Pg))]
pub struct MessageRow {
    /// Channel.
    pub channel_id: ChannelId,
    /// Id.
    pub id: MessageId,
    /// Author.
    pub author_id: UserId,
    /// Text.
    pub content: String,
    /// The sender's retry key.
    pub nonce: Option<String>,
    /// The message it answers.
    pub reply_to: Option<MessageId>,
    /// Users mentioned (never null: PostgreSQL arrays cannot say so).
    pub mentions: Vec<Option<Uuid>>,
    /// Roles mentioned.
    pub mention_roles: Vec<Option<Uuid>>,
    /// `@everyone`, by someone allowed.
    pub mention_everyone: bool,
    /// When pinned.
    pub pinned_at: Option<DateTime<Utc>>,
    /// Sent.
    pub created_at: DateTime<Utc>,
    /// Last edited.
    pub edited_at: Option<DateTime<Utc>>,
    /// Deleted (never read back).
    pub deleted_at: Option<DateTime<Utc>>,
    /// Whether it may have reactions (never `false` while it has one).
    pub has_reactions: bool,
    /// Whether it was sent with files.
    pub has_attachments: bool,
}
