//! Messaging: messages in every channel kind (guild text and voice channels, DMs and
//! group DMs) the same way, keyed by (channel, id); replies, mentions, reactions and
//! pins; every
//! change with its event on the channel's topic. Who may read or write where is
//! decided by `synctalk_channels::access`.

pub mod attachments;
pub mod batch;
pub mod dto;
pub mod events;
pub mod gateway;
pub mod mentions;
pub mod model;
pub mod pins;
pub mod reactions;
pub mod read;
pub mod read_states;
pub mod receipts;
mod routes;
pub mod search;
pub mod service;
pub mod tail;
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
        routes::search_channel, routes::search_guild, routes::upload_attachment,
        routes::get_attachment, routes::list_receipts,
        routes::put_notification_setting
    ),
    components(schemas(
        dto::Message, dto::ReplySummary, dto::Reaction, dto::SendMessage, dto::EditMessage,
        dto::SendMessageCommand, events::MessageDelete, events::ReactionChange,
        events::ChannelPinsUpdate, typing::TypingStart, gateway::TypingCommand,
        gateway::AckCommand, read_states::ReadState, attachments::Attachment,
        attachments::UploadForm, receipts::Receipt, receipts::MessageReceipt,
        search::Has
    )),
    tags((name = "messaging", description = "Messages in guild channels, DMs and group DMs")),
    modifiers(&ContentOrFiles)
)]
pub struct MessagingApi;

/// A message has content or at least one file: said in the schemas of a send, so a
/// client (or a fuzzer) generating from them sends nothing the server refuses.
struct ContentOrFiles;

impl utoipa::Modify for ContentOrFiles {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{
            AllOfBuilder, AnyOfBuilder, ArrayBuilder, KnownFormat, ObjectBuilder, Schema,
            SchemaFormat, Type,
        };
        let Some(components) = doc.components.as_mut() else {
            return;
        };
        for name in ["SendMessage", "SendMessageCommand"] {
            let Some(original) = components.schemas.remove(name) else {
                continue;
            };
            let content = ObjectBuilder::new().required("content").property(
                "content",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1)),
            );
            let files = ObjectBuilder::new().required("attachment_ids").property(
                "attachment_ids",
                ArrayBuilder::new()
                    .items(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
                    )
                    .min_items(Some(1)),
            );
            let either = AnyOfBuilder::new().item(content).item(files);
            let whole = AllOfBuilder::new()
                .item(original)
                .item(either)
                .description(Some(
                    "Content, files (`attachment_ids`), or both: a message is never empty.",
                ));
            components
                .schemas
                .insert(name.to_owned(), RefOr::T(Schema::AllOf(whole.build())));
        }
    }
}
