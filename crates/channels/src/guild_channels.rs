//! Guild channels: create, update, delete (soft) and permission overwrites. Each change
//! is written with its events and audit entry in one transaction under the guild's
//! structure lock; a change of who sees the channel writes the subscription records
//! of `synctalk_guilds::visibility`.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::json;
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{channel_overwrites, channels};
use synctalk_gateway::{Domain, Outgoing, Topic, event};
use synctalk_guilds::access::{self as guild_access, Lock};
use synctalk_guilds::dto::{Channel, ChannelKind, OverwriteType, PermissionOverwrite};
use synctalk_guilds::events::{GuildChannelCreate, GuildChannelDelete, GuildChannelUpdate};
use synctalk_guilds::model::{ChannelRow, OverwriteRow};
use synctalk_guilds::permissions::Permissions;
use synctalk_guilds::{read, service, visibility};
use synctalk_kernel::{AppError, AppResult, ChannelId, ErrorCode, GuildId, RoleId, UserId};

use crate::access::{self, ChannelAccess};

/// A parsed `POST /guilds/{id}/channels`.
#[derive(Debug)]
pub struct NewChannel {
    /// Name.
    pub name: String,
    /// text, voice or category.
    pub kind: ChannelKind,
    /// Category.
    pub parent_id: Option<ChannelId>,
    /// Topic.
    pub topic: Option<String>,
    /// Position (default: last in its category).
    pub position: Option<i32>,
}

/// A parsed `PATCH /channels/{id}` of a guild channel.
#[derive(Debug, Default)]
pub struct ChannelChanges {
    /// New name.
    pub name: Option<String>,
    /// New topic (`Some(None)` clears it).
    pub topic: Option<Option<String>>,
    /// New position.
    pub position: Option<i32>,
    /// New category (`Some(None)`: none).
    pub parent_id: Option<Option<ChannelId>>,
}

/// 422 unless `parent` is a live category of `guild` (and the channel is not one).
async fn check_parent(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    kind: ChannelKind,
    parent: Option<ChannelId>,
) -> AppResult<()> {
    let Some(parent) = parent else {
        return Ok(());
    };
    if kind == ChannelKind::Category {
        return Err(AppError::new(
            ErrorCode::Conflict,
            "a category cannot sit in a category",
        ));
    }
    let row = access::row(conn, parent, false).await?;
    if !row.is_some_and(|r| r.guild_id == Some(guild) && r.kind == "category") {
        return Err(AppError::not_found("category (parent_id)"));
    }
    Ok(())
}

/// Creates a guild channel (MANAGE_CHANNELS). Those who can see it start listening to
/// it and get CHANNEL_CREATE.
pub async fn create(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    actor: UserId,
    new: NewChannel,
) -> AppResult<Channel> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = guild_access::load(conn, guild, actor, Lock::Structure).await?;
        access.require(Permissions::MANAGE_CHANNELS, "manage channels")?;
        check_parent(conn, guild, new.kind, new.parent_id).await?;
        let position = match new.position {
            Some(p) => p,
            None => {
                let last: Option<i32> = channels::table
                    .filter(channels::guild_id.eq(guild))
                    .filter(channels::deleted_at.is_null())
                    .select(diesel::dsl::max(channels::position))
                    .first(conn)
                    .await?;
                last.map_or(0, |p| p.saturating_add(1))
            }
        };
        let row = ChannelRow {
            id: ChannelId::new(),
            kind: new.kind.as_str().into(),
            guild_id: Some(guild),
            name: Some(new.name),
            topic: new.topic,
            parent_id: new.parent_id,
            position,
            owner_id: None,
            created_at: chrono::Utc::now(),
        };
        service::insert_channel(conn, &row).await?;
        let structure = visibility::structure(conn, &access.guild).await?;
        let members = guild_access::member_roles_of(conn, guild, None).await?;
        let channel = structure
            .channel(row.id)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("the new channel is gone")))?;
        let topic = Topic::Channel(row.id);
        let viewers: Vec<UserId> = members
            .iter()
            .filter(|(user, roles)| {
                structure
                    .in_channel(**user, roles, row.id)
                    .contains(Permissions::VIEW_CHANNEL)
            })
            .map(|(user, _)| *user)
            .collect();
        // One record for the whole guild when everyone sees it, else one per viewer.
        let mut rows = if viewers.len() == members.len() {
            vec![Outgoing::subscribe(
                Domain::Guilds,
                Topic::Guild(guild),
                topic,
            )?]
        } else {
            viewers
                .iter()
                .map(|u| Outgoing::subscribe(Domain::Guilds, Topic::User(*u), topic))
                .collect::<AppResult<Vec<_>>>()?
        };
        rows.push(Outgoing::event(
            topic,
            &GuildChannelCreate(channel.clone()),
        )?);
        read::audit(
            conn,
            guild,
            actor,
            "channel_create",
            Some(row.id.0),
            None,
            json!({"name": channel.name, "kind": new.kind}),
        )
        .await?;
        event::append(conn, &rows).await?;
        Ok(channel)
    })
    .await
}

/// The guild, or 404 for a DM (a guild-only operation).
fn guild_of(access: &ChannelAccess) -> AppResult<GuildId> {
    access
        .row
        .guild_id
        .ok_or_else(|| AppError::new(ErrorCode::Conflict, "this is not a guild channel"))
}

/// Updates a guild channel (MANAGE_CHANNELS in it).
pub async fn update(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    actor: UserId,
    changes: ChannelChanges,
) -> AppResult<Channel> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, channel, actor, true).await?;
        let guild = guild_of(&access)?;
        access.require(Permissions::MANAGE_CHANNELS, "manage channels")?;
        if let Some(parent) = changes.parent_id {
            check_parent(conn, guild, access.kind, parent).await?;
        }
        let old = &access.row;
        let mut audit = serde_json::Map::new();
        if let Some(name) = &changes.name {
            audit.insert("name".into(), json!({"old": old.name, "new": name}));
        }
        if let Some(topic) = &changes.topic {
            audit.insert("topic".into(), json!({"old": old.topic, "new": topic}));
        }
        if let Some(position) = changes.position {
            audit.insert(
                "position".into(),
                json!({"old": old.position, "new": position}),
            );
        }
        if let Some(parent) = changes.parent_id {
            audit.insert(
                "parent_id".into(),
                json!({"old": old.parent_id, "new": parent}),
            );
        }
        diesel::update(channels::table.find(channel))
            .set((
                channels::name.eq(changes.name.as_ref().or(old.name.as_ref())),
                channels::topic.eq(changes.topic.clone().unwrap_or_else(|| old.topic.clone())),
                channels::position.eq(changes.position.unwrap_or(old.position)),
                channels::parent_id.eq(changes.parent_id.unwrap_or(old.parent_id)),
            ))
            .execute(conn)
            .await?;
        let updated = updated_channel(conn, guild, channel).await?;
        if !audit.is_empty() {
            let rows = [Outgoing::event(
                Topic::Channel(channel),
                &GuildChannelUpdate(updated.clone()),
            )?];
            read::audit(
                conn,
                guild,
                actor,
                "channel_update",
                Some(channel.0),
                None,
                audit.into(),
            )
            .await?;
            event::append(conn, &rows).await?;
        }
        Ok(updated)
    })
    .await
}

async fn updated_channel(
    conn: &mut AsyncPgConnection,
    guild: GuildId,
    channel: ChannelId,
) -> AppResult<Channel> {
    let guild_row = guild_access::guild(conn, guild, Lock::No)
        .await?
        .ok_or_else(|| AppError::not_found("channel"))?;
    visibility::structure(conn, &guild_row)
        .await?
        .channel(channel)
        .ok_or_else(|| AppError::not_found("channel"))
}

/// Deletes a guild channel (soft; MANAGE_CHANNELS in it): CHANNEL_DELETE is the last
/// thing its viewers get of it. A category's channels move out of it.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    actor: UserId,
) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, channel, actor, true).await?;
        let guild = guild_of(&access)?;
        access.require(Permissions::MANAGE_CHANNELS, "manage channels")?;
        let before = updated_channel(conn, guild, channel).await?;
        diesel::update(channels::table.find(channel))
            .set(channels::deleted_at.eq(chrono::Utc::now()))
            .execute(conn)
            .await?;
        let topic = Topic::Channel(channel);
        let mut rows = vec![
            Outgoing::event(topic, &GuildChannelDelete(before.clone()))?,
            // Everyone in the guild stops listening to it, however they started.
            Outgoing::unsubscribe(Domain::Guilds, Topic::Guild(guild), topic)?,
        ];
        let children: Vec<ChannelId> = diesel::update(
            channels::table
                .filter(channels::parent_id.eq(channel))
                .filter(channels::deleted_at.is_null()),
        )
        .set(channels::parent_id.eq(None::<ChannelId>))
        .returning(channels::id)
        .get_results(conn)
        .await?;
        for child in children {
            let moved = updated_channel(conn, guild, child).await?;
            rows.push(Outgoing::event(
                Topic::Channel(child),
                &GuildChannelUpdate(moved),
            )?);
        }
        read::audit(
            conn,
            guild,
            actor,
            "channel_delete",
            Some(channel.0),
            None,
            json!({"name": before.name}),
        )
        .await?;
        event::append(conn, &rows).await?;
        Ok(())
    })
    .await
}

/// A parsed `PUT /channels/{id}/permissions/{target}`.
#[derive(Debug, Clone, Copy)]
pub struct OverwriteForm {
    /// Whose.
    pub kind: OverwriteType,
    /// Granted.
    pub allow: Permissions,
    /// Taken away.
    pub deny: Permissions,
}

/// Sets or (with `None`) removes an overwrite (MANAGE_ROLES in the channel; only
/// permissions you have there). Members who gain or lose sight of the channel start or
/// stop listening to it at once.
pub async fn overwrite(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    actor: UserId,
    target: uuid::Uuid,
    form: Option<OverwriteForm>,
) -> AppResult<Option<PermissionOverwrite>> {
    conn.transaction::<_, AppError, _>(async |conn| {
        let access = access::load(conn, channel, actor, true).await?;
        let guild = guild_of(&access)?;
        let Some(guild_access) = &access.guild else {
            return Err(AppError::not_found("channel"));
        };
        access.require(Permissions::MANAGE_ROLES, "edit permission overwrites")?;
        let existing: Option<OverwriteRow> = channel_overwrites::table
            .filter(channel_overwrites::channel_id.eq(channel))
            .filter(channel_overwrites::target_id.eq(target))
            .select(OverwriteRow::as_select())
            .first(conn)
            .await
            .optional()?;
        if let Some(form) = &form {
            let known = match form.kind {
                OverwriteType::Role => guild_access
                    .role_rows
                    .iter()
                    .any(|r| r.id == RoleId(target)),
                OverwriteType::Member => {
                    guild_access::member_roles_of(conn, guild, Some(&[UserId(target)]))
                        .await?
                        .contains_key(&UserId(target))
                }
            };
            if !known {
                return Err(AppError::not_found(match form.kind {
                    OverwriteType::Role => "role",
                    OverwriteType::Member => "member",
                }));
            }
            if existing
                .as_ref()
                .is_some_and(|e| (e.kind == "member") != (form.kind == OverwriteType::Member))
            {
                return Err(AppError::field(
                    "type",
                    "does not match the existing overwrite's",
                ));
            }
        } else if existing.is_none() {
            return Err(AppError::not_found("overwrite"));
        }
        // Nobody grants or takes away in a channel what they do not have there.
        let (old_allow, old_deny) = existing
            .as_ref()
            .map_or((Permissions::NONE, Permissions::NONE), |e| {
                (Permissions::from_db(e.allow), Permissions::from_db(e.deny))
            });
        let (new_allow, new_deny) = form.map_or((Permissions::NONE, Permissions::NONE), |f| {
            (f.allow, f.deny)
        });
        let changed = Permissions((old_allow.0 ^ new_allow.0) | (old_deny.0 ^ new_deny.0));
        if !access.permissions.contains(changed) {
            return Err(AppError::new(
                ErrorCode::MissingPermissions,
                "you can only allow or deny permissions you have in this channel",
            ));
        }
        let before = visibility::structure(conn, &guild_access.guild).await?;
        let members = guild_access::member_roles_of(conn, guild, None).await?;
        let seen_before = before.sight(&members);
        match form {
            Some(f) => {
                let row = OverwriteRow {
                    channel_id: channel,
                    target_id: target,
                    kind: match f.kind {
                        OverwriteType::Role => "role".into(),
                        OverwriteType::Member => "member".into(),
                    },
                    allow: f.allow.to_db(),
                    deny: f.deny.to_db(),
                };
                diesel::insert_into(channel_overwrites::table)
                    .values(&row)
                    .on_conflict((
                        channel_overwrites::channel_id,
                        channel_overwrites::target_id,
                    ))
                    .do_update()
                    .set((
                        channel_overwrites::allow.eq(row.allow),
                        channel_overwrites::deny.eq(row.deny),
                    ))
                    .execute(conn)
                    .await?;
            }
            None => {
                diesel::delete(
                    channel_overwrites::table
                        .filter(channel_overwrites::channel_id.eq(channel))
                        .filter(channel_overwrites::target_id.eq(target)),
                )
                .execute(conn)
                .await?;
            }
        }
        let after = visibility::structure(conn, &guild_access.guild).await?;
        let seen_after = after.sight(&members);
        let updated = after
            .channel(channel)
            .ok_or_else(|| AppError::not_found("channel"))?;
        let update = Outgoing::event(
            Topic::Channel(channel),
            &GuildChannelUpdate(updated.clone()),
        )?;
        let rows = visibility::changes_around(
            (&before, &seen_before),
            (&after, &seen_after),
            vec![update],
        )?;
        let action = if form.is_some() {
            "channel_overwrite_update"
        } else {
            "channel_overwrite_delete"
        };
        read::audit(
            conn,
            guild,
            actor,
            action,
            Some(channel.0),
            None,
            json!({"target_id": target, "allow": new_allow, "deny": new_deny}),
        )
        .await?;
        event::append(conn, &rows).await?;
        Ok(updated.overwrites.into_iter().find(|o| o.id == target))
    })
    .await
}
