//! Guilds (servers): members, roles and the permission bitfield, invites, kicks and
//! bans, the audit log, and who sees which guild channel.
//!
//! [`permissions`] holds the one algorithm; [`access`] loads a member's standing for a
//! route; [`visibility`] turns changes of who sees what into subscription records.
//! The channels crate builds guild channels and DMs on these.

pub mod access;
pub mod dto;
pub mod events;
pub mod gateway;
pub mod model;
pub mod permissions;
pub mod read;
mod routes;
pub mod service;
pub mod visibility;

use actix_web::web;
use utoipa::OpenApi;

/// Mounts the guilds routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg);
}

/// The guilds crate's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        routes::create_guild, routes::my_guilds, routes::leave_guild, routes::get_guild,
        routes::update_guild, routes::delete_guild, routes::list_members, routes::get_member,
        routes::update_member, routes::kick_member, routes::add_member_role,
        routes::remove_member_role, routes::list_roles, routes::create_role, routes::update_role,
        routes::delete_role, routes::list_bans, routes::ban_member, routes::unban_member,
        routes::list_invites, routes::create_invite, routes::get_invite, routes::join_guild,
        routes::delete_invite, routes::audit_log
    ),
    components(schemas(
        dto::Guild, dto::Role, dto::Member, dto::Channel, dto::ChannelKind, dto::OverwriteType,
        dto::PermissionOverwrite, dto::GuildState, dto::Ban, dto::Invite, dto::AuditEntry,
        dto::CreateGuild, dto::UpdateGuild, dto::UpdateMember, dto::CreateRole, dto::UpdateRole,
        dto::CreateBan, dto::CreateInvite, permissions::Permissions, events::GuildDeleted,
        events::GuildMember, events::GuildMemberRemove, events::GuildRole, events::GuildRoleDelete,
        events::GuildBan
    )),
    tags((name = "guilds", description = "Guilds, members, roles, bans, invites and the audit log"))
)]
pub struct GuildsApi;
