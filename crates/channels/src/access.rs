//! Who can see a channel and what they may do in it, decided once for every route
//! (and, later, for messaging): a guild channel through the guild's permission
//! algorithm with the channel's overwrites; a DM or group DM by being a recipient.
//! A channel you cannot see is 404, whether it exists or not.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{channel_recipients, channels};
use synctalk_guilds::access::{self as guild_access, Access as GuildAccess, Lock};
use synctalk_guilds::dto::ChannelKind;
use synctalk_guilds::model::ChannelRow;
use synctalk_guilds::permissions::Permissions;
use synctalk_guilds::visibility;
use synctalk_kernel::{AppError, AppResult, ChannelId, UserId};

/// What a recipient may do in a DM or group DM.
pub const RECIPIENT: Permissions = Permissions(
    Permissions::VIEW_CHANNEL.0
        | Permissions::SEND_MESSAGES.0
        | Permissions::READ_MESSAGE_HISTORY.0
        | Permissions::ADD_REACTIONS.0
        | Permissions::ATTACH_FILES.0
        | Permissions::CONNECT.0
        | Permissions::SPEAK.0,
);

/// A user's standing in a channel they can see.
#[derive(Debug, Clone)]
pub struct ChannelAccess {
    /// The channel.
    pub row: ChannelRow,
    /// What it is.
    pub kind: ChannelKind,
    /// The guild standing, for a guild channel.
    pub guild: Option<GuildAccess>,
    /// What the user may do in it.
    pub permissions: Permissions,
}

/// The live channel row, locked for update or not.
pub async fn row(
    mut conn: &AsyncPgConnection,
    id: ChannelId,
    lock: bool,
) -> QueryResult<Option<ChannelRow>> {
    let query = channels::table
        .filter(channels::id.eq(id))
        .filter(channels::deleted_at.is_null())
        .select(ChannelRow::as_select());
    if lock {
        query.for_update().first(&mut conn).await.optional()
    } else {
        query.first(&mut conn).await.optional()
    }
}

/// Whether `user` is a recipient of a DM or group DM.
pub async fn is_recipient(
    mut conn: &AsyncPgConnection,
    channel: ChannelId,
    user: UserId,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        channel_recipients::table
            .filter(channel_recipients::channel_id.eq(channel))
            .filter(channel_recipients::user_id.eq(user)),
    ))
    .get_result(&mut conn)
    .await
}

/// `user`'s access to a channel: 404 unless they can see it. `lock` takes the guild's
/// structure lock for a guild channel (changes of who sees what), or the channel row's
/// lock for a DM (changes of its recipients).
pub async fn load(
    conn: &AsyncPgConnection,
    id: ChannelId,
    user: UserId,
    lock: bool,
) -> AppResult<ChannelAccess> {
    let not_found = || AppError::not_found("channel");
    let peek = row(conn, id, false).await?.ok_or_else(not_found)?;
    let kind = ChannelKind::parse(&peek.kind).ok_or_else(not_found)?;
    match peek.guild_id {
        Some(guild) => {
            let guild_lock = if lock { Lock::Structure } else { Lock::No };
            // Not a member is as unknown as no channel; a database fault stays one.
            // The member's standing and the channel's overwrites, sent together (after
            // the guild's lock, when taken).
            let channel = [id];
            let (access, overwrites) = futures_util::join!(
                guild_access::load(conn, guild, user, guild_lock),
                visibility::overwrites_of(conn, &channel),
            );
            // Not a member is as unknown as no channel; a database fault stays one.
            let access = access.map_err(|e| {
                if e.code() == synctalk_kernel::ErrorCode::NotFound {
                    not_found()
                } else {
                    e
                }
            })?;
            let overwrites = overwrites?;
            // Read again under the guild's lock: the channel may have gone meanwhile.
            // (Without the lock, the first read is as good as a second.)
            let row = if lock {
                row(conn, id, false).await?.ok_or_else(not_found)?
            } else {
                peek
            };
            let overwrites: Vec<_> = overwrites.iter().map(|o| o.overwrite()).collect();
            let permissions = access.in_channel(&overwrites);
            if !permissions.contains(Permissions::VIEW_CHANNEL) {
                return Err(not_found());
            }
            Ok(ChannelAccess {
                row,
                kind,
                guild: Some(access),
                permissions,
            })
        }
        None => {
            let row = if lock {
                row(conn, id, true).await?.ok_or_else(not_found)?
            } else {
                peek
            };
            if !is_recipient(conn, id, user).await? {
                return Err(not_found());
            }
            Ok(ChannelAccess {
                row,
                kind,
                guild: None,
                permissions: RECIPIENT,
            })
        }
    }
}

impl ChannelAccess {
    /// 403 `missing_permissions` unless the user has `needed` in the channel.
    pub fn require(&self, needed: Permissions, what: &str) -> AppResult<()> {
        if self.permissions.contains(needed) {
            Ok(())
        } else {
            Err(guild_access::missing(what))
        }
    }
}
