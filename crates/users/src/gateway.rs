//! The users gateway (`/gateway/users`): READY carries your relationships and your
//! friends' presences; events are RELATIONSHIP_ADD/REMOVE, USER_UPDATE and
//! PRESENCE_UPDATE; the one command is PRESENCE {status}.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use synctalk_db::Pool;
use synctalk_gateway::hub::PresenceHook;
use synctalk_gateway::{
    BoxFuture, CommandContext, Domain, Event, GatewayDomain, Hub, Status, Topic,
};
use synctalk_kernel::{AppError, AuthUser, ErrorCode, UserId};
use utoipa::ToSchema;

use crate::relationships;

/// A user's presence, aggregated over all their sockets on all nodes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Presence {
    /// Whose.
    pub user_id: UserId,
    /// `online`, `idle`, `dnd` or `offline`.
    #[schema(value_type = String, example = "online")]
    pub status: Status,
}

/// The PRESENCE command.
#[derive(Debug, Deserialize)]
struct SetPresence {
    status: String,
}

/// The users domain of the gateway.
pub struct UsersGateway {
    pool: Pool,
}

impl UsersGateway {
    /// On a pool.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

impl GatewayDomain for UsersGateway {
    fn domain(&self) -> Domain {
        Domain::Users
    }

    fn ready<'a>(
        &'a self,
        auth: AuthUser,
        hub: &'a Hub,
    ) -> BoxFuture<'a, Result<Map<String, Value>, AppError>> {
        Box::pin(async move {
            let mut conn = synctalk_db::conn(&self.pool).await?;
            let list = relationships::list(&mut conn, auth.user_id).await?;
            let friends = relationships::friend_ids(&mut conn, auth.user_id).await?;
            drop(conn);
            let presences: Vec<Presence> = hub
                .presences(&friends)
                .await
                .map_err(AppError::internal)?
                .into_iter()
                .map(|(user_id, status)| Presence { user_id, status })
                .collect();
            let mut ready = Map::new();
            ready.insert(
                "relationships".into(),
                serde_json::to_value(list).unwrap_or_default(),
            );
            ready.insert(
                "presences".into(),
                serde_json::to_value(presences).unwrap_or_default(),
            );
            Ok(ready)
        })
    }

    fn commands(&self) -> &'static [&'static str] {
        &["PRESENCE"]
    }

    fn command<'a>(
        &'a self,
        ctx: &'a CommandContext,
        name: &'a str,
        data: Value,
    ) -> BoxFuture<'a, Result<Value, AppError>> {
        Box::pin(async move {
            debug_assert_eq!(name, "PRESENCE");
            let body: SetPresence = serde_json::from_value(data)
                .map_err(|_| AppError::new(ErrorCode::InvalidJson, "PRESENCE needs {status}"))?;
            let status = match Status::parse(&body.status) {
                Some(status @ (Status::Online | Status::Idle | Status::Dnd)) => status,
                _ => return Err(AppError::field("status", "must be online, idle or dnd")),
            };
            ctx.hub
                .set_status(ctx.session_id, ctx.auth.user_id, status)
                .await
                .map_err(AppError::internal)?;
            Ok(Value::Null)
        })
    }
}

/// Announces a presence change to the user's friends and to the user's own sockets
/// (never to users they blocked: those are not friends).
pub fn presence_hook(pool: Pool, hub: std::sync::Weak<Hub>) -> PresenceHook {
    Arc::new(move |user: UserId, status: Status| {
        let (pool, hub) = (pool.clone(), hub.clone());
        Box::pin(async move {
            let Some(hub) = hub.upgrade() else { return };
            let friends = match pool.get().await {
                Ok(mut conn) => relationships::friend_ids(&mut conn, user)
                    .await
                    .unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            let mut audience: Vec<Topic> = friends.into_iter().map(Topic::User).collect();
            audience.push(Topic::User(user));
            let payload = Presence {
                user_id: user,
                status,
            };
            hub.publish_ephemeral(Event::new(
                Domain::Users,
                "PRESENCE_UPDATE",
                &payload,
                audience,
            ))
            .await;
        })
    })
}
