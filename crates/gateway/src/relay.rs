//! The outbox relay: one node at a time (the holder of a PostgreSQL advisory lock)
//! gives committed rows their positions and publishes them to the bus.
//!
//! Mark, then publish: one statement numbers the oldest unpublished committed rows
//! (in insertion order, which within a topic is commit order, see
//! [`event::append`](crate::event::append)) right after the stored cursor and moves
//! the cursor; only after that commits are they published. A row whose transaction
//! commits late is simply unpublished until then, so nothing is skipped; a row is
//! numbered once, so nothing is published twice under two positions. A leader that
//! dies between marking and publishing leaves a gap that every node fills from the
//! outbox (they watch the cursor).
//!
//! Pruning runs on its own schedule, in bounded batches, and never below what a live
//! node has not delivered or a resumable session may still replay.

use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Double};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::bus::Bus;
use crate::event::Record;

const LOCK: i64 = 7_307_000_004;
/// Rows numbered per statement.
const BATCH: i64 = 1000;
/// Rows deleted per pruning statement.
const PRUNE_BATCH: i64 = 5000;

/// Relay settings.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// How often the leader looks for new rows when idle.
    pub poll: Duration,
    /// Rows younger than this are kept whatever else holds (at least the resume
    /// window's worth of history for sessions whose node died).
    pub retention: Duration,
    /// How often to prune.
    pub prune_every: Duration,
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

async fn lead(url: &str, bus: &Bus, config: RelayConfig) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    // A relay statement that hangs must not hold the leadership for ever.
    diesel::sql_query("SET statement_timeout = '30s'")
        .execute(&mut conn)
        .await?;
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
    let mut last_prune = Instant::now();
    // Every row written by a transaction below the floor is published.
    let mut floor = String::from("0");
    loop {
        let horizon = horizon(&mut conn).await?;
        let (prev, records) = mark(&mut conn, &floor).await?;
        // A full batch: more is waiting, go on at once. Otherwise wait a poll, so that
        // under load one numbering (and one commit) covers many appends instead of
        // the relay committing after every one or two.
        let full = records.len() >= usize::try_from(BATCH).unwrap_or(usize::MAX);
        if !full {
            // Every transaction below the horizon had ended before this batch was
            // picked, so each of its rows was visible to it, and none was left: none
            // can come any more.
            floor = horizon;
        }
        if !records.is_empty() {
            // A bus that does not take them in time must not stop the numbering:
            // nodes read what they miss from the outbox.
            if tokio::time::timeout(Duration::from_secs(5), publish(bus, prev, records))
                .await
                .is_err()
            {
                tracing::warn!("publishing to the bus timed out; nodes catch up from the outbox");
            }
        }
        if last_prune.elapsed() >= config.prune_every {
            last_prune = Instant::now();
            match prune(&mut conn, config.retention).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "pruned the outbox"),
                Err(error) => tracing::warn!(%error, "outbox pruning failed"),
            }
        }
        if !full {
            tokio::time::sleep(config.poll).await;
        }
    }
}

/// The oldest transaction still running (every older one has ended).
async fn horizon(conn: &mut AsyncPgConnection) -> anyhow::Result<String> {
    #[derive(QueryableByName)]
    struct Horizon {
        #[diesel(sql_type = diesel::sql_types::Text)]
        xid: String,
    }
    let horizon: Horizon =
        diesel::sql_query("SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xid")
            .get_result(conn)
            .await?;
    Ok(horizon.xid)
}

/// Numbers the oldest unpublished committed rows after the cursor, among the rows of
/// transactions at or above `floor`; returns the cursor before them and the records.
async fn mark(conn: &mut AsyncPgConnection, floor: &str) -> anyhow::Result<(i64, Vec<Record>)> {
    #[derive(QueryableByName)]
    struct Marked {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = BigInt)]
        position: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        topic: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        kind: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        domain: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        payload: String,
    }
    let rows: Vec<Marked> = diesel::sql_query(
        "WITH cursor AS MATERIALIZED (SELECT position FROM outbox_relay WHERE id = 1 FOR UPDATE), \
         picked AS MATERIALIZED ( \
           SELECT id, row_number() OVER (ORDER BY id) AS n FROM ( \
             SELECT id FROM outbox WHERE position IS NULL AND xid >= $2::text::xid8 \
             ORDER BY id LIMIT $1 \
           ) AS oldest \
         ), \
         marked AS ( \
           UPDATE outbox o SET position = (SELECT position FROM cursor) + p.n \
           FROM picked p WHERE o.id = p.id AND o.position IS NULL \
           RETURNING o.id, o.position, o.topic, o.kind, o.domain, o.name, o.payload::text AS payload \
         ), \
         moved AS ( \
           UPDATE outbox_relay SET position = position + (SELECT count(*) FROM marked) WHERE id = 1 \
         ) \
         SELECT * FROM marked ORDER BY position",
    )
    .bind::<BigInt, _>(BATCH)
    .bind::<diesel::sql_types::Text, _>(floor)
    .load(conn)
    .await?;
    let Some(first) = <[Marked]>::first(&rows).map(|r| r.position) else {
        return Ok((0, Vec::new()));
    };
    let records = rows
        .into_iter()
        .filter_map(|r| {
            Some(Record {
                id: r.id,
                position: r.position,
                topic: r.topic.parse().ok()?,
                kind: serde_json::from_value(serde_json::Value::String(r.kind)).ok()?,
                domain: crate::Domain::parse(&r.domain)?,
                name: r.name.into(),
                payload: serde_json::value::RawValue::from_string(r.payload).ok()?,
            })
        })
        .collect();
    Ok((first - 1, records))
}

/// Publishes records as messages no larger than the bus allows (see
/// [`Bus::publish_batch`]).
pub async fn publish(bus: &Bus, prev: i64, records: Vec<Record>) {
    bus.publish_batch(prev, records).await;
}

/// Deletes published rows older than `retention` that no live node still has to
/// deliver and no resumable session may replay, a batch at a time.
pub async fn prune(conn: &mut AsyncPgConnection, retention: Duration) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let deleted = diesel::sql_query(
            "WITH safe AS ( \
               SELECT least( \
                 (SELECT position FROM outbox_relay WHERE id = 1), \
                 (SELECT min(position) FROM gateway_nodes WHERE last_seen_at > now() - interval '30 seconds'), \
                 (SELECT min(base_position) FROM gateway_sessions) \
               ) AS position \
             ) \
             DELETE FROM outbox WHERE id IN ( \
               SELECT id FROM outbox \
               WHERE position <= (SELECT position FROM safe) \
                 AND created_at < now() - make_interval(secs => $1) \
               ORDER BY position LIMIT $2 \
             )",
        )
        .bind::<Double, _>(retention.as_secs_f64())
        .bind::<BigInt, _>(PRUNE_BATCH)
        .execute(conn)
        .await?;
        total += deleted;
        if deleted < usize::try_from(PRUNE_BATCH).unwrap_or(usize::MAX) {
            return Ok(total);
        }
        // Let writers breathe between batches.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
