//! Gateway sessions in the database: created at identify, taken over by a resume on
//! any node (the epoch fences the node that had it), their bases moved forward at
//! checkpoints, marked dropped or deleted when the socket goes.

use std::collections::HashSet;
use std::sync::Arc;

use diesel::sql_types::{Array, BigInt, Bool, Integer, Text, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use synctalk_kernel::AuthUser;
use uuid::Uuid;

use super::local::Base;
use crate::topic::{Domain, DomainSet, Topic};

fn topic_texts(topics: &[Topic]) -> Vec<String> {
    topics.iter().map(Topic::to_string).collect()
}

/// A session to create at its base.
pub(crate) struct NewSession {
    pub id: Uuid,
    pub auth: AuthUser,
    pub domains: DomainSet,
    pub base: Base,
    pub skip: Vec<i64>,
}

type Done = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Creates sessions in batches: every IDENTIFY that arrives while one insert runs goes
/// into the next, so a burst of sign-ins costs a few commits, not one each.
#[derive(Clone)]
pub(crate) struct Inserter {
    queue: tokio::sync::mpsc::UnboundedSender<(NewSession, Done)>,
}

impl Inserter {
    pub fn start(pool: synctalk_db::Pool, node: Uuid) -> Self {
        let (queue, mut rx) = tokio::sync::mpsc::unbounded_channel::<(NewSession, Done)>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 500 {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let rows: Vec<&NewSession> = batch.iter().map(|(s, _)| s).collect();
                let result = async {
                    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                    insert(&mut conn, node, &rows)
                        .await
                        .map_err(|e| e.to_string())
                }
                .await;
                for (_, done) in batch {
                    let _ = done.send(result.clone());
                }
            }
        });
        Self { queue }
    }

    /// Creates one session (with whatever else is waiting).
    pub async fn insert(&self, session: NewSession) -> anyhow::Result<()> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.queue
            .send((session, done))
            .map_err(|_| anyhow::anyhow!("the session writer stopped"))?;
        wait.await
            .map_err(|_| anyhow::anyhow!("the session writer stopped"))?
            .map_err(|e| anyhow::anyhow!("could not create the session: {e}"))
    }
}

async fn insert(
    conn: &mut AsyncPgConnection,
    node: Uuid,
    rows: &[&NewSession],
) -> diesel::QueryResult<()> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let users: Vec<Uuid> = rows.iter().map(|r| r.auth.user_id.0).collect();
    let sessions: Vec<Uuid> = rows.iter().map(|r| r.auth.session_id.0).collect();
    let domains: Vec<String> = rows.iter().map(|r| r.domains.names().join(",")).collect();
    let positions: Vec<i64> = rows.iter().map(|r| r.base.position).collect();
    let topics: Vec<String> = rows
        .iter()
        .map(|r| topic_texts(&r.base.topics).join(","))
        .collect();
    let skips: Vec<String> = rows
        .iter()
        .map(|r| {
            r.skip
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    diesel::sql_query(
        "INSERT INTO gateway_sessions \
           (id, user_id, auth_session_id, domains, node_id, base_seq, base_position, base_topics, base_skip) \
         SELECT v.id, v.user_id, v.auth_session_id, string_to_array(v.domains, ','), $8, 0, v.position, \
                string_to_array(v.topics, ','), coalesce(string_to_array(nullif(v.skip, ''), ',')::bigint[], '{}') \
         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[], $6::text[], $7::text[]) \
              AS v(id, user_id, auth_session_id, domains, position, topics, skip)",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<SqlUuid>, _>(&users)
    .bind::<Array<SqlUuid>, _>(&sessions)
    .bind::<Array<Text>, _>(&domains)
    .bind::<Array<BigInt>, _>(&positions)
    .bind::<Array<Text>, _>(&topics)
    .bind::<Array<Text>, _>(&skips)
    .bind::<SqlUuid, _>(node)
    .execute(conn)
    .await?;
    Ok(())
}

/// A session taken over for a resume.
#[derive(Debug)]
pub(crate) struct Taken {
    pub domains: DomainSet,
    pub epoch: i32,
    pub base: Base,
    pub skip: Vec<i64>,
}

/// Why a session cannot be resumed (said in INVALID_SESSION).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, someone else's, ended, or past the resume window.
    Expired,
    /// The client is further behind than the session's history reaches (or than the
    /// replay limit); it must identify again and refetch.
    TooFarBehind,
}

impl Refusal {
    /// The reason code clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Expired => "session_expired",
            Refusal::TooFarBehind => "too_far_behind",
        }
    }
}

/// Takes a session over for `node`: bumps its epoch (fencing any node that still has
/// it) and marks it connected there.
pub(crate) async fn take_over(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    auth: AuthUser,
    node: Uuid,
    window_ms: i64,
) -> diesel::QueryResult<Result<Taken, Refusal>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        user_id: Uuid,
        #[diesel(sql_type = SqlUuid)]
        auth_session_id: Uuid,
        #[diesel(sql_type = Array<Text>)]
        domains: Vec<String>,
        #[diesel(sql_type = Integer)]
        epoch: i32,
        #[diesel(sql_type = BigInt)]
        base_seq: i64,
        #[diesel(sql_type = BigInt)]
        base_position: i64,
        #[diesel(sql_type = Array<Text>)]
        base_topics: Vec<String>,
        #[diesel(sql_type = Array<BigInt>)]
        base_skip: Vec<i64>,
        #[diesel(sql_type = Bool)]
        expired: bool,
    }
    conn.transaction(async |conn| {
        let row: Option<Row> = diesel::sql_query(
            "SELECT g.user_id, g.auth_session_id, g.domains, g.epoch, g.base_seq, g.base_position, \
                    g.base_topics, g.base_skip, \
                    NOT (g.last_seen_at > now() - make_interval(secs => $2::double precision / 1000) \
                         OR (g.connected AND n.last_seen_at > now() - interval '30 seconds')) AS expired \
             FROM gateway_sessions g LEFT JOIN gateway_nodes n ON n.id = g.node_id \
             WHERE g.id = $1 FOR UPDATE OF g",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<BigInt, _>(window_ms)
        .get_result(conn)
        .await
        .optional()?;
        let Some(row) = row else {
            return Ok(Err(Refusal::Expired));
        };
        if row.user_id != auth.user_id.0 || row.auth_session_id != auth.session_id.0 || row.expired {
            return Ok(Err(Refusal::Expired));
        }
        let epoch = row.epoch + 1;
        diesel::sql_query(
            "UPDATE gateway_sessions SET epoch = $2, node_id = $3, connected = true, last_seen_at = now() \
             WHERE id = $1",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<Integer, _>(epoch)
        .bind::<SqlUuid, _>(node)
        .execute(conn)
        .await?;
        let mut topics: Vec<Topic> = row.base_topics.iter().filter_map(|t| t.parse().ok()).collect();
        topics.sort_unstable();
        topics.dedup();
        Ok(Ok(Taken {
            domains: row.domains.iter().filter_map(|d| Domain::parse(d)).collect(),
            epoch,
            base: Base {
                seq: row.base_seq,
                position: row.base_position,
                topics: Arc::from(topics),
            },
            skip: row.base_skip,
        }))
    })
    .await
}

/// Moves bases forward for sessions this node still holds at their epoch; returns the
/// ids it no longer holds (resumed elsewhere, or gone).
pub(crate) async fn write_bases(
    conn: &mut AsyncPgConnection,
    node: Uuid,
    bases: &[(Uuid, i32, Base)],
) -> diesel::QueryResult<Vec<Uuid>> {
    #[derive(QueryableByName)]
    struct Kept {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let mut lost = Vec::new();
    for chunk in bases.chunks(2000) {
        let ids: Vec<Uuid> = chunk.iter().map(|b| b.0).collect();
        let epochs: Vec<i32> = chunk.iter().map(|b| b.1).collect();
        let seqs: Vec<i64> = chunk.iter().map(|b| b.2.seq).collect();
        let positions: Vec<i64> = chunk.iter().map(|b| b.2.position).collect();
        let topics: Vec<String> = chunk
            .iter()
            .map(|b| topic_texts(&b.2.topics).join(","))
            .collect();
        let kept: Vec<Kept> = diesel::sql_query(
            "UPDATE gateway_sessions AS g SET base_seq = v.seq, base_position = v.position, \
               base_topics = string_to_array(v.topics, ','), connected = true, last_seen_at = now() \
             FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::bigint[], $5::text[]) \
                  AS v(id, epoch, seq, position, topics) \
             WHERE g.id = v.id AND g.epoch = v.epoch AND g.node_id = $6 RETURNING g.id",
        )
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<Integer>, _>(&epochs)
        .bind::<Array<BigInt>, _>(&seqs)
        .bind::<Array<BigInt>, _>(&positions)
        .bind::<Array<Text>, _>(&topics)
        .bind::<SqlUuid, _>(node)
        .load(conn)
        .await?;
        let kept: HashSet<Uuid> = kept.into_iter().map(|k| k.id).collect();
        lost.extend(ids.into_iter().filter(|id| !kept.contains(id)));
    }
    Ok(lost)
}

/// Marks dropped the sessions the database says are connected to `node` but that it
/// does not hold (a disconnect whose write failed, a registration that failed).
pub(crate) async fn sweep_orphans(
    conn: &mut AsyncPgConnection,
    node: Uuid,
    held: &[Uuid],
) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "UPDATE gateway_sessions SET connected = false, last_seen_at = now() \
         WHERE node_id = $1 AND connected AND NOT (id = ANY($2))",
    )
    .bind::<SqlUuid, _>(node)
    .bind::<Array<SqlUuid>, _>(held)
    .execute(conn)
    .await
}

/// A socket went away: a clean close ends the session, anything else keeps it
/// resumable from its base.
pub(crate) async fn disconnect(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    epoch: i32,
    clean: bool,
) -> diesel::QueryResult<()> {
    let sql = if clean {
        "DELETE FROM gateway_sessions WHERE id = $1 AND epoch = $2"
    } else {
        "UPDATE gateway_sessions SET connected = false, last_seen_at = now() WHERE id = $1 AND epoch = $2"
    };
    diesel::sql_query(sql)
        .bind::<SqlUuid, _>(id)
        .bind::<Integer, _>(epoch)
        .execute(conn)
        .await?;
    Ok(())
}
