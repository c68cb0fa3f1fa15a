//! Database rows of guilds, roles, members, bans, invites, the audit log and guild
//! channels. Rows never go on the wire: see `dto`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use synctalk_db::schema::{audit_log, bans, channel_overwrites, channels, guilds, invites, roles};
use synctalk_kernel::{ChannelId, GuildId, RoleId, UserId};

use crate::permissions::{Overwrite, OverwriteTarget, Permissions, RoleRank};

/// A row of `guilds`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = guilds, check_for_backend(diesel::pg::Pg))]
pub struct GuildRow {
    /// Id.
    pub id: GuildId,
    /// Name.
    pub name: String,
    /// Owner.
    pub owner_id: UserId,
    /// Icon.
    pub icon_url: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A row of `roles`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = roles, check_for_backend(diesel::pg::Pg))]
pub struct RoleRow {
    /// Id (the guild's for `@everyone`).
    pub id: RoleId,
    /// Guild.
    pub guild_id: GuildId,
    /// Name.
    pub name: String,
    /// RGB color, 0 for none.
    pub color: i32,
    /// The bitfield as stored.
    pub permissions: i64,
    /// Position; `@everyone` is 0.
    pub position: i32,
}

impl RoleRow {
    /// As the permission algorithm needs it.
    pub fn rank(&self) -> RoleRank {
        RoleRank {
            permissions: Permissions::from_db(self.permissions),
            position: self.position,
        }
    }
}

/// A row of `bans`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = bans, check_for_backend(diesel::pg::Pg))]
pub struct BanRow {
    /// Banned user.
    pub user_id: UserId,
    /// Why.
    pub reason: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A row of `invites`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = invites, check_for_backend(diesel::pg::Pg))]
pub struct InviteRow {
    /// The code.
    pub code: String,
    /// Guild.
    pub guild_id: GuildId,
    /// Who made it.
    pub inviter_id: UserId,
    /// 0 is unlimited.
    pub max_uses: i32,
    /// Joins so far.
    pub uses: i32,
    /// Null never expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// Meant for this user.
    pub target_user_id: Option<UserId>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A row of `audit_log`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_log, check_for_backend(diesel::pg::Pg))]
pub struct AuditRow {
    /// Id (time-ordered).
    pub id: uuid::Uuid,
    /// Guild.
    pub guild_id: GuildId,
    /// Who.
    pub actor_id: UserId,
    /// What.
    pub action: String,
    /// On what.
    pub target_id: Option<uuid::Uuid>,
    /// Why.
    pub reason: Option<String>,
    /// Before and after.
    pub changes: serde_json::Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A row of `channels`, as guilds read it.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = channels, check_for_backend(diesel::pg::Pg))]
pub struct ChannelRow {
    /// Id.
    pub id: ChannelId,
    /// text, voice, category, dm or group_dm.
    pub kind: String,
    /// Guild channels only.
    pub guild_id: Option<GuildId>,
    /// Name.
    pub name: Option<String>,
    /// Topic.
    pub topic: Option<String>,
    /// Category.
    pub parent_id: Option<ChannelId>,
    /// Order within its category.
    pub position: i32,
    /// Group DM owner.
    pub owner_id: Option<UserId>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A row of `channel_overwrites`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = channel_overwrites, check_for_backend(diesel::pg::Pg))]
pub struct OverwriteRow {
    /// Channel.
    pub channel_id: ChannelId,
    /// A role's or a member's id.
    pub target_id: uuid::Uuid,
    /// `role` or `member`.
    pub kind: String,
    /// Granted.
    pub allow: i64,
    /// Taken away.
    pub deny: i64,
}

impl OverwriteRow {
    /// As the permission algorithm needs it.
    pub fn overwrite(&self) -> Overwrite {
        Overwrite {
            target: if self.kind == "member" {
                OverwriteTarget::Member(UserId(self.target_id))
            } else {
                OverwriteTarget::Role(RoleId(self.target_id))
            },
            allow: Permissions::from_db(self.allow),
            deny: Permissions::from_db(self.deny),
        }
    }
}
