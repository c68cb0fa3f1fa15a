//! Wire types of the messaging API and its events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use synctalk_kernel::{ChannelId, GuildId, MessageId, RoleId, UserId};
use synctalk_users::dto::User;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// A message, in a guild text channel, a DM or a group DM.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Message {
    /// The message's id (time-ordered).
    pub id: MessageId,
    /// Its channel.
    pub channel_id: ChannelId,
    /// The channel's guild, for a guild channel.
    pub guild_id: Option<GuildId>,
    /// Who sent it.
    pub author: User,
    /// 1-4000 characters.
    #[schema(example = "hello <@01939f0c-7c4e-7a51-9d1c-0a8c6a3f2b10>")]
    pub content: String,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
    /// When it was last edited, if ever.
    pub edited_at: Option<DateTime<Utc>>,
    /// The message it answers, summarized; still there, marked deleted, when that
    /// message is deleted.
    pub reply_to: Option<ReplySummary>,
    /// Users mentioned as `<@id>` who could be there (live, in the guild or the DM).
    pub mentions: Vec<User>,
    /// Roles of the guild mentioned as `<@&id>`, by someone with MENTION_EVERYONE (from
    /// anyone else a role mention is text).
    pub mention_roles: Vec<RoleId>,
    /// `@everyone`, by someone with MENTION_EVERYONE (always in DMs and group DMs).
    pub mention_everyone: bool,
    /// Files attached, in upload order, with fresh signed URLs.
    pub attachments: Vec<crate::attachments::Attachment>,
    /// Reactions: each emoji once, with its count and whether you are among them.
    pub reactions: Vec<Reaction>,
    /// Whether it is pinned.
    pub pinned: bool,
    /// The sender's `nonce`, as sent.
    pub nonce: Option<String>,
}

/// What a reply shows of the message it answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReplySummary {
    /// The message answered.
    pub id: MessageId,
    /// Its author.
    pub author_id: UserId,
    /// Its content (empty once deleted).
    pub content: String,
    /// Whether it has been deleted since.
    pub deleted: bool,
}

/// One emoji's reactions on a message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reaction {
    /// The emoji.
    #[schema(example = "👍")]
    pub emoji: String,
    /// How many users reacted with it.
    pub count: i64,
    /// Whether you did.
    pub me: bool,
}

/// `POST /channels/{id}/messages` and the SEND_MESSAGE command.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// Up to 4000 characters with at least one visible one (kept trimmed); no control
    /// characters but line breaks and tabs. May be empty (or left out) when
    /// `attachment_ids` names at least one file.
    #[serde(default)]
    #[schema(
        example = "hello",
        max_length = 4000,
        pattern = "^$|^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u00ad\\u034f\\u061c\\u115f\\u1160\\u1680\\u17b4\\u17b5\\u180b-\\u180f\\u2000-\\u200f\\u2028-\\u202f\\u205f-\\u206f\\u2800\\u3000\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0][^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"
    )]
    pub content: String,
    /// A message of the same channel to answer.
    #[serde(default)]
    pub reply_to: Option<MessageId>,
    /// Files you uploaded (`POST /attachments`) and have not sent yet, at most 10
    /// (repeats count once); needs ATTACH_FILES in a guild channel.
    #[serde(default)]
    #[schema(max_items = 10)]
    pub attachment_ids: Vec<Uuid>,
    /// Your retry key, up to 64 characters: a send retried with the same nonce (over
    /// REST or the gateway, on any node) returns the first message with 200 and
    /// creates nothing.
    #[serde(default)]
    #[schema(
        example = "k3j5h2",
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub nonce: Option<String>,
}

/// SEND_MESSAGE's `d`: [`SendMessage`] and the channel.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageCommand {
    /// Where to send it.
    pub channel_id: ChannelId,
    /// As `SendMessage.content`.
    #[serde(default)]
    pub content: String,
    /// A message of the same channel to answer.
    #[serde(default)]
    pub reply_to: Option<MessageId>,
    /// As `SendMessage.attachment_ids`.
    #[serde(default)]
    pub attachment_ids: Vec<Uuid>,
    /// Your retry key.
    #[serde(default)]
    pub nonce: Option<String>,
}

/// `PATCH /channels/{id}/messages/{message_id}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditMessage {
    /// The new content: as a send's.
    #[schema(
        example = "hello again",
        min_length = 1,
        max_length = 4000,
        pattern = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u00ad\\u034f\\u061c\\u115f\\u1160\\u1680\\u17b4\\u17b5\\u180b-\\u180f\\u2000-\\u200f\\u2028-\\u202f\\u205f-\\u206f\\u2800\\u3000\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0][^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$"
    )]
    pub content: String,
}

/// The cursors of a message list, each a bound (and `around` the middle).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageQuery {
    /// How many, 1-100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Only messages older than this id; alone: the newest of them.
    pub before: Option<Uuid>,
    /// Only messages newer than this id: the oldest of them (still listed newest
    /// first).
    pub after: Option<Uuid>,
    /// The message with this id (when there is one), the messages just after it and
    /// those just before it, half and half (within `before` and `after` when given).
    pub around: Option<Uuid>,
}
