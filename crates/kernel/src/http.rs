//! Helpers that give every route the same error behaviour: JSON, query and path
//! extraction errors in the shape of API.md, and 405 for a known path with the wrong
//! method.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use crate::error::{AppError, ErrorCode};

/// The JSON body limit of API.md.
pub const DEFAULT_JSON_LIMIT: usize = 1024 * 1024;

/// JSON extraction: malformed JSON is 400, too large 413, wrong content type 415.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|error, _req| {
            let app_error = match &error {
                JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Overflow { .. } => AppError::new(
                    ErrorCode::PayloadTooLarge,
                    "the body is larger than the limit",
                ),
                JsonPayloadError::ContentType => AppError::new(
                    ErrorCode::UnsupportedMediaType,
                    "the body must be application/json",
                ),
                JsonPayloadError::Deserialize(e) => {
                    AppError::new(ErrorCode::InvalidJson, format!("invalid JSON body: {e}"))
                }
                _ => AppError::new(ErrorCode::InvalidJson, "the body could not be read as JSON"),
            };
            actix_web::error::InternalError::from_response(error, app_error.error_response()).into()
        })
}

/// A JSON request body. Not JSON at all (or not `application/json`, or too large): the
/// errors of [`json_config`]. JSON of the wrong shape is a problem of the field it is
/// about: 422 `validation_failed` with `fields.<name>` for a missing or mistyped field,
/// `fields.body` for a body that is not an object (an array would otherwise fill a
/// struct by position).
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// The body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let value = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let web::Json(value) = value.await?;
            Ok(Json(json_object(value)?))
        })
    }
}

/// A JSON object read into `T`; a wrong shape is 422 naming the field.
pub fn json_object<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, AppError> {
    if !value.is_object() {
        return Err(AppError::field("body", "must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        // "missing field `password`" is about `password`, not the object holding it.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        match missing {
            Some(name) => {
                let field = if path == "." {
                    name.to_owned()
                } else {
                    format!("{path}.{name}")
                };
                AppError::field(&field, "is required")
            }
            None => AppError::field(if path == "." { "body" } else { &path }, message),
        }
    })
}

/// Query extraction: any problem is 400 `invalid_query`.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error: QueryPayloadError, _req| {
        let app_error = AppError::new(ErrorCode::InvalidQuery, format!("invalid query: {error}"));
        actix_web::error::InternalError::from_response(error, app_error.error_response()).into()
    })
}

/// Path extraction: a malformed id in a path is 404, as for an unknown id.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|error: PathError, _req| {
        let app_error = AppError::new(ErrorCode::NotFound, "unknown resource");
        actix_web::error::InternalError::from_response(error, app_error.error_response()).into()
    })
}

/// The answer for a known path with an unsupported method.
pub async fn method_not_allowed() -> HttpResponse {
    AppError::new(
        ErrorCode::MethodNotAllowed,
        "this method is not allowed on this route",
    )
    .error_response()
}

/// The answer for an unknown route.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    AppError::new(ErrorCode::NotFound, format!("no route for {}", req.path())).error_response()
}

/// A resource whose unsupported methods get a 405 in the error shape, with an `Allow`
/// header naming the methods it has (`allow`, e.g. `"GET, PATCH"`).
pub fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        let mut response = method_not_allowed().await;
        response.headers_mut().insert(
            actix_web::http::header::ALLOW,
            actix_web::http::header::HeaderValue::from_static(allow),
        );
        response
    }))
}

/// App data: whether to take the client address from `X-Forwarded-For` / `Forwarded`
/// (only behind a trusted load balancer) rather than from the socket.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustForwardedFor(pub bool);

/// The client's address, for rate limits and session records.
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    let trust = req
        .app_data::<web::Data<TrustForwardedFor>>()
        .is_some_and(|t| t.0);
    if trust && let Some(ip) = req.connection_info().realip_remote_addr() {
        return Some(strip_port(ip).to_owned());
    }
    req.peer_addr().map(|addr| addr.ip().to_string())
}

fn strip_port(addr: &str) -> &str {
    // "1.2.3.4:5678" or "[::1]:5678" to the address alone; a bare IPv6 stays as it is.
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            host
        }
        _ => addr,
    }
}
