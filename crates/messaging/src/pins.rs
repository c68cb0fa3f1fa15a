//! Pins: MANAGE_MESSAGES in a guild channel (any member of a DM or group DM), at most
//! [`MAX_PINS`] per channel. Readers get CHANNEL_PINS_UPDATE and MESSAGE_UPDATE (the
//! message's `pinned`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use synctalk_channels::access;
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::messages;
use synctalk_gateway::{Outgoing, Topic, event};
use synctalk_guilds::permissions::Permissions;
use synctalk_kernel::{AppError, AppResult, ChannelId, ErrorCode, MessageId, UserId};

use crate::dto::Message;
use crate::events::{ChannelPinsUpdate, MessageUpdate};
use crate::model::MessageRow;
use crate::read;

/// The most pinned messages a channel may have.
pub const MAX_PINS: i64 = 50;

fn pinned_in(channel: ChannelId) -> messages::BoxedQuery<'static, diesel::pg::Pg> {
    messages::table
        .filter(messages::channel_id.eq(channel))
        .filter(messages::pinned_at.is_not_null())
        .filter(messages::deleted_at.is_null())
        .into_boxed()
}

/// Pins (`true`) or unpins a message; idempotent (nothing is written when it already
/// is so).
pub async fn set(
    conn: &mut AsyncPgConnection,
    actor: UserId,
    channel: ChannelId,
    id: MessageId,
    pin: bool,
) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |conn| {
        // The channel row's lock (a DM) or the guild's: pins of one channel are counted
        // one change at a time.
        let access = access::load(conn, channel, actor, true).await?;
        access.require(Permissions::READ_MESSAGE_HISTORY, "read messages here")?;
        if access.guild.is_some() {
            access.require(Permissions::MANAGE_MESSAGES, "pin messages")?;
        }
        let row = read::one(conn, channel, id, true)
            .await?
            .ok_or_else(|| AppError::not_found("message"))?;
        if row.pinned_at.is_some() == pin {
            return Ok(());
        }
        if pin {
            let count: i64 = pinned_in(channel).count().get_result(conn).await?;
            if count >= MAX_PINS {
                return Err(AppError::new(
                    ErrorCode::Conflict,
                    format!("a channel has at most {MAX_PINS} pinned messages"),
                ));
            }
        }
        let at = pin.then(Utc::now);
        let row: MessageRow = diesel::update(
            messages::table
                .filter(messages::channel_id.eq(channel))
                .filter(messages::id.eq(id)),
        )
        .set(messages::pinned_at.eq(at))
        .returning(MessageRow::as_returning())
        .get_result(conn)
        .await?;
        let guild = access.row.guild_id;
        let message = read::hydrate(conn, channel, guild, None, vec![row])
            .await?
            .pop()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("a message vanished")))?;
        let rows = [
            Outgoing::event(Topic::Channel(channel), &MessageUpdate(message))?,
            update(conn, channel, guild).await?,
        ];
        event::append(conn, &rows).await?;
        Ok(())
    })
    .await
}

/// CHANNEL_PINS_UPDATE for the channel's pins as they are now.
pub(crate) async fn update(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    guild: Option<synctalk_kernel::GuildId>,
) -> AppResult<Outgoing> {
    let last: Option<DateTime<Utc>> = pinned_in(channel)
        .select(diesel::dsl::max(messages::pinned_at))
        .first(conn)
        .await?;
    Outgoing::event(
        Topic::Channel(channel),
        &ChannelPinsUpdate {
            channel_id: channel,
            guild_id: guild,
            last_pin_timestamp: last,
        },
    )
}

/// The pinned messages, the latest pinned first: READ_MESSAGE_HISTORY.
pub async fn list(
    conn: &mut AsyncPgConnection,
    viewer: UserId,
    channel: ChannelId,
) -> AppResult<Vec<Message>> {
    let access = access::load(conn, channel, viewer, false).await?;
    access.require(Permissions::READ_MESSAGE_HISTORY, "read messages here")?;
    let rows: Vec<MessageRow> = pinned_in(channel)
        .order((messages::pinned_at.desc(), messages::id.desc()))
        .limit(MAX_PINS)
        .select(MessageRow::as_select())
        .load(conn)
        .await?;
    read::hydrate(conn, channel, access.row.guild_id, Some(viewer), rows).await
}
