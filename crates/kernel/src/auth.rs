//! The authenticated-user extractor.
//!
//! A handler that takes an [`AuthUser`] only runs for a request with a valid
//! `Authorization: Bearer <access_token>` whose session is still live. The check itself
//! belongs to the auth crate, which registers an [`Authenticator`] as app data; the
//! kernel only defines the port, so no domain crate depends on auth to authenticate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};

use crate::error::{AppError, ErrorCode};
use crate::id::{SessionId, UserId};

/// Who is making the request: the user and the session (device) the token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    /// The signed-in user.
    pub user_id: UserId,
    /// The session (one per device) the access token was issued to.
    pub session_id: SessionId,
}

/// A boxed future, for the object-safe [`Authenticator`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Verifies access tokens: implemented by the auth crate.
pub trait Authenticator: Send + Sync + 'static {
    /// Checks an access token (signature, expiry, live session) and says whose it is.
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<AuthUser, AppError>>;

    /// Checks only what needs no database (signature, expiry), for a caller that
    /// checks the session itself in a transaction of its own (the gateway's READY
    /// snapshot). `None`: the token is invalid; callers that cannot check the session
    /// must use [`Authenticator::authenticate`].
    fn verify(&self, token: &str) -> Option<AuthUser>;
}

/// The shared handle under which the app registers its authenticator.
pub type SharedAuthenticator = web::Data<dyn Authenticator>;

/// Wraps an authenticator for `App::app_data`.
pub fn shared(authenticator: Arc<dyn Authenticator>) -> SharedAuthenticator {
    web::Data::from(authenticator)
}

/// The bearer token of a request, if it has one.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequest for AuthUser {
    type Error = AppError;
    type Future = BoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        if let Some(user) = req.extensions().get::<AuthUser>() {
            let user = *user;
            return Box::pin(async move { Ok(user) });
        }
        let req = req.clone();
        Box::pin(async move {
            let token = bearer_token(&req)
                .ok_or_else(|| {
                    AppError::new(ErrorCode::Unauthorized, "a bearer token is required")
                })?
                .to_owned();
            let authenticator =
                req.app_data::<SharedAuthenticator>()
                    .cloned()
                    .ok_or_else(|| {
                        AppError::internal(anyhow::anyhow!("no authenticator registered"))
                    })?;
            let user = authenticator.authenticate(&token).await?;
            req.extensions_mut().insert(user);
            Ok(user)
        })
    }
}
