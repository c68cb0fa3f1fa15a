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
