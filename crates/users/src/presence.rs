//! Presence, aggregated over all of a user's sockets on all live nodes: `dnd` wins
//! over `online`, `online` over `idle`; no socket anywhere (after a short grace) is
//! `offline`. A change goes out as PRESENCE_UPDATE (ephemeral) to the user's profile
//! topic, which their friends listen to, to the user's own sessions, and to the
//! topics of an [`Audience`] (the guilds they are in, set by the app).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use synctalk_db::{AsyncPgConnection, Pool};
use synctalk_gateway::{Ephemeral, Hub, Topic, gateway_event};
use synctalk_kernel::{AppError, UserId};
use tokio::sync::mpsc;
use utoipa::ToSchema;
use uuid::Uuid;

/// A presence status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = PresenceStatus)]
pub enum Status {
    /// Active.
    Online,
    /// Away.
    Idle,
    /// Do not disturb.
    Dnd,
    /// No socket anywhere.
    Offline,
}

impl Status {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Idle => "idle",
            Status::Dnd => "dnd",
            Status::Offline => "offline",
        }
    }

    /// Parses a stored status.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "online" => Status::Online,
            "idle" => Status::Idle,
            "dnd" => Status::Dnd,
            "offline" => Status::Offline,
            _ => return None,
        })
    }
}

/// A user's presence, aggregated over all their sockets on all nodes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Presence {
    /// Whose.
    pub user_id: UserId,
    /// `online`, `idle`, `dnd` or `offline`.
    pub status: Status,
}

gateway_event!(Presence, "PRESENCE_UPDATE", Users, ephemeral);

/// More topics a user's presence goes to (each of `users`, in one go); the app sets
/// the guilds crate's, so that those who share a guild see it.
pub type Audience = Arc<
    dyn Fn(
            Vec<UserId>,
        )
            -> synctalk_gateway::BoxFuture<'static, anyhow::Result<HashMap<UserId, Vec<Topic>>>>
        + Send
        + Sync,
>;

/// How long settling lost sockets' presence may take, after the grace.
const SETTLE_AT_MOST: Duration = Duration::from_secs(10);

/// Presence for one node. Recomputations are queued and done in batches (one query
/// for every user whose sockets changed meanwhile), so a burst of connects costs a
/// few queries, not one each.
#[derive(Clone)]
pub struct Presences {
    pool: Pool,
    hub: Weak<Hub>,
    grace: Duration,
    queue: mpsc::UnboundedSender<UserId>,
    audience: Arc<std::sync::RwLock<Option<Audience>>>,
}

impl Presences {
    /// Presence on `hub`, with `grace` before a user with no socket is offline.
    pub fn new(pool: Pool, hub: &Arc<Hub>, grace: Duration) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let presences = Self {
            pool,
            hub: Arc::downgrade(hub),
            grace,
            queue,
            audience: Arc::default(),
        };
        tokio::spawn(presences.clone().recompute(rx));
        presences
    }

    /// Sends presence also to these topics of each user.
    pub fn set_audience(&self, audience: Audience) {
        if let Ok(mut slot) = self.audience.write() {
            *slot = Some(audience);
        }
    }

    /// Recomputes a user's presence soon and announces it if it changed.
    pub fn refresh(&self, user: UserId) {
        let _ = self.queue.send(user);
    }

    /// Recomputes after the grace (a socket went away; a reconnect within the grace is
    /// no change).
    pub fn refresh_later(&self, user: UserId) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.grace + Duration::from_millis(50)).await;
            this.refresh(user);
        });
    }

    /// Recomputes the presence of users whose sockets went all at once (their node
    /// stopped or died) once the grace is over, and returns when it is announced: a
    /// node that is stopping waits for it, or nobody would (the others never hear of
    /// sockets they did not hold).
    pub async fn settle(&self, users: Vec<UserId>) {
        tokio::time::sleep(self.grace + Duration::from_millis(50)).await;
        let all = async {
            for chunk in users.chunks(1000) {
                self.update(chunk).await;
            }
        };
        // A node that is stopping does not wait on a slow database for long.
        if tokio::time::timeout(SETTLE_AT_MOST, all).await.is_err() {
            tracing::warn!(
                users = users.len(),
                "presence of lost sockets not settled in time"
            );
        }
    }

    async fn recompute(self, mut rx: mpsc::UnboundedReceiver<UserId>) {
        while let Some(first) = rx.recv().await {
            let mut users = vec![first];
            while users.len() < 1000 {
                match rx.try_recv() {
                    Ok(user) => users.push(user),
                    Err(_) => break,
                }
            }
            self.update(&users).await;
        }
    }

    /// Recomputes `users`' presence and announces what changed.
    async fn update(&self, users: &[UserId]) {
        let changed = async {
            let mut conn = synctalk_db::conn(&self.pool)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            compute(&mut conn, users, self.grace).await
        }
        .await;
        match changed {
            Ok(changed) => {
                let audience = self.audience.read().ok().and_then(|a| a.clone());
                let mut more = HashMap::new();
                if let Some(audience) = audience
                    && !changed.is_empty()
                {
                    match audience(changed.iter().map(|(u, _)| *u).collect()).await {
                        Ok(found) => more = found,
                        Err(error) => tracing::warn!(%error, "presence audience unknown"),
                    }
                }
                for (user, status) in changed {
                    let mut topics = vec![Topic::Profile(user), Topic::User(user)];
                    topics.extend(more.remove(&user).unwrap_or_default());
                    self.announce(user, status, topics).await;
                }
            }
            Err(error) => tracing::warn!(%error, users = users.len(), "presence update failed"),
        }
    }

    /// Sends a user's presence to some topics.
    pub async fn announce(&self, user: UserId, status: Status, topics: Vec<Topic>) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        match Ephemeral::new(
            topics,
            &Presence {
                user_id: user,
                status,
            },
        ) {
            Ok(event) => hub.publish_ephemeral(event).await,
            Err(error) => tracing::error!(?error, "presence not sent"),
        }
    }

    /// Sets the status of one socket's session and updates the user's presence.
    pub async fn set_status(
        &self,
        session_id: Uuid,
        user: UserId,
        status: Status,
    ) -> Result<(), AppError> {
        let mut conn = synctalk_db::conn(&self.pool).await?;
        synctalk_db::sql("UPDATE gateway_sessions SET status = $2 WHERE id = $1")
            .bind::<SqlUuid, _>(session_id)
            .bind::<Text, _>(status.as_str())
            .execute(&mut conn)
            .await
            .map_err(AppError::internal)?;
        drop(conn);
        self.refresh(user);
        Ok(())
    }
}

/// The users whose presence changed, with the new one: over every socket of theirs
/// on a live node (a dropped one counts for the grace).
async fn compute(
    conn: &mut AsyncPgConnection,
    users: &[UserId],
    grace: Duration,
) -> anyhow::Result<Vec<(UserId, Status)>> {
    #[derive(QueryableByName)]
    struct Changed {
        #[diesel(sql_type = SqlUuid)]
        user_id: Uuid,
        #[diesel(sql_type = Text)]
        status: String,
    }
    let ids: Vec<Uuid> = users.iter().map(|u| u.0).collect();
    let grace = i64::try_from(grace.as_millis()).unwrap_or(0);
    // dnd wins over online, online over idle; none at all is offline. Rows are upserted
    // in id order, so two nodes' batches never deadlock.
    let rows: Vec<Changed> = synctalk_db::sql(
        "WITH wanted AS (SELECT DISTINCT unnest($1::uuid[]) AS user_id), \
         live AS ( \
           SELECT g.user_id, g.status FROM gateway_sessions g JOIN gateway_nodes n ON n.id = g.node_id \
           WHERE g.user_id IN (SELECT user_id FROM wanted) \
             AND n.last_seen_at > now() - interval '30 seconds' \
             AND (g.connected OR g.last_seen_at > now() - make_interval(secs => $2::double precision / 1000)) \
         ), now_status AS ( \
           SELECT w.user_id, \
                  CASE WHEN bool_or(l.status = 'dnd') THEN 'dnd' \
                       WHEN bool_or(l.status = 'online') THEN 'online' \
                       WHEN count(l.status) > 0 THEN 'idle' ELSE 'offline' END AS status \
           FROM wanted w LEFT JOIN live l ON l.user_id = w.user_id \
           GROUP BY w.user_id ORDER BY w.user_id \
         ) \
         INSERT INTO presences (user_id, status) SELECT user_id, status FROM now_status \
         ON CONFLICT (user_id) DO UPDATE SET status = EXCLUDED.status, updated_at = now() \
         WHERE presences.status IS DISTINCT FROM EXCLUDED.status RETURNING user_id, status",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<BigInt, _>(grace)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((UserId(r.user_id), Status::parse(&r.status)?)))
        .collect())
}

/// The presences of some users (offline when unknown).
pub async fn of(
    conn: &mut AsyncPgConnection,
    users: &[UserId],
) -> diesel::QueryResult<Vec<Presence>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        user_id: Uuid,
        #[diesel(sql_type = Text)]
        status: String,
    }
    let ids: Vec<Uuid> = users.iter().map(|u| u.0).collect();
    let rows: Vec<Row> =
        synctalk_db::sql("SELECT user_id, status FROM presences WHERE user_id = ANY($1)")
            .bind::<Array<SqlUuid>, _>(&ids)
            .load(conn)
            .await?;
    let known: HashMap<Uuid, Status> = rows
        .into_iter()
        .filter_map(|r| Some((r.user_id, Status::parse(&r.status)?)))
        .collect();
    Ok(users
        .iter()
        .map(|u| Presence {
            user_id: *u,
            status: known.get(&u.0).copied().unwrap_or(Status::Offline),
        })
        .collect())
}
