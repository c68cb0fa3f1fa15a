//! Handlers of the messaging API.

use actix_web::{HttpResponse, web};
use synctalk_db::Pool;
use synctalk_kernel::error::{FieldErrors, fields_checked, gather};
use synctalk_kernel::http::{Json, resource};
use synctalk_kernel::{
    AppError, AppResult, AuthUser, ChannelId, ErrorResponse, GuildId, MessageId,
};

use synctalk_kernel::PageQuery;
use synctalk_users::dto::User;

use crate::dto::{EditMessage, Message, MessageQuery, SendMessage};
use crate::read_states::ReadState;
use crate::search::{self, SearchQuery};
use crate::service::{self, NewMessage, parse_content, parse_nonce};
use crate::tail::Tails;
use crate::typing::Typing;
use crate::{attachments, pins, reactions};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/channels/{channel_id}/messages/search", "GET")
            .route(web::get().to(search_channel)),
    )
    .service(
        resource("/guilds/{guild_id}/messages/search", "GET").route(web::get().to(search_guild)),
    )
    .service(
        resource("/channels/{channel_id}/messages", "GET, POST")
            .route(web::get().to(list_messages))
            .route(web::post().to(send_message)),
    )
    .service(
        resource(
            "/channels/{channel_id}/messages/{message_id}",
            "GET, PATCH, DELETE",
        )
        .route(web::get().to(get_message))
        .route(web::patch().to(edit_message))
        .route(web::delete().to(delete_message)),
    )
    .service(
        resource(
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
            "PUT, DELETE",
        )
        .route(web::put().to(add_reaction))
        .route(web::delete().to(remove_reaction)),
    )
    .service(
        resource(
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}",
            "GET",
        )
        .route(web::get().to(list_reactions)),
    )
    .service(resource("/channels/{channel_id}/pins", "GET").route(web::get().to(list_pins)))
    .service(resource("/channels/{channel_id}/typing", "POST").route(web::post().to(typing)))
    .service(
        resource("/channels/{channel_id}/messages/{message_id}/ack", "POST")
            .route(web::post().to(ack)),
    )
    .service(resource("/users/@me/read-states", "GET").route(web::get().to(read_states)))
    .service(
        resource(
            "/channels/{channel_id}/messages/{message_id}/receipts",
            "GET",
        )
        .route(web::get().to(list_receipts)),
    )
    .service(
        resource(
            "/users/@me/notification-settings/{target_id}",
            "PUT, DELETE",
        )
        .route(web::put().to(put_notification_setting))
        .route(web::delete().to(synctalk_notifications::delete_setting)),
    )
    .service(resource("/attachments", "POST").route(web::post().to(upload_attachment)))
    .service(
        resource("/attachments/{attachment_id}/{filename}", "GET, HEAD")
            .route(web::get().to(get_attachment))
            .route(web::head().to(get_attachment)),
    )
    .service(
        resource("/channels/{channel_id}/pins/{message_id}", "PUT, DELETE")
            .route(web::put().to(pin))
            .route(web::delete().to(unpin)),
    );
}

/// Checks a send's fields (422 with every problem at once): content may be empty
/// only when files are attached; at most 10 distinct files.
pub(crate) fn checked(body: SendMessage) -> AppResult<NewMessage> {
    let mut fields = FieldErrors::new();
    let mut attachment_ids = body.attachment_ids;
    attachment_ids.sort_unstable();
    attachment_ids.dedup();
    if attachment_ids.len() > attachments::MAX_PER_MESSAGE {
        fields
            .entry("attachment_ids".into())
            .or_default()
            .push(format!(
                "at most {} files per message",
                attachments::MAX_PER_MESSAGE
            ));
    }
    let content = if body.content.is_empty() && !attachment_ids.is_empty() {
        Some(String::new())
    } else {
        gather(&mut fields, "content", parse_content(&body.content))
    };
    let nonce = body
        .nonce
        .as_deref()
        .and_then(|n| gather(&mut fields, "nonce", parse_nonce(n)));
    fields_checked(fields)?;
    Ok(NewMessage {
        content: content.unwrap_or_default(),
        reply_to: body.reply_to,
        nonce,
        attachment_ids,
    })
}

/// List messages
///
/// A channel's messages, newest first whatever the cursor: the latest, or the newest
/// `before` an id, the oldest `after` one, or half and half `around` one (cursors
/// combine as bounds). Deleted messages never appear. Needs READ_MESSAGE_HISTORY in
/// the channel.
#[utoipa::path(
    get, path = "/api/v1/channels/{channel_id}/messages", tag = "messaging",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel"), MessageQuery),
    responses(
        (status = 200, description = "Messages, newest first", body = Vec<Message>),
        (status = 400, description = "Bad query (a limit out of range, a malformed id)", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`: no READ_MESSAGE_HISTORY", body = ErrorResponse),
        (status = 404, description = "No such channel, or you cannot see it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn list_messages(
    auth: AuthUser,
    pool: web::Data<Pool>,
    tails: web::Data<Tails>,
    path: web::Path<ChannelId>,
    query: web::Query<MessageQuery>,
) -> AppResult<HttpResponse> {
    let page = query.parse()?;
    let mut conn = synctalk_db::conn(&pool).await?;
    let body = service::list(&mut conn, &tails, auth.user_id, path.into_inner(), page).await?;
    Ok(HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(body))
}

/// Send a message
///
/// Needs SEND_MESSAGES (in a 1:1 DM: neither of you has blocked the other). Mentions
/// `<@user_id>`, `<@&role_id>` and `@everyone` (the last only with MENTION_EVERYONE)
/// are parsed and kept. Everyone who can read the channel gets MESSAGE_CREATE on
/// `/gateway/messaging`. With a `nonce` you sent before in this channel, nothing is
/// made: 200 with that first message.
#[utoipa::path(
    post, path = "/api/v1/channels/{channel_id}/messages", tag = "messaging",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel")),
    request_body = SendMessage,
    responses(
        (status = 201, description = "The new message", body = Message),
        (status = 200, description = "A retry: the message first sent with this nonce", body = Message),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`, or `blocked` in a 1:1 DM", body = ErrorResponse),
        (status = 404, description = "No such channel (or you cannot see it), no such message to reply to, or no such attachment", body = ErrorResponse),
        (status = 409, description = "`conflict`: a category holds no messages", body = ErrorResponse),
        (status = 422, description = "Invalid fields", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
        (status = 503, description = "`service_unavailable`: the database did not answer, or stopped answering while the send was committing (it may have been made): retry with the same `nonce`", body = ErrorResponse),
    )
)]
pub(crate) async fn send_message(
    auth: AuthUser,
    pool: web::Data<Pool>,
    typing: web::Data<Typing>,
    path: web::Path<ChannelId>,
    body: Json<SendMessage>,
) -> AppResult<HttpResponse> {
    let new = checked(body.into_inner()?)?;
    let channel = path.into_inner();
    let (message, made) = crate::batch::send(&pool, auth.user_id, channel, new).await?;
    typing.stopped(auth.user_id, channel);
    Ok(if made {
        HttpResponse::Created().json(message)
    } else {
        HttpResponse::Ok().json(message)
    })
}

/// Get a message
///
/// Needs READ_MESSAGE_HISTORY in the channel. A deleted message is 404.
#[utoipa::path(
    get, path = "/api/v1/channels/{channel_id}/messages/{message_id}", tag = "messaging",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel"), ("message_id" = MessageId, Path, description = "The message")),
    responses(
        (status = 200, description = "The message", body = Message),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`: no READ_MESSAGE_HISTORY", body = ErrorResponse),
        (status = 404, description = "No such channel or message, or you cannot see it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn get_message(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(ChannelId, MessageId)>,
) -> AppResult<web::Json<Message>> {
    let (channel, id) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        service::get(&mut conn, auth.user_id, channel, id).await?,
    ))
}

/// Edit a message
///
/// Its author only; sets `edited_at` and parses mentions again. The channel's readers
/// get MESSAGE_UPDATE.
#[utoipa::path(
    patch, path = "/api/v1/channels/{channel_id}/messages/{message_id}", tag = "messaging",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel"), ("message_id" = MessageId, Path, description = "The message")),
    request_body = EditMessage,
    responses(
        (status = 200, description = "The message, edited", body = Message),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`forbidden`: not your message; `missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such channel or message, or you cannot see it", body = ErrorResponse),
        (status = 422, description = "Invalid fields", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn edit_message(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(ChannelId, MessageId)>,
    body: Json<EditMessage>,
) -> AppResult<web::Json<Message>> {
    let body = body.into_inner()?;
    let content = parse_content(&body.content).map_err(|p| AppError::field("content", p))?;
    let (channel, id) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        service::edit(&mut conn, auth.user_id, channel, id, content).await?,
    ))
}

/// Delete a message
///
/// Its author, or in a guild channel anyone with MANAGE_MESSAGES there. The message
/// is gone from every read (replies to it show it as deleted); the channel's readers
/// get MESSAGE_DELETE.
#[utoipa::path(
    delete, path = "/api/v1/channels/{channel_id}/messages/{message_id}", tag = "messaging",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel"), ("message_id" = MessageId, Path, description = "The message")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`: someone else's message without MANAGE_MESSAGES", body = ErrorResponse),
        (status = 404, description = "No such channel or message, or you cannot see it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn delete_message(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(ChannelId, MessageId)>,
) -> AppResult<HttpResponse> {
    let (channel, id) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    service::delete(&mut conn, auth.user_id, channel, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// React to a message
///
/// Adds your reaction with a Unicode emoji (URL-encoded in the path; an unknown emoji is
/// 404). Needs READ_MESSAGE_HISTORY, and ADD_REACTIONS when nobody has reacted with that
/// emoji yet. Idempotent; a new reaction reaches the channel's readers as
/// MESSAGE_REACTION_ADD.
#[utoipa::path(
    put, path = "/api/v1/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", tag = "messaging",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel"), ("message_id" = MessageId, Path, description = "The message"), ("emoji" = String, Path, description = "A Unicode emoji, URL-encoded", example = "👍")),
    responses(
        (status = 204, description = "You reacted"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such channel, message or emoji, or you cannot see it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn add_reaction(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(ChannelId, MessageId, String)>,
) -> AppResult<HttpResponse> {
    let (channel, message, emoji) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    reactions::add(&mut conn, auth.user_id, channel, message, &emoji).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Take your reaction back
///
/// Idempotent; a reaction taken back reaches the channel's readers as
/// MESSAGE_REACTION_REMOVE.
#[utoipa::path(
    delete, path = "/api/v1/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", tag = "messaging",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel"), ("message_id" = MessageId, Path, description = "The message"), ("emoji" = String, Path, description = "A Unicode emoji, URL-encoded", example = "👍")),
    responses(
        (status = 204, description = "Your reaction is gone"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such channel, message or emoji, or you cannot see it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn remove_reaction(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(ChannelId, MessageId, String)>,
) -> AppResult<HttpResponse> {
    let (channel, message, emoji) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    reactions::remove(&mut conn, auth.user_id, channel, message, &emoji).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Who reacted
///
/// The users who reacted with an emoji, in id order; page with `after` (and `before`).
#[utoipa::path(
    get, path = "/api/v1/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", tag = "messaging",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel"), ("message_id" = MessageId, Path, description = "The message"), ("emoji" = String, Path, description = "A Unicode emoji, URL-encoded", example = "👍"), PageQuery),
    responses(
        (status = 200, description = "Users", body = Vec<User>),
        (status = 400, description = "Bad query", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such channel, message or emoji, or you cannot see it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn list_reactions(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(ChannelId, MessageId, String)>,
    page: web::Query<PageQuery>,
) -> AppResult<web::Json<Vec<User>>> {
    let page = page.parse()?;
    let (channel, message, emoji) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        reactions::users_of(&mut conn, auth.user_id, channel, message, &emoji, page).await?,
    ))
}

/// List pinned messages
///
/// At most 50, the latest pinned first. Needs READ_MESSAGE_HISTORY.
#[utoipa::path(
    get, path = "/api/v1/channels/{channel_id}/pins", tag = "messaging",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel")),
    responses(
        (status = 200, description = "Pinned messages", body = Vec<Message>),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such channel, or you cannot see it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn list_pins(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<ChannelId>,
) -> AppResult<web::Json<Vec<Message>>> {
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        pins::list(&mut conn, auth.user_id, path.into_inner()).await?,
    ))
}

/// Pin a message
///
/// MANAGE_MESSAGES in a guild channel; any member of a DM or group DM. At most 50 per
/// channel (409 `conflict`). Idempotent. Readers get MESSAGE_UPDATE and
/// CHANNEL_PINS_UPDATE.
#[utoipa::path(
    put, path = "/api/v1/channels/{channel_id}/pins/{message_id}", tag = "messaging",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel"), ("message_id" = MessageId, Path, description = "The message")),
    responses(
        (status = 204, description = "Pinned"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such channel or message, or you cannot see it", body = ErrorResponse),
        (status = 409, description = "`conflict`: 50 pins already", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn pin(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(ChannelId, MessageId)>,
) -> AppResult<HttpResponse> {
    let (channel, message) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    pins::set(&mut conn, auth.user_id, channel, message, true).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Unpin a message
///
/// As pinning. Idempotent.
#[utoipa::path(
    delete, path = "/api/v1/channels/{channel_id}/pins/{message_id}", tag = "messaging",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel"), ("message_id" = MessageId, Path, description = "The message")),
    responses(
        (status = 204, description = "Not pinned"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such channel or message, or you cannot see it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn unpin(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(ChannelId, MessageId)>,
) -> AppResult<HttpResponse> {
    let (channel, message) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    pins::set(&mut conn, auth.user_id, channel, message, false).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Say you are typing
///
/// Needs SEND_MESSAGES. The channel's other readers get TYPING_START (ephemeral) on
/// `/gateway/messaging`, which holds 8 s: send this again every few seconds while you
/// type (the gateway's TYPING command does the same). Sending a message ends it.
#[utoipa::path(
    post, path = "/api/v1/channels/{channel_id}/typing", tag = "messaging",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel")),
    responses(
        (status = 204, description = "Announced (or renewed)"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such channel, or you cannot see it", body = ErrorResponse),
        (status = 409, description = "`conflict`: a category holds no messages", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn typing(
    auth: AuthUser,
    typing: web::Data<Typing>,
    path: web::Path<ChannelId>,
) -> AppResult<HttpResponse> {
    typing.start(auth.user_id, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Mark read up to a message
///
/// Your read state of the channel moves to this message (an older one marks what
/// follows unread again). Needs READ_MESSAGE_HISTORY. Your sessions get MESSAGE_ACK on
/// `/gateway/messaging` (the gateway's ACK command does the same).
#[utoipa::path(
    post, path = "/api/v1/channels/{channel_id}/messages/{message_id}/ack", tag = "messaging",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel"), ("message_id" = MessageId, Path, description = "The last message read")),
    responses(
        (status = 200, description = "Your read state of the channel now", body = ReadState),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such channel or message, or you cannot see it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn ack(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(ChannelId, MessageId)>,
) -> AppResult<web::Json<ReadState>> {
    let (channel, message) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        crate::read_states::ack(&mut conn, auth.user_id, channel, message).await?,
    ))
}

/// Your read states
///
/// For every channel you can read: the last message you acked, and the exact number
/// of unread messages and of those mentioning you (by name, role or `@everyone`).
#[utoipa::path(
    get, path = "/api/v1/users/@me/read-states", tag = "messaging",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Read states", body = Vec<ReadState>),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn read_states(
    auth: AuthUser,
    pool: web::Data<Pool>,
) -> AppResult<web::Json<Vec<ReadState>>> {
    let mut conn = synctalk_db::conn(&pool).await?;
    let channels = crate::read_states::readable(&mut conn, auth.user_id).await?;
    Ok(web::Json(
        crate::read_states::of(&mut conn, auth.user_id, &channels).await?,
    ))
}

/// Search a channel
///
/// Messages of the channel whose text matches `q` (PostgreSQL full text, `simple`
/// configuration: all words must appear; `"a phrase"`, `or` and `-word` work), newest
/// first; page with `before`. Needs READ_MESSAGE_HISTORY.
#[utoipa::path(
    get, path = "/api/v1/channels/{channel_id}/messages/search", tag = "messaging",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel"), SearchQuery),
    responses(
        (status = 200, description = "Matching messages, newest first", body = Vec<Message>),
        (status = 400, description = "Bad query (`q` empty or too long, a limit out of range)", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such channel, or you cannot see it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn search_channel(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<ChannelId>,
    query: web::Query<SearchQuery>,
) -> AppResult<web::Json<Vec<Message>>> {
    let search = query.parse()?;
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        search::in_channel(&mut conn, auth.user_id, path.into_inner(), &search).await?,
    ))
}

/// Search a guild
///
/// As searching a channel, across every channel of the guild you can read (the others
/// are never searched).
#[utoipa::path(
    get, path = "/api/v1/guilds/{guild_id}/messages/search", tag = "messaging",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild"), SearchQuery),
    responses(
        (status = 200, description = "Matching messages, newest first", body = Vec<Message>),
        (status = 400, description = "Bad query (`q` empty or too long, a limit out of range)", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such guild, or you are not in it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn search_guild(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<GuildId>,
    query: web::Query<SearchQuery>,
) -> AppResult<web::Json<Vec<Message>>> {
    let search = query.parse()?;
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        search::in_guild(&mut conn, auth.user_id, path.into_inner(), &search).await?,
    ))
}

/// Upload a file
///
/// `multipart/form-data` with one part `file` (at most 25 MiB by default) and, for
/// audio and video, an optional `duration_ms`. The server decides the content type from
/// the bytes (executables are refused) and keeps the file name without directories.
/// Send it within 23 hours by naming its id in a message's `attachment_ids`; an upload
/// never sent is deleted after a day.
#[utoipa::path(
    post, path = "/api/v1/attachments", tag = "messaging",
    security(("bearer" = [])),
    request_body(content = attachments::UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored: send it with a message", body = attachments::Attachment),
        (status = 400, description = "`invalid_body`: not well-formed multipart", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 413, description = "The file is over the upload limit", body = ErrorResponse),
        (status = 415, description = "Not `multipart/form-data`, or an executable", body = ErrorResponse),
        (status = 422, description = "No `file` part, an empty file, an unknown part, or a bad `duration_ms`", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn upload_attachment(
    auth: AuthUser,
    pool: web::Data<Pool>,
    store: web::Data<attachments::Store>,
    request: actix_web::HttpRequest,
    mut form: actix_multipart::Multipart,
) -> AppResult<HttpResponse> {
    // A body announced as over the limit (with room for the form around the file) is
    // refused before a byte of it is read.
    let announced = request
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > store.max_bytes().saturating_add(64 * 1024)) {
        return Err(AppError::new(
            synctalk_kernel::ErrorCode::PayloadTooLarge,
            format!("the file is larger than {} bytes", store.max_bytes()),
        ));
    }
    let attachment = attachments::upload(&pool, &store, auth.user_id, &mut form).await?;
    Ok(HttpResponse::Created().json(attachment))
}

/// Download a file
///
/// Through the signed `url` an upload or a message payload gives (no Authorization
/// header needed): 404 once it expired, for a wrong signature, or when its message
/// was deleted. Pictures, sound, video and plain text show in place; other files
/// download. One byte range (`Range: bytes=...`) is honoured with 206. `HEAD` answers
/// the same headers without the bytes.
#[utoipa::path(
    get, path = "/api/v1/attachments/{attachment_id}/{filename}", tag = "messaging",
    params(
        ("attachment_id" = uuid::Uuid, Path, description = "The attachment"),
        ("filename" = String, Path, description = "Its file name (any: only for the browser)"),
        attachments::Signed,
    ),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304, description = "Not modified (`If-None-Match`)"),
        (status = 400, description = "A malformed `ex`", body = ErrorResponse),
        (status = 404, description = "No such file, a bad or expired signature, or its message is deleted", body = ErrorResponse),
        (status = 416, description = "A range outside the file"),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn get_attachment(
    pool: web::Data<Pool>,
    store: web::Data<attachments::Store>,
    request: actix_web::HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<attachments::Signed>,
) -> AppResult<HttpResponse> {
    let Ok(id) = path.0.parse::<uuid::Uuid>() else {
        return Err(AppError::not_found("attachment"));
    };
    attachments::serve(&pool, &store, &request, id, &query).await
}

/// List a message's receipts
///
/// In a DM or group DM: every other member's `{user_id, delivered_at, read_at}`
/// (delivered: first queued to one of their sockets; read: they acked it or a later
/// message). A guild channel keeps none: the list is empty. Needs
/// READ_MESSAGE_HISTORY.
#[utoipa::path(
    get, path = "/api/v1/channels/{channel_id}/messages/{message_id}/receipts", tag = "messaging",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel"), ("message_id" = MessageId, Path, description = "The message")),
    responses(
        (status = 200, description = "Receipts, by user id", body = Vec<crate::receipts::Receipt>),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`: no READ_MESSAGE_HISTORY", body = ErrorResponse),
        (status = 404, description = "No such channel or message, or you cannot see it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn list_receipts(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(ChannelId, MessageId)>,
) -> AppResult<web::Json<Vec<crate::receipts::Receipt>>> {
    let (channel, message) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        crate::receipts::list(&mut conn, auth.user_id, channel, message).await?,
    ))
}

/// Set a notification setting
///
/// For a guild you are in, or a channel you can see (a DM or group DM of yours, a
/// channel of one of your guilds you can view): `level` all, mentions or nothing, and
/// `muted_until`. A channel's setting wins over its guild's.
#[utoipa::path(
    put, path = "/api/v1/users/@me/notification-settings/{target_id}", tag = "notifications",
    security(("bearer" = [])),
    params(("target_id" = uuid::Uuid, Path, description = "A channel or guild id")),
    request_body = synctalk_notifications::settings::PutSetting,
    responses(
        (status = 200, description = "The setting", body = synctalk_notifications::settings::Setting),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such guild of yours or channel you can see", body = ErrorResponse),
        (status = 422, description = "Invalid fields", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn put_notification_setting(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<uuid::Uuid>,
    body: Json<synctalk_notifications::settings::PutSetting>,
) -> AppResult<web::Json<synctalk_notifications::settings::Setting>> {
    use synctalk_notifications::settings::{self, TargetKind};
    let new = body.into_inner()?;
    let target = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    let not_found = |e: &AppError| e.code() == synctalk_kernel::ErrorCode::NotFound;
    let kind = match synctalk_guilds::access::load(
        &conn,
        GuildId(target),
        auth.user_id,
        synctalk_guilds::access::Lock::No,
    )
    .await
    {
        Ok(_) => TargetKind::Guild,
        Err(e) if not_found(&e) => {
            match synctalk_channels::access::load(&conn, ChannelId(target), auth.user_id, false)
                .await
            {
                Ok(_) => TargetKind::Channel,
                Err(e) if not_found(&e) => {
                    return Err(AppError::not_found("guild or channel"));
                }
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    Ok(web::Json(
        settings::put(&mut conn, auth.user_id, target, kind, new).await?,
    ))
}
