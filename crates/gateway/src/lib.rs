//! SyncTalk's realtime core, shared by every domain; it knows no domain itself.
//!
//! - [`protocol`]: frames, ops, close codes.
//! - [`session`]: one socket: HELLO, IDENTIFY or RESUME, heartbeats, commands, writes.
//! - [`hub`]: the node's sockets by typed [`Topic`], delivery in outbox order,
//!   resume on any node, node liveness.
//! - [`event`]: typed events, the outbox (events, subscriptions, revocations).
//! - [`queue`]: a socket's outbound queue.
//! - [`relay`]: the one-leader outbox relay. [`bus`]: in-process or NATS.
//!
//! A domain crate implements [`GatewayDomain`]: its part of READY and the topics a
//! session listens to, both read from READY's one snapshot, and its commands. It
//! writes its events and subscription changes with [`event::append`] inside the
//! transaction of the change.

pub mod bus;
pub mod event;
pub mod hub;
pub mod protocol;
pub mod queue;
pub mod relay;
pub mod session;
pub mod topic;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use synctalk_db::AsyncPgConnection;
use synctalk_kernel::{AppError, AuthUser};

pub use bus::Bus;
pub use event::{BusMessage, Control, Ephemeral, EventInfo, GatewayEvent, Outgoing};
pub use hub::{Hub, HubConfig};
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

/// One domain's part of READY: its fields, and the topics the session listens to.
#[derive(Debug, Default)]
pub struct ReadyPart {
    fields: Map<String, Value>,
    topics: Vec<Topic>,
}

impl ReadyPart {
    /// From a typed READY part (a struct whose fields become READY's keys).
    pub fn new(part: &impl Serialize, topics: Vec<Topic>) -> Result<Self, AppError> {
        match serde_json::to_value(part) {
            Ok(Value::Object(fields)) => Ok(Self { fields, topics }),
            Ok(other) => Err(AppError::internal(anyhow::anyhow!(
                "a READY part must be an object, not {other}"
            ))),
            Err(error) => Err(AppError::internal(anyhow::anyhow!(
                "a READY part failed to serialize: {error}"
            ))),
        }
    }

    /// The topics it listens to.
    pub fn topics(&self) -> &[Topic] {
        &self.topics
    }
}

/// READY being assembled: two parts can never write the same key.
#[derive(Debug, Default)]
pub struct Ready {
    fields: Map<String, Value>,
    topics: Vec<Topic>,
}

impl Ready {
    /// Adds a field; a key that is already there is an error.
    pub fn insert(&mut self, key: &str, value: Value) -> Result<(), AppError> {
        if self.fields.contains_key(key) {
            return Err(AppError::internal(anyhow::anyhow!(
                "two READY parts both write `{key}`"
            )));
        }
        self.fields.insert(key.to_owned(), value);
        Ok(())
    }

    /// Adds a domain's part.
    pub fn merge(&mut self, part: ReadyPart) -> Result<(), AppError> {
        for (key, value) in part.fields {
            self.insert(&key, value)?;
        }
        self.topics.extend(part.topics);
        Ok(())
    }

    /// The fields and the topics.
    pub fn into_parts(self) -> (Map<String, Value>, Vec<Topic>) {
        (self.fields, self.topics)
    }
}

/// One domain's part of the gateway. Several parts may serve one domain (the users
/// domain's folders come from the channels crate): each writes its own READY fields
/// and topics, and commands go to the first registered.
pub trait GatewayDomain: Send + Sync + 'static {
    /// Which domain.
    fn domain(&self) -> Domain;

    /// The READY part and the topics of a session for each of `auths` (in order), read
    /// on `conn`, which is inside READY's repeatable-read snapshot: no event can fall
    /// between READY and the first live event, and none arrives twice. Identifies that
    /// arrive together are served by one snapshot, so read them in as few queries as
    /// you can.
    fn ready<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        auths: &'a [AuthUser],
    ) -> BoxFuture<'a, Result<Vec<ReadyPart>, AppError>>;

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

    /// A socket of `auth` went live (after READY or RESUMED), whatever domains it
    /// carries.
    fn connected<'a>(&'a self, _auth: AuthUser, _session_id: uuid::Uuid) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// A socket of `auth` went away, whatever domains it carried.
    fn disconnected<'a>(&'a self, _auth: AuthUser, _session_id: uuid::Uuid) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Every event type it dispatches, for the contract test.
    fn events(&self) -> Vec<EventInfo> {
        Vec::new()
    }
}

/// A per-user budget that op 12 commands are charged to (the app charges them to the
/// same per-user limit as REST requests, so a user cannot send past it over sockets).
pub trait CommandLimit: Send + Sync + 'static {
    /// `Ok` when `user` may run one more command now; else how many milliseconds to
    /// wait.
    fn check(&self, user: synctalk_kernel::UserId) -> BoxFuture<'_, Result<(), u64>>;
}

/// Loads READY's `user` (the users crate's `@me`) inside READY's snapshot; `None`
/// when the user is gone.
pub trait ReadyUser: Send + Sync + 'static {
    /// Each user of `auths` (in order), as READY shows them.
    fn load<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        auths: &'a [AuthUser],
    ) -> BoxFuture<'a, Result<Vec<Option<Value>>, AppError>>;
}

/// Gateway settings.
#[derive(Debug, Clone, Copy)]
pub struct GatewayConfig {
    /// How often clients heartbeat.
    pub heartbeat_interval: Duration,
    /// How long a client has to IDENTIFY or RESUME.
    pub identify_timeout: Duration,
    /// The largest inbound message, in bytes.
    pub max_frame_bytes: usize,
    /// Commands (any op) per minute a socket may send.
    pub commands_per_minute: u32,
    /// How long one write to a socket may take (or a queued frame wait for the socket
    /// to take it) before the client counts as gone.
    pub write_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(41_250),
            identify_timeout: Duration::from_secs(10),
            max_frame_bytes: 16 * 1024,
            commands_per_minute: 120,
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Every half write timeout, closes the sockets whose writes have waited a whole one
/// (what a socket's queue holds is written by its response body, which takes nothing
/// while the client does not read), unless the socket's worker thread itself has not
/// been running its tasks (an overloaded worker, not a client that stopped reading).
async fn close_stalled(hub: std::sync::Weak<Hub>, limit: Duration) {
    let mut tick = tokio::time::interval((limit / 2).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { break };
        hub.close_stalled(limit);
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
    /// Settings.
    pub config: GatewayConfig,
    /// What commands are charged to, if anything.
    pub command_limit: Option<Arc<dyn CommandLimit>>,
    snapshots: session::Snapshots,
}

impl Gateway {
    /// A gateway over `hub` with these domains (needs a running tokio runtime: READY
    /// snapshots are taken by a task of their own, several identifies at a time).
    pub fn new(
        hub: Arc<Hub>,
        domains: Vec<Arc<dyn GatewayDomain>>,
        authenticator: Arc<dyn synctalk_kernel::Authenticator>,
        user: Arc<dyn ReadyUser>,
        config: GatewayConfig,
    ) -> Self {
        let snapshots = session::Snapshots::start(hub.pool().clone(), domains.clone(), user);
        tokio::spawn(close_stalled(Arc::downgrade(&hub), config.write_timeout));
        Self {
            hub,
            domains,
            authenticator,
            config,
            command_limit: None,
            snapshots,
        }
    }

    /// Charges every command to `limit` first (over it: a RESPONSE with
    /// `rate_limited`, and the command is not run).
    #[must_use]
    pub fn with_command_limit(mut self, limit: Arc<dyn CommandLimit>) -> Self {
        self.command_limit = Some(limit);
        self
    }

    fn domain(&self, domain: Domain) -> Option<&Arc<dyn GatewayDomain>> {
        self.domains.iter().find(|d| d.domain() == domain)
    }

    /// Every event type of every registered domain.
    pub fn events(&self) -> Vec<EventInfo> {
        self.domains.iter().flat_map(|d| d.events()).collect()
    }

    /// Mounts `/gateway/{domain}` and `/gateway?domains=a,b`.
    pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
        use actix_web::web;
        use synctalk_kernel::http::resource;
        cfg.service(resource("/gateway", "GET").route(web::get().to(session::combined)))
            .service(resource("/gateway/{domain}", "GET").route(web::get().to(session::single)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Part {
        rooms: Vec<u32>,
    }

    #[test]
    fn two_ready_parts_cannot_write_the_same_key() {
        let mut ready = Ready::default();
        ready.insert("user", Value::Null).unwrap();
        let part = ReadyPart::new(&Part { rooms: vec![1] }, vec![]).unwrap();
        ready.merge(part).unwrap();
        let again = ReadyPart::new(&Part { rooms: vec![2] }, vec![]).unwrap();
        assert!(ready.merge(again).is_err(), "a second `rooms` is refused");
        assert!(ready.insert("user", Value::Null).is_err());
        assert!(
            ReadyPart::new(&vec![1], vec![]).is_err(),
            "a part is an object"
        );
    }

    #[test]
    fn a_payload_that_fails_to_serialize_is_an_error_not_null() {
        // JSON object keys must be strings: this map cannot be serialized.
        #[derive(Serialize)]
        struct Bad {
            map: std::collections::HashMap<(u8, u8), u8>,
        }
        gateway_event!(Bad, "BAD", Users, replayed);
        let bad = Bad {
            map: [((1, 2), 3)].into_iter().collect(),
        };
        let topic = Topic::User(synctalk_kernel::UserId::new());
        assert!(Outgoing::event(topic, &bad).is_err());
        assert!(ReadyPart::new(&bad, vec![]).is_err());
    }
}
