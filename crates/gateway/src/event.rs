//! Events, the outbox they are written to, and what travels on the bus.

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Jsonb, Text};
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use synctalk_db::AsyncPgConnection;
use synctalk_kernel::{SessionId, UserId};

use crate::topic::{Domain, Topic};

/// An event for the gateways: its name (dispatch `t`), domain, payload and audience.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The domain whose gateway carries it.
    #[serde(with = "domain_serde")]
    pub domain: Domain,
    /// Dispatch name, e.g. `RELATIONSHIP_ADD`.
    pub name: String,
    /// The payload (`d`).
    pub payload: Value,
    /// Who receives it.
    #[serde(with = "topics_serde")]
    pub audience: Vec<Topic>,
}

impl Event {
    /// An event of `domain` named `name` with a serializable payload.
    pub fn new(domain: Domain, name: &str, payload: &impl Serialize, audience: Vec<Topic>) -> Self {
        Self {
            domain,
            name: name.to_owned(),
            payload: serde_json::to_value(payload).unwrap_or(Value::Null),
            audience,
        }
    }
}

/// A durable event with its outbox position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// Position in the outbox (commit order).
    pub position: i64,
    /// The event.
    pub event: Event,
}

/// Internal commands between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Control {
    /// A signed-in session ended: close its sockets (4004).
    RevokeAuthSession(SessionId),
    /// A user was deleted: close all their sockets (4004).
    CloseUser(UserId),
    /// A gateway session was resumed elsewhere: the old socket must go.
    TakenOver {
        /// The gateway session.
        session_id: uuid::Uuid,
        /// The new owner's epoch.
        epoch: i32,
    },
}

/// What travels on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BusMessage {
    /// Outbox records in position order; `prev` is the position published before them.
    Durable {
        /// The last position of the previous message.
        prev: i64,
        /// The records.
        records: Vec<OutboxRecord>,
    },
    /// An event that is never replayed (typing, presence).
    Ephemeral(Event),
    /// A command between nodes.
    Control(Control),
}

/// Appends an event to the outbox. Call it inside the transaction that makes the
/// change, as its last statement: it takes a transaction-scoped lock so positions are
/// handed out in commit order.
pub async fn append(conn: &mut AsyncPgConnection, event: &Event) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Position {
        #[diesel(sql_type = BigInt)]
        position: i64,
    }
    diesel::sql_query("SELECT pg_advisory_xact_lock(7307000003)")
        .execute(conn)
        .await?;
    let audience: Vec<String> = event.audience.iter().map(Topic::to_string).collect();
    let row: Position = diesel::sql_query(
        "INSERT INTO outbox (domain, name, payload, audience) VALUES ($1, $2, $3, $4) RETURNING position",
    )
    .bind::<Text, _>(event.domain.as_str())
    .bind::<Text, _>(&event.name)
    .bind::<Jsonb, _>(&event.payload)
    .bind::<Array<Text>, _>(&audience)
    .get_result(conn)
    .await?;
    Ok(row.position)
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    position: i64,
    #[diesel(sql_type = Text)]
    domain: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Jsonb)]
    payload: Value,
    #[diesel(sql_type = Array<Text>)]
    audience: Vec<String>,
}

impl Row {
    fn into_record(self) -> Option<OutboxRecord> {
        Some(OutboxRecord {
            position: self.position,
            event: Event {
                domain: Domain::parse(&self.domain)?,
                name: self.name,
                payload: self.payload,
                audience: self
                    .audience
                    .iter()
                    .filter_map(|t| t.parse().ok())
                    .collect(),
            },
        })
    }
}

const COLUMNS: &str = "position, domain, name, payload, audience";

/// Records after `after`, up to `until` (inclusive), at most `limit`, in order.
pub async fn read_range(
    conn: &mut AsyncPgConnection,
    after: i64,
    until: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<OutboxRecord>> {
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM outbox WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3"
    ))
    .bind::<BigInt, _>(after)
    .bind::<BigInt, _>(until.unwrap_or(i64::MAX))
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(rows.into_iter().filter_map(Row::into_record).collect())
}

/// The records at these positions, in order.
pub async fn read_positions(
    conn: &mut AsyncPgConnection,
    positions: &[i64],
) -> QueryResult<Vec<OutboxRecord>> {
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM outbox WHERE position = ANY($1) ORDER BY position"
    ))
    .bind::<Array<BigInt>, _>(positions)
    .load(conn)
    .await?;
    Ok(rows.into_iter().filter_map(Row::into_record).collect())
}

/// Records after `after` up to `until` whose audience meets `topics` and whose domain
/// is one of `domains`, at most `limit`.
pub async fn read_for(
    conn: &mut AsyncPgConnection,
    after: i64,
    until: i64,
    topics: &[Topic],
    domains: &[String],
    limit: i64,
) -> QueryResult<Vec<OutboxRecord>> {
    let topics: Vec<String> = topics.iter().map(Topic::to_string).collect();
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM outbox WHERE position > $1 AND position <= $2 \
         AND audience && $3 AND domain = ANY($4) ORDER BY position LIMIT $5"
    ))
    .bind::<BigInt, _>(after)
    .bind::<BigInt, _>(until)
    .bind::<Array<Text>, _>(&topics)
    .bind::<Array<Text>, _>(domains)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(rows.into_iter().filter_map(Row::into_record).collect())
}

/// The newest position in the outbox (0 when empty).
pub async fn head(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Head {
        #[diesel(sql_type = BigInt)]
        position: i64,
    }
    let row: Head = diesel::sql_query("SELECT coalesce(max(position), 0) AS position FROM outbox")
        .get_result(conn)
        .await?;
    Ok(row.position)
}

mod domain_serde {
    use super::*;
    pub fn serialize<S: Serializer>(domain: &Domain, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(domain.as_str())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Domain, D::Error> {
        let name = String::deserialize(d)?;
        Domain::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown domain {name}")))
    }
}

mod topics_serde {
    use super::*;
    pub fn serialize<S: Serializer>(topics: &[Topic], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(topics.iter().map(Topic::to_string))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Topic>, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names
            .iter()
            .map(|n| n.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}
