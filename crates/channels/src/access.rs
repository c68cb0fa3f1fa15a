//! Who can see a channel and what they may do in it, decided once for every route
//! (and, later, for messaging): a guild channel through the guild's permission
//! algorithm with the channel's overwrites; a DM or group DM by being a recipient.
//! A channel you cannot see is 404, whether it exists or not.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types;
use diesel_async::RunQueryDsl;
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{channel_recipients, channels};
use synctalk_guilds::access::{self as guild_access, Access as GuildAccess, Lock};
use synctalk_guilds::dto::ChannelKind;
use synctalk_guilds::model::{ChannelRow, GuildRow, OverwriteRow, RoleRow};
use synctalk_guilds::permissions::Permissions;
use synctalk_guilds::visibility;
use synctalk_kernel::{AppError, AppResult, ChannelId, GuildId, RoleId, UserId};

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
    // FOR NO KEY UPDATE: nothing here changes a key, and a message's foreign key (a
    // key-share lock on the channel) must not wait on it while it waits on the
    // channel's topic lock that the sending transaction holds.
    if lock {
        query.for_no_key_update().first(&mut conn).await.optional()
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
    if !lock {
        return standing(conn, id, user)
            .await?
            .and_then(|s| s.decide(user))
            .ok_or_else(not_found);
    }
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

/// The statement `standing` runs (channel `$1`, user `$2`): [`Standing`]'s columns,
/// then those `$extra` names (a literal starting with a comma, that may use the aliases
/// `c` for the channel and `g` for its live guild; empty for none). For a route that
/// reads more beside the standing in one snapshot and round trip; its text fixed at
/// compile time, so it is kept prepared like this one.
#[macro_export]
macro_rules! standing_sql {
    ($extra:literal) => {
        $crate::standing_sql!("$1", "$2", "", $extra)
    };
    // Channel `$channel`, user `$user` (SQL expressions), with `$from` (empty, or
    // items ending with a comma) before the channel in the `FROM` list.
    ($channel:literal, $user:literal, $from:literal, $extra:literal) => {
        concat!(
            "SELECT c.id, c.kind, c.guild_id, c.name, c.topic, c.parent_id, c.position, \
            c.owner_id, c.created_at, \
            g.name AS guild_name, g.owner_id AS guild_owner, \
            g.icon_url AS guild_icon, g.created_at AS guild_created, \
            CASE WHEN c.guild_id IS NULL \
            THEN EXISTS (SELECT 1 FROM channel_recipients cr \
            WHERE cr.channel_id = c.id AND cr.user_id = ",
            $user,
            ") ELSE EXISTS (SELECT 1 FROM members m \
            WHERE m.guild_id = c.guild_id AND m.user_id = ",
            $user,
            ") END AS belongs, \
            ARRAY(SELECT mr.role_id FROM member_roles mr \
            WHERE mr.guild_id = c.guild_id AND mr.user_id = ",
            $user,
            ") AS member_roles, \
            coalesce(r.ids, '{}') AS role_ids, \
            coalesce(r.names, '{}') AS role_names, \
            coalesce(r.colors, '{}') AS role_colors, \
            coalesce(r.permissions, '{}') AS role_permissions, \
            coalesce(r.positions, '{}') AS role_positions, \
            coalesce(o.targets, '{}') AS overwrite_targets, \
            coalesce(o.kinds, '{}') AS overwrite_kinds, \
            coalesce(o.allows, '{}') AS overwrite_allows, \
            coalesce(o.denies, '{}') AS overwrite_denies",
            $extra,
            " FROM ",
            $from,
            " channels c \
            LEFT JOIN guilds g ON g.id = c.guild_id AND g.deleted_at IS NULL \
            LEFT JOIN LATERAL ( \
            SELECT array_agg(x.id ORDER BY x.position, x.id) AS ids, \
            array_agg(x.name ORDER BY x.position, x.id) AS names, \
            array_agg(x.color ORDER BY x.position, x.id) AS colors, \
            array_agg(x.permissions ORDER BY x.position, x.id) AS permissions, \
            array_agg(x.position ORDER BY x.position, x.id) AS positions \
            FROM roles x WHERE x.guild_id = g.id) r ON true \
            LEFT JOIN LATERAL ( \
            SELECT array_agg(w.target_id ORDER BY w.target_id) AS targets, \
            array_agg(w.kind ORDER BY w.target_id) AS kinds, \
            array_agg(w.allow ORDER BY w.target_id) AS allows, \
            array_agg(w.deny ORDER BY w.target_id) AS denies \
            FROM channel_overwrites w WHERE w.channel_id = c.id AND g.id IS NOT NULL) o ON true \
            WHERE c.id = ",
            $channel,
            " AND c.deleted_at IS NULL"
        )
    };
}

/// Everything that decides a user's access to a channel, read in one statement (one
/// plan, one round trip, the statement kept prepared): the channel; for a guild
/// channel its live guild, whether the user is a member, their roles, the guild's
/// roles and the channel's overwrites; for a DM whether they are a recipient. The
/// same rows [`load`] reads one by one when it takes locks.
#[derive(QueryableByName)]
pub struct Standing {
    #[diesel(sql_type = sql_types::Uuid)]
    id: uuid::Uuid,
    #[diesel(sql_type = sql_types::Text)]
    kind: String,
    #[diesel(sql_type = sql_types::Nullable<sql_types::Uuid>)]
    guild_id: Option<uuid::Uuid>,
    #[diesel(sql_type = sql_types::Nullable<sql_types::Text>)]
    name: Option<String>,
    #[diesel(sql_type = sql_types::Nullable<sql_types::Text>)]
    topic: Option<String>,
    #[diesel(sql_type = sql_types::Nullable<sql_types::Uuid>)]
    parent_id: Option<uuid::Uuid>,
    #[diesel(sql_type = sql_types::Int4)]
    position: i32,
    #[diesel(sql_type = sql_types::Nullable<sql_types::Uuid>)]
    owner_id: Option<uuid::Uuid>,
    #[diesel(sql_type = sql_types::Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = sql_types::Nullable<sql_types::Text>)]
    guild_name: Option<String>,
    #[diesel(sql_type = sql_types::Nullable<sql_types::Uuid>)]
    guild_owner: Option<uuid::Uuid>,
    #[diesel(sql_type = sql_types::Nullable<sql_types::Text>)]
    guild_icon: Option<String>,
    #[diesel(sql_type = sql_types::Nullable<sql_types::Timestamptz>)]
    guild_created: Option<DateTime<Utc>>,
    /// A member of its guild, or a recipient of the DM.
    #[diesel(sql_type = sql_types::Bool)]
    belongs: bool,
    #[diesel(sql_type = sql_types::Array<sql_types::Uuid>)]
    member_roles: Vec<uuid::Uuid>,
    #[diesel(sql_type = sql_types::Array<sql_types::Uuid>)]
    role_ids: Vec<uuid::Uuid>,
    #[diesel(sql_type = sql_types::Array<sql_types::Text>)]
    role_names: Vec<String>,
    #[diesel(sql_type = sql_types::Array<sql_types::Int4>)]
    role_colors: Vec<i32>,
    #[diesel(sql_type = sql_types::Array<sql_types::Int8>)]
    role_permissions: Vec<i64>,
    #[diesel(sql_type = sql_types::Array<sql_types::Int4>)]
    role_positions: Vec<i32>,
    #[diesel(sql_type = sql_types::Array<sql_types::Uuid>)]
    overwrite_targets: Vec<uuid::Uuid>,
    #[diesel(sql_type = sql_types::Array<sql_types::Text>)]
    overwrite_kinds: Vec<String>,
    #[diesel(sql_type = sql_types::Array<sql_types::Int8>)]
    overwrite_allows: Vec<i64>,
    #[diesel(sql_type = sql_types::Array<sql_types::Int8>)]
    overwrite_denies: Vec<i64>,
}

/// `user`'s standing in channel `id`, if the channel is live (see [`Standing`]).
async fn standing(
    mut conn: &AsyncPgConnection,
    id: ChannelId,
    user: UserId,
) -> QueryResult<Option<Standing>> {
    // Roles by position, overwrites by target: the orders `load` reads them in.
    synctalk_db::sql(standing_sql!(""))
        .bind::<sql_types::Uuid, _>(id.0)
        .bind::<sql_types::Uuid, _>(user.0)
        .get_result(&mut conn)
        .await
        .optional()
}

/// Each `(channel, user)` pair's access, as [`load`] without locks decides it (`None`:
/// 404), in one statement: the standing statement once over all pairs.
pub async fn load_many(
    mut conn: &AsyncPgConnection,
    pairs: &[(ChannelId, UserId)],
) -> QueryResult<Vec<Option<ChannelAccess>>> {
    #[derive(QueryableByName)]
    struct Numbered {
        #[diesel(sql_type = sql_types::BigInt)]
        n: i64,
        #[diesel(embed)]
        standing: Standing,
    }
    let (channels, users): (Vec<uuid::Uuid>, Vec<uuid::Uuid>) =
        pairs.iter().map(|(c, u)| (c.0, u.0)).unzip();
    let rows: Vec<Numbered> = synctalk_db::sql(standing_sql!(
        "q.channel_id",
        "q.user_id",
        "unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS q(channel_id, user_id, n),",
        ", q.n"
    ))
    .bind::<sql_types::Array<sql_types::Uuid>, _>(channels)
    .bind::<sql_types::Array<sql_types::Uuid>, _>(users)
    .load(&mut conn)
    .await?;
    let mut decided: Vec<Option<ChannelAccess>> = vec![None; pairs.len()];
    for row in rows {
        let i = usize::try_from(row.n - 1).ok().filter(|i| *i < pairs.len());
        if let Some(i) = i {
            decided[i] = row.standing.decide(pairs[i].1);
        }
    }
    Ok(decided)
}

impl Standing {
    /// The access it grants: `None` (404) for a channel of a deleted guild, one the
    /// user does not belong to, or one they cannot view.
    pub fn decide(self, user: UserId) -> Option<ChannelAccess> {
        let kind = ChannelKind::parse(&self.kind)?;
        if !self.belongs {
            return None;
        }
        let row = ChannelRow {
            id: ChannelId(self.id),
            kind: self.kind,
            guild_id: self.guild_id.map(GuildId),
            name: self.name,
            topic: self.topic,
            parent_id: self.parent_id.map(ChannelId),
            position: self.position,
            owner_id: self.owner_id.map(UserId),
            created_at: self.created_at,
        };
        let Some(guild_id) = row.guild_id else {
            return Some(ChannelAccess {
                row,
                kind,
                guild: None,
                permissions: RECIPIENT,
            });
        };
        let guild = GuildRow {
            id: guild_id,
            name: self.guild_name?,
            owner_id: UserId(self.guild_owner?),
            icon_url: self.guild_icon,
            created_at: self.guild_created?,
        };
        let role_rows: Vec<RoleRow> = self
            .role_ids
            .into_iter()
            .zip(self.role_names)
            .zip(self.role_colors)
            .zip(self.role_permissions)
            .zip(self.role_positions)
            .map(|((((id, name), color), permissions), position)| RoleRow {
                id: RoleId(id),
                guild_id,
                name,
                color,
                permissions,
                position,
            })
            .collect();
        let overwrites: Vec<_> = self
            .overwrite_targets
            .into_iter()
            .zip(self.overwrite_kinds)
            .zip(self.overwrite_allows)
            .zip(self.overwrite_denies)
            .map(|(((target_id, kind), allow), deny)| {
                OverwriteRow {
                    channel_id: row.id,
                    target_id,
                    kind,
                    allow,
                    deny,
                }
                .overwrite()
            })
            .collect();
        let roles = guild_access::ranks(&guild, &role_rows);
        let access = GuildAccess {
            guild,
            role_rows,
            roles,
            user,
            member_roles: self.member_roles.into_iter().map(RoleId).collect(),
        };
        let permissions = access.in_channel(&overwrites);
        permissions
            .contains(Permissions::VIEW_CHANNEL)
            .then_some(ChannelAccess {
                row,
                kind,
                guild: Some(access),
                permissions,
            })
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
