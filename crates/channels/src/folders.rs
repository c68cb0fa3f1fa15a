//! Folders: a user's own grouping of their guilds, DMs and group DMs. Every change
//! sends FOLDER_UPDATE with all of the user's folders to their other sockets (on
//! `/gateway/users`), in the transaction of the change; READY of the users domain
//! carries them too ([`FoldersGateway`]).

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{
    channel_recipients, channels, folder_items, folders, guilds, members, users,
};
use synctalk_gateway::{
    BoxFuture, Domain, EventInfo, GatewayDomain, Outgoing, ReadyPart, Topic, event, gateway_event,
};
use synctalk_kernel::{AppError, AppResult, AuthUser, ErrorCode, UserId};
use utoipa::ToSchema;

/// The most folders a user may have.
pub const MAX_FOLDERS: i64 = 100;
/// The most items a folder may hold.
pub const MAX_ITEMS: i64 = 200;

/// What a folder item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// A guild you are in.
    Guild,
    /// A DM or group DM you are in.
    Channel,
}

/// An item of a folder.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FolderItem {
    /// The guild's or channel's id.
    pub id: uuid::Uuid,
    /// Which it is.
    pub kind: ItemKind,
}

/// A folder.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Folder {
    /// The folder's id.
    pub id: uuid::Uuid,
    /// Up to 100 characters.
    #[schema(example = "Work")]
    pub name: String,
    /// Its order among your folders (then by id).
    pub position: i32,
    /// Its guilds, DMs and group DMs, in order (ones you are no longer in are left
    /// out).
    pub items: Vec<FolderItem>,
}

/// FOLDER_UPDATE: all your folders, after a change to any of them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FoldersUpdate {
    /// Every folder of yours, in order.
    pub folders: Vec<Folder>,
}

gateway_event!(FoldersUpdate, "FOLDER_UPDATE", Users, replayed);

/// Every folder of `user`, by position, with the items they are still in.
pub async fn list(conn: &mut AsyncPgConnection, user: UserId) -> QueryResult<Vec<Folder>> {
    let rows: Vec<(uuid::Uuid, String, i32)> = folders::table
        .filter(folders::user_id.eq(user))
        .order((folders::position.asc(), folders::id.asc()))
        .select((folders::id, folders::name, folders::position))
        .load(conn)
        .await?;
    let guild_items = folder_items::table
        .inner_join(
            members::table.on(members::guild_id
                .eq(folder_items::item_id)
                .and(members::user_id.eq(folder_items::user_id))),
        )
        .inner_join(guilds::table.on(guilds::id.eq(folder_items::item_id)))
        .filter(folder_items::user_id.eq(user))
        .filter(folder_items::kind.eq("guild"))
        .filter(guilds::deleted_at.is_null())
        .select((
            folder_items::folder_id,
            folder_items::item_id,
            folder_items::position,
            folder_items::added_at,
        ));
    let channel_items = folder_items::table
        .inner_join(
            channel_recipients::table.on(channel_recipients::channel_id
                .eq(folder_items::item_id)
                .and(channel_recipients::user_id.eq(folder_items::user_id))),
        )
        .inner_join(channels::table.on(channels::id.eq(folder_items::item_id)))
        .filter(folder_items::user_id.eq(user))
        .filter(folder_items::kind.eq("channel"))
        .filter(channels::deleted_at.is_null())
        .select((
            folder_items::folder_id,
            folder_items::item_id,
            folder_items::position,
            folder_items::added_at,
        ));
    type Item = (uuid::Uuid, uuid::Uuid, i32, chrono::DateTime<chrono::Utc>);
    let mut items: Vec<(Item, ItemKind)> = guild_items
        .load::<Item>(conn)
        .await?
        .into_iter()
        .map(|i| (i, ItemKind::Guild))
        .collect();
    items.extend(
        channel_items
            .load::<Item>(conn)
            .await?
            .into_iter()
            .map(|i| (i, ItemKind::Channel)),
    );
    items.sort_by_key(|((_, id, position, added), _)| (*position, *added, *id));
    Ok(rows
        .into_iter()
        .map(|(id, name, position)| Folder {
            id,
            name,
            position,
            items: items
                .iter()
                .filter(|((folder, ..), _)| *folder == id)
                .map(|((_, item, ..), kind)| FolderItem {
                    id: *item,
                    kind: *kind,
                })
                .collect(),
        })
        .collect())
}

/// Serializes the changes of one user's folders (the user's row, not their folders,
/// so that a first folder is covered too).
async fn lock(conn: &mut AsyncPgConnection, user: UserId) -> QueryResult<()> {
    users::table
        .filter(users::id.eq(user))
        .select(users::id)
        .for_no_key_update()
        .first::<UserId>(conn)
        .await?;
    Ok(())
}

/// Appends FOLDER_UPDATE with the folders as they are now; returns them.
async fn announce(conn: &mut AsyncPgConnection, user: UserId) -> AppResult<Vec<Folder>> {
    let folders = list(conn, user).await?;
    let update = Outgoing::event(
        Topic::User(user),
        &FoldersUpdate {
            folders: folders.clone(),
        },
    )?;
    event::append(conn, &[update]).await?;
    Ok(folders)
}

fn of(folders: Vec<Folder>, id: uuid::Uuid) -> AppResult<Folder> {
    folders
        .into_iter()
        .find(|f| f.id == id)
        .ok_or_else(|| AppError::not_found("folder"))
}

async fn owned(conn: &mut AsyncPgConnection, user: UserId, id: uuid::Uuid) -> AppResult<()> {
    let found: Option<uuid::Uuid> = folders::table
        .filter(folders::id.eq(id))
        .filter(folders::user_id.eq(user))
        .select(folders::id)
        .first(conn)
        .await
        .optional()?;
    found
        .map(|_| ())
        .ok_or_else(|| AppError::not_found("folder"))
}

/// Moves the user's folders from `at` on down by one, for one to go at `at`.
async fn make_room(conn: &mut AsyncPgConnection, user: UserId, at: i32) -> QueryResult<()> {
    diesel::update(
        folders::table
            .filter(folders::user_id.eq(user))
            .filter(folders::position.ge(at)),
    )
    .set(folders::position.eq(folders::position + 1))
    .execute(conn)
    .await?;
    Ok(())
}

/// Makes a folder (at most 100).
pub async fn create(
    conn: &mut AsyncPgConnection,
    user: UserId,
    name: String,
    position: Option<i32>,
) -> AppResult<Folder> {
    conn.transaction::<_, AppError, _>(async |conn| {
        lock(conn, user).await?;
        let count: i64 = folders::table
            .filter(folders::user_id.eq(user))
            .count()
            .get_result(conn)
            .await?;
        if count >= MAX_FOLDERS {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "you have 100 folders already",
            ));
        }
        let id = uuid::Uuid::now_v7();
        if let Some(at) = position {
            make_room(conn, user, at).await?;
        }
        let position = position.unwrap_or(i32::try_from(count).unwrap_or(i32::MAX));
        diesel::insert_into(folders::table)
            .values((
                folders::id.eq(id),
                folders::user_id.eq(user),
                folders::name.eq(&name),
                folders::position.eq(position),
            ))
            .execute(conn)
            .await?;
        of(announce(conn, user).await?, id)
    })
    .await
}

/// Renames or moves a folder.
pub async fn update(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: uuid::Uuid,
    name: Option<String>,
    position: Option<i32>,
) -> AppResult<Folder> {
    conn.transaction::<_, AppError, _>(async |conn| {
        lock(conn, user).await?;
        owned(conn, user, id).await?;
        if let Some(name) = &name {
            diesel::update(folders::table.find(id))
                .set(folders::name.eq(name))
                .execute(conn)
                .await?;
        }
        if let Some(position) = position {
            make_room(conn, user, position).await?;
            diesel::update(folders::table.find(id))
                .set(folders::position.eq(position))
                .execute(conn)
                .await?;
        }
        of(announce(conn, user).await?, id)
    })
    .await
}

/// Deletes a folder (its items are simply no longer in a folder).
pub async fn delete(conn: &mut AsyncPgConnection, user: UserId, id: uuid::Uuid) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |conn| {
        lock(conn, user).await?;
        owned(conn, user, id).await?;
        diesel::delete(folders::table.find(id))
            .execute(conn)
            .await?;
        announce(conn, user).await?;
        Ok(())
    })
    .await
}

/// What `item` is to `user`: a guild they are in or a DM or group DM they are in.
async fn item_kind(
    conn: &mut AsyncPgConnection,
    user: UserId,
    item: uuid::Uuid,
) -> QueryResult<Option<ItemKind>> {
    let guild: bool = diesel::select(diesel::dsl::exists(
        members::table
            .inner_join(guilds::table.on(guilds::id.eq(members::guild_id)))
            .filter(members::guild_id.eq(item))
            .filter(members::user_id.eq(user))
            .filter(guilds::deleted_at.is_null()),
    ))
    .get_result(conn)
    .await?;
    if guild {
        return Ok(Some(ItemKind::Guild));
    }
    let channel: bool = diesel::select(diesel::dsl::exists(
        channel_recipients::table
            .inner_join(channels::table.on(channels::id.eq(channel_recipients::channel_id)))
            .filter(channel_recipients::channel_id.eq(item))
            .filter(channel_recipients::user_id.eq(user))
            .filter(channels::deleted_at.is_null()),
    ))
    .get_result(conn)
    .await?;
    Ok(channel.then_some(ItemKind::Channel))
}

/// Puts a guild, DM or group DM of yours into a folder (out of any other), at
/// `position` (default: last).
pub async fn put_item(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: uuid::Uuid,
    item: uuid::Uuid,
    position: Option<i32>,
) -> AppResult<Folder> {
    conn.transaction::<_, AppError, _>(async |conn| {
        lock(conn, user).await?;
        owned(conn, user, id).await?;
        let kind = item_kind(conn, user, item)
            .await?
            .ok_or_else(|| AppError::not_found("guild or channel"))?;
        diesel::delete(
            folder_items::table
                .filter(folder_items::user_id.eq(user))
                .filter(folder_items::item_id.eq(item)),
        )
        .execute(conn)
        .await?;
        let count: i64 = folder_items::table
            .filter(folder_items::folder_id.eq(id))
            .count()
            .get_result(conn)
            .await?;
        if count >= MAX_ITEMS {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "a folder holds at most 200 items",
            ));
        }
        // An item put at a position pushes the ones from there on down by one.
        if let Some(at) = position {
            diesel::update(
                folder_items::table
                    .filter(folder_items::folder_id.eq(id))
                    .filter(folder_items::position.ge(at)),
            )
            .set(folder_items::position.eq(folder_items::position + 1))
            .execute(conn)
            .await?;
        }
        diesel::insert_into(folder_items::table)
            .values((
                folder_items::folder_id.eq(id),
                folder_items::user_id.eq(user),
                folder_items::item_id.eq(item),
                folder_items::kind.eq(match kind {
                    ItemKind::Guild => "guild",
                    ItemKind::Channel => "channel",
                }),
                folder_items::position
                    .eq(position.unwrap_or(i32::try_from(count).unwrap_or(i32::MAX))),
            ))
            .execute(conn)
            .await?;
        of(announce(conn, user).await?, id)
    })
    .await
}

/// Takes an item out of a folder; 404 when it is not in it.
pub async fn remove_item(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: uuid::Uuid,
    item: uuid::Uuid,
) -> AppResult<()> {
    conn.transaction::<_, AppError, _>(async |conn| {
        lock(conn, user).await?;
        owned(conn, user, id).await?;
        let removed = diesel::delete(
            folder_items::table
                .filter(folder_items::folder_id.eq(id))
                .filter(folder_items::item_id.eq(item)),
        )
        .execute(conn)
        .await?;
        if removed == 0 {
            return Err(AppError::not_found("folder item"));
        }
        announce(conn, user).await?;
        Ok(())
    })
    .await
}

/// READY's folders part.
#[derive(Debug, Serialize)]
pub struct FoldersReady {
    /// Your folders.
    pub folders: Vec<Folder>,
}

/// Folders' part of the users domain of the gateway: READY's `folders` and
/// FOLDER_UPDATE. (The users domain is served by the users crate too; each part
/// writes its own READY fields.)
#[derive(Debug, Default)]
pub struct FoldersGateway;

impl GatewayDomain for FoldersGateway {
    fn domain(&self) -> Domain {
        Domain::Users
    }

    fn ready<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        auths: &'a [AuthUser],
    ) -> BoxFuture<'a, Result<Vec<ReadyPart>, AppError>> {
        Box::pin(async move {
            let mut parts = Vec::with_capacity(auths.len());
            for auth in auths {
                let folders = list(conn, auth.user_id).await?;
                parts.push(ReadyPart::new(&FoldersReady { folders }, Vec::new())?);
            }
            Ok(parts)
        })
    }

    fn events(&self) -> Vec<EventInfo> {
        let example = FoldersUpdate {
            folders: vec![Folder {
                id: uuid::Uuid::now_v7(),
                name: "Work".into(),
                position: 0,
                items: vec![FolderItem {
                    id: uuid::Uuid::now_v7(),
                    kind: ItemKind::Guild,
                }],
            }],
        };
        EventInfo::of(&example).into_iter().collect()
    }
}
