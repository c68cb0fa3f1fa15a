//! Delivery and read receipts in DMs and group DMs. A message sent there gets a row per
//! other member. It is delivered when a node first queues it to one of that member's
//! sockets (live, or replayed on identify and resume: the gateway reports those
//! deliveries), and read when the member acks it or a later message. Each change
//! reaches the channel's members as MESSAGE_RECEIPT.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use synctalk_channels::access::{self, ChannelAccess};
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::receipts;
use synctalk_gateway::hub::local::Delivery;
use synctalk_gateway::{Outgoing, Topic, event, gateway_event};
use synctalk_guilds::dto::ChannelKind;
use synctalk_guilds::permissions::Permissions;
use synctalk_kernel::{AppError, AppResult, ChannelId, MessageId, UserId};
use utoipa::ToSchema;

use crate::read;

/// Whether a record's deliveries are tracked: a new message of a DM or group DM (its
/// `guild_id` is null; a quote in the content is escaped, so it cannot pass for it).
/// A cheap look at the text: it runs under the hub's lock.
pub fn tracked_record(record: &synctalk_gateway::event::Record) -> bool {
    // As PostgreSQL's jsonb writes it (`"key": value`), or compact.
    let text = record.payload.get();
    &*record.name == "MESSAGE_CREATE"
        && (text.contains("\"guild_id\": null") || text.contains("\"guild_id\":null"))
}

/// One member's receipt of a message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Queryable)]
pub struct Receipt {
    /// The member.
    pub user_id: UserId,
    /// When it was first queued to one of their sockets; null until then.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When they acked it (or a later message); null until then.
    pub read_at: Option<DateTime<Utc>>,
}

/// MESSAGE_RECEIPT: a member's receipt changed. For a read, every earlier message of
/// the channel is read by them too.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageReceipt {
    /// The DM or group DM.
    pub channel_id: ChannelId,
    /// The message (for a read: the newest message this ack read).
    pub message_id: MessageId,
    /// The member.
    pub user_id: UserId,
    /// When it was delivered to them.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When they read it; null for a delivery.
    pub read_at: Option<DateTime<Utc>>,
}

gateway_event!(MessageReceipt, "MESSAGE_RECEIPT", Messaging, replayed);

fn tracked(access: &ChannelAccess) -> bool {
    matches!(access.kind, ChannelKind::Dm | ChannelKind::GroupDm)
}

/// Writes a new message's receipts (in its send's transaction): one per other member
/// of a DM or group DM; none in guild channels, and none for a member who blocked the
/// author (their receipts would tell the author when they are online).
pub(crate) async fn create(
    mut conn: &AsyncPgConnection,
    access: &ChannelAccess,
    message: MessageId,
    author: UserId,
) -> QueryResult<()> {
    if !tracked(access) {
        return Ok(());
    }
    synctalk_db::sql(
        "INSERT INTO receipts (channel_id, message_id, user_id) \
         SELECT r.channel_id, $2, r.user_id FROM channel_recipients r \
         WHERE r.channel_id = $1 AND r.user_id <> $3 \
           AND NOT EXISTS (SELECT 1 FROM relationships b \
                           WHERE b.user_id = r.user_id AND b.other_id = $3 AND b.kind = 'blocked')",
    )
    .bind::<diesel::sql_types::Uuid, _>(access.row.id.0)
    .bind::<diesel::sql_types::Uuid, _>(message.0)
    .bind::<diesel::sql_types::Uuid, _>(author.0)
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// Marks `user`'s receipts of the channel read up to `message` (in the ack's
/// transaction), with one MESSAGE_RECEIPT for the newest message it read.
pub(crate) async fn read_up_to(
    conn: &mut AsyncPgConnection,
    access: &ChannelAccess,
    user: UserId,
    message: MessageId,
) -> AppResult<()> {
    if !tracked(access) {
        return Ok(());
    }
    let channel = access.row.id;
    let now = Utc::now();
    let rows: Vec<(MessageId, Option<DateTime<Utc>>)> = diesel::update(
        receipts::table
            .filter(receipts::channel_id.eq(channel))
            .filter(receipts::user_id.eq(user))
            .filter(receipts::message_id.le(message))
            .filter(receipts::read_at.is_null()),
    )
    .set((
        receipts::read_at.eq(now),
        receipts::delivered_at.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >("coalesce(delivered_at, now())")),
    ))
    .returning((receipts::message_id, receipts::delivered_at))
    .get_results(conn)
    .await?;
    let Some((newest, delivered_at)) = rows.into_iter().max_by_key(|(id, _)| *id) else {
        return Ok(());
    };
    event::append(
        conn,
        &[Outgoing::event(
            Topic::Channel(channel),
            &MessageReceipt {
                channel_id: channel,
                message_id: newest,
                user_id: user,
                delivered_at,
                read_at: Some(now),
            },
        )?],
    )
    .await?;
    Ok(())
}

/// A message's receipts, for a member of its DM or group DM: every other member's,
/// by user id (none in a guild channel).
pub async fn list(
    conn: &mut AsyncPgConnection,
    viewer: UserId,
    channel: ChannelId,
    message: MessageId,
) -> AppResult<Vec<Receipt>> {
    let access = access::load(conn, channel, viewer, false).await?;
    access.require(Permissions::READ_MESSAGE_HISTORY, "read messages here")?;
    read::one(conn, channel, message, false)
        .await?
        .ok_or_else(|| AppError::not_found("message"))?;
    Ok(receipts::table
        .filter(receipts::channel_id.eq(channel))
        .filter(receipts::message_id.eq(message))
        .order(receipts::user_id.asc())
        .select((receipts::user_id, receipts::delivered_at, receipts::read_at))
        .load(conn)
        .await?)
}

/// What a delivery report says of a message: enough to find its receipts.
#[derive(Debug, Deserialize)]
struct Delivered {
    id: MessageId,
    channel_id: ChannelId,
    guild_id: Option<synctalk_kernel::GuildId>,
}

/// Marks reported deliveries, forever: each report of a DM or group DM message sets
/// `delivered_at` of the receipts still without one, and each receipt so set reaches
/// the channel as MESSAGE_RECEIPT. Several nodes may report one message: only the
/// first sets it. Reports that arrive together are written together.
pub async fn record_deliveries(
    pool: synctalk_db::Pool,
    mut reports: tokio::sync::mpsc::Receiver<Delivery>,
) {
    let mut batch = Vec::new();
    while reports.recv_many(&mut batch, 256).await > 0 {
        // (channel, message) -> users.
        let mut reached: BTreeMap<(ChannelId, MessageId), BTreeSet<UserId>> = BTreeMap::new();
        for delivery in batch.drain(..) {
            let Ok(message) = serde_json::from_str::<Delivered>(delivery.record.payload.get())
            else {
                continue;
            };
            if message.guild_id.is_some() {
                continue;
            }
            reached
                .entry((message.channel_id, message.id))
                .or_default()
                .extend(delivery.users);
        }
        if reached.is_empty() {
            continue;
        }
        let written = async {
            let mut conn = synctalk_db::conn(&pool).await?;
            mark_delivered(&mut conn, &reached).await
        }
        .await;
        if let Err(error) = written {
            tracing::warn!(%error, "delivery receipts could not be written");
        }
    }
}

async fn mark_delivered(
    conn: &mut AsyncPgConnection,
    reached: &BTreeMap<(ChannelId, MessageId), BTreeSet<UserId>>,
) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let now = Utc::now();
        let mut events = Vec::new();
        for ((channel, message), users) in reached {
            let users: Vec<UserId> = users.iter().copied().collect();
            let marked: Vec<UserId> = diesel::update(
                receipts::table
                    .filter(receipts::channel_id.eq(channel))
                    .filter(receipts::message_id.eq(message))
                    .filter(receipts::user_id.eq_any(&users))
                    .filter(receipts::delivered_at.is_null()),
            )
            .set(receipts::delivered_at.eq(now))
            .returning(receipts::user_id)
            .get_results(conn)
            .await?;
            for user in marked {
                events.push(Outgoing::event(
                    Topic::Channel(*channel),
                    &MessageReceipt {
                        channel_id: *channel,
                        message_id: *message,
                        user_id: user,
                        delivered_at: Some(now),
                        read_at: None,
                    },
                )?);
            }
        }
        if !events.is_empty() {
            event::append(conn, &events).await?;
        }
        Ok(())
    })
    .await
}
