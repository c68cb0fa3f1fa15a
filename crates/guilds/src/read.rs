//! Reads: members with their users, a guild as a member first sees it, bans, invites
//! and the audit log.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{audit_log, bans, invites, member_roles, members, users};
use synctalk_kernel::pagination::Cursor;
use synctalk_kernel::{GuildId, Page, RoleId, UserId};
use synctalk_users::dto::User;

use crate::access;
use crate::dto::{AuditEntry, Ban, Channel, Guild, GuildState, Invite, Member, Role};
use crate::model::{AuditRow, BanRow, InviteRow};
use crate::visibility::Structure;

type MemberRow = (UserId, Option<String>, chrono::DateTime<chrono::Utc>);

fn members_of(rows: Vec<(MemberRow, User)>, roles: &HashMap<UserId, Vec<RoleId>>) -> Vec<Member> {
    rows.into_iter()
        .map(|((user_id, nick, joined_at), user)| Member {
            user,
            nick,
            role_ids: roles.get(&user_id).cloned().unwrap_or_default(),
            joined_at,
        })
        .collect()
}

/// Some members of a guild (live users only), in the order of the query.
async fn load_members(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    rows: Vec<(MemberRow, User)>,
) -> QueryResult<Vec<Member>> {
    let ids: Vec<UserId> = rows.iter().map(|r| r.0.0).collect();
    let roles = access::member_roles_of(conn, guild, Some(&ids)).await?;
    Ok(members_of(rows, &roles))
}

/// One member, or `None`.
pub async fn member(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    user: UserId,
) -> QueryResult<Option<Member>> {
    let rows: Vec<(MemberRow, User)> = members::table
        .inner_join(users::table.on(users::id.eq(members::user_id)))
        .filter(members::guild_id.eq(guild))
        .filter(members::user_id.eq(user))
        .filter(users::deleted_at.is_null())
        .select((
            (members::user_id, members::nick, members::joined_at),
            User::as_select(),
        ))
        .load(conn)
        .await?;
    Ok(load_members(conn, guild, rows).await?.into_iter().next())
}

/// A page of members, by user id.
pub async fn members_page(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    page: Page,
) -> QueryResult<Vec<Member>> {
    let mut query = members::table
        .inner_join(users::table.on(users::id.eq(members::user_id)))
        .filter(members::guild_id.eq(guild))
        .filter(users::deleted_at.is_null())
        .select((
            (members::user_id, members::nick, members::joined_at),
            User::as_select(),
        ))
        .into_boxed();
    // The same bounds on the users side, or the merge join walks every user below the
    // cursor.
    query = match page.cursor {
        Cursor::After(id) | Cursor::Between { after: id, .. } => query.filter(users::id.gt(id)),
        Cursor::Before(id) => query.filter(users::id.lt(id)),
        Cursor::Start => query,
    };
    let rows: Vec<(MemberRow, User)> = synctalk_kernel::keyset!(query, members::user_id, page)
        .load(conn)
        .await?;
    load_members(conn, guild, page.in_order(rows)).await
}

/// The members that `users` are of `guilds` (live users only), keyed by both, in two
/// queries.
pub async fn members_of_many(
    conn: &mut AsyncPgConnection,
    guilds: &[GuildId],
    users_: &[UserId],
) -> QueryResult<HashMap<(GuildId, UserId), Member>> {
    let rows: Vec<(GuildId, MemberRow, User)> = members::table
        .inner_join(users::table.on(users::id.eq(members::user_id)))
        .filter(members::guild_id.eq_any(guilds))
        .filter(members::user_id.eq_any(users_))
        .filter(users::deleted_at.is_null())
        .select((
            members::guild_id,
            (members::user_id, members::nick, members::joined_at),
            User::as_select(),
        ))
        .load(conn)
        .await?;
    let roles: Vec<(GuildId, UserId, RoleId)> = member_roles::table
        .filter(member_roles::guild_id.eq_any(guilds))
        .filter(member_roles::user_id.eq_any(users_))
        .select((
            member_roles::guild_id,
            member_roles::user_id,
            member_roles::role_id,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(guild, (user_id, nick, joined_at), user)| {
            let role_ids = roles
                .iter()
                .filter(|(g, u, _)| *g == guild && *u == user_id)
                .map(|(_, _, r)| *r)
                .collect();
            let member = Member {
                user,
                nick,
                role_ids,
                joined_at,
            };
            ((guild, user_id), member)
        })
        .collect())
}

/// How many members each of `guilds` has, in one query (the count the trigger on
/// `members` keeps).
pub async fn member_counts(
    conn: &mut AsyncPgConnection,
    guild_ids: &[GuildId],
) -> QueryResult<HashMap<GuildId, i64>> {
    use synctalk_db::schema::guilds;
    let rows: Vec<(GuildId, i32)> = guilds::table
        .filter(guilds::id.eq_any(guild_ids))
        .select((guilds::id, guilds::member_count))
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|(g, n)| (g, i64::from(n))).collect())
}

/// How many members a guild has.
pub async fn member_count(conn: &mut AsyncPgConnection, guild: GuildId) -> QueryResult<i64> {
    Ok(member_counts(conn, &[guild])
        .await?
        .get(&guild)
        .copied()
        .unwrap_or(0))
}

/// A guild as `member` first sees it.
pub fn state(structure: &Structure, member: Member, member_count: i64) -> GuildState {
    let channels: Vec<Channel> = structure
        .visible(member.user.id, &member.role_ids)
        .into_iter()
        .map(|row| Channel::guild(row.clone(), &structure.overwrites))
        .collect();
    GuildState {
        guild: Guild::from(structure.guild.clone()),
        roles: structure
            .role_rows
            .iter()
            .cloned()
            .map(Role::from)
            .collect(),
        channels,
        member,
        member_count,
    }
}

/// A page of bans, by user id.
pub async fn bans_page(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    page: Page,
) -> QueryResult<Vec<Ban>> {
    let query = bans::table
        .inner_join(users::table.on(users::id.eq(bans::user_id)))
        .filter(bans::guild_id.eq(guild))
        .select((BanRow::as_select(), User::as_select()))
        .into_boxed();
    let rows: Vec<(BanRow, User)> = synctalk_kernel::keyset!(query, bans::user_id, page)
        .load(conn)
        .await?;
    Ok(page
        .in_order(rows)
        .into_iter()
        .map(|(ban, user)| Ban {
            user,
            reason: ban.reason,
            created_at: ban.created_at,
        })
        .collect())
}

/// Whether `user` is banned from `guild`.
pub async fn is_banned(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    user: UserId,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        bans::table
            .filter(bans::guild_id.eq(guild))
            .filter(bans::user_id.eq(user)),
    ))
    .get_result(conn)
    .await
}

/// Whether `user` is a member of `guild`.
pub async fn member_exists(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    user: UserId,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        members::table
            .filter(members::guild_id.eq(guild))
            .filter(members::user_id.eq(user)),
    ))
    .get_result(conn)
    .await
}

/// An invite as the wire shows it.
pub async fn invite(
    conn: &mut AsyncPgConnection,
    row: InviteRow,
    guild: Guild,
) -> QueryResult<Invite> {
    let member_count = member_count(conn, guild.id).await?;
    Ok(invite_of(row, guild, member_count))
}

/// An invite as the wire shows it, with its guild's member count.
pub fn invite_of(row: InviteRow, guild: Guild, member_count: i64) -> Invite {
    Invite {
        code: row.code,
        guild,
        inviter_id: row.inviter_id,
        max_uses: row.max_uses,
        uses: row.uses,
        expires_at: row.expires_at,
        target_user_id: row.target_user_id,
        member_count,
        created_at: row.created_at,
    }
}

/// A guild's live invites, newest first.
pub async fn invites_of(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
) -> QueryResult<Vec<InviteRow>> {
    invites::table
        .filter(invites::guild_id.eq(guild))
        .filter(
            invites::expires_at
                .is_null()
                .or(invites::expires_at.gt(chrono::Utc::now())),
        )
        .order(invites::created_at.desc())
        .select(InviteRow::as_select())
        .load(conn)
        .await
}

/// A page of the audit log, newest first.
pub async fn audit_page(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    page: Page,
) -> QueryResult<Vec<AuditEntry>> {
    let mut query = audit_log::table
        .filter(audit_log::guild_id.eq(guild))
        .select(AuditRow::as_select())
        .order(audit_log::id.desc())
        .limit(page.limit)
        .into_boxed();
    query = match page.cursor {
        Cursor::Start => query,
        Cursor::Before(id) => query.filter(audit_log::id.lt(id)),
        Cursor::After(id) => query.filter(audit_log::id.gt(id)),
        Cursor::Between { after, before } => query
            .filter(audit_log::id.gt(after))
            .filter(audit_log::id.lt(before)),
    };
    let rows: Vec<AuditRow> = query.load(conn).await?;
    Ok(rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            action: r.action,
            actor_id: r.actor_id,
            target_id: r.target_id,
            reason: r.reason,
            changes: r.changes,
            created_at: r.created_at,
        })
        .collect())
}

/// Records an audit-log entry.
pub async fn audit(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    actor: UserId,
    action: &str,
    target: Option<uuid::Uuid>,
    reason: Option<&str>,
    changes: serde_json::Value,
) -> QueryResult<()> {
    diesel::insert_into(audit_log::table)
        .values(AuditRow {
            id: uuid::Uuid::now_v7(),
            guild_id: guild,
            actor_id: actor,
            action: action.to_owned(),
            target_id: target,
            reason: reason.map(str::to_owned),
            changes,
            created_at: chrono::Utc::now(),
        })
        .execute(conn)
        .await?;
    Ok(())
}

/// A page of the guilds `user` is a member of, by id.
pub async fn guilds_of(
    conn: &mut AsyncPgConnection,
    user: UserId,
    page: Page,
) -> QueryResult<Vec<Guild>> {
    use synctalk_db::schema::guilds;
    let query = guilds::table
        .inner_join(members::table.on(members::guild_id.eq(guilds::id)))
        .filter(members::user_id.eq(user))
        .filter(guilds::deleted_at.is_null())
        .select(crate::model::GuildRow::as_select())
        .into_boxed();
    let rows = synctalk_kernel::keyset!(query, guilds::id, page)
        .load(conn)
        .await?;
    Ok(page.in_order(rows).into_iter().map(Guild::from).collect())
}

/// Presence goes to the members of guilds up to this size; in larger ones (as in
/// Discord's "large" guilds) every member's every change would reach every other.
pub const PRESENCE_GUILD_LIMIT: i32 = 250;

/// The guild topics of each of `users` for presence (the live guilds they are in of at
/// most [`PRESENCE_GUILD_LIMIT`] members), in one query.
pub async fn guild_topics(
    conn: &mut AsyncPgConnection,
    users_: &[UserId],
) -> QueryResult<HashMap<UserId, Vec<synctalk_gateway::Topic>>> {
    use synctalk_db::schema::guilds;
    let rows: Vec<(UserId, GuildId)> = members::table
        .inner_join(guilds::table.on(guilds::id.eq(members::guild_id)))
        .filter(members::user_id.eq_any(users_))
        .filter(guilds::deleted_at.is_null())
        .filter(guilds::member_count.le(PRESENCE_GUILD_LIMIT))
        .select((members::user_id, members::guild_id))
        .load(conn)
        .await?;
    let mut out: HashMap<UserId, Vec<synctalk_gateway::Topic>> = HashMap::new();
    for (user, guild) in rows {
        out.entry(user)
            .or_default()
            .push(synctalk_gateway::Topic::Guild(guild));
    }
    Ok(out)
}
