//! Channels: guild text, voice and category channels with permission overwrites, 1:1
//! DMs and group DMs. [`access`] decides once who can see a channel and what they may
//! do in it (guild channels through `synctalk_guilds::permissions`). [`folders`]: a
//! user's own grouping of guilds and DMs.

pub mod access;
pub mod dms;
pub mod dto;
pub mod events;
pub mod folders;
pub mod gateway;
pub mod guild_channels;
mod routes;

use actix_web::web;
use utoipa::OpenApi;

/// Mounts the channels routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg);
}

/// The channels crate's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        routes::list_guild_channels, routes::create_guild_channel, routes::get_channel,
        routes::update_channel, routes::delete_channel, routes::put_overwrite,
        routes::delete_overwrite, routes::list_dms, routes::open_dm, routes::add_recipient,
        routes::remove_recipient, routes::list_folders, routes::create_folder,
        routes::update_folder, routes::delete_folder, routes::put_folder_item,
        routes::remove_folder_item
    ),
    components(schemas(
        dto::CreateChannel, dto::GuildChannelKind, dto::UpdateChannel, dto::PutOverwrite, dto::OpenChannel, dto::OpenDm, dto::OpenGroup,
        events::ChannelRecipient, dto::CreateFolder, dto::UpdateFolder, dto::PutFolderItem,
        folders::Folder, folders::FolderItem, folders::ItemKind, folders::FoldersUpdate
    )),
    tags(
        (name = "channels", description = "Guild channels and permission overwrites, DMs and group DMs"),
        (name = "folders", description = "Your own grouping of guilds, DMs and group DMs")
    )
)]
pub struct ChannelsApi;
