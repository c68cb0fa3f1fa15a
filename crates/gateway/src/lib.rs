//! SyncTalk's realtime core, shared by every domain.
//!
//! - [`protocol`]: frames, ops, close codes.
//! - [`session`]: one socket: HELLO, IDENTIFY or RESUME, heartbeats, commands, dispatch.
//! - [`hub`]: the node's sockets by typed [`Topic`], sequence numbers, durable delivery
//!   that persists progress before sending, resume on any node, presence.
//! - [`event`]: events, the transactional outbox, bus messages.
//! - [`relay`]: the one-leader outbox relay. [`bus`]: in-process or NATS.
//!
//! A domain crate implements [`GatewayDomain`] (its READY state and its commands) and
//! writes its events with [`event::append`] inside the transaction of the change.

pub mod bus;
pub mod event;
pub mod hub;
pub mod protocol;
pub mod relay;
pub mod session;
pub mod topic;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use synctalk_kernel::{AppError, AuthUser};

pub use bus::Bus;
pub use event::{BusMessage, Control, Event};
pub use hub::{Hub, HubConfig, Status};
pub use topic::{Domain, DomainSet, Topic};

/// A boxed future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a command handler knows about the socket it came from.
#[derive(Clone)]
pub struct CommandContext {
    /// Who sent it.
    pub auth: AuthUser,
    /// The gateway session.
    pub session_id: uuid::Uuid,
    /// The node's hub.
    pub hub: Arc<Hub>,
}

/// One domain's part of the gateway.
pub trait GatewayDomain: Send + Sync + 'static {
    /// Which domain.
    fn domain(&self) -> Domain;

    /// Fields this domain adds to READY.
    fn ready<'a>(
        &'a self,
        auth: AuthUser,
        hub: &'a Hub,
    ) -> BoxFuture<'a, Result<Map<String, Value>, AppError>>;

    /// The op 12 commands (`t`) it handles.
    fn commands(&self) -> &'static [&'static str] {
        &[]
    }

    /// Handles one of its commands; the result is the op 13 `result`.
    fn command<'a>(
        &'a self,
        _ctx: &'a CommandContext,
        name: &'a str,
        _data: Value,
    ) -> BoxFuture<'a, Result<Value, AppError>> {
        let message = format!("unknown command {name}");
        Box::pin(async move { Err(AppError::new(synctalk_kernel::ErrorCode::NotFound, message)) })
    }
}

/// Loads the `user` of READY (the users crate's `@me`).
pub type UserLoader =
    Arc<dyn Fn(AuthUser) -> BoxFuture<'static, Result<Value, AppError>> + Send + Sync>;

/// Gateway settings.
#[derive(Debug, Clone, Copy)]
pub struct GatewayConfig {
    /// How often clients heartbeat.
    pub heartbeat_interval: Duration,
    /// How long a client has to IDENTIFY or RESUME.
    pub identify_timeout: Duration,
    /// The largest inbound frame, in bytes.
    pub max_frame_bytes: usize,
    /// Commands (any op) per minute a socket may send.
    pub commands_per_minute: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(41_250),
            identify_timeout: Duration::from_secs(10),
            max_frame_bytes: 16 * 1024,
            commands_per_minute: 120,
        }
    }
}

/// The gateway: the hub, the registered domains and how to authenticate.
pub struct Gateway {
    /// The node's hub.
    pub hub: Arc<Hub>,
    /// Registered domains.
    pub domains: Vec<Arc<dyn GatewayDomain>>,
    /// Checks tokens.
    pub authenticator: Arc<dyn synctalk_kernel::Authenticator>,
    /// Loads READY's `user`.
    pub user_loader: UserLoader,
    /// Settings.
    pub config: GatewayConfig,
}

impl Gateway {
    fn domain(&self, domain: Domain) -> Option<&Arc<dyn GatewayDomain>> {
        self.domains.iter().find(|d| d.domain() == domain)
    }

    /// Mounts `/gateway/{domain}` and `/gateway?domains=a,b`.
    pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
        use actix_web::web;
        cfg.service(web::resource("/gateway").route(web::get().to(session::combined)))
            .service(web::resource("/gateway/{domain}").route(web::get().to(session::single)));
    }
}
