//! A session's stream, as a pure function of the outbox: from a base (a sequence
//! number, an outbox position, the topics listened to then, and the ids READY already
//! reflected), walking the published records in position order gives every event the
//! session is sent and its `s`, and every change of what it listens to.
//!
//! Live delivery and replay (identify's catch-up, resume on any node) both go through
//! [`Stream::step`], so what a node sent and what another node replays can never
//! disagree, and nothing has to be written per delivery.

use std::sync::Arc;

use diesel_async::AsyncPgConnection;
use synctalk_kernel::{SessionId, UserId};

use crate::event::{self, Kind, Record};
use crate::topic::{DomainSet, Topic};

/// Where a session's stream stands.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Whose.
    pub user: UserId,
    /// The signed-in session (device) it belongs to.
    pub auth_session: SessionId,
    /// The domains the socket carries.
    pub domains: DomainSet,
    /// What it listens to, sorted; replaced (never mutated) when it changes, so
    /// checkpoints share it.
    pub topics: Arc<[Topic]>,
    /// The last sequence number sent.
    pub seq: i64,
    /// Outbox ids whose events READY already reflected.
    pub skip: Arc<[i64]>,
}

/// What one record does to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing (not listened to, another domain, or already reflected).
    Nothing,
    /// Dispatch it with this sequence number.
    Dispatch(i64),
    /// Started listening to a topic.
    Subscribed(Topic),
    /// Stopped listening to a topic.
    Unsubscribed(Topic),
    /// The session ended.
    Revoked,
}

impl Stream {
    /// Whether it listens to `topic`.
    pub fn listens(&self, topic: &Topic) -> bool {
        self.topics.binary_search(topic).is_ok()
    }

    fn pinned(&self, topic: &Topic) -> bool {
        Topic::pinned(self.user, self.auth_session).contains(topic)
    }

    /// Applies one record (records must come in position order).
    pub fn step(&mut self, record: &Record) -> Step {
        if !self.listens(&record.topic) {
            return Step::Nothing;
        }
        match record.kind {
            Kind::Event => {
                if self.domains.contains(record.domain) && !self.skip.contains(&record.id) {
                    self.seq += 1;
                    Step::Dispatch(self.seq)
                } else {
                    Step::Nothing
                }
            }
            Kind::Subscribe => match record.subject() {
                Some(topic) if !self.listens(&topic) => {
                    let mut topics = self.topics.to_vec();
                    topics.push(topic);
                    topics.sort_unstable();
                    self.topics = topics.into();
                    Step::Subscribed(topic)
                }
                _ => Step::Nothing,
            },
            Kind::Unsubscribe => match record.subject() {
                Some(topic) if self.listens(&topic) && !self.pinned(&topic) => {
                    let topics: Vec<Topic> = self
                        .topics
                        .iter()
                        .copied()
                        .filter(|t| *t != topic)
                        .collect();
                    self.topics = topics.into();
                    Step::Unsubscribed(topic)
                }
                _ => Step::Nothing,
            },
            Kind::Revoke => Step::Revoked,
        }
    }
}

/// The outcome of walking records.
#[derive(Debug, Default)]
pub struct Walk {
    /// Events to send, with their sequence numbers.
    pub dispatches: Vec<(Arc<Record>, i64)>,
    /// The session ended on the way.
    pub revoked: bool,
}

/// Walks records (in position order) through the stream.
pub fn walk<'a>(stream: &mut Stream, records: impl IntoIterator<Item = &'a Arc<Record>>) -> Walk {
    let mut out = Walk::default();
    for record in records {
        match stream.step(record) {
            Step::Dispatch(seq) => out.dispatches.push((record.clone(), seq)),
            Step::Revoked => {
                out.revoked = true;
                break;
            }
            _ => {}
        }
    }
    out
}

/// The published records a stream has to see after `after` up to `until`, read
/// through the topic index: its topics, and the topics it subscribes to on the way,
/// however deep (a subscription to a guild, then one written to the guild's topic for
/// its channels). `None` when there are more than `limit`.
pub async fn read(
    conn: &mut AsyncPgConnection,
    stream: &Stream,
    after: i64,
    until: i64,
    limit: i64,
) -> diesel::QueryResult<Option<Vec<Arc<Record>>>> {
    if until <= after {
        return Ok(Some(Vec::new()));
    }
    let mut records = event::read_topics(conn, &stream.topics, after, until, limit + 1).await?;
    let mut read: Vec<Topic> = stream.topics.to_vec();
    loop {
        if i64::try_from(records.len()).unwrap_or(i64::MAX) > limit {
            return Ok(None);
        }
        let mut extra: Vec<Topic> = records
            .iter()
            .filter(|r| r.kind == Kind::Subscribe)
            .filter_map(Record::subject)
            .filter(|t| !read.contains(t))
            .collect();
        extra.sort_unstable();
        extra.dedup();
        if extra.is_empty() {
            break;
        }
        let more = event::read_topics(conn, &extra, after, until, limit + 1).await?;
        read.extend(extra);
        records.extend(more);
        records.sort_unstable_by_key(|r| r.position);
        records.dedup_by_key(|r| r.position);
    }
    Ok(Some(records.into_iter().map(Arc::new).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::Domain;
    use serde_json::value::RawValue;
    use synctalk_kernel::GuildId;

    fn record(id: i64, topic: Topic, kind: Kind, domain: Domain, payload: &str) -> Record {
        Record {
            id,
            position: id,
            topic,
            kind,
            domain,
            name: Arc::from("X"),
            payload: RawValue::from_string(payload.to_owned()).unwrap(),
        }
    }

    #[test]
    fn subscriptions_skips_domains_and_revocation_shape_the_stream() {
        let (user, session) = (UserId::new(), SessionId::new());
        let guild = Topic::Guild(GuildId::new());
        let mut topics = Topic::pinned(user, session).to_vec();
        topics.sort_unstable();
        let mut stream = Stream {
            user,
            auth_session: session,
            domains: [Domain::Guilds].into_iter().collect(),
            topics: topics.into(),
            seq: 0,
            skip: Arc::from([7i64]),
        };
        let g = format!("\"{guild}\"");
        let records: Vec<Arc<Record>> = vec![
            record(1, guild, Kind::Event, Domain::Guilds, "1"),
            record(2, Topic::User(user), Kind::Subscribe, Domain::Guilds, &g),
            record(3, guild, Kind::Event, Domain::Guilds, "3"),
            record(4, guild, Kind::Event, Domain::Messaging, "4"),
            record(7, guild, Kind::Event, Domain::Guilds, "7"),
            record(8, Topic::User(user), Kind::Unsubscribe, Domain::Guilds, &g),
            record(9, guild, Kind::Event, Domain::Guilds, "9"),
            record(
                10,
                Topic::User(user),
                Kind::Unsubscribe,
                Domain::Guilds,
                &format!("\"{}\"", Topic::User(user)),
            ),
            record(11, Topic::User(user), Kind::Event, Domain::Guilds, "11"),
            record(
                12,
                Topic::Session(session),
                Kind::Revoke,
                Domain::Users,
                "\"logout\"",
            ),
            record(13, Topic::User(user), Kind::Event, Domain::Guilds, "13"),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let walked = walk(&mut stream, &records);
        let got: Vec<(i64, i64)> = walked.dispatches.iter().map(|(r, s)| (r.id, *s)).collect();
        // Before the subscription: nothing; another domain and a reflected id: skipped;
        // after the unsubscription: nothing; pinned topics cannot be unsubscribed.
        assert_eq!(got, [(3, 1), (11, 2)]);
        assert!(walked.revoked);
        assert!(!stream.listens(&guild));
        assert!(stream.listens(&Topic::User(user)));
    }
}
