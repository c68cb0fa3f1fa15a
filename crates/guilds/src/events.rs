//! The guilds domain's gateway events (all on `/gateway/guilds`), and the registry the
//! contract test reads. Guild-wide events go to the guild's topic; a channel's to the
//! channel's topic, which only those who can see it listen to; what concerns one
//! member (GUILD_CREATE when they join, GUILD_DELETE when they leave or are removed,
//! a channel appearing or disappearing for them) to their own user topic.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use synctalk_gateway::{EventInfo, gateway_event};
use synctalk_kernel::{ChannelId, GuildId, RoleId, UserId};
use synctalk_users::dto::User;
use utoipa::ToSchema;

use crate::dto::{Channel, ChannelKind, Guild, GuildState, Member, Role};
use crate::permissions::Permissions;

macro_rules! same_shape {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
        #[serde(transparent)]
        pub struct $name(pub $inner);
    };
}

/// GUILD_DELETE: the guild was deleted, or you left it or were removed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GuildDeleted {
    /// The guild.
    pub id: GuildId,
}

/// GUILD_MEMBER_ADD and GUILD_MEMBER_UPDATE: a member and their guild.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GuildMember {
    /// The guild.
    pub guild_id: GuildId,
    /// The member.
    #[serde(flatten)]
    pub member: Member,
}

same_shape!(
    /// GUILD_MEMBER_UPDATE.
    GuildMemberUpdate(GuildMember)
);

/// GUILD_MEMBER_REMOVE: left, kicked or banned.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GuildMemberRemove {
    /// The guild.
    pub guild_id: GuildId,
    /// Who.
    pub user: User,
}

/// GUILD_ROLE_CREATE and GUILD_ROLE_UPDATE.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GuildRole {
    /// The guild.
    pub guild_id: GuildId,
    /// The role.
    pub role: Role,
}

same_shape!(
    /// GUILD_ROLE_UPDATE.
    GuildRoleUpdate(GuildRole)
);

/// GUILD_ROLE_DELETE.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GuildRoleDelete {
    /// The guild.
    pub guild_id: GuildId,
    /// The deleted role.
    pub role_id: RoleId,
}

/// GUILD_BAN_ADD and GUILD_BAN_REMOVE (the reason is only in the ban list).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GuildBan {
    /// The guild.
    pub guild_id: GuildId,
    /// Who.
    pub user: User,
}

same_shape!(
    /// GUILD_BAN_REMOVE.
    GuildBanRemove(GuildBan)
);

same_shape!(
    /// CHANNEL_CREATE of a guild channel: made, or now visible to you.
    GuildChannelCreate(Channel)
);
same_shape!(
    /// CHANNEL_UPDATE of a guild channel.
    GuildChannelUpdate(Channel)
);
same_shape!(
    /// CHANNEL_DELETE of a guild channel: deleted, or no longer visible to you.
    GuildChannelDelete(Channel)
);

gateway_event!(GuildState, "GUILD_CREATE", Guilds, replayed);
gateway_event!(Guild, "GUILD_UPDATE", Guilds, replayed);
gateway_event!(GuildDeleted, "GUILD_DELETE", Guilds, replayed);
gateway_event!(GuildMember, "GUILD_MEMBER_ADD", Guilds, replayed);
gateway_event!(GuildMemberUpdate, "GUILD_MEMBER_UPDATE", Guilds, replayed);
gateway_event!(GuildMemberRemove, "GUILD_MEMBER_REMOVE", Guilds, replayed);
gateway_event!(GuildRole, "GUILD_ROLE_CREATE", Guilds, replayed);
gateway_event!(GuildRoleUpdate, "GUILD_ROLE_UPDATE", Guilds, replayed);
gateway_event!(GuildRoleDelete, "GUILD_ROLE_DELETE", Guilds, replayed);
gateway_event!(GuildBan, "GUILD_BAN_ADD", Guilds, replayed);
gateway_event!(GuildBanRemove, "GUILD_BAN_REMOVE", Guilds, replayed);
gateway_event!(GuildChannelCreate, "CHANNEL_CREATE", Guilds, replayed);
gateway_event!(GuildChannelUpdate, "CHANNEL_UPDATE", Guilds, replayed);
gateway_event!(GuildChannelDelete, "CHANNEL_DELETE", Guilds, replayed);

/// Every event of the guilds domain, each with an example.
pub fn all() -> Vec<EventInfo> {
    let user = User {
        id: UserId::new(),
        username: "alice".into(),
        display_name: None,
        avatar_url: None,
        bio: None,
        status_text: None,
        created_at: Utc::now(),
    };
    let guild = Guild {
        id: GuildId::new(),
        name: "Rustaceans".into(),
        owner_id: user.id,
        icon_url: None,
        created_at: Utc::now(),
    };
    let role = Role {
        id: RoleId::new(),
        name: "mods".into(),
        color: 0x3498db,
        permissions: Permissions::KICK_MEMBERS,
        position: 1,
    };
    let member = Member {
        user: user.clone(),
        nick: Some("ally".into()),
        role_ids: vec![role.id],
        joined_at: Utc::now(),
    };
    let channel = Channel {
        id: ChannelId::new(),
        kind: ChannelKind::Text,
        guild_id: Some(guild.id),
        name: Some("general".into()),
        topic: None,
        parent_id: None,
        position: 0,
        owner_id: None,
        recipients: Vec::new(),
        overwrites: Vec::new(),
    };
    let state = GuildState {
        guild: guild.clone(),
        roles: vec![role.clone()],
        channels: vec![channel.clone()],
        member: member.clone(),
        member_count: 1,
    };
    let in_guild = GuildMember {
        guild_id: guild.id,
        member,
    };
    let ban = GuildBan {
        guild_id: guild.id,
        user: user.clone(),
    };
    let with_role = GuildRole {
        guild_id: guild.id,
        role: role.clone(),
    };
    let infos = [
        EventInfo::of(&state),
        EventInfo::of(&guild),
        EventInfo::of(&GuildDeleted { id: guild.id }),
        EventInfo::of(&in_guild),
        EventInfo::of(&GuildMemberUpdate(in_guild.clone())),
        EventInfo::of(&GuildMemberRemove {
            guild_id: guild.id,
            user,
        }),
        EventInfo::of(&with_role),
        EventInfo::of(&GuildRoleUpdate(with_role.clone())),
        EventInfo::of(&GuildRoleDelete {
            guild_id: guild.id,
            role_id: role.id,
        }),
        EventInfo::of(&ban),
        EventInfo::of(&GuildBanRemove(ban.clone())),
        EventInfo::of(&GuildChannelCreate(channel.clone())),
        EventInfo::of(&GuildChannelUpdate(channel.clone())),
        EventInfo::of(&GuildChannelDelete(channel)),
    ];
    infos.into_iter().filter_map(Result::ok).collect()
}
