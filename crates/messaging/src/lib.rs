//! Messaging: messages in every channel kind (guild text and voice channels, DMs and
//! group DMs) the same way, keyed by (channel, id); replies, mentions, reactions and
//! pins; every
//! change with its event on the channel's topic. Who may read or write where is
//! decided by `synctalk_channels::access`.

pub mod dto;
pub mod events;
pub mod gateway;
pub mod mentions;
pub mod model;
pub mod pins;
pub mod reactions;
pub mod read;
pub mod read_states;
mod routes;
pub mod search;
pub mod service;
pub mod typing;

use actix_web::web;
use utoipa::OpenApi;

/// Mounts the messaging routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg);
}

/// The messaging crate's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        routes::list_messages, routes::send_message, routes::get_message,
        routes::edit_message, routes::delete_message, routes::add_reaction,
        routes::remove_reaction, routes::list_reactions, routes::list_pins, routes::pin,
        routes::unpin, routes::typing, routes::ack, routes::read_states,
        routes::search_channel, routes::search_guild
    ),
    components(schemas(
        dto::Message, dto::ReplySummary, dto::Reaction, dto::SendMessage, dto::EditMessage,
        dto::SendMessageCommand, events::MessageDelete, events::ReactionChange,
        events::ChannelPinsUpdate, typing::TypingStart, gateway::TypingCommand,
        gateway::AckCommand, read_states::ReadState
    )),
    tags((name = "messaging", description = "Messages in guild channels, DMs and group DMs"))
)]
pub struct MessagingApi;
