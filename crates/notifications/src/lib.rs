//! Notifications: what a user is told of (a DM or group DM message, a mention, a friend
//! request, a guild invite, a missed call, a system notice), kept per user, read over
//! REST and live on `/gateway/notifications`, weighed against per-channel and
//! per-guild settings. Other crates create them inside their own transactions with
//! [`service::create`] and [`service::for_message`]; this crate knows no other domain.

pub mod dto;
pub mod events;
pub mod gateway;
pub mod push;
mod routes;

pub use routes::delete_setting;
pub mod service;
pub mod settings;

use actix_web::web;
use utoipa::OpenApi;

/// Mounts the notification routes (under `/api/v1`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg);
}

/// What the push routes need: the VAPID key (`None`: Web Push is off) and where pushes
/// may go.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// Signs pushes.
    pub vapid: Option<std::sync::Arc<push::Vapid>>,
    /// Which endpoints are accepted.
    pub policy: push::EndpointPolicy,
}

/// The notifications crate's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        routes::list, routes::read_one, routes::read_all, routes::delete,
        routes::list_settings, routes::delete_setting,
        routes::vapid_key, routes::subscribe, routes::list_subscriptions, routes::unsubscribe
    ),
    components(schemas(
        dto::Notification, dto::NotificationKind, dto::NotificationUpdate,
        settings::Setting, settings::PutSetting, settings::Level, settings::TargetKind,
        push::PushSubscription, push::NewSubscription, push::SubscriptionKeys, push::VapidKey
    )),
    tags((name = "notifications", description = "Notifications and their settings"))
)]
pub struct NotificationsApi;
