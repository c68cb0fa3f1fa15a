//! The users gateway (`/gateway/users`): READY carries your relationships and your
//! friends' presences, and the session listens to your friends' profile topics;
//! events are RELATIONSHIP_ADD/REMOVE, USER_UPDATE and PRESENCE_UPDATE; the one
//! command is PRESENCE {status}. Presence is kept here, from the sockets' lifecycle.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use synctalk_db::AsyncPgConnection;
use synctalk_gateway::{
    BoxFuture, CommandContext, Domain, EventInfo, GatewayDomain, ReadyPart, Topic,
};
use synctalk_kernel::{AppError, AuthUser, ErrorCode, UserId};

use crate::presence::{Presence, Presences, Status};
use crate::relationships::{self, Relationship};

/// READY's users part.
#[derive(Debug, Serialize)]
pub struct UsersReady {
    /// Your relationships.
    pub relationships: Vec<Relationship>,
    /// Your friends' presences.
    pub presences: Vec<Presence>,
}

/// The PRESENCE command.
#[derive(Debug, Deserialize)]
struct SetPresence {
    status: String,
}

/// The users domain of the gateway.
pub struct UsersGateway {
    presences: Presences,
}

impl UsersGateway {
    /// With the node's presence keeping.
    pub fn new(presences: Presences) -> Self {
        Self { presences }
    }
}

/// The topics a user's sessions listen to for the users domain: their friends'
/// profiles (their own user topic is always listened to).
pub async fn topics(conn: &mut AsyncPgConnection, user: UserId) -> diesel::QueryResult<Vec<Topic>> {
    Ok(relationships::friend_ids(conn, user)
        .await?
        .into_iter()
        .map(Topic::Profile)
        .collect())
}

impl GatewayDomain for UsersGateway {
    fn domain(&self) -> Domain {
        Domain::Users
    }

    fn ready<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        auths: &'a [AuthUser],
    ) -> BoxFuture<'a, Result<Vec<ReadyPart>, AppError>> {
        Box::pin(async move {
            let users: Vec<UserId> = auths.iter().map(|a| a.user_id).collect();
            let lists = relationships::list_many(conn, &users).await?;
            let friends_of = |list: &[Relationship]| -> Vec<UserId> {
                list.iter()
                    .filter(|r| r.kind == relationships::RelationshipType::Friend)
                    .map(|r| r.id)
                    .collect()
            };
            let mut everyone: Vec<UserId> = lists.iter().flat_map(|l| friends_of(l)).collect();
            everyone.sort_unstable();
            everyone.dedup();
            let known = crate::presence::of(conn, &everyone).await?;
            lists
                .into_iter()
                .map(|list| {
                    let friends = friends_of(&list);
                    let presences = known
                        .iter()
                        .filter(|p| friends.contains(&p.user_id))
                        .cloned()
                        .collect();
                    let topics = friends.into_iter().map(Topic::Profile).collect();
                    ReadyPart::new(
                        &UsersReady {
                            relationships: list,
                            presences,
                        },
                        topics,
                    )
                })
                .collect()
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
            self.presences
                .set_status(ctx.session_id, ctx.auth.user_id, status)
                .await?;
            Ok(Value::Null)
        })
    }

    fn connected<'a>(&'a self, auth: AuthUser, _session_id: uuid::Uuid) -> BoxFuture<'a, ()> {
        self.presences.refresh(auth.user_id);
        Box::pin(async {})
    }

    fn disconnected<'a>(&'a self, auth: AuthUser, _session_id: uuid::Uuid) -> BoxFuture<'a, ()> {
        self.presences.refresh_later(auth.user_id);
        Box::pin(async {})
    }

    fn events(&self) -> Vec<EventInfo> {
        crate::events::all()
    }
}
