//! The outbox relay: batches bounded by what the bus carries, and pruning that never
//! takes what a live node or a resumable session still needs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use serde_json::json;
use serde_json::value::RawValue;
use support::{Node, Setup, dispatches_until, mark};
use synctalk_gateway::event::{BusMessage, Kind, Record};
use synctalk_gateway::{Bus, Domain, Topic};
use synctalk_kernel::UserId;

fn record(position: i64, bytes: usize) -> Record {
    Record {
        id: position,
        position,
        topic: Topic::User(UserId::new()),
        kind: Kind::Event,
        domain: Domain::Users,
        name: Arc::from("MARKER"),
        payload: RawValue::from_string(format!("\"{}\"", "x".repeat(bytes))).unwrap(),
    }
}

#[tokio::test]
async fn batches_are_split_by_bytes_and_an_oversized_record_is_announced_by_position() {
    let bus = Bus::local_with_max_payload(8 * 1024);
    let mut rx = bus.subscribe();
    let mut records: Vec<Record> = (1..=10).map(|p| record(p, 3000)).collect();
    records.push(record(11, 20_000));
    records.push(record(12, 10));
    records.push(record(13, 10));
    synctalk_gateway::relay::publish(&bus, 0, records).await;
    let mut covered = 0;
    let mut carried = Vec::new();
    while covered < 13 {
        let message = rx.recv().await.unwrap();
        let BusMessage::Durable {
            prev,
            last,
            records,
        } = &*message
        else {
            panic!("a durable message");
        };
        assert_eq!(*prev, covered, "messages cover the positions without a gap");
        let size: usize = records.iter().map(|r| r.payload.get().len()).sum();
        assert!(size <= 8 * 1024, "a message of {size} bytes");
        carried.extend(records.iter().map(|r| r.position));
        covered = *last;
    }
    assert_eq!(covered, 13);
    assert!(
        !carried.contains(&11),
        "too large to carry: read from the outbox"
    );
    assert_eq!(carried.len(), 12);
}

#[actix_web::test]
async fn an_event_too_large_for_the_bus_still_arrives_in_order() {
    let db = Arc::new(synctalk_testkit::TestDb::migrated().await);
    let node = Node::on(db, Bus::local_with_max_payload(16 * 1024), Setup::default()).await;
    let alice = node.user("alice").await;
    let (mut ws, _) = node.identify(&alice).await;
    let mut conn = node.conn().await;
    mark(&mut conn, alice.id, "small").await;
    mark(&mut conn, alice.id, &"L".repeat(64 * 1024)).await;
    mark(&mut conn, alice.id, "end").await;
    let mut got = Vec::new();
    while got.len() < 3 {
        let frame = ws.frame().await;
        if frame["t"] == "MARKER" {
            got.push((
                frame["s"].as_i64().unwrap(),
                frame["d"]["label"].as_str().unwrap().len(),
            ));
        }
    }
    assert_eq!(got, [(1, 5), (2, 64 * 1024), (3, 3)]);
}

/// One `bigint` the statement `sql` returns (as `n`).
async fn scalar(conn: &mut diesel_async::AsyncPgConnection, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let n: N = diesel::sql_query(sql).get_result(conn).await.unwrap();
    n.n
}

/// How many outbox rows match `filter`.
async fn rows(conn: &mut diesel_async::AsyncPgConnection, filter: &str) -> i64 {
    scalar(
        conn,
        &format!("SELECT count(*) AS n FROM outbox WHERE {filter}"),
    )
    .await
}

async fn count(conn: &mut diesel_async::AsyncPgConnection) -> i64 {
    rows(conn, "true").await
}

async fn count_unpublished(conn: &mut diesel_async::AsyncPgConnection) -> i64 {
    rows(
        conn,
        "NOT EXISTS (SELECT 1 FROM outbox_published p WHERE p.id = outbox.id)",
    )
    .await
}

/// Waits until `node` has read the outbox up to the relay's position, then records every
/// node as there. (A node reports its own position as it goes: recorded before it caught
/// up, ours would be overwritten by an older one.)
async fn every_node_caught_up(node: &Node, conn: &mut diesel_async::AsyncPgConnection) {
    let head = scalar(conn, "SELECT position AS n FROM outbox_relay").await;
    for _ in 0..200 {
        if node.hub.position() >= head {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(node.hub.position(), head);
    diesel::sql_query("UPDATE gateway_nodes SET position = (SELECT position FROM outbox_relay)")
        .execute(conn)
        .await
        .unwrap();
}

#[actix_web::test]
async fn pruning_keeps_what_resumable_sessions_and_live_nodes_need_in_bounded_batches() {
    let node = Node::spawn().await;
    let alice = node.user("alice").await;
    let mut conn = node.conn().await;
    // History from before the session: prunable once old.
    for i in 0..20 {
        mark(&mut conn, UserId::new(), &format!("old {i}")).await;
    }
    while count_unpublished(&mut conn).await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (ws, ready) = node.identify(&alice).await;
    let session = ready["session_id"].as_str().unwrap().to_owned();
    drop(ws);
    for i in 0..30 {
        mark(&mut conn, alice.id, &format!("new {i}")).await;
    }
    while count_unpublished(&mut conn).await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    diesel::sql_query("UPDATE outbox SET created_at = now() - interval '1 hour'")
        .execute(&mut conn)
        .await
        .unwrap();
    // Every node has delivered everything; the dropped session still needs its 30.
    every_node_caught_up(&node, &mut conn).await;
    let pruned = synctalk_gateway::relay::prune(&mut conn, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((pruned, count(&mut conn).await), (20, 30));
    // Rows younger than the retention stay whatever else holds.
    let kept = synctalk_gateway::relay::prune(&mut conn, Duration::from_secs(7200))
        .await
        .unwrap();
    assert_eq!(kept, 0);
    // The session resumes with all 30.
    let mut ws = node.resume(&alice, &session, json!(0)).await;
    assert_eq!(dispatches_until(&mut ws, "RESUMED").await.len(), 30);
    ws.close().await;
    // A node that is behind holds the outbox at its position.
    diesel::sql_query(
        "WITH written AS ( \
           INSERT INTO outbox (topic, kind, domain, name, payload, created_at) \
           SELECT 'user:' || gen_random_uuid(), 'event', 'users', 'MARKER', '{}', now() - interval '1 hour' \
           FROM generate_series(1, 12000) AS n RETURNING id, topic \
         ) \
         INSERT INTO outbox_published (id, position, topic) \
         SELECT id, (SELECT position FROM outbox_relay) + row_number() OVER (ORDER BY id), topic \
         FROM written",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("UPDATE outbox_relay SET position = position + 12000")
        .execute(&mut conn)
        .await
        .unwrap();
    // This node catches up with them (from the outbox: no bus message announced them).
    every_node_caught_up(&node, &mut conn).await;
    diesel::sql_query(
        "INSERT INTO gateway_nodes (id, position) SELECT gen_random_uuid(), position - 2000 FROM outbox_relay",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let pruned = synctalk_gateway::relay::prune(&mut conn, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        (pruned, count(&mut conn).await),
        (30 + 10_000, 2000),
        "in batches, down to the slowest node"
    );
}

#[actix_web::test]
async fn pruning_keeps_each_channel_and_guild_topics_newest_row() {
    let node = Node::spawn().await;
    let mut conn = node.conn().await;
    // Three old, published rows on a channel's, a guild's and a user's topic.
    let topics = [
        format!("channel:{}", uuid::Uuid::now_v7()),
        format!("guild:{}", uuid::Uuid::now_v7()),
        format!("user:{}", uuid::Uuid::now_v7()),
    ];
    diesel::sql_query(
        "WITH written AS ( \
           INSERT INTO outbox (topic, kind, domain, name, payload, created_at) \
           SELECT t, 'event', 'messaging', 'MARKER', '{}', now() - interval '1 hour' \
           FROM generate_series(1, 3) AS n, unnest($1::text[]) AS t RETURNING id, topic \
         ) \
         INSERT INTO outbox_published (id, position, topic) \
         SELECT id, (SELECT position FROM outbox_relay) + row_number() OVER (ORDER BY id), topic \
         FROM written",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(topics.to_vec())
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("UPDATE outbox_relay SET position = position + 9")
        .execute(&mut conn)
        .await
        .unwrap();
    every_node_caught_up(&node, &mut conn).await;
    let newest = "SELECT count(*) AS n FROM outbox o WHERE o.topic NOT LIKE 'user:%' \
                  AND o.id = (SELECT max(id) FROM outbox m WHERE m.topic = o.topic)";
    assert_eq!(scalar(&mut conn, newest).await, 2);
    let pruned = synctalk_gateway::relay::prune(&mut conn, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(pruned, 7, "all but the channel's and the guild's newest");
    assert_eq!(rows(&mut conn, "topic NOT LIKE 'user:%'").await, 2);
    assert_eq!(scalar(&mut conn, newest).await, 2);
    // Pruning again keeps them.
    let pruned = synctalk_gateway::relay::prune(&mut conn, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        (pruned, rows(&mut conn, "topic NOT LIKE 'user:%'").await),
        (0, 2)
    );
}

#[actix_web::test]
async fn a_transaction_older_than_many_relay_rounds_still_gets_its_events_published() {
    let node = Node::spawn().await;
    let (alice, bob) = (node.user("alice").await, node.user("bob").await);
    let (mut ws, _) = node.identify(&alice).await;
    let mut old = node.conn().await;
    let mut conn = node.conn().await;
    // An old transaction: it has its transaction id before everything below.
    diesel::sql_query("BEGIN").execute(&mut old).await.unwrap();
    diesel::sql_query("SELECT pg_current_xact_id()")
        .execute(&mut old)
        .await
        .unwrap();
    // Many relay rounds go by while it runs; each publishes newer transactions' rows.
    for i in 0..5 {
        mark(&mut conn, bob.id, &format!("bob {i}")).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    mark(&mut conn, alice.id, "newer").await;
    assert_eq!(ws.dispatch("MARKER").await["d"]["label"], "newer");
    // Its row, written and committed last, is still published (the relay's floor
    // never passes a transaction that is still running).
    mark(&mut old, alice.id, "older transaction").await;
    diesel::sql_query("COMMIT").execute(&mut old).await.unwrap();
    assert_eq!(
        ws.dispatch("MARKER").await["d"]["label"],
        "older transaction"
    );
    assert_eq!(count_unpublished(&mut conn).await, 0);
}

#[actix_web::test]
async fn a_row_written_early_and_committed_after_many_relay_rounds_is_still_published() {
    let node = Node::spawn().await;
    let (alice, bob) = (node.user("alice").await, node.user("bob").await);
    let (mut alice_ws, _) = node.identify(&alice).await;
    let (mut bob_ws, _) = node.identify(&bob).await;
    let mut old = node.conn().await;
    let mut conn = node.conn().await;
    // Its row takes an id below every row written after it, and stays invisible while
    // the relay numbers those over many rounds.
    diesel::sql_query("BEGIN").execute(&mut old).await.unwrap();
    mark(&mut old, bob.id, "written first").await;
    for i in 0..5 {
        mark(&mut conn, alice.id, &format!("alice {i}")).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    for i in 0..5 {
        assert_eq!(
            alice_ws.dispatch("MARKER").await["d"]["label"],
            format!("alice {i}")
        );
    }
    // The stored floor (where a resume looks for unpublished rows) is below it too.
    let early = rows(&mut old, &format!("topic = 'user:{}'", bob.id)).await;
    assert_eq!(early, 1);
    let below = rows(
        &mut old,
        &format!(
            "topic = 'user:{}' AND id > (SELECT floor FROM outbox_relay WHERE id = 1)",
            bob.id
        ),
    )
    .await;
    assert_eq!(below, 1, "the stored floor passed a row still uncommitted");
    diesel::sql_query("COMMIT").execute(&mut old).await.unwrap();
    assert_eq!(
        bob_ws.dispatch("MARKER").await["d"]["label"],
        "written first",
        "the relay's floor never passes a row whose transaction is still running"
    );
    assert_eq!(count_unpublished(&mut conn).await, 0);
    // Once everything has ended, the stored floor passes every row. The floor waits
    // for the cluster's oldest running transaction (other tests' too): generous.
    let mut above = -1;
    for _ in 0..750 {
        above = rows(
            &mut conn,
            "id > (SELECT floor FROM outbox_relay WHERE id = 1)",
        )
        .await;
        if above == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(above, 0, "the relay stores the floor it reached");
}

/// The transaction that last wrote the relay's cursor row.
async fn cursor_writer(conn: &mut diesel_async::AsyncPgConnection) -> i64 {
    scalar(
        conn,
        "SELECT xmin::text::bigint AS n FROM outbox_relay WHERE id = 1",
    )
    .await
}

#[actix_web::test]
async fn an_idle_relay_writes_nothing_and_wakes_for_the_next_row() {
    let node = Node::spawn().await;
    let alice = node.user("alice").await;
    let (mut ws, _) = node.identify(&alice).await;
    let mut conn = node.conn().await;
    mark(&mut conn, alice.id, "first").await;
    assert_eq!(ws.dispatch("MARKER").await["d"]["label"], "first");
    // The floor reaches the last id handed out and is stored (once every transaction
    // of the cluster that was running when the row was numbered has ended).
    let mut behind = -1;
    for _ in 0..300 {
        behind = scalar(
            &mut conn,
            "SELECT (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END \
             FROM outbox_id_seq) - floor AS n FROM outbox_relay WHERE id = 1",
        )
        .await;
        if behind == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(behind, 0, "the stored floor reaches the last id");
    let writer = cursor_writer(&mut conn).await;
    // Then, idle, it numbers nothing: the cursor's row is not written again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        cursor_writer(&mut conn).await,
        writer,
        "an idle relay wrote its cursor row"
    );
    assert_eq!(
        rows(
            &mut conn,
            "id > (SELECT floor FROM outbox_relay WHERE id = 1)"
        )
        .await,
        0,
        "the floor it stored passes every row"
    );
    // A row written after the idle spell is published as before.
    mark(&mut conn, alice.id, "after").await;
    assert_eq!(ws.dispatch("MARKER").await["d"]["label"], "after");
    assert_eq!(count_unpublished(&mut conn).await, 0);
}

#[actix_web::test]
async fn a_statement_made_with_synctalk_db_sql_is_prepared_once_per_connection() {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let node = Node::spawn().await;
    let mut conn = node.conn().await;
    for i in 0..3_i64 {
        let kept: N = synctalk_db::sql("SELECT $1::bigint AS n")
            .bind::<BigInt, _>(i)
            .get_result(&mut conn)
            .await
            .unwrap();
        let unkept: N = diesel::sql_query("SELECT $1::bigint + 0 AS n")
            .bind::<BigInt, _>(i)
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!((kept.n, unkept.n), (i, i));
    }
    let prepared = |text: &'static str| {
        diesel::sql_query("SELECT count(*) AS n FROM pg_prepared_statements WHERE statement = $1")
            .bind::<diesel::sql_types::Text, _>(text)
    };
    let kept: N = prepared("SELECT $1::bigint AS n")
        .get_result(&mut conn)
        .await
        .unwrap();
    let unkept: N = prepared("SELECT $1::bigint + 0 AS n")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (kept.n, unkept.n),
        (1, 0),
        "one named statement for the kept query, none for diesel's raw one"
    );
}
