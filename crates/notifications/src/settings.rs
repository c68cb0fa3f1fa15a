//! Per-channel and per-guild notification settings: every message, mentions only, or
//! nothing; muted until a time. A channel's setting wins over its guild's; without
//! either, DMs and group DMs notify every message and guilds only mentions.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::notification_settings;
use synctalk_kernel::{AppError, AppResult, UserId};
use utoipa::ToSchema;
use uuid::Uuid;

/// How much to be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Every message.
    All,
    /// Only messages that mention you.
    Mentions,
    /// Nothing.
    Nothing,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Mentions => "mentions",
            Self::Nothing => "nothing",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "all" => Self::All,
            "mentions" => Self::Mentions,
            _ => Self::Nothing,
        }
    }
}

/// What a setting is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A channel (guild channel, DM or group DM).
    Channel,
    /// A guild (its channels without a setting of their own).
    Guild,
}

/// A setting.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Setting {
    /// The channel or guild.
    pub target_id: Uuid,
    /// Which of the two it is.
    pub target_kind: TargetKind,
    /// How much to be told.
    pub level: Level,
    /// No notifications until then (null: not muted).
    pub muted_until: Option<DateTime<Utc>>,
}

/// `PUT /users/@me/notification-settings/{target_id}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSetting {
    /// How much to be told.
    pub level: Level,
    /// Mute until then (null or absent: not muted; a time past is as good as none).
    #[serde(default)]
    pub muted_until: Option<DateTime<Utc>>,
}

type Row = (Uuid, String, String, Option<DateTime<Utc>>);
type UserRow = (UserId, Uuid, String, String, Option<DateTime<Utc>>);

fn setting((target_id, kind, level, muted_until): Row) -> Setting {
    Setting {
        target_id,
        target_kind: if kind == "guild" {
            TargetKind::Guild
        } else {
            TargetKind::Channel
        },
        level: Level::parse(&level),
        muted_until,
    }
}

/// The settings of `users` for any of `targets`, by (user, target).
pub(crate) async fn of_users(
    mut conn: &AsyncPgConnection,
    users: &[UserId],
    targets: &[Uuid],
) -> QueryResult<HashMap<(UserId, Uuid), Setting>> {
    let rows: Vec<UserRow> = notification_settings::table
        .filter(notification_settings::user_id.eq_any(users))
        .filter(notification_settings::target_id.eq_any(targets))
        .select((
            notification_settings::user_id,
            notification_settings::target_id,
            notification_settings::target_kind,
            notification_settings::level,
            notification_settings::muted_until,
        ))
        .load(&mut conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(user, target, kind, level, muted)| {
            ((user, target), setting((target, kind, level, muted)))
        })
        .collect())
}

/// Who asked to hear of every message of a guild channel (a setting `all` on the
/// channel or on its guild; `for_message` weighs which of the two wins), among the
/// guild's members. At most 1,000, by user id.
pub async fn wanting_all(
    mut conn: &AsyncPgConnection,
    channel: Uuid,
    guild: Uuid,
) -> QueryResult<Vec<UserId>> {
    #[derive(QueryableByName)]
    struct Wanting {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        user_id: UserId,
    }
    let rows: Vec<Wanting> = synctalk_db::sql(
        "SELECT DISTINCT s.user_id FROM notification_settings s \
         JOIN members m ON m.guild_id = $2 AND m.user_id = s.user_id \
         WHERE s.target_id IN ($1, $2) AND s.level = 'all' \
         ORDER BY s.user_id LIMIT 1000",
    )
    .bind::<diesel::sql_types::Uuid, _>(channel)
    .bind::<diesel::sql_types::Uuid, _>(guild)
    .load(&mut conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.user_id).collect())
}

/// For each `(channel, guild, author)` of messages about to be sent in guild channels:
/// whether anyone but the author asked to hear of every message there (as
/// [`wanting_all`] finds them), in one statement.
pub async fn others_wanting_all(
    mut conn: &AsyncPgConnection,
    sends: &[(Uuid, Uuid, Uuid)],
) -> QueryResult<Vec<bool>> {
    #[derive(QueryableByName)]
    struct Wanted {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        wanted: bool,
    }
    let mut columns: [Vec<Uuid>; 3] = Default::default();
    for (channel, guild, author) in sends {
        columns[0].push(*channel);
        columns[1].push(*guild);
        columns[2].push(*author);
    }
    let [channels, guilds, authors] = columns;
    let rows: Vec<Wanted> = synctalk_db::sql(
        "SELECT EXISTS (SELECT 1 FROM notification_settings s \
         JOIN members m ON m.guild_id = q.guild_id AND m.user_id = s.user_id \
         WHERE s.target_id IN (q.channel_id, q.guild_id) AND s.level = 'all' \
         AND s.user_id <> q.author_id) AS wanted \
         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) WITH ORDINALITY \
         AS q(channel_id, guild_id, author_id, n) ORDER BY q.n",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(channels)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(guilds)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(authors)
    .load(&mut conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.wanted).collect())
}

/// `user`'s settings, by target id.
pub async fn list(conn: &mut AsyncPgConnection, user: UserId) -> QueryResult<Vec<Setting>> {
    let rows: Vec<Row> = notification_settings::table
        .filter(notification_settings::user_id.eq(user))
        .order(notification_settings::target_id.asc())
        .select((
            notification_settings::target_id,
            notification_settings::target_kind,
            notification_settings::level,
            notification_settings::muted_until,
        ))
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(setting).collect())
}

/// Sets `user`'s setting for `target`, a guild they are in or a channel they can see
/// (the caller checked which: this crate knows no other domain).
pub async fn put(
    conn: &mut AsyncPgConnection,
    user: UserId,
    target: Uuid,
    kind: TargetKind,
    new: PutSetting,
) -> AppResult<Setting> {
    let kind_text = match kind {
        TargetKind::Guild => "guild",
        TargetKind::Channel => "channel",
    };
    diesel::insert_into(notification_settings::table)
        .values((
            notification_settings::user_id.eq(user),
            notification_settings::target_id.eq(target),
            notification_settings::target_kind.eq(kind_text),
            notification_settings::level.eq(new.level.as_str()),
            notification_settings::muted_until.eq(new.muted_until),
        ))
        .on_conflict((
            notification_settings::user_id,
            notification_settings::target_id,
        ))
        .do_update()
        .set((
            notification_settings::level.eq(new.level.as_str()),
            notification_settings::muted_until.eq(new.muted_until),
            notification_settings::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(Setting {
        target_id: target,
        target_kind: kind,
        level: new.level,
        muted_until: new.muted_until,
    })
}

/// Removes `user`'s setting for `target` (back to the defaults): 404 when there was
/// none.
pub async fn remove(conn: &mut AsyncPgConnection, user: UserId, target: Uuid) -> AppResult<()> {
    let removed = diesel::delete(
        notification_settings::table
            .filter(notification_settings::user_id.eq(user))
            .filter(notification_settings::target_id.eq(target)),
    )
    .execute(conn)
    .await?;
    if removed == 0 {
        return Err(AppError::not_found("setting"));
    }
    Ok(())
}
