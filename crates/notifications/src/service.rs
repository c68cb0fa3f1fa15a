//! Making, listing, reading and deleting notifications; each change with its event on
//! the user's topic, in the caller's transaction.

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::{Value, json};
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::notifications;
use synctalk_gateway::{Outgoing, Topic, event};
use synctalk_kernel::{AppError, AppResult, ChannelId, ErrorCode, GuildId, MessageId, UserId};
use uuid::Uuid;

use crate::dto::{
    Notification, NotificationKind, NotificationQuery, NotificationRow, NotificationUpdate,
};
use crate::events::NotificationCreate;
use crate::settings::{self, Level};

/// The longest body kept, in characters.
pub const MAX_BODY: usize = 200;

/// A notification to make.
#[derive(Debug, Clone)]
pub struct NewNotification {
    /// For whom.
    pub user: UserId,
    /// What about.
    pub kind: NotificationKind,
    /// One line.
    pub title: String,
    /// More (cut to 200 characters).
    pub body: String,
    /// Ids for the client.
    pub data: Value,
}

/// A body as kept: at most 200 characters, with an ellipsis when cut.
pub fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let cut: String = chars.by_ref().take(MAX_BODY).collect();
    if chars.next().is_some() {
        format!("{}…", cut.trim_end())
    } else {
        cut
    }
}

/// Makes notifications: them, and their NOTIFICATION_CREATE events for the caller to
/// append.
async fn insert(
    mut conn: &AsyncPgConnection,
    items: &[(NewNotification, Option<(ChannelId, MessageId)>)],
) -> AppResult<(Vec<Notification>, Vec<Outgoing>)> {
    if items.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    // Each user's topic is locked before their notifications are made, as before their
    // unread count is read (`updated`): a count is never taken beside a notification
    // made at the same moment. In one statement, in the outbox's order, so two makers
    // (or a maker and an append) never wait on each other.
    let users: Vec<Topic> = items.iter().map(|(n, _)| Topic::User(n.user)).collect();
    event::lock_topics(conn, &users).await?;
    let now = Utc::now();
    let rows: Vec<_> = items
        .iter()
        .map(|(n, at)| {
            (
                notifications::id.eq(Uuid::now_v7()),
                notifications::user_id.eq(n.user),
                notifications::kind.eq(n.kind.as_str()),
                notifications::title.eq(n.title.clone()),
                notifications::body.eq(excerpt(&n.body)),
                notifications::data.eq(n.data.clone()),
                notifications::channel_id.eq(at.map(|a| a.0.0)),
                notifications::message_id.eq(at.map(|a| a.1.0)),
                notifications::created_at.eq(now),
            )
        })
        .collect();
    let made: Vec<NotificationRow> = diesel::insert_into(notifications::table)
        .values(rows)
        .returning(NotificationRow::as_returning())
        .get_results(&mut conn)
        .await?;
    let ids: Vec<Uuid> = made.iter().map(|r| r.id).collect();
    crate::push::queue(conn, &ids).await?;
    let mut events = Vec::with_capacity(made.len());
    let mut out = Vec::with_capacity(made.len());
    for row in made {
        let user = row.user_id;
        let notification = Notification::from(row);
        events.push(Outgoing::event(
            Topic::User(user),
            &NotificationCreate(notification.clone()),
        )?);
        out.push(notification);
    }
    Ok((out, events))
}

/// Makes notifications (with NOTIFICATION_CREATE each), in the caller's transaction.
pub async fn create(
    conn: &mut AsyncPgConnection,
    items: Vec<NewNotification>,
) -> AppResult<Vec<Notification>> {
    let items: Vec<_> = items.into_iter().map(|n| (n, None)).collect();
    let (made, events) = insert(conn, &items).await?;
    event::append(conn, &events).await?;
    Ok(made)
}

/// A message sent, as notifications see it.
#[derive(Debug, Clone)]
pub struct MessageSent {
    /// Its channel.
    pub channel: ChannelId,
    /// The channel's guild (`None` in a DM or group DM).
    pub guild: Option<GuildId>,
    /// The message.
    pub message: MessageId,
    /// Who sent it.
    pub author: UserId,
    /// The title to show (the author's name; in a guild, where).
    pub title: String,
    /// The title for those it mentions (in a guild: "... mentioned you in #...").
    pub mention_title: String,
    /// Its text (or what stands for it, e.g. "sent a file").
    pub text: String,
    /// Who might be told: everyone else in a DM or group DM, the mentioned users who
    /// can read a guild channel; each with whether they are mentioned.
    pub recipients: Vec<(UserId, bool)>,
}

/// Makes the `message` notifications of a message sent, in its transaction (their
/// NOTIFICATION_CREATE events returned, to append after the message's own): to each
/// recipient whose settings for the channel (else its guild) allow it (`all`, or
/// `mentions` when mentioned; the default is `all` in DMs and group DMs, `mentions` in
/// guilds) and who has not muted it.
pub async fn for_message(conn: &AsyncPgConnection, sent: MessageSent) -> AppResult<Vec<Outgoing>> {
    if sent.recipients.is_empty() {
        return Ok(Vec::new());
    }
    let users: Vec<UserId> = sent.recipients.iter().map(|(u, _)| *u).collect();
    let targets: Vec<Uuid> = std::iter::once(sent.channel.0)
        .chain(sent.guild.map(|g| g.0))
        .collect();
    let found = settings::of_users(conn, &users, &targets).await?;
    let now = Utc::now();
    let default = if sent.guild.is_some() {
        Level::Mentions
    } else {
        Level::All
    };
    let data = json!({
        "channel_id": sent.channel,
        "guild_id": sent.guild,
        "message_id": sent.message,
        "author_id": sent.author,
    });
    let mut items = Vec::new();
    for (user, mentioned) in sent.recipients {
        if user == sent.author {
            continue;
        }
        // The channel's own setting wins over its guild's.
        let setting = found
            .get(&(user, sent.channel.0))
            .or_else(|| sent.guild.and_then(|g| found.get(&(user, g.0))));
        if setting.is_some_and(|s| s.muted_until.is_some_and(|until| until > now)) {
            continue;
        }
        let level = setting.map_or(default, |s| s.level);
        let wanted = match level {
            Level::All => true,
            Level::Mentions => mentioned,
            Level::Nothing => false,
        };
        if wanted {
            items.push((
                NewNotification {
                    user,
                    kind: NotificationKind::Message,
                    title: if mentioned {
                        sent.mention_title.clone()
                    } else {
                        sent.title.clone()
                    },
                    body: sent.text.clone(),
                    data: data.clone(),
                },
                Some((sent.channel, sent.message)),
            ));
        }
    }
    Ok(insert(conn, &items).await?.1)
}

/// A message was deleted (in its transaction): its notifications are deleted too, and
/// each user they belonged to gets NOTIFICATION_UPDATE.
pub async fn message_deleted(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    message: MessageId,
) -> AppResult<()> {
    let gone: Vec<(Uuid, UserId)> = diesel::update(
        notifications::table
            .filter(notifications::channel_id.eq(channel.0))
            .filter(notifications::message_id.eq(message.0))
            .filter(notifications::deleted_at.is_null()),
    )
    .set(notifications::deleted_at.eq(Utc::now()))
    .returning((notifications::id, notifications::user_id))
    .get_results(conn)
    .await?;
    let mut by_user: std::collections::BTreeMap<UserId, Vec<Uuid>> = Default::default();
    for (id, user) in gone {
        by_user.entry(user).or_default().push(id);
    }
    // Every user's topic at once, in the outbox's order (as a maker locks them).
    let topics: Vec<Topic> = by_user.keys().map(|u| Topic::User(*u)).collect();
    event::lock_topics(conn, &topics).await?;
    for (user, ids) in by_user {
        updated(conn, user, ids, false, true).await?;
    }
    Ok(())
}

/// The friend request between `a` and `b` (either way) was answered, cancelled or
/// blocked: its notifications are deleted (NOTIFICATION_UPDATE `deleted`).
pub async fn withdraw_friend_requests(
    conn: &mut AsyncPgConnection,
    a: UserId,
    b: UserId,
) -> AppResult<()> {
    // Both users' topics at once, in the outbox's order (as a maker locks them).
    event::lock_topics(conn, &[Topic::User(a), Topic::User(b)]).await?;
    for (user, from) in [(a, b), (b, a)] {
        let ids: Vec<Uuid> = diesel::update(
            notifications::table
                .filter(notifications::user_id.eq(user))
                .filter(notifications::kind.eq(NotificationKind::FriendRequest.as_str()))
                .filter(notifications::deleted_at.is_null())
                .filter(
                    diesel::dsl::sql::<diesel::sql_types::Bool>("data->>'user_id' = ")
                        .bind::<diesel::sql_types::Text, _>(from.0.to_string()),
                ),
        )
        .set(notifications::deleted_at.eq(Utc::now()))
        .returning(notifications::id)
        .get_results(conn)
        .await?;
        if !ids.is_empty() {
            updated(conn, user, ids, false, true).await?;
        }
    }
    Ok(())
}

/// Whether `user` has an unread, live notification of `kind` whose `data` has `key`
/// equal to `value` (to make one of a kind at a time, e.g. one unread invite per guild).
pub async fn has_unread(
    conn: &mut AsyncPgConnection,
    user: UserId,
    kind: NotificationKind,
    key: &'static str,
    value: &str,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        notifications::table
            .filter(notifications::user_id.eq(user))
            .filter(notifications::kind.eq(kind.as_str()))
            .filter(notifications::read_at.is_null())
            .filter(notifications::deleted_at.is_null())
            .filter(
                diesel::dsl::sql::<diesel::sql_types::Bool>("data->>")
                    .bind::<diesel::sql_types::Text, _>(key)
                    .sql(" = ")
                    .bind::<diesel::sql_types::Text, _>(value.to_owned()),
            ),
    ))
    .get_result(conn)
    .await
}

/// A message was edited: its notifications show its new text.
pub async fn message_edited(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    message: MessageId,
    text: &str,
) -> QueryResult<()> {
    diesel::update(
        notifications::table
            .filter(notifications::channel_id.eq(channel.0))
            .filter(notifications::message_id.eq(message.0))
            .filter(notifications::deleted_at.is_null()),
    )
    .set(notifications::body.eq(excerpt(text)))
    .execute(conn)
    .await?;
    Ok(())
}

/// How many unread notifications `user` has.
pub async fn unread_count(conn: &mut AsyncPgConnection, user: UserId) -> QueryResult<i64> {
    notifications::table
        .filter(notifications::user_id.eq(user))
        .filter(notifications::deleted_at.is_null())
        .filter(notifications::read_at.is_null())
        .count()
        .get_result(conn)
        .await
}

async fn updated(
    conn: &mut AsyncPgConnection,
    user: UserId,
    ids: Vec<Uuid>,
    all: bool,
    deleted: bool,
) -> AppResult<()> {
    event::lock_topic(conn, Topic::User(user)).await?;
    let unread_count = unread_count(conn, user).await?;
    event::append(
        conn,
        &[Outgoing::event(
            Topic::User(user),
            &NotificationUpdate {
                ids,
                all,
                read: !deleted,
                deleted,
                unread_count,
            },
        )?],
    )
    .await?;
    Ok(())
}

/// Marks `user`'s message notifications of a channel read up to `message` (an ack
/// past them), in the ack's transaction.
pub async fn read_through(
    conn: &mut AsyncPgConnection,
    user: UserId,
    channel: ChannelId,
    message: MessageId,
) -> AppResult<()> {
    let ids: Vec<Uuid> = diesel::update(
        notifications::table
            .filter(notifications::user_id.eq(user))
            .filter(notifications::channel_id.eq(channel.0))
            .filter(notifications::message_id.le(message.0))
            .filter(notifications::read_at.is_null())
            .filter(notifications::deleted_at.is_null()),
    )
    .set(notifications::read_at.eq(Utc::now()))
    .returning(notifications::id)
    .get_results(conn)
    .await?;
    if ids.is_empty() {
        return Ok(());
    }
    updated(conn, user, ids, false, false).await
}

/// A page of `user`'s notifications, newest first: 400 `invalid_query` for a limit out
/// of 1-100.
pub async fn list(
    conn: &mut AsyncPgConnection,
    user: UserId,
    query: &NotificationQuery,
) -> AppResult<Vec<Notification>> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(AppError::new(
            ErrorCode::InvalidQuery,
            "limit must be between 1 and 100",
        ));
    }
    let mut q = notifications::table
        .filter(notifications::user_id.eq(user))
        .filter(notifications::deleted_at.is_null())
        .into_boxed();
    if query.unread == Some(true) {
        q = q.filter(notifications::read_at.is_null());
    } else if query.unread == Some(false) {
        q = q.filter(notifications::read_at.is_not_null());
    }
    if let Some(before) = query.before {
        q = q.filter(notifications::id.lt(before));
    }
    let rows: Vec<NotificationRow> = if let Some(after) = query.after {
        // The oldest page above `after`, then newest first like every page.
        let mut rows: Vec<NotificationRow> = q
            .filter(notifications::id.gt(after))
            .order(notifications::id.asc())
            .limit(i64::from(limit))
            .select(NotificationRow::as_select())
            .load(conn)
            .await?;
        rows.reverse();
        rows
    } else {
        q.order(notifications::id.desc())
            .limit(i64::from(limit))
            .select(NotificationRow::as_select())
            .load(conn)
            .await?
    };
    Ok(rows.into_iter().map(Notification::from).collect())
}

/// Marks one notification read (idempotent): 404 unless it is `user`'s and not
/// deleted.
pub async fn read_one(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: Uuid,
) -> AppResult<Notification> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let row: NotificationRow = notifications::table
            .filter(notifications::id.eq(id))
            .filter(notifications::user_id.eq(user))
            .filter(notifications::deleted_at.is_null())
            .select(NotificationRow::as_select())
            .for_no_key_update()
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| AppError::not_found("notification"))?;
        if row.read_at.is_some() {
            return Ok(Notification::from(row));
        }
        let row: NotificationRow = diesel::update(notifications::table.find(id))
            .set(notifications::read_at.eq(Utc::now()))
            .returning(NotificationRow::as_returning())
            .get_result(conn)
            .await?;
        updated(conn, user, vec![id], false, false).await?;
        Ok(Notification::from(row))
    })
    .await
}

/// Marks every notification of `user`'s read; one NOTIFICATION_UPDATE with `all` when
/// any was unread.
pub async fn read_all(conn: &mut AsyncPgConnection, user: UserId) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let changed = diesel::update(
            notifications::table
                .filter(notifications::user_id.eq(user))
                .filter(notifications::read_at.is_null())
                .filter(notifications::deleted_at.is_null()),
        )
        .set(notifications::read_at.eq(Utc::now()))
        .execute(conn)
        .await?;
        if changed > 0 {
            updated(conn, user, Vec::new(), true, false).await?;
        }
        Ok(())
    })
    .await
}

/// Deletes one notification (soft): 404 unless it is `user`'s and not deleted yet.
pub async fn delete(conn: &mut AsyncPgConnection, user: UserId, id: Uuid) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let changed = diesel::update(
            notifications::table
                .filter(notifications::id.eq(id))
                .filter(notifications::user_id.eq(user))
                .filter(notifications::deleted_at.is_null()),
        )
        .set(notifications::deleted_at.eq(Utc::now()))
        .execute(conn)
        .await?;
        if changed == 0 {
            return Err(AppError::not_found("notification"));
        }
        updated(conn, user, vec![id], false, true).await
    })
    .await
}
