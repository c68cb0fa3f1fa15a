//! Direct messages: 1:1 DMs (the same pair always gets the same channel) and group DMs
//! (a name, up to 10 members, add, remove, leave). Each change is written with its
//! events and subscription records in one transaction; changes of a group DM's
//! members take the channel row's lock.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{channel_recipients, channels};
use synctalk_gateway::{Domain, Outgoing, Topic, event};
use synctalk_guilds::dto::{Channel, ChannelKind};
use synctalk_guilds::model::ChannelRow;
use synctalk_kernel::{AppError, AppResult, ChannelId, ErrorCode, UserId};
use synctalk_users::dto::User;
use synctalk_users::relationships;

use crate::access::{self, ChannelAccess};
use crate::events::{
    ChannelRecipient, ChannelRecipientRemove, PrivateChannelCreate, PrivateChannelDelete,
    PrivateChannelUpdate,
};

/// The most members a group DM may have, you included.
pub const GROUP_LIMIT: usize = 10;

/// DMs and group DMs (in the order of `rows`) with their recipients, in two queries.
pub async fn with_recipients(
    conn: &mut AsyncPgConnection,
    rows: Vec<ChannelRow>,
) -> QueryResult<Vec<Channel>> {
    let ids: Vec<ChannelId> = rows.iter().map(|r| r.id).collect();
    let pairs: Vec<(ChannelId, UserId)> = channel_recipients::table
        .filter(channel_recipients::channel_id.eq_any(&ids))
        .order((
            channel_recipients::added_at.asc(),
            channel_recipients::user_id.asc(),
        ))
        .select((channel_recipients::channel_id, channel_recipients::user_id))
        .load(conn)
        .await?;
    let mut users: Vec<UserId> = pairs.iter().map(|p| p.1).collect();
    users.sort_unstable();
    users.dedup();
    let found: Vec<User> = synctalk_users::repo::find_many(conn, &users)
        .await?
        .into_iter()
        .map(User::from)
        .collect();
    Ok(rows
        .into_iter()
        .map(|row| {
            let recipients = pairs
                .iter()
                .filter(|(c, _)| *c == row.id)
                .filter_map(|(_, u)| found.iter().find(|f| f.id == *u).cloned())
                .collect();
            Channel {
                id: row.id,
                kind: ChannelKind::parse(&row.kind).unwrap_or(ChannelKind::Dm),
                guild_id: None,
                name: row.name,
                topic: None,
                parent_id: None,
                position: 0,
                owner_id: row.owner_id,
                recipients,
                overwrites: Vec::new(),
            }
        })
        .collect())
}

/// One DM or group DM as the wire shows it.
pub async fn channel(conn: &mut AsyncPgConnection, row: ChannelRow) -> AppResult<Channel> {
    with_recipients(conn, vec![row])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| AppError::not_found("channel"))
}

/// The DMs and group DMs of `user`, newest first.
pub async fn list(conn: &mut AsyncPgConnection, user: UserId) -> AppResult<Vec<Channel>> {
    let rows: Vec<ChannelRow> = channels::table
        .inner_join(channel_recipients::table.on(channel_recipients::channel_id.eq(channels::id)))
        .filter(channel_recipients::user_id.eq(user))
        .filter(channels::deleted_at.is_null())
        .filter(channels::guild_id.is_null())
        .order(channels::id.desc())
        .select(ChannelRow::as_select())
        .load(conn)
        .await?;
    Ok(with_recipients(conn, rows).await?)
}

/// The records that make `user` a listener of `channel` and tell them of it.
fn appear(user: UserId, channel: &Channel) -> AppResult<Vec<Outgoing>> {
    Ok(vec![
        Outgoing::subscribe(
            Domain::Channels,
            Topic::User(user),
            Topic::Channel(channel.id),
        )?,
        Outgoing::event(Topic::User(user), &PrivateChannelCreate(channel.clone()))?,
    ])
}

fn blocked() -> AppError {
    AppError::new(ErrorCode::Blocked, "this user has blocked you")
}

/// Opens (or finds) the 1:1 DM of `me` and `other`; `true` when it was made now. A user
/// who blocked you cannot be messaged: 403 `blocked`.
pub async fn open(
    conn: &mut AsyncPgConnection,
    me: UserId,
    other: UserId,
) -> AppResult<(Channel, bool)> {
    if me == other {
        return Err(AppError::field("recipient_id", "must be someone else"));
    }
    conn.transaction::<_, AppError, _>(async |conn| {
        if synctalk_users::repo::find(conn, other).await?.is_none() {
            return Err(AppError::not_found("user"));
        }
        if relationships::has_blocked(conn, other, me).await? {
            return Err(blocked());
        }
        let (low, high) = if me < other { (me, other) } else { (other, me) };
        let id = ChannelId::new();
        let made = diesel::insert_into(channels::table)
            .values((
                channels::id.eq(id),
                channels::kind.eq("dm"),
                channels::dm_low.eq(low),
                channels::dm_high.eq(high),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?
            == 1;
        let row: ChannelRow = channels::table
            .filter(channels::dm_low.eq(low))
            .filter(channels::dm_high.eq(high))
            .filter(channels::kind.eq("dm"))
            .select(ChannelRow::as_select())
            .first(conn)
            .await?;
        if made {
            diesel::insert_into(channel_recipients::table)
                .values(vec![
                    (
                        channel_recipients::channel_id.eq(id),
                        channel_recipients::user_id.eq(me),
                    ),
                    (
                        channel_recipients::channel_id.eq(id),
                        channel_recipients::user_id.eq(other),
                    ),
                ])
                .execute(conn)
                .await?;
        }
        let dm = channel(conn, row).await?;
        if made {
            let mut rows = appear(me, &dm)?;
            rows.extend(appear(other, &dm)?);
            event::append(conn, &rows).await?;
        }
        Ok((dm, made))
    })
    .await
}

/// Makes a group DM of `me` and `others` (up to 9 other users, none of whom blocked
/// you; a group of one is yours to add people to later).
pub async fn create_group(
    conn: &mut AsyncPgConnection,
    me: UserId,
    others: Vec<UserId>,
    name: Option<String>,
) -> AppResult<Channel> {
    let mut members = others;
    members.retain(|u| *u != me);
    members.sort_unstable();
    members.dedup();
    if members.len() + 1 > GROUP_LIMIT {
        return Err(AppError::new(
            ErrorCode::GroupFull,
            "a group DM has at most 10 members, you included",
        ));
    }
    conn.transaction::<_, AppError, _>(async |conn| {
        let found = synctalk_users::repo::find_many(conn, &members).await?;
        if found.len() != members.len() {
            return Err(AppError::not_found("user"));
        }
        for other in &members {
            if relationships::has_blocked(conn, *other, me).await? {
                return Err(blocked());
            }
        }
        let id = ChannelId::new();
        diesel::insert_into(channels::table)
            .values((
                channels::id.eq(id),
                channels::kind.eq("group_dm"),
                channels::name.eq(&name),
                channels::owner_id.eq(me),
            ))
            .execute(conn)
            .await?;
        let mut everyone = vec![me];
        everyone.extend(&members);
        let values: Vec<_> = everyone
            .iter()
            .map(|u| {
                (
                    channel_recipients::channel_id.eq(id),
                    channel_recipients::user_id.eq(*u),
                )
            })
            .collect();
        diesel::insert_into(channel_recipients::table)
            .values(values)
            .execute(conn)
            .await?;
        let row = access::row(conn, id, false)
            .await?
            .ok_or_else(|| AppError::not_found("channel"))?;
        let group = channel(conn, row).await?;
        let mut rows = Vec::new();
        for user in &everyone {
            rows.extend(appear(*user, &group)?);
        }
        event::append(conn, &rows).await?;
        Ok(group)
    })
    .await
}

fn group_only(access: &ChannelAccess) -> AppResult<()> {
    if access.kind == ChannelKind::GroupDm {
        Ok(())
    } else {
        Err(AppError::new(
            ErrorCode::Conflict,
            "only a group DM has members to add or remove",
        ))
    }
}

/// Renames a group DM (any member); recipients get CHANNEL_UPDATE.
pub async fn rename(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    me: UserId,
    name: Option<String>,
) -> AppResult<Channel> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, channel_id, me, true).await?;
        group_only(&access)?;
        diesel::update(channels::table.find(channel_id))
            .set(channels::name.eq(&name))
            .execute(conn)
            .await?;
        let mut row = access.row;
        row.name = name;
        let group = channel(conn, row).await?;
        let update = Outgoing::event(
            Topic::Channel(channel_id),
            &PrivateChannelUpdate(group.clone()),
        )?;
        event::append(conn, &[update]).await?;
        Ok(group)
    })
    .await
}

/// Adds `user` to a group DM (any member may; at most 10; nobody who blocked you).
/// Adding a member again changes nothing.
pub async fn add(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    me: UserId,
    user: UserId,
) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, channel_id, me, true).await?;
        group_only(&access)?;
        let Some(added) = synctalk_users::repo::find(conn, user).await? else {
            return Err(AppError::not_found("user"));
        };
        if access::is_recipient(conn, channel_id, user).await? {
            return Ok(());
        }
        if relationships::has_blocked(conn, user, me).await? {
            return Err(blocked());
        }
        let count: i64 = channel_recipients::table
            .filter(channel_recipients::channel_id.eq(channel_id))
            .count()
            .get_result(conn)
            .await?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= GROUP_LIMIT {
            return Err(AppError::new(
                ErrorCode::GroupFull,
                "a group DM has at most 10 members",
            ));
        }
        diesel::insert_into(channel_recipients::table)
            .values((
                channel_recipients::channel_id.eq(channel_id),
                channel_recipients::user_id.eq(user),
            ))
            .execute(conn)
            .await?;
        let group = channel(conn, access.row).await?;
        let mut rows = vec![Outgoing::event(
            Topic::Channel(channel_id),
            &ChannelRecipient {
                channel_id,
                user: added.into(),
            },
        )?];
        rows.extend(appear(user, &group)?);
        event::append(conn, &rows).await?;
        Ok(())
    })
    .await
}

/// Removes `user` from a group DM: yourself (leaving) or, as its owner, anyone. The
/// last member cannot be removed; an owner who leaves hands it to the longest-standing
/// member. The removed user's sockets get CHANNEL_RECIPIENT_REMOVE, then CHANNEL_DELETE
/// and nothing more of it.
pub async fn remove(
    conn: &mut AsyncPgConnection,
    channel_id: ChannelId,
    me: UserId,
    user: UserId,
) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, channel_id, me, true).await?;
        group_only(&access)?;
        if user != me && access.row.owner_id != Some(me) {
            return Err(synctalk_guilds::access::missing(
                "remove others (only the group's owner can)",
            ));
        }
        let members: Vec<UserId> = channel_recipients::table
            .filter(channel_recipients::channel_id.eq(channel_id))
            .order((
                channel_recipients::added_at.asc(),
                channel_recipients::user_id.asc(),
            ))
            .select(channel_recipients::user_id)
            .load(conn)
            .await?;
        if !members.contains(&user) {
            return Err(AppError::not_found("recipient"));
        }
        if members.len() == 1 {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "the last member of a group DM cannot be removed",
            ));
        }
        let before = channel(conn, access.row.clone()).await?;
        diesel::delete(
            channel_recipients::table
                .filter(channel_recipients::channel_id.eq(channel_id))
                .filter(channel_recipients::user_id.eq(user)),
        )
        .execute(conn)
        .await?;
        let topic = Topic::Channel(channel_id);
        let mut rows = Vec::new();
        if let Some(removed) = before.recipients.iter().find(|u| u.id == user) {
            rows.push(Outgoing::event(
                topic,
                &ChannelRecipientRemove(ChannelRecipient {
                    channel_id,
                    user: removed.clone(),
                }),
            )?);
        }
        rows.push(Outgoing::unsubscribe(
            Domain::Channels,
            Topic::User(user),
            topic,
        )?);
        rows.push(Outgoing::event(
            Topic::User(user),
            &PrivateChannelDelete(before),
        )?);
        if access.row.owner_id == Some(user) {
            let heir = members.iter().copied().find(|m| *m != user);
            diesel::update(channels::table.find(channel_id))
                .set(channels::owner_id.eq(heir))
                .execute(conn)
                .await?;
            let row = access::row(conn, channel_id, false)
                .await?
                .ok_or_else(|| AppError::not_found("channel"))?;
            let group = channel(conn, row).await?;
            rows.push(Outgoing::event(topic, &PrivateChannelUpdate(group))?);
        }
        event::append(conn, &rows).await?;
        Ok(())
    })
    .await
}
