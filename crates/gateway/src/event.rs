//! Events as types, the outbox they are written to, and the records read back from it.
//!
//! A change and what it causes are appended with [`append`] in the transaction of the
//! change: events for the topic they concern, and the subscription changes
//! ([`Outgoing::subscribe`], [`Outgoing::unsubscribe`]) and revocations
//! ([`Outgoing::revoke`]) that decide who listens.

use std::sync::Arc;

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use synctalk_db::AsyncPgConnection;
use synctalk_kernel::AppError;

use crate::topic::{Domain, Topic};

/// A gateway event: a payload type that knows its dispatch name, the domain whose
/// gateway carries it, and whether it is stored and replayed (it then carries `s`) or
/// ephemeral (`s: null`, never replayed).
pub trait GatewayEvent: Serialize {
    /// The dispatch `t`, e.g. `USER_UPDATE`.
    const NAME: &'static str;
    /// The domain whose gateway carries it.
    const DOMAIN: Domain;
    /// Stored in the outbox and replayed on resume (`true`), or ephemeral.
    const REPLAYED: bool;
}

/// Declares a payload type a [`GatewayEvent`].
///
/// `gateway_event!(UserUpdate, "USER_UPDATE", Users, replayed);` or
/// `gateway_event!(PresenceUpdate, "PRESENCE_UPDATE", Users, ephemeral);`
#[macro_export]
macro_rules! gateway_event {
    ($ty:ty, $name:literal, $domain:ident, replayed) => {
        $crate::gateway_event!(@impl $ty, $name, $domain, true);
    };
    ($ty:ty, $name:literal, $domain:ident, ephemeral) => {
        $crate::gateway_event!(@impl $ty, $name, $domain, false);
    };
    (@impl $ty:ty, $name:literal, $domain:ident, $replayed:expr) => {
        impl $crate::event::GatewayEvent for $ty {
            const NAME: &'static str = $name;
            const DOMAIN: $crate::Domain = $crate::Domain::$domain;
            const REPLAYED: bool = $replayed;
        }
    };
}

/// One event type as the contract test sees it: its name, domain, whether it is
/// replayed, and an example payload to validate against `asyncapi.yaml`.
#[derive(Debug, Clone)]
pub struct EventInfo {
    /// The dispatch `t`.
    pub name: &'static str,
    /// Its domain.
    pub domain: Domain,
    /// Replayed or ephemeral.
    pub replayed: bool,
    /// The Rust type, for messages.
    pub type_name: &'static str,
    /// An example payload, serialized.
    pub example: serde_json::Value,
}

impl EventInfo {
    /// Describes `E` with an example value.
    pub fn of<E: GatewayEvent>(example: &E) -> Result<Self, serde_json::Error> {
        Ok(Self {
            name: E::NAME,
            domain: E::DOMAIN,
            replayed: E::REPLAYED,
            type_name: std::any::type_name::<E>(),
            example: serde_json::to_value(example)?,
        })
    }
}

fn raw(payload: &impl Serialize) -> Result<Box<RawValue>, AppError> {
    serde_json::value::to_raw_value(payload).map_err(|e| {
        AppError::internal(anyhow::anyhow!("an event payload failed to serialize: {e}"))
    })
}

/// What a record does to those who listen to its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An event, dispatched to every listener that carries its domain.
    Event,
    /// Listeners (a user's sessions) start listening to the topic in the payload.
    Subscribe,
    /// Listeners stop listening to the topic in the payload.
    Unsubscribe,
    /// Listeners' sockets close with 4004: their session ended.
    Revoke,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Subscribe => "subscribe",
            Kind::Unsubscribe => "unsubscribe",
            Kind::Revoke => "revoke",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "event" => Kind::Event,
            "subscribe" => Kind::Subscribe,
            "unsubscribe" => Kind::Unsubscribe,
            "revoke" => Kind::Revoke,
            _ => return None,
        })
    }
}

/// One row a transaction appends to the outbox.
#[derive(Debug)]
pub struct Outgoing {
    topic: Topic,
    kind: Kind,
    domain: Domain,
    name: &'static str,
    payload: Box<RawValue>,
}

impl Outgoing {
    /// A replayed event for those who listen to `topic`.
    pub fn event<E: GatewayEvent>(topic: Topic, event: &E) -> Result<Self, AppError> {
        debug_assert!(E::REPLAYED, "{} is ephemeral: publish it", E::NAME);
        Ok(Self {
            topic,
            kind: Kind::Event,
            domain: E::DOMAIN,
            name: E::NAME,
            payload: raw(event)?,
        })
    }

    /// Every session listening to `listeners` (a user's topic) starts listening to
    /// `topic`, from this point of the outbox on.
    pub fn subscribe(domain: Domain, listeners: Topic, topic: Topic) -> Result<Self, AppError> {
        Ok(Self {
            topic: listeners,
            kind: Kind::Subscribe,
            domain,
            name: "SUBSCRIBE",
            payload: raw(&topic)?,
        })
    }

    /// Every session listening to `listeners` stops listening to `topic`: nothing
    /// written to it after this point reaches them.
    pub fn unsubscribe(domain: Domain, listeners: Topic, topic: Topic) -> Result<Self, AppError> {
        Ok(Self {
            topic: listeners,
            kind: Kind::Unsubscribe,
            domain,
            name: "UNSUBSCRIBE",
            payload: raw(&topic)?,
        })
    }

    /// Closes every socket listening to `listeners` (a session's or a user's topic)
    /// with 4004, on every node, including one that is registering right now.
    pub fn revoke(
        domain: Domain,
        listeners: Topic,
        reason: &'static str,
    ) -> Result<Self, AppError> {
        Ok(Self {
            topic: listeners,
            kind: Kind::Revoke,
            domain,
            name: "REVOKE",
            payload: raw(&reason)?,
        })
    }
}

/// Appends rows to the outbox, in order. Call it once per transaction, as its last
/// statement. It takes only the advisory locks of its own topics (in one fixed order,
/// so appends never deadlock), held to commit: writers of one topic commit one after
/// the other, so each topic's rows are in commit order, while writers of different
/// topics never wait on each other.
pub async fn append(mut conn: &AsyncPgConnection, rows: &[Outgoing]) -> diesel::QueryResult<()> {
    if let Some(statement) = append_statement(rows) {
        statement.execute(&mut conn).await?;
        crate::relay::appended();
    }
    Ok(())
}

/// The statement [`append`] runs, with its rows bound (`None` for no rows).
fn append_statement(rows: &[Outgoing]) -> Option<synctalk_db::Closing> {
    if rows.is_empty() {
        return None;
    }
    let topics: Vec<String> = rows.iter().map(|r| r.topic.to_string()).collect();
    let kinds: Vec<&'static str> = rows.iter().map(|r| r.kind.as_str()).collect();
    let domains: Vec<&'static str> = rows.iter().map(|r| r.domain.as_str()).collect();
    let names: Vec<&'static str> = rows.iter().map(|r| r.name).collect();
    let payloads: Vec<String> = rows.iter().map(|r| r.payload.get().to_owned()).collect();
    Some(
        synctalk_db::sql("SELECT outbox_append($1, $2, $3, $4, $5)")
            .bind::<Array<Text>, _>(topics)
            .bind::<Array<Text>, _>(kinds)
            .bind::<Array<Text>, _>(domains)
            .bind::<Array<Text>, _>(names)
            .bind::<Array<Text>, _>(payloads),
    )
}

/// A transaction that writes events, in two round trips: `BEGIN` goes out with the
/// body's first statement, and the append of the rows the body returns goes out with
/// `COMMIT` ([`synctalk_db::pipelined`]). The body gets the connection by shared
/// reference (the form that pipelines) and returns its result and its events.
pub async fn transaction<R, E, B>(conn: &mut AsyncPgConnection, body: B) -> Result<R, E>
where
    B: AsyncFnOnce(&AsyncPgConnection) -> Result<(R, Vec<Outgoing>), E>,
    E: From<diesel::result::Error>,
{
    let (out, appended) = synctalk_db::pipelined(conn, async |conn: &AsyncPgConnection| {
        let (out, rows) = body(conn).await?;
        Ok::<_, E>(((out, !rows.is_empty()), append_statement(&rows)))
    })
    .await?;
    if appended {
        crate::relay::appended();
    }
    Ok(out)
}

/// Takes now the lock [`append`] takes for `topic` (held to commit, and taken again by
/// `append` at no cost): what the transaction does from here on is ordered with the
/// other writers of the topic, as its events are (a channel's message ids in the order
/// its messages commit).
pub async fn lock_topic(mut conn: &AsyncPgConnection, topic: Topic) -> diesel::QueryResult<()> {
    synctalk_db::sql("SELECT pg_advisory_xact_lock(hashtextextended($1, 7307))")
        .bind::<Text, _>(topic.to_string())
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Takes now the locks [`append`] takes for `topics`, in its order (so a transaction
/// that writes to several topics never deadlocks with another that does), held to
/// commit; see [`lock_topic`].
pub async fn lock_topics(
    mut conn: &AsyncPgConnection,
    topics: &[Topic],
) -> diesel::QueryResult<()> {
    let topics: Vec<String> = topics.iter().map(Topic::to_string).collect();
    synctalk_db::sql(
        "SELECT pg_advisory_xact_lock(k) FROM \
         (SELECT DISTINCT hashtextextended(t, 7307) AS k FROM unnest($1::text[]) AS t ORDER BY k) AS keys",
    )
    .bind::<Array<Text>, _>(topics)
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// An outbox row after the relay gave it its position.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The row id (insertion order).
    pub id: i64,
    /// Its place in the published outbox: gap-free, the order every node applies.
    pub position: i64,
    /// Who listens.
    pub topic: Topic,
    /// What it does.
    pub kind: Kind,
    /// The domain that wrote it.
    pub domain: Domain,
    /// The dispatch name of an event.
    pub name: Arc<str>,
    /// The payload, as JSON text.
    pub payload: Box<RawValue>,
}

impl Record {
    /// The topic a subscribe or unsubscribe record is about.
    pub fn subject(&self) -> Option<Topic> {
        matches!(self.kind, Kind::Subscribe | Kind::Unsubscribe)
            .then(|| serde_json::from_str(self.payload.get()).ok())
            .flatten()
    }

    /// The DISPATCH frame of this event with sequence number `seq`.
    pub fn frame(&self, seq: i64) -> String {
        format!(
            r#"{{"op":0,"t":"{}","s":{seq},"d":{}}}"#,
            self.name,
            self.payload.get()
        )
    }
}

/// An event that is never stored nor replayed (presence, typing): `s` is null.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ephemeral {
    /// Tells copies apart from other events (a node may receive one event through
    /// several shards of its topics, and delivers it once).
    pub id: u64,
    /// Who gets it: every session listening to any of these (once).
    pub topics: Vec<Topic>,
    /// The domain whose gateway carries it.
    pub domain: Domain,
    /// The dispatch name.
    pub name: Arc<str>,
    /// The payload, as JSON text.
    pub payload: Box<RawValue>,
    /// A user whose sockets do not get it (the one who caused it).
    #[serde(default)]
    pub except: Option<synctalk_kernel::UserId>,
}

impl Ephemeral {
    /// An ephemeral event for those who listen to any of `topics`.
    pub fn new<E: GatewayEvent>(topics: Vec<Topic>, event: &E) -> Result<Self, AppError> {
        debug_assert!(!E::REPLAYED, "{} is replayed: append it", E::NAME);
        let id = uuid::Uuid::now_v7().as_u64_pair();
        Ok(Self {
            id: id.0 ^ id.1,
            topics,
            domain: E::DOMAIN,
            name: Arc::from(E::NAME),
            payload: raw(event)?,
            except: None,
        })
    }

    /// The same, but not for `user`'s own sockets.
    pub fn except(mut self, user: synctalk_kernel::UserId) -> Self {
        self.except = Some(user);
        self
    }

    /// Its DISPATCH frame.
    pub fn frame(&self) -> String {
        format!(
            r#"{{"op":0,"t":"{}","s":null,"d":{}}}"#,
            self.name,
            self.payload.get()
        )
    }
}

/// Internal commands between nodes (best effort; what must arrive goes through the
/// outbox).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Control {
    /// A gateway session was resumed elsewhere: the old socket must go.
    TakenOver {
        /// The gateway session.
        session_id: uuid::Uuid,
        /// The new owner's epoch.
        epoch: i32,
    },
}

/// What travels on the bus.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BusMessage {
    /// In process: the published outbox positions `prev + 1 ..= last`, with the records
    /// that fit (a receiver reads any that are missing from the outbox).
    Durable {
        /// The last position of the previous message.
        prev: i64,
        /// The last position this message covers.
        last: i64,
        /// The records, in position order.
        records: Vec<Record>,
    },
    /// On NATS: the records of one shard among `prev + 1 ..= last`.
    Slice {
        /// The shard.
        shard: u16,
        /// The last position before the batch.
        prev: i64,
        /// The last position of the batch.
        last: i64,
        /// The shard's records, in position order.
        records: Vec<Record>,
    },
    /// On NATS: the batch `prev + 1 ..= last` was published, with how many records
    /// each shard carried and which positions were too large for the bus.
    Head {
        /// The last position before the batch.
        prev: i64,
        /// The last position of the batch.
        last: i64,
        /// Records carried per shard.
        counts: Vec<(u16, u32)>,
        /// Positions left for the outbox.
        missing: Vec<i64>,
    },
    /// An event that is never replayed (typing, presence).
    Ephemeral(Ephemeral),
    /// A command between nodes.
    Control(Control),
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    position: i64,
    #[diesel(sql_type = Text)]
    topic: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    domain: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    payload: String,
}

impl Row {
    fn into_record(self) -> Option<Record> {
        let record = Record {
            id: self.id,
            position: self.position,
            topic: self.topic.parse().ok()?,
            kind: Kind::parse(&self.kind)?,
            domain: Domain::parse(&self.domain)?,
            name: Arc::from(self.name),
            payload: RawValue::from_string(self.payload).ok()?,
        };
        Some(record)
    }
}

fn records(rows: Vec<Row>) -> Vec<Record> {
    rows.into_iter()
        .filter_map(|row| {
            let (id, position) = (row.id, row.position);
            let record = row.into_record();
            if record.is_none() {
                tracing::error!(id, position, "an outbox row could not be read; skipped");
            }
            record
        })
        .collect()
}

/// `SELECT` of the columns of a [`Record`] from published rows (`p`, each with its
/// outbox row `o`, looked up by id: never a join the planner could run as a scan of
/// the whole outbox), then `$rest`: one literal.
macro_rules! select_records {
    ($rest:literal) => {
        concat!(
            "SELECT o.id, p.position, o.topic, o.kind, o.domain, o.name, o.payload::text AS payload \
             FROM outbox_published p CROSS JOIN LATERAL ( \
               SELECT o.id, o.topic, o.kind, o.domain, o.name, o.payload FROM outbox o \
               WHERE o.id = p.id OFFSET 0) AS o ",
            $rest
        )
    };
}

/// Published records after `after` up to `until` (inclusive), at most `limit`, in order.
pub async fn read_range(
    conn: &mut AsyncPgConnection,
    after: i64,
    until: i64,
    limit: i64,
) -> diesel::QueryResult<Vec<Record>> {
    let rows: Vec<Row> = synctalk_db::sql(select_records!(
        "WHERE p.position > $1 AND p.position <= $2 ORDER BY p.position LIMIT $3"
    ))
    .bind::<BigInt, _>(after)
    .bind::<BigInt, _>(until)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(records(rows))
}

/// Published records of `topics` after `after` up to `until`, at most `limit`, in
/// order: through the topic index, whatever the size of the outbox.
pub async fn read_topics(
    conn: &mut AsyncPgConnection,
    topics: &[Topic],
    after: i64,
    until: i64,
    limit: i64,
) -> diesel::QueryResult<Vec<Record>> {
    let topics: Vec<String> = topics.iter().map(Topic::to_string).collect();
    // Planned with its parameters every time (not kept prepared): a generic plan
    // cannot tell a rare topic from a common one and may walk the position index over
    // the whole range instead of the topic index.
    let rows: Vec<Row> = diesel::sql_query(select_records!(
        "WHERE p.topic = ANY($1) AND p.position > $2 AND p.position <= $3 \
         ORDER BY p.position LIMIT $4"
    ))
    .bind::<Array<Text>, _>(&topics)
    .bind::<BigInt, _>(after)
    .bind::<BigInt, _>(until)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(records(rows))
}

/// The topics that subscription records written to `topics` name, published after
/// `after` or committed and not yet published: what sessions listening to `topics`
/// since `after` have started (or will start) listening to on the way.
pub async fn subscribed_since(
    conn: &mut AsyncPgConnection,
    topics: &[Topic],
    after: i64,
) -> diesel::QueryResult<Vec<Topic>> {
    #[derive(QueryableByName)]
    struct Subject {
        #[diesel(sql_type = Text)]
        value: String,
    }
    let topics: Vec<String> = topics.iter().map(Topic::to_string).collect();
    let rows: Vec<Subject> = diesel::sql_query(
        "SELECT o.payload #>> '{}' AS value FROM outbox_published p CROSS JOIN LATERAL ( \
           SELECT o.kind, o.payload FROM outbox o WHERE o.id = p.id OFFSET 0) AS o \
         WHERE o.kind = 'subscribe' AND p.topic = ANY($1) AND p.position > $2 \
         UNION SELECT o.payload #>> '{}' FROM outbox o \
         WHERE o.kind = 'subscribe' AND o.topic = ANY($1) \
         AND o.id > (SELECT floor FROM outbox_relay WHERE id = 1) \
         AND (SELECT p.id FROM outbox_published p WHERE p.id = o.id) IS NULL",
    )
    .bind::<Array<Text>, _>(&topics)
    .bind::<BigInt, _>(after)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.value.parse().ok())
        .collect())
}

/// The ids of committed rows of `topics` that the relay has not published yet.
pub async fn unpublished(
    conn: &mut AsyncPgConnection,
    topics: &[Topic],
) -> diesel::QueryResult<Vec<i64>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let topics: Vec<String> = topics.iter().map(Topic::to_string).collect();
    let ids: Vec<Id> = synctalk_db::sql(
        "SELECT o.id FROM outbox o WHERE o.topic = ANY($1) \
         AND o.id > (SELECT floor FROM outbox_relay WHERE id = 1) \
         AND (SELECT p.id FROM outbox_published p WHERE p.id = o.id) IS NULL ORDER BY o.id",
    )
    .bind::<Array<Text>, _>(&topics)
    .load(conn)
    .await?;
    Ok(ids.into_iter().map(|i| i.id).collect())
}

/// The ids and topics of committed rows of `topics` that the relay has not published
/// yet.
pub async fn unpublished_of(
    conn: &mut AsyncPgConnection,
    topics: &[Topic],
) -> diesel::QueryResult<Vec<(i64, Topic)>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Text)]
        topic: String,
    }
    let topics: Vec<String> = topics.iter().map(Topic::to_string).collect();
    let rows: Vec<Row> = synctalk_db::sql(
        "SELECT o.id, o.topic FROM outbox o WHERE o.topic = ANY($1) \
         AND o.id > (SELECT floor FROM outbox_relay WHERE id = 1) \
         AND (SELECT p.id FROM outbox_published p WHERE p.id = o.id) IS NULL ORDER BY o.id",
    )
    .bind::<Array<Text>, _>(&topics)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| Some((r.id, r.topic.parse().ok()?)))
        .collect())
}

/// Whether every row of `ids` has been published, and the highest position among them.
pub async fn published(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
) -> diesel::QueryResult<(bool, i64)> {
    #[derive(QueryableByName)]
    struct State {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        done: bool,
        #[diesel(sql_type = BigInt)]
        last: i64,
    }
    let state: State = synctalk_db::sql(
        "SELECT coalesce(bool_and(position IS NOT NULL), true) AS done, \
                coalesce(max(position), 0) AS last \
         FROM (SELECT (SELECT p.position FROM outbox_published p WHERE p.id = o.id) AS position \
               FROM outbox o WHERE o.id = ANY($1)) AS rows",
    )
    .bind::<Array<BigInt>, _>(ids)
    .get_result(conn)
    .await?;
    Ok((state.done, state.last))
}

/// How far the relay has published (0 when nothing yet).
pub async fn head(conn: &mut AsyncPgConnection) -> diesel::QueryResult<i64> {
    bigint(
        conn,
        "SELECT position AS value FROM outbox_relay WHERE id = 1",
    )
    .await
}

/// The one `bigint` (named `value`) that `sql` selects.
pub(crate) async fn bigint(
    conn: &mut AsyncPgConnection,
    sql: &'static str,
) -> diesel::QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Value {
        #[diesel(sql_type = BigInt)]
        value: i64,
    }
    let row: Value = synctalk_db::sql(sql).get_result(conn).await?;
    Ok(row.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_messages_round_trip_through_json() {
        let record = Record {
            id: 3,
            position: 9,
            topic: Topic::User(synctalk_kernel::UserId::new()),
            kind: Kind::Subscribe,
            domain: Domain::Users,
            name: Arc::from("SUBSCRIBE"),
            payload: RawValue::from_string("{\"a\":[1,2]}".into()).unwrap(),
        };
        let message = BusMessage::Slice {
            shard: 7,
            prev: 8,
            last: 9,
            records: vec![record],
        };
        let text = serde_json::to_vec(&message).unwrap();
        let back: BusMessage = serde_json::from_slice(&text).unwrap();
        let BusMessage::Slice { records, .. } = back else {
            panic!("a slice")
        };
        assert_eq!(records[0].payload.get(), "{\"a\":[1,2]}");
    }
}
