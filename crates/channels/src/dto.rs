//! Request bodies of the channels API (the channel itself is `synctalk_guilds::dto::Channel`).

use serde::Deserialize;
use synctalk_guilds::dto::{ChannelKind, OverwriteType};
use synctalk_guilds::permissions::Permissions;
use synctalk_kernel::{ChannelId, UserId};
use utoipa::ToSchema;

/// What a guild channel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GuildChannelKind {
    /// A text channel.
    Text,
    /// A voice channel.
    Voice,
    /// A category that other channels sit in.
    Category,
}

impl From<GuildChannelKind> for ChannelKind {
    fn from(kind: GuildChannelKind) -> Self {
        match kind {
            GuildChannelKind::Text => ChannelKind::Text,
            GuildChannelKind::Voice => ChannelKind::Voice,
            GuildChannelKind::Category => ChannelKind::Category,
        }
    }
}

/// `POST /guilds/{id}/channels`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateChannel {
    /// Up to 100 characters on one line, not all blank.
    #[schema(
        example = "announcements",
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*$"
    )]
    pub name: String,
    /// `text` (default), `voice` or `category`.
    #[serde(default)]
    pub kind: Option<GuildChannelKind>,
    /// The category it sits in.
    #[serde(default)]
    pub parent_id: Option<ChannelId>,
    /// The channel's topic, up to 1024 characters.
    #[serde(default)]
    #[schema(
        max_length = 1024,
        pattern = "^[^\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*$"
    )]
    pub topic: Option<String>,
    /// Its order within its category, 0-10000 (default: last).
    #[serde(default, deserialize_with = "synctalk_kernel::serde_ext::whole_number")]
    #[schema(minimum = 0, maximum = 10000)]
    pub position: Option<i64>,
}

/// `PATCH /channels/{id}`: fields left out stay as they are. A group DM takes only
/// `name`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateChannel {
    /// Up to 100 characters on one line, not all blank (a group DM's may be null).
    #[serde(
        default,
        deserialize_with = "synctalk_kernel::serde_ext::double_option"
    )]
    #[schema(value_type = Option<String>, nullable, max_length = 100, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*$")]
    pub name: Option<Option<String>>,
    /// A text channel's topic, up to 1024 characters; null clears it.
    #[serde(
        default,
        deserialize_with = "synctalk_kernel::serde_ext::double_option"
    )]
    #[schema(value_type = Option<String>, nullable, max_length = 1024, pattern = "^[^\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*$")]
    pub topic: Option<Option<String>>,
    /// Its order within its category, 0-10000.
    #[serde(default, deserialize_with = "synctalk_kernel::serde_ext::whole_number")]
    #[schema(minimum = 0, maximum = 10000)]
    pub position: Option<i64>,
    /// Its category; null takes it out.
    #[serde(
        default,
        deserialize_with = "synctalk_kernel::serde_ext::double_option"
    )]
    #[schema(value_type = Option<ChannelId>, nullable)]
    pub parent_id: Option<Option<ChannelId>>,
}

/// `PUT /channels/{id}/permissions/{target_id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PutOverwrite {
    /// Whether `target_id` is a role (the guild's id for `@everyone`) or a member.
    #[serde(rename = "type")]
    pub kind: OverwriteType,
    /// Granted in this channel (default none).
    #[serde(default)]
    pub allow: Option<Permissions>,
    /// Taken away in this channel (default none).
    #[serde(default)]
    pub deny: Option<Permissions>,
}

/// `POST /users/@me/channels`: `{recipient_id}` opens the 1:1 DM with that user;
/// `{recipient_ids, name}` makes a group DM.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OpenChannel {
    /// The 1:1 DM with a user.
    Dm(OpenDm),
    /// A new group DM.
    Group(OpenGroup),
}

/// The 1:1 DM with a user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenDm {
    /// The other user.
    pub recipient_id: UserId,
}

/// A new group DM.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenGroup {
    /// The other members (at most 9; you are one anyway).
    #[schema(max_items = 9)]
    pub recipient_ids: Vec<UserId>,
    /// Its name, up to 100 characters.
    #[serde(default)]
    #[schema(
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*$"
    )]
    pub name: Option<String>,
}

/// `POST /users/@me/folders`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateFolder {
    /// Up to 100 characters on one line, not all blank.
    #[schema(
        example = "Work",
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*$"
    )]
    pub name: String,
    /// Its order among your folders, 0-1000 (default: last).
    #[serde(default, deserialize_with = "synctalk_kernel::serde_ext::whole_number")]
    #[schema(minimum = 0, maximum = 1000)]
    pub position: Option<i64>,
}

/// `PATCH /users/@me/folders/{id}`: fields left out stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateFolder {
    /// Up to 100 characters on one line, not all blank.
    #[serde(default)]
    #[schema(
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*$"
    )]
    pub name: Option<String>,
    /// Its order among your folders, 0-1000.
    #[serde(default, deserialize_with = "synctalk_kernel::serde_ext::whole_number")]
    #[schema(minimum = 0, maximum = 1000)]
    pub position: Option<i64>,
}

/// `PUT /users/@me/folders/{id}/items/{item_id}` (the body is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PutFolderItem {
    /// Its order in the folder, 0-1000 (default: last).
    #[serde(default, deserialize_with = "synctalk_kernel::serde_ext::whole_number")]
    #[schema(minimum = 0, maximum = 1000)]
    pub position: Option<i64>,
}
