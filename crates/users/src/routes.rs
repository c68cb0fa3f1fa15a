//! Handlers of the users API.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use synctalk_db::Pool;
use synctalk_kernel::error::FieldErrors;
use synctalk_kernel::http::resource;
use synctalk_kernel::{AppError, AppResult, AuthUser, ErrorResponse, PageQuery, UserId};
use utoipa::IntoParams;

use crate::domain::{self, Problem};
use crate::dto::{CurrentUser, UpdateCurrentUser, User};
use crate::model::UserChanges;
use crate::relationships::{
    self, FriendRequest, Relationship, RelationshipType, RelationshipUpdate,
};
use crate::repo;
use diesel_async::AsyncConnection;
use synctalk_gateway::{Domain, Outgoing, Topic};

use crate::presence::Presences;

/// Settings of the users routes.
#[derive(Debug, Clone, Default)]
pub struct UsersConfig;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/users/@me/relationships", "GET, POST")
            .route(web::get().to(list_relationships))
            .route(web::post().to(send_friend_request)),
    )
    .service(
        resource("/users/@me/relationships/{user_id}", "PUT, DELETE")
            .route(web::put().to(update_relationship))
            .route(web::delete().to(delete_relationship)),
    )
    .service(
        resource("/users/@me", "GET, PATCH, DELETE")
            .route(web::get().to(get_me))
            .route(web::patch().to(update_me))
            .route(web::delete().to(delete_me)),
    )
    .service(resource("/users/{user_id}", "GET").route(web::get().to(get_user)))
    .service(resource("/users", "GET").route(web::get().to(search_users)));
}

/// Get yourself
///
/// Your own profile, with your email.
#[utoipa::path(
    get, path = "/api/v1/users/@me", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Your profile", body = CurrentUser),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn get_me(
    auth: AuthUser,
    pool: web::Data<Pool>,
) -> AppResult<web::Json<CurrentUser>> {
    let mut conn = synctalk_db::conn(&pool).await?;
    let user = repo::find(&mut conn, auth.user_id)
        .await?
        .ok_or_else(|| AppError::not_found("user"))?;
    Ok(web::Json(user.into()))
}

/// Update your profile
///
/// Updates your profile: display name, avatar, bio, custom status. A field left out
/// stays as it is; `null` clears it.
#[utoipa::path(
    patch, path = "/api/v1/users/@me", tag = "users",
    security(("bearer" = [])),
    request_body = UpdateCurrentUser,
    responses(
        (status = 200, description = "The updated profile", body = CurrentUser),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 422, description = "Invalid fields", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn update_me(
    auth: AuthUser,
    pool: web::Data<Pool>,
    body: synctalk_kernel::http::Json<UpdateCurrentUser>,
) -> AppResult<web::Json<CurrentUser>> {
    let changes = parse_changes(body.into_inner()?)?;
    let mut conn = synctalk_db::conn(&pool).await?;
    // Two round trips: BEGIN with the UPDATE, the events' append with COMMIT.
    let user = synctalk_gateway::event::transaction(&mut conn, async |conn| {
        let user = repo::update(conn, auth.user_id, changes)
            .await?
            .ok_or_else(|| AppError::not_found("user"))?;
        // You get your own profile (with email); whoever listens to your profile
        // (your friends) gets the public one.
        let me = CurrentUser::from(user.clone());
        let public = User::from(user);
        let rows = vec![
            Outgoing::event(Topic::User(auth.user_id), &me)?,
            Outgoing::event(Topic::Profile(auth.user_id), &public)?,
        ];
        Ok::<_, AppError>((me, rows))
    })
    .await?;
    Ok(web::Json(user))
}

fn parse_changes(body: UpdateCurrentUser) -> AppResult<UserChanges> {
    let mut fields = FieldErrors::new();
    let mut field =
        |name: &str, value: Option<Option<String>>, parse: fn(&str) -> Result<String, Problem>| {
            match value {
                None => None,
                Some(None) => Some(None),
                Some(Some(text)) => match parse(&text) {
                    // An empty optional text clears it, like null.
                    Ok(parsed) if parsed.is_empty() => Some(None),
                    Ok(parsed) => Some(Some(parsed)),
                    Err(problem) => {
                        fields.entry(name.to_owned()).or_default().push(problem);
                        None
                    }
                },
            }
        };
    let changes = UserChanges {
        display_name: field(
            "display_name",
            body.display_name,
            domain::parse_display_name,
        ),
        avatar_url: field("avatar_url", body.avatar_url, domain::parse_avatar_url),
        bio: field("bio", body.bio, domain::parse_bio),
        status_text: field("status_text", body.status_text, domain::parse_status_text),
        updated_at: Some(chrono::Utc::now()),
    };
    if !fields.is_empty() {
        return Err(AppError::validation(fields));
    }
    Ok(changes)
}

/// Delete your account
///
/// Deletes your account (soft): you vanish from every read, your sessions stop working
/// at once, and your username and email become free.
#[utoipa::path(
    delete, path = "/api/v1/users/@me", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn delete_me(auth: AuthUser, pool: web::Data<Pool>) -> AppResult<HttpResponse> {
    let mut conn = synctalk_db::conn(&pool).await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        if !repo::soft_delete(conn, auth.user_id).await? {
            return Err(AppError::not_found("user"));
        }
        // Every socket of every session of the account closes, on every node.
        let revoke = Outgoing::revoke(Domain::Users, Topic::User(auth.user_id), "account deleted")?;
        // (Setting `deleted_at` tells every node's session cache, by a trigger.)
        synctalk_gateway::event::append(conn, &[revoke]).await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Get a user
///
/// A user's public profile (no email). A deleted or unknown user is 404.
#[utoipa::path(
    get, path = "/api/v1/users/{user_id}", tag = "users",
    security(("bearer" = [])),
    params(("user_id" = UserId, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such user (or deleted)", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn get_user(
    _auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<UserId>,
) -> AppResult<web::Json<User>> {
    let mut conn = synctalk_db::conn(&pool).await?;
    let user = repo::find(&mut conn, path.into_inner())
        .await?
        .ok_or_else(|| AppError::not_found("user"))?;
    Ok(web::Json(user.into()))
}

/// The search term of `GET /users`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchQuery {
    /// Username prefix (any case), at most 32 characters; empty or absent lists
    /// everyone.
    #[param(max_length = 32, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    query: Option<String>,
}

/// Search users
///
/// Lists users, optionally those whose username starts with `query`, in id (creation)
/// order; page with `after` (or `before`) the last id you got.
#[utoipa::path(
    get, path = "/api/v1/users", tag = "users",
    security(("bearer" = [])),
    params(SearchQuery, PageQuery),
    responses(
        (status = 200, description = "Matching users", body = Vec<User>),
        (status = 400, description = "Bad query (limit out of 1-100, malformed id)", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn search_users(
    _auth: AuthUser,
    pool: web::Data<Pool>,
    search: web::Query<SearchQuery>,
    page: web::Query<PageQuery>,
) -> AppResult<web::Json<Vec<User>>> {
    let page = page.parse()?;
    let prefix =
        domain::parse_search_prefix(search.query.as_deref().unwrap_or("")).map_err(|problem| {
            AppError::new(
                synctalk_kernel::ErrorCode::InvalidQuery,
                format!("query {problem}"),
            )
        })?;
    let mut conn = synctalk_db::conn(&pool).await?;
    let users = repo::search(&mut conn, &prefix, page).await?;
    Ok(web::Json(users.into_iter().map(User::from).collect()))
}

/// List your relationships
///
/// Your relationships: friends, requests both ways, and whom you blocked.
#[utoipa::path(
    get, path = "/api/v1/users/@me/relationships", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Your relationships", body = Vec<Relationship>),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn list_relationships(
    auth: AuthUser,
    pool: web::Data<Pool>,
) -> AppResult<web::Json<Vec<Relationship>>> {
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        relationships::list(&mut conn, auth.user_id).await?,
    ))
}

/// Send a friend request
///
/// Sends a friend request by username; if they already asked you, you become friends.
/// Both of you get RELATIONSHIP_ADD.
#[utoipa::path(
    post, path = "/api/v1/users/@me/relationships", tag = "users",
    security(("bearer" = [])),
    request_body = FriendRequest,
    responses(
        (status = 204, description = "Request sent (or accepted)"),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 403, description = "`blocked`: this user has blocked you", body = ErrorResponse),
        (status = 404, description = "No such user", body = ErrorResponse),
        (status = 409, description = "`conflict`: already friends, already requested, you blocked them, or the name is yours", body = ErrorResponse),
        (status = 422, description = "`username` holds control characters or is over 254 characters", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn send_friend_request(
    auth: AuthUser,
    pool: web::Data<Pool>,
    presences: web::Data<Presences>,
    body: synctalk_kernel::http::Json<FriendRequest>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner()?;
    let other = relationships::request(&pool, auth.user_id, &body.username).await?;
    announce_presences(&pool, &presences, auth.user_id, other).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Accept or block
///
/// Accepts this user's friend request (empty body, `{}` or `{"type": "friend"}`), or
/// blocks them (`{"type": "blocked"}`): a blocked user cannot send you requests or
/// DMs and does not see your presence.
#[utoipa::path(
    put, path = "/api/v1/users/@me/relationships/{user_id}", tag = "users",
    security(("bearer" = [])),
    params(("user_id" = UserId, Path, description = "The other user")),
    request_body(content = Option<RelationshipUpdate>, description = "Optional: an empty body or `null` is `{\"type\": \"friend\"}`"),
    responses(
        (status = 204, description = "Accepted or blocked"),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such user, or no request from them to accept", body = ErrorResponse),
        (status = 422, description = "`type` is not friend or blocked", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn update_relationship(
    auth: AuthUser,
    pool: web::Data<Pool>,
    presences: web::Data<Presences>,
    path: web::Path<UserId>,
    body: web::Bytes,
) -> AppResult<HttpResponse> {
    let update: RelationshipUpdate = if body.iter().all(u8::is_ascii_whitespace) {
        RelationshipUpdate::default()
    } else {
        serde_json::from_slice::<Option<RelationshipUpdate>>(&body)
            .map_err(|e| {
                if e.is_data() {
                    AppError::field("type", "must be friend or blocked")
                } else {
                    AppError::new(
                        synctalk_kernel::ErrorCode::InvalidJson,
                        format!("invalid JSON body: {e}"),
                    )
                }
            })?
            .unwrap_or_default()
    };
    let kind = update
        .kind
        .map_or(RelationshipType::Friend, RelationshipType::from);
    let other = path.into_inner();
    relationships::update(&pool, auth.user_id, other, kind).await?;
    announce_presences(&pool, &presences, auth.user_id, other).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Remove a relationship
///
/// Declines their request, cancels yours, unfriends or unblocks. Both of you get
/// RELATIONSHIP_REMOVE.
#[utoipa::path(
    delete, path = "/api/v1/users/@me/relationships/{user_id}", tag = "users",
    security(("bearer" = [])),
    params(("user_id" = UserId, Path, description = "The other user")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No relationship with this user", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn delete_relationship(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<UserId>,
) -> AppResult<HttpResponse> {
    relationships::delete(&pool, auth.user_id, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// New friends learn each other's presence at once (it is ephemeral, so it is sent
/// now rather than written to the outbox).
async fn announce_presences(
    pool: &Pool,
    presences: &Presences,
    a: UserId,
    b: UserId,
) -> AppResult<()> {
    if !relationships::are_friends(pool, a, b).await? {
        return Ok(());
    }
    let mut conn = synctalk_db::conn(pool).await?;
    let known = crate::presence::of(&mut conn, &[a, b]).await?;
    drop(conn);
    for presence in known {
        let to = if presence.user_id == a { b } else { a };
        presences
            .announce(presence.user_id, presence.status, vec![Topic::User(to)])
            .await;
    }
    Ok(())
}
