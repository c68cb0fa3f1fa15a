//! Handlers of the guilds API: parse at the edge, then one call into `service` or
//! `read` behind `access`.

use actix_web::{HttpRequest, HttpResponse, web};
use synctalk_db::Pool;
use synctalk_kernel::error::{FieldErrors, fields_checked, gather};
use synctalk_kernel::http::{Json, resource};
use synctalk_kernel::{
    AppError, AppResult, AuthUser, ErrorResponse, GuildId, PageQuery, RoleId, UserId,
};
use synctalk_users::domain::{parse_avatar_url, parse_name, parse_text};

use crate::access::{self, Lock};
use crate::dto::{
    AuditEntry, Ban, CreateBan, CreateGuild, CreateInvite, CreateRole, Guild, Invite, Member, Role,
    UpdateGuild, UpdateMember, UpdateRole,
};
use crate::permissions::Permissions;
use crate::{read, service};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/guilds", "POST").route(web::post().to(create_guild)))
        .service(resource("/users/@me/guilds", "GET").route(web::get().to(my_guilds)))
        .service(
            resource("/users/@me/guilds/{guild_id}", "DELETE").route(web::delete().to(leave_guild)),
        )
        .service(
            resource("/guilds/{guild_id}", "GET, PATCH, DELETE")
                .route(web::get().to(get_guild))
                .route(web::patch().to(update_guild))
                .route(web::delete().to(delete_guild)),
        )
        .service(resource("/guilds/{guild_id}/members", "GET").route(web::get().to(list_members)))
        .service(
            resource("/guilds/{guild_id}/members/{user_id}", "GET, PATCH, DELETE")
                .route(web::get().to(get_member))
                .route(web::patch().to(update_member))
                .route(web::delete().to(kick_member)),
        )
        .service(
            resource(
                "/guilds/{guild_id}/members/{user_id}/roles/{role_id}",
                "PUT, DELETE",
            )
            .route(web::put().to(add_member_role))
            .route(web::delete().to(remove_member_role)),
        )
        .service(
            resource("/guilds/{guild_id}/roles", "GET, POST")
                .route(web::get().to(list_roles))
                .route(web::post().to(create_role)),
        )
        .service(
            resource("/guilds/{guild_id}/roles/{role_id}", "PATCH, DELETE")
                .route(web::patch().to(update_role))
                .route(web::delete().to(delete_role)),
        )
        .service(resource("/guilds/{guild_id}/bans", "GET").route(web::get().to(list_bans)))
        .service(
            resource("/guilds/{guild_id}/bans/{user_id}", "PUT, DELETE")
                .route(web::put().to(ban_member))
                .route(web::delete().to(unban_member)),
        )
        .service(
            resource("/guilds/{guild_id}/invites", "GET, POST")
                .route(web::get().to(list_invites))
                .route(web::post().to(create_invite)),
        )
        .service(
            resource("/invites/{code}", "GET, POST, DELETE")
                .route(web::get().to(get_invite))
                .route(web::post().to(join_guild))
                .route(web::delete().to(delete_invite)),
        )
        .service(resource("/guilds/{guild_id}/audit-log", "GET").route(web::get().to(audit_log)));
}

/// The optional `X-Audit-Log-Reason` header: up to 512 characters of UTF-8.
fn audit_reason(req: &HttpRequest) -> AppResult<Option<String>> {
    let Some(value) = req.headers().get("x-audit-log-reason") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(value.as_bytes())
        .map_err(|_| AppError::field("X-Audit-Log-Reason", "must be UTF-8"))?;
    let reason =
        parse_text(text, 512).map_err(|problem| AppError::field("X-Audit-Log-Reason", problem))?;
    Ok(Some(reason).filter(|r| !r.is_empty()))
}

fn color(value: i64) -> Result<i32, String> {
    i32::try_from(value)
        .ok()
        .filter(|c| (0..=0xFF_FFFF).contains(c))
        .ok_or_else(|| "must be an RGB color, 0 to 16777215".to_owned())
}

/// Create a guild
///
/// You become its owner. It comes with an `@everyone` role and a `general` text
/// channel; your sockets get GUILD_CREATE.
#[utoipa::path(
    post, path = "/api/v1/guilds", tag = "guilds",
    security(("bearer" = [])),
    request_body = CreateGuild,
    responses(
        (status = 201, description = "The new guild", body = Guild),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 422, description = "Invalid `name` or `icon_url`", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn create_guild(
    auth: AuthUser,
    pool: web::Data<Pool>,
    body: Json<CreateGuild>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner()?;
    let mut fields = FieldErrors::new();
    let name = gather(&mut fields, "name", parse_name(&body.name, 100));
    let icon_url = match body.icon_url.as_deref() {
        Some(url) => gather(&mut fields, "icon_url", parse_avatar_url(url)).map(Some),
        None => Some(None),
    };
    fields_checked(fields)?;
    let (Some(name), Some(icon_url)) = (name, icon_url) else {
        return Err(AppError::field("name", "is invalid"));
    };
    let mut conn = synctalk_db::conn(&pool).await?;
    let guild = service::create(
        &mut conn,
        auth.user_id,
        service::NewGuild { name, icon_url },
    )
    .await?;
    Ok(HttpResponse::Created().json(guild))
}

/// List your guilds
///
/// The guilds you are a member of, in id (creation) order; page with `after`.
#[utoipa::path(
    get, path = "/api/v1/users/@me/guilds", tag = "guilds",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "Your guilds", body = Vec<Guild>),
        (status = 400, description = "Bad query", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn my_guilds(
    auth: AuthUser,
    pool: web::Data<Pool>,
    page: web::Query<PageQuery>,
) -> AppResult<web::Json<Vec<Guild>>> {
    let page = page.parse()?;
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        read::guilds_of(&mut conn, auth.user_id, page).await?,
    ))
}

/// Leave a guild
///
/// You stop being a member: your sockets get GUILD_DELETE and nothing more of it. The
/// owner must transfer ownership or delete the guild first (409).
#[utoipa::path(
    delete, path = "/api/v1/users/@me/guilds/{guild_id}", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild")),
    responses(
        (status = 204, description = "Left"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such guild, or you are not in it", body = ErrorResponse),
        (status = 409, description = "`conflict`: you own it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn leave_guild(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<GuildId>,
) -> AppResult<HttpResponse> {
    let mut conn = synctalk_db::conn(&pool).await?;
    service::leave(&mut conn, path.into_inner(), auth.user_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Get a guild
///
/// A guild you are a member of; any other is 404.
#[utoipa::path(
    get, path = "/api/v1/guilds/{guild_id}", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild")),
    responses(
        (status = 200, description = "The guild", body = Guild),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such guild, or you are not in it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn get_guild(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<GuildId>,
) -> AppResult<web::Json<Guild>> {
    let conn = synctalk_db::conn(&pool).await?;
    let access = access::load(&conn, path.into_inner(), auth.user_id, Lock::No).await?;
    Ok(web::Json(Guild::from(access.guild)))
}

/// Update a guild
///
/// Name and icon need MANAGE_GUILD; `owner_id` hands the guild to another member and
/// only the owner may. Members get GUILD_UPDATE; the audit log records it.
#[utoipa::path(
    patch, path = "/api/v1/guilds/{guild_id}", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild")),
    request_body = UpdateGuild,
    responses(
        (status = 200, description = "The updated guild", body = Guild),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such guild, or you are not in it; or `owner_id` is no member", body = ErrorResponse),
        (status = 422, description = "Invalid fields", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn update_guild(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<GuildId>,
    body: Json<UpdateGuild>,
) -> AppResult<web::Json<Guild>> {
    let body = body.into_inner()?;
    let mut fields = FieldErrors::new();
    let name = body
        .name
        .as_deref()
        .and_then(|n| gather(&mut fields, "name", parse_name(n, 100)));
    let icon_url = match body.icon_url {
        None => None,
        Some(None) => Some(None),
        Some(Some(url)) => gather(&mut fields, "icon_url", parse_avatar_url(&url)).map(Some),
    };
    fields_checked(fields)?;
    let changes = service::GuildChanges {
        name,
        icon_url,
        owner_id: body.owner_id,
    };
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        service::update(&mut conn, path.into_inner(), auth.user_id, changes).await?,
    ))
}

/// Delete a guild
///
/// Owner only (others get 403). Soft: it vanishes from every read; every member gets
/// GUILD_DELETE.
#[utoipa::path(
    delete, path = "/api/v1/guilds/{guild_id}", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`: you are not the owner", body = ErrorResponse),
        (status = 404, description = "No such guild, or you are not in it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn delete_guild(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<GuildId>,
) -> AppResult<HttpResponse> {
    let mut conn = synctalk_db::conn(&pool).await?;
    service::delete(&mut conn, path.into_inner(), auth.user_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List members
///
/// Members in user-id order; page with `after` (the last user id you got).
#[utoipa::path(
    get, path = "/api/v1/guilds/{guild_id}/members", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild"), PageQuery),
    responses(
        (status = 200, description = "A page of members", body = Vec<Member>),
        (status = 400, description = "Bad query", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such guild, or you are not in it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn list_members(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<GuildId>,
    page: web::Query<PageQuery>,
) -> AppResult<web::Json<Vec<Member>>> {
    let page = page.parse()?;
    let guild = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    access::load(&conn, guild, auth.user_id, Lock::No).await?;
    Ok(web::Json(read::members_page(&mut conn, guild, page).await?))
}

/// Get a member
///
/// One member of a guild you are in, with their nickname and roles.
#[utoipa::path(
    get, path = "/api/v1/guilds/{guild_id}/members/{user_id}", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild"), ("user_id" = UserId, Path, description = "The member")),
    responses(
        (status = 200, description = "The member", body = Member),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such guild or member, or you are not in it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn get_member(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(GuildId, UserId)>,
) -> AppResult<web::Json<Member>> {
    let (guild, user) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    access::load(&conn, guild, auth.user_id, Lock::No).await?;
    let member = read::member(&mut conn, guild, user)
        .await?
        .ok_or_else(|| AppError::not_found("member"))?;
    Ok(web::Json(member))
}

/// Update a member
///
/// `nick`: yours with CHANGE_NICKNAME, others' with MANAGE_NICKNAMES (below your
/// highest role). `role_ids`: the member's whole set of roles, with MANAGE_ROLES; each
/// role added or removed must be below your highest. Members get GUILD_MEMBER_UPDATE;
/// the member's sockets gain or lose the channels their roles now show or hide.
#[utoipa::path(
    patch, path = "/api/v1/guilds/{guild_id}/members/{user_id}", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild"), ("user_id" = UserId, Path, description = "The member")),
    request_body = UpdateMember,
    responses(
        (status = 200, description = "The updated member", body = Member),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such guild or member, or you are not in it", body = ErrorResponse),
        (status = 409, description = "`conflict`: `role_ids` holds `@everyone`", body = ErrorResponse),
        (status = 422, description = "Invalid `nick` or `role_ids`", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn update_member(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(GuildId, UserId)>,
    body: Json<UpdateMember>,
) -> AppResult<web::Json<Member>> {
    let body = body.into_inner()?;
    let (guild, user) = path.into_inner();
    let mut fields = FieldErrors::new();
    let nick = match body.nick {
        None => None,
        Some(None) => Some(None),
        Some(Some(nick)) => gather(&mut fields, "nick", parse_name(&nick, 32)).map(Some),
    };
    if body.role_ids.as_ref().is_some_and(|r| r.len() > 250) {
        fields
            .entry("role_ids".into())
            .or_default()
            .push("must hold at most 250 roles".into());
    }
    fields_checked(fields)?;
    let changes = service::MemberChanges {
        nick,
        role_ids: body.role_ids,
    };
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        service::update_member(&mut conn, guild, auth.user_id, user, changes).await?,
    ))
}

/// Kick a member
///
/// KICK_MEMBERS, and your highest role above theirs (the owner cannot be kicked). Their
/// sockets get GUILD_DELETE and nothing more of it; members get GUILD_MEMBER_REMOVE.
/// Give a reason in `X-Audit-Log-Reason`.
#[utoipa::path(
    delete, path = "/api/v1/guilds/{guild_id}/members/{user_id}", tag = "guilds",
    security(("bearer" = [])),
    params(
        ("guild_id" = GuildId, Path, description = "The guild"),
        ("user_id" = UserId, Path, description = "The member"),
        ("X-Audit-Log-Reason" = Option<String>, Header, description = "Why, up to 512 characters, for the audit log"),
    ),
    responses(
        (status = 204, description = "Kicked"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such guild or member, or you are not in it", body = ErrorResponse),
        (status = 422, description = "Invalid `X-Audit-Log-Reason`", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn kick_member(
    req: HttpRequest,
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(GuildId, UserId)>,
) -> AppResult<HttpResponse> {
    let reason = audit_reason(&req)?;
    let (guild, user) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    service::kick(&mut conn, guild, auth.user_id, user, reason.as_deref()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Give a member a role
///
/// MANAGE_ROLES, and the role below your highest. Idempotent.
#[utoipa::path(
    put, path = "/api/v1/guilds/{guild_id}/members/{user_id}/roles/{role_id}", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild"), ("user_id" = UserId, Path, description = "The member"), ("role_id" = RoleId, Path, description = "The role")),
    responses(
        (status = 204, description = "The member has the role"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such guild, member or role, or you are not in it", body = ErrorResponse),
        (status = 409, description = "`conflict`: `@everyone` cannot be given", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn add_member_role(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(GuildId, UserId, RoleId)>,
) -> AppResult<HttpResponse> {
    let (guild, user, role) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    service::member_role(&mut conn, guild, auth.user_id, user, role, true).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Take a role from a member
///
/// MANAGE_ROLES, and the role below your highest. Idempotent.
#[utoipa::path(
    delete, path = "/api/v1/guilds/{guild_id}/members/{user_id}/roles/{role_id}", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild"), ("user_id" = UserId, Path, description = "The member"), ("role_id" = RoleId, Path, description = "The role")),
    responses(
        (status = 204, description = "The member does not have the role"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such guild, member or role, or you are not in it", body = ErrorResponse),
        (status = 409, description = "`conflict`: `@everyone` cannot be taken", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn remove_member_role(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(GuildId, UserId, RoleId)>,
) -> AppResult<HttpResponse> {
    let (guild, user, role) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    service::member_role(&mut conn, guild, auth.user_id, user, role, false).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List roles
///
/// Every role, `@everyone` (position 0) first.
#[utoipa::path(
    get, path = "/api/v1/guilds/{guild_id}/roles", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild")),
    responses(
        (status = 200, description = "The roles by position", body = Vec<Role>),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such guild, or you are not in it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn list_roles(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<GuildId>,
) -> AppResult<web::Json<Vec<Role>>> {
    let conn = synctalk_db::conn(&pool).await?;
    let access = access::load(&conn, path.into_inner(), auth.user_id, Lock::No).await?;
    Ok(web::Json(
        access.role_rows.into_iter().map(Role::from).collect(),
    ))
}

fn role_form(
    name: Option<String>,
    color_value: Option<i64>,
    permissions: Option<Permissions>,
    position: Option<i64>,
) -> AppResult<service::RoleChanges> {
    let mut fields = FieldErrors::new();
    let name = name.and_then(|n| gather(&mut fields, "name", parse_name(&n, 100)));
    let color = color_value.and_then(|c| gather(&mut fields, "color", color(c)));
    let position = position.and_then(|p| {
        let parsed = i32::try_from(p)
            .ok()
            .filter(|p| (1..=250).contains(p))
            .ok_or_else(|| "must be 1 to 250".to_owned());
        gather(&mut fields, "position", parsed)
    });
    fields_checked(fields)?;
    Ok(service::RoleChanges {
        name,
        color,
        permissions,
        position,
    })
}

/// Create a role
///
/// MANAGE_ROLES; only permissions you have. It goes just above `@everyone`; members
/// get GUILD_ROLE_CREATE (and GUILD_ROLE_UPDATE for roles that moved up).
#[utoipa::path(
    post, path = "/api/v1/guilds/{guild_id}/roles", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild")),
    request_body = CreateRole,
    responses(
        (status = 201, description = "The new role", body = Role),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such guild, or you are not in it", body = ErrorResponse),
        (status = 422, description = "Invalid fields", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn create_role(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<GuildId>,
    body: Json<CreateRole>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner()?;
    let form = role_form(body.name, body.color, body.permissions, None)?;
    let mut conn = synctalk_db::conn(&pool).await?;
    let role = service::create_role(&mut conn, path.into_inner(), auth.user_id, form).await?;
    Ok(HttpResponse::Created().json(role))
}

/// Update a role
///
/// MANAGE_ROLES and the role below your highest (anyone with MANAGE_ROLES edits
/// `@everyone`'s permissions; its name and position are fixed). Only permissions you
/// have can be added or removed. `position` moves it (below your highest role); the
/// roles in between shift. A permission change gives or takes channels from the
/// members who have it, at once.
#[utoipa::path(
    patch, path = "/api/v1/guilds/{guild_id}/roles/{role_id}", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild"), ("role_id" = RoleId, Path, description = "The role")),
    request_body = UpdateRole,
    responses(
        (status = 200, description = "The updated role", body = Role),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such guild or role, or you are not in it", body = ErrorResponse),
        (status = 409, description = "`conflict`: the name or position of `@everyone`", body = ErrorResponse),
        (status = 422, description = "Invalid fields", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn update_role(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(GuildId, RoleId)>,
    body: Json<UpdateRole>,
) -> AppResult<web::Json<Role>> {
    let body = body.into_inner()?;
    let (guild, role) = path.into_inner();
    let form = role_form(body.name, body.color, body.permissions, body.position)?;
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        service::update_role(&mut conn, guild, auth.user_id, role, form).await?,
    ))
}

/// Delete a role
///
/// MANAGE_ROLES and the role below your highest; not `@everyone` (409).
#[utoipa::path(
    delete, path = "/api/v1/guilds/{guild_id}/roles/{role_id}", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild"), ("role_id" = RoleId, Path, description = "The role")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such guild or role, or you are not in it", body = ErrorResponse),
        (status = 409, description = "`conflict`: `@everyone`", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn delete_role(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(GuildId, RoleId)>,
) -> AppResult<HttpResponse> {
    let (guild, role) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    service::delete_role(&mut conn, guild, auth.user_id, role).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List bans
///
/// BAN_MEMBERS. In user-id order; page with `after`.
#[utoipa::path(
    get, path = "/api/v1/guilds/{guild_id}/bans", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild"), PageQuery),
    responses(
        (status = 200, description = "A page of bans", body = Vec<Ban>),
        (status = 400, description = "Bad query", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such guild, or you are not in it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn list_bans(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<GuildId>,
    page: web::Query<PageQuery>,
) -> AppResult<web::Json<Vec<Ban>>> {
    let page = page.parse()?;
    let guild = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    let access = access::load(&conn, guild, auth.user_id, Lock::No).await?;
    access.require(Permissions::BAN_MEMBERS, "see bans")?;
    Ok(web::Json(read::bans_page(&mut conn, guild, page).await?))
}

/// Ban a user
///
/// BAN_MEMBERS; a member must be below your highest role. A member is removed at once
/// (GUILD_DELETE to them, GUILD_MEMBER_REMOVE and GUILD_BAN_ADD to members) and can
/// no longer join. Banning again only updates the reason. The body is optional.
#[utoipa::path(
    put, path = "/api/v1/guilds/{guild_id}/bans/{user_id}", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild"), ("user_id" = UserId, Path, description = "The user")),
    request_body(content = Option<CreateBan>, description = "Optional: the reason"),
    responses(
        (status = 204, description = "Banned"),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such guild or user, or you are not in the guild", body = ErrorResponse),
        (status = 422, description = "Invalid `reason`", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn ban_member(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(GuildId, UserId)>,
    body: web::Bytes,
) -> AppResult<HttpResponse> {
    let form: CreateBan = synctalk_kernel::http::optional_json(&body)?;
    let reason = match form.reason {
        Some(text) => Some(parse_text(&text, 512).map_err(|p| AppError::field("reason", p))?)
            .filter(|r| !r.is_empty()),
        None => None,
    };
    let (guild, user) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    service::ban(&mut conn, guild, auth.user_id, user, reason).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Lift a ban
///
/// BAN_MEMBERS. Members get GUILD_BAN_REMOVE.
#[utoipa::path(
    delete, path = "/api/v1/guilds/{guild_id}/bans/{user_id}", tag = "guilds",
    security(("bearer" = [])),
    params(
        ("guild_id" = GuildId, Path, description = "The guild"),
        ("user_id" = UserId, Path, description = "The user"),
        ("X-Audit-Log-Reason" = Option<String>, Header, description = "Why, up to 512 characters, for the audit log"),
    ),
    responses(
        (status = 204, description = "Unbanned"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such guild or ban, or you are not in the guild", body = ErrorResponse),
        (status = 422, description = "Invalid `X-Audit-Log-Reason`", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn unban_member(
    req: HttpRequest,
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<(GuildId, UserId)>,
) -> AppResult<HttpResponse> {
    let reason = audit_reason(&req)?;
    let (guild, user) = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    service::unban(&mut conn, guild, auth.user_id, user, reason.as_deref()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List invites
///
/// MANAGE_GUILD. The guild's invites that still work, newest first.
#[utoipa::path(
    get, path = "/api/v1/guilds/{guild_id}/invites", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild")),
    responses(
        (status = 200, description = "The invites", body = Vec<Invite>),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such guild, or you are not in it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn list_invites(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<GuildId>,
) -> AppResult<web::Json<Vec<Invite>>> {
    let guild = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    let access = access::load(&conn, guild, auth.user_id, Lock::No).await?;
    access.require(Permissions::MANAGE_GUILD, "see invites")?;
    let rows = read::invites_of(&mut conn, guild).await?;
    let summary = Guild::from(access.guild);
    let count = read::member_count(&mut conn, guild).await?;
    Ok(web::Json(
        rows.into_iter()
            .filter(|r| r.max_uses == 0 || r.uses < r.max_uses)
            .map(|row| read::invite_of(row, summary.clone(), count))
            .collect(),
    ))
}

/// Create an invite
///
/// CREATE_INVITE. `max_uses` 0-100 (0: unlimited), `max_age_secs` 0-604800 (0: never
/// expires; default 86400).
#[utoipa::path(
    post, path = "/api/v1/guilds/{guild_id}/invites", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild")),
    request_body = CreateInvite,
    responses(
        (status = 201, description = "The invite", body = Invite),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such guild, or you are not in it", body = ErrorResponse),
        (status = 422, description = "Invalid fields", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn create_invite(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<GuildId>,
    body: Json<CreateInvite>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner()?;
    let mut fields = FieldErrors::new();
    let max_uses = gather(
        &mut fields,
        "max_uses",
        i32::try_from(body.max_uses.unwrap_or(0))
            .ok()
            .filter(|n| (0..=100).contains(n))
            .ok_or_else(|| "must be 0 to 100".to_owned()),
    );
    let max_age_secs = gather(
        &mut fields,
        "max_age_secs",
        Some(body.max_age_secs.unwrap_or(86_400))
            .filter(|n| (0..=604_800).contains(n))
            .ok_or_else(|| "must be 0 to 604800".to_owned()),
    );
    fields_checked(fields)?;
    let (Some(max_uses), Some(max_age_secs)) = (max_uses, max_age_secs) else {
        return Err(AppError::field("max_uses", "is invalid"));
    };
    let new = service::NewInvite {
        max_uses,
        max_age_secs,
        target_user_id: body.target_user_id,
    };
    let mut conn = synctalk_db::conn(&pool).await?;
    let invite = service::create_invite(&mut conn, path.into_inner(), auth.user_id, new).await?;
    Ok(HttpResponse::Created().json(invite))
}

fn code(path: web::Path<String>) -> AppResult<String> {
    let code = path.into_inner();
    if code.is_empty()
        || code.len() > 32
        || !code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(AppError::not_found("invite"));
    }
    Ok(code)
}

/// Look at an invite
///
/// Any signed-in user: the guild it joins and how much it has left. Unknown, expired
/// or used up: 404.
#[utoipa::path(
    get, path = "/api/v1/invites/{code}", tag = "guilds",
    security(("bearer" = [])),
    params(("code" = String, Path, description = "The invite code")),
    responses(
        (status = 200, description = "The invite", body = Invite),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such invite (or expired, or used up)", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn get_invite(
    _auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<String>,
) -> AppResult<web::Json<Invite>> {
    let code = code(path)?;
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(service::get_invite(&mut conn, &code).await?))
}

/// Join by invite
///
/// Makes you a member (200 with the guild; again if you already are one). Your
/// sockets get GUILD_CREATE; members get GUILD_MEMBER_ADD. Banned: 403 `banned`.
#[utoipa::path(
    post, path = "/api/v1/invites/{code}", tag = "guilds",
    security(("bearer" = [])),
    params(("code" = String, Path, description = "The invite code")),
    responses(
        (status = 200, description = "The guild you are now in", body = Guild),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`banned`", body = ErrorResponse),
        (status = 404, description = "No such invite (or expired, or used up)", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn join_guild(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<String>,
) -> AppResult<web::Json<Guild>> {
    let code = code(path)?;
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        service::join(&mut conn, &code, auth.user_id).await?,
    ))
}

/// Revoke an invite
///
/// Its maker, or MANAGE_GUILD.
#[utoipa::path(
    delete, path = "/api/v1/invites/{code}", tag = "guilds",
    security(("bearer" = [])),
    params(("code" = String, Path, description = "The invite code")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such invite, or you are not in its guild", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn delete_invite(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let code = code(path)?;
    let mut conn = synctalk_db::conn(&pool).await?;
    service::delete_invite(&mut conn, &code, auth.user_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Read the audit log
///
/// VIEW_AUDIT_LOG. Newest first; page with `before` (the last id you got).
#[utoipa::path(
    get, path = "/api/v1/guilds/{guild_id}/audit-log", tag = "guilds",
    security(("bearer" = [])),
    params(("guild_id" = GuildId, Path, description = "The guild"), PageQuery),
    responses(
        (status = 200, description = "A page of entries", body = Vec<AuditEntry>),
        (status = 400, description = "Bad query", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`missing_permissions`", body = ErrorResponse),
        (status = 404, description = "No such guild, or you are not in it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn audit_log(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<GuildId>,
    page: web::Query<PageQuery>,
) -> AppResult<web::Json<Vec<AuditEntry>>> {
    let page = page.parse()?;
    let guild = path.into_inner();
    let mut conn = synctalk_db::conn(&pool).await?;
    let access = access::load(&conn, guild, auth.user_id, Lock::No).await?;
    access.require(Permissions::VIEW_AUDIT_LOG, "read the audit log")?;
    Ok(web::Json(read::audit_page(&mut conn, guild, page).await?))
}
