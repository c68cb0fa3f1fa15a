//! Read states: how far each user has read each channel (`ack`), and from it, per
//! channel, the exact count of unread messages (others', not deleted, after the last
//! read) and of those that mention them (by name, by one of their roles, or
//! `@everyone`). Acks reach the user's sessions as MESSAGE_ACK.

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use synctalk_channels::access;
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{member_roles, read_states};
use synctalk_gateway::{Outgoing, Topic, event, gateway_event};
use synctalk_guilds::permissions::Permissions;
use synctalk_kernel::{AppError, AppResult, ChannelId, MessageId, UserId};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::read;

/// A channel's read state for you.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReadState {
    /// The channel.
    pub channel_id: ChannelId,
    /// The last message you acked (null: none yet).
    pub last_read_message_id: Option<MessageId>,
    /// Messages of others after it, not deleted.
    pub unread_count: i64,
    /// Those of them that mention you, one of your roles, or `@everyone`.
    pub mention_count: i64,
}

/// MESSAGE_ACK: you acked a channel up to a message (on any of your devices).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct MessageAck(pub ReadState);

gateway_event!(MessageAck, "MESSAGE_ACK", Messaging, replayed);

#[derive(QueryableByName)]
struct StateRow {
    #[diesel(sql_type = SqlUuid)]
    channel_id: Uuid,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    last_read_id: Option<Uuid>,
    #[diesel(sql_type = BigInt)]
    unread: i64,
    #[diesel(sql_type = BigInt)]
    mentions: i64,
}

/// `user`'s read state of each of `channels` (which they can read), in that order.
pub async fn of(
    conn: &mut AsyncPgConnection,
    user: UserId,
    channels: &[ChannelId],
) -> QueryResult<Vec<ReadState>> {
    if channels.is_empty() {
        return Ok(Vec::new());
    }
    let roles: Vec<Uuid> = member_roles::table
        .filter(member_roles::user_id.eq(user))
        .select(member_roles::role_id)
        .load::<synctalk_kernel::RoleId>(conn)
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect();
    // One range of the primary key per channel: (channel, after the last read). An
    // unread channel starts after the nil id, below every message's. Written as `id >
    // coalesce(..)`, not `last_read IS NULL OR id > last_read`, which the planner can
    // only filter by: with few channels it then read the whole messages table twice
    // per channel, at every READY (3.4 against 0.2-0.3 ms with 13,000 messages in 5
    // channels, and growing with the table).
    let rows: Vec<StateRow> = diesel::sql_query(
        "SELECT c.channel_id, r.last_read_id, s.unread, s.mentions \
         FROM unnest($1::uuid[]) WITH ORDINALITY AS c(channel_id, n) \
         LEFT JOIN read_states r ON r.user_id = $2 AND r.channel_id = c.channel_id \
         CROSS JOIN LATERAL ( \
           SELECT count(*) AS unread, \
                  count(*) FILTER (WHERE $2 = ANY (m.mentions) OR m.mention_everyone \
                                      OR m.mention_roles && $3) AS mentions \
           FROM messages m WHERE m.channel_id = c.channel_id \
             AND m.id > coalesce(r.last_read_id, '00000000-0000-0000-0000-000000000000'::uuid) \
             AND m.deleted_at IS NULL AND m.author_id <> $2) s \
         ORDER BY c.n",
    )
    .bind::<Array<SqlUuid>, _>(channels.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind::<SqlUuid, _>(user.0)
    .bind::<Array<SqlUuid>, _>(roles)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ReadState {
            channel_id: ChannelId(r.channel_id),
            last_read_message_id: r.last_read_id.map(MessageId),
            unread_count: r.unread,
            mention_count: r.mentions,
        })
        .collect())
}

/// Acks `channel` up to `message` (a message of it that is there; acking an older one
/// marks what follows unread again). The user's sessions get MESSAGE_ACK.
pub async fn ack(
    conn: &mut AsyncPgConnection,
    user: UserId,
    channel: ChannelId,
    message: MessageId,
) -> AppResult<ReadState> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, channel, user, false).await?;
        access.require(Permissions::READ_MESSAGE_HISTORY, "read messages here")?;
        read::one(conn, channel, message, false)
            .await?
            .ok_or_else(|| AppError::not_found("message"))?;
        diesel::insert_into(read_states::table)
            .values((
                read_states::user_id.eq(user),
                read_states::channel_id.eq(channel),
                read_states::last_read_id.eq(message.0),
            ))
            .on_conflict((read_states::user_id, read_states::channel_id))
            .do_update()
            .set((
                read_states::last_read_id.eq(message.0),
                read_states::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        crate::receipts::read_up_to(conn, &access, user, message).await?;
        synctalk_notifications::service::read_through(conn, user, channel, message).await?;
        let state = of(conn, user, &[channel])
            .await?
            .pop()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("no read state")))?;
        event::append(
            conn,
            &[Outgoing::event(
                Topic::User(user),
                &MessageAck(state.clone()),
            )?],
        )
        .await?;
        Ok(state)
    })
    .await
}

/// The channels `user` can read (guild channels they can see, their DMs and group
/// DMs), as the messaging gateway listens to them.
pub async fn readable(conn: &mut AsyncPgConnection, user: UserId) -> AppResult<Vec<ChannelId>> {
    let mut topics = synctalk_guilds::gateway::topics(conn, &[user])
        .await?
        .remove(&user)
        .unwrap_or_default();
    let dms = synctalk_channels::dms::list(conn, user).await?;
    topics.extend(dms.iter().map(|c| Topic::Channel(c.id)));
    Ok(channels_of(&topics))
}

/// The channels among `topics`.
pub fn channels_of(topics: &[Topic]) -> Vec<ChannelId> {
    topics
        .iter()
        .filter_map(|t| match t {
            Topic::Channel(c) => Some(*c),
            _ => None,
        })
        .collect()
}
