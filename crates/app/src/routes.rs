//! The app's own routes: liveness, readiness, metrics and the OpenAPI document.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use synctalk_db::{Pool, RunQueryDsl};
use synctalk_kernel::{AppError, ErrorCode, ErrorResponse};
use utoipa::ToSchema;

/// A health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness
///
/// The process answers; nothing else is checked.
#[utoipa::path(get, path = "/health", tag = "app",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn health() -> web::Json<Health> {
    web::Json(Health { status: "ok" })
}

/// Readiness
///
/// 200 when the database answers within 2 seconds and the bus (NATS, when configured)
/// is connected; 503 otherwise, and once the node is stopping, so a load balancer stops
/// sending requests (and reconnecting sockets) here.
#[utoipa::path(get, path = "/ready", tag = "app",
    responses(
        (status = 200, description = "Ready to serve", body = Health),
        (status = 503, description = "`service_unavailable`: the database or the bus does not answer, or the node is stopping", body = ErrorResponse),
    ))]
pub async fn ready(
    pool: web::Data<Pool>,
    bus: web::Data<synctalk_gateway::Bus>,
    gateway: web::Data<synctalk_gateway::Gateway>,
) -> Result<web::Json<Health>, AppError> {
    if gateway.hub.is_shutting_down() {
        return Err(AppError::new(
            ErrorCode::ServiceUnavailable,
            "this node is stopping",
        ));
    }
    if !bus.is_healthy() {
        return Err(AppError::new(
            ErrorCode::ServiceUnavailable,
            "the bus (NATS) is not reachable",
        ));
    }
    let check = async {
        let mut conn = synctalk_db::conn(&pool).await.ok()?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await.ok()
    };
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Some(_)) => Ok(web::Json(Health { status: "ok" })),
        _ => Err(AppError::new(
            ErrorCode::ServiceUnavailable,
            "the database is not reachable",
        )),
    }
}

/// Metrics
///
/// Prometheus metrics in the text exposition format (requests, gateway sockets and
/// events, rate-limit fallbacks).
#[utoipa::path(get, path = "/metrics", tag = "app",
    responses((status = 200, description = "Metrics", content_type = "text/plain", body = String)))]
pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::telemetry::metrics().render())
}

/// This document
///
/// This OpenAPI 3.1 document, the same as `openapi/openapi.json` in the repository.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "app",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn openapi_json(doc: web::Data<String>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.get_ref().clone())
}
