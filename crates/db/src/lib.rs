//! SyncTalk's database: the one generated [`schema`], the connection [`Pool`], the
//! embedded [`migrations`](run_migrations), and the self-managed local [`cluster`] that
//! `cargo run` and the tests start when no `DATABASE_URL` is given.

pub mod cluster;
mod pool;
#[rustfmt::skip]
pub mod schema;

pub use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
pub use pool::{
    Pool, PooledConn, connect, create_database, database_exists, drop_database, revert_migrations,
    run_migrations,
};

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
