//! A transaction in two round trips instead of four.
//!
//! `conn.transaction(...)` waits for `BEGIN`, for each statement, then for `COMMIT`: a
//! write of one statement plus a closing one (an event append) is four round trips, and
//! with the server and PostgreSQL sharing a core each one is a pair of context switches
//! and a few syscalls on both sides. [`transaction`] sends `BEGIN` together with the
//! body's first statement and the closing statement together with `COMMIT`, using the
//! pipelining of [`AsyncPgConnection`]: futures polled together go out in the order they
//! are first polled, and PostgreSQL runs them in that order.
//!
//! Ordering: `BEGIN` is polled before the body, so it is sent first. A statement that is
//! not yet prepared holds the connection's statement cache until its `Parse` is answered
//! and then sends its `Bind`/`Execute` in the same poll, so a later statement, which
//! waits for the cache, still goes out after it.
//!
//! Failure: while the transaction is open the connection's transaction manager is marked
//! in error, so a connection whose future is dropped half-way (a client that went away)
//! is never reused inside a transaction: a [`PooledConn`](crate::PooledConn) given back
//! so is closed, and PostgreSQL rolls back and frees its locks at once. A body that fails is
//! rolled back; a closing statement that fails makes the pipelined `COMMIT` a rollback
//! (PostgreSQL ends an aborted transaction on `COMMIT`); a `COMMIT` that fails leaves
//! the connection marked, so the pool drops it.

use diesel::connection::TransactionManagerStatus;
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, TransactionManager};

use crate::prepared::{Prepared, sql};

/// The statement sent together with `COMMIT`: a prepared SQL statement with owned binds.
pub type Closing = Prepared<BoxedSqlQuery<'static, Pg, SqlQuery>>;

/// Runs `body` in a transaction whose `BEGIN` travels with the body's first statement,
/// then runs the statement the body returns (if any) together with `COMMIT`. The body
/// gets the connection by shared reference, the form that pipelines. Inside a
/// transaction already (a nested call), it runs the body and the closing statement in
/// that transaction, one after the other.
pub async fn transaction<R, E, B>(conn: &mut AsyncPgConnection, body: B) -> Result<R, E>
where
    B: AsyncFnOnce(&AsyncPgConnection) -> Result<(R, Option<Closing>), E>,
    E: From<diesel::result::Error>,
{
    let status = status_of(conn);
    if status.transaction_depth()?.is_some() {
        let (out, closing) = body(conn).await?;
        if let Some(closing) = closing {
            closing.execute(&mut &*conn).await?;
        }
        return Ok(out);
    }
    // Until the transaction has ended, a connection given back to the pool is dropped.
    status.set_in_error();
    let outcome = {
        let shared: &AsyncPgConnection = conn;
        let begin = sql("BEGIN").execute(&mut &*shared);
        let (begun, ran) = futures_util::future::join(begin, body(shared)).await;
        match (begun, ran) {
            (Ok(_), Ok((out, closing))) => finish(shared, closing).await.map(|r| r.map(|()| out)),
            (Ok(_), Err(failure)) => match sql("ROLLBACK").execute(&mut &*shared).await {
                Ok(_) => Ok(Err(failure)),
                Err(_) => Err(failure),
            },
            (Err(error), ran) => {
                // The body's statements went out after a BEGIN that failed: had any
                // of them succeeded, it ran on its own. The connection is dropped.
                if ran.is_ok() {
                    tracing::error!(%error, "BEGIN failed under statements that succeeded");
                }
                let _ = sql("ROLLBACK").execute(&mut &*shared).await;
                Err(E::from(error))
            }
        }
    };
    match outcome {
        // The transaction ended (committed or rolled back): the connection is clean.
        Ok(result) => {
            *status_of(conn) = TransactionManagerStatus::default();
            result
        }
        // Its state is unknown: it stays marked, and the pool drops it.
        Err(error) => Err(error),
    }
}

/// Sends the closing statement (or `SELECT 1`, which fails in a transaction that a
/// statement the body caught has aborted) together with `COMMIT`. `Ok(result)` when the
/// transaction ended (committed, or rolled back with `result` the error), `Err` when
/// its outcome is unknown.
async fn finish<E>(shared: &AsyncPgConnection, closing: Option<Closing>) -> Result<Result<(), E>, E>
where
    E: From<diesel::result::Error>,
{
    use std::future::Future;
    use std::task::Poll;
    let closing = closing.unwrap_or_else(|| sql("SELECT 1"));
    let mut closing = std::pin::pin!(closing.execute(&mut &*shared));
    // Its first poll sends it, or fails before anything is sent (a bind that cannot be
    // serialized): then COMMIT must not follow, or the body would commit without it.
    let first = std::future::poll_fn(|cx| Poll::Ready(closing.as_mut().poll(cx))).await;
    if let Poll::Ready(Err(error)) = first {
        return match sql("ROLLBACK").execute(&mut &*shared).await {
            Ok(_) => Ok(Err(E::from(error))),
            Err(_) => Err(E::from(error)),
        };
    }
    let closed = async move {
        match first {
            Poll::Ready(result) => result,
            Poll::Pending => closing.await,
        }
    };
    // `join`, never `try_join`: COMMIT is answered before the connection is reused.
    let commit = sql("COMMIT").execute(&mut &*shared);
    match futures_util::future::join(closed, commit).await {
        (Ok(_), Ok(_)) => Ok(Ok(())),
        // PostgreSQL refused the closing statement, so COMMIT ended the aborted
        // transaction with a rollback.
        (Err(error @ diesel::result::Error::DatabaseError(..)), Ok(_)) => Ok(Err(E::from(error))),
        (Err(error), _) | (_, Err(error)) => Err(E::from(error)),
    }
}

/// Whether a [`transaction`] that failed on `conn` may have committed: its `COMMIT`
/// went out and no answer came back (or its `BEGIN` failed under statements that ran
/// on their own). `false`: it was rolled back, nothing of it stands.
pub fn outcome_unknown(conn: &mut AsyncPgConnection) -> bool {
    matches!(status_of(conn), TransactionManagerStatus::InError)
}

fn status_of(conn: &mut AsyncPgConnection) -> &mut TransactionManagerStatus {
    <AnsiTransactionManager as TransactionManager<AsyncPgConnection>>::transaction_manager_status_mut(
        conn,
    )
}
