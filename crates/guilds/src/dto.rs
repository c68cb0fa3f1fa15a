//! Wire types of the guilds API and its events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use synctalk_kernel::{ChannelId, GuildId, RoleId, UserId};
use synctalk_users::dto::User;
use utoipa::ToSchema;

use crate::model::{ChannelRow, GuildRow, OverwriteRow, RoleRow};
use crate::permissions::Permissions;

/// A guild (server).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Guild {
    /// The guild's id (also its `@everyone` role's id).
    pub id: GuildId,
    /// Up to 100 characters.
    #[schema(example = "Rustaceans")]
    pub name: String,
    /// The owner, who has every permission.
    pub owner_id: UserId,
    /// The icon image.
    pub icon_url: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl From<GuildRow> for Guild {
    fn from(row: GuildRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            owner_id: row.owner_id,
            icon_url: row.icon_url,
            created_at: row.created_at,
        }
    }
}

/// A role.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Role {
    /// The role's id; `@everyone`'s is the guild's id.
    pub id: RoleId,
    /// 1-100 characters.
    #[schema(example = "moderators")]
    pub name: String,
    /// RGB color as an integer (0 is none).
    #[schema(example = 3447003, minimum = 0, maximum = 16777215)]
    pub color: i32,
    /// What it allows.
    pub permissions: Permissions,
    /// Where it sits: `@everyone` is 0, higher is above; one can only manage roles
    /// below one's highest.
    pub position: i32,
}

impl From<RoleRow> for Role {
    fn from(row: RoleRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            color: row.color,
            permissions: Permissions::from_db(row.permissions),
            position: row.position,
        }
    }
}

/// A member of a guild.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Member {
    /// The user.
    pub user: User,
    /// Their nickname in this guild.
    pub nick: Option<String>,
    /// Their roles (never `@everyone`, which every member has).
    pub role_ids: Vec<RoleId>,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
}

/// What a channel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A guild text channel.
    Text,
    /// A guild voice channel.
    Voice,
    /// A guild category that other channels sit in.
    Category,
    /// A 1:1 direct message.
    Dm,
    /// A group direct message.
    GroupDm,
}

impl ChannelKind {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Text => "text",
            ChannelKind::Voice => "voice",
            ChannelKind::Category => "category",
            ChannelKind::Dm => "dm",
            ChannelKind::GroupDm => "group_dm",
        }
    }

    /// From storage.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "text" => ChannelKind::Text,
            "voice" => ChannelKind::Voice,
            "category" => ChannelKind::Category,
            "dm" => ChannelKind::Dm,
            "group_dm" => ChannelKind::GroupDm,
            _ => return None,
        })
    }
}

/// Whose overwrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverwriteType {
    /// A role's (the guild's id is `@everyone`).
    Role,
    /// One member's.
    Member,
}

/// A channel's permission overwrite for a role or a member.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PermissionOverwrite {
    /// The role's or the member's id.
    pub id: uuid::Uuid,
    /// Whose.
    #[serde(rename = "type")]
    pub kind: OverwriteType,
    /// Granted in this channel.
    pub allow: Permissions,
    /// Taken away in this channel.
    pub deny: Permissions,
}

impl From<&OverwriteRow> for PermissionOverwrite {
    fn from(row: &OverwriteRow) -> Self {
        Self {
            id: row.target_id,
            kind: if row.kind == "member" {
                OverwriteType::Member
            } else {
                OverwriteType::Role
            },
            allow: Permissions::from_db(row.allow),
            deny: Permissions::from_db(row.deny),
        }
    }
}

/// A channel: a guild text, voice or category channel, a DM or a group DM.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Channel {
    /// The channel's id.
    pub id: ChannelId,
    /// What it is.
    pub kind: ChannelKind,
    /// Its guild (guild channels only).
    pub guild_id: Option<GuildId>,
    /// Its name (guild channels, group DMs).
    #[schema(example = "general")]
    pub name: Option<String>,
    /// Its topic (guild text channels).
    pub topic: Option<String>,
    /// The category it sits in.
    pub parent_id: Option<ChannelId>,
    /// Its order within its category (then by id).
    pub position: i32,
    /// A group DM's owner, who may remove others (null otherwise).
    pub owner_id: Option<UserId>,
    /// Every member of a DM or group DM, you included (empty for guild channels).
    pub recipients: Vec<User>,
    /// Permission overwrites (guild channels only).
    pub overwrites: Vec<PermissionOverwrite>,
}

impl Channel {
    /// A guild channel from its row and overwrites.
    pub fn guild(row: ChannelRow, overwrites: &[OverwriteRow]) -> Self {
        Self {
            id: row.id,
            kind: ChannelKind::parse(&row.kind).unwrap_or(ChannelKind::Text),
            guild_id: row.guild_id,
            name: row.name,
            topic: row.topic,
            parent_id: row.parent_id,
            position: row.position,
            owner_id: None,
            recipients: Vec::new(),
            overwrites: overwrites
                .iter()
                .filter(|o| o.channel_id == row.id)
                .map(PermissionOverwrite::from)
                .collect(),
        }
    }
}

/// A guild as a member first sees it (GUILD_CREATE, and each guild of READY): the
/// guild, its roles, the channels you can see, your member record.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GuildState {
    /// The guild.
    #[serde(flatten)]
    pub guild: Guild,
    /// Every role, by position.
    pub roles: Vec<Role>,
    /// The channels you can see, by position.
    pub channels: Vec<Channel>,
    /// Your own member record.
    pub member: Member,
    /// How many members it has.
    pub member_count: i64,
}

/// A ban.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Ban {
    /// The banned user.
    pub user: User,
    /// Why, as given.
    pub reason: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// An invite.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Invite {
    /// The code to join with (`POST /invites/{code}`).
    #[schema(example = "x3Hq9aBc")]
    pub code: String,
    /// The guild it joins.
    pub guild: Guild,
    /// Who made it.
    pub inviter_id: UserId,
    /// How many joins it allows (0: unlimited).
    pub max_uses: i32,
    /// How many joins it had.
    pub uses: i32,
    /// When it stops working (null: never).
    pub expires_at: Option<DateTime<Utc>>,
    /// The user it was made for, if any.
    pub target_user_id: Option<UserId>,
    /// How many members the guild has.
    pub member_count: i64,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// An entry of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// The entry's id (time-ordered: page with `before`).
    pub id: uuid::Uuid,
    /// What was done: `guild_update`, `member_kick`, `member_ban_add`,
    /// `member_ban_remove`, `member_update`, `member_role_update`, `role_create`,
    /// `role_update`, `role_delete`, `invite_create`, `invite_delete`,
    /// `channel_create`, `channel_update`, `channel_delete`,
    /// `channel_overwrite_update`, `channel_overwrite_delete`.
    #[schema(example = "member_kick")]
    pub action: String,
    /// Who did it.
    pub actor_id: UserId,
    /// What it was done to (a user, role, channel or invite's guild).
    pub target_id: Option<uuid::Uuid>,
    /// Why, as given (`X-Audit-Log-Reason`, or a ban's `reason`).
    pub reason: Option<String>,
    /// What changed: for each field, `{"old": ..., "new": ...}`.
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// `POST /guilds`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateGuild {
    /// Up to 100 characters on one line, not all blank (the rules of a display name).
    #[schema(
        example = "Rustaceans",
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*$"
    )]
    pub name: String,
    /// An `http://` or `https://` URL of the icon.
    #[serde(default)]
    #[schema(
        max_length = 2048,
        pattern = "^https?://[^/?#\\u0000-\\u001f\\u007f-\\u009f\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
    )]
    pub icon_url: Option<String>,
}

/// `PATCH /guilds/{id}`: fields left out stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateGuild {
    /// Up to 100 characters on one line, not all blank (MANAGE_GUILD).
    #[serde(default)]
    #[schema(
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*$"
    )]
    pub name: Option<String>,
    /// The icon (MANAGE_GUILD); null clears it.
    #[serde(
        default,
        deserialize_with = "synctalk_kernel::serde_ext::double_option"
    )]
    #[schema(value_type = Option<String>, nullable, max_length = 2048, pattern = "^https?://[^/?#\\u0000-\\u001f\\u007f-\\u009f\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$")]
    pub icon_url: Option<Option<String>>,
    /// Transfers ownership to this member (owner only).
    #[serde(default)]
    pub owner_id: Option<UserId>,
}

/// `PATCH /guilds/{id}/members/{user_id}`: fields left out stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateMember {
    /// The nickname, up to 32 characters (CHANGE_NICKNAME for yourself,
    /// MANAGE_NICKNAMES for others); null clears it.
    #[serde(
        default,
        deserialize_with = "synctalk_kernel::serde_ext::double_option"
    )]
    #[schema(value_type = Option<String>, nullable, max_length = 32, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*$")]
    pub nick: Option<Option<String>>,
    /// The member's roles, all of them (MANAGE_ROLES; only roles below your highest
    /// can be added or removed).
    #[serde(default)]
    pub role_ids: Option<Vec<RoleId>>,
}

/// `POST /guilds/{id}/roles`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateRole {
    /// Up to 100 characters on one line, not all blank (default `new role`).
    #[serde(default)]
    #[schema(
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*$"
    )]
    pub name: Option<String>,
    /// RGB color (default 0).
    #[serde(default, deserialize_with = "synctalk_kernel::serde_ext::whole_number")]
    #[schema(minimum = 0, maximum = 16777215)]
    pub color: Option<i64>,
    /// What it allows (default nothing); only permissions you have.
    #[serde(default)]
    pub permissions: Option<Permissions>,
}

/// `PATCH /guilds/{id}/roles/{role_id}`: fields left out stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateRole {
    /// Up to 100 characters on one line, not all blank (not for `@everyone`).
    #[serde(default)]
    #[schema(
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*$"
    )]
    pub name: Option<String>,
    /// RGB color.
    #[serde(default, deserialize_with = "synctalk_kernel::serde_ext::whole_number")]
    #[schema(minimum = 0, maximum = 16777215)]
    pub color: Option<i64>,
    /// What it allows; only permissions you have can be added or removed.
    #[serde(default)]
    pub permissions: Option<Permissions>,
    /// A new position, 1-250 and below your highest role (not for `@everyone`);
    /// the roles in between shift to make room.
    #[serde(default, deserialize_with = "synctalk_kernel::serde_ext::whole_number")]
    #[schema(minimum = 1, maximum = 250)]
    pub position: Option<i64>,
}

/// `PUT /guilds/{id}/bans/{user_id}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateBan {
    /// Why, up to 512 characters (kept in the ban and the audit log).
    #[serde(default)]
    #[schema(
        max_length = 512,
        pattern = "^[^\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f\\u061c\\u115f\\u1160\\u180e\\u200b\\u200c\\u200e\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\u3164\\ufeff\\uffa0]*$"
    )]
    pub reason: Option<String>,
}

/// `POST /guilds/{id}/invites`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateInvite {
    /// How many joins it allows, 0-100 (0, the default: unlimited).
    #[serde(default, deserialize_with = "synctalk_kernel::serde_ext::whole_number")]
    #[schema(minimum = 0, maximum = 100)]
    pub max_uses: Option<i64>,
    /// How long it works, in seconds, 0-604800 (0: forever; default 86400).
    #[serde(default, deserialize_with = "synctalk_kernel::serde_ext::whole_number")]
    #[schema(minimum = 0, maximum = 604800)]
    pub max_age_secs: Option<i64>,
    /// The user it is meant for (shown on the invite; anyone with the code can use it).
    #[serde(default)]
    pub target_user_id: Option<UserId>,
}
