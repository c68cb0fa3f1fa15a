//! Queries on `sessions` and `refresh_tokens`. Each takes a connection, so callers can
//! run several in one transaction.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{refresh_tokens, sessions, users};
use synctalk_kernel::{SessionId, UserId};

use crate::model::{NewSession, RefreshTokenRow, RevokeReason, SessionRow};

/// Creates a session and its first refresh token.
pub async fn create_session(
    conn: &mut AsyncPgConnection,
    session: NewSession<'_>,
    refresh_hash: &[u8],
) -> QueryResult<SessionRow> {
    let row = diesel::insert_into(sessions::table)
        .values(&session)
        .returning(SessionRow::as_returning())
        .get_result(conn)
        .await?;
    insert_refresh_token(conn, row.id, refresh_hash).await?;
    Ok(row)
}

/// Issues a refresh token for a session.
pub async fn insert_refresh_token(
    conn: &mut AsyncPgConnection,
    session: SessionId,
    hash: &[u8],
) -> QueryResult<()> {
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(hash),
            refresh_tokens::session_id.eq(session),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// A refresh token and its session, locked for the rest of the transaction so that two
/// concurrent refreshes with one token cannot both succeed.
pub async fn lock_refresh_token(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
) -> QueryResult<Option<(RefreshTokenRow, SessionRow)>> {
    refresh_tokens::table
        .inner_join(sessions::table)
        .filter(refresh_tokens::token_hash.eq(hash))
        .select((RefreshTokenRow::as_select(), SessionRow::as_select()))
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Marks a refresh token spent.
pub async fn spend_refresh_token(conn: &mut AsyncPgConnection, hash: &[u8]) -> QueryResult<()> {
    diesel::update(refresh_tokens::table.filter(refresh_tokens::token_hash.eq(hash)))
        .set(refresh_tokens::used_at.eq(Utc::now()))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a refresh: new expiry, last use, and where it came from.
pub async fn touch_session(
    conn: &mut AsyncPgConnection,
    session: SessionId,
    expires_at: DateTime<Utc>,
    user_agent: Option<&str>,
    ip: Option<&str>,
) -> QueryResult<()> {
    diesel::update(sessions::table.find(session))
        .set((
            sessions::last_used_at.eq(Utc::now()),
            sessions::expires_at.eq(expires_at),
            sessions::user_agent.eq(user_agent),
            sessions::ip.eq(ip),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a request on a session, at most once a minute.
pub async fn mark_used(conn: &mut AsyncPgConnection, session: SessionId) -> QueryResult<()> {
    let a_minute_ago = Utc::now() - chrono::Duration::minutes(1);
    diesel::update(
        sessions::table
            .find(session)
            .filter(sessions::last_used_at.lt(a_minute_ago)),
    )
    .set(sessions::last_used_at.eq(Utc::now()))
    .execute(conn)
    .await?;
    Ok(())
}

/// A live session of a live user, with when it was last used.
pub async fn find_live(
    conn: &mut AsyncPgConnection,
    session: SessionId,
    user: UserId,
) -> QueryResult<Option<DateTime<Utc>>> {
    sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq(session))
        .filter(sessions::user_id.eq(user))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(Utc::now()))
        .filter(users::deleted_at.is_null())
        .select(sessions::last_used_at)
        .first(conn)
        .await
        .optional()
}

/// The live sessions of a user, newest first.
pub async fn list_live(conn: &mut AsyncPgConnection, user: UserId) -> QueryResult<Vec<SessionRow>> {
    sessions::table
        .filter(sessions::user_id.eq(user))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(Utc::now()))
        .order(sessions::id.desc())
        .select(SessionRow::as_select())
        .load(conn)
        .await
}

/// Ends a live session of `user`; `false` when there was none.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    user: UserId,
    session: SessionId,
    reason: RevokeReason,
) -> QueryResult<bool> {
    let updated = diesel::update(
        sessions::table
            .filter(sessions::id.eq(session))
            .filter(sessions::user_id.eq(user))
            .filter(sessions::revoked_at.is_null()),
    )
    .set((
        sessions::revoked_at.eq(Utc::now()),
        sessions::revoked_reason.eq(reason.as_str()),
    ))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Waits for, then holds until the transaction ends, the lock of one user's device:
/// concurrent sign-ins on it take turns.
pub async fn lock_device(
    conn: &mut AsyncPgConnection,
    user: UserId,
    device_id: &str,
) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7308))")
        .bind::<diesel::sql_types::Text, _>(format!("{}:{device_id}", user.0))
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends the live sessions of `user` on `device_id` (a new sign-in replaces them).
pub async fn revoke_device(
    conn: &mut AsyncPgConnection,
    user: UserId,
    device_id: &str,
) -> QueryResult<Vec<SessionId>> {
    diesel::update(
        sessions::table
            .filter(sessions::user_id.eq(user))
            .filter(sessions::device_id.eq(device_id))
            .filter(sessions::revoked_at.is_null()),
    )
    .set((
        sessions::revoked_at.eq(Utc::now()),
        sessions::revoked_reason.eq(RevokeReason::Replaced.as_str()),
    ))
    .returning(sessions::id)
    .get_results(conn)
    .await
}

/// Deletes sessions (and, by cascade, their refresh tokens) that ended or expired more
/// than `keep` ago; returns how many. Spent refresh tokens are kept while their session
/// lives, so that reuse is always detected.
pub async fn prune_sessions(
    conn: &mut AsyncPgConnection,
    keep: chrono::Duration,
) -> QueryResult<usize> {
    let cutoff = Utc::now() - keep;
    diesel::delete(
        sessions::table.filter(
            sessions::revoked_at
                .lt(cutoff)
                .or(sessions::expires_at.lt(cutoff)),
        ),
    )
    .execute(conn)
    .await
}
