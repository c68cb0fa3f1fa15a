//! Gateway sessions in the database: created at identify, taken over by a resume on
//! any node (the epoch fences the node that had it), their bases moved forward at
//! checkpoints, marked dropped or deleted when the socket goes.

use std::collections::HashSet;
use std::sync::Arc;

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Integer, Text, Uuid as SqlUuid};
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

/// Database work done for many sockets at once.
pub(crate) trait Job: Send + Sync + 'static {
    /// One socket's request.
    type Request: Send + Sync + 'static;
    /// Its answer.
    type Answer: Send + 'static;
    /// Does the work of a batch, answering each request in order.
    fn run(
        &self,
        conn: &mut AsyncPgConnection,
        requests: &[Self::Request],
    ) -> impl Future<Output = diesel::QueryResult<Vec<Self::Answer>>> + Send;
}

type Reply<A> = tokio::sync::oneshot::Sender<Result<A, String>>;

/// Runs a [`Job`] in batches: every request that arrives while a batch runs goes into
/// the next one, so a burst of sign-ins, resumes or drops costs a few commits and one
/// pooled connection, not one each.
pub(crate) struct Batcher<J: Job> {
    queue: tokio::sync::mpsc::UnboundedSender<(J::Request, Reply<J::Answer>)>,
}

/// The most requests one batch takes.
const BATCH: usize = 500;

impl<J: Job> Batcher<J> {
    pub fn start(pool: synctalk_db::Pool, job: J) -> Self {
        let (queue, mut rx) =
            tokio::sync::mpsc::unbounded_channel::<(J::Request, Reply<J::Answer>)>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let (requests, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                let result = async {
                    let mut conn = synctalk_db::conn(&pool).await.map_err(|e| e.to_string())?;
                    job.run(&mut conn, &requests)
                        .await
                        .map_err(|e| e.to_string())
                }
                .await;
                match result {
                    Ok(answers) => {
                        for (reply, answer) in replies.into_iter().zip(answers) {
                            let _ = reply.send(Ok(answer));
                        }
                    }
                    Err(error) => {
                        for reply in replies {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                }
            }
        });
        Self { queue }
    }

    /// Does one request (with whatever else is waiting).
    pub async fn call(&self, request: J::Request) -> anyhow::Result<J::Answer> {
        let (reply, wait) = tokio::sync::oneshot::channel();
        self.queue
            .send((request, reply))
            .map_err(|_| anyhow::anyhow!("the session writer stopped"))?;
        wait.await
            .map_err(|_| anyhow::anyhow!("the session writer stopped"))?
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// Creates sessions.
pub(crate) struct Insert(pub Uuid);

impl Job for Insert {
    type Request = NewSession;
    type Answer = ();
    async fn run(
        &self,
        conn: &mut AsyncPgConnection,
        requests: &[NewSession],
    ) -> diesel::QueryResult<Vec<()>> {
        let rows: Vec<&NewSession> = requests.iter().collect();
        insert(conn, self.0, &rows).await?;
        Ok(vec![(); requests.len()])
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
    synctalk_db::sql(
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

/// A resume asking to take its session over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TakeOverRequest {
    pub id: Uuid,
    pub auth: AuthUser,
}

/// What a batch of take-overs found: each session taken (or why not), and what every
/// resume of the batch waits for before RESUMED (read after the take-overs committed).
#[derive(Debug)]
pub(crate) struct TakenOver {
    pub taken: Result<Taken, Refusal>,
    pub barrier: Arc<Barrier>,
}

/// Everything committed before a batch of resumes arrived: the relay's head then, and
/// the rows of the resumed sessions' topics committed but not yet published.
#[derive(Debug)]
pub(crate) struct Barrier {
    pub head: i64,
    pub unpublished: Vec<i64>,
}

/// Takes sessions over for a node: bumps each one's epoch (fencing any node that
/// still has it) and marks it connected there, in one transaction per batch.
pub(crate) struct TakeOver {
    pub node: Uuid,
    pub window_ms: i64,
}

impl Job for TakeOver {
    type Request = TakeOverRequest;
    type Answer = TakenOver;
    async fn run(
        &self,
        conn: &mut AsyncPgConnection,
        requests: &[TakeOverRequest],
    ) -> diesel::QueryResult<Vec<TakenOver>> {
        let taken = take_over(conn, requests, self.node, self.window_ms).await?;
        let mut topics: Vec<Topic> = taken
            .iter()
            .flatten()
            .flat_map(|t| t.base.topics.iter().copied())
            .collect();
        topics.sort_unstable();
        topics.dedup();
        // And what they subscribed to since their bases (a guild, then its channels
        // through the guild's topic), however deep: rows of those committed before the
        // resume must come before RESUMED too.
        let since = taken
            .iter()
            .flatten()
            .map(|t| t.base.position)
            .min()
            .unwrap_or(0);
        let mut frontier = topics.clone();
        for _ in 0..8 {
            if frontier.is_empty() {
                break;
            }
            let mut found = crate::event::subscribed_since(conn, &frontier, since).await?;
            found.sort_unstable();
            found.dedup();
            found.retain(|t| topics.binary_search(t).is_err());
            topics.extend(found.iter().copied());
            topics.sort_unstable();
            frontier = found;
        }
        let barrier = Arc::new(Barrier {
            head: crate::event::head(conn).await?,
            unpublished: if topics.is_empty() {
                Vec::new()
            } else {
                crate::event::unpublished(conn, &topics).await?
            },
        });
        Ok(taken
            .into_iter()
            .map(|taken| TakenOver {
                taken,
                barrier: barrier.clone(),
            })
            .collect())
    }
}

async fn take_over(
    conn: &mut AsyncPgConnection,
    requests: &[TakeOverRequest],
    node: Uuid,
    window_ms: i64,
) -> diesel::QueryResult<Vec<Result<Taken, Refusal>>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
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
    }
    let ids: Vec<Uuid> = requests.iter().map(|r| r.id).collect();
    let users: Vec<Uuid> = requests.iter().map(|r| r.auth.user_id.0).collect();
    let sessions: Vec<Uuid> = requests.iter().map(|r| r.auth.session_id.0).collect();
    // Rows are locked in id order (no deadlock with another node's batch); a session
    // asked twice in one batch is taken once, and the other asker is refused.
    let rows: Vec<Row> = synctalk_db::sql(
        "WITH asked AS (SELECT DISTINCT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) \
         AS v(id, user_id, auth_session_id)), \
         locked AS (SELECT g.id FROM gateway_sessions g \
         JOIN asked a ON a.id = g.id AND a.user_id = g.user_id \
         AND a.auth_session_id = g.auth_session_id \
         WHERE g.last_seen_at > now() - make_interval(secs => $5::double precision / 1000) \
         OR (g.connected AND EXISTS (SELECT 1 FROM gateway_nodes n \
         WHERE n.id = g.node_id AND n.last_seen_at > now() - interval '30 seconds')) \
         ORDER BY g.id FOR UPDATE OF g) \
         UPDATE gateway_sessions g \
         SET epoch = g.epoch + 1, node_id = $4, connected = true, last_seen_at = now() \
         FROM locked WHERE g.id = locked.id \
         RETURNING g.id, g.domains, g.epoch, g.base_seq, g.base_position, g.base_topics, g.base_skip",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<SqlUuid>, _>(&users)
    .bind::<Array<SqlUuid>, _>(&sessions)
    .bind::<SqlUuid, _>(node)
    .bind::<BigInt, _>(window_ms)
    .load(conn)
    .await?;
    let mut rows: std::collections::HashMap<Uuid, Row> =
        rows.into_iter().map(|r| (r.id, r)).collect();
    // The last of two resumes of one session in a batch gets it.
    let mut taken: Vec<Result<Taken, Refusal>> = requests
        .iter()
        .rev()
        .map(|r| {
            let row = rows.remove(&r.id).ok_or(Refusal::Expired)?;
            let mut topics: Vec<Topic> = row
                .base_topics
                .iter()
                .filter_map(|t| t.parse().ok())
                .collect();
            topics.sort_unstable();
            topics.dedup();
            Ok(Taken {
                domains: row
                    .domains
                    .iter()
                    .filter_map(|d| Domain::parse(d))
                    .collect(),
                epoch: row.epoch,
                base: Base {
                    seq: row.base_seq,
                    position: row.base_position,
                    topics: Arc::from(topics),
                },
                skip: row.base_skip,
            })
        })
        .collect();
    taken.reverse();
    Ok(taken)
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
    let mut bases: Vec<&(Uuid, i32, Base)> = bases.iter().collect();
    bases.sort_unstable_by_key(|b| b.0);
    for chunk in bases.chunks(2000) {
        let ids: Vec<Uuid> = chunk.iter().map(|b| b.0).collect();
        let epochs: Vec<i32> = chunk.iter().map(|b| b.1).collect();
        let seqs: Vec<i64> = chunk.iter().map(|b| b.2.seq).collect();
        let positions: Vec<i64> = chunk.iter().map(|b| b.2.position).collect();
        let topics: Vec<String> = chunk
            .iter()
            .map(|b| topic_texts(&b.2.topics).join(","))
            .collect();
        let kept: Vec<Kept> = synctalk_db::sql(
            "WITH v AS (SELECT * FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::bigint[], $5::text[]) \
                        AS v(id, epoch, seq, position, topics)), \
                  locked AS (SELECT g.id FROM gateway_sessions g JOIN v ON v.id = g.id \
                             WHERE g.epoch = v.epoch AND g.node_id = $6 ORDER BY g.id FOR UPDATE OF g) \
             UPDATE gateway_sessions AS g SET base_seq = v.seq, base_position = v.position, \
               base_topics = string_to_array(v.topics, ','), connected = true, last_seen_at = now() \
             FROM v, locked WHERE g.id = v.id AND g.id = locked.id RETURNING g.id",
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
    synctalk_db::sql(
        "WITH locked AS (SELECT id FROM gateway_sessions \
                         WHERE node_id = $1 AND connected AND NOT (id = ANY($2)) ORDER BY id FOR UPDATE) \
         UPDATE gateway_sessions g SET connected = false, last_seen_at = now() \
         FROM locked WHERE g.id = locked.id",
    )
    .bind::<SqlUuid, _>(node)
    .bind::<Array<SqlUuid>, _>(held)
    .execute(conn)
    .await
}

/// A socket that went away: a clean close ends the session, anything else keeps it
/// resumable from its base. Only the epoch that went away is touched.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gone {
    pub id: Uuid,
    pub epoch: i32,
    pub clean: bool,
}

/// Records sockets that went away, one transaction per batch.
pub(crate) struct Disconnect;

impl Job for Disconnect {
    type Request = Gone;
    type Answer = ();
    async fn run(
        &self,
        conn: &mut AsyncPgConnection,
        requests: &[Gone],
    ) -> diesel::QueryResult<Vec<()>> {
        let (ended, dropped): (Vec<&Gone>, Vec<&Gone>) = requests.iter().partition(|g| g.clean);
        let columns = |gone: &[&Gone]| -> (Vec<Uuid>, Vec<i32>) {
            let mut gone = gone.to_vec();
            gone.sort_unstable_by_key(|g| g.id);
            gone.iter().map(|g| (g.id, g.epoch)).unzip()
        };
        let (ended_ids, ended_epochs) = columns(&ended);
        let (dropped_ids, dropped_epochs) = columns(&dropped);
        let mut all: Vec<Uuid> = requests.iter().map(|g| g.id).collect();
        all.sort_unstable();
        conn.transaction(async |conn| {
            // A drop ends its epoch: a checkpoint that captured the socket before it
            // went and writes after this commits finds no row at that epoch, so it
            // cannot mark the session connected again.
            // Every row first, in id order, as every writer of these rows locks them:
            // two batches (or a batch and a checkpoint) never wait for each other in
            // a circle.
            synctalk_db::sql(
                "SELECT 1 FROM gateway_sessions WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            )
            .bind::<Array<SqlUuid>, _>(&all)
            .execute(conn)
            .await?;
            synctalk_db::sql(
                "WITH locked AS (SELECT g.id FROM gateway_sessions g \
                   JOIN unnest($1::uuid[], $2::int[]) AS v(id, epoch) ON v.id = g.id AND v.epoch = g.epoch \
                   ORDER BY g.id FOR UPDATE OF g) \
                 DELETE FROM gateway_sessions g USING locked WHERE g.id = locked.id",
            )
            .bind::<Array<SqlUuid>, _>(&ended_ids)
            .bind::<Array<Integer>, _>(&ended_epochs)
            .execute(conn)
            .await?;
            synctalk_db::sql(
                "WITH locked AS (SELECT g.id FROM gateway_sessions g \
                   JOIN unnest($1::uuid[], $2::int[]) AS v(id, epoch) ON v.id = g.id AND v.epoch = g.epoch \
                   ORDER BY g.id FOR UPDATE OF g) \
                 UPDATE gateway_sessions g SET connected = false, epoch = g.epoch + 1, last_seen_at = now() \
                 FROM locked WHERE g.id = locked.id",
            )
            .bind::<Array<SqlUuid>, _>(&dropped_ids)
            .bind::<Array<Integer>, _>(&dropped_epochs)
            .execute(conn)
            .await?;
            Ok(vec![(); requests.len()])
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use synctalk_kernel::{SessionId, UserId};

    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        connected: bool,
    }

    async fn connected(conn: &mut AsyncPgConnection, id: Uuid) -> bool {
        synctalk_db::sql("SELECT connected FROM gateway_sessions WHERE id = $1")
            .bind::<SqlUuid, _>(id)
            .get_result::<Row>(conn)
            .await
            .unwrap()
            .connected
    }

    /// A checkpoint captures a socket's base, the socket drops and its drop is written,
    /// then the checkpoint writes the base: the session stays dropped (the checkpoint
    /// must not mark it connected again, or presence and resume see a live socket
    /// nobody holds until the next sweep).
    #[tokio::test]
    async fn a_checkpoint_written_after_a_drop_leaves_the_session_dropped() {
        let db = synctalk_testkit::TestDb::migrated().await;
        let mut conn = db.connect().await;
        let auth = AuthUser {
            user_id: UserId::new(),
            session_id: SessionId::new(),
        };
        synctalk_db::sql(
            "INSERT INTO users (id, username, email, password_hash) VALUES ($1, 'u' || md5($1::text), md5($1::text) || '@example.com', 'x')",
        )
        .bind::<SqlUuid, _>(auth.user_id.0)
        .execute(&mut conn)
        .await
        .unwrap();
        synctalk_db::sql(
            "INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, now() + interval '1 day')",
        )
        .bind::<SqlUuid, _>(auth.session_id.0)
        .bind::<SqlUuid, _>(auth.user_id.0)
        .execute(&mut conn)
        .await
        .unwrap();
        let node = Uuid::now_v7();
        let id = Uuid::now_v7();
        let base = Base {
            seq: 3,
            position: 10,
            topics: Arc::from(Topic::pinned(auth.user_id, auth.session_id).to_vec()),
        };
        let session = NewSession {
            id,
            auth,
            domains: [Domain::Messaging].into_iter().collect(),
            base: base.clone(),
            skip: Vec::new(),
        };
        insert(&mut conn, node, &[&session]).await.unwrap();
        assert!(connected(&mut conn, id).await);
        // The checkpoint captured (id, epoch 1) while the socket was held; the drop is
        // written before the checkpoint's own write.
        let gone = Gone {
            id,
            epoch: 1,
            clean: false,
        };
        Disconnect.run(&mut conn, &[gone]).await.unwrap();
        assert!(!connected(&mut conn, id).await);
        let lost = write_bases(&mut conn, node, &[(id, 1, base)])
            .await
            .unwrap();
        assert_eq!(lost, vec![id], "the node no longer holds the session");
        assert!(
            !connected(&mut conn, id).await,
            "a late checkpoint marked a dropped session connected again"
        );
    }
}
