//! Who may do what in a guild: one loader and the permission algorithm of
//! [`crate::permissions`], used by every route (and, through
//! [`crate::visibility`], by every gateway subscription).
//!
//! A guild you are not a member of is 404, whether it exists or not; a member who
//! lacks a permission gets 403 `missing_permissions`.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{guilds, member_roles, members, roles};
use synctalk_kernel::{AppError, AppResult, ErrorCode, GuildId, RoleId, UserId};

use crate::model::{GuildRow, RoleRow};
use crate::permissions::{Overwrite, Permissions, Roles};

/// A member's standing in a guild, read at the start of a request.
#[derive(Debug, Clone)]
pub struct Access {
    /// The guild.
    pub guild: GuildRow,
    /// Its roles, `@everyone` included, by position.
    pub role_rows: Vec<RoleRow>,
    /// Its roles as the algorithm needs them.
    pub roles: Roles,
    /// The member.
    pub user: UserId,
    /// The member's roles (without `@everyone`).
    pub member_roles: Vec<RoleId>,
}

/// Whether to lock the guild's row until the transaction ends: every change to who
/// belongs or what roles and overwrites say takes it, so two such changes never
/// compute who sees what from the same old state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Read only.
    No,
    /// `FOR NO KEY UPDATE` on the guild (inside a transaction).
    Structure,
}

/// The live guild row, locked or not.
pub async fn guild(
    mut conn: &AsyncPgConnection,
    id: GuildId,
    lock: Lock,
) -> QueryResult<Option<GuildRow>> {
    let query = guilds::table
        .filter(guilds::id.eq(id))
        .filter(guilds::deleted_at.is_null())
        .select(GuildRow::as_select());
    match lock {
        Lock::No => query.first(&mut conn).await.optional(),
        Lock::Structure => query.for_no_key_update().first(&mut conn).await.optional(),
    }
}

/// The guild's roles, by position.
pub async fn role_rows(mut conn: &AsyncPgConnection, id: GuildId) -> QueryResult<Vec<RoleRow>> {
    roles::table
        .filter(roles::guild_id.eq(id))
        .order((roles::position.asc(), roles::id.asc()))
        .select(RoleRow::as_select())
        .load(&mut conn)
        .await
}

/// The roles as the algorithm needs them.
pub fn ranks(guild: &GuildRow, rows: &[RoleRow]) -> Roles {
    Roles {
        owner: guild.owner_id,
        everyone: RoleId(guild.id.0),
        roles: rows.iter().map(|r| (r.id, r.rank())).collect(),
    }
}

/// The roles of some members of a guild (or of all, with `None`); members without a
/// role are there with none.
pub async fn member_roles_of(
    mut conn: &AsyncPgConnection,
    guild: GuildId,
    users: Option<&[UserId]>,
) -> QueryResult<HashMap<UserId, Vec<RoleId>>> {
    let mut query = members::table
        .left_join(
            member_roles::table.on(member_roles::guild_id
                .eq(members::guild_id)
                .and(member_roles::user_id.eq(members::user_id))),
        )
        .filter(members::guild_id.eq(guild))
        .select((members::user_id, member_roles::role_id.nullable()))
        .into_boxed();
    if let Some(users) = users {
        query = query.filter(members::user_id.eq_any(users));
    }
    let rows: Vec<(UserId, Option<RoleId>)> = query.load(&mut conn).await?;
    let mut out: HashMap<UserId, Vec<RoleId>> = HashMap::new();
    for (user, role) in rows {
        let entry = out.entry(user).or_default();
        if let Some(role) = role {
            entry.push(role);
        }
    }
    Ok(out)
}

/// `user`'s access to `guild`: 404 unless the guild is live and they are a member.
pub async fn load(
    conn: &AsyncPgConnection,
    guild_id: GuildId,
    user: UserId,
    lock: Lock,
) -> AppResult<Access> {
    // Sent together and run in this order (the lock first): one round trip.
    let member = [user];
    let (guild, mut mine, role_rows) = futures_util::try_join!(
        guild(conn, guild_id, lock),
        member_roles_of(conn, guild_id, Some(&member)),
        role_rows(conn, guild_id),
    )?;
    let guild = guild.ok_or_else(|| AppError::not_found("guild"))?;
    let member_roles = mine
        .remove(&user)
        .ok_or_else(|| AppError::not_found("guild"))?;
    let roles = ranks(&guild, &role_rows);
    Ok(Access {
        guild,
        role_rows,
        roles,
        user,
        member_roles,
    })
}

/// 403 `missing_permissions`.
pub fn missing(what: &str) -> AppError {
    AppError::new(
        ErrorCode::MissingPermissions,
        format!("you lack the permission to {what}"),
    )
}

impl Access {
    /// Whether the member owns the guild.
    pub fn is_owner(&self) -> bool {
        self.user == self.guild.owner_id
    }

    /// The member's guild-wide permissions.
    pub fn permissions(&self) -> Permissions {
        self.roles.base(self.user, &self.member_roles)
    }

    /// The member's permissions in a channel with these overwrites.
    pub fn in_channel(&self, overwrites: &[Overwrite]) -> Permissions {
        self.roles
            .in_channel(self.user, &self.member_roles, overwrites)
    }

    /// 403 unless the member has every permission of `needed` guild-wide.
    pub fn require(&self, needed: Permissions, what: &str) -> AppResult<()> {
        if self.permissions().contains(needed) {
            Ok(())
        } else {
            Err(missing(what))
        }
    }

    /// The position of the member's highest role (the owner's is above all).
    pub fn highest(&self) -> i32 {
        self.roles.highest(self.user, &self.member_roles)
    }

    /// 403 unless the member may act on `target` (whose roles are `target_roles`).
    pub fn require_above(
        &self,
        target: UserId,
        target_roles: &[RoleId],
        what: &str,
    ) -> AppResult<()> {
        if self
            .roles
            .outranks_member(self.user, &self.member_roles, target, target_roles)
        {
            Ok(())
        } else {
            Err(AppError::new(
                ErrorCode::MissingPermissions,
                format!("you can only {what} members below your highest role"),
            ))
        }
    }

    /// 403 unless every bit that changes between `old` and `new` is one the member has
    /// (nobody grants or takes away what they do not have themselves).
    pub fn require_grantable(&self, old: Permissions, new: Permissions) -> AppResult<()> {
        let changed = Permissions(old.0 ^ new.0);
        if self.permissions().contains(changed) {
            Ok(())
        } else {
            Err(AppError::new(
                ErrorCode::MissingPermissions,
                "you can only grant or remove permissions you have",
            ))
        }
    }
}
