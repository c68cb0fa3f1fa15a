//! Handlers of the auth API: thin, the work is in [`AuthService`].

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use synctalk_kernel::http::{client_ip, resource};
use synctalk_kernel::{AppResult, AuthUser, ErrorResponse, SessionId};

use crate::dto::{LoginRequest, RefreshRequest, RegisterRequest, Session, TokenResponse};
use crate::service::{AuthService, ClientInfo};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/auth/register", "POST").route(web::post().to(register)))
        .service(resource("/auth/login", "POST").route(web::post().to(login)))
        .service(resource("/auth/refresh", "POST").route(web::post().to(refresh)))
        .service(resource("/auth/logout", "POST").route(web::post().to(logout)))
        .service(resource("/auth/sessions", "GET").route(web::get().to(list_sessions)))
        .service(
            resource("/auth/sessions/{session_id}", "DELETE")
                .route(web::delete().to(revoke_session)),
        );
}

fn client_info(req: &HttpRequest) -> ClientInfo {
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(512).collect());
    ClientInfo {
        user_agent,
        ip: client_ip(req),
    }
}

/// Create an account
///
/// Creates an account and signs it in on this device: the answer holds the tokens of
/// its first session. Send `device_id` to name the device.
#[utoipa::path(
    post, path = "/api/v1/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created; tokens for the new session", body = TokenResponse),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 409, description = "`username_taken` or `email_taken`", body = ErrorResponse),
        (status = 413, description = "Body over 1 MiB", body = ErrorResponse),
        (status = 422, description = "Invalid username, email or password (see `fields`)", body = ErrorResponse),
        (status = 429, description = "Rate limited (per IP)", body = ErrorResponse),
        (status = 503, description = "`service_unavailable`: too many password checks at once; retry after `Retry-After`", body = ErrorResponse),
    )
)]
pub(crate) async fn register(
    req: HttpRequest,
    service: web::Data<AuthService>,
    body: synctalk_kernel::http::Json<RegisterRequest>,
) -> AppResult<HttpResponse> {
    let tokens = service
        .register(body.into_inner()?, client_info(&req))
        .await?;
    Ok(HttpResponse::Created().json(tokens))
}

/// Sign in
///
/// Signs in with a username or email and a password; each sign-in is a new session
/// (device), and one with the `device_id` of an earlier session replaces it. After
/// repeated attempts without a success a login must wait (429 with `Retry-After`)
/// before it is tried from the same address again.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Tokens for the new session", body = TokenResponse),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "`invalid_credentials`: wrong login or password (the same for both)", body = ErrorResponse),
        (status = 422, description = "Invalid `device_id`", body = ErrorResponse),
        (status = 429, description = "`rate_limited`: too many requests from this IP, or too many sign-in attempts without a success for this login from this address (wait `Retry-After`)", body = ErrorResponse),
        (status = 503, description = "`service_unavailable`: too many password checks at once; retry after `Retry-After`", body = ErrorResponse),
    )
)]
pub(crate) async fn login(
    req: HttpRequest,
    service: web::Data<AuthService>,
    body: synctalk_kernel::http::Json<LoginRequest>,
) -> AppResult<web::Json<TokenResponse>> {
    Ok(web::Json(
        service.login(body.into_inner()?, client_info(&req)).await?,
    ))
}

/// Refresh the tokens
///
/// Trades a refresh token for a new access token and a new refresh token. Each refresh
/// token works once: presenting one that was already used ends its whole session,
/// except within 10 seconds of its use (`REFRESH_REUSE_GRACE_SECS`) while its successor
/// is unused, when it gets that same successor again (a retried or racing request).
#[utoipa::path(
    post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens for the same session", body = TokenResponse),
        (status = 400, description = "Malformed JSON", body = ErrorResponse),
        (status = 401, description = "`invalid_refresh_token`: unknown, expired, already used, or its session ended", body = ErrorResponse),
        (status = 422, description = "`validation_failed`: `refresh_token` missing or not a string, or the body not an object", body = ErrorResponse),
        (status = 429, description = "Rate limited (per IP)", body = ErrorResponse),
    )
)]
pub(crate) async fn refresh(
    req: HttpRequest,
    service: web::Data<AuthService>,
    body: synctalk_kernel::http::Json<RefreshRequest>,
) -> AppResult<web::Json<TokenResponse>> {
    Ok(web::Json(
        service
            .refresh(body.into_inner()?, client_info(&req))
            .await?,
    ))
}

/// Sign out
///
/// Ends this session: its access and refresh tokens stop working at once, and its
/// gateway sockets are closed with 4004.
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn logout(
    auth: AuthUser,
    service: web::Data<AuthService>,
) -> AppResult<HttpResponse> {
    service.logout(auth).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List your sessions
///
/// Your signed-in devices, newest first; `current` marks this one.
#[utoipa::path(
    get, path = "/api/v1/auth/sessions", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Live sessions", body = Vec<Session>),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn list_sessions(
    auth: AuthUser,
    service: web::Data<AuthService>,
) -> AppResult<web::Json<Vec<Session>>> {
    Ok(web::Json(service.sessions(auth).await?))
}

/// Sign a session out
///
/// Signs one of your devices out: its tokens stop working at once and its gateway
/// sockets are closed with 4004. Another user's session id is 404.
#[utoipa::path(
    delete, path = "/api/v1/auth/sessions/{session_id}", tag = "auth",
    security(("bearer" = [])),
    params(("session_id" = SessionId, Path, description = "One of your sessions")),
    responses(
        (status = 204, description = "Session ended"),
        (status = 401, description = "No or bad token", body = ErrorResponse),
        (status = 404, description = "No such live session of yours", body = ErrorResponse),
        (status = 429, description = "Rate limited", body = ErrorResponse),
    )
)]
pub(crate) async fn revoke_session(
    auth: AuthUser,
    service: web::Data<AuthService>,
    path: web::Path<SessionId>,
) -> AppResult<HttpResponse> {
    service.revoke_session(auth, path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
