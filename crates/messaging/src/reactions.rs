//! Reactions: one per user per emoji per message, each a Unicode emoji (as the
//! `emojis` crate knows them, kept in its canonical form so that variants count as
//! one). Adding an emoji nobody used on the message yet needs ADD_REACTIONS; joining
//! one already there needs only to read the channel, as in Discord.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use synctalk_channels::access::{self, ChannelAccess};
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{messages, reactions, users};
use synctalk_gateway::{Outgoing, Topic, event};
use synctalk_guilds::permissions::Permissions;
use synctalk_kernel::{AppError, AppResult, ChannelId, ErrorCode, MessageId, UserId};
use synctalk_users::dto::User;

use crate::events::{MessageReactionAdd, MessageReactionRemove, ReactionChange};
use crate::read;

/// The most different emoji one message may carry (Discord's 20).
pub const MAX_EMOJIS: i64 = 20;

/// The canonical form of a Unicode emoji; 404 for anything else (an unknown emoji is
/// as absent as an unknown id).
pub fn parse_emoji(value: &str) -> AppResult<&'static str> {
    emojis::get(value)
        .map(emojis::Emoji::as_str)
        .ok_or_else(|| AppError::not_found("emoji"))
}

/// The reader's standing in the channel, with the message locked (a reaction and the
/// message's deletion never cross, nor two changes of its reactions: the triggers that
/// keep `messages.has_reactions` rely on it).
async fn reader(
    conn: &mut AsyncPgConnection,
    user: UserId,
    channel: ChannelId,
    message: MessageId,
) -> AppResult<ChannelAccess> {
    let access = access::load(conn, channel, user, false).await?;
    access.require(Permissions::READ_MESSAGE_HISTORY, "read messages here")?;
    // FOR NO KEY UPDATE: a deletion waits, a reply to the message does not.
    messages::table
        .filter(messages::channel_id.eq(channel))
        .filter(messages::id.eq(message))
        .filter(messages::deleted_at.is_null())
        .select(messages::id)
        .for_no_key_update()
        .first::<MessageId>(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("message"))?;
    Ok(access)
}

fn change(access: &ChannelAccess, message: MessageId, user: UserId, emoji: &str) -> ReactionChange {
    ReactionChange {
        channel_id: access.row.id,
        message_id: message,
        guild_id: access.row.guild_id,
        user_id: user,
        emoji: emoji.to_owned(),
    }
}

/// Adds the user's reaction (idempotent); `true` when it is new.
pub async fn add(
    conn: &mut AsyncPgConnection,
    user: UserId,
    channel: ChannelId,
    message: MessageId,
    emoji: &str,
) -> AppResult<bool> {
    let emoji = parse_emoji(emoji)?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = reader(conn, user, channel, message).await?;
        crate::service::not_blocked(conn, &access, user).await?;
        let of_emoji = reactions::table
            .filter(reactions::channel_id.eq(channel))
            .filter(reactions::message_id.eq(message))
            .filter(reactions::emoji.eq(emoji));
        let used: bool = diesel::select(diesel::dsl::exists(of_emoji))
            .get_result(conn)
            .await?;
        if !used {
            access.require(Permissions::ADD_REACTIONS, "add reactions here")?;
            let emojis: i64 = reactions::table
                .filter(reactions::channel_id.eq(channel))
                .filter(reactions::message_id.eq(message))
                .select(diesel::dsl::count(reactions::emoji).aggregate_distinct())
                .first(conn)
                .await?;
            if emojis >= MAX_EMOJIS {
                return Err(AppError::new(
                    ErrorCode::Conflict,
                    format!("a message has at most {MAX_EMOJIS} different reactions"),
                ));
            }
        }
        let added = diesel::insert_into(reactions::table)
            .values((
                reactions::channel_id.eq(channel),
                reactions::message_id.eq(message),
                reactions::emoji.eq(emoji),
                reactions::user_id.eq(user),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?
            == 1;
        if added {
            let event = MessageReactionAdd(change(&access, message, user, emoji));
            event::append(conn, &[Outgoing::event(Topic::Channel(channel), &event)?]).await?;
        }
        Ok(added)
    })
    .await
}

/// Takes the user's reaction away (idempotent); `true` when there was one.
pub async fn remove(
    conn: &mut AsyncPgConnection,
    user: UserId,
    channel: ChannelId,
    message: MessageId,
    emoji: &str,
) -> AppResult<bool> {
    let emoji = parse_emoji(emoji)?;
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = reader(conn, user, channel, message).await?;
        let mine = reactions::table
            .filter(reactions::channel_id.eq(channel))
            .filter(reactions::message_id.eq(message))
            .filter(reactions::emoji.eq(emoji))
            .filter(reactions::user_id.eq(user));
        let removed = diesel::delete(mine).execute(conn).await? == 1;
        if removed {
            let event = MessageReactionRemove(change(&access, message, user, emoji));
            event::append(conn, &[Outgoing::event(Topic::Channel(channel), &event)?]).await?;
        }
        Ok(removed)
    })
    .await
}

/// Who reacted with `emoji`, in user id order, after a user id.
pub async fn users_of(
    conn: &mut AsyncPgConnection,
    viewer: UserId,
    channel: ChannelId,
    message: MessageId,
    emoji: &str,
    page: synctalk_kernel::Page,
) -> AppResult<Vec<User>> {
    let emoji = parse_emoji(emoji)?;
    let access = access::load(conn, channel, viewer, false).await?;
    access.require(Permissions::READ_MESSAGE_HISTORY, "read messages here")?;
    read::one(conn, channel, message, false)
        .await?
        .ok_or_else(|| AppError::not_found("message"))?;
    let query = reactions::table
        .inner_join(users::table.on(users::id.eq(reactions::user_id)))
        .filter(reactions::channel_id.eq(channel))
        .filter(reactions::message_id.eq(message))
        .filter(reactions::emoji.eq(emoji))
        .select(User::as_select())
        .into_boxed();
    let rows: Vec<User> = synctalk_kernel::keyset!(query, reactions::user_id, page)
        .load(conn)
        .await?;
    Ok(page.in_order(rows))
}
