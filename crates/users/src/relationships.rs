//! Friends as relationships: requests, accept, decline, cancel, unfriend, block and
//! unblock. Each side has its own row (`kind` is what the other user is to you), and
//! every change is announced to both sides as RELATIONSHIP_ADD / RELATIONSHIP_REMOVE,
//! written in the same transaction as the change.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use synctalk_db::schema::{relationships, users};
use synctalk_db::{AsyncPgConnection, Pool};
use synctalk_gateway::{Domain, Outgoing, Topic, event};
use synctalk_kernel::{AppError, AppResult, ErrorCode, UserId};
use utoipa::ToSchema;

use crate::dto::User;

/// What another user is to you.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RelationshipType {
    /// Friends.
    Friend,
    /// They sent you a friend request.
    Incoming,
    /// You sent them a friend request.
    Outgoing,
    /// You blocked them.
    Blocked,
}

impl RelationshipType {
    fn as_str(self) -> &'static str {
        match self {
            RelationshipType::Friend => "friend",
            RelationshipType::Incoming => "incoming",
            RelationshipType::Outgoing => "outgoing",
            RelationshipType::Blocked => "blocked",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "friend" => RelationshipType::Friend,
            "incoming" => RelationshipType::Incoming,
            "outgoing" => RelationshipType::Outgoing,
            "blocked" => RelationshipType::Blocked,
            _ => return None,
        })
    }
}

/// A relationship as you see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Relationship {
    /// The other user's id.
    pub id: UserId,
    /// What they are to you.
    #[serde(rename = "type")]
    pub kind: RelationshipType,
    /// The other user.
    pub user: User,
    /// Since when.
    pub since: DateTime<Utc>,
}

/// The payload of RELATIONSHIP_REMOVE.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RelationshipRemoved {
    /// The other user's id.
    pub id: UserId,
    /// What they were to you.
    #[serde(rename = "type")]
    pub kind: RelationshipType,
}

/// Send a friend request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FriendRequest {
    /// The username of the user to befriend (any case).
    #[schema(
        example = "bob",
        max_length = 254,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub username: String,
}

/// The body of `PUT /users/@me/relationships/{user_id}`: empty (or `{}` or
/// `{"type": "friend"}`) accepts their request, `{"type": "blocked"}` blocks them.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RelationshipUpdate {
    /// `friend` (accept) or `blocked`.
    #[serde(default, rename = "type")]
    pub kind: Option<RelationshipChange>,
}

/// What `PUT /users/@me/relationships/{user_id}` makes of the other user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RelationshipChange {
    /// Accept their friend request.
    Friend,
    /// Block them.
    Blocked,
}

impl From<RelationshipChange> for RelationshipType {
    fn from(change: RelationshipChange) -> Self {
        match change {
            RelationshipChange::Friend => Self::Friend,
            RelationshipChange::Blocked => Self::Blocked,
        }
    }
}

#[derive(Queryable)]
struct Row {
    other_id: UserId,
    kind: String,
    created_at: DateTime<Utc>,
}

async fn kind_of(
    mut conn: &AsyncPgConnection,
    me: UserId,
    other: UserId,
) -> QueryResult<Option<RelationshipType>> {
    let kind: Option<String> = relationships::table
        .filter(relationships::user_id.eq(me))
        .filter(relationships::other_id.eq(other))
        .select(relationships::kind)
        .first(&mut conn)
        .await
        .optional()?;
    Ok(kind.and_then(|k| RelationshipType::parse(&k)))
}

async fn set(
    conn: &mut AsyncPgConnection,
    me: UserId,
    other: UserId,
    kind: RelationshipType,
) -> QueryResult<()> {
    diesel::insert_into(relationships::table)
        .values((
            relationships::user_id.eq(me),
            relationships::other_id.eq(other),
            relationships::kind.eq(kind.as_str()),
        ))
        .on_conflict((relationships::user_id, relationships::other_id))
        .do_update()
        .set((
            relationships::kind.eq(kind.as_str()),
            relationships::created_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

async fn remove(
    conn: &mut AsyncPgConnection,
    me: UserId,
    other: UserId,
) -> QueryResult<Option<RelationshipType>> {
    let kind: Option<String> = diesel::delete(
        relationships::table
            .filter(relationships::user_id.eq(me))
            .filter(relationships::other_id.eq(other)),
    )
    .returning(relationships::kind)
    .get_result(conn)
    .await
    .optional()?;
    Ok(kind.and_then(|k| RelationshipType::parse(&k)))
}

/// Your relationships, with the other users.
pub async fn list(conn: &mut AsyncPgConnection, me: UserId) -> QueryResult<Vec<Relationship>> {
    Ok(list_many(conn, &[me])
        .await?
        .into_iter()
        .next()
        .unwrap_or_default())
}

/// The relationships of several users (in the order of `users`), in one query.
pub async fn list_many(
    conn: &mut AsyncPgConnection,
    users_: &[UserId],
) -> QueryResult<Vec<Vec<Relationship>>> {
    let rows: Vec<(UserId, Row, User)> = relationships::table
        .inner_join(users::table.on(users::id.eq(relationships::other_id)))
        .filter(relationships::user_id.eq_any(users_))
        .filter(users::deleted_at.is_null())
        .order(relationships::created_at.asc())
        .select((
            relationships::user_id,
            (
                relationships::other_id,
                relationships::kind,
                relationships::created_at,
            ),
            User::as_select(),
        ))
        .load(conn)
        .await?;
    let mut out: Vec<Vec<Relationship>> = vec![Vec::new(); users_.len()];
    for (owner, row, user) in rows {
        let Some(kind) = RelationshipType::parse(&row.kind) else {
            continue;
        };
        for (i, wanted) in users_.iter().enumerate() {
            if *wanted == owner {
                out[i].push(Relationship {
                    id: row.other_id,
                    kind,
                    user: user.clone(),
                    since: row.created_at,
                });
            }
        }
    }
    Ok(out)
}

/// Your friends' ids.
pub async fn friend_ids(conn: &mut AsyncPgConnection, me: UserId) -> QueryResult<Vec<UserId>> {
    relationships::table
        .filter(relationships::user_id.eq(me))
        .filter(relationships::kind.eq("friend"))
        .select(relationships::other_id)
        .load(conn)
        .await
}

/// Whether `blocker` has blocked `other`.
pub async fn has_blocked(
    conn: &AsyncPgConnection,
    blocker: UserId,
    other: UserId,
) -> QueryResult<bool> {
    Ok(kind_of(conn, blocker, other).await? == Some(RelationshipType::Blocked))
}

/// One announcement, to one user.
enum Change {
    Add(UserId, RelationshipType, UserId),
    Remove(UserId, RelationshipType, UserId),
}

/// Writes the changes' events, and who listens to whose profile, in one append: a
/// new friend's sessions start listening to your profile (and you to theirs) from
/// this point of the outbox; a friendship that ends stops that at once.
async fn announce(conn: &mut AsyncPgConnection, changes: Vec<Change>) -> AppResult<()> {
    // A request answered, cancelled or overtaken by a block is settled: its
    // notification goes (a request sent again makes a new one).
    let mut settled: Vec<(UserId, UserId)> = changes
        .iter()
        .filter_map(|change| match *change {
            Change::Add(a, RelationshipType::Friend | RelationshipType::Blocked, b)
            | Change::Remove(a, _, b) => Some(if a < b { (a, b) } else { (b, a) }),
            Change::Add(..) => None,
        })
        .collect();
    settled.sort_unstable();
    settled.dedup();
    for (a, b) in settled {
        synctalk_notifications::service::withdraw_friend_requests(conn, a, b).await?;
    }
    let mut rows = Vec::new();
    for change in changes {
        match change {
            Change::Add(to, kind, other) => {
                let Some(user) = crate::repo::find(conn, other).await? else {
                    continue;
                };
                if kind == RelationshipType::Friend {
                    rows.push(Outgoing::subscribe(
                        Domain::Users,
                        Topic::User(to),
                        Topic::Profile(other),
                    )?);
                }
                let payload = Relationship {
                    id: other,
                    kind,
                    user: user.into(),
                    since: Utc::now(),
                };
                rows.push(Outgoing::event(Topic::User(to), &payload)?);
            }
            Change::Remove(to, kind, other) => {
                let payload = RelationshipRemoved { id: other, kind };
                rows.push(Outgoing::event(Topic::User(to), &payload)?);
                if kind == RelationshipType::Friend {
                    rows.push(Outgoing::unsubscribe(
                        Domain::Users,
                        Topic::User(to),
                        Topic::Profile(other),
                    )?);
                }
            }
        }
    }
    event::append(conn, &rows).await?;
    Ok(())
}

fn conflict(message: &'static str) -> AppError {
    AppError::new(ErrorCode::Conflict, message)
}

fn blocked() -> AppError {
    AppError::new(ErrorCode::Blocked, "this user has blocked you")
}

/// Sends a friend request by username (or accepts theirs, if they sent one).
/// Returns the other user's id.
pub async fn request(pool: &Pool, me: UserId, username: &str) -> AppResult<UserId> {
    let username = crate::domain::parse_friend_username(username)
        .map_err(|problem| AppError::field("username", problem))?;
    let mut conn = synctalk_db::conn(pool).await?;
    let other = crate::repo::find_by_login(&mut conn, &username)
        .await?
        .filter(|_| !username.contains('@'))
        .ok_or_else(|| AppError::not_found("user"))?;
    if other.id == me {
        return Err(AppError::new(
            ErrorCode::Conflict,
            "you cannot befriend yourself",
        ));
    }
    let other = other.id;
    conn.transaction::<_, AppError, _>(async |conn| {
        lock_pair(conn, me, other).await?;
        if has_blocked(conn, other, me).await? {
            return Err(blocked());
        }
        match kind_of(conn, me, other).await? {
            Some(RelationshipType::Friend) => return Err(conflict("you are already friends")),
            Some(RelationshipType::Outgoing) => {
                return Err(conflict("you already sent this user a request"));
            }
            Some(RelationshipType::Blocked) => return Err(conflict("unblock this user first")),
            Some(RelationshipType::Incoming) => return accept_in(conn, me, other).await,
            None => {}
        }
        set(conn, me, other, RelationshipType::Outgoing).await?;
        set(conn, other, me, RelationshipType::Incoming).await?;
        announce(
            conn,
            vec![
                Change::Add(me, RelationshipType::Outgoing, other),
                Change::Add(other, RelationshipType::Incoming, me),
            ],
        )
        .await?;
        let name: String = users::table
            .find(me)
            .select(users::username)
            .first(conn)
            .await?;
        synctalk_notifications::service::create(
            conn,
            vec![synctalk_notifications::service::NewNotification {
                user: other,
                kind: synctalk_notifications::dto::NotificationKind::FriendRequest,
                title: format!("{name} sent you a friend request"),
                body: String::new(),
                data: serde_json::json!({ "user_id": me }),
            }],
        )
        .await?;
        Ok(())
    })
    .await?;
    Ok(other)
}

/// Whether two users are friends.
pub async fn are_friends(pool: &Pool, a: UserId, b: UserId) -> AppResult<bool> {
    let conn = synctalk_db::conn(pool).await?;
    Ok(kind_of(&conn, a, b).await? == Some(RelationshipType::Friend))
}

async fn accept_in(conn: &mut AsyncPgConnection, me: UserId, other: UserId) -> AppResult<()> {
    set(conn, me, other, RelationshipType::Friend).await?;
    set(conn, other, me, RelationshipType::Friend).await?;
    announce(
        conn,
        vec![
            Change::Add(me, RelationshipType::Friend, other),
            Change::Add(other, RelationshipType::Friend, me),
        ],
    )
    .await
}

/// Two changes to one pair never interleave.
async fn lock_pair(conn: &mut AsyncPgConnection, a: UserId, b: UserId) -> QueryResult<()> {
    let (low, high) = if a.0 < b.0 { (a, b) } else { (b, a) };
    let key = format!("{low}{high}");
    synctalk_db::sql("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind::<diesel::sql_types::Text, _>(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Accepts their request, or blocks them.
pub async fn update(
    pool: &Pool,
    me: UserId,
    other: UserId,
    kind: RelationshipType,
) -> AppResult<()> {
    let mut conn = synctalk_db::conn(pool).await?;
    if other == me {
        return Err(AppError::not_found("user"));
    }
    if crate::repo::find(&mut conn, other).await?.is_none() {
        return Err(AppError::not_found("user"));
    }
    conn.transaction::<_, AppError, _>(async |conn| {
        lock_pair(conn, me, other).await?;
        let mine = kind_of(conn, me, other).await?;
        match kind {
            RelationshipType::Friend => match mine {
                Some(RelationshipType::Incoming) => accept_in(conn, me, other).await,
                Some(RelationshipType::Friend) => Ok(()),
                _ => Err(AppError::new(
                    ErrorCode::NotFound,
                    "no friend request from this user",
                )),
            },
            RelationshipType::Blocked => {
                if mine == Some(RelationshipType::Blocked) {
                    return Ok(());
                }
                set(conn, me, other, RelationshipType::Blocked).await?;
                let mut changes = vec![Change::Add(me, RelationshipType::Blocked, other)];
                // They lose whatever they had with you, unless they blocked you too.
                let theirs = kind_of(conn, other, me).await?;
                if let Some(kind) = theirs.filter(|k| *k != RelationshipType::Blocked) {
                    remove(conn, other, me).await?;
                    changes.push(Change::Remove(other, kind, me));
                }
                announce(conn, changes).await
            }
            _ => Err(AppError::field("type", "must be friend or blocked")),
        }
    })
    .await
}

/// Declines, cancels, unfriends or unblocks.
pub async fn delete(pool: &Pool, me: UserId, other: UserId) -> AppResult<()> {
    let mut conn = synctalk_db::conn(pool).await?;
    conn.transaction::<_, AppError, _>(async |conn| {
        lock_pair(conn, me, other).await?;
        let Some(mine) = remove(conn, me, other).await? else {
            return Err(AppError::not_found("relationship"));
        };
        let mut changes = vec![Change::Remove(me, mine, other)];
        if mine != RelationshipType::Blocked {
            let theirs = kind_of(conn, other, me).await?;
            if let Some(kind) = theirs.filter(|k| *k != RelationshipType::Blocked) {
                remove(conn, other, me).await?;
                changes.push(Change::Remove(other, kind, me));
            }
        }
        announce(conn, changes).await
    })
    .await
}
