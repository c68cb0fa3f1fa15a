//! Node liveness: each node beats on a connection of its own (an exhausted pool must
//! not make a live node look dead), records how far it has delivered (the outbox is
//! never pruned below it), declares nodes that stopped beating dead (their sessions
//! stay resumable from their bases) and forgets sessions past the resume window.

use std::sync::Weak;
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use synctalk_kernel::UserId;
use uuid::Uuid;

use super::Hub;

/// How often a node beats.
pub const BEAT: Duration = Duration::from_secs(5);

pub(crate) async fn run(hub: Weak<Hub>, url: String) {
    let mut conn: Option<AsyncPgConnection> = None;
    let mut tick = tokio::time::interval(BEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        if conn.is_none() {
            conn = connect(&url).await;
        }
        let Some(c) = conn.as_mut() else { continue };
        match beat(&hub, c).await {
            Ok(lost) => {
                if !lost.is_empty() {
                    // Not awaited: the hooks may wait (presence's grace), the beat not.
                    let hub = hub.clone();
                    tokio::spawn(async move { hub.sockets_lost(lost).await });
                }
            }
            Err(error) => {
                tracing::warn!(%error, "gateway node heartbeat failed");
                conn = None;
            }
        }
    }
}

async fn connect(url: &str) -> Option<AsyncPgConnection> {
    let mut conn = match AsyncPgConnection::establish(url).await {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(%error, "liveness connection failed");
            return None;
        }
    };
    diesel::sql_query("SET statement_timeout = '10s'")
        .execute(&mut conn)
        .await
        .ok()?;
    Some(conn)
}

async fn beat(hub: &Hub, conn: &mut AsyncPgConnection) -> anyhow::Result<Vec<UserId>> {
    #[derive(QueryableByName)]
    struct Orphan {
        #[diesel(sql_type = SqlUuid)]
        user_id: Uuid,
    }
    synctalk_db::sql(
        "INSERT INTO gateway_nodes (id, position) VALUES ($1, $2) \
         ON CONFLICT (id) DO UPDATE SET last_seen_at = now(), position = EXCLUDED.position",
    )
    .bind::<SqlUuid, _>(hub.node_id())
    .bind::<BigInt, _>(hub.position())
    .execute(conn)
    .await?;
    // Sockets of nodes that stopped beating are gone; their sessions stay resumable
    // for the window, counted from the node's last beat.
    let orphans: Vec<Orphan> = synctalk_db::sql(
        "WITH dead AS (DELETE FROM gateway_nodes WHERE last_seen_at < now() - interval '30 seconds' \
                       RETURNING id, last_seen_at) \
         UPDATE gateway_sessions g SET connected = false, node_id = NULL, last_seen_at = dead.last_seen_at \
         FROM dead WHERE g.node_id = dead.id RETURNING g.user_id",
    )
    .load(conn)
    .await?;
    let window = i64::try_from(hub.config().resume_window.as_millis()).unwrap_or(i64::MAX);
    synctalk_db::sql(
        "DELETE FROM gateway_sessions WHERE NOT connected \
         AND last_seen_at < now() - make_interval(secs => $1::double precision / 1000)",
    )
    .bind::<BigInt, _>(window)
    .execute(conn)
    .await?;
    let mut users: Vec<UserId> = orphans.into_iter().map(|o| UserId(o.user_id)).collect();
    users.sort_unstable();
    users.dedup();
    Ok(users)
}
