use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::DbError;

/// The migrations under `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// A pool of PostgreSQL connections, with optionally a [`Lender`] it borrows from
/// when all of its own are taken (an HTTP worker's pool, backed by the node's: see
/// [`Pool::with_overflow`]).
#[derive(Clone)]
pub struct Pool {
    own: deadpool::Pool<AsyncPgConnection>,
    overflow: Option<Lender>,
}

/// Lends idle connections of a pool to others, a few at a time: the rest stay for the
/// pool's own users (on the node's pool: the gateway and the background tasks).
#[derive(Clone)]
pub struct Lender {
    pool: deadpool::Pool<AsyncPgConnection>,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("own", &self.own.status())
            .field("overflow", &self.overflow.as_ref().map(|l| l.pool.status()))
            .finish()
    }
}

type Taken = (
    deadpool::Object<AsyncPgConnection>,
    Option<OwnedSemaphorePermit>,
);

impl Pool {
    /// A lender of at most `max` of this pool's connections at a time (at least one).
    pub fn lender(&self, max: usize) -> Lender {
        Lender {
            pool: self.own.clone(),
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }

    /// This pool, which borrows an idle connection of `lender`'s when all of its own
    /// are in use, instead of waiting for one of its own.
    #[must_use]
    pub fn with_overflow(mut self, lender: Lender) -> Pool {
        self.overflow = Some(lender);
        self
    }

    /// The state of the pool's own connections.
    pub fn status(&self) -> ::deadpool::Status {
        self.own.status()
    }

    async fn get(&self) -> Result<Taken, deadpool::PoolError> {
        let Some(lender) = &self.overflow else {
            return Ok((self.own.get().await?, None));
        };
        // Its own first, not waiting for one in use; then an idle one of the lender's
        // (neither waiting nor connecting); then it waits for one of its own.
        let at_once = ::deadpool::managed::Timeouts {
            wait: Some(Duration::ZERO),
            ..self.own.timeouts()
        };
        match self.own.timeout_get(&at_once).await {
            Err(deadpool::PoolError::Timeout(::deadpool::managed::TimeoutType::Wait)) => {}
            taken => return Ok((taken?, None)),
        }
        if lender.pool.status().available > 0
            && let Ok(permit) = lender.permits.clone().try_acquire_owned()
        {
            let idle = ::deadpool::managed::Timeouts {
                wait: Some(Duration::ZERO),
                create: Some(Duration::ZERO),
                ..lender.pool.timeouts()
            };
            match lender.pool.timeout_get(&idle).await {
                Ok(object) => {
                    metrics::counter!("db_overflow_connections_total").increment(1);
                    return Ok((object, Some(permit)));
                }
                Err(error) => tracing::debug!(%error, "no idle connection to borrow"),
            }
        }
        Ok((self.own.get().await?, None))
    }
}

/// A connection taken from the [`Pool`]; derefs to `AsyncPgConnection`.
///
/// Given back inside a transaction (its request's future dropped half-way, because the
/// client went away or a timeout fired), the connection is closed instead of pooled:
/// PostgreSQL then rolls the transaction back and frees its locks at once. Pooled, it
/// would keep them until the pool next handed it out (and found it broken) or until
/// `idle_in_transaction_session_timeout`, and a channel's sends wait on its topic lock.
pub struct PooledConn(
    Option<deadpool::Object<AsyncPgConnection>>,
    /// Borrowed from a [`Lender`]: its permit, given back with the connection.
    #[expect(dead_code, reason = "held until the connection is given back")]
    Option<OwnedSemaphorePermit>,
);

impl PooledConn {
    fn object(&self) -> &deadpool::Object<AsyncPgConnection> {
        match &self.0 {
            Some(object) => object,
            // Emptied only by `drop`.
            None => unreachable!("a pooled connection used after it was given back"),
        }
    }
}

impl std::ops::Deref for PooledConn {
    type Target = AsyncPgConnection;
    fn deref(&self) -> &AsyncPgConnection {
        self.object()
    }
}

impl std::ops::DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        match &mut self.0 {
            Some(object) => object,
            None => unreachable!("a pooled connection used after it was given back"),
        }
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        let Some(mut object) = self.0.take() else {
            return;
        };
        // In a transaction, or marked in error (a pipelined transaction is, until it
        // ends): what the pool would find broken at its next checkout.
        let status = <diesel_async::AnsiTransactionManager as diesel_async::TransactionManager<
            AsyncPgConnection,
        >>::transaction_manager_status_mut(&mut object);
        if !matches!(status.transaction_depth(), Ok(None)) {
            // Out of the pool (its slot is free for a new connection); dropping the
            // client ends the session.
            drop(deadpool::Object::take(object));
        }
    }
}

impl From<deadpool::PoolError> for DbError {
    fn from(error: deadpool::PoolError) -> Self {
        DbError::Unavailable(error.to_string())
    }
}

/// A connection from the pool; a pool that cannot give one within its timeout is
/// [`DbError::Unavailable`] (a 503 for clients).
pub async fn conn(pool: &Pool) -> Result<PooledConn, DbError> {
    let (object, lent) = pool.get().await?;
    Ok(PooledConn(Some(object), lent))
}

/// Limits every pooled connection runs under, so that one stuck statement, lock wait
/// or forgotten transaction cannot hold connections (and the outbox horizon) for ever.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// `statement_timeout`.
    pub statement_timeout: Duration,
    /// `lock_timeout`.
    pub lock_timeout: Duration,
    /// `idle_in_transaction_session_timeout`.
    pub idle_in_transaction: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(10),
            idle_in_transaction: Duration::from_secs(60),
        }
    }
}

impl SessionLimits {
    /// The limits, and `jit = off`: PostgreSQL compiles any statement whose estimate
    /// passes `jit_above_cost` with LLVM, tens of milliseconds of CPU each time, which
    /// a short statement never earns back (a relay statement estimated just past the
    /// threshold took 28% of the core in the sends bench).
    fn sql(&self) -> String {
        format!(
            "SET jit = off; SET statement_timeout = {}; SET lock_timeout = {}; SET idle_in_transaction_session_timeout = {};",
            self.statement_timeout.as_millis().max(1),
            self.lock_timeout.as_millis().max(1),
            self.idle_in_transaction.as_millis().max(1),
        )
    }
}

/// Builds a pool and checks, within `timeout`, that the database answers; so a wrong
/// `DATABASE_URL` fails at start-up with a clear message instead of on the first request.
pub async fn connect(url: &str, max_size: usize, timeout: Duration) -> Result<Pool, DbError> {
    connect_with(url, max_size, timeout, SessionLimits::default()).await
}

/// [`connect`] with explicit [`SessionLimits`].
pub async fn connect_with(
    url: &str,
    max_size: usize,
    timeout: Duration,
    limits: SessionLimits,
) -> Result<Pool, DbError> {
    let pool = lazy(url, max_size, timeout, limits)?;
    let mut conn = conn(&pool).await?;
    diesel::sql_query("SELECT 1").execute(&mut conn).await?;
    drop(conn);
    Ok(pool)
}

/// A pool that connects only when a connection is first asked for, on the task that
/// asks: each connection's I/O task runs on the runtime (the thread) that made it.
/// [`connect_with`] without the start-up check.
pub fn lazy(
    url: &str,
    max_size: usize,
    timeout: Duration,
    limits: SessionLimits,
) -> Result<Pool, DbError> {
    use diesel_async::SimpleAsyncConnection;
    let setup = limits.sql();
    let mut config = diesel_async::pooled_connection::ManagerConfig::<AsyncPgConnection>::default();
    // No test query on every checkout (it was a round trip and a transaction per
    // query): a connection whose socket closed or whose transaction broke is still
    // dropped when it is returned, and a dead one fails its first query.
    config.recycling_method = diesel_async::pooled_connection::RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |url| {
        let (url, setup) = (url.to_owned(), setup.clone());
        Box::pin(async move {
            let mut conn = AsyncPgConnection::establish(&url).await?;
            conn.batch_execute(&setup)
                .await
                .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
            Ok(conn)
        })
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    let own = deadpool::Pool::builder(manager)
        .max_size(max_size)
        // The connection given back last goes out first: the fewest connections stay
        // busy (and warm), and one left broken by a fault is found at the next request.
        .queue_mode(::deadpool::managed::QueueMode::Lifo)
        .runtime(::deadpool::Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()
        .map_err(|e| DbError::Unavailable(e.to_string()))?;
    Ok(Pool {
        own,
        overflow: None,
    })
}

/// Runs the pending migrations on the database at `url`; returns how many ran.
///
/// Diesel's migration harness is synchronous, so it runs on a thread of its own with a
/// runtime of its own: safe to call from any async context.
pub async fn run_migrations(url: &str) -> Result<usize, DbError> {
    with_harness(url, |conn| {
        conn.run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.len())
    })
    .await
}

/// Reverts every migration (for the up-down-up test and `db-reset`).
pub async fn revert_migrations(url: &str) -> Result<usize, DbError> {
    with_harness(url, |conn| {
        conn.revert_all_migrations(MIGRATIONS)
            .map(|versions| versions.len())
    })
    .await
}

type Harness = AsyncConnectionWrapper<AsyncPgConnection>;

async fn with_harness<F>(url: &str, job: F) -> Result<usize, DbError>
where
    F: FnOnce(&mut Harness) -> Result<usize, Box<dyn std::error::Error + Send + Sync + 'static>>
        + Send
        + 'static,
{
    let url = url.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = (|| {
            let mut conn = <Harness as diesel::Connection>::establish(&url)
                .map_err(|e| DbError::Unavailable(e.to_string()))?;
            // Two migrating processes must not interleave.
            conn.batch_execute("SELECT pg_advisory_lock(7307000001)")?;
            let result = job(&mut conn).map_err(|e| DbError::Migration(e.to_string()));
            conn.batch_execute("SELECT pg_advisory_unlock(7307000001)")?;
            result
        })();
        let _ = tx.send(result);
    });
    rx.await
        .map_err(|_| DbError::Migration("the migration thread stopped".into()))?
}

/// Whether a database exists (connected through the maintenance database `admin_url`).
pub async fn database_exists(admin_url: &str, name: &str) -> Result<bool, DbError> {
    use diesel::sql_types::{Bool, Text};
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = Bool)]
        exists: bool,
    }
    let mut conn = establish(admin_url).await?;
    let row: Exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(name)
            .get_result(&mut conn)
            .await?;
    Ok(row.exists)
}

/// Creates database `name`, optionally as a copy of `template`. Names are quoted.
pub async fn create_database(
    admin_url: &str,
    name: &str,
    template: Option<&str>,
) -> Result<(), DbError> {
    let mut conn = establish(admin_url).await?;
    let mut sql = format!("CREATE DATABASE {}", quote_ident(name));
    if let Some(template) = template {
        sql.push_str(&format!(" TEMPLATE {}", quote_ident(template)));
    }
    diesel::sql_query(sql).execute(&mut conn).await?;
    Ok(())
}

/// Drops database `name` if it exists, ending its connections.
pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), DbError> {
    let mut conn = establish(admin_url).await?;
    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
    diesel::sql_query(sql).execute(&mut conn).await?;
    Ok(())
}

async fn establish(url: &str) -> Result<AsyncPgConnection, DbError> {
    AsyncPgConnection::establish(url)
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
