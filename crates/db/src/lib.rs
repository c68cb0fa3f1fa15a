//! SyncTalk's database: the one generated [`schema`], the connection [`Pool`], the
//! embedded [`migrations`](run_migrations), and the self-managed local [`cluster`] that
//! `cargo run` and the tests start when no `DATABASE_URL` is given.

pub mod cluster;
mod pipelined;
mod pool;
mod prepared;
#[rustfmt::skip]
pub mod schema;

pub use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
pub use pipelined::{Closing, outcome_unknown, transaction as pipelined};
pub use pool::{
    Lender, Pool, PooledConn, SessionLimits, conn, connect, connect_with, create_database,
    database_exists, drop_database, lazy, revert_migrations, run_migrations,
};
pub use prepared::{Limited, Prepared, limited, prepared, sql};

/// An error of the database layer (unexpected by construction: callers map it to a 500).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be made or taken from the pool.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A query failed.
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
}

impl From<DbError> for synctalk_kernel::AppError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(_) => {
                tracing::error!(%error, "database unavailable");
                synctalk_kernel::AppError::new(
                    synctalk_kernel::ErrorCode::ServiceUnavailable,
                    "the service is temporarily unavailable",
                )
            }
            other => synctalk_kernel::AppError::internal(other),
        }
    }
}

/// Whether a query failed on a unique index, and which one.
pub fn unique_violation(error: &diesel::result::Error) -> Option<&str> {
    use diesel::result::{DatabaseErrorKind, Error};
    match error {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            Some(info.constraint_name().unwrap_or(""))
        }
        _ => None,
    }
}

/// The PostgreSQL channel on which the end of a session (`session:<id>`) or of every
/// session of an account (`user:<id>`) is announced, for the nodes' session caches.
/// Triggers on `sessions.revoked_at` and `users.deleted_at` announce (migration
/// 000010); nodes also send `ping` to hear that their listening connection works.
pub const SESSION_ENDED_CHANNEL: &str = "synctalk_session_ended";

/// Notifies `payload` on [`SESSION_ENDED_CHANNEL`] when the current transaction
/// commits (at once outside one).
pub async fn notify_session_channel(
    conn: &mut AsyncPgConnection,
    payload: &str,
) -> diesel::QueryResult<()> {
    crate::sql("SELECT pg_notify($1, $2)")
        .bind::<diesel::sql_types::Text, _>(SESSION_ENDED_CHANNEL)
        .bind::<diesel::sql_types::Text, _>(payload)
        .execute(conn)
        .await?;
    Ok(())
}

/// The same server URL with another database name (keeps user, password, host and
/// query parameters).
pub fn url_with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    let mut out = format!("{scheme}://{authority}/{database}");
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_the_database_name() {
        assert_eq!(
            url_with_database("postgres://u:p@h:5432/app", "x"),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(url_with_database("postgres://h", "x"), "postgres://h/x");
        assert_eq!(
            url_with_database("postgresql://u@h/app?sslmode=disable", "x"),
            "postgresql://u@h/x?sslmode=disable"
        );
    }
}
