//! Handlers of the channels API.

use actix_web::{HttpResponse, web};
use synctalk_db::Pool;
use synctalk_guilds::access::{self as guild_access, Lock};
use synctalk_guilds::dto::{Channel, ChannelKind, PermissionOverwrite};
use synctalk_guilds::permissions::Permissions;
use synctalk_guilds::visibility;
use synctalk_kernel::error::{FieldErrors, fields_checked, gather};
use synctalk_kernel::http::{Json, resource};
use synctalk_kernel::{
    AppError, AppResult, AuthUser, ChannelId, ErrorCode, ErrorResponse, GuildId, UserId,
};
use synctalk_users::domain::{parse_name, parse_text};

use crate::dto::{
    CreateChannel, CreateFolder, OpenChannel, OpenDm, OpenGroup, PutFolderItem, PutOverwrite,
    UpdateChannel, UpdateFolder,
};
use crate::folders::{self, Folder};
use crate::guild_channels::{self, ChannelChanges, NewChannel, OverwriteForm};
use crate::{access, dms};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/guilds/{guild_id}/channels", "GET, POST")
            .route(web::get().to(list_guild_channels))
            .route(web::post().to(create_guild_channel)),
    )
    .service(
        resource("/users/@me/channels", "GET, POST")
            .route(web::get().to(list_dms))
            .route(web::post().to(open_dm)),
    )
    .service(
        resource("/channels/{channel_id}", "GET, PATCH, DELETE")
            .route(web::get().to(get_channel))
            .route(web::patch().to(update_channel))
            .route(web::delete().to(delete_channel)),
    )
    .service(
        resource(
            "/channels/{channel_id}/permissions/{target_id}",
            "PUT, DELETE",
        )
        .route(web::put().to(put_overwrite))
        .route(web::delete().to(delete_overwrite)),
    )
    .service(
        resource("/channels/{channel_id}/recipients/{user_id}", "PUT, DELETE")
            .route(web::put().to(add_recipient))
            .route(web::delete().to(remove_recipient)),
    )
    .service(
        resource("/users/@me/folders", "GET, POST")
            .route(web::get().to(list_folders))
            .route(web::post().to(create_folder)),
    )
    .service(
        resource("/users/@me/folders/{folder_id}", "PATCH, DELETE")
            .route(web::patch().to(update_folder))
            .route(web::delete().to(delete_folder)),
    )
    .service(
        resource(
            "/users/@me/folders/{folder_id}/items/{item_id}",
            "PUT, DELETE",
        )
        .route(web::put().to(put_folder_item))
        .route(web::delete().to(remove_folder_item)),
    );
}

fn folder_position(value: Option<i64>) -> AppResult<Option<i32>> {
    value
        .map(|p| {
            i32::try_from(p)
                .ok()
                .filter(|p| (0..=1000).contains(p))
                .ok_or_else(|| AppError::field("position", "must be 0 to 1000"))
        })
        .transpose()
}

/// List your folders
///
/// Your folders, in order, each with the guilds, DMs and group DMs it holds.
#[utoipa::path(
    get, path = "/api/v1/users/@me/folders", tag = "folders",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Your folders", body = Vec<Folder>),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn list_folders(
    auth: AuthUser,
    pool: web::Data<Pool>,
) -> AppResult<web::Json<Vec<Folder>>> {
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(folders::list(&mut conn, auth.user_id).await?))
}

/// Make a folder
///
/// At most 100. Your sockets get FOLDER_UPDATE (on `/gateway/users`).
#[utoipa::path(
    post, path = "/api/v1/users/@me/folders", tag = "folders",
    security(("bearer" = [])),
    request_body = CreateFolder,
    responses(
        (status = 201, description = "The new folder", body = Folder),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 409, description = "`conflict`: 100 folders already", body = ErrorResponse),
        (status = 422, description = "Invalid fields", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn create_folder(
    auth: AuthUser,
    pool: web::Data<Pool>,
    body: Json<CreateFolder>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner()?;
    let name = parse_name(&body.name, 100).map_err(|p| AppError::field("name", p))?;
    let position = folder_position(body.position)?;
    let mut conn = synctalk_db::conn(&pool).await?;
    let folder = folders::create(&mut conn, auth.user_id, name, position).await?;
    Ok(HttpResponse::Created().json(folder))
}

/// Rename or move a folder
///
/// Your sockets get FOLDER_UPDATE.
#[utoipa::path(
    patch, path = "/api/v1/users/@me/folders/{folder_id}", tag = "folders",
    security(("bearer" = [])),
    params(("folder_id" = uuid::Uuid, Path, description = "Your folder")),
    request_body = UpdateFolder,
    responses(
        (status = 200, description = "The folder", body = Folder),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such folder of yours", body = ErrorResponse),
        (status = 422, description = "Invalid fields", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn update_folder(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<uuid::Uuid>,
    body: Json<UpdateFolder>,
) -> AppResult<web::Json<Folder>> {
    let body = body.into_inner()?;
    let name = body
        .name
        .map(|n| parse_name(&n, 100).map_err(|p| AppError::field("name", p)))
        .transpose()?;
    let position = folder_position(body.position)?;
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        folders::update(&mut conn, auth.user_id, path.into_inner(), name, position).await?,
    ))
}

/// Delete a folder
///
/// What it held is simply in no folder. Your sockets get FOLDER_UPDATE.
#[utoipa::path(
    delete, path = "/api/v1/users/@me/folders/{folder_id}", tag = "folders",
    security(("bearer" = [])),
    params(("folder_id" = uuid::Uuid, Path, description = "Your folder")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such folder of yours", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn delete_folder(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<uuid::Uuid>,
) -> AppResult<HttpResponse> {
    let mut conn = synctalk_db::conn(&pool).await?;
    folders::delete(&mut conn, auth.user_id, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Put a guild or DM in a folder
///
/// A guild you are in, or a DM or group DM you are in (anything else is 404), moved
/// out of any other folder of yours. At most 200 per folder. Your sockets get
/// FOLDER_UPDATE.
#[utoipa::path(
    put, path = "/api/v1/users/@me/folders/{folder_id}/items/{item_id}", tag = "folders",
    security(("bearer" = [])),
    params(("folder_id" = uuid::Uuid, Path, description = "Your folder"), ("item_id" = uuid::Uuid, Path, description = "A guild's or channel's id")),
    request_body(content = Option<PutFolderItem>, description = "Optional: the position"),
    responses(
        (status = 200, description = "The folder", body = Folder),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such folder of yours, or no such guild or channel of yours", body = ErrorResponse),
        (status = 409, description = "`conflict`: the folder is full", body = ErrorResponse),
        (status = 422, description = "Invalid `position`", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn put_folder_item(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(uuid::Uuid, uuid::Uuid)>,
    body: web::Bytes,
) -> AppResult<web::Json<Folder>> {
    let form: PutFolderItem = synctalk_kernel::http::optional_json(&body)?;
    let position = folder_position(form.position)?;
    let (folder, item) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        folders::put_item(&mut conn, auth.user_id, folder, item, position).await?,
    ))
}

/// Take a guild or DM out of a folder
///
/// It is then in no folder. Your sockets get FOLDER_UPDATE.
#[utoipa::path(
    delete, path = "/api/v1/users/@me/folders/{folder_id}/items/{item_id}", tag = "folders",
    security(("bearer" = [])),
    params(("folder_id" = uuid::Uuid, Path, description = "Your folder"), ("item_id" = uuid::Uuid, Path, description = "A guild's or channel's id")),
    responses(
        (status = 204, description = "Taken out"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such folder of yours, or the item is not in it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn remove_folder_item(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(uuid::Uuid, uuid::Uuid)>,
) -> AppResult<HttpResponse> {
    let (folder, item) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    folders::remove_item(&mut conn, auth.user_id, folder, item).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn position(value: i64) -> Result<i32, String> {
    i32::try_from(value)
        .ok()
        .filter(|p| (0..=10_000).contains(p))
        .ok_or_else(|| "must be 0 to 10000".to_owned())
}

fn topic(value: &str) -> Result<Option<String>, String> {
    parse_text(value, 1024).map(|t| Some(t).filter(|t| !t.is_empty()))
}

/// List a guild's channels
///
/// The channels of the guild you can see, by position.
#[utoipa::path(
    get, path = "/api/v1/guilds/{guild_id}/channels", tag = "channels",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild")),
    responses(
        (status = 200, description = "The channels you can see", body = Vec<Channel>),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such guild, or you are not in it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn list_guild_channels(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<GuildId>,
) -> AppResult<web::Json<Vec<Channel>>> {
    let conn = synctalk_db::conn(&pool).await?;
    let access = guild_access::load(&conn, path.into_inner(), auth.user_id, Lock::No).await?;
    let structure = visibility::structure(&conn, &access.guild).await?;
    let channels = structure
        .visible(auth.user_id, &access.member_roles)
        .into_iter()
        .filter_map(|row| structure.channel(row.id))
        .collect();
    Ok(web::Json(channels))
}

/// Create a guild channel
///
/// MANAGE_CHANNELS. A `text` (default), `voice` or `category` channel, last in its
/// category unless `position` says otherwise. Those who can see it get CHANNEL_CREATE.
#[utoipa::path(
    post, path = "/api/v1/guilds/{guild_id}/channels", tag = "channels",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild")),
    request_body = CreateChannel,
    responses(
        (status = 201, description = "The new channel", body = Channel),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such guild, or you are not in it", body = ErrorResponse),
        (status = 404, description = "No such guild, or you are not in it; or `parent_id` is no category of it", body = ErrorResponse),
        (status = 409, description = "`conflict`: a category in a category", body = ErrorResponse),
        (status = 422, description = "Invalid fields", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn create_guild_channel(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<GuildId>,
    body: Json<CreateChannel>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner()?;
    let mut fields = FieldErrors::new();
    let name = gather(&mut fields, "name", parse_name(&body.name, 100));
    let kind = body.kind.map_or(ChannelKind::Text, ChannelKind::from);
    let topic = match body.topic.as_deref() {
        Some(text) => gather(&mut fields, "topic", topic(text)),
        None => Some(None),
    };
    let position = body
        .position
        .and_then(|p| gather(&mut fields, "position", position(p)));
    fields_checked(fields)?;
    let (Some(name), Some(topic)) = (name, topic) else {
        return Err(AppError::field("name", "is invalid"));
    };
    let new = NewChannel {
        name,
        kind,
        parent_id: body.parent_id,
        topic,
        position,
    };
    let mut conn = synctalk_db::conn(&pool).await?;
    let channel = guild_channels::create(&mut conn, path.into_inner(), auth.user_id, new).await?;
    Ok(HttpResponse::Created().json(channel))
}

/// Get a channel
///
/// A guild channel you can see, or a DM or group DM you are in; anything else is 404.
#[utoipa::path(
    get, path = "/api/v1/channels/{channel_id}", tag = "channels",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel")),
    responses(
        (status = 200, description = "The channel", body = Channel),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such channel, or you cannot see it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn get_channel(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<ChannelId>,
) -> AppResult<web::Json<Channel>> {
    let mut conn = synctalk_db::conn(&pool).await?;
    let access = access::load(&conn, path.into_inner(), auth.user_id, false).await?;
    let channel = match &access.guild {
        Some(guild) => visibility::structure(&conn, &guild.guild)
            .await?
            .channel(access.row.id)
            .ok_or_else(|| AppError::not_found("channel"))?,
        None => dms::channel(&mut conn, access.row).await?,
    };
    Ok(web::Json(channel))
}

/// Update a channel
///
/// A guild channel (MANAGE_CHANNELS in it): `name`, `topic` (text channels),
/// `position`, `parent_id`; its viewers get CHANNEL_UPDATE. A group DM (any member):
/// `name` only. A 1:1 DM has nothing to change (409).
#[utoipa::path(
    patch, path = "/api/v1/channels/{channel_id}", tag = "channels",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel")),
    request_body = UpdateChannel,
    responses(
        (status = 200, description = "The updated channel", body = Channel),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such channel, or you cannot see it", body = ErrorResponse),
        (status = 409, description = "`conflict`: a 1:1 DM", body = ErrorResponse),
        (status = 422, description = "Invalid fields", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn update_channel(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<ChannelId>,
    body: Json<UpdateChannel>,
) -> AppResult<web::Json<Channel>> {
    let body = body.into_inner()?;
    let channel = path.into_inner();
    let mut fields = FieldErrors::new();
    let name = match body.name {
        None => None,
        Some(None) => Some(None),
        Some(Some(name)) => gather(&mut fields, "name", parse_name(&name, 100)).map(Some),
    };
    let topic = match body.topic {
        None => None,
        Some(None) => Some(None),
        Some(Some(text)) => gather(&mut fields, "topic", topic(&text)),
    };
    let position = body
        .position
        .and_then(|p| gather(&mut fields, "position", position(p)));
    fields_checked(fields)?;
    let mut conn = synctalk_db::conn(&pool).await?;
    let peek = access::load(&conn, channel, auth.user_id, false).await?;
    let updated = match peek.kind {
        ChannelKind::Dm => {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "a 1:1 DM has nothing to change",
            ));
        }
        ChannelKind::GroupDm => {
            if topic.is_some() || position.is_some() || body.parent_id.is_some() {
                return Err(AppError::new(
                    ErrorCode::Conflict,
                    "a group DM has only its name to change",
                ));
            }
            match name {
                Some(name) => dms::rename(&mut conn, channel, auth.user_id, name).await?,
                None => dms::channel(&mut conn, peek.row).await?,
            }
        }
        _ => {
            let name = match name {
                Some(None) => {
                    return Err(AppError::new(
                        ErrorCode::Conflict,
                        "a guild channel keeps a name (only a group DM's can be null)",
                    ));
                }
                Some(Some(name)) => Some(name),
                None => None,
            };
            let changes = ChannelChanges {
                name,
                topic,
                position,
                parent_id: body.parent_id,
            };
            guild_channels::update(&mut conn, channel, auth.user_id, changes).await?
        }
    };
    Ok(web::Json(updated))
}

/// Delete or leave a channel
///
/// A guild channel: deletes it (soft; MANAGE_CHANNELS in it); its viewers get
/// CHANNEL_DELETE, and a category's channels move out of it. A group DM: you leave it.
/// A 1:1 DM cannot be deleted (409).
#[utoipa::path(
    delete, path = "/api/v1/channels/{channel_id}", tag = "channels",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "The channel")),
    responses(
        (status = 204, description = "Deleted, or left"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such channel, or you cannot see it", body = ErrorResponse),
        (status = 409, description = "`conflict`: a 1:1 DM, or you are the last member of the group DM", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn delete_channel(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<ChannelId>,
) -> AppResult<HttpResponse> {
    let channel = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    let peek = access::load(&conn, channel, auth.user_id, false).await?;
    match peek.kind {
        ChannelKind::Dm => {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "a 1:1 DM cannot be deleted",
            ));
        }
        ChannelKind::GroupDm => dms::remove(&mut conn, channel, auth.user_id, auth.user_id).await?,
        _ => guild_channels::delete(&mut conn, channel, auth.user_id).await?,
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Set a permission overwrite
///
/// MANAGE_ROLES in the channel; only permissions you have there can be allowed or
/// denied. `target_id` is a role's id (the guild's for `@everyone`) or a member's.
/// Members who gain or lose sight of the channel get CHANNEL_CREATE or CHANNEL_DELETE
/// at once; its viewers get CHANNEL_UPDATE.
#[utoipa::path(
    put, path = "/api/v1/channels/{channel_id}/permissions/{target_id}", tag = "channels",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "A guild channel"), ("target_id" = uuid::Uuid, Path, description = "A role or member")),
    request_body = PutOverwrite,
    responses(
        (status = 200, description = "The overwrite", body = PermissionOverwrite),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such channel, role or member, or you cannot see the channel", body = ErrorResponse),
        (status = 409, description = "`conflict`: not a guild channel", body = ErrorResponse),
        (status = 422, description = "Invalid fields", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn put_overwrite(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(ChannelId, uuid::Uuid)>,
    body: Json<PutOverwrite>,
) -> AppResult<web::Json<PermissionOverwrite>> {
    let body = body.into_inner()?;
    let (channel, target) = path.into_inner();
    let form = OverwriteForm {
        kind: body.kind,
        allow: body.allow.unwrap_or(Permissions::NONE),
        deny: body.deny.unwrap_or(Permissions::NONE),
    };
    let mut conn = synctalk_db::conn(&pool).await?;
    let overwrite =
        guild_channels::overwrite(&mut conn, channel, auth.user_id, target, Some(form)).await?;
    overwrite
        .map(web::Json)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("the overwrite is gone")))
}

/// Remove a permission overwrite
///
/// MANAGE_ROLES in the channel, and only an overwrite whose permissions you have
/// there. Those who gain or lose sight of the channel get CHANNEL_CREATE or
/// CHANNEL_DELETE at once.
#[utoipa::path(
    delete, path = "/api/v1/channels/{channel_id}/permissions/{target_id}", tag = "channels",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "A guild channel"), ("target_id" = uuid::Uuid, Path, description = "A role or member")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such channel or overwrite, or you cannot see the channel", body = ErrorResponse),
        (status = 409, description = "`conflict`: not a guild channel", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn delete_overwrite(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(ChannelId, uuid::Uuid)>,
) -> AppResult<HttpResponse> {
    let (channel, target) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    guild_channels::overwrite(&mut conn, channel, auth.user_id, target, None).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List your DMs
///
/// Your DMs and group DMs, newest first, each with its recipients.
#[utoipa::path(
    get, path = "/api/v1/users/@me/channels", tag = "channels",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Your DMs and group DMs", body = Vec<Channel>),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn list_dms(
    auth: AuthUser,
    pool: web::Data<Pool>,
) -> AppResult<web::Json<Vec<Channel>>> {
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(dms::list(&mut conn, auth.user_id).await?))
}

/// Open a DM or make a group DM
///
/// `{recipient_id}`: the 1:1 DM with that user, 201 the first time and 200 with the
/// same channel afterwards (403 `blocked` if they blocked you). `{recipient_ids, name}`:
/// a new group DM of you and 1-9 others (409 `group_full` beyond 10). Every member's
/// sockets get CHANNEL_CREATE.
#[utoipa::path(
    post, path = "/api/v1/users/@me/channels", tag = "channels",
    security(("bearer" = [])),
    request_body = OpenChannel,
    responses(
        (status = 200, description = "The existing 1:1 DM", body = Channel),
        (status = 201, description = "The new DM or group DM", body = Channel),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`blocked`", body = ErrorResponse),
        (status = 404, description = "No such user", body = ErrorResponse),
        (status = 409, description = "`group_full`", body = ErrorResponse),
        (status = 422, description = "Neither or both of `recipient_id` and `recipient_ids`, an unknown field, or an invalid name", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn open_dm(
    auth: AuthUser,
    pool: web::Data<Pool>,
    body: Json<OpenChannel>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner()?;
    let mut conn = synctalk_db::conn(&pool).await?;
    match body {
        OpenChannel::Dm(OpenDm { recipient_id }) => {
            let (channel, made) = dms::open(&mut conn, auth.user_id, recipient_id).await?;
            Ok(if made {
                HttpResponse::Created().json(channel)
            } else {
                HttpResponse::Ok().json(channel)
            })
        }
        OpenChannel::Group(OpenGroup {
            recipient_ids,
            name,
        }) => {
            let name = match name.as_deref() {
                Some(name) => Some(parse_name(name, 100).map_err(|p| AppError::field("name", p))?),
                None => None,
            };
            let group = dms::create_group(&mut conn, auth.user_id, recipient_ids, name).await?;
            Ok(HttpResponse::Created().json(group))
        }
    }
}

/// Add a member to a group DM
///
/// Any member may add someone who has not blocked them; at most 10 members (409
/// `group_full`). Adding a member again changes nothing. The new member's sockets get
/// CHANNEL_CREATE; the others CHANNEL_RECIPIENT_ADD.
#[utoipa::path(
    put, path = "/api/v1/channels/{channel_id}/recipients/{user_id}", tag = "channels",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "A group DM"), ("user_id" = UserId, Path, description = "The user")),
    responses(
        (status = 204, description = "A member"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`blocked`", body = ErrorResponse),
        (status = 404, description = "No such channel or user, or you are not in it", body = ErrorResponse),
        (status = 409, description = "`group_full`, or `conflict`: not a group DM", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn add_recipient(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(ChannelId, UserId)>,
) -> AppResult<HttpResponse> {
    let (channel, user) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    dms::add(&mut conn, channel, auth.user_id, user).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Remove a member from a group DM
///
/// Yourself (leaving), or anyone if you own the group. The last member cannot be
/// removed (409). The removed member's sockets get CHANNEL_DELETE, the last of it.
#[utoipa::path(
    delete, path = "/api/v1/channels/{channel_id}/recipients/{user_id}", tag = "channels",
    security(("bearer" = [])),
    params(("channel_id" = ChannelId, Path, description = "A group DM"), ("user_id" = UserId, Path, description = "The member")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`: only the owner removes others", body = ErrorResponse),
        (status = 404, description = "No such channel or member, or you are not in it", body = ErrorResponse),
        (status = 409, description = "`conflict`: the last member, or not a group DM", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn remove_recipient(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(ChannelId, UserId)>,
) -> AppResult<HttpResponse> {
    let (channel, user) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    dms::remove(&mut conn, channel, auth.user_id, user).await?;
    Ok(HttpResponse::NoContent().finish())
}
