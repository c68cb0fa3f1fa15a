//! Every change to a guild: each in one transaction with its events, its subscription
//! records and its audit-log entry. They take a connection, so callers can compose
//! them in a larger transaction (nested ones become savepoints).

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::json;
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{bans, channels, guilds, invites, member_roles, members, roles};
use synctalk_gateway::{Outgoing, Topic, event};
use synctalk_kernel::{AppError, AppResult, ChannelId, ErrorCode, GuildId, RoleId, UserId};

use crate::access::{self, Access, Lock};
use crate::dto::{Guild, Invite, Member, Role};
use crate::events::{
    GuildBan, GuildBanRemove, GuildDeleted, GuildMember, GuildMemberRemove, GuildMemberUpdate,
    GuildRole, GuildRoleDelete, GuildRoleUpdate,
};
use crate::model::{ChannelRow, GuildRow, InviteRow, RoleRow};
use crate::permissions::Permissions;
use crate::read;
use crate::visibility::{self, Structure};

/// A parsed `POST /guilds`.
#[derive(Debug)]
pub struct NewGuild {
    /// Name.
    pub name: String,
    /// Icon.
    pub icon_url: Option<String>,
}

/// Creates a guild owned by `owner`, with `@everyone` and a `general` text channel.
pub async fn create(
    conn: &mut AsyncPgConnection,
    owner: UserId,
    new: NewGuild,
) -> AppResult<Guild> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let id = GuildId::new();
        diesel::insert_into(guilds::table)
            .values((
                guilds::id.eq(id),
                guilds::name.eq(&new.name),
                guilds::owner_id.eq(owner),
                guilds::icon_url.eq(&new.icon_url),
            ))
            .execute(conn)
            .await?;
        diesel::insert_into(roles::table)
            .values(RoleRow {
                id: RoleId(id.0),
                guild_id: id,
                name: "@everyone".into(),
                color: 0,
                permissions: Permissions::EVERYONE_DEFAULT.to_db(),
                position: 0,
            })
            .execute(conn)
            .await?;
        diesel::insert_into(members::table)
            .values((members::guild_id.eq(id), members::user_id.eq(owner)))
            .execute(conn)
            .await?;
        insert_channel(
            conn,
            &ChannelRow {
                id: ChannelId::new(),
                kind: "text".into(),
                guild_id: Some(id),
                name: Some("general".into()),
                topic: None,
                parent_id: None,
                position: 0,
                owner_id: None,
                created_at: chrono::Utc::now(),
            },
        )
        .await?;
        let guild = access::guild(conn, id, Lock::No)
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("the new guild is gone")))?;
        let structure = visibility::structure(conn, &guild).await?;
        let me = read::member(conn, id, owner)
            .await?
            .ok_or_else(|| AppError::not_found("user"))?;
        let mut rows = visibility::joining(&structure, owner, &[])?;
        rows.push(Outgoing::event(
            Topic::User(owner),
            &read::state(&structure, me, 1),
        )?);
        event::append(conn, &rows).await?;
        Ok(Guild::from(guild))
    })
    .await
}

/// Inserts a guild channel row (the channels crate creates the others).
pub async fn insert_channel(conn: &mut AsyncPgConnection, row: &ChannelRow) -> QueryResult<()> {
    diesel::insert_into(channels::table)
        .values(row)
        .execute(conn)
        .await?;
    Ok(())
}

/// A parsed `PATCH /guilds/{id}`.
#[derive(Debug, Default)]
pub struct GuildChanges {
    /// New name.
    pub name: Option<String>,
    /// New icon (`Some(None)` clears it).
    pub icon_url: Option<Option<String>>,
    /// New owner.
    pub owner_id: Option<UserId>,
}

/// Updates a guild: name and icon with MANAGE_GUILD; the owner alone hands ownership
/// to another member.
pub async fn update(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    actor: UserId,
    changes: GuildChanges,
) -> AppResult<Guild> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, guild, actor, Lock::Structure).await?;
        if changes.name.is_some() || changes.icon_url.is_some() {
            access.require(Permissions::MANAGE_GUILD, "edit the guild")?;
        }
        let mut rows = Vec::new();
        let mut audit = serde_json::Map::new();
        if let Some(owner) = changes.owner_id.filter(|o| *o != access.guild.owner_id) {
            if !access.is_owner() {
                return Err(access::missing("transfer ownership (only the owner can)"));
            }
            let pair = [actor, owner];
            let members_roles = access::member_roles_of(conn, guild, Some(&pair)).await?;
            let live = synctalk_users::repo::find(conn, owner).await?.is_some();
            if !live || !members_roles.contains_key(&owner) {
                return Err(AppError::not_found("member (owner_id)"));
            }
            let before = visibility::structure(conn, &access.guild).await?;
            let seen_before = before.sight(&members_roles);
            diesel::update(guilds::table.find(guild))
                .set(guilds::owner_id.eq(owner))
                .execute(conn)
                .await?;
            let mut after = before.clone();
            after.guild.owner_id = owner;
            after.roles.owner = owner;
            let seen_after = after.sight(&members_roles);
            rows.extend(visibility::changes(
                (&before, &seen_before),
                (&after, &seen_after),
            )?);
            audit.insert(
                "owner_id".into(),
                json!({"old": access.guild.owner_id, "new": owner}),
            );
        }
        if let Some(name) = &changes.name {
            audit.insert(
                "name".into(),
                json!({"old": access.guild.name, "new": name}),
            );
        }
        if let Some(icon) = &changes.icon_url {
            audit.insert(
                "icon_url".into(),
                json!({"old": access.guild.icon_url, "new": icon}),
            );
        }
        if changes.name.is_some() || changes.icon_url.is_some() {
            // One statement for both (a field left out keeps its value).
            diesel::update(guilds::table.find(guild))
                .set((
                    guilds::name.eq(changes.name.as_ref().unwrap_or(&access.guild.name)),
                    guilds::icon_url.eq(changes
                        .icon_url
                        .clone()
                        .unwrap_or_else(|| access.guild.icon_url.clone())),
                ))
                .execute(conn)
                .await?;
        }
        let updated = Guild::from(
            access::guild(conn, guild, Lock::No)
                .await?
                .ok_or_else(|| AppError::not_found("guild"))?,
        );
        if !audit.is_empty() {
            rows.push(Outgoing::event(Topic::Guild(guild), &updated)?);
            read::audit(
                conn,
                guild,
                actor,
                "guild_update",
                Some(guild.0),
                None,
                audit.into(),
            )
            .await?;
        }
        event::append(conn, &rows).await?;
        Ok(updated)
    })
    .await
}

/// Deletes a guild (soft; owner only): every member gets GUILD_DELETE and stops
/// listening to it and its channels.
pub async fn delete(conn: &mut AsyncPgConnection, guild: GuildId, actor: UserId) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, guild, actor, Lock::Structure).await?;
        if !access.is_owner() {
            return Err(access::missing("delete the guild (only the owner can)"));
        }
        let structure = visibility::structure(conn, &access.guild).await?;
        diesel::update(guilds::table.find(guild))
            .set(guilds::deleted_at.eq(chrono::Utc::now()))
            .execute(conn)
            .await?;
        let topic = Topic::Guild(guild);
        let mut rows = vec![Outgoing::event(topic, &GuildDeleted { id: guild })?];
        for channel in &structure.channels {
            rows.push(Outgoing::unsubscribe(
                synctalk_gateway::Domain::Guilds,
                topic,
                Topic::Channel(channel.id),
            )?);
        }
        rows.push(Outgoing::unsubscribe(
            synctalk_gateway::Domain::Guilds,
            topic,
            topic,
        )?);
        event::append(conn, &rows).await?;
        Ok(())
    })
    .await
}

/// Why a member goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    Leave,
    Kick,
}

/// Takes `user` out of the guild (inside the caller's transaction, under the lock).
async fn remove_member(
    conn: &mut AsyncPgConnection,
    access: &Access,
    user: UserId,
) -> AppResult<Vec<Outgoing>> {
    let guild = access.guild.id;
    let member = read::member(conn, guild, user).await?;
    let deleted = diesel::delete(
        members::table
            .filter(members::guild_id.eq(guild))
            .filter(members::user_id.eq(user)),
    )
    .execute(conn)
    .await?;
    if deleted == 0 {
        return Ok(Vec::new());
    }
    let structure = visibility::structure(conn, &access.guild).await?;
    let mut rows = visibility::leaving(&structure, user)?;
    if let Some(member) = member {
        rows.push(Outgoing::event(
            Topic::Guild(guild),
            &GuildMemberRemove {
                guild_id: guild,
                user: member.user,
            },
        )?);
    }
    Ok(rows)
}

/// Leaves a guild; the owner must hand it over or delete it first.
pub async fn leave(conn: &mut AsyncPgConnection, guild: GuildId, user: UserId) -> AppResult<()> {
    remove(conn, guild, user, user, Removal::Leave, None).await
}

/// Kicks a member (KICK_MEMBERS, and a highest role above theirs).
pub async fn kick(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    actor: UserId,
    target: UserId,
    reason: Option<&str>,
) -> AppResult<()> {
    remove(conn, guild, actor, target, Removal::Kick, reason).await
}

async fn remove(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    actor: UserId,
    target: UserId,
    why: Removal,
    reason: Option<&str>,
) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, guild, actor, Lock::Structure).await?;
        match why {
            Removal::Leave => {
                if access.is_owner() {
                    return Err(AppError::new(
                        ErrorCode::Conflict,
                        "the owner cannot leave: transfer ownership or delete the guild",
                    ));
                }
            }
            Removal::Kick => {
                access.require(Permissions::KICK_MEMBERS, "kick members")?;
                let roles = access::member_roles_of(conn, guild, Some(&[target])).await?;
                let Some(target_roles) = roles.get(&target) else {
                    return Err(AppError::not_found("member"));
                };
                access.require_above(target, target_roles, "remove")?;
            }
        }
        let rows = remove_member(conn, &access, target).await?;
        if why == Removal::Kick {
            read::audit(
                conn,
                guild,
                actor,
                "member_kick",
                Some(target.0),
                reason,
                json!({}),
            )
            .await?;
        }
        event::append(conn, &rows).await?;
        Ok(())
    })
    .await
}

/// Bans a user (BAN_MEMBERS; a member must be below the actor's highest role); a
/// member is removed at once. Banning again updates the reason.
pub async fn ban(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    actor: UserId,
    target: UserId,
    reason: Option<String>,
) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, guild, actor, Lock::Structure).await?;
        access.require(Permissions::BAN_MEMBERS, "ban members")?;
        let user = synctalk_users::repo::find(conn, target)
            .await?
            .ok_or_else(|| AppError::not_found("user"))?;
        let roles = access::member_roles_of(conn, guild, Some(&[target])).await?;
        if target == access.guild.owner_id || target == actor {
            return Err(AppError::new(
                ErrorCode::MissingPermissions,
                "you cannot ban yourself or the owner",
            ));
        }
        if let Some(target_roles) = roles.get(&target) {
            access.require_above(target, target_roles, "ban")?;
        }
        let existed = read::is_banned(conn, guild, target).await?;
        diesel::insert_into(bans::table)
            .values((
                bans::guild_id.eq(guild),
                bans::user_id.eq(target),
                bans::reason.eq(&reason),
                bans::banned_by.eq(actor),
            ))
            .on_conflict((bans::guild_id, bans::user_id))
            .do_update()
            .set(bans::reason.eq(&reason))
            .execute(conn)
            .await?;
        let mut rows = remove_member(conn, &access, target).await?;
        if !existed {
            let ban = GuildBan {
                guild_id: guild,
                user: user.into(),
            };
            for moderator in moderators(conn, &access).await? {
                rows.push(Outgoing::event(Topic::User(moderator), &ban)?);
            }
        }
        read::audit(
            conn,
            guild,
            actor,
            "member_ban_add",
            Some(target.0),
            reason.as_deref(),
            json!({}),
        )
        .await?;
        event::append(conn, &rows).await?;
        Ok(())
    })
    .await
}

/// The members who may see bans (BAN_MEMBERS): ban events go to them alone, as the
/// ban list does.
async fn moderators(conn: &mut AsyncPgConnection, access: &Access) -> AppResult<Vec<UserId>> {
    let members = access::member_roles_of(conn, access.guild.id, None).await?;
    Ok(members
        .into_iter()
        .filter(|(user, roles)| {
            access
                .roles
                .base(*user, roles)
                .contains(Permissions::BAN_MEMBERS)
        })
        .map(|(user, _)| user)
        .collect())
}

/// Lifts a ban (BAN_MEMBERS); 404 when there is none.
pub async fn unban(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    actor: UserId,
    target: UserId,
    reason: Option<&str>,
) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, guild, actor, Lock::Structure).await?;
        access.require(Permissions::BAN_MEMBERS, "unban members")?;
        let deleted = diesel::delete(
            bans::table
                .filter(bans::guild_id.eq(guild))
                .filter(bans::user_id.eq(target)),
        )
        .execute(conn)
        .await?;
        if deleted == 0 {
            return Err(AppError::not_found("ban"));
        }
        let mut rows = Vec::new();
        if let Some(user) = synctalk_users::repo::find(conn, target).await? {
            let lifted = GuildBanRemove(GuildBan {
                guild_id: guild,
                user: user.into(),
            });
            for moderator in moderators(conn, &access).await? {
                rows.push(Outgoing::event(Topic::User(moderator), &lifted)?);
            }
        }
        read::audit(
            conn,
            guild,
            actor,
            "member_ban_remove",
            Some(target.0),
            reason,
            json!({}),
        )
        .await?;
        event::append(conn, &rows).await?;
        Ok(())
    })
    .await
}

/// A parsed `POST /guilds/{id}/invites`.
#[derive(Debug)]
pub struct NewInvite {
    /// 0 is unlimited.
    pub max_uses: i32,
    /// 0 never expires.
    pub max_age_secs: i64,
    /// Meant for this user.
    pub target_user_id: Option<UserId>,
}

fn invite_code() -> AppResult<String> {
    use base64::Engine;
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Creates an invite (CREATE_INVITE).
pub async fn create_invite(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    actor: UserId,
    new: NewInvite,
) -> AppResult<Invite> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, guild, actor, Lock::No).await?;
        access.require(Permissions::CREATE_INVITE, "create invites")?;
        if let Some(target) = new.target_user_id
            && synctalk_users::repo::find(conn, target).await?.is_none()
        {
            return Err(AppError::not_found("user (target_user_id)"));
        }
        let now = chrono::Utc::now();
        let mut row = InviteRow {
            code: invite_code()?,
            guild_id: guild,
            inviter_id: actor,
            max_uses: new.max_uses,
            uses: 0,
            expires_at: (new.max_age_secs > 0)
                .then(|| now + chrono::Duration::seconds(new.max_age_secs)),
            target_user_id: new.target_user_id,
            created_at: now,
        };
        // 64 random bits: a clash is all but impossible, and a fresh code settles it.
        while diesel::insert_into(invites::table)
            .values(&row)
            .on_conflict_do_nothing()
            .execute(conn)
            .await?
            == 0
        {
            row.code = invite_code()?;
        }
        read::audit(
            conn,
            guild,
            actor,
            "invite_create",
            Some(guild.0),
            None,
            json!({"code": row.code, "max_uses": row.max_uses, "max_age_secs": new.max_age_secs}),
        )
        .await?;
        // The user it is meant for hears of it, unless they blocked its maker or
        // still have an unread invite to this guild (one at a time: no spamming).
        if let Some(target) = new.target_user_id
            && target != actor
            && !synctalk_users::relationships::has_blocked(conn, target, actor).await?
            && !synctalk_notifications::service::has_unread(
                conn,
                target,
                synctalk_notifications::dto::NotificationKind::GuildInvite,
                "guild_id",
                &guild.0.to_string(),
            )
            .await?
        {
            let inviter = synctalk_users::repo::find(conn, actor)
                .await?
                .map(|u| u.username)
                .unwrap_or_default();
            synctalk_notifications::service::create(
                conn,
                vec![synctalk_notifications::service::NewNotification {
                    user: target,
                    kind: synctalk_notifications::dto::NotificationKind::GuildInvite,
                    title: format!("{inviter} invited you to {}", access.guild.name),
                    body: String::new(),
                    data: json!({"code": row.code, "guild_id": guild, "inviter_id": actor}),
                }],
            )
            .await?;
        }
        read::invite(conn, row, Guild::from(access.guild))
            .await
            .map_err(Into::into)
    })
    .await
}

/// A usable invite and its live guild.
async fn usable_invite(conn: &mut AsyncPgConnection, code: &str) -> AppResult<(InviteRow, Guild)> {
    let row = invites::table
        .filter(invites::code.eq(code))
        .select(InviteRow::as_select())
        .first(conn)
        .await
        .optional()?;
    let row = row
        .filter(|r| r.expires_at.is_none_or(|e| e > chrono::Utc::now()))
        .filter(|r| r.max_uses == 0 || r.uses < r.max_uses)
        .ok_or_else(|| AppError::not_found("invite"))?;
    let guild = access::guild(conn, row.guild_id, Lock::No)
        .await?
        .ok_or_else(|| AppError::not_found("invite"))?;
    Ok((row, Guild::from(guild)))
}

/// An invite anyone signed in may look at before joining.
pub async fn get_invite(conn: &mut AsyncPgConnection, code: &str) -> AppResult<Invite> {
    let (row, guild) = usable_invite(conn, code).await?;
    Ok(read::invite(conn, row, guild).await?)
}

/// Joins a guild by invite: 403 `banned` for a banned user; a member already in gets
/// the guild again, and the invite is not used up.
///
/// A join is worth keeping short in a guild of 10,000: the invite and its guild are
/// read and locked in one statement, and the member is inserted only if not banned in
/// another; the slower checks run only when that insert adds nobody.
pub async fn join(conn: &mut AsyncPgConnection, code: &str, user: UserId) -> AppResult<Guild> {
    use diesel::sql_types::Uuid as SqlUuid;
    conn.transaction::<_, AppError, _>(async |conn| {
        let (row, guild_row, count): (InviteRow, GuildRow, i32) = invites::table
            .inner_join(guilds::table.on(guilds::id.eq(invites::guild_id)))
            .filter(invites::code.eq(code))
            .filter(guilds::deleted_at.is_null())
            .select((
                InviteRow::as_select(),
                GuildRow::as_select(),
                guilds::member_count,
            ))
            .for_no_key_update()
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| AppError::not_found("invite"))?;
        let guild = Guild::from(guild_row.clone());
        let usable = row.expires_at.is_none_or(|e| e > chrono::Utc::now())
            && (row.max_uses == 0 || row.uses < row.max_uses);
        if !usable {
            // A member already in gets the guild again, whatever is left of the invite
            // (a join retried after its answer was lost must not fail).
            return if read::member_exists(conn, guild.id, user).await? {
                Ok(guild)
            } else {
                Err(AppError::not_found("invite"))
            };
        }
        let added = synctalk_db::sql(
            "INSERT INTO members (guild_id, user_id) SELECT $1, $2 \
             WHERE NOT EXISTS (SELECT 1 FROM bans WHERE guild_id = $1 AND user_id = $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind::<SqlUuid, _>(guild.id.0)
        .bind::<SqlUuid, _>(user.0)
        .execute(conn)
        .await?;
        if added == 0 {
            // Already in (the invite is not used up), or banned.
            if read::is_banned(conn, guild.id, user).await? {
                return Err(AppError::new(
                    ErrorCode::Banned,
                    "you are banned from this guild",
                ));
            }
            return Ok(guild);
        }
        synctalk_db::sql("UPDATE invites SET uses = uses + 1 WHERE code = $1")
            .bind::<diesel::sql_types::Text, _>(&row.code)
            .execute(conn)
            .await?;
        let structure = visibility::structure(conn, &guild_row).await?;
        let member = read::member(conn, guild.id, user)
            .await?
            .ok_or_else(|| AppError::not_found("user"))?;
        // The guild row is locked, and the insert's trigger counted this member.
        let count = i64::from(count) + 1;
        let mut rows = visibility::joining(&structure, user, &[])?;
        rows.push(Outgoing::event(
            Topic::User(user),
            &read::state(&structure, member.clone(), count),
        )?);
        rows.push(Outgoing::event(
            Topic::Guild(guild.id),
            &GuildMember {
                guild_id: guild.id,
                member,
            },
        )?);
        event::append(conn, &rows).await?;
        Ok(guild)
    })
    .await
}

/// Revokes an invite: its maker, or MANAGE_GUILD. Others who can see the guild get
/// 403; everyone else 404.
pub async fn delete_invite(
    conn: &mut AsyncPgConnection,
    code: &str,
    actor: UserId,
) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let row: InviteRow = invites::table
            .filter(invites::code.eq(code))
            .select(InviteRow::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| AppError::not_found("invite"))?;
        let access = access::load(conn, row.guild_id, actor, Lock::No)
            .await
            .map_err(|e| {
                if e.code() == ErrorCode::NotFound {
                    AppError::not_found("invite")
                } else {
                    e
                }
            })?;
        if row.inviter_id != actor {
            access.require(Permissions::MANAGE_GUILD, "revoke others' invites")?;
        }
        diesel::delete(invites::table.find(code))
            .execute(conn)
            .await?;
        read::audit(
            conn,
            row.guild_id,
            actor,
            "invite_delete",
            Some(row.guild_id.0),
            None,
            json!({"code": code}),
        )
        .await?;
        Ok(())
    })
    .await
}

/// A parsed role form.
#[derive(Debug, Default)]
pub struct RoleChanges {
    /// Name.
    pub name: Option<String>,
    /// Color.
    pub color: Option<i32>,
    /// Permissions.
    pub permissions: Option<Permissions>,
    /// Position.
    pub position: Option<i32>,
}

/// The most roles a guild may have, `@everyone` included.
pub const MAX_ROLES: usize = 250;

/// Renumbers roles 1.. in the order given (`@everyone` stays at 0); returns those
/// whose position changed.
async fn renumber(conn: &mut AsyncPgConnection, order: &[RoleRow]) -> QueryResult<Vec<RoleRow>> {
    let mut changed = Vec::new();
    for (i, role) in order.iter().enumerate() {
        let position = i32::try_from(i + 1).unwrap_or(i32::MAX);
        if role.position != position {
            diesel::update(roles::table.find(role.id))
                .set(roles::position.eq(position))
                .execute(conn)
                .await?;
            let mut moved = role.clone();
            moved.position = position;
            changed.push(moved);
        }
    }
    Ok(changed)
}

/// Creates a role just above `@everyone` (MANAGE_ROLES; only permissions you have).
pub async fn create_role(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    actor: UserId,
    form: RoleChanges,
) -> AppResult<Role> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, guild, actor, Lock::Structure).await?;
        access.require(Permissions::MANAGE_ROLES, "manage roles")?;
        if access.role_rows.len() >= MAX_ROLES {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "a guild has at most 250 roles",
            ));
        }
        let permissions = form.permissions.unwrap_or_default();
        access.require_grantable(Permissions::NONE, permissions)?;
        let row = RoleRow {
            id: RoleId::new(),
            guild_id: guild,
            name: form.name.unwrap_or_else(|| "new role".into()),
            color: form.color.unwrap_or(0),
            permissions: permissions.to_db(),
            position: 1,
        };
        let mut order: Vec<RoleRow> = access
            .role_rows
            .iter()
            .filter(|r| r.position > 0)
            .cloned()
            .collect();
        diesel::insert_into(roles::table)
            .values(&row)
            .execute(conn)
            .await?;
        order.insert(0, row.clone());
        let moved = renumber(conn, &order).await?;
        let mut rows = vec![Outgoing::event(
            Topic::Guild(guild),
            &GuildRole {
                guild_id: guild,
                role: Role::from(row.clone()),
            },
        )?];
        for role in moved.into_iter().filter(|r| r.id != row.id) {
            rows.push(Outgoing::event(
                Topic::Guild(guild),
                &GuildRoleUpdate(GuildRole {
                    guild_id: guild,
                    role: role.into(),
                }),
            )?);
        }
        read::audit(
            conn,
            guild,
            actor,
            "role_create",
            Some(row.id.0),
            None,
            json!({"name": row.name, "permissions": permissions, "color": row.color}),
        )
        .await?;
        event::append(conn, &rows).await?;
        Ok(Role::from(row))
    })
    .await
}

/// The role, if it is this guild's; 404 otherwise.
fn role_of(access: &Access, role: RoleId) -> AppResult<RoleRow> {
    access
        .role_rows
        .iter()
        .find(|r| r.id == role)
        .cloned()
        .ok_or_else(|| AppError::not_found("role"))
}

/// 403 unless the actor may manage `role` (MANAGE_ROLES and a higher role; anyone
/// with MANAGE_ROLES manages `@everyone`'s permissions).
fn require_manage(access: &Access, role: &RoleRow) -> AppResult<()> {
    access.require(Permissions::MANAGE_ROLES, "manage roles")?;
    if role.position > 0
        && !access
            .roles
            .outranks_role(access.user, &access.member_roles, role.position)
    {
        return Err(AppError::new(
            ErrorCode::MissingPermissions,
            "you can only manage roles below your highest role",
        ));
    }
    Ok(())
}

/// Sight of every member (for changes that may touch anyone).
async fn everyone_sight(
    conn: &mut AsyncPgConnection,
    structure: &Structure,
    users: Option<&[UserId]>,
) -> AppResult<(HashMap<UserId, Vec<RoleId>>, visibility::Sight)> {
    let members = access::member_roles_of(conn, structure.guild.id, users).await?;
    let sight = structure.sight(&members);
    Ok((members, sight))
}

/// Updates a role; a change of its permissions re-decides who sees which channel.
pub async fn update_role(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    actor: UserId,
    role: RoleId,
    form: RoleChanges,
) -> AppResult<Role> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, guild, actor, Lock::Structure).await?;
        let old = role_of(&access, role)?;
        require_manage(&access, &old)?;
        let everyone = old.position == 0;
        if everyone && (form.name.is_some() || form.position.is_some()) {
            let field = if form.name.is_some() {
                "name"
            } else {
                "position"
            };
            return Err(AppError::new(
                ErrorCode::Conflict,
                format!("the {field} of @everyone cannot be changed"),
            ));
        }
        let mut audit = serde_json::Map::new();
        let mut new = old.clone();
        if let Some(name) = form.name {
            audit.insert("name".into(), json!({"old": old.name, "new": name}));
            new.name = name;
        }
        if let Some(color) = form.color {
            audit.insert("color".into(), json!({"old": old.color, "new": color}));
            new.color = color;
        }
        let old_permissions = Permissions::from_db(old.permissions);
        let before = visibility::structure(conn, &access.guild).await?;
        let mut sight_before = None;
        if let Some(permissions) = form.permissions.filter(|p| *p != old_permissions) {
            access.require_grantable(old_permissions, permissions)?;
            let users = if everyone {
                None
            } else {
                Some(holders(conn, role).await?)
            };
            sight_before = Some(everyone_sight(conn, &before, users.as_deref()).await?);
            audit.insert(
                "permissions".into(),
                json!({"old": old_permissions, "new": permissions}),
            );
            new.permissions = permissions.to_db();
        }
        diesel::update(roles::table.find(role))
            .set((
                roles::name.eq(&new.name),
                roles::color.eq(new.color),
                roles::permissions.eq(new.permissions),
            ))
            .execute(conn)
            .await?;
        let mut moved = Vec::new();
        if let Some(position) = form.position.filter(|p| *p != old.position) {
            if !access
                .roles
                .outranks_role(access.user, &access.member_roles, position)
            {
                return Err(AppError::new(
                    ErrorCode::MissingPermissions,
                    "you can only move a role below your highest role",
                ));
            }
            let mut order: Vec<RoleRow> = access
                .role_rows
                .iter()
                .filter(|r| r.position > 0 && r.id != role)
                .cloned()
                .collect();
            let at = usize::try_from(position - 1).unwrap_or(0).min(order.len());
            order.insert(at, new.clone());
            moved = renumber(conn, &order).await?;
            if let Some(me) = moved.iter().find(|r| r.id == role) {
                audit.insert(
                    "position".into(),
                    json!({"old": old.position, "new": me.position}),
                );
                new.position = me.position;
            }
        }
        let mut rows = Vec::new();
        if let Some((members, seen_before)) = sight_before {
            let after = visibility::structure(conn, &access.guild).await?;
            let seen_after = after.sight(&members);
            rows.extend(visibility::changes(
                (&before, &seen_before),
                (&after, &seen_after),
            )?);
        }
        rows.push(Outgoing::event(
            Topic::Guild(guild),
            &GuildRoleUpdate(GuildRole {
                guild_id: guild,
                role: Role::from(new.clone()),
            }),
        )?);
        for other in moved.into_iter().filter(|r| r.id != role) {
            rows.push(Outgoing::event(
                Topic::Guild(guild),
                &GuildRoleUpdate(GuildRole {
                    guild_id: guild,
                    role: other.into(),
                }),
            )?);
        }
        if !audit.is_empty() {
            read::audit(
                conn,
                guild,
                actor,
                "role_update",
                Some(role.0),
                None,
                audit.into(),
            )
            .await?;
        }
        event::append(conn, &rows).await?;
        Ok(Role::from(new))
    })
    .await
}

/// The members who have a role.
async fn holders(conn: &mut AsyncPgConnection, role: RoleId) -> QueryResult<Vec<UserId>> {
    member_roles::table
        .filter(member_roles::role_id.eq(role))
        .select(member_roles::user_id)
        .load(conn)
        .await
}

/// Deletes a role (not `@everyone`); its members may lose sight of channels.
pub async fn delete_role(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    actor: UserId,
    role: RoleId,
) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, guild, actor, Lock::Structure).await?;
        let old = role_of(&access, role)?;
        require_manage(&access, &old)?;
        if old.position == 0 {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "the @everyone role cannot be deleted",
            ));
        }
        let users = holders(conn, role).await?;
        let before = visibility::structure(conn, &access.guild).await?;
        let (_, seen_before) = everyone_sight(conn, &before, Some(&users)).await?;
        diesel::delete(roles::table.find(role))
            .execute(conn)
            .await?;
        diesel::delete(
            synctalk_db::schema::channel_overwrites::table
                .filter(synctalk_db::schema::channel_overwrites::target_id.eq(role.0)),
        )
        .execute(conn)
        .await?;
        let order: Vec<RoleRow> = access
            .role_rows
            .iter()
            .filter(|r| r.position > 0 && r.id != role)
            .cloned()
            .collect();
        let moved = renumber(conn, &order).await?;
        let after = visibility::structure(conn, &access.guild).await?;
        let (_, seen_after) = everyone_sight(conn, &after, Some(&users)).await?;
        let mut rows = visibility::changes((&before, &seen_before), (&after, &seen_after))?;
        rows.push(Outgoing::event(
            Topic::Guild(guild),
            &GuildRoleDelete {
                guild_id: guild,
                role_id: role,
            },
        )?);
        for other in moved {
            rows.push(Outgoing::event(
                Topic::Guild(guild),
                &GuildRoleUpdate(GuildRole {
                    guild_id: guild,
                    role: other.into(),
                }),
            )?);
        }
        read::audit(
            conn,
            guild,
            actor,
            "role_delete",
            Some(role.0),
            None,
            json!({"name": old.name}),
        )
        .await?;
        event::append(conn, &rows).await?;
        Ok(())
    })
    .await
}

/// A parsed `PATCH /guilds/{id}/members/{user_id}`.
#[derive(Debug, Default)]
pub struct MemberChanges {
    /// `Some(None)` clears it.
    pub nick: Option<Option<String>>,
    /// The whole new set.
    pub role_ids: Option<Vec<RoleId>>,
}

/// Changes a member's nickname and roles.
pub async fn update_member(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    actor: UserId,
    target: UserId,
    changes: MemberChanges,
) -> AppResult<Member> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, guild, actor, Lock::Structure).await?;
        let roles_now = access::member_roles_of(conn, guild, Some(&[target])).await?;
        let Some(target_roles) = roles_now.get(&target).cloned() else {
            return Err(AppError::not_found("member"));
        };
        let mut audit = serde_json::Map::new();
        let mut rows = Vec::new();
        if let Some(nick) = &changes.nick {
            if target == actor {
                access.require(Permissions::CHANGE_NICKNAME, "change your nickname")?;
            } else {
                access.require(Permissions::MANAGE_NICKNAMES, "change others' nicknames")?;
                access.require_above(target, &target_roles, "rename")?;
            }
            diesel::update(
                members::table
                    .filter(members::guild_id.eq(guild))
                    .filter(members::user_id.eq(target)),
            )
            .set(members::nick.eq(nick))
            .execute(conn)
            .await?;
            audit.insert("nick".into(), json!({"new": nick}));
        }
        if let Some(wanted) = &changes.role_ids {
            let mut wanted = wanted.clone();
            wanted.sort_unstable();
            wanted.dedup();
            let mut current = target_roles.clone();
            current.sort_unstable();
            if wanted != current {
                rows.extend(set_roles(conn, &access, target, &current, &wanted).await?);
                audit.insert("role_ids".into(), json!({"old": current, "new": wanted}));
            }
        }
        let member = read::member(conn, guild, target)
            .await?
            .ok_or_else(|| AppError::not_found("member"))?;
        if !audit.is_empty() {
            rows.push(Outgoing::event(
                Topic::Guild(guild),
                &GuildMemberUpdate(GuildMember {
                    guild_id: guild,
                    member: member.clone(),
                }),
            )?);
            read::audit(
                conn,
                guild,
                actor,
                "member_update",
                Some(target.0),
                None,
                audit.into(),
            )
            .await?;
        }
        event::append(conn, &rows).await?;
        Ok(member)
    })
    .await
}

/// Replaces a member's roles (under the lock): every role added or removed must be
/// this guild's, not `@everyone`, and below the actor's highest. Returns the records
/// of what the member now sees differently.
async fn set_roles(
    conn: &mut AsyncPgConnection,
    access: &Access,
    target: UserId,
    current: &[RoleId],
    wanted: &[RoleId],
) -> AppResult<Vec<Outgoing>> {
    access.require(Permissions::MANAGE_ROLES, "manage roles")?;
    let guild = access.guild.id;
    let changed: Vec<RoleId> = current
        .iter()
        .filter(|r| !wanted.contains(r))
        .chain(wanted.iter().filter(|r| !current.contains(r)))
        .copied()
        .collect();
    for role in &changed {
        let Some(row) = access.role_rows.iter().find(|r| r.id == *role) else {
            return Err(AppError::not_found("role (in role_ids)"));
        };
        if row.position == 0 {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "role_ids must not hold @everyone, which every member has",
            ));
        }
        require_manage(access, row)?;
        // Giving (or taking) a role grants (or removes) its permissions.
        if !access
            .permissions()
            .contains(Permissions::from_db(row.permissions))
        {
            return Err(AppError::new(
                ErrorCode::MissingPermissions,
                "you can only give or take roles whose permissions you have",
            ));
        }
    }
    let structure = visibility::structure(conn, &access.guild).await?;
    let before: HashMap<UserId, Vec<RoleId>> = [(target, current.to_vec())].into();
    let after: HashMap<UserId, Vec<RoleId>> = [(target, wanted.to_vec())].into();
    diesel::delete(
        member_roles::table
            .filter(member_roles::guild_id.eq(guild))
            .filter(member_roles::user_id.eq(target)),
    )
    .execute(conn)
    .await?;
    let values: Vec<_> = wanted
        .iter()
        .map(|r| {
            (
                member_roles::guild_id.eq(guild),
                member_roles::user_id.eq(target),
                member_roles::role_id.eq(*r),
            )
        })
        .collect();
    diesel::insert_into(member_roles::table)
        .values(values)
        .execute(conn)
        .await?;
    visibility::changes(
        (&structure, &structure.sight(&before)),
        (&structure, &structure.sight(&after)),
    )
}

/// Gives a member a role (`add`) or takes it away.
pub async fn member_role(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    actor: UserId,
    target: UserId,
    role: RoleId,
    add: bool,
) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, guild, actor, Lock::Structure).await?;
        let row = role_of(&access, role)?;
        let roles_now = access::member_roles_of(conn, guild, Some(&[target])).await?;
        let Some(current) = roles_now.get(&target).cloned() else {
            return Err(AppError::not_found("member"));
        };
        if row.position == 0 {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "every member has @everyone",
            ));
        }
        require_manage(&access, &row)?;
        let mut wanted: Vec<RoleId> = current.iter().copied().filter(|r| *r != role).collect();
        if add {
            wanted.push(role);
        }
        wanted.sort_unstable();
        let mut sorted = current.clone();
        sorted.sort_unstable();
        if wanted == sorted {
            return Ok(());
        }
        let mut rows = set_roles(conn, &access, target, &sorted, &wanted).await?;
        let member = read::member(conn, guild, target)
            .await?
            .ok_or_else(|| AppError::not_found("member"))?;
        rows.push(Outgoing::event(
            Topic::Guild(guild),
            &GuildMemberUpdate(GuildMember {
                guild_id: guild,
                member,
            }),
        )?);
        read::audit(
            conn,
            guild,
            actor,
            "member_role_update",
            Some(target.0),
            None,
            json!({"role_id": role, "added": add}),
        )
        .await?;
        event::append(conn, &rows).await?;
        Ok(())
    })
    .await
}
