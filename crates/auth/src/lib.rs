//! Accounts: register, login (username or email), refresh-token rotation with reuse
//! detection, logout, and one session per device.
//!
//! - Passwords are hashed with argon2id on a blocking thread; an unknown user costs
//!   as much time as a wrong password.
//! - Access tokens are short-lived HS256 JWTs carrying the session id; the algorithm is
//!   pinned when verifying, and every request checks that the session is still live,
//!   so a revoked session's access tokens stop working at once.
//! - Refresh tokens are random 256-bit values stored only as SHA-256 hashes, rotated on
//!   every use; presenting a spent one revokes its whole session.

mod config;
pub mod domain;
pub mod dto;
pub mod model;
mod password;
pub mod repo;
mod routes;
mod service;
pub mod session_cache;
mod tokens;

use actix_web::web;
use utoipa::OpenApi;

pub use config::{Argon2Params, AuthConfig};
pub use service::AuthService;

/// Mounts the auth routes (under `/api/v1`). Needs `web::Data<AuthService>` and
/// `web::Data<Pool>` as app data.
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg);
}

/// The auth crate's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        routes::register, routes::login, routes::refresh, routes::logout,
        routes::list_sessions, routes::revoke_session
    ),
    components(schemas(
        dto::RegisterRequest, dto::LoginRequest, dto::RefreshRequest, dto::TokenResponse,
        dto::Session
    )),
    tags((name = "auth", description = "Accounts, tokens and sessions"))
)]
pub struct AuthApi;
