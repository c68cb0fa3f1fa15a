//! Queries on `sessions` and `refresh_tokens`. Each takes a connection, so callers can
//! run several in one transaction.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{login_failures, refresh_tokens, sessions, users};
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

/// Marks a refresh token spent, remembering (sealed) what it was exchanged for.
pub async fn spend_refresh_token(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
    successor_hash: &[u8],
    successor_sealed: &[u8],
) -> QueryResult<()> {
    diesel::update(refresh_tokens::table.filter(refresh_tokens::token_hash.eq(hash)))
        .set((
            refresh_tokens::used_at.eq(Utc::now()),
            refresh_tokens::successor_hash.eq(successor_hash),
            refresh_tokens::successor_sealed.eq(successor_sealed),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether a refresh token exists and is still unspent.
pub async fn is_unspent(conn: &mut AsyncPgConnection, hash: &[u8]) -> QueryResult<bool> {
    let used: Option<Option<DateTime<Utc>>> = refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(hash))
        .select(refresh_tokens::used_at)
        .first(conn)
        .await
        .optional()?;
    Ok(matches!(used, Some(None)))
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

/// Until when sign-ins for `subject` must wait, if they must.
pub async fn login_retry_at(
    conn: &mut AsyncPgConnection,
    subject: &str,
) -> QueryResult<Option<DateTime<Utc>>> {
    login_failures::table
        .find(subject)
        .select(login_failures::retry_at)
        .first(conn)
        .await
        .optional()
}

/// Counts a failed sign-in for `subject` (the count starts again after an hour
/// without failures) and makes the next one wait `delay(count)`.
pub async fn record_login_failure(
    conn: &mut AsyncPgConnection,
    subject: &str,
    delay: impl Fn(i32) -> chrono::Duration,
) -> QueryResult<i32> {
    let now = Utc::now();
    let failures: i32 = diesel::insert_into(login_failures::table)
        .values((
            login_failures::subject.eq(subject),
            login_failures::failures.eq(1),
            login_failures::retry_at.eq(now),
            login_failures::updated_at.eq(now),
        ))
        .on_conflict(login_failures::subject)
        .do_update()
        .set((
            login_failures::failures.eq(diesel::dsl::sql::<diesel::sql_types::Integer>(
                "CASE WHEN login_failures.updated_at < now() - interval '1 hour' \
                 THEN 1 ELSE login_failures.failures + 1 END",
            )),
            login_failures::updated_at.eq(now),
        ))
        .returning(login_failures::failures)
        .get_result(conn)
        .await?;
    diesel::update(login_failures::table.find(subject))
        .set(login_failures::retry_at.eq(now + delay(failures)))
        .execute(conn)
        .await?;
    Ok(failures)
}

/// Forgets the failed sign-ins of `subject` (after a successful one).
pub async fn clear_login_failures(conn: &mut AsyncPgConnection, subject: &str) -> QueryResult<()> {
    diesel::delete(login_failures::table.find(subject))
        .execute(conn)
        .await?;
    Ok(())
}

/// Forgets failed sign-ins older than `keep`.
pub async fn prune_login_failures(
    conn: &mut AsyncPgConnection,
    keep: chrono::Duration,
) -> QueryResult<usize> {
    diesel::delete(login_failures::table.filter(login_failures::updated_at.lt(Utc::now() - keep)))
        .execute(conn)
        .await
}

/// Whether `user` has signed in from `device` before (a session of theirs with that
/// device id still exists, live or ended within the pruning period).
pub async fn known_device(
    conn: &mut AsyncPgConnection,
    user: UserId,
    device: &str,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        sessions::table
            .filter(sessions::user_id.eq(user))
            .filter(sessions::device_id.eq(device)),
    ))
    .get_result(conn)
    .await
}
