//! Handlers of the notifications API.

use actix_web::{HttpResponse, web};
use synctalk_db::Pool;
use synctalk_kernel::error::FieldErrors;
use synctalk_kernel::http::{Json, resource};
use synctalk_kernel::{AppError, AppResult, AuthUser, ErrorCode, ErrorResponse};
use uuid::Uuid;

use crate::PushConfig;
use crate::dto::{Notification, NotificationQuery};
use crate::push::{self, NewSubscription, PushSubscription, VapidKey};
use crate::service;
use crate::settings::{self, Setting};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/notifications", "GET").route(web::get().to(list)))
        .service(resource("/notifications/read-all", "POST").route(web::post().to(read_all)))
        .service(
            resource("/notifications/{notification_id}/read", "POST")
                .route(web::post().to(read_one)),
        )
        .service(
            resource("/notifications/{notification_id}", "DELETE").route(web::delete().to(delete)),
        )
        .service(
            resource("/users/@me/notification-settings", "GET").route(web::get().to(list_settings)),
        )
        .service(resource("/push/vapid-public-key", "GET").route(web::get().to(vapid_key)))
        .service(
            resource("/users/@me/push-subscriptions", "GET, POST")
                .route(web::get().to(list_subscriptions))
                .route(web::post().to(subscribe)),
        )
        .service(
            resource("/users/@me/push-subscriptions/{subscription_id}", "DELETE")
                .route(web::delete().to(unsubscribe)),
        )
        // `/users/@me/notification-settings/{target_id}` (PUT, DELETE) is mounted by the
        // messaging crate: only it knows who can see which channel.
        ;
}

/// List notifications
///
/// Yours, newest first; `unread=true` for unread ones only, `before` (an id) for the
/// next page.
#[utoipa::path(
    get, path = "/api/v1/notifications", tag = "notifications",
    security(("bearer" = [])),
    params(NotificationQuery),
    responses(
        (status = 200, description = "Notifications, newest first", body = Vec<Notification>),
        (status = 400, description = "Bad query (a limit out of range, a malformed id)", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn list(
    auth: AuthUser,
    pool: web::Data<Pool>,
    query: web::Query<NotificationQuery>,
) -> AppResult<web::Json<Vec<Notification>>> {
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        service::list(&mut conn, auth.user_id, &query).await?,
    ))
}

/// Mark a notification read
///
/// Idempotent. Your sessions get NOTIFICATION_UPDATE with the unread count.
#[utoipa::path(
    post, path = "/api/v1/notifications/{notification_id}/read", tag = "notifications",
    security(("bearer" = [])),
    params(("notification_id" = Uuid, Path, description = "The notification")),
    responses(
        (status = 200, description = "The notification, read", body = Notification),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such notification of yours", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn read_one(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<Uuid>,
) -> AppResult<web::Json<Notification>> {
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(
        service::read_one(&mut conn, auth.user_id, path.into_inner()).await?,
    ))
}

/// Mark every notification read
///
/// Your sessions get one NOTIFICATION_UPDATE with `all` (when any was unread).
#[utoipa::path(
    post, path = "/api/v1/notifications/read-all", tag = "notifications",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "All read"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn read_all(auth: AuthUser, pool: web::Data<Pool>) -> AppResult<HttpResponse> {
    let mut conn = synctalk_db::conn(&pool).await?;
    service::read_all(&mut conn, auth.user_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete a notification
///
/// Soft: it is gone from lists and counts. Your sessions get NOTIFICATION_UPDATE.
#[utoipa::path(
    delete, path = "/api/v1/notifications/{notification_id}", tag = "notifications",
    security(("bearer" = [])),
    params(("notification_id" = Uuid, Path, description = "The notification")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such notification of yours (or deleted already)", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn delete(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let mut conn = synctalk_db::conn(&pool).await?;
    service::delete(&mut conn, auth.user_id, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List notification settings
///
/// Your settings for channels and guilds (those without one follow the defaults:
/// every message in DMs and group DMs, mentions only in guilds).
#[utoipa::path(
    get, path = "/api/v1/users/@me/notification-settings", tag = "notifications",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Settings, by target id", body = Vec<Setting>),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn list_settings(
    auth: AuthUser,
    pool: web::Data<Pool>,
) -> AppResult<web::Json<Vec<Setting>>> {
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(settings::list(&mut conn, auth.user_id).await?))
}

/// Remove a notification setting
///
/// Back to the defaults for that channel or guild.
#[utoipa::path(
    delete, path = "/api/v1/users/@me/notification-settings/{target_id}", tag = "notifications",
    security(("bearer" = [])),
    params(("target_id" = Uuid, Path, description = "A channel or guild id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "You had no setting for it", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub async fn delete_setting(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let mut conn = synctalk_db::conn(&pool).await?;
    settings::remove(&mut conn, auth.user_id, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn push_off() -> AppError {
    AppError::new(
        ErrorCode::Conflict,
        "Web Push is not configured on this server",
    )
}

/// The VAPID public key
///
/// Give it to `pushManager.subscribe({userVisibleOnly: true, applicationServerKey})`;
/// 409 when this server has no VAPID key (Web Push off).
#[utoipa::path(
    get, path = "/api/v1/push/vapid-public-key", tag = "notifications",
    responses(
        (status = 200, description = "The key", body = VapidKey),
        (status = 409, description = "`conflict`: Web Push is off", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn vapid_key(config: web::Data<PushConfig>) -> AppResult<web::Json<VapidKey>> {
    let vapid = config.vapid.as_ref().ok_or_else(push_off)?;
    Ok(web::Json(VapidKey {
        public_key: vapid.public_key(),
    }))
}

/// Register a push subscription
///
/// The body is what the browser's `PushSubscription.toJSON()` gives. When none of your
/// sockets is connected, each new notification is pushed to every subscription of
/// yours (encrypted per RFC 8291, signed with VAPID). The endpoint must be `https` to a
/// public host (in development also `http` to loopback). An endpoint registered before
/// is updated (and moves to you): 200 instead of 201. You keep at most 10: a new one
/// beyond that replaces your oldest.
#[utoipa::path(
    post, path = "/api/v1/users/@me/push-subscriptions", tag = "notifications",
    security(("bearer" = [])),
    request_body = NewSubscription,
    responses(
        (status = 201, description = "Registered", body = PushSubscription),
        (status = 200, description = "That endpoint was registered already: updated", body = PushSubscription),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 409, description = "`conflict`: Web Push is off", body = ErrorResponse),
        (status = 422, description = "A refused endpoint or malformed keys", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn subscribe(
    auth: AuthUser,
    pool: web::Data<Pool>,
    config: web::Data<PushConfig>,
    body: Json<NewSubscription>,
) -> AppResult<HttpResponse> {
    let new = body.into_inner()?;
    if config.vapid.is_none() {
        return Err(push_off());
    }
    let mut fields = FieldErrors::new();
    if let Err(problem) = config.policy.check(&new.endpoint) {
        fields.entry("endpoint".into()).or_default().push(problem);
    }
    let keys = push::parse_keys(&new.keys);
    if let Err(problems) = &keys {
        for (field, problem) in problems {
            fields
                .entry(field.clone())
                .or_default()
                .extend(problem.iter().cloned());
        }
    }
    synctalk_kernel::error::fields_checked(fields)?;
    let Ok((p256dh, secret)) = keys else {
        return Err(AppError::field("keys", "malformed"));
    };
    let mut conn = synctalk_db::conn(&pool).await?;
    let (subscription, new) =
        push::subscribe(&mut conn, auth.user_id, &new.endpoint, &p256dh, &secret).await?;
    Ok(if new {
        HttpResponse::Created().json(subscription)
    } else {
        HttpResponse::Ok().json(subscription)
    })
}

/// List your push subscriptions
///
/// Every browser that registered for Web Push as you, oldest first.
#[utoipa::path(
    get, path = "/api/v1/users/@me/push-subscriptions", tag = "notifications",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Your subscriptions, oldest first", body = Vec<PushSubscription>),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn list_subscriptions(
    auth: AuthUser,
    pool: web::Data<Pool>,
) -> AppResult<web::Json<Vec<PushSubscription>>> {
    let mut conn = synctalk_db::conn(&pool).await?;
    Ok(web::Json(push::list(&mut conn, auth.user_id).await?))
}

/// Remove a push subscription
///
/// That browser gets no more pushes (call it when the user signs out there).
#[utoipa::path(
    delete, path = "/api/v1/users/@me/push-subscriptions/{subscription_id}", tag = "notifications",
    security(("bearer" = [])),
    params(("subscription_id" = Uuid, Path, description = "The subscription")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such subscription of yours", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn unsubscribe(
    auth: AuthUser,
    pool: web::Data<Pool>,
    path: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    let mut conn = synctalk_db::conn(&pool).await?;
    push::unsubscribe(&mut conn, auth.user_id, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
