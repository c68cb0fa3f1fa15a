//! The guilds gateway (`/gateway/guilds`): READY carries your guilds, each with its
//! roles, the channels you can see and your member record; the session listens to
//! each guild's topic and to the topic of each channel you can see. Events are those
//! of [`crate::events`].

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{guilds, members, roles};
use synctalk_gateway::{BoxFuture, Domain, EventInfo, GatewayDomain, ReadyPart, Topic};
use synctalk_kernel::{AppError, AuthUser, GuildId, UserId};

use crate::dto::GuildState;
use crate::model::{ChannelRow, GuildRow, OverwriteRow, RoleRow};
use crate::read;
use crate::visibility::{self, Structure};

/// READY's guilds part.
#[derive(Debug, Serialize)]
pub struct GuildsReady {
    /// Your guilds.
    pub guilds: Vec<GuildState>,
}

/// The guilds domain of the gateway.
#[derive(Debug, Default)]
pub struct GuildsGateway;

/// Every guild of `users`, with what READY needs, in a few queries.
async fn structures(
    conn: &mut AsyncPgConnection,
    users: &[UserId],
) -> diesel::QueryResult<(Vec<(UserId, GuildId)>, HashMap<GuildId, Structure>)> {
    let memberships: Vec<(UserId, GuildRow)> = members::table
        .inner_join(guilds::table.on(guilds::id.eq(members::guild_id)))
        .filter(members::user_id.eq_any(users))
        .filter(guilds::deleted_at.is_null())
        .order(guilds::id.asc())
        .select((members::user_id, GuildRow::as_select()))
        .load(conn)
        .await?;
    let mut rows: HashMap<GuildId, GuildRow> = HashMap::new();
    let pairs: Vec<(UserId, GuildId)> = memberships
        .into_iter()
        .map(|(user, guild)| {
            let id = guild.id;
            rows.insert(id, guild);
            (user, id)
        })
        .collect();
    let ids: Vec<GuildId> = rows.keys().copied().collect();
    let all_roles: Vec<RoleRow> = roles::table
        .filter(roles::guild_id.eq_any(&ids))
        .order((roles::position.asc(), roles::id.asc()))
        .select(RoleRow::as_select())
        .load(conn)
        .await?;
    let all_channels: Vec<ChannelRow> = visibility::channels_of(conn, &ids).await?;
    let channel_ids: Vec<_> = all_channels.iter().map(|c| c.id).collect();
    let all_overwrites: Vec<OverwriteRow> = visibility::overwrites_of(conn, &channel_ids).await?;
    let mut out = HashMap::new();
    for (id, guild) in rows {
        let channels: Vec<ChannelRow> = all_channels
            .iter()
            .filter(|c| c.guild_id == Some(id))
            .cloned()
            .collect();
        let overwrites = all_overwrites
            .iter()
            .filter(|o| channels.iter().any(|c| c.id == o.channel_id))
            .cloned()
            .collect();
        let guild_roles = all_roles
            .iter()
            .filter(|r| r.guild_id == id)
            .cloned()
            .collect();
        out.insert(id, Structure::new(guild, guild_roles, channels, overwrites));
    }
    Ok((pairs, out))
}

/// For each of `users`, the topics of their guilds that a session listens to: each
/// guild's, and each channel's they can see. The messaging gateway listens to the same
/// (a channel's messages go to its topic, and a new channel everyone sees is
/// subscribed through the guild's topic).
pub async fn topics(
    conn: &mut AsyncPgConnection,
    users: &[UserId],
) -> Result<HashMap<UserId, Vec<Topic>>, AppError> {
    let (pairs, structures) = structures(conn, users).await?;
    let ids: Vec<GuildId> = structures.keys().copied().collect();
    let members = read::members_of_many(conn, &ids, users).await?;
    let mut out: HashMap<UserId, Vec<Topic>> = HashMap::new();
    for (user, guild) in pairs {
        let (Some(structure), Some(member)) = (structures.get(&guild), members.get(&(guild, user)))
        else {
            continue;
        };
        let topics = out.entry(user).or_default();
        topics.push(Topic::Guild(guild));
        topics.extend(
            structure
                .visible(user, &member.role_ids)
                .into_iter()
                .map(|c| Topic::Channel(c.id)),
        );
    }
    Ok(out)
}

impl GatewayDomain for GuildsGateway {
    fn domain(&self) -> Domain {
        Domain::Guilds
    }

    fn ready<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        auths: &'a [AuthUser],
    ) -> BoxFuture<'a, Result<Vec<ReadyPart>, AppError>> {
        Box::pin(async move {
            let users: Vec<UserId> = auths.iter().map(|a| a.user_id).collect();
            let (pairs, structures) = structures(conn, &users).await?;
            let ids: Vec<GuildId> = structures.keys().copied().collect();
            let mut members = read::members_of_many(conn, &ids, &users).await?;
            let counts = read::member_counts(conn, &ids).await?;
            let mut parts = Vec::with_capacity(auths.len());
            for auth in auths {
                let mut guilds = Vec::new();
                let mut topics = Vec::new();
                for (_, guild) in pairs.iter().filter(|(u, _)| *u == auth.user_id) {
                    let Some(structure) = structures.get(guild) else {
                        continue;
                    };
                    let Some(member) = members.remove(&(*guild, auth.user_id)) else {
                        continue;
                    };
                    let count = counts.get(guild).copied().unwrap_or(1);
                    let state = read::state(structure, member, count);
                    topics.push(Topic::Guild(*guild));
                    topics.extend(state.channels.iter().map(|c| Topic::Channel(c.id)));
                    guilds.push(state);
                }
                parts.push(ReadyPart::new(&GuildsReady { guilds }, topics)?);
            }
            Ok(parts)
        })
    }

    fn events(&self) -> Vec<EventInfo> {
        crate::events::all()
    }
}

/// The guilds' part of the users domain: a `/gateway/users` session listens to the
/// topics of your guilds too, for the presence of those who share one with you (no
/// READY fields of its own; guild events themselves stay on `/gateway/guilds`).
#[derive(Debug, Default)]
pub struct GuildPresenceTopics;

/// No READY fields.
#[derive(Debug, Serialize)]
struct NoFields {}

impl GatewayDomain for GuildPresenceTopics {
    fn domain(&self) -> Domain {
        Domain::Users
    }

    fn ready<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        auths: &'a [AuthUser],
    ) -> BoxFuture<'a, Result<Vec<ReadyPart>, AppError>> {
        Box::pin(async move {
            let users: Vec<UserId> = auths.iter().map(|a| a.user_id).collect();
            let mut topics = read::guild_topics(conn, &users).await?;
            auths
                .iter()
                .map(|a| {
                    ReadyPart::new(&NoFields {}, topics.remove(&a.user_id).unwrap_or_default())
                })
                .collect()
        })
    }
}
