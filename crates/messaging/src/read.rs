//! Reading messages: pages newest first by keyset on the id (never offsets), and
//! turning rows into [`Message`]s (authors, mentioned users, reply summaries and
//! reaction counts, each in one query for a whole page).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::RunQueryDsl;
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{messages, users};
use synctalk_kernel::{
    AppError, AppResult, ChannelId, ErrorCode, GuildId, MessageId, RoleId, UserId,
};
use synctalk_users::dto::User;
use uuid::Uuid;

use crate::dto::{Message, MessageQuery, Reaction, ReplySummary};
use crate::model::MessageRow;

/// A checked message list request. Each cursor is a bound: `before` an upper one,
/// `after` a lower one, and `around` the middle of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessagePage {
    /// 1-100.
    pub limit: i64,
    /// Only ids below.
    pub before: Option<Uuid>,
    /// Only ids above.
    pub after: Option<Uuid>,
    /// Half the page at or above, half below.
    pub around: Option<Uuid>,
}

impl MessageQuery {
    /// 400 `invalid_query` for a limit out of 1-100.
    pub fn parse(&self) -> AppResult<MessagePage> {
        let limit = self
            .limit
            .unwrap_or(synctalk_kernel::pagination::DEFAULT_LIMIT);
        if !(1..=synctalk_kernel::pagination::MAX_LIMIT).contains(&limit) {
            return Err(AppError::new(
                ErrorCode::InvalidQuery,
                "limit must be between 1 and 100",
            ));
        }
        Ok(MessagePage {
            limit: i64::from(limit),
            before: self.before,
            after: self.after,
            around: self.around,
        })
    }
}

fn live_in(channel: ChannelId) -> messages::BoxedQuery<'static, diesel::pg::Pg> {
    messages::table
        .filter(messages::channel_id.eq(channel))
        .filter(messages::deleted_at.is_null())
        .into_boxed()
}

/// A page of a channel's live messages, newest first: the newest (below `before`);
/// with `after`, the oldest above it (and below `before`); with `around`, the message
/// and those just after it, then those just before it, half and half, within the
/// bounds.
pub async fn page(
    mut conn: &AsyncPgConnection,
    channel: ChannelId,
    page: MessagePage,
) -> QueryResult<Vec<MessageRow>> {
    let select = MessageRow::as_select();
    if let (None, None) = (page.around, page.after) {
        // The usual pages (the newest, or the next older): a statement per limit,
        // the limit written in, kept prepared and planned once (see `limited`).
        // Read in one of four sizes and cut to the limit: a client cycling through
        // every limit makes eight statements per connection, not two hundred.
        let wanted = usize::try_from(page.limit).unwrap_or(usize::MAX);
        let limit = match wanted {
            0..=10 => 10,
            11..=25 => 25,
            26..=50 => 50,
            _ => 100,
        };
        let newest = messages::table
            .filter(messages::channel_id.eq(channel))
            .filter(messages::deleted_at.is_null())
            .order(messages::id.desc())
            .select(select);
        let mut rows: Vec<MessageRow> = match page.before {
            None => synctalk_db::limited(newest, limit).load(&mut conn).await?,
            Some(before) => {
                let older = newest.filter(messages::id.lt(MessageId(before)));
                synctalk_db::limited(older, limit).load(&mut conn).await?
            }
        };
        rows.truncate(wanted);
        return Ok(rows);
    }
    let conn = &mut conn;
    let bounded = || {
        let mut q = live_in(channel);
        if let Some(before) = page.before {
            q = q.filter(messages::id.lt(MessageId(before)));
        }
        if let Some(after) = page.after {
            q = q.filter(messages::id.gt(MessageId(after)));
        }
        q
    };
    let newest_first = |q: messages::BoxedQuery<'static, diesel::pg::Pg>, limit: i64| {
        q.order(messages::id.desc()).limit(limit).select(select)
    };
    let oldest_first = |q: messages::BoxedQuery<'static, diesel::pg::Pg>, limit: i64| {
        q.order(messages::id.asc()).limit(limit).select(select)
    };
    Ok(match (page.around, page.after) {
        (Some(middle), _) => {
            // The newer half includes the message itself.
            let newer = page.limit - page.limit / 2;
            let q = bounded().filter(messages::id.ge(MessageId(middle)));
            let mut rows: Vec<MessageRow> = oldest_first(q, newer).load(conn).await?;
            rows.reverse();
            let q = bounded().filter(messages::id.lt(MessageId(middle)));
            let older: Vec<MessageRow> = newest_first(q, page.limit / 2).load(conn).await?;
            rows.extend(older);
            rows
        }
        (None, Some(_)) => {
            let mut rows: Vec<MessageRow> = oldest_first(bounded(), page.limit).load(conn).await?;
            rows.reverse();
            rows
        }
        (None, None) => newest_first(bounded(), page.limit).load(conn).await?,
    })
}

/// One live message of a channel.
pub async fn one(
    mut conn: &AsyncPgConnection,
    channel: ChannelId,
    id: MessageId,
    lock: bool,
) -> QueryResult<Option<MessageRow>> {
    let query = messages::table
        .filter(messages::channel_id.eq(channel))
        .filter(messages::id.eq(id))
        .filter(messages::deleted_at.is_null())
        .select(MessageRow::as_select());
    // FOR NO KEY UPDATE: edits and deletes change no key, and a reply's foreign key
    // (a key-share lock) must not wait on them while they wait on the channel's lock
    // that the replying send holds.
    if lock {
        query.for_no_key_update().first(&mut conn).await.optional()
    } else {
        query.first(&mut conn).await.optional()
    }
}

/// One emoji's count on one message.
#[derive(QueryableByName)]
struct ReactionCount {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    message_id: Uuid,
    #[diesel(sql_type = Text)]
    emoji: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
    #[diesel(sql_type = Bool)]
    me: bool,
}

/// Users by id, deleted ones too (an old message keeps its author), with when each
/// was last changed (by id).
pub(crate) async fn users_by_id(
    mut conn: &AsyncPgConnection,
    ids: &[UserId],
) -> QueryResult<(HashMap<UserId, User>, Vec<(UserId, DateTime<Utc>)>)> {
    if ids.is_empty() {
        return Ok((HashMap::new(), Vec::new()));
    }
    // What others see of them: no email, no password hash.
    let rows: Vec<(User, DateTime<Utc>)> = users::table
        .filter(users::id.eq_any(ids))
        .select((User::as_select(), users::updated_at))
        .load(&mut conn)
        .await?;
    let mut seen: Vec<(UserId, DateTime<Utc>)> = rows.iter().map(|(u, at)| (u.id, *at)).collect();
    seen.sort_unstable_by_key(|(id, _)| *id);
    Ok((rows.into_iter().map(|(u, _)| (u.id, u)).collect(), seen))
}

/// The summaries of the messages some messages reply to (deleted ones as "deleted").
async fn reply_summaries(
    mut conn: &AsyncPgConnection,
    channel: ChannelId,
    replied: &[MessageId],
) -> QueryResult<HashMap<MessageId, ReplySummary>> {
    if replied.is_empty() {
        return Ok(HashMap::new());
    }
    let found: Vec<(MessageId, UserId, String, bool)> = messages::table
        .filter(messages::channel_id.eq(channel))
        .filter(messages::id.eq_any(replied))
        .select((
            messages::id,
            messages::author_id,
            messages::content,
            messages::deleted_at.is_not_null(),
        ))
        .load(&mut conn)
        .await?;
    Ok(found
        .into_iter()
        .map(|(id, author_id, content, deleted)| {
            let content = if deleted { String::new() } else { content };
            (
                id,
                ReplySummary {
                    id,
                    author_id,
                    content,
                    deleted,
                },
            )
        })
        .collect())
}

/// Each emoji's count on some messages, with whether `viewer` reacted with it.
async fn reaction_counts(
    mut conn: &AsyncPgConnection,
    channel: ChannelId,
    ids: &[MessageId],
    viewer: Option<UserId>,
) -> QueryResult<Vec<ReactionCount>> {
    synctalk_db::sql(
        "SELECT message_id, emoji, count(*) AS count, coalesce(bool_or(user_id = $3), false) AS me \
         FROM reactions WHERE channel_id = $1 AND message_id = ANY($2) \
         GROUP BY message_id, emoji ORDER BY message_id, min(created_at), emoji",
    )
    .bind::<diesel::sql_types::Uuid, _>(channel.0)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(
        ids.iter().map(|m| m.0).collect::<Vec<_>>(),
    )
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Uuid>, _>(viewer.map(|v| v.0))
    .load(&mut conn)
    .await
}

/// Turns rows of one channel into messages as `viewer` sees them (`me` on
/// reactions); `None` for what everyone sees (events).
pub async fn hydrate(
    conn: &AsyncPgConnection,
    channel: ChannelId,
    guild: Option<GuildId>,
    viewer: Option<UserId>,
    rows: Vec<MessageRow>,
) -> AppResult<Vec<Message>> {
    hydrate_rows(conn, channel, guild, viewer, rows, Stored::Existing).await
}

/// What is known of the rows [`hydrate_rows`] turns into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Rows read from the table: reactions and attachments are looked up.
    Existing,
    /// A message inserted in this transaction: no reactions yet; attachments only if
    /// it was sent with some.
    New {
        /// Whether it carries attachments.
        attachments: bool,
    },
}

/// [`hydrate`], skipping the reads that `stored` says would find nothing.
pub async fn hydrate_rows(
    conn: &AsyncPgConnection,
    channel: ChannelId,
    guild: Option<GuildId>,
    viewer: Option<UserId>,
    rows: Vec<MessageRow>,
    stored: Stored,
) -> AppResult<Vec<Message>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let related = Related::load(conn, channel, viewer, &Wanted::of(&rows), stored).await?;
    related.assemble(rows, guild)
}

/// What messages need from other rows to be shown: their ids (for reactions and
/// files), the users they name (authors and mentions) and the messages they answer.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    ids: Vec<MessageId>,
    people: Vec<UserId>,
    replied: Vec<MessageId>,
    /// Of stored rows, those that may have reactions, and those with files.
    reacted: Vec<MessageId>,
    filed: Vec<MessageId>,
}

impl Wanted {
    /// What `rows` need.
    pub fn of(rows: &[MessageRow]) -> Self {
        let mut people: Vec<UserId> = rows.iter().map(|r| r.author_id).collect();
        people.extend(
            rows.iter()
                .flat_map(|r| r.mentions.iter().flatten().map(|u| UserId(*u))),
        );
        let mut wanted = Self::new(
            rows.iter().map(|r| r.id).collect(),
            people,
            rows.iter().filter_map(|r| r.reply_to).collect(),
        );
        wanted.reacted = rows
            .iter()
            .filter(|r| r.has_reactions)
            .map(|r| r.id)
            .collect();
        wanted.filed = rows
            .iter()
            .filter(|r| r.has_attachments)
            .map(|r| r.id)
            .collect();
        wanted
    }

    /// What messages `ids` by (or naming) `people` and answering `replied` need: known
    /// before a new message's row is written.
    pub fn new(ids: Vec<MessageId>, mut people: Vec<UserId>, replied: Vec<MessageId>) -> Self {
        people.sort_unstable();
        people.dedup();
        Self {
            ids,
            people,
            replied,
            reacted: Vec::new(),
            filed: Vec::new(),
        }
    }
}

/// The other rows some messages are shown with.
pub struct Related {
    users: HashMap<UserId, User>,
    /// When each of `users` was last changed, by id.
    pub seen: Vec<(UserId, DateTime<Utc>)>,
    summaries: HashMap<MessageId, ReplySummary>,
    counted: Vec<ReactionCount>,
    files: HashMap<MessageId, Vec<crate::attachments::Attachment>>,
}

impl Related {
    /// What new messages that name nobody but their authors are shown with: `users`,
    /// with their authors among them.
    pub(crate) fn of_authors(users: HashMap<UserId, User>) -> Self {
        Self {
            users,
            seen: Vec::new(),
            summaries: HashMap::new(),
            counted: Vec::new(),
            files: HashMap::new(),
        }
    }

    /// Reads what `wanted` names, as `viewer` sees it (`me` on reactions), skipping the
    /// reads that `stored` says would find nothing: four reads that depend only on the
    /// messages, sent together in one round trip.
    pub async fn load(
        shared: &AsyncPgConnection,
        channel: ChannelId,
        viewer: Option<UserId>,
        wanted: &Wanted,
        stored: Stored,
    ) -> QueryResult<Self> {
        let Wanted {
            ids,
            people,
            replied,
            reacted,
            filed,
        } = wanted;
        let ((users, seen), summaries, counted, files) = futures_util::try_join!(
            users_by_id(shared, people),
            reply_summaries(shared, channel, replied),
            // Stored rows say whether they have reactions or files: a page with
            // neither reads neither.
            async {
                match stored {
                    Stored::Existing if !reacted.is_empty() => {
                        reaction_counts(shared, channel, reacted, viewer).await
                    }
                    _ => Ok(Vec::new()),
                }
            },
            async {
                match stored {
                    Stored::New { attachments: true } => {
                        crate::attachments::of_messages(shared, channel, ids).await
                    }
                    Stored::Existing if !filed.is_empty() => {
                        crate::attachments::of_messages(shared, channel, filed).await
                    }
                    _ => Ok(HashMap::new()),
                }
            },
        )?;
        Ok(Self {
            users,
            seen,
            summaries,
            counted,
            files,
        })
    }

    /// `rows` (of one channel, of `guild`) as messages.
    pub fn assemble(
        self,
        rows: Vec<MessageRow>,
        guild: Option<GuildId>,
    ) -> AppResult<Vec<Message>> {
        let Self {
            users,
            seen: _,
            summaries,
            counted,
            mut files,
        } = self;
        let mut by_message: HashMap<MessageId, Vec<Reaction>> = HashMap::new();
        for r in counted {
            by_message
                .entry(MessageId(r.message_id))
                .or_default()
                .push(Reaction {
                    emoji: r.emoji,
                    count: r.count,
                    me: r.me,
                });
        }

        rows.into_iter()
            .map(|row| {
                let author = users
                    .get(&row.author_id)
                    .cloned()
                    .ok_or_else(|| AppError::internal(anyhow::anyhow!("message author missing")))?;
                Ok(Message {
                    id: row.id,
                    channel_id: row.channel_id,
                    guild_id: guild,
                    author,
                    mentions: row
                        .mentions
                        .iter()
                        .flatten()
                        .filter_map(|u| users.get(&UserId(*u)).cloned())
                        .collect(),
                    mention_roles: row
                        .mention_roles
                        .iter()
                        .flatten()
                        .map(|r| RoleId(*r))
                        .collect(),
                    mention_everyone: row.mention_everyone,
                    reply_to: row.reply_to.and_then(|r| summaries.get(&r).cloned()),
                    attachments: files.remove(&row.id).unwrap_or_default(),
                    reactions: by_message.remove(&row.id).unwrap_or_default(),
                    pinned: row.pinned_at.is_some(),
                    nonce: row.nonce,
                    content: row.content,
                    created_at: row.created_at,
                    edited_at: row.edited_at,
                })
            })
            .collect()
    }
}
