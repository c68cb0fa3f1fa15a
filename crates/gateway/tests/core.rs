//! The realtime core with a test domain of its own (rooms): topics and
//! subscriptions, READY's snapshot, revocation, resume, slow and odd clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Node, Setup, dispatches_until, join, leave, mark, revoke, say};
use synctalk_gateway::HubConfig;
use synctalk_kernel::ChannelId;
use synctalk_testkit::Received;

fn room() -> ChannelId {
    ChannelId::new()
}

/// ROOM_TYPING (ephemeral) for those in `room` and for `user` themself.
fn typing(room: ChannelId, user: synctalk_kernel::UserId) -> synctalk_gateway::Ephemeral {
    synctalk_gateway::Ephemeral::new(
        vec![
            synctalk_gateway::Topic::Channel(room),
            synctalk_gateway::Topic::User(user),
        ],
        &support::Typing { room },
    )
    .unwrap()
}

/// The next replayable dispatch, skipping heartbeat acks and ephemeral events.
async fn next_event(ws: &mut synctalk_testkit::WsClient) -> (String, i64, Value) {
    loop {
        let frame = ws.frame().await;
        if frame["op"] == 0 && frame["s"].is_i64() {
            return (
                frame["t"].as_str().unwrap().to_owned(),
                frame["s"].as_i64().unwrap(),
                frame["d"].clone(),
            );
        }
    }
}

#[actix_web::test]
async fn ready_carries_the_domain_part_and_the_session_listens_to_its_topics() {
    let node = Node::spawn().await;
    let alice = node.user("alice").await;
    let (r1, r2) = (room(), room());
    let mut conn = node.conn().await;
    join(&mut conn, alice.id, r1).await;
    say(&mut conn, r1, "before").await;
    let (mut ws, ready) = node.identify(&alice).await;
    assert_eq!(ready["rooms"], json!([{"room": r1, "messages": 1}]));
    assert_eq!(ready["domains"], json!(["messaging"]));
    // A room it does not listen to: nothing. Its room: the next message, s = 1.
    say(&mut conn, r2, "elsewhere").await;
    say(&mut conn, r1, "hello").await;
    let (t, s, d) = next_event(&mut ws).await;
    assert_eq!(
        (t.as_str(), s, d["n"].as_i64(), d["text"].as_str()),
        ("ROOM_MESSAGE", 1, Some(2), Some("hello"))
    );
    // A command.
    let reply = ws
        .request("SAY", "n1", json!({"room": r1, "text": "mine"}))
        .await;
    assert_eq!(reply, json!({"ok": true, "result": null}));
    let (_, s, d) = next_event(&mut ws).await;
    assert_eq!((s, d["text"].as_str()), (2, Some("mine")));
    let refused = ws
        .request("SAY", "n2", json!({"room": r2, "text": "x"}))
        .await;
    assert_eq!(refused["error"]["code"], "not_found");
}

#[actix_web::test]
async fn joining_subscribes_at_once_and_leaving_is_the_last_thing_received() {
    let node = Node::spawn().await;
    let alice = node.user("alice").await;
    let r = room();
    let (mut ws, _) = node.identify(&alice).await;
    let mut conn = node.conn().await;
    say(&mut conn, r, "before joining").await;
    join(&mut conn, alice.id, r).await;
    say(&mut conn, r, "after joining").await;
    assert_eq!(next_event(&mut ws).await.0, "ROOM_JOIN");
    let (t, s, d) = next_event(&mut ws).await;
    assert_eq!(
        (t.as_str(), s, d["n"].as_i64()),
        ("ROOM_MESSAGE", 2, Some(2))
    );
    leave(&mut conn, alice.id, r).await;
    say(&mut conn, r, "after leaving").await;
    mark(&mut conn, alice.id, "end").await;
    let (t, s, _) = next_event(&mut ws).await;
    assert_eq!((t.as_str(), s), ("ROOM_LEAVE", 3));
    // Nothing of the room after ROOM_LEAVE: the next event is the marker.
    let (t, s, d) = next_event(&mut ws).await;
    assert_eq!(
        (t.as_str(), s, d["label"].as_str()),
        ("MARKER", 4, Some("end"))
    );
}

/// READY taken at any moment plus every event after it equals a READY taken fresh
/// afterwards: with a writer posting all the time, every socket's first message
/// follows READY's count exactly, and none is missing or doubled.
#[actix_web::test]
async fn ready_plus_the_events_after_it_is_a_fresh_ready() {
    let node = Node::spawn().await;
    let alice = node.user("alice").await;
    let r = room();
    let mut conn = node.conn().await;
    join(&mut conn, alice.id, r).await;
    let db = node.db.clone();
    let writer = tokio::spawn(async move {
        let mut conn = db.connect().await;
        for i in 0..300 {
            say(&mut conn, r, &format!("m{i}")).await;
        }
    });
    let mut sockets = Vec::new();
    while !writer.is_finished() {
        let (ws, ready) = node.identify(&alice).await;
        sockets.push((ws, ready["rooms"][0]["messages"].as_i64().unwrap()));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    writer.await.unwrap();
    assert!(sockets.len() >= 5, "only {} sockets", sockets.len());
    let (_, fresh) = node.identify(&alice).await;
    let total = fresh["rooms"][0]["messages"].as_i64().unwrap();
    assert_eq!(total, 300);
    for (mut ws, seen) in sockets {
        let mut expected = seen;
        let mut seq = 0;
        while expected < total {
            let (t, s, d) = next_event(&mut ws).await;
            assert_eq!(t, "ROOM_MESSAGE");
            seq += 1;
            expected += 1;
            assert_eq!(
                (s, d["n"].as_i64().unwrap()),
                (seq, expected),
                "after READY at {seen}"
            );
        }
        assert!(
            ws.recv_within(Duration::from_millis(100))
                .await
                .is_none_or(|r| match r {
                    Received::Frame(f) => f["op"] == 11 || f["s"].is_null(),
                    Received::Closed(_) => false,
                })
        );
    }
}

#[actix_web::test]
async fn a_session_ended_while_its_socket_identifies_never_keeps_the_socket() {
    let node = Node::spawn().await;
    for attempt in 0..12 {
        let alice = node.user(&format!("alice{attempt}")).await;
        let mut ws = node.ws().await;
        ws.send(json!({"op": 2, "d": {"token": alice.token()}}))
            .await;
        // Race the logout against the identify.
        tokio::time::sleep(Duration::from_millis(attempt * 2)).await;
        let mut conn = node.conn().await;
        revoke(&mut conn, alice.session).await;
        mark(&mut conn, alice.id, "after logout").await;
        // READY may or may not come first; then the socket closes with 4004, and the
        // event written after the logout never arrives.
        loop {
            match ws.recv().await {
                Received::Closed(code) => {
                    assert_eq!(code, Some(4004), "attempt {attempt}");
                    break;
                }
                Received::Frame(frame) => {
                    assert_ne!(
                        frame["t"], "MARKER",
                        "attempt {attempt}: an event after logout"
                    );
                }
            }
        }
    }
}

#[actix_web::test]
async fn events_committed_just_before_a_resume_come_before_resumed() {
    // A relay that polls slowly: the event is committed well before it is published.
    let slow = Setup {
        relay_poll: Duration::from_millis(300),
        ..Setup::default()
    };
    for two_nodes in [false, true] {
        let (a, b) = if two_nodes {
            let (a, b) = Node::pair(slow.clone()).await;
            (a, Some(b))
        } else {
            (Node::spawn_with(slow.clone()).await, None)
        };
        let alice = a.user("alice").await;
        let (ws, ready) = a.identify(&alice).await;
        let session = ready["session_id"].as_str().unwrap().to_owned();
        drop(ws);
        let mut conn = a.conn().await;
        for round in 0..5 {
            let label = format!("r{round}");
            mark(&mut conn, alice.id, &label).await;
            let target = b.as_ref().unwrap_or(&a);
            let mut ws = target.resume(&alice, &session, json!(round)).await;
            let got = dispatches_until(&mut ws, "RESUMED").await;
            assert_eq!(
                got.iter()
                    .map(|(t, s, d)| (t.as_str(), *s, d["label"].as_str().unwrap()))
                    .collect::<Vec<_>>(),
                [("MARKER", round + 1, label.as_str())],
                "two nodes: {two_nodes}"
            );
            drop(ws);
        }
    }
}

#[actix_web::test]
async fn subscriptions_are_kept_across_resume_on_another_node() {
    let (a, b) = Node::pair(Setup::default()).await;
    let alice = a.user("alice").await;
    let (r1, r2) = (room(), room());
    let mut conn = a.conn().await;
    join(&mut conn, alice.id, r1).await;
    let (mut ws, ready) = a.identify(&alice).await;
    let session = ready["session_id"].as_str().unwrap().to_owned();
    join(&mut conn, alice.id, r2).await;
    say(&mut conn, r2, "r2 live").await;
    assert_eq!(next_event(&mut ws).await.0, "ROOM_JOIN");
    assert_eq!(next_event(&mut ws).await.1, 2);
    drop(ws);
    // While away: a message in each room, then r1 is left, then more in both.
    say(&mut conn, r1, "r1 away").await;
    say(&mut conn, r2, "r2 away").await;
    leave(&mut conn, alice.id, r1).await;
    say(&mut conn, r1, "r1 after leaving").await;
    say(&mut conn, r2, "r2 after").await;
    let mut ws = b.resume(&alice, &session, json!(2)).await;
    let got = dispatches_until(&mut ws, "RESUMED").await;
    let got: Vec<(&str, i64, &str)> = got
        .iter()
        .map(|(t, s, d)| (t.as_str(), *s, d["text"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        got,
        [
            ("ROOM_MESSAGE", 3, "r1 away"),
            ("ROOM_MESSAGE", 4, "r2 away"),
            ("ROOM_LEAVE", 5, ""),
            ("ROOM_MESSAGE", 6, "r2 after"),
        ]
    );
    // Live on b: r2 yes, r1 no.
    say(&mut conn, r1, "r1 later").await;
    say(&mut conn, r2, "r2 later").await;
    let (_, s, d) = next_event(&mut ws).await;
    assert_eq!((s, d["text"].as_str()), (7, Some("r2 later")));
}

#[actix_web::test]
async fn a_resume_with_a_null_seq_replays_from_the_start() {
    let node = Node::spawn().await;
    let alice = node.user("alice").await;
    let (ws, ready) = node.identify(&alice).await;
    let session = ready["session_id"].as_str().unwrap().to_owned();
    drop(ws);
    let mut conn = node.conn().await;
    mark(&mut conn, alice.id, "one").await;
    mark(&mut conn, alice.id, "two").await;
    let mut ws = node.resume(&alice, &session, Value::Null).await;
    let got = dispatches_until(&mut ws, "RESUMED").await;
    assert_eq!(got.iter().map(|g| g.1).collect::<Vec<_>>(), [1, 2]);
}

#[actix_web::test]
async fn revocation_reaches_a_live_socket_on_another_node_and_it_cannot_resume() {
    let (a, b) = Node::pair(Setup::default()).await;
    let alice = a.user("alice").await;
    let (mut ws, ready) = b.identify(&alice).await;
    let session = ready["session_id"].as_str().unwrap().to_owned();
    let mut conn = a.conn().await;
    revoke(&mut conn, alice.session).await;
    assert_eq!(ws.closed().await, Some(4004));
    let mut again = a.resume(&alice, &session, json!(0)).await;
    assert_eq!(again.closed().await, Some(4004), "its token is dead too");
}

#[actix_web::test]
async fn pings_get_pongs_and_fragmented_frames_are_read_whole() {
    let node = Node::spawn().await;
    let alice = node.user("alice").await;
    let mut ws = node.ws().await;
    assert!(ws.ping(b"before").await);
    ws.send_fragmented(json!({"op": 2, "d": {"token": alice.token()}}), 3)
        .await;
    let ready = ws.dispatch("READY").await;
    assert!(ready["d"]["session_id"].is_string());
    assert!(ws.ping(b"after").await);
    ws.send_fragmented(json!({"op": 1, "d": null}), 2).await;
    ws.heartbeat().await;
}

#[actix_web::test]
async fn no_session_opens_once_shutdown_began() {
    let node = Node::spawn().await;
    let alice = node.user("alice").await;
    let (mut live, _) = node.identify(&alice).await;
    let mut late = node.ws().await;
    node.hub.shutdown().await;
    assert_eq!(live.frame().await["op"], 7, "RECONNECT");
    assert_eq!(live.closed().await, Some(4000));
    late.send(json!({"op": 2, "d": {"token": alice.token()}}))
        .await;
    assert_eq!(late.frame().await["op"], 7, "RECONNECT instead of READY");
    assert_eq!(late.closed().await, Some(4000));
}

#[actix_web::test]
async fn a_database_fault_during_identify_or_resume_is_4000_not_4004() {
    let node = Node::spawn_with(Setup {
        limits: synctalk_db::SessionLimits {
            lock_timeout: Duration::from_millis(300),
            ..synctalk_db::SessionLimits::default()
        },
        ..Setup::default()
    })
    .await;
    let alice = node.user("alice").await;
    let (ws, ready) = node.identify(&alice).await;
    let session = ready["session_id"].as_str().unwrap().to_owned();
    drop(ws);
    // Hold the session's row: the resume cannot take it over in time.
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    let mut holder = node.conn().await;
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM gateway_sessions WHERE id = '{session}' FOR UPDATE"
        ))
        .await
        .unwrap();
    let mut ws = node.resume(&alice, &session, json!(0)).await;
    let frame = ws.frame().await;
    assert_eq!(frame["op"], 9);
    assert_eq!(
        frame["d"],
        json!({"resumable": true, "reason": "unavailable"})
    );
    assert_eq!(ws.closed().await, Some(4000));
    holder.batch_execute("ROLLBACK").await.unwrap();
    // The same resume works once the database is back.
    let mut ws = node.resume(&alice, &session, json!(0)).await;
    assert!(dispatches_until(&mut ws, "RESUMED").await.is_empty());
    // READY that cannot be loaded: 4000 as well.
    diesel::sql_query("ALTER TABLE test_members RENAME TO test_members_gone")
        .execute(&mut holder)
        .await
        .unwrap();
    let mut ws = node.ws().await;
    ws.send(json!({"op": 2, "d": {"token": alice.token()}}))
        .await;
    assert_eq!(ws.closed().await, Some(4000));
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_closed_and_still_loses_nothing() {
    let node = Node::spawn_with(Setup {
        gateway: synctalk_gateway::GatewayConfig {
            write_timeout: Duration::from_millis(300),
            ..Setup::default().gateway
        },
        ..Setup::default()
    })
    .await;
    let alice = node.user("alice").await;
    let r = room();
    let mut conn = node.conn().await;
    join(&mut conn, alice.id, r).await;
    let (mut ws, ready) = node.identify(&alice).await;
    let session = ready["session_id"].as_str().unwrap().to_owned();
    // 200 messages of 64 KiB while the client reads nothing: more than the socket
    // buffers hold, fewer than the queue (256).
    use diesel_async::RunQueryDsl;
    diesel::sql_query(format!(
        "INSERT INTO outbox (topic, kind, domain, name, payload) \
         SELECT 'channel:{r}', 'event', 'messaging', 'ROOM_MESSAGE', \
                jsonb_build_object('room', '{r}'::text, 'n', n, 'text', repeat('x', 65536)) \
         FROM generate_series(1, 200) AS n ORDER BY n"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    // Until the node has closed it (reading before would let the writes through).
    for _ in 0..400 {
        if node.hub.socket_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(node.hub.socket_count(), 0, "the socket was not closed");
    let mut last = 0;
    let code = loop {
        match ws.recv().await {
            Received::Frame(frame) if frame["t"] == "ROOM_MESSAGE" => {
                last = frame["s"].as_i64().unwrap()
            }
            Received::Frame(_) => {}
            Received::Closed(code) => break code,
        }
    };
    // A write that cannot finish in time closes the socket: with 4000 when the close
    // frame still fits, or by dropping the connection of a client that reads nothing.
    assert!(matches!(code, Some(4000) | None), "closed with {code:?}");
    assert!(last < 200, "closed before everything was written ({last})");
    let mut ws = node.resume(&alice, &session, json!(last)).await;
    let mut next = last;
    while next < 200 {
        let (t, s, d) = next_event(&mut ws).await;
        assert_eq!(t, "ROOM_MESSAGE");
        next += 1;
        assert_eq!((s, d["n"].as_i64().unwrap()), (next, next));
    }
}

#[actix_web::test]
async fn ephemeral_events_reach_listeners_once_without_a_sequence_number() {
    let node = Node::spawn().await;
    let (alice, bob) = (node.user("alice").await, node.user("bob").await);
    let r = room();
    let mut conn = node.conn().await;
    join(&mut conn, alice.id, r).await;
    let (mut a, _) = node.identify(&alice).await;
    let (mut b, _) = node.identify(&bob).await;
    let typing = typing(r, alice.id);
    node.hub.publish_ephemeral(typing).await;
    let frame = a.dispatch("ROOM_TYPING").await;
    assert!(frame["s"].is_null());
    mark(&mut conn, alice.id, "after").await;
    assert_eq!(
        next_event(&mut a).await.0,
        "MARKER",
        "once, though alice listens to both topics"
    );
    mark(&mut conn, bob.id, "bob").await;
    assert_eq!(
        next_event(&mut b).await.0,
        "MARKER",
        "bob is not in the room"
    );
}

#[actix_web::test]
async fn on_nats_a_node_receives_only_the_topics_its_sockets_listen_to() {
    let (a, b) = Node::pair(Setup::default()).await;
    let (alice, bob) = (a.user("alice").await, b.user("bob").await);
    let mine = room();
    // A room whose shard node a has no reason to receive.
    let alice_shards: Vec<u16> = [
        synctalk_gateway::Topic::User(alice.id),
        synctalk_gateway::Topic::Session(alice.session),
        synctalk_gateway::Topic::Channel(mine),
    ]
    .iter()
    .map(synctalk_gateway::bus::shard)
    .collect();
    let theirs = loop {
        let r = room();
        if !alice_shards.contains(&synctalk_gateway::bus::shard(
            &synctalk_gateway::Topic::Channel(r),
        )) {
            break r;
        }
    };
    let mut conn = a.conn().await;
    join(&mut conn, alice.id, mine).await;
    join(&mut conn, bob.id, theirs).await;
    let (mut on_a, _) = a.identify(&alice).await;
    let (mut on_b, _) = b.identify(&bob).await;
    say(&mut conn, mine, "warm up").await;
    next_event(&mut on_a).await;
    let before = (a.hub.records_received(), b.hub.records_received());
    for i in 0..50 {
        say(&mut conn, theirs, &format!("t{i}")).await;
    }
    say(&mut conn, mine, "mine").await;
    for _ in 0..50 {
        assert_eq!(next_event(&mut on_b).await.0, "ROOM_MESSAGE");
    }
    let (_, _, d) = next_event(&mut on_a).await;
    assert_eq!(d["text"], "mine");
    let after = (a.hub.records_received(), b.hub.records_received());
    assert!(
        after.1 - before.1 >= 50,
        "b received {}",
        after.1 - before.1
    );
    assert!(
        after.0 - before.0 < 10,
        "a received {} records of rooms it has no socket in",
        after.0 - before.0
    );
}

#[actix_web::test]
async fn a_socket_gone_before_ready_leaves_no_session_marked_connected() {
    let node = Node::spawn().await;
    let alice = node.user("alice").await;
    for _ in 0..5 {
        let mut ws = node.ws().await;
        ws.send(json!({"op": 2, "d": {"token": alice.token()}}))
            .await;
        drop(ws);
    }
    // Each IDENTIFY was sent before its socket went, so each makes a session; each is
    // then marked dropped (kept for a resume). Waits for both: a count taken before the
    // sessions exist proves nothing. Generous, for a loaded test machine.
    let sessions = sessions_become(&node, alice.id, (5, 0)).await;
    assert_eq!(
        sessions,
        (5, 0),
        "every session whose socket went is marked dropped ({} sockets still held)",
        node.hub.socket_count()
    );
    assert_eq!(node.hub.socket_count(), 0);
}

/// The sessions of `user` on `node`: (all, marked connected).
async fn sessions_of(node: &Node, user: synctalk_kernel::UserId) -> (i64, i64) {
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        total: i64,
        #[diesel(sql_type = BigInt)]
        connected: i64,
    }
    let n: N = diesel::sql_query(format!(
        "SELECT count(*) AS total, count(*) FILTER (WHERE connected) AS connected \
         FROM gateway_sessions WHERE user_id = '{user}'"
    ))
    .get_result(&mut node.conn().await)
    .await
    .unwrap();
    (n.total, n.connected)
}

/// The sessions of `user` once they are `want` (or after 20 s: the last count).
async fn sessions_become(
    node: &Node,
    user: synctalk_kernel::UserId,
    want: (i64, i64),
) -> (i64, i64) {
    let mut sessions = sessions_of(node, user).await;
    for _ in 0..400 {
        if sessions == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        sessions = sessions_of(node, user).await;
    }
    sessions
}

#[actix_web::test]
async fn a_close_frame_followed_at_once_by_the_connection_closing_ends_the_session() {
    let node = Node::spawn().await;
    let alice = node.user("alice").await;
    for _ in 0..5 {
        let (ws, _) = node.identify(&alice).await;
        ws.close_and_go().await;
    }
    // Each close (1000) came in with the end of its connection: each session ended
    // (deleted), none is left resumable as if its socket had only dropped.
    let sessions = sessions_become(&node, alice.id, (0, 0)).await;
    assert_eq!(sessions, (0, 0), "(sessions, connected) after clean closes");
}

#[actix_web::test]
async fn on_nats_an_ephemeral_event_reaches_listeners_of_each_of_its_topics() {
    let (a, b) = Node::pair(Setup::default()).await;
    let (alice, carol) = (a.user("alice").await, a.user("carol").await);
    let alice_shard = synctalk_gateway::bus::shard(&synctalk_gateway::Topic::User(alice.id));
    let r = loop {
        let r = room();
        if synctalk_gateway::bus::shard(&synctalk_gateway::Topic::Channel(r)) != alice_shard {
            break r;
        }
    };
    let mut conn = a.conn().await;
    join(&mut conn, carol.id, r).await;
    let (mut on_alice, _) = a.identify(&alice).await;
    let (mut on_carol, _) = a.identify(&carol).await;
    // Published from the other node, to a room (carol) and to alice herself: two shards.
    let typing = typing(r, alice.id);
    b.hub.publish_ephemeral(typing).await;
    assert!(on_alice.dispatch("ROOM_TYPING").await["s"].is_null());
    assert!(on_carol.dispatch("ROOM_TYPING").await["s"].is_null());
}

#[actix_web::test]
async fn sessions_resuming_all_at_once_each_get_their_events_and_a_double_resume_lives_once() {
    let node = Node::spawn().await;
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(node.user(&format!("storm{i}")).await);
    }
    let mut held = Vec::new();
    for (i, user) in users.iter().enumerate() {
        for _ in 0..10 {
            let (ws, ready) = node.identify(user).await;
            held.push((i, ready["session_id"].as_str().unwrap().to_owned()));
            drop(ws);
        }
    }
    let mut conn = node.conn().await;
    for (i, user) in users.iter().enumerate() {
        mark(&mut conn, user.id, &format!("missed {i}")).await;
    }
    // Every session at once (take-overs share batches), the first one twice.
    let first = held[0].clone();
    let twice_user = first.0;
    let resumes = std::iter::once(&first)
        .chain(held.iter())
        .map(|(i, session)| node.resume(&users[*i], session, json!(0)));
    let mut doubles = futures_util::future::join_all(resumes).await;
    let mut others = doubles.split_off(2);
    for ((i, _), ws) in held.iter().skip(1).zip(others.iter_mut()) {
        let got = dispatches_until(ws, "RESUMED").await;
        assert_eq!(
            got.iter()
                .map(|(t, s, d)| (t.as_str(), *s, d["label"].as_str().unwrap().to_owned()))
                .collect::<Vec<_>>(),
            [("MARKER", 1, format!("missed {i}"))]
        );
    }
    // Of the two resumes of one session, exactly one ends live, with its event.
    let mut live = Vec::new();
    for mut ws in doubles {
        let mut events = Vec::new();
        let resumed = loop {
            match ws.recv().await {
                Received::Frame(f) if f["op"] == 0 && f["t"] == "RESUMED" => {
                    break true;
                }
                Received::Frame(f) if f["op"] == 0 => {
                    events.push(f["d"]["label"].as_str().unwrap_or("").to_owned());
                }
                Received::Frame(f) if f["op"] == 9 => break false,
                Received::Frame(_) => {}
                Received::Closed(_) => break false,
            }
        };
        if resumed {
            assert_eq!(events, ["missed 0"]);
            live.push(ws);
        }
    }
    mark(&mut conn, users[twice_user].id, "after").await;
    let mut still = 0;
    for ws in &mut live {
        loop {
            match ws.recv_within(synctalk_testkit::WAIT).await {
                Some(Received::Frame(f)) if f["t"] == "MARKER" => {
                    assert_eq!(
                        (f["s"].as_i64(), f["d"]["label"].as_str()),
                        (Some(2), Some("after"))
                    );
                    still += 1;
                    break;
                }
                Some(Received::Frame(_)) => {}
                Some(Received::Closed(_)) | None => break,
            }
        }
    }
    assert_eq!(still, 1, "one live socket for the session resumed twice");
}

#[actix_web::test]
async fn a_user_has_at_most_the_allowed_sockets_on_a_node_and_resumes_still_fit() {
    let node = Node::spawn_with(Setup {
        hub: HubConfig {
            max_sockets_per_user: 2,
            resume_window: Duration::from_secs(60),
            ..HubConfig::default()
        },
        ..Setup::default()
    })
    .await;
    let alice = node.user("alice").await;
    let (first, ready) = node.identify(&alice).await;
    let session = ready["session_id"].as_str().unwrap().to_owned();
    let (_second, _) = node.identify(&alice).await;
    let mut third = node.ws().await;
    third
        .send(json!({"op": 2, "d": {"token": alice.token()}}))
        .await;
    assert_eq!(
        third.closed().await,
        Some(4008),
        "a third socket is refused"
    );
    // A resume replaces its own socket: it still fits.
    drop(first);
    let mut again = node.resume(&alice, &session, json!(0)).await;
    dispatches_until(&mut again, "RESUMED").await;
    // Another user is not affected.
    let bob = node.user("bob").await;
    let (_bob, ready) = node.identify(&bob).await;
    assert!(ready["session_id"].is_string());
}

#[actix_web::test]
async fn a_socket_gets_three_failed_resumes_then_is_closed_4008() {
    let node = Node::spawn().await;
    let alice = node.user("alice").await;
    let mut ws = node
        .resume(&alice, &uuid::Uuid::now_v7().to_string(), json!(0))
        .await;
    for attempt in 1..=3 {
        let frame = ws.frame().await;
        assert_eq!(frame["op"], 9, "attempt {attempt}: {frame}");
        assert_eq!(frame["d"]["resumable"], false);
        if attempt < 3 {
            ws.send(json!({"op": 6, "d": {"token": alice.token(), "session_id": uuid::Uuid::now_v7().to_string(), "seq": 0}}))
                .await;
        }
    }
    // Then the socket is closed: each failed RESUME costs a database lookup.
    assert_eq!(ws.closed().await, Some(4008));
    // IDENTIFY is still open to a new socket.
    let (_ws, ready) = node.identify(&alice).await;
    assert!(ready["session_id"].is_string());
}

#[actix_web::test]
async fn pooled_connections_never_compile_statements_with_jit() {
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        jit: String,
    }
    use diesel_async::RunQueryDsl;
    let node = Node::spawn().await;
    let mut conn = synctalk_db::conn(&node.pool).await.unwrap();
    let setting: Setting = diesel::sql_query("SHOW jit")
        .get_result(&mut *conn)
        .await
        .unwrap();
    assert_eq!(setting.jit, "off");
}
