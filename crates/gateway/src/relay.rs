//! The outbox relay: one node at a time (the holder of a PostgreSQL advisory lock)
//! reads the outbox in position order and publishes it to the bus. When that node
//! dies its lock goes with its connection and another node takes over from the stored
//! cursor; receivers drop what they have already seen, so a takeover repeats nothing.

use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::bus::Bus;
use crate::event::{self, BusMessage};

const LOCK: i64 = 7_307_000_004;

/// Relay settings.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// How often the leader looks for new rows when idle.
    pub poll: Duration,
    /// How long rows stay in the outbox (at least the resume window).
    pub retention: Duration,
}

/// Runs forever: competes for leadership, relays while leader.
pub async fn run(url: String, bus: Bus, config: RelayConfig) {
    loop {
        match lead(&url, &bus, config).await {
            Ok(()) => {}
            Err(error) => tracing::warn!(%error, "outbox relay stopped; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[derive(QueryableByName)]
struct Flag {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ok: bool,
}

#[derive(QueryableByName)]
struct Cursor {
    #[diesel(sql_type = BigInt)]
    position: i64,
}

async fn lead(url: &str, bus: &Bus, config: RelayConfig) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    loop {
        let flag: Flag = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS ok")
            .bind::<BigInt, _>(LOCK)
            .get_result(&mut conn)
            .await?;
        if flag.ok {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tracing::info!("this node relays the outbox");
    let cursor: Cursor = diesel::sql_query("SELECT position FROM outbox_relay WHERE id = 1")
        .get_result(&mut conn)
        .await?;
    let mut cursor = cursor.position;
    let mut last_prune = std::time::Instant::now();
    loop {
        let records = event::read_range(&mut conn, cursor, None, 500).await?;
        if let Some(last) = records.last().map(|r| r.position) {
            bus.publish(BusMessage::Durable {
                prev: cursor,
                records,
            })
            .await;
            diesel::sql_query("UPDATE outbox_relay SET position = $1 WHERE id = 1")
                .bind::<BigInt, _>(last)
                .execute(&mut conn)
                .await?;
            cursor = last;
            continue;
        }
        if last_prune.elapsed() > Duration::from_secs(60) {
            let secs = config.retention.as_secs_f64();
            diesel::sql_query(
                "DELETE FROM outbox WHERE position <= $1 AND created_at < now() - make_interval(secs => $2)",
            )
            .bind::<BigInt, _>(cursor)
            .bind::<diesel::sql_types::Double, _>(secs)
            .execute(&mut conn)
            .await?;
            last_prune = std::time::Instant::now();
        }
        tokio::time::sleep(config.poll).await;
    }
}
