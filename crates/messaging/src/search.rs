//! Full-text search of messages (PostgreSQL, the `simple` configuration: words as
//! written, any language), in one channel or across a guild, only in channels the
//! searcher can read (READ_MESSAGE_HISTORY), newest first, by cursor on the id.

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use diesel_async::RunQueryDsl;
use serde::Deserialize;
use synctalk_channels::access;
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::messages;
use synctalk_guilds::access::{self as guild_access, Lock};
use synctalk_guilds::permissions::Permissions;
use synctalk_guilds::visibility;
use synctalk_kernel::{AppError, AppResult, ChannelId, ErrorCode, GuildId, MessageId, UserId};
use utoipa::IntoParams;
use uuid::Uuid;

use crate::dto::Message;
use crate::model::MessageRow;
use crate::read;

/// The longest search text.
pub const MAX_QUERY: usize = 200;

/// A search's query parameters.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// What to find, 1-200 characters: words (all must appear), `"a phrase"`, `or`,
    /// and `-word` to leave out (web search syntax).
    #[param(required = true, value_type = String, min_length = 1, max_length = 200)]
    #[serde(default)]
    pub q: Option<String>,
    /// Only messages by this user.
    pub author_id: Option<Uuid>,
    /// Only messages older than this id (the next page).
    pub before: Option<Uuid>,
    /// Only messages with a file attached: any (`attachment`), or of a kind.
    #[param(value_type = Option<Has>)]
    pub has: Option<String>,
    /// How many, 1-100 (default 25).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// What a message must have attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Has {
    /// Any file.
    Attachment,
    /// A picture.
    Image,
    /// A video.
    Video,
    /// Sound (voice messages too).
    Audio,
    /// A file that is none of those.
    File,
}

impl Has {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "attachment" => Some(Self::Attachment),
            "image" => Some(Self::Image),
            "video" => Some(Self::Video),
            "audio" => Some(Self::Audio),
            "file" => Some(Self::File),
            _ => None,
        }
    }

    /// The condition on `attachments a` (a fixed text per kind).
    fn condition(self) -> &'static str {
        match self {
            Self::Attachment => "true",
            Self::Image => "a.content_type LIKE 'image/%'",
            Self::Video => "a.content_type LIKE 'video/%'",
            Self::Audio => "a.content_type LIKE 'audio/%'",
            Self::File => {
                "NOT (a.content_type LIKE 'image/%' OR a.content_type LIKE 'video/%' OR a.content_type LIKE 'audio/%')"
            }
        }
    }
}

/// A checked search.
#[derive(Debug, Clone)]
pub struct Search {
    text: String,
    author: Option<UserId>,
    before: Option<MessageId>,
    has: Option<Has>,
    limit: i64,
}

impl SearchQuery {
    /// 400 `invalid_query` for an empty or too long `q`, or a limit out of range.
    pub fn parse(&self) -> AppResult<Search> {
        // Checked here, not by the extractor: a missing `q` must not answer before a
        // bad token's 401.
        let q = self.q.as_deref().unwrap_or_default();
        if q.is_empty() || q.chars().count() > MAX_QUERY {
            return Err(AppError::new(
                ErrorCode::InvalidQuery,
                format!("q must be 1 to {MAX_QUERY} characters"),
            ));
        }
        // PostgreSQL text holds no NUL: it separates words like a blank. A query of no
        // words finds nothing.
        let text = q.replace('\0', " ");
        let limit = self.limit.unwrap_or(25);
        if !(1..=100).contains(&limit) {
            return Err(AppError::new(
                ErrorCode::InvalidQuery,
                "limit must be between 1 and 100",
            ));
        }
        let has = match self.has.as_deref() {
            None => None,
            Some(text) => Some(Has::parse(text).ok_or_else(|| {
                AppError::new(
                    ErrorCode::InvalidQuery,
                    "has must be attachment, image, video, audio or file",
                )
            })?),
        };
        Ok(Search {
            text,
            author: self.author_id.map(UserId),
            before: self.before.map(MessageId),
            has,
            limit: i64::from(limit),
        })
    }
}

async fn find(
    conn: &mut AsyncPgConnection,
    channels: &[ChannelId],
    search: &Search,
) -> QueryResult<Vec<MessageRow>> {
    if channels.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = messages::table
        .filter(messages::channel_id.eq_any(channels))
        .filter(messages::deleted_at.is_null())
        .filter(
            sql::<Bool>("search @@ websearch_to_tsquery('simple', ")
                .bind::<Text, _>(search.text.clone())
                .sql(")"),
        )
        .into_boxed();
    if let Some(author) = search.author {
        query = query.filter(messages::author_id.eq(author));
    }
    if let Some(before) = search.before {
        query = query.filter(messages::id.lt(before));
    }
    if let Some(has) = search.has {
        query = query.filter(sql::<Bool>(&format!(
            "EXISTS (SELECT 1 FROM attachments a \
             WHERE a.channel_id = messages.channel_id AND a.message_id = messages.id AND {})",
            has.condition()
        )));
    }
    query
        .order(messages::id.desc())
        .limit(search.limit)
        .select(MessageRow::as_select())
        .load(conn)
        .await
}

/// Messages of one channel matching, newest first.
pub async fn in_channel(
    conn: &mut AsyncPgConnection,
    viewer: UserId,
    channel: ChannelId,
    search: &Search,
) -> AppResult<Vec<Message>> {
    let access = access::load(conn, channel, viewer, false).await?;
    access.require(Permissions::READ_MESSAGE_HISTORY, "read messages here")?;
    let rows = find(conn, &[channel], search).await?;
    read::hydrate(conn, channel, access.row.guild_id, Some(viewer), rows).await
}

/// Messages of the guild's channels the viewer can read matching, newest first.
pub async fn in_guild(
    conn: &mut AsyncPgConnection,
    viewer: UserId,
    guild: GuildId,
    search: &Search,
) -> AppResult<Vec<Message>> {
    let access = guild_access::load(conn, guild, viewer, Lock::No).await?;
    let structure = visibility::structure(conn, &access.guild).await?;
    let readable: Vec<ChannelId> = structure
        .channels
        .iter()
        .filter(|c| {
            structure
                .in_channel(viewer, &access.member_roles, c.id)
                .contains(Permissions(
                    Permissions::VIEW_CHANNEL.0 | Permissions::READ_MESSAGE_HISTORY.0,
                ))
        })
        .map(|c| c.id)
        .collect();
    let rows = find(conn, &readable, search).await?;
    // Hydrated channel by channel, then newest first again.
    let mut by_channel: std::collections::BTreeMap<ChannelId, Vec<MessageRow>> =
        std::collections::BTreeMap::new();
    for row in rows {
        by_channel.entry(row.channel_id).or_default().push(row);
    }
    let mut out = Vec::new();
    for (channel, rows) in by_channel {
        out.extend(read::hydrate(conn, channel, Some(guild), Some(viewer), rows).await?);
    }
    out.sort_by_key(|m| std::cmp::Reverse(m.id.0));
    Ok(out)
}
