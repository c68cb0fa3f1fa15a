//! Sending, editing and deleting messages: each change and its event in one
//! transaction, the event on the channel's topic (one outbox row, whatever the
//! channel's size). Who may do what is decided by `synctalk_channels::access`.

use std::collections::HashMap;

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use synctalk_channels::access::{self, ChannelAccess};
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{channel_recipients, guilds, members, messages, roles, users};
use synctalk_gateway::{Outgoing, Topic, event};
use synctalk_guilds::dto::ChannelKind;
use synctalk_guilds::permissions::Permissions;
use synctalk_kernel::{AppError, AppResult, ChannelId, ErrorCode, MessageId, UserId};
use synctalk_users::relationships;
use uuid::Uuid;

use crate::dto::Message;
use crate::events::{MessageCreate, MessageDelete, MessageUpdate};
use crate::mentions;
use crate::model::MessageRow;
use crate::read;
use crate::{attachments, receipts};

/// The longest message, in characters.
pub const MAX_CONTENT: usize = 4000;
/// The longest nonce, in characters.
pub const MAX_NONCE: usize = 64;

/// Checks a message's content: at most 4000 characters, not all blank (kept trimmed),
/// no control characters but line breaks and tabs. The problem is for `content`.
pub fn parse_content(value: &str) -> Result<String, String> {
    if value.chars().count() > MAX_CONTENT {
        return Err(format!("must be at most {MAX_CONTENT} characters"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err("must not contain control characters".into());
    }
    if !value.chars().any(visible) {
        return Err("must not be blank (or only invisible characters)".into());
    }
    Ok(value.trim().to_owned())
}

/// Whether a character shows something: not blank, not a control, not one of the
/// characters that show nothing on their own (soft hyphen, zero-width spaces and
/// joiners, direction marks and overrides, invisible operators, variation selectors,
/// fillers, the Braille blank).
fn visible(c: char) -> bool {
    !c.is_whitespace()
        && !c.is_control()
        && !matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
        )
}

/// Checks a nonce: 1-64 characters, no control characters.
pub fn parse_nonce(value: &str) -> Result<String, String> {
    if value.is_empty() || value.chars().count() > MAX_NONCE {
        return Err(format!("must be 1 to {MAX_NONCE} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(value.to_owned())
}

/// A message to send, checked.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Its content.
    pub content: String,
    /// The message it answers.
    pub reply_to: Option<MessageId>,
    /// The retry key.
    pub nonce: Option<String>,
    /// Uploads of the sender's to attach (distinct, at most 10).
    pub attachment_ids: Vec<Uuid>,
}

/// 409 for a channel that holds no messages (a category).
pub(crate) fn holds_messages(access: &ChannelAccess) -> AppResult<()> {
    if access.kind == ChannelKind::Category {
        return Err(AppError::new(
            ErrorCode::Conflict,
            "a category holds no messages",
        ));
    }
    Ok(())
}

/// In a 1:1 DM, 403 `blocked` when either has blocked the other.
pub(crate) async fn not_blocked(
    mut conn: &AsyncPgConnection,
    access: &ChannelAccess,
    me: UserId,
) -> AppResult<()> {
    if access.kind != ChannelKind::Dm {
        return Ok(());
    }
    let other: Option<UserId> = channel_recipients::table
        .filter(channel_recipients::channel_id.eq(access.row.id))
        .filter(channel_recipients::user_id.ne(me))
        .select(channel_recipients::user_id)
        .first(&mut conn)
        .await
        .optional()?;
    if let Some(other) = other {
        if relationships::has_blocked(conn, other, me).await? {
            return Err(AppError::new(
                ErrorCode::Blocked,
                "this user has blocked you",
            ));
        }
        if relationships::has_blocked(conn, me, other).await? {
            return Err(AppError::new(
                ErrorCode::Blocked,
                "you have blocked this user: unblock them to write",
            ));
        }
    }
    Ok(())
}

/// What `content` mentions that exists here: live users who are in the guild (or the
/// DM), the guild's roles (not `@everyone`) and `@everyone`, both when allowed.
async fn mentions_in(
    mut conn: &AsyncPgConnection,
    access: &ChannelAccess,
    content: &str,
) -> AppResult<(Vec<Option<Uuid>>, Vec<Option<Uuid>>, bool)> {
    let parsed = mentions::parse(content);
    let ids: Vec<UserId> = parsed.users.iter().map(|u| UserId(*u)).collect();
    let (users, roles, everyone) = match &access.guild {
        Some(guild) => {
            let guild_id = guild.guild.id;
            let users: Vec<UserId> = if ids.is_empty() {
                Vec::new()
            } else {
                members::table
                    .inner_join(users::table.on(users::id.eq(members::user_id)))
                    .filter(members::guild_id.eq(guild_id))
                    .filter(members::user_id.eq_any(&ids))
                    .filter(users::deleted_at.is_null())
                    .select(members::user_id)
                    .load(&mut conn)
                    .await?
            };
            let role_ids: Vec<synctalk_kernel::RoleId> = parsed
                .roles
                .iter()
                .map(|r| synctalk_kernel::RoleId(*r))
                .collect();
            // A role mention needs MENTION_EVERYONE (as in Discord, where a role not
            // marked mentionable is text to anyone without it): otherwise any member
            // could name a role of thousands in their mention counts.
            let roles: Vec<synctalk_kernel::RoleId> = if role_ids.is_empty()
                || !access.permissions.contains(Permissions::MENTION_EVERYONE)
            {
                Vec::new()
            } else {
                roles::table
                    .filter(roles::guild_id.eq(guild_id))
                    .filter(roles::id.eq_any(&role_ids))
                    .filter(roles::id.ne(synctalk_kernel::RoleId(guild_id.0)))
                    .select(roles::id)
                    .load(&mut conn)
                    .await?
            };
            let everyone =
                parsed.everyone && access.permissions.contains(Permissions::MENTION_EVERYONE);
            (
                users,
                roles.into_iter().map(|r| r.0).collect::<Vec<_>>(),
                everyone,
            )
        }
        None => {
            let users: Vec<UserId> = if ids.is_empty() {
                Vec::new()
            } else {
                channel_recipients::table
                    .inner_join(users::table.on(users::id.eq(channel_recipients::user_id)))
                    .filter(channel_recipients::channel_id.eq(access.row.id))
                    .filter(channel_recipients::user_id.eq_any(&ids))
                    .filter(users::deleted_at.is_null())
                    .select(channel_recipients::user_id)
                    .load(&mut conn)
                    .await?
            };
            (users, Vec::new(), parsed.everyone)
        }
    };
    // In the order written.
    let users = parsed
        .users
        .iter()
        .filter(|u| users.contains(&UserId(**u)))
        .map(|u| Some(*u))
        .collect();
    let roles = parsed
        .roles
        .iter()
        .filter(|r| roles.contains(r))
        .map(|r| Some(*r))
        .collect();
    Ok((users, roles, everyone))
}

async fn hydrate_one(
    conn: &AsyncPgConnection,
    access: &ChannelAccess,
    viewer: Option<UserId>,
    row: MessageRow,
) -> AppResult<Message> {
    hydrate_stored(conn, access, viewer, row, read::Stored::Existing).await
}

async fn hydrate_stored(
    conn: &AsyncPgConnection,
    access: &ChannelAccess,
    viewer: Option<UserId>,
    row: MessageRow,
    stored: read::Stored,
) -> AppResult<Message> {
    let guild = access.row.guild_id;
    read::hydrate_rows(conn, access.row.id, guild, viewer, vec![row], stored)
        .await?
        .pop()
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("a message vanished")))
}

async fn by_nonce(
    mut conn: &AsyncPgConnection,
    channel: ChannelId,
    author: UserId,
    nonce: &str,
) -> QueryResult<Option<MessageRow>> {
    messages::table
        .filter(messages::channel_id.eq(channel))
        .filter(messages::author_id.eq(author))
        .filter(messages::nonce.eq(nonce))
        .select(MessageRow::as_select())
        .first(&mut conn)
        .await
        .optional()
}

/// The answer to a retried send: the message first sent with its nonce, unless it has
/// been deleted since (404, as for any deleted message).
async fn retried(
    conn: &AsyncPgConnection,
    access: &ChannelAccess,
    author: UserId,
    row: MessageRow,
) -> AppResult<(Message, bool)> {
    if row.deleted_at.is_some() {
        return Err(AppError::not_found("message"));
    }
    Ok((hydrate_one(conn, access, Some(author), row).await?, false))
}

/// A new message's id, taken under the channel topic's lock (held to commit): ids
/// increase in the order messages commit, whatever the nodes' clocks say, so a
/// client reading `after` the newest id it has never misses one that commits later.
async fn next_id(shared: &AsyncPgConnection, channel: ChannelId) -> AppResult<MessageId> {
    // The newest id is read after the lock is taken (sent together, run in order).
    let newest = async {
        let mut conn = shared;
        let newest = messages::table
            .filter(messages::channel_id.eq(channel))
            .order(messages::id.desc())
            .select(messages::id);
        // `LIMIT 1` written in: planned once (see `synctalk_db::limited`).
        synctalk_db::limited(newest, 1)
            .load::<MessageId>(&mut conn)
            .await
            .map(|ids| ids.into_iter().next())
    };
    let ((), newest) =
        futures_util::try_join!(event::lock_topic(shared, Topic::Channel(channel)), newest)?;
    Ok(id_after(newest))
}

/// A new id above `newest` (the channel's newest, read under its lock): a fresh
/// time-ordered one, or `newest + 1` when the clock is behind it.
pub(crate) fn id_after(newest: Option<MessageId>) -> MessageId {
    let id = MessageId::new();
    match newest {
        Some(newest) if newest.0 >= id.0 => MessageId(Uuid::from_u128(newest.0.as_u128() + 1)),
        _ => id,
    }
}

/// The newest message id of each of `channels` (those that have one), read in one
/// statement; under their locks, as [`next_id`] reads one.
pub(crate) async fn newest_ids(
    mut conn: &AsyncPgConnection,
    channels: &[ChannelId],
) -> AppResult<Vec<(ChannelId, MessageId)>> {
    #[derive(diesel::QueryableByName)]
    struct Newest {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        channel_id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    let channels: Vec<Uuid> = channels.iter().map(|c| c.0).collect();
    let rows: Vec<Newest> = synctalk_db::sql(
        "SELECT c.channel_id, n.id FROM unnest($1::uuid[]) AS c(channel_id) \
         CROSS JOIN LATERAL (SELECT m.id FROM messages m WHERE m.channel_id = c.channel_id \
                             ORDER BY m.id DESC LIMIT 1) AS n",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(channels)
    .load(&mut conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (ChannelId(r.channel_id), MessageId(r.id)))
        .collect())
}

/// Sends a message; `true` when it was made now, `false` when its nonce names one
/// sent before (returned as it is now; 404 if deleted since: nothing is made).
pub async fn send(
    conn: &mut AsyncPgConnection,
    author: UserId,
    channel: ChannelId,
    new: NewMessage,
) -> AppResult<(Message, bool)> {
    // BEGIN goes with the first reads, the MESSAGE_CREATE append with COMMIT.
    event::transaction(conn, async |shared: &AsyncPgConnection| {
        match prepare(shared, author, channel, new).await? {
            Prepared::Retried(message) => Ok(((*message, false), Vec::new())),
            Prepared::Ready(ready) => write(shared, *ready, None).await,
        }
    })
    .await
}

/// A send after its checks: the answer to a retry, or what to write.
pub(crate) enum Prepared {
    /// Its nonce names a message sent before: that message, as it is now.
    Retried(Box<Message>),
    /// Allowed: the message to write.
    Ready(Box<Ready>),
}

/// Whether a send names nothing but its channel (no reply, mention or file): its checks
/// then need only its access and its nonce, which [`prepare_many`] reads for many
/// sends in one statement each.
pub(crate) fn plain(new: &NewMessage) -> bool {
    new.reply_to.is_none()
        && new.attachment_ids.is_empty()
        && mentions::parse(&new.content).is_empty()
}

/// [`prepare`] of many [`plain`] sends at once: their access in one statement and
/// their earlier messages with their nonces in another, sent together. Each send's
/// answer as `prepare` gives it, but `None` for a DM's or group DM's, checked only in
/// part: to run alone (all its checks then), as every send that notifies someone does.
/// An error when a statement failed.
pub(crate) async fn prepare_many(
    shared: &AsyncPgConnection,
    sends: Vec<(UserId, ChannelId, NewMessage)>,
) -> AppResult<Vec<AppResult<Option<Prepared>>>> {
    if sends.is_empty() {
        return Ok(Vec::new());
    }
    let pairs: Vec<(ChannelId, UserId)> = sends.iter().map(|(a, c, _)| (*c, *a)).collect();
    let (accesses, earlier) =
        futures_util::join!(access::load_many(shared, &pairs), by_nonces(shared, &sends));
    let (accesses, mut earlier) = (accesses?, earlier?);
    let mut answers = Vec::with_capacity(sends.len());
    let mut retries = Vec::new();
    for (i, ((author, channel, new), access)) in sends.into_iter().zip(accesses).enumerate() {
        let Some(access) = access else {
            answers.push(Err(AppError::not_found("channel")));
            continue;
        };
        if let Some(row) = earlier.remove(&i) {
            retries.push((i, access, author, row));
            answers.push(Ok(None)); // answered below
            continue;
        }
        answers.push(check_plain(author, channel, new, access));
    }
    // A retry's answer is its first message, read as a page would show it.
    let retried =
        futures_util::future::join_all(retries.iter().map(async |(i, access, author, row)| {
            (*i, retried(shared, access, *author, row.clone()).await)
        }))
        .await;
    for (i, retried) in retried {
        answers[i] = retried.map(|(message, _)| Some(Prepared::Retried(Box::new(message))));
    }
    Ok(answers)
}

/// A plain send's checks once its access is known (and no earlier message has its
/// nonce).
fn check_plain(
    author: UserId,
    channel: ChannelId,
    new: NewMessage,
    access: ChannelAccess,
) -> AppResult<Option<Prepared>> {
    holds_messages(&access)?;
    access.require(Permissions::SEND_MESSAGES, "send messages here")?;
    if access.guild.is_none() {
        return Ok(None);
    }
    Ok(Some(Prepared::Ready(Box::new(Ready {
        author,
        channel,
        new,
        access,
        mentions: Vec::new(),
        mention_roles: Vec::new(),
        mention_everyone: false,
    }))))
}

/// The messages sent before with the nonces of `sends` (those that have one), by the
/// sends' places: one statement.
async fn by_nonces(
    mut conn: &AsyncPgConnection,
    sends: &[(UserId, ChannelId, NewMessage)],
) -> QueryResult<HashMap<usize, MessageRow>> {
    #[derive(QueryableByName)]
    struct Numbered {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
        #[diesel(embed)]
        row: MessageRow,
    }
    let mut places = Vec::new();
    let (mut channels, mut authors, mut nonces) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (author, channel, new)) in sends.iter().enumerate() {
        if let Some(nonce) = &new.nonce {
            places.push(i);
            channels.push(channel.0);
            authors.push(author.0);
            nonces.push(nonce.clone());
        }
    }
    if places.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<Numbered> = synctalk_db::sql(concat!(
        "SELECT q.n, ",
        crate::message_columns!(),
        " FROM unnest($1::uuid[], $2::uuid[], $3::text[]) WITH ORDINALITY \
         AS q(channel_id, author_id, nonce, n) \
         JOIN messages m ON m.channel_id = q.channel_id AND m.author_id = q.author_id \
         AND m.nonce = q.nonce"
    ))
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(channels)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(authors)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(nonces)
    .load(&mut conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let place = places.get(usize::try_from(r.n - 1).ok()?)?;
            Some((*place, r.row))
        })
        .collect())
}

/// A send that may be written: who, where, what, and the mentions that count.
pub(crate) struct Ready {
    /// Who sends it.
    pub(crate) author: UserId,
    /// Where it goes.
    pub(crate) channel: ChannelId,
    new: NewMessage,
    access: ChannelAccess,
    mentions: Vec<Option<Uuid>>,
    mention_roles: Vec<Option<Uuid>>,
    mention_everyone: bool,
}

/// A send's reads and checks, in its transaction: the access, an earlier message with
/// its nonce, a block, the message it answers, its mentions. Writes nothing.
pub(crate) async fn prepare(
    shared: &AsyncPgConnection,
    author: UserId,
    channel: ChannelId,
    new: NewMessage,
) -> AppResult<Prepared> {
    let conn = shared;
    // A message sent before with the nonce is looked for with the access check (one
    // round trip), and used only once it allows.
    let (access, earlier) =
        futures_util::join!(access::load(shared, channel, author, false), async {
            match &new.nonce {
                Some(nonce) => by_nonce(shared, channel, author, nonce).await,
                None => Ok(None),
            }
        },);
    let access = access?;
    if let Some(row) = earlier? {
        return Ok(Prepared::Retried(Box::new(
            retried(conn, &access, author, row).await?.0,
        )));
    }
    holds_messages(&access)?;
    access.require(Permissions::SEND_MESSAGES, "send messages here")?;
    if !new.attachment_ids.is_empty() {
        access.require(Permissions::ATTACH_FILES, "attach files here")?;
    }
    not_blocked(conn, &access, author).await?;
    if let Some(reply) = new.reply_to
        && read::one(conn, channel, reply, false).await?.is_none()
    {
        return Err(AppError::not_found("message to reply to"));
    }
    let (mentions, mention_roles, mention_everyone) =
        mentions_in(conn, &access, &new.content).await?;
    Ok(Prepared::Ready(Box::new(Ready {
        author,
        channel,
        new,
        access,
        mentions,
        mention_roles,
        mention_everyone,
    })))
}

impl Ready {
    /// Whether it notifies anyone beyond those who asked for every message: a message
    /// in a DM or group DM, or one that mentions someone.
    pub(crate) fn notifies(&self) -> bool {
        self.access.guild.is_none()
            || !self.mentions.is_empty()
            || !self.mention_roles.is_empty()
            || self.mention_everyone
    }

    /// Its retry key.
    pub(crate) fn nonce(&self) -> Option<&str> {
        self.new.nonce.as_deref()
    }

    /// Whether [`write_many`] may write it with others: it notifies no one (beyond
    /// followers, which the batch checks) and answers no message.
    pub(crate) fn writes_with_others(&self) -> bool {
        !self.notifies() && self.new.reply_to.is_none() && self.new.attachment_ids.is_empty()
    }

    /// Its channel, guild and author, for
    /// [`synctalk_notifications::settings::others_wanting_all`] (`None` in a DM).
    pub(crate) fn followed(&self) -> Option<(Uuid, Uuid, Uuid)> {
        let guild = self.access.guild.as_ref()?;
        Some((self.channel.0, guild.guild.id.0, self.author.0))
    }

    /// Who asked for every message of its channel (a guild channel's followers; none
    /// in a DM).
    pub(crate) async fn followers(&self, shared: &AsyncPgConnection) -> AppResult<Vec<UserId>> {
        Ok(match &self.access.guild {
            Some(guild) => {
                synctalk_notifications::settings::wanting_all(
                    shared,
                    self.channel.0,
                    guild.guild.id.0,
                )
                .await?
            }
            None => Vec::new(),
        })
    }
}

/// Writes a prepared send, in its transaction: its id under the channel topic's lock,
/// the row, its files and receipts; the message and the events to append (its
/// MESSAGE_CREATE, then its notifications').
///
/// `id`: the id a batch gave it under the channel's lock, having found no followers
/// to notify but the author; else the id and the followers are read here.
pub(crate) async fn write(
    shared: &AsyncPgConnection,
    ready: Ready,
    id: Option<MessageId>,
) -> AppResult<((Message, bool), Vec<Outgoing>)> {
    let conn = shared;
    // Who asked for every message of the channel (for its notifications) is read with
    // the id, in one round trip.
    let (id, wanting_all) = match id {
        Some(id) => (id, Vec::new()),
        None => futures_util::try_join!(next_id(shared, ready.channel), ready.followers(shared))?,
    };
    let Ready {
        author,
        channel,
        new,
        access,
        mentions,
        ..
    } = ready;
    let (mention_roles, mention_everyone) = (ready.mention_roles, ready.mention_everyone);
    let insert = diesel::insert_into(messages::table)
        .values((
            messages::channel_id.eq(channel),
            messages::id.eq(id),
            messages::author_id.eq(author),
            messages::content.eq(&new.content),
            messages::nonce.eq(&new.nonce),
            messages::reply_to.eq(new.reply_to),
            messages::mentions.eq(&mentions),
            messages::mention_roles.eq(&mention_roles),
            messages::mention_everyone.eq(mention_everyone),
            messages::has_attachments.eq(!new.attachment_ids.is_empty()),
        ))
        .on_conflict_do_nothing()
        .returning(MessageRow::as_returning());
    let stored = read::Stored::New {
        attachments: !new.attachment_ids.is_empty(),
    };
    let mut people = vec![author];
    people.extend(mentions.iter().flatten().map(|u| UserId(*u)));
    let wanted = read::Wanted::new(vec![id], people, new.reply_to.into_iter().collect());
    // Without files, what the message is shown with (its author, mentions and the
    // message it answers) is read in the INSERT's round trip.
    let (inserted, related) = if new.attachment_ids.is_empty() {
        let related = read::Related::load(shared, channel, Some(author), &wanted, stored);
        let mut shared = shared;
        let inserted = async { insert.get_result(&mut shared).await.optional() };
        let (inserted, related) = futures_util::try_join!(inserted, related)?;
        (inserted, Some(related))
    } else {
        let mut shared = shared;
        (insert.get_result(&mut shared).await.optional()?, None)
    };
    let Some(row) = inserted else {
        // The same nonce, sent at the same moment by a retry that committed first.
        let nonce = new.nonce.as_deref().unwrap_or_default();
        let row = by_nonce(conn, channel, author, nonce)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::Conflict, "retry the send"))?;
        return Ok((retried(conn, &access, author, row).await?, Vec::new()));
    };
    attachments::attach(conn, author, channel, id, &new.attachment_ids).await?;
    receipts::create(conn, &access, id, author).await?;
    let related = match related {
        Some(related) => related,
        None => read::Related::load(conn, channel, Some(author), &wanted, stored).await?,
    };
    let message = related
        .assemble(vec![row], access.row.guild_id)?
        .pop()
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("a message vanished")))?;
    // The message's event, then its notifications', appended with COMMIT.
    let mut events = vec![Outgoing::event(
        Topic::Channel(channel),
        &MessageCreate(message.clone()),
    )?];
    events.extend(notify(conn, &access, &message, wanting_all).await?);
    Ok(((message, true), events))
}

/// [`write`] of many sends with the ids a batch gave them under their channels' locks,
/// each in a guild channel, answering no message and notifying no one (see
/// [`Ready::writes_with_others`]): one INSERT of all their rows and one read of
/// their authors, sent together. Each one's answer and events, in their order.
pub(crate) async fn write_many(
    shared: &AsyncPgConnection,
    mut writes: Vec<(Ready, MessageId)>,
) -> AppResult<Vec<((Message, bool), Vec<Outgoing>)>> {
    let n = writes.len();
    let (mut channels, mut ids, mut authors) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut contents, mut nonces) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (ready, id) in &mut writes {
        channels.push(ready.channel.0);
        ids.push(id.0);
        authors.push(ready.author.0);
        // Moved, not copied: the answer shows the content the row returns.
        contents.push(std::mem::take(&mut ready.new.content));
        nonces.push(ready.new.nonce.clone());
    }
    let mut people: Vec<UserId> = writes.iter().map(|(r, _)| r.author).collect();
    people.sort_unstable();
    people.dedup();
    let insert = async {
        use diesel::sql_types::{Array, Nullable, Text, Uuid as SqlUuid};
        let mut conn = shared;
        synctalk_db::sql(concat!(
            "INSERT INTO messages AS m (channel_id, id, author_id, content, nonce) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[]) \
             ON CONFLICT DO NOTHING RETURNING ",
            crate::message_columns!()
        ))
        .bind::<Array<SqlUuid>, _>(channels)
        .bind::<Array<SqlUuid>, _>(ids)
        .bind::<Array<SqlUuid>, _>(authors)
        .bind::<Array<Text>, _>(contents)
        .bind::<Array<Nullable<Text>>, _>(nonces)
        .load::<MessageRow>(&mut conn)
        .await
    };
    let (rows, (users, _)) = futures_util::try_join!(insert, read::users_by_id(shared, &people))?;
    let mut inserted: HashMap<MessageId, MessageRow> =
        rows.into_iter().map(|row| (row.id, row)).collect();
    let mut answers = Vec::with_capacity(n);
    let mut lost = Vec::new();
    for (i, (ready, id)) in writes.into_iter().enumerate() {
        let Some(row) = inserted.remove(&id) else {
            // The same nonce, sent at the same moment by a retry that committed first.
            lost.push((i, ready));
            answers.push(None);
            continue;
        };
        let author = users
            .get(&ready.author)
            .cloned()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("message author missing")))?;
        let message = read::Related::of_authors(HashMap::from([(ready.author, author)]))
            .assemble(vec![row], ready.access.row.guild_id)?
            .pop()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("a message vanished")))?;
        let event = Outgoing::event(
            Topic::Channel(ready.channel),
            &MessageCreate(message.clone()),
        )?;
        answers.push(Some(((message, true), vec![event])));
    }
    for (i, ready) in lost {
        let nonce = ready.new.nonce.as_deref().unwrap_or_default();
        let row = by_nonce(shared, ready.channel, ready.author, nonce)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::Conflict, "retry the send"))?;
        answers[i] = Some((
            retried(shared, &ready.access, ready.author, row).await?,
            Vec::new(),
        ));
    }
    answers
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("a write went unanswered")))
}

/// The most members a role mention or `@everyone` pages (a guild's size).
const MAX_PAGED: usize = 1000;

/// Tells those a new message concerns (in its send's transaction): every other member
/// of a DM or group DM, and the users it mentions (by name, by role or with
/// `@everyone`) who can read its guild channel; their settings decide (see
/// `synctalk_notifications::service::for_message`). Their events, to append.
async fn notify(
    mut conn: &AsyncPgConnection,
    access: &ChannelAccess,
    message: &Message,
    wanting_all: Vec<UserId>,
) -> AppResult<Vec<Outgoing>> {
    let author = message.author.id;
    let mentioned: Vec<UserId> = message.mentions.iter().map(|u| u.id).collect();
    let recipients: Vec<(UserId, bool)> = match access.guild {
        None => channel_recipients::table
            .filter(channel_recipients::channel_id.eq(access.row.id))
            .filter(channel_recipients::user_id.ne(author))
            .select(channel_recipients::user_id)
            .load::<UserId>(&mut conn)
            .await?
            .into_iter()
            .map(|u| (u, message.mention_everyone || mentioned.contains(&u)))
            .collect(),
        Some(ref guild) => {
            // The users mentioned (by name, by a role of theirs, or by @everyone), and
            // those who asked for every message; of them, the members who can read
            // the channel.
            // Roles are kept only from an author who may page everyone (see
            // `mentions_in`).
            let mut by_role = !message.mention_roles.is_empty();
            let mut everyone = message.mention_everyone;
            if by_role || everyone {
                // Paged in the send's transaction, one notification (and one lock)
                // each: only in guilds up to MAX_PAGED members. In bigger ones a role
                // or @everyone pages nobody beyond those named (their read states
                // still count the mention).
                let size: i32 = guilds::table
                    .find(guild.guild.id)
                    .select(guilds::member_count)
                    .first(&mut conn)
                    .await?;
                if usize::try_from(size).unwrap_or(usize::MAX) > MAX_PAGED {
                    (by_role, everyone) = (false, false);
                }
            }
            let mut others = wanting_all;
            others.extend(mentioned.iter().copied());
            others.sort_unstable();
            others.dedup();
            others.retain(|u| *u != author);
            if others.is_empty() && !by_role && !everyone {
                Vec::new()
            } else {
                let structure = synctalk_guilds::visibility::structure(conn, &guild.guild).await?;
                // A role or @everyone may name any member: read them all.
                let among = (!by_role && !everyone).then_some(others.as_slice());
                synctalk_guilds::access::member_roles_of(conn, guild.guild.id, among)
                    .await?
                    .into_iter()
                    .filter_map(|(user, roles)| {
                        let named = everyone
                            || mentioned.contains(&user)
                            || (by_role && roles.iter().any(|r| message.mention_roles.contains(r)));
                        (user != author && (named || others.binary_search(&user).is_ok()))
                            .then_some((user, roles, named))
                    })
                    .filter(|(user, roles, _)| {
                        structure
                            .visible(*user, roles)
                            .iter()
                            .any(|c| c.id == access.row.id)
                    })
                    .map(|(user, _, named)| (user, named))
                    .collect()
            }
        }
    };
    if recipients.is_empty() {
        return Ok(Vec::new());
    }
    let who = message
        .author
        .display_name
        .clone()
        .unwrap_or_else(|| message.author.username.clone());
    let (title, mention_title) = match (&access.kind, access.row.name.as_deref()) {
        (ChannelKind::Dm, _) => (who.clone(), who),
        (ChannelKind::GroupDm, Some(name)) => {
            let title = format!("{who} in {name}");
            (title.clone(), title)
        }
        (ChannelKind::GroupDm, None) => {
            let title = format!("{who} in your group");
            (title.clone(), title)
        }
        (_, name) => {
            let name = name.unwrap_or("a channel");
            (
                format!("{who} in #{name}"),
                format!("{who} mentioned you in #{name}"),
            )
        }
    };
    let text = if message.content.is_empty() {
        match message.attachments.len() {
            1 => "sent a file".to_owned(),
            n => format!("sent {n} files"),
        }
    } else {
        message.content.clone()
    };
    synctalk_notifications::service::for_message(
        conn,
        synctalk_notifications::service::MessageSent {
            channel: access.row.id,
            guild: access.row.guild_id,
            message: message.id,
            author,
            title,
            mention_title,
            text,
            recipients,
        },
    )
    .await
}

/// Edits a message's content: its author only (others who can see it get 403).
pub async fn edit(
    conn: &mut AsyncPgConnection,
    actor: UserId,
    channel: ChannelId,
    id: MessageId,
    content: String,
) -> AppResult<Message> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, channel, actor, false).await?;
        access.require(Permissions::READ_MESSAGE_HISTORY, "read messages here")?;
        let row = read::one(conn, channel, id, true)
            .await?
            .ok_or_else(|| AppError::not_found("message"))?;
        if row.author_id != actor {
            return Err(AppError::new(
                ErrorCode::Forbidden,
                "only its author can edit a message",
            ));
        }
        not_blocked(conn, &access, actor).await?;
        let (mentions, mention_roles, mention_everyone) =
            mentions_in(conn, &access, &content).await?;
        let row: MessageRow = diesel::update(
            messages::table
                .filter(messages::channel_id.eq(channel))
                .filter(messages::id.eq(id)),
        )
        .set((
            messages::content.eq(&content),
            messages::edited_at.eq(Utc::now()),
            messages::mentions.eq(&mentions),
            messages::mention_roles.eq(&mention_roles),
            messages::mention_everyone.eq(mention_everyone),
        ))
        .returning(MessageRow::as_returning())
        .get_result(conn)
        .await?;
        // Its notifications show what it says now, not what it said.
        synctalk_notifications::service::message_edited(conn, channel, id, &content).await?;
        let shared = hydrate_one(conn, &access, None, row.clone()).await?;
        event::append(
            conn,
            &[Outgoing::event(
                Topic::Channel(channel),
                &MessageUpdate(shared),
            )?],
        )
        .await?;
        hydrate_one(conn, &access, Some(actor), row).await
    })
    .await
}

/// Deletes a message (soft): its author, or in a guild channel MANAGE_MESSAGES.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    actor: UserId,
    channel: ChannelId,
    id: MessageId,
) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, channel, actor, false).await?;
        access.require(Permissions::READ_MESSAGE_HISTORY, "read messages here")?;
        let row = read::one(conn, channel, id, true)
            .await?
            .ok_or_else(|| AppError::not_found("message"))?;
        if row.author_id != actor {
            access.require(Permissions::MANAGE_MESSAGES, "delete others' messages")?;
        }
        diesel::update(
            messages::table
                .filter(messages::channel_id.eq(channel))
                .filter(messages::id.eq(id)),
        )
        .set((
            messages::deleted_at.eq(Utc::now()),
            messages::pinned_at.eq(None::<chrono::DateTime<Utc>>),
        ))
        .execute(conn)
        .await?;
        let guild_id = access.row.guild_id;
        let mut rows = vec![Outgoing::event(
            Topic::Channel(channel),
            &MessageDelete {
                id,
                channel_id: channel,
                guild_id,
            },
        )?];
        if row.pinned_at.is_some() {
            // It leaves the pins too.
            rows.push(crate::pins::update(conn, channel, guild_id).await?);
        }
        event::append(conn, &rows).await?;
        // Its notifications go with it: a deleted message's text is read nowhere.
        synctalk_notifications::service::message_deleted(conn, channel, id).await?;
        Ok(())
    })
    .await
}

/// A page of messages, newest first, as JSON: READ_MESSAGE_HISTORY. From the node's
/// memory of the channel's newest messages when the database confirms it is current
/// (see [`crate::tail`]).
pub async fn list(
    conn: &mut AsyncPgConnection,
    tails: &crate::tail::Tails,
    viewer: UserId,
    channel: ChannelId,
    page: read::MessagePage,
) -> AppResult<crate::tail::Body> {
    crate::tail::page(conn, tails, viewer, channel, page).await
}

/// One message: READ_MESSAGE_HISTORY.
pub async fn get(
    conn: &mut AsyncPgConnection,
    viewer: UserId,
    channel: ChannelId,
    id: MessageId,
) -> AppResult<Message> {
    let access = access::load(conn, channel, viewer, false).await?;
    access.require(Permissions::READ_MESSAGE_HISTORY, "read messages here")?;
    let row = read::one(conn, channel, id, false)
        .await?
        .ok_or_else(|| AppError::not_found("message"))?;
    hydrate_one(conn, &access, Some(viewer), row).await
}
