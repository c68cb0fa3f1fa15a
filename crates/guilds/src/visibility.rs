//! Who sees which channel of a guild, and the subscription records that follow a
//! change of it. Everything goes through [`crate::permissions::Roles::in_channel`]:
//! a member listens to a channel's topic exactly when they have VIEW_CHANNEL in it.
//!
//! A change that can move what members see (a join, a role's permissions, a role
//! given or taken, an overwrite, a channel made or deleted) locks the guild's row
//! ([`crate::access::Lock::Structure`]), reads who saw what, makes the change, reads
//! again, and appends the difference in the same transaction: for a channel a member
//! lost, UNSUBSCRIBE then CHANNEL_DELETE on their user topic (the last thing they hear
//! of it); for one they gained, SUBSCRIBE then CHANNEL_CREATE.

use std::collections::{BTreeSet, HashMap};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{channel_overwrites, channels};
use synctalk_gateway::{Domain, Outgoing, Topic};
use synctalk_kernel::{AppResult, ChannelId, GuildId, RoleId, UserId};

use crate::access;
use crate::dto::Channel;
use crate::events::{GuildChannelCreate, GuildChannelDelete};
use crate::model::{ChannelRow, GuildRow, OverwriteRow, RoleRow};
use crate::permissions::{Overwrite, Permissions, Roles};

/// A guild's roles, channels and overwrites: everything deciding who sees what.
#[derive(Debug, Clone)]
pub struct Structure {
    /// The guild.
    pub guild: GuildRow,
    /// Its roles by position.
    pub role_rows: Vec<RoleRow>,
    /// Its roles as the algorithm needs them.
    pub roles: Roles,
    /// Its live channels by position.
    pub channels: Vec<ChannelRow>,
    /// Their overwrites.
    pub overwrites: Vec<OverwriteRow>,
}

/// The live channels of some guilds, by position then id.
pub async fn channels_of(
    mut conn: &AsyncPgConnection,
    guilds: &[GuildId],
) -> QueryResult<Vec<ChannelRow>> {
    channels::table
        .filter(channels::guild_id.eq_any(guilds))
        .filter(channels::deleted_at.is_null())
        .order((channels::position.asc(), channels::id.asc()))
        .select(ChannelRow::as_select())
        .load(&mut conn)
        .await
}

/// The overwrites of some channels.
pub async fn overwrites_of(
    mut conn: &AsyncPgConnection,
    channels: &[ChannelId],
) -> QueryResult<Vec<OverwriteRow>> {
    channel_overwrites::table
        .filter(channel_overwrites::channel_id.eq_any(channels))
        .order((
            channel_overwrites::channel_id,
            channel_overwrites::target_id,
        ))
        .select(OverwriteRow::as_select())
        .load(&mut conn)
        .await
}

/// Reads a guild's structure.
pub async fn structure(conn: &AsyncPgConnection, guild: &GuildRow) -> QueryResult<Structure> {
    // The roles and the channels, sent together.
    let guilds = [guild.id];
    let (role_rows, channels) = futures_util::try_join!(
        access::role_rows(conn, guild.id),
        channels_of(conn, &guilds)
    )?;
    let ids: Vec<ChannelId> = channels.iter().map(|c| c.id).collect();
    let overwrites = overwrites_of(conn, &ids).await?;
    Ok(Structure::new(
        guild.clone(),
        role_rows,
        channels,
        overwrites,
    ))
}

/// Who sees which channels.
pub type Sight = HashMap<UserId, BTreeSet<ChannelId>>;

impl Structure {
    /// From its parts.
    pub fn new(
        guild: GuildRow,
        role_rows: Vec<RoleRow>,
        channels: Vec<ChannelRow>,
        overwrites: Vec<OverwriteRow>,
    ) -> Self {
        let roles = access::ranks(&guild, &role_rows);
        Self {
            guild,
            role_rows,
            roles,
            channels,
            overwrites,
        }
    }

    /// A channel's overwrites, as the algorithm needs them.
    pub fn overwrites(&self, channel: ChannelId) -> Vec<Overwrite> {
        self.overwrites
            .iter()
            .filter(|o| o.channel_id == channel)
            .map(OverwriteRow::overwrite)
            .collect()
    }

    /// A member's permissions in a channel.
    pub fn in_channel(&self, user: UserId, roles: &[RoleId], channel: ChannelId) -> Permissions {
        self.roles
            .in_channel(user, roles, &self.overwrites(channel))
    }

    /// The channels a member sees, by position.
    pub fn visible(&self, user: UserId, roles: &[RoleId]) -> Vec<&ChannelRow> {
        self.channels
            .iter()
            .filter(|c| {
                self.in_channel(user, roles, c.id)
                    .contains(Permissions::VIEW_CHANNEL)
            })
            .collect()
    }

    /// A channel as the wire shows it.
    pub fn channel(&self, id: ChannelId) -> Option<Channel> {
        let row = self.channels.iter().find(|c| c.id == id)?;
        Some(Channel::guild(row.clone(), &self.overwrites))
    }

    /// What each of `members` sees.
    pub fn sight(&self, members: &HashMap<UserId, Vec<RoleId>>) -> Sight {
        members
            .iter()
            .map(|(user, roles)| {
                let seen = self.visible(*user, roles).iter().map(|c| c.id).collect();
                (*user, seen)
            })
            .collect()
    }
}

/// The records of a change in what members see: `before` and `after` as computed
/// under the guild's lock, around the change.
pub fn changes(
    before: (&Structure, &Sight),
    after: (&Structure, &Sight),
) -> AppResult<Vec<Outgoing>> {
    changes_around(before, after, Vec::new())
}

/// [`changes`], with `middle` (the change's own event) after what members lost and
/// before what they gained: those who lose sight of a channel hear nothing more of it,
/// and those who gain it get CHANNEL_CREATE with its state after the change, not the
/// change again.
pub fn changes_around(
    before: (&Structure, &Sight),
    after: (&Structure, &Sight),
    middle: Vec<Outgoing>,
) -> AppResult<Vec<Outgoing>> {
    let empty = BTreeSet::new();
    let mut users: Vec<UserId> = before.1.keys().chain(after.1.keys()).copied().collect();
    users.sort_unstable();
    users.dedup();
    let (mut lost_rows, mut gained_rows) = (Vec::new(), Vec::new());
    for user in users {
        let was = before.1.get(&user).unwrap_or(&empty);
        let now = after.1.get(&user).unwrap_or(&empty);
        for lost in was.difference(now) {
            lost_rows.push(Outgoing::unsubscribe(
                Domain::Guilds,
                Topic::User(user),
                Topic::Channel(*lost),
            )?);
            if let Some(channel) = before.0.channel(*lost) {
                lost_rows.push(Outgoing::event(
                    Topic::User(user),
                    &GuildChannelDelete(channel),
                )?);
            }
        }
        for gained in now.difference(was) {
            gained_rows.push(Outgoing::subscribe(
                Domain::Guilds,
                Topic::User(user),
                Topic::Channel(*gained),
            )?);
            if let Some(channel) = after.0.channel(*gained) {
                gained_rows.push(Outgoing::event(
                    Topic::User(user),
                    &GuildChannelCreate(channel),
                )?);
            }
        }
    }
    lost_rows.extend(middle);
    lost_rows.extend(gained_rows);
    Ok(lost_rows)
}

/// The records that take a member out of a guild: every channel's topic and the
/// guild's, then GUILD_DELETE to them (the last thing they hear of it).
pub fn leaving(structure: &Structure, user: UserId) -> AppResult<Vec<Outgoing>> {
    let mut rows = Vec::new();
    for channel in &structure.channels {
        rows.push(Outgoing::unsubscribe(
            Domain::Guilds,
            Topic::User(user),
            Topic::Channel(channel.id),
        )?);
    }
    rows.push(Outgoing::unsubscribe(
        Domain::Guilds,
        Topic::User(user),
        Topic::Guild(structure.guild.id),
    )?);
    rows.push(Outgoing::event(
        Topic::User(user),
        &crate::events::GuildDeleted {
            id: structure.guild.id,
        },
    )?);
    Ok(rows)
}

/// The records that bring a member into a guild: the guild's topic and those of the
/// channels they see (GUILD_CREATE follows, from the caller).
pub fn joining(structure: &Structure, user: UserId, roles: &[RoleId]) -> AppResult<Vec<Outgoing>> {
    let mut rows = vec![Outgoing::subscribe(
        Domain::Guilds,
        Topic::User(user),
        Topic::Guild(structure.guild.id),
    )?];
    for channel in structure.visible(user, roles) {
        rows.push(Outgoing::subscribe(
            Domain::Guilds,
            Topic::User(user),
            Topic::Channel(channel.id),
        )?);
    }
    Ok(rows)
}
