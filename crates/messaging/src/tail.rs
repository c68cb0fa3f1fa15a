//! Node memory of each channel's newest messages, for history pages.
//!
//! Opening a channel reads its newest page, the request clients make most. From the
//! table it costs a page query, the users it shows, and rendering every message; from
//! here, one small statement and a copy. A node keeps, for each channel it was asked for,
//! its newest [`KEPT`] live messages rendered as JSON (a `Tail`), with what they were
//! read at:
//! - `version`: the newest outbox id of the channel's topic. Every change of what a page
//!   shows (a message sent, edited, deleted, reacted to, pinned) appends an event to that
//!   topic under the topic's lock, held to commit, so the topic's ids grow in commit
//!   order: the same newest id means nothing changed since.
//! - `seen`: when each user the messages show (authors, mentions) was last changed, since
//!   a message carries its author's profile.
//!
//! Nothing is trusted that the database has not just confirmed. Access is decided from
//! the database (the statement every channel route runs, with the newest outbox ids of
//! the channel's topic and its guild's beside it, in one snapshot) the first time a
//! reader asks; once they are found allowed in a guild channel, the decision is
//! remembered with those ids (see `Known`). Then one statement reads, in one snapshot:
//! those two ids, the tail's users' change times and the reader's own reactions on the
//! kept messages. If the ids are the ones the decision was made at, it holds; if the ids
//! and times are the ones the tail was read at, the page is cut from memory. Otherwise
//! access is decided and the page read from the table as before, and a newest page
//! fills the tail again (with the version read before its rows, so a change between
//! them only makes the tail look older than it is). So a change made on any node shows
//! in the next page on every node, and no event needs to reach this node first. (The
//! relay's pruning keeps each channel's and guild's topic's newest row, so those ids
//! never go back.) What the statement reads for a tail it reads only for a reader found
//! allowed (a moment ago): its time tells no one else anything.
//!
//! A guild channel's tail serves all its readers; a DM's or group DM's is each reader's
//! own (see `Key`). One request at a time fills a tail; others meanwhile read their
//! page from the table. A tail weighs at most 1 MiB (fewer messages if they are long).
//!
//! Only a write that appends no event to those topics (a statement by hand) goes unseen,
//! and for at most [`MAX_AGE`]: a tail or a decision is made again that long after.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use diesel::deserialize::QueryableByName;
use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use quick_cache::sync::Cache;
use synctalk_channels::access;
use synctalk_db::AsyncPgConnection;
use synctalk_gateway::Topic;
use synctalk_guilds::permissions::Permissions;
use synctalk_kernel::{AppError, AppResult, ChannelId, GuildId, UserId};
use uuid::Uuid;

use crate::dto::Message;
use crate::model::MessageRow;
use crate::read::{self, MessagePage, Related, Stored, Wanted};

/// How long a tail is served after it was read: bounds how long a change that appends no
/// event (made by hand in the database) goes unseen.
pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// The heaviest tail, in bytes: a channel of long messages naming many people keeps
/// fewer messages.
const MOST_BYTES: u64 = 1024 * 1024;

/// Messages kept per channel: the largest page.
pub const KEPT: usize = synctalk_kernel::pagination::MAX_LIMIT as usize;

/// Whose tail: a guild channel's is shared by its readers; a DM's or group DM's is each
/// reader's own, so a quick page never tells one recipient that another has just read
/// the conversation (which a block must keep from them, as it keeps receipts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    channel: ChannelId,
    reader: Option<UserId>,
}

/// The tails of the channels this node was asked for, at most a budget of bytes (least
/// used first out).
#[derive(Clone)]
pub struct Tails {
    cache: Option<Arc<Cache<Key, Arc<Tail>, Weight>>>,
    /// The heaviest tail kept (heavier ones keep fewer messages).
    most: u64,
    /// Tails being read: one reader at a time fills a tail, the others read their page.
    filling: Arc<Mutex<HashSet<Key>>>,
    /// Readers found allowed to read a guild channel's history (see [`Known`]).
    known: Option<Arc<Cache<(ChannelId, UserId), Known>>>,
}

/// That a reader may read a guild channel's history, as decided from the database when
/// the newest outbox ids of the guild's topic and the channel's were these. Every change
/// that decides who sees what in a guild channel appends to one of the two topics in its
/// transaction: membership, roles, member roles, the guild's owner or deletion on the
/// guild's; the channel's permission overwrites on the channel's. So while both ids stay
/// the same (and for at most [`MAX_AGE`]) so does the decision, and a page needs no other
/// statement than the one reading them.
#[derive(Debug, Clone, Copy)]
struct Known {
    guild: GuildId,
    guild_version: Option<i64>,
    channel_version: Option<i64>,
    at: std::time::Instant,
}

impl Known {
    fn holds(&self, now: &Now) -> bool {
        self.at.elapsed() < MAX_AGE
            && self.guild_version == now.guild_version
            && self.channel_version == now.version
    }
}

impl std::fmt::Debug for Tails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tails")
            .field("tails", &self.cache.as_ref().map_or(0, |c| c.len()))
            .field("bytes", &self.cache.as_ref().map_or(0, |c| c.weight()))
            .finish()
    }
}

impl Tails {
    /// Tails of at most `bytes` in all; 0 keeps none (every page from the table).
    pub fn new(bytes: u64) -> Self {
        let cache = (bytes > 0).then(|| {
            // A typical tail: 100 messages of a few hundred bytes.
            let tails = usize::try_from(bytes / (32 * 1024)).unwrap_or(usize::MAX);
            Arc::new(Cache::with_weighter(tails.max(16), bytes, Weight))
        });
        // Readers' decisions, a hundred bytes or so each: a tenth of the budget more.
        let entries = usize::try_from(bytes / 1024)
            .unwrap_or(usize::MAX)
            .max(1024);
        Self {
            known: cache.is_some().then(|| Arc::new(Cache::new(entries))),
            cache,
            // Well within one shard of the cache (it refuses an item heavier than that).
            most: (bytes / 64).min(MOST_BYTES),
            filling: Arc::default(),
        }
    }

    fn known(&self, channel: ChannelId, reader: UserId) -> Option<Known> {
        self.known.as_ref()?.get(&(channel, reader))
    }

    fn get(&self, key: Key) -> Option<Arc<Tail>> {
        self.cache.as_ref()?.get(&key)
    }

    /// Keeps `tail` unless one read at a later version is there.
    fn keep(&self, key: Key, tail: Tail) {
        if let Some(cache) = &self.cache
            && cache
                .get(&key)
                .is_none_or(|kept| kept.version <= tail.version)
        {
            cache.insert(key, Arc::new(tail));
        }
    }

    /// The right to fill `key`'s tail, unless another request is filling it.
    fn fill(&self, key: Key) -> Option<Filling<'_>> {
        let mut filling = self.filling.lock().unwrap_or_else(PoisonError::into_inner);
        filling.insert(key).then_some(Filling { tails: self, key })
    }
}

/// A tail being filled (see [`Tails::fill`]).
struct Filling<'a> {
    tails: &'a Tails,
    key: Key,
}

impl Drop for Filling<'_> {
    fn drop(&mut self) {
        let mut filling = self
            .tails
            .filling
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        filling.remove(&self.key);
    }
}

/// A tail weighs its bytes.
#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<Key, Arc<Tail>> for Weight {
    fn weight(&self, _key: &Key, tail: &Arc<Tail>) -> u64 {
        tail.bytes
    }
}

/// A channel's newest live messages, as read at `version` (see the module).
#[derive(Debug)]
struct Tail {
    version: Option<i64>,
    /// The users the messages show, by id, and when each was last changed.
    people: Vec<Uuid>,
    seen: Vec<DateTime<Utc>>,
    /// The messages with reactions (`me` is the reader's own).
    reacted: Vec<Uuid>,
    /// When the attachment URLs in it expire, if it has any: a tail is not served once
    /// URLs signed now would differ.
    expires: Option<i64>,
    /// Newest first.
    messages: Vec<Kept>,
    /// Whether `messages` is every live message of the channel.
    complete: bool,
    bytes: u64,
    /// When it was read (it is not served after [`MAX_AGE`]).
    read_at: std::time::Instant,
}

/// One message of a tail.
#[derive(Debug)]
struct Kept {
    id: Uuid,
    /// As anyone sees it (`me` false on every reaction).
    json: Box<[u8]>,
    /// Kept whole when it has reactions: rendered again for a reader who reacted.
    message: Option<Box<Message>>,
}

/// The page's JSON body (an array of [`Message`]s, newest first).
pub type Body = Vec<u8>;

/// What the database says now: the newest outbox ids of the channel's topic and of its
/// guild's, when the users a tail shows were last changed (by id), and the reader's own
/// reactions on its messages with reactions (message and emoji, paired).
#[derive(QueryableByName)]
struct Now {
    #[diesel(sql_type = Nullable<BigInt>)]
    version: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    guild_version: Option<i64>,
    #[diesel(sql_type = Array<Timestamptz>)]
    seen: Vec<DateTime<Utc>>,
    #[diesel(sql_type = Array<diesel::sql_types::Uuid>)]
    mine_messages: Vec<Uuid>,
    #[diesel(sql_type = Array<Text>)]
    mine_emojis: Vec<String>,
}

/// The start of each form of [`now`]'s statement: the channel topic's (`$1`) and the
/// guild topic's (`$2`) newest ids.
macro_rules! ids {
    () => {
        "SELECT (SELECT max(t.id) FROM outbox t WHERE t.topic = $1) AS version, \
                (SELECT max(g.id) FROM outbox g WHERE g.topic = $2) AS guild_version, "
    };
}

/// One statement, one snapshot (see [`Now`]), of what `tail` needs (only the ids without
/// one); each of its three forms kept prepared.
async fn now(
    mut conn: &AsyncPgConnection,
    guild: Option<GuildId>,
    channel: ChannelId,
    reader: UserId,
    tail: Option<&Tail>,
) -> diesel::QueryResult<Now> {
    let topic = Topic::Channel(channel).to_string();
    let guild_topic = guild.map(|g| Topic::Guild(g).to_string());
    let (people, reacted) = tail.map_or((&[][..], &[][..]), |t| (&t.people[..], &t.reacted[..]));
    let query = if people.is_empty() {
        synctalk_db::sql(concat!(
            ids!(),
            "'{}'::timestamptz[] AS seen, '{}'::uuid[] AS mine_messages, \
                    '{}'::text[] AS mine_emojis",
        ))
        .bind::<Text, _>(topic)
        .bind::<Nullable<Text>, _>(guild_topic)
    } else if reacted.is_empty() {
        synctalk_db::sql(concat!(
            ids!(),
            "ARRAY(SELECT u.updated_at FROM users u WHERE u.id = ANY($3) ORDER BY u.id) AS seen, \
                    '{}'::uuid[] AS mine_messages, '{}'::text[] AS mine_emojis",
        ))
        .bind::<Text, _>(topic)
        .bind::<Nullable<Text>, _>(guild_topic)
        .bind::<Array<diesel::sql_types::Uuid>, _>(people.to_vec())
    } else {
        synctalk_db::sql(concat!(
            ids!(),
            "ARRAY(SELECT u.updated_at FROM users u WHERE u.id = ANY($3) ORDER BY u.id) AS seen, \
                    ARRAY(SELECT r.message_id FROM reactions r \
                          WHERE r.channel_id = $4 AND r.message_id = ANY($5) AND r.user_id = $6 \
                          ORDER BY r.message_id, r.emoji) AS mine_messages, \
                    ARRAY(SELECT r.emoji FROM reactions r \
                          WHERE r.channel_id = $4 AND r.message_id = ANY($5) AND r.user_id = $6 \
                          ORDER BY r.message_id, r.emoji) AS mine_emojis",
        ))
        .bind::<Text, _>(topic)
        .bind::<Nullable<Text>, _>(guild_topic)
        .bind::<Array<diesel::sql_types::Uuid>, _>(people.to_vec())
        .bind::<diesel::sql_types::Uuid, _>(channel.0)
        .bind::<Array<diesel::sql_types::Uuid>, _>(reacted.to_vec())
        .bind::<diesel::sql_types::Uuid, _>(reader.0)
    };
    query.get_result(&mut conn).await
}

/// Whether a page could be cut from a tail (`after` and `around` pages never are; older
/// pages only from a tail there is).
fn cuttable(page: MessagePage, tail: bool) -> bool {
    page.after.is_none() && page.around.is_none() && (page.before.is_none() || tail)
}

/// A reader's standing in a channel, with the newest outbox ids of the channel's topic
/// and of its guild's, all read in one snapshot.
#[derive(QueryableByName)]
struct Checked {
    #[diesel(embed)]
    standing: access::Standing,
    #[diesel(sql_type = Nullable<BigInt>)]
    version: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    guild_version: Option<i64>,
}

/// The statement every channel route decides access with, and the two ids beside it (two
/// index probes, the same work for anyone who asks).
async fn checked(
    mut conn: &AsyncPgConnection,
    channel: ChannelId,
    reader: UserId,
) -> diesel::QueryResult<Option<Checked>> {
    use diesel::OptionalExtension;
    synctalk_db::sql(synctalk_channels::standing_sql!(
        ", (SELECT max(t.id) FROM outbox t WHERE t.topic = 'channel:' || c.id::text) AS version, \
           (SELECT max(t.id) FROM outbox t WHERE t.topic = 'guild:' || c.guild_id::text) AS guild_version"
    ))
    .bind::<diesel::sql_types::Uuid, _>(channel.0)
    .bind::<diesel::sql_types::Uuid, _>(reader.0)
    .get_result(&mut conn)
    .await
    .optional()
}

/// A page of `channel` for `reader`: 404 unless they can see the channel, 403 without
/// READ_MESSAGE_HISTORY. Cut from the node's tail when the database confirms it, else
/// read from the table (and a newest page kept). A reader already found allowed in a
/// guild channel is confirmed by the same one statement (see `Known`).
pub async fn page(
    conn: &AsyncPgConnection,
    tails: &Tails,
    reader: UserId,
    channel: ChannelId,
    page: MessagePage,
) -> AppResult<Body> {
    if tails.cache.is_none() {
        metrics::counter!("message_page_access_total", "from" => "table").increment(1);
        metrics::counter!("message_pages_total", "from" => "table").increment(1);
        let access = access::load(conn, channel, reader, false).await?;
        access.require(Permissions::READ_MESSAGE_HISTORY, READ)?;
        return from_table(conn, channel, access.row.guild_id, reader, page).await;
    }
    let shared = Key {
        channel,
        reader: None,
    };
    if let Some(known) = tails.known(channel, reader) {
        let tail = tails.get(shared).filter(|_| cuttable(page, true));
        let now = now(conn, Some(known.guild), channel, reader, tail.as_deref()).await?;
        if known.holds(&now) {
            metrics::counter!("message_page_access_total", "from" => "memory").increment(1);
            return serve(
                conn,
                tails,
                shared,
                tail,
                now,
                Some(known.guild),
                reader,
                page,
            )
            .await;
        }
        if let Some(known_readers) = &tails.known {
            known_readers.remove(&(channel, reader));
        }
    }
    metrics::counter!("message_page_access_total", "from" => "table").increment(1);
    // The page is read only once the check allows: read beside it, its time would tell
    // someone who cannot read the channel whether it holds messages in a range of ids.
    let at = std::time::Instant::now();
    let not_found = || AppError::not_found("channel");
    let Checked {
        standing,
        version,
        guild_version,
    } = checked(conn, channel, reader)
        .await?
        .ok_or_else(not_found)?;
    let access = standing.decide(reader).ok_or_else(not_found)?;
    access.require(Permissions::READ_MESSAGE_HISTORY, READ)?;
    let guild = access.row.guild_id;
    if let (Some(guild), Some(known)) = (guild, &tails.known) {
        let decided = Known {
            guild,
            guild_version,
            channel_version: version,
            at,
        };
        known.insert((channel, reader), decided);
    }
    let key = Key {
        channel,
        reader: guild.is_none().then_some(reader),
    };
    let tail = tails.get(key).filter(|_| cuttable(page, true));
    // A tail at the channel's version is confirmed by its users and the reader's
    // reactions; any other is stale, and the ids read with the check will do.
    let now = match &tail {
        Some(t) if t.version == version => now(conn, guild, channel, reader, Some(t)).await?,
        _ => Now {
            version,
            guild_version,
            seen: Vec::new(),
            mine_messages: Vec::new(),
            mine_emojis: Vec::new(),
        },
    };
    serve(conn, tails, key, tail, now, guild, reader, page).await
}

/// What a page needs: READ_MESSAGE_HISTORY.
const READ: &str = "read messages here";

/// The page from `tail` if `now` confirms it, else from the table (a newest page filling
/// the tail, unless another request is).
#[allow(clippy::too_many_arguments)]
async fn serve(
    conn: &AsyncPgConnection,
    tails: &Tails,
    key: Key,
    tail: Option<Arc<Tail>>,
    now: Now,
    guild: Option<GuildId>,
    reader: UserId,
    page: MessagePage,
) -> AppResult<Body> {
    let channel = key.channel;
    if let Some(tail) = &tail
        && tail.read_at.elapsed() < MAX_AGE
        && tail.version == now.version
        && tail.seen == now.seen
        && tail
            .expires
            .is_none_or(|e| e == crate::attachments::url_expiry(Utc::now()))
        && let Some(body) = tail.cut(page, &now.mine_messages, &now.mine_emojis)
    {
        metrics::counter!("message_pages_total", "from" => "memory").increment(1);
        return Ok(body);
    }
    metrics::counter!("message_pages_total", "from" => "table").increment(1);
    let newest = page.before.is_none() && page.after.is_none() && page.around.is_none();
    let Some(_filling) = newest.then(|| tails.fill(key)).flatten() else {
        return from_table(conn, channel, guild, reader, page).await;
    };
    // The newest page, as many as a tail keeps, read after the version.
    let wanted = usize::try_from(page.limit).unwrap_or(KEPT).min(KEPT);
    let all = MessagePage {
        limit: KEPT as i64,
        ..page
    };
    let rows = read::page(conn, channel, all).await?;
    let (tail, messages) =
        Tail::read(conn, channel, guild, reader, now.version, rows, tails.most).await?;
    let body = render(&messages[..wanted.min(messages.len())]);
    if let Some(tail) = tail {
        tails.keep(key, tail);
    }
    body
}

/// A page read from the table.
async fn from_table(
    conn: &AsyncPgConnection,
    channel: ChannelId,
    guild: Option<GuildId>,
    reader: UserId,
    page: MessagePage,
) -> AppResult<Body> {
    let rows = read::page(conn, channel, page).await?;
    let messages = read::hydrate(conn, channel, guild, Some(reader), rows).await?;
    render(&messages)
}

fn render(messages: &[Message]) -> AppResult<Body> {
    serde_json::to_vec(messages).map_err(AppError::internal)
}

impl Tail {
    /// The tail of `rows` (a channel's newest, up to [`KEPT`]) read at `version`, of at
    /// most `most` bytes (`None` if it cannot be kept), and the messages as `reader` sees
    /// them.
    async fn read(
        conn: &AsyncPgConnection,
        channel: ChannelId,
        guild: Option<GuildId>,
        reader: UserId,
        version: Option<i64>,
        rows: Vec<MessageRow>,
        most: u64,
    ) -> AppResult<(Option<Self>, Vec<Message>)> {
        let read_at = std::time::Instant::now();
        let mut complete = rows.len() < KEPT;
        let expires = crate::attachments::url_expiry(Utc::now());
        let related = Related::load(
            conn,
            channel,
            Some(reader),
            &Wanted::of(&rows),
            Stored::Existing,
        )
        .await?;
        let signed = crate::attachments::url_expiry(Utc::now());
        let (people, seen): (Vec<Uuid>, Vec<DateTime<Utc>>) =
            related.seen.iter().map(|(id, at)| (id.0, *at)).unzip();
        let filed = rows.iter().any(|r| r.has_attachments);
        let messages = related.assemble(rows, guild)?;
        // What a tail costs beside its messages (the cache's slot, the lists).
        let mut bytes = (std::mem::size_of::<Self>() + 128 + people.len() * 32) as u64;
        let mut kept = Vec::with_capacity(messages.len());
        let mut reacted = Vec::new();
        for message in &messages {
            let mut anyone = message.clone();
            for r in &mut anyone.reactions {
                r.me = false;
            }
            let json = serde_json::to_vec(&anyone)
                .map_err(AppError::internal)?
                .into_boxed_slice();
            // A message kept whole (with reactions) takes about its JSON again.
            let whole = !anyone.reactions.is_empty();
            let weight =
                (std::mem::size_of::<Kept>() + json.len() * (1 + usize::from(whole))) as u64;
            if bytes + weight > most {
                complete = false;
                break;
            }
            bytes += weight;
            if whole {
                reacted.push(anyone.id.0);
            }
            kept.push(Kept {
                id: message.id.0,
                json,
                message: whole.then(|| Box::new(anyone)),
            });
        }
        // URLs signed as the hour turned: which expiry they carry is not known.
        let keep = (complete || !kept.is_empty()) && (!filed || expires == signed);
        let tail = keep.then(|| Self {
            version,
            people,
            seen,
            reacted,
            expires: filed.then_some(signed),
            messages: kept,
            complete,
            bytes,
            read_at,
        });
        Ok((tail, messages))
    }

    /// The page (newest, or `before` a message) from memory, with `me` on the reader's
    /// own reactions (`mine`: message and emoji, paired); `None` when the tail does not
    /// hold all of it.
    fn cut(&self, page: MessagePage, mine: &[Uuid], emojis: &[String]) -> Option<Body> {
        if page.after.is_some() || page.around.is_some() {
            return None;
        }
        let len = self.messages.len();
        let start = page.before.map_or(0, |before| {
            self.messages.partition_point(|m| m.id >= before)
        });
        let end = start.checked_add(usize::try_from(page.limit).ok()?)?;
        if end > len && !self.complete {
            return None;
        }
        let slice = &self.messages[start.min(len)..end.min(len)];
        let mut body =
            Vec::with_capacity(2 + slice.iter().map(|m| m.json.len() + 1).sum::<usize>());
        body.push(b'[');
        for (i, kept) in slice.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            match &kept.message {
                Some(message) if mine.contains(&kept.id) => {
                    let mut message = (**message).clone();
                    for r in &mut message.reactions {
                        r.me = mine
                            .iter()
                            .zip(emojis)
                            .any(|(m, e)| *m == kept.id && *e == r.emoji);
                    }
                    serde_json::to_writer(&mut body, &message).ok()?;
                }
                _ => body.extend_from_slice(&kept.json),
            }
        }
        body.push(b']');
        Some(body)
    }
}

impl Kept {
    #[cfg(test)]
    fn plain(id: Uuid) -> Self {
        Self {
            id,
            json: format!("\"{id}\"").into_bytes().into_boxed_slice(),
            message: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(n: u128, complete: bool) -> Tail {
        // Newest first: ids n..1.
        Tail {
            version: Some(1),
            people: Vec::new(),
            seen: Vec::new(),
            reacted: Vec::new(),
            expires: None,
            messages: (1..=n)
                .rev()
                .map(|i| Kept::plain(Uuid::from_u128(i)))
                .collect(),
            complete,
            bytes: 1,
            read_at: std::time::Instant::now(),
        }
    }

    fn ids(body: &[u8]) -> Vec<u128> {
        let list: Vec<Uuid> = serde_json::from_slice(body).unwrap_or_default();
        list.into_iter().map(|u| u.as_u128()).collect()
    }

    fn page(limit: i64, before: Option<u128>) -> MessagePage {
        MessagePage {
            limit,
            before: before.map(Uuid::from_u128),
            after: None,
            around: None,
        }
    }

    #[test]
    fn a_page_is_cut_only_when_the_tail_holds_all_of_it() {
        let full = tail(100, false);
        assert_eq!(
            ids(&full.cut(page(3, None), &[], &[]).unwrap_or_default()),
            [100, 99, 98]
        );
        assert_eq!(
            ids(&full.cut(page(2, Some(50)), &[], &[]).unwrap_or_default()),
            [49, 48]
        );
        // Below the id of no kept message: from the next older one.
        assert_eq!(
            ids(&full.cut(page(1, Some(1000)), &[], &[]).unwrap_or_default()),
            [100]
        );
        // Older than the tail reaches: the table's.
        assert!(full.cut(page(50, Some(40)), &[], &[]).is_none());
        assert!(full.cut(page(1, Some(1)), &[], &[]).is_none());
        // A channel with fewer messages than a tail keeps: all of it is here.
        let small = tail(5, true);
        assert_eq!(
            ids(&small.cut(page(50, None), &[], &[]).unwrap_or_default()),
            [5, 4, 3, 2, 1]
        );
        assert_eq!(
            ids(&small.cut(page(50, Some(2)), &[], &[]).unwrap_or_default()),
            [1]
        );
        assert_eq!(
            small.cut(page(50, Some(1)), &[], &[]).as_deref(),
            Some(&b"[]"[..])
        );
        // Other cursors: the table's.
        let after = MessagePage {
            after: Some(Uuid::from_u128(1)),
            ..page(5, None)
        };
        assert!(small.cut(after, &[], &[]).is_none());
    }
}
