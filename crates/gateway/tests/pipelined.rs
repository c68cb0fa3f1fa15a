//! Transactions in two round trips (`synctalk_db::pipelined`, `event::transaction`):
//! still one transaction from the first statement to the append, rolled back whole on
//! any failure, and never a connection handed back to the pool inside a transaction.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use diesel::sql_types::{BigInt, Integer, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use support::Marker;
use synctalk_gateway::{Outgoing, Topic, event};
use synctalk_kernel::{AppError, UserId};
use synctalk_testkit::TestDb;

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn setup() -> (TestDb, AsyncPgConnection) {
    let db = TestDb::migrated().await;
    let mut conn = db.connect().await;
    diesel::sql_query("CREATE TABLE t (x int NOT NULL)")
        .execute(&mut conn)
        .await
        .unwrap();
    (db, conn)
}

async fn rows_in_t(db: &TestDb) -> i64 {
    // A connection of its own: it sees only what was committed.
    let mut other = db.connect().await;
    diesel::sql_query("SELECT count(*) AS n FROM t")
        .get_result::<Count>(&mut other)
        .await
        .unwrap()
        .n
}

async fn insert(mut conn: &AsyncPgConnection, x: i32) -> diesel::QueryResult<usize> {
    synctalk_db::sql("INSERT INTO t VALUES ($1)")
        .bind::<Integer, _>(x)
        .execute(&mut conn)
        .await
}

async fn backend(mut conn: &AsyncPgConnection) -> i64 {
    synctalk_db::sql("SELECT pg_backend_pid()::bigint AS id")
        .get_result::<Id>(&mut conn)
        .await
        .unwrap()
        .id
}

async fn txid(mut conn: &AsyncPgConnection) -> diesel::QueryResult<i64> {
    Ok(synctalk_db::sql("SELECT txid_current() AS id")
        .get_result::<Id>(&mut conn)
        .await?
        .id)
}

/// The connection is out of any transaction and diesel's own transactions work on it:
/// a row written in one is seen by another connection at once (`committed` rows before).
async fn assert_clean(db: &TestDb, conn: &mut AsyncPgConnection, committed: i64) {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| insert(conn, 9).await.map(drop))
        .await
        .unwrap();
    assert_eq!(
        rows_in_t(db).await,
        committed + 1,
        "the connection was left clean"
    );
}

fn marker(user: UserId) -> Outgoing {
    Outgoing::event(
        Topic::User(user),
        &Marker {
            label: "pipelined".into(),
        },
    )
    .unwrap()
}

/// A connection whose statement cache is empty (so even BEGIN is prepared on the way):
/// the body's first statement, sent right behind it, still runs inside the transaction
/// that the append commits.
#[tokio::test]
async fn the_first_statement_and_the_append_share_one_transaction_from_a_fresh_connection() {
    let (db, mut conn) = setup().await;
    let user = UserId::new();
    let (first, later) = event::transaction(&mut conn, async |conn| {
        let first = txid(conn).await?;
        insert(conn, 1).await?;
        let later = txid(conn).await?;
        Ok::<_, AppError>(((first, later), vec![marker(user)]))
    })
    .await
    .unwrap();
    // Outside a transaction every statement would have had its own.
    assert_eq!(
        first, later,
        "the first statement ran inside the transaction"
    );
    let appended = diesel::sql_query("SELECT count(*) AS n FROM outbox WHERE topic = $1")
        .bind::<Text, _>(Topic::User(user).to_string())
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n;
    assert_eq!(appended, 1);
    assert_eq!(rows_in_t(&db).await, 1);
    assert_clean(&db, &mut conn, 1).await;
}

/// A closing statement that fails turns the pipelined COMMIT into a rollback: nothing of
/// the body stays, and the connection is clean for the next caller.
#[tokio::test]
async fn a_failing_closing_statement_rolls_back_the_whole_transaction() {
    let (db, mut conn) = setup().await;
    let error = synctalk_db::pipelined(&mut conn, async |conn| {
        insert(conn, 1).await?;
        Ok::<_, diesel::result::Error>(((), Some(synctalk_db::sql("SELECT 1 / 0"))))
    })
    .await
    .unwrap_err();
    assert!(error.to_string().contains("division by zero"), "{error}");
    assert_eq!(rows_in_t(&db).await, 0);
    assert_clean(&db, &mut conn, 0).await;
}

/// A body that catches a failed statement and carries on has an aborted transaction:
/// its COMMIT would quietly roll back, so the caller hears of it instead of a success.
#[tokio::test]
async fn a_transaction_aborted_by_a_caught_error_is_reported_not_committed() {
    let (db, mut conn) = setup().await;
    let outcome = synctalk_db::pipelined(&mut conn, async |conn| {
        insert(conn, 1).await?;
        let caught = synctalk_db::sql("SELECT 1 / 0").execute(&mut &*conn).await;
        assert!(caught.is_err());
        Ok::<_, diesel::result::Error>(((), None))
    })
    .await;
    let error = outcome.expect_err("an aborted transaction is not a success");
    assert!(error.to_string().contains("aborted"), "{error}");
    assert_eq!(rows_in_t(&db).await, 0);
    assert_clean(&db, &mut conn, 0).await;
}

/// A body that fails (a not-found, a conflict) is rolled back, and its error returned.
#[tokio::test]
async fn a_failing_body_is_rolled_back_and_its_error_returned() {
    let (db, mut conn) = setup().await;
    let error = event::transaction(&mut conn, async |conn| {
        insert(conn, 1).await?;
        Err::<((), Vec<Outgoing>), _>(AppError::not_found("thing"))
    })
    .await
    .unwrap_err();
    assert_eq!(actix_web::ResponseError::status_code(&error).as_u16(), 404);
    assert_eq!(rows_in_t(&db).await, 0);
    let appended = diesel::sql_query("SELECT count(*) AS n FROM outbox WHERE name = 'MARKER'")
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n;
    assert_eq!(appended, 0);
    assert_clean(&db, &mut conn, 0).await;
}

/// A transaction abandoned half-way (the request's future dropped when its client went
/// away) never puts its connection back in the pool inside the transaction: the pool
/// drops it, and PostgreSQL rolls back.
#[tokio::test]
async fn a_transaction_dropped_half_way_never_returns_its_connection_to_the_pool() {
    let (db, _conn) = setup().await;
    let pool = synctalk_db::connect(db.url(), 1, Duration::from_secs(5))
        .await
        .unwrap();
    let mut conn = synctalk_db::conn(&pool).await.unwrap();
    let first_backend = backend(&conn).await;
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        event::transaction(&mut conn, async |conn| {
            insert(conn, 1).await?;
            std::future::pending::<()>().await;
            Ok::<_, AppError>(((), Vec::new()))
        }),
    )
    .await;
    assert!(abandoned.is_err(), "the transaction never finished");
    drop(conn);
    let conn = synctalk_db::conn(&pool).await.unwrap();
    assert_ne!(
        backend(&conn).await,
        first_backend,
        "the pool dropped the connection left inside a transaction"
    );
    insert(&conn, 2).await.unwrap();
    assert_eq!(rows_in_t(&db).await, 1, "only the later, committed row");
}

#[derive(diesel::QueryableByName)]
struct Took {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    took: bool,
}

/// Whether another session can take advisory lock 42 within five seconds.
async fn lock_freed_soon(watcher: &mut AsyncPgConnection) -> bool {
    for _ in 0..50 {
        let took = diesel::sql_query("SELECT pg_try_advisory_xact_lock(42) AS took")
            .get_result::<Took>(watcher)
            .await
            .unwrap()
            .took;
        if took {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A transaction abandoned half-way (a client that went away) ends when its connection
/// is given back, not when the pool next hands that connection out: the connection is
/// closed, PostgreSQL rolls back and its locks are free for everyone else at once.
/// Both kinds of transaction: pipelined, and diesel's own.
#[tokio::test]
async fn an_abandoned_transaction_frees_its_locks_when_its_connection_is_given_back() {
    let (db, mut watcher) = setup().await;
    let pool = synctalk_db::connect(db.url(), 2, Duration::from_secs(5))
        .await
        .unwrap();
    let take_lock = async |mut conn: &AsyncPgConnection| {
        synctalk_db::sql("SELECT pg_advisory_xact_lock(42)")
            .execute(&mut conn)
            .await
    };

    let mut conn = synctalk_db::conn(&pool).await.unwrap();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        event::transaction(&mut conn, async |conn| {
            take_lock(conn).await?;
            std::future::pending::<()>().await;
            Ok::<_, AppError>(((), Vec::new()))
        }),
    )
    .await;
    assert!(abandoned.is_err(), "the transaction never finished");
    drop(conn);
    assert!(
        lock_freed_soon(&mut watcher).await,
        "the pipelined transaction's lock was freed when its connection was given back"
    );
    assert_eq!(
        pool.status().size,
        0,
        "the connection was closed, not pooled"
    );

    let mut conn = synctalk_db::conn(&pool).await.unwrap();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        conn.transaction::<(), diesel::result::Error, _>(async |conn| {
            take_lock(conn).await?;
            std::future::pending::<()>().await;
            Ok(())
        }),
    )
    .await;
    assert!(abandoned.is_err(), "the transaction never finished");
    drop(conn);
    assert!(
        lock_freed_soon(&mut watcher).await,
        "diesel's transaction's lock was freed when its connection was given back"
    );

    // A connection given back clean stays pooled.
    let conn = synctalk_db::conn(&pool).await.unwrap();
    let pid = backend(&conn).await;
    drop(conn);
    let conn = synctalk_db::conn(&pool).await.unwrap();
    assert_eq!(backend(&conn).await, pid, "a clean connection is reused");
}
