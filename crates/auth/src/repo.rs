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
    // Its own predecessor no longer needs to hand it out again.
    diesel::update(refresh_tokens::table.filter(refresh_tokens::successor_hash.eq(hash)))
        .set(refresh_tokens::successor_sealed.eq(None::<Vec<u8>>))
        .execute(conn)
        .await?;
    Ok(())
}

/// Forgets the sealed successors of tokens spent more than `grace` ago.
pub async fn forget_successors(
    conn: &mut AsyncPgConnection,
    grace: chrono::Duration,
) -> QueryResult<usize> {
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::successor_sealed.is_not_null())
            .filter(refresh_tokens::used_at.lt(Utc::now() - grace)),
    )
    .set(refresh_tokens::successor_sealed.eq(None::<Vec<u8>>))
    .execute(conn)
    .await
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
    synctalk_db::sql("SELECT pg_advisory_xact_lock(hashtextextended($1, 7308))")
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

/// Counts a sign-in attempt of `subject`, unless it must wait: then when it may try
/// again. One statement, so that attempts racing each other are counted one by one:
/// the one that reaches `free` attempts sets the wait, and those after it see it. The
/// wait after `n >= free` attempts is `2^(n - free)` seconds, at most `max`; the count
/// starts again after an hour without attempts.
pub async fn claim_login_attempt(
    conn: &mut AsyncPgConnection,
    subject: &str,
    free: i32,
    max: i32,
) -> QueryResult<Option<DateTime<Utc>>> {
    #[derive(QueryableByName)]
    struct Claimed {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        #[allow(dead_code)]
        failures: i32,
    }
    // `n` is the attempt's number: 1 for a new subject, else the row's count plus one
    // (read from the row as locked by the conflict, so racing attempts count apart).
    // The wait is compared with the clock, not with the transaction's start: a free
    // attempt sets `retry_at` to its own start, which a racing attempt that began a
    // moment earlier must still see as passed.
    let n = "CASE WHEN f.updated_at < now() - interval '1 hour' THEN 1 ELSE f.failures + 1 END";
    let wait = |n: &str| {
        format!(
            "now() + make_interval(secs => CASE WHEN {n} < $2 THEN 0 \
             ELSE least(power(2, least({n} - $2, 30)), $3) END)"
        )
    };
    // One text whatever the input: the parameters are bound.
    let claimed: Option<Claimed> = synctalk_db::prepared(diesel::sql_query(format!(
        "INSERT INTO login_failures AS f (subject, failures, retry_at, updated_at) \
         VALUES ($1, 1, {first}, now()) \
         ON CONFLICT (subject) DO UPDATE SET failures = {n}, retry_at = {again}, updated_at = now() \
         WHERE f.retry_at <= clock_timestamp() \
         RETURNING failures",
        first = wait("1"),
        again = wait(n),
    ))
    .bind::<diesel::sql_types::Text, _>(subject)
    .bind::<diesel::sql_types::Integer, _>(free)
    .bind::<diesel::sql_types::Integer, _>(max))
    .get_result(conn)
    .await
    .optional()?;
    if claimed.is_some() {
        return Ok(None);
    }
    let retry_at = login_failures::table
        .find(subject)
        .select(login_failures::retry_at)
        .first(conn)
        .await
        .optional()?;
    Ok(Some(retry_at.unwrap_or_else(Utc::now)))
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

/// Whether `user` signed in before with this user agent: `None` when they never signed
/// in at all (a new account).
pub async fn knows_user_agent(
    conn: &mut AsyncPgConnection,
    user: UserId,
    agent: Option<&str>,
) -> QueryResult<Option<bool>> {
    let any: bool = diesel::select(diesel::dsl::exists(
        sessions::table.filter(sessions::user_id.eq(user)),
    ))
    .get_result(conn)
    .await?;
    if !any {
        return Ok(None);
    }
    let same: bool = diesel::select(diesel::dsl::exists(
        sessions::table
            .filter(sessions::user_id.eq(user))
            .filter(sessions::user_agent.is_not_distinct_from(agent)),
    ))
    .get_result(conn)
    .await?;
    Ok(Some(same))
}
