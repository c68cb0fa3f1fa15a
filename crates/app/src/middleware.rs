//! Cross-cutting middleware: request ids and metrics on every response, rate limits on
//! `/api/v1`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, ResponseError, web};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use synctalk_auth::AuthService;
use synctalk_kernel::{AppError, UserId};

use crate::shared_limits::{Decision, SharedLimits};
use tracing_actix_web::RequestId;

/// Sets `X-Request-Id` (the id in every log line of the request) and records
/// `http_requests_total` and `http_request_duration_seconds`.
pub async fn request_meta(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    // The methods of HTTP; anything a client invents is "other", so no request can add
    // series to the metrics without bound.
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let request_id = req.extensions().get::<RequestId>().map(|id| id.to_string());
    let mut res = next.call(req).await?;
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), id);
    }
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", res.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    Ok(res)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Ip(IpAddr),
    User(UserId),
}

type Limiter =
    RateLimiter<Key, DefaultKeyedStateStore<Key>, DefaultClock, StateInformationMiddleware>;

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Ip(ip) => write!(f, "ip:{ip}"),
            Key::User(user) => write!(f, "user:{user}"),
        }
    }
}

/// The rate limiters: per IP on register, login and refresh; per user elsewhere. In
/// this node's memory, or shared by every node in Redis when that is configured (the
/// memory ones then stand in while Redis does not answer).
#[derive(Clone)]
pub struct RateLimits {
    auth: Arc<Limiter>,
    user: Arc<Limiter>,
    gateway: Arc<Limiter>,
    per_minute: [u32; 3],
    shared: Option<SharedLimits>,
}

#[derive(Clone, Copy)]
enum Which {
    Auth = 0,
    User = 1,
    Gateway = 2,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Auth => "auth",
            Which::User => "user",
            Which::Gateway => "gateway",
        }
    }
}

impl RateLimits {
    /// Limits of `auth_per_minute`, `user_per_minute` and `gateway_per_minute`
    /// requests, refilled evenly.
    pub fn new(auth_per_minute: u32, user_per_minute: u32, gateway_per_minute: u32) -> Self {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Self {
            auth: Arc::new(RateLimiter::keyed(quota(auth_per_minute)).with_middleware()),
            user: Arc::new(RateLimiter::keyed(quota(user_per_minute)).with_middleware()),
            gateway: Arc::new(RateLimiter::keyed(quota(gateway_per_minute)).with_middleware()),
            per_minute: [auth_per_minute, user_per_minute, gateway_per_minute],
            shared: None,
        }
    }

    /// The same limits, kept in Redis for every node.
    #[must_use]
    pub fn shared(mut self, store: SharedLimits) -> Self {
        self.shared = Some(store);
        self
    }

    /// Forgets keys whose buckets are full again, so memory stays bounded.
    pub fn prune(&self) {
        for limiter in [&self.auth, &self.user, &self.gateway] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Charges one request to `user`'s per-user limit, as an authenticated REST
    /// request is: `Err` with the milliseconds to wait when over it.
    pub async fn charge_user(&self, user: UserId) -> Result<(), u64> {
        let decision = self.check(Which::User, &Key::User(user)).await;
        if decision.allowed {
            Ok(())
        } else {
            Err(u64::try_from(decision.retry_after.as_millis())
                .unwrap_or(u64::MAX)
                .max(1))
        }
    }

    async fn check(&self, which: Which, key: &Key) -> Decision {
        if let Some(store) = &self.shared {
            let per_minute = self.per_minute[which as usize];
            match store
                .check(which.name(), &key.to_string(), per_minute)
                .await
            {
                Ok(decision) => return decision,
                Err(error) => crate::shared_limits::fell_back(&error),
            }
        }
        let limiter = match which {
            Which::Auth => &self.auth,
            Which::User => &self.user,
            Which::Gateway => &self.gateway,
        };
        match limiter.check_key(key) {
            Ok(snapshot) => {
                let quota = snapshot.quota();
                let (limit, per_token) = (quota.burst_size().get(), quota.replenish_interval());
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit,
                    remaining,
                    retry_after: Duration::ZERO,
                    reset_after: per_token * (limit - remaining),
                }
            }
            Err(not_until) => {
                let quota = not_until.quota();
                let (limit, per_token) = (quota.burst_size().get(), quota.replenish_interval());
                Decision {
                    allowed: false,
                    limit,
                    remaining: 0,
                    retry_after: not_until.wait_time_from(DefaultClock::default().now()),
                    reset_after: per_token * limit,
                }
            }
        }
    }
}

const IP_LIMITED: &[&str] = &[
    "/api/v1/auth/register",
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
];

/// The bucket of an address: itself for IPv4, its /64 for IPv6 (one subscriber gets a
/// whole /64 and could otherwise take a new address for every request).
fn bucket_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
        other => other,
    }
}

/// Applies the rate limits and sets `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
/// `X-RateLimit-Reset-After` (seconds until the bucket is full again).
pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(limits) = req.app_data::<web::Data<RateLimits>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let ip = synctalk_kernel::http::client_ip(req.request())
        .and_then(|ip| ip.parse().ok())
        .map_or(IpAddr::from([0, 0, 0, 0]), bucket_of);
    // The path as the router reads it (percent-decoded, as `match_info` holds it), not
    // as the client spelled it: `/auth/%6Cogin` is the login route and its limit.
    let routed = req.match_info().as_str();
    let (which, key) = if IP_LIMITED.contains(&routed) {
        (Which::Auth, Key::Ip(ip))
    } else if routed == "/gateway" || routed.starts_with("/gateway/") {
        // Gateway upgrades (IDENTIFY and RESUME attempts with them), per IP.
        (Which::Gateway, Key::Ip(ip))
    } else if !(routed == "/api/v1" || routed.starts_with("/api/v1/")) {
        // Health, readiness, metrics and the docs are not limited.
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    } else {
        let user = synctalk_kernel::auth::bearer_token(req.request()).and_then(|token| {
            req.app_data::<web::Data<AuthService>>()
                .and_then(|auth| auth.token_user(token))
        });
        (Which::User, user.map_or(Key::Ip(ip), Key::User))
    };
    let decision = limits.check(which, &key).await;
    if decision.allowed {
        let mut res = next.call(req).await?.map_into_boxed_body();
        set_headers(
            res.headers_mut(),
            decision.limit,
            decision.remaining,
            decision.reset_after,
        );
        Ok(res)
    } else {
        let wait = u64::try_from(decision.retry_after.as_millis()).unwrap_or(u64::MAX);
        let mut response = AppError::rate_limited(wait.max(1)).error_response();
        set_headers(
            response.headers_mut(),
            decision.limit,
            0,
            decision.reset_after,
        );
        Ok(req.into_response(response))
    }
}

fn set_headers(
    headers: &mut actix_web::http::header::HeaderMap,
    limit: u32,
    remaining: u32,
    reset_after: Duration,
) {
    let pairs = [
        ("x-ratelimit-limit", limit.to_string()),
        ("x-ratelimit-remaining", remaining.to_string()),
        (
            "x-ratelimit-reset-after",
            format!("{:.3}", reset_after.as_secs_f64()),
        ),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

/// Request spans for logs: the default fields, except for gateway sockets, whose
/// request lasts as long as the socket: a span per idle socket would be kept for hours,
/// so they get none (a socket logs through the gateway's own events instead).
pub struct RootSpan;

impl tracing_actix_web::RootSpanBuilder for RootSpan {
    fn on_request_start(request: &ServiceRequest) -> tracing::Span {
        if request.path().starts_with("/gateway") {
            return tracing::Span::none();
        }
        tracing_actix_web::DefaultRootSpanBuilder::on_request_start(request)
    }

    fn on_request_end<B: MessageBody>(
        span: tracing::Span,
        outcome: &Result<ServiceResponse<B>, Error>,
    ) {
        tracing_actix_web::DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// Gateway commands are charged to the same per-user limit as REST requests.
impl synctalk_gateway::CommandLimit for RateLimits {
    fn check(&self, user: UserId) -> synctalk_gateway::BoxFuture<'_, Result<(), u64>> {
        Box::pin(self.charge_user(user))
    }
}
