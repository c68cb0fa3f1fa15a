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
///
/// A problem with the body is kept, not answered, until the handler asks for the body
/// with [`Json::into_inner`]: extractors run side by side, and a body error must not
/// overtake the 401 of a token whose check is still under way (a signed-out session's
/// token would otherwise learn whether its body was valid).
#[derive(Debug)]
pub struct Json<T>(Result<T, AppError>);

impl<T> Json<T> {
    /// The body, or its problem (400, 413, 415 or 422).
    pub fn into_inner(self) -> Result<T, AppError> {
        self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let value = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let body = match value.await {
                Ok(web::Json(value)) => json_object(value),
                Err(error) => Err(body_error(error)),
            };
            Ok(Json(body))
        })
    }
}

/// The problem of a body [`json_config`] refused, back from the response it made.
fn body_error(error: actix_web::Error) -> AppError {
    let status = error.as_response_error().status_code();
    if status == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE {
        AppError::new(
            ErrorCode::PayloadTooLarge,
            "the body is larger than the limit",
        )
    } else if status == actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE {
        AppError::new(
            ErrorCode::UnsupportedMediaType,
            "the body must be application/json",
        )
    } else {
        AppError::new(
            ErrorCode::InvalidJson,
            format!("invalid JSON body: {error}"),
        )
    }
}

/// An optional JSON body: empty (or blank) or `null` is `T::default()`; otherwise the
/// rules of [`Json`] (malformed JSON 400, a wrong shape 422 naming the field).
pub fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| AppError::new(ErrorCode::InvalidJson, format!("invalid JSON body: {e}")))?;
    if value.is_null() {
        Ok(T::default())
    } else {
        json_object(value)
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

/// App data: the proxies (load balancers) whose `X-Forwarded-For` / `Forwarded` entries
/// are believed. Empty (the default): the client is the socket's peer.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<Cidr>);

/// An address range, `10.0.0.0/8` or `fd00::/8` (a bare address is a range of one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: std::net::IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: std::net::IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an address or a CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?} has a prefix length out of 0-{max}"))?,
        };
        Ok(Self { network, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        fn bits(ip: std::net::IpAddr) -> (u128, u8) {
            match ip {
                std::net::IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
                std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => (u128::from(u32::from(v4)), 32),
                    None => (u128::from(v6), 128),
                },
            }
        }
        let ((net, width), (addr, addr_width)) = (bits(self.network), bits(ip));
        if width != addr_width {
            return false;
        }
        let shift = u32::from(width - self.prefix.min(width));
        let mask = if shift >= 128 {
            0
        } else {
            (u128::MAX << shift) & (u128::MAX >> (128 - u32::from(width)))
        };
        net & mask == addr & mask
    }
}

impl TrustedProxies {
    fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(ip))
    }
}

/// The client's address, for rate limits and session records. The socket's peer,
/// unless it is a trusted proxy: then the rightmost address of `X-Forwarded-For` (or
/// `Forwarded`) that is not a trusted proxy, since every proxy appends what it saw and
/// the client can write anything to the left.
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    let peer = req.peer_addr().map(|addr| addr.ip())?;
    let Some(trusted) = req
        .app_data::<web::Data<TrustedProxies>>()
        .filter(|t| t.trusts(peer))
    else {
        return Some(peer.to_string());
    };
    let mut hops: Vec<std::net::IpAddr> = Vec::new();
    for value in req.headers().get_all("forwarded") {
        for element in value.to_str().unwrap_or("").split(',') {
            for pair in element.split(';') {
                if let Some((key, value)) = pair.trim().split_once('=')
                    && key.trim().eq_ignore_ascii_case("for")
                    && let Some(ip) = parse_hop(value.trim().trim_matches('"'))
                {
                    hops.push(ip);
                }
            }
        }
    }
    if hops.is_empty() {
        for value in req.headers().get_all("x-forwarded-for") {
            hops.extend(
                value
                    .to_str()
                    .unwrap_or("")
                    .split(',')
                    .filter_map(|h| parse_hop(h.trim())),
            );
        }
    }
    let client = hops
        .iter()
        .rev()
        .find(|ip| !trusted.trusts(**ip))
        .or(hops.first());
    Some(client.copied().unwrap_or(peer).to_string())
}

fn parse_hop(hop: &str) -> Option<std::net::IpAddr> {
    strip_port(hop).parse().ok()
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

#[cfg(test)]
mod proxy_tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn request(peer: &str, forwarded_for: Option<&str>, forwarded: Option<&str>) -> HttpRequest {
        let proxies = TrustedProxies(vec![
            "10.0.0.0/8".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]);
        let mut req = TestRequest::default()
            .peer_addr(peer.parse().unwrap())
            .app_data(web::Data::new(proxies));
        if let Some(value) = forwarded_for {
            req = req.insert_header(("x-forwarded-for", value));
        }
        if let Some(value) = forwarded {
            req = req.insert_header(("forwarded", value));
        }
        req.to_http_request()
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop_and_only_behind_a_trusted_proxy() {
        // From a trusted proxy: the rightmost address it did not add itself.
        let ip = client_ip(&request(
            "10.0.0.5:80",
            Some("6.6.6.6, 1.2.3.4, 10.0.0.9"),
            None,
        ));
        assert_eq!(
            ip.as_deref(),
            Some("1.2.3.4"),
            "the client wrote 6.6.6.6 itself"
        );
        let ip = client_ip(&request(
            "10.0.0.5:80",
            None,
            Some("for=6.6.6.6, for=\"[2001:db8::1]:4711\""),
        ));
        assert_eq!(ip.as_deref(), Some("2001:db8::1"));
        // From anyone else: the peer, whatever the headers say.
        let ip = client_ip(&request("8.8.8.8:80", Some("1.2.3.4"), None));
        assert_eq!(ip.as_deref(), Some("8.8.8.8"));
        // Only trusted hops: the leftmost.
        let ip = client_ip(&request("[fd00::1]:80", Some("10.1.1.1, 10.2.2.2"), None));
        assert_eq!(ip.as_deref(), Some("10.1.1.1"));
    }

    #[test]
    fn ranges_parse_and_match() {
        let range: Cidr = "192.168.0.0/16".parse().unwrap();
        assert!(range.contains("192.168.4.2".parse().unwrap()));
        assert!(!range.contains("192.169.0.1".parse().unwrap()));
        assert!(range.contains("::ffff:192.168.1.1".parse().unwrap()));
        let one: Cidr = "2001:db8::1".parse().unwrap();
        assert!(one.contains("2001:db8::1".parse().unwrap()));
        assert!(!one.contains("2001:db8::2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "fd00::/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
