//! The users gateway end to end, in the app as deployed: the protocol over real
//! sockets (HELLO, IDENTIFY, heartbeats, sequence numbers, resume, every way of getting
//! closed). The core itself is tested with a domain of its own in
//! `crates/gateway/tests`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use synctalk_testkit::{Received, Status, TestApp, TestUser, WsClient};

/// Makes `n` USER_UPDATE events for `user` (each profile change is one, to yourself).
async fn updates(app: &TestApp, user: &TestUser, from: usize, n: usize) {
    for i in from..from + n {
        let res = app
            .patch(
                "/api/v1/users/@me",
                Some(&user.access_token),
                json!({"bio": format!("bio {i}")}),
            )
            .await;
        assert_eq!(res.status, Status::OK);
    }
}

async fn seq_of(ws: &mut WsClient, name: &str) -> (i64, Value) {
    let frame = ws.dispatch(name).await;
    (
        frame["s"].as_i64().expect("a replayable event has s"),
        frame["d"].clone(),
    )
}

#[actix_web::test]
async fn hello_identify_ready() {
    let app = TestApp::spawn_with(|s| s.gateway_heartbeat_interval_ms = 5_000).await;
    let alice = app.register("alice").await;
    let mut ws = app.ws("/gateway/users").await;
    let hello = ws.frame().await;
    assert_eq!(
        hello,
        json!({"op": 10, "t": null, "s": null, "d": {"heartbeat_interval_ms": 5000}})
    );
    let ready = ws.identify(&alice.access_token).await;
    assert_eq!(ready["user"]["id"], alice.id.as_str());
    assert_eq!(ready["user"]["email"], "alice@example.com");
    assert!(uuid::Uuid::parse_str(ready["session_id"].as_str().unwrap()).is_ok());
    assert_eq!(ready["relationships"], json!([]));
    assert_eq!(ready["presences"], json!([]));
    assert_eq!(ready["folders"], json!([]));
    assert_eq!(ready["domains"], json!(["users"]));
    ws.heartbeat().await;
}

#[actix_web::test]
async fn the_combined_gateway_carries_named_domains() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (_ws, ready) = app
        .gateway("/gateway?domains=users", &alice.access_token)
        .await;
    assert_eq!(ready["domains"], json!(["users"]));
    let (_all, ready) = app.gateway("/gateway", &alice.access_token).await;
    assert_eq!(
        ready["domains"],
        json!(["users", "guilds", "channels", "messaging", "notifications"])
    );
    assert_eq!(ready["unread_notifications"], 0);
    assert_eq!(ready["guilds"], json!([]));
    assert_eq!(ready["channels"], json!([]));
    assert_eq!(ready["relationships"], json!([]));
    let unknown = app.get("/gateway?domains=users,nope", None).await;
    assert_eq!(unknown.status, Status::BAD_REQUEST);
    assert_eq!(unknown.code(), "invalid_query");
    assert_eq!(
        app.get("/gateway/nope", None).await.status,
        Status::NOT_FOUND
    );
}

#[actix_web::test]
async fn no_identify_in_time_closes_4003() {
    let app = TestApp::spawn_with(|s| s.gateway_identify_timeout_ms = 300).await;
    let mut ws = app.ws("/gateway/users").await;
    ws.frame().await;
    assert_eq!(ws.closed().await, Some(4003));
}

#[actix_web::test]
async fn bad_expired_or_revoked_tokens_close_4004() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    for token in ["garbage", "a.b.c"] {
        let mut ws = app.ws("/gateway/users").await;
        ws.frame().await;
        ws.send(json!({"op": 2, "d": {"token": token}})).await;
        assert_eq!(ws.closed().await, Some(4004), "{token}");
    }
    // A live socket whose session is revoked is closed at once.
    let (mut ws, _) = app.gateway("/gateway/users", &alice.access_token).await;
    assert_eq!(
        app.post("/api/v1/auth/logout", Some(&alice.access_token), json!({}))
            .await
            .status,
        Status::NO_CONTENT
    );
    assert_eq!(ws.closed().await, Some(4004));
    let mut again = app.ws("/gateway/users").await;
    again.frame().await;
    again
        .send(json!({"op": 2, "d": {"token": alice.access_token}}))
        .await;
    assert_eq!(again.closed().await, Some(4004));
}

#[actix_web::test]
async fn expired_access_tokens_cannot_identify() {
    let app = TestApp::spawn_with(|s| s.access_token_ttl_secs = 1).await;
    let alice = app.register("alice").await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut ws = app.ws("/gateway/users").await;
    ws.frame().await;
    ws.send(json!({"op": 2, "d": {"token": alice.access_token}}))
        .await;
    assert_eq!(ws.closed().await, Some(4004));
}

#[actix_web::test]
async fn a_missed_heartbeat_closes_4009() {
    // An interval of 1 s allows 1.5 s: heartbeats every 0.4 s keep a wide margin on a
    // loaded machine, and three of them outlast one allowance.
    let app = TestApp::spawn_with(|s| s.gateway_heartbeat_interval_ms = 1000).await;
    let alice = app.register("alice").await;
    let (mut ws, _) = app.gateway("/gateway/users", &alice.access_token).await;
    // Heartbeats on time keep it open...
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        ws.heartbeat().await;
    }
    // ...and silence closes it.
    assert_eq!(ws.closed().await, Some(4009));
}

#[actix_web::test]
async fn bad_frames_close_with_their_codes() {
    let app = TestApp::spawn_with(|s| {
        s.gateway_max_frame_bytes = 1024;
        s.gateway_commands_per_minute = 5;
    })
    .await;
    let alice = app.register("alice").await;
    let cases = [
        ("unknown op", json!({"op": 99, "d": null}), 4001),
        (
            "op before identify",
            json!({"op": 12, "t": "PRESENCE", "nonce": "x", "d": {}}),
            4003,
        ),
    ];
    for (what, frame, code) in cases {
        let mut ws = app.ws("/gateway/users").await;
        ws.frame().await;
        ws.send(frame).await;
        assert_eq!(ws.closed().await, Some(code), "{what}");
    }
    let mut ws = app.ws("/gateway/users").await;
    ws.frame().await;
    ws.send_text("{not json").await;
    assert_eq!(ws.closed().await, Some(4002), "undecodable");
    let mut ws = app.ws("/gateway/users").await;
    ws.frame().await;
    ws.send_binary(vec![1, 2, 3]).await;
    assert_eq!(ws.closed().await, Some(4002), "binary");
    let mut ws = app.ws("/gateway/users").await;
    ws.frame().await;
    ws.send(json!({"op": 1, "d": "x".repeat(2048)})).await;
    assert_eq!(ws.closed().await, Some(4002), "oversize");

    let (mut ws, _) = app.gateway("/gateway/users", &alice.access_token).await;
    ws.send(json!({"op": 2, "d": {"token": alice.access_token}}))
        .await;
    assert_eq!(ws.closed().await, Some(4005), "second identify");

    let (mut ws, _) = app.gateway("/gateway/users", &alice.access_token).await;
    for _ in 0..6 {
        ws.send(json!({"op": 1, "d": null})).await;
    }
    assert_eq!(ws.closed().await, Some(4008), "too many frames");

    // None of that disturbed anyone else.
    let (mut other, _) = app.gateway("/gateway/users", &alice.access_token).await;
    other.heartbeat().await;
}

#[actix_web::test]
async fn requests_are_answered_with_their_nonce() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (mut ws, _) = app.gateway("/gateway/users", &alice.access_token).await;
    let ok = ws
        .request("PRESENCE", "n1", json!({"status": "idle"}))
        .await;
    assert_eq!(ok, json!({"ok": true, "result": null}));
    let bad = ws
        .request("PRESENCE", "n2", json!({"status": "sleeping"}))
        .await;
    assert_eq!(bad["ok"], false);
    assert_eq!(bad["error"]["code"], "validation_failed");
    let unknown = ws.request("SEND_NOTHING", "n3", json!({})).await;
    assert_eq!(unknown["ok"], false);
    assert_eq!(unknown["error"]["code"], "unknown_command");
}

#[actix_web::test]
async fn seq_increases_by_one_and_resume_replays_exactly_the_missed_events() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (mut ws, ready) = app.gateway("/gateway/users", &alice.access_token).await;
    let session_id = ready["session_id"].as_str().unwrap().to_owned();
    updates(&app, &alice, 0, 3).await;
    for expected in 1..=3 {
        let (seq, d) = seq_of(&mut ws, "USER_UPDATE").await;
        assert_eq!(seq, expected);
        assert_eq!(d["bio"], format!("bio {}", expected - 1));
    }
    // The client drops (no close frame); more happens meanwhile.
    drop(ws);
    updates(&app, &alice, 3, 2).await;

    // Resume from 2: it missed 3 (sent before the drop but, say, never read) and 4, 5.
    let mut ws = app.resume(&alice.access_token, &session_id, 2).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let (seq, d) = seq_of(&mut ws, "USER_UPDATE").await;
        got.push((seq, d["bio"].as_str().unwrap().to_owned()));
    }
    assert_eq!(
        got,
        [
            (3, "bio 2".to_owned()),
            (4, "bio 3".to_owned()),
            (5, "bio 4".to_owned())
        ]
    );
    let resumed = ws.dispatch("RESUMED").await;
    assert_eq!(resumed["d"]["replayed"], 3);
    // Nothing twice, and the stream goes on from 6.
    updates(&app, &alice, 5, 1).await;
    let (seq, d) = seq_of(&mut ws, "USER_UPDATE").await;
    assert_eq!((seq, d["bio"].as_str().unwrap()), (6, "bio 5"));
    while let Some(extra) = ws.recv_within(Duration::from_millis(300)).await {
        assert!(
            matches!(&extra, Received::Frame(f) if f["t"] == "PRESENCE_UPDATE"),
            "unexpected {extra:?}"
        );
    }

    // A seq it never reached is 4007.
    drop(ws);
    let mut ws = app.resume(&alice.access_token, &session_id, 99).await;
    assert_eq!(ws.closed().await, Some(4007));
}

#[actix_web::test]
async fn resume_outside_the_window_or_of_an_ended_session_is_invalid() {
    let app = TestApp::spawn_with(|s| s.gateway_resume_window_secs = 1).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let (ws, ready) = app.gateway("/gateway/users", &alice.access_token).await;
    let session_id = ready["session_id"].as_str().unwrap().to_owned();
    drop(ws);
    // The window runs from when the server saw the drop.
    app.until_offline(&alice).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let resume =
        json!({"op": 6, "d": {"token": alice.access_token, "session_id": session_id, "seq": 0}});
    let mut ws = app.ws("/gateway/users").await;
    ws.frame().await;
    ws.send(resume.clone()).await;
    assert_eq!(ws.frame().await["op"], 9, "INVALID_SESSION");
    // The client may identify on the same socket.
    let ready = ws.identify(&alice.access_token).await;
    assert_ne!(ready["session_id"], session_id.as_str());

    // A clean close ends the session.
    let (ws, ready) = app.gateway("/gateway/users", &alice.access_token).await;
    let ended = ready["session_id"].as_str().unwrap().to_owned();
    ws.close().await;
    let mut ws = app.resume(&alice.access_token, &ended, 0).await;
    assert_eq!(ws.frame().await["op"], 9);

    // Someone else's session cannot be resumed.
    let (theirs, ready) = app.gateway("/gateway/users", &alice.access_token).await;
    let id = ready["session_id"].as_str().unwrap().to_owned();
    drop(theirs);
    let mut ws = app.resume(&bob.access_token, &id, 0).await;
    assert_eq!(ws.frame().await["op"], 9);
}

#[actix_web::test]
async fn graceful_shutdown_sends_reconnect_and_the_session_resumes() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (mut ws, ready) = app.gateway("/gateway/users", &alice.access_token).await;
    let session_id = ready["session_id"].as_str().unwrap().to_owned();
    updates(&app, &alice, 0, 1).await;
    assert_eq!(seq_of(&mut ws, "USER_UPDATE").await.0, 1);

    let other = TestApp::spawn_on(app.db.clone(), |_| {}).await;
    app.shutdown().await;
    assert_eq!(ws.frame().await["op"], 7, "RECONNECT");
    match ws.recv().await {
        Received::Closed(_) => {}
        other => panic!("expected a close after RECONNECT, got {other:?}"),
    }
    // The other node takes the session over; the change made meanwhile arrives once,
    // as seq 2 (replayed before RESUMED, or dispatched after it if the other node had
    // not seen it yet).
    updates(&other, &alice, 1, 1).await;
    let mut ws = other.resume(&alice.access_token, &session_id, 1).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let frame = ws.frame().await;
        if frame["t"] == "RESUMED" || frame["t"] == "USER_UPDATE" {
            seen.push(frame);
        }
    }
    let update = seen.iter().find(|f| f["t"] == "USER_UPDATE").unwrap();
    assert_eq!(
        (update["s"].as_i64(), update["d"]["bio"].as_str()),
        (Some(2), Some("bio 1"))
    );
}

#[actix_web::test]
async fn events_from_rolled_back_changes_never_arrive() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (mut ws, _) = app.gateway("/gateway/users", &alice.access_token).await;
    // An invalid change is refused whole: no event.
    let res = app
        .patch(
            "/api/v1/users/@me",
            Some(&alice.access_token),
            json!({"display_name": ""}),
        )
        .await;
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY);
    // A transaction that writes an event and rolls back announces nothing.
    let mut conn = app.db.connect().await;
    use diesel_async::{AsyncConnection, RunQueryDsl};
    let _ = conn
        .transaction::<(), diesel::result::Error, _>(async |conn| {
            #[derive(serde::Serialize)]
            struct Bio {
                bio: &'static str,
            }
            synctalk_gateway::gateway_event!(Bio, "USER_UPDATE", Users, replayed);
            let row = synctalk_gateway::Outgoing::event(
                synctalk_gateway::Topic::User(alice.id.parse().unwrap()),
                &Bio { bio: "rolled back" },
            )
            .unwrap();
            synctalk_gateway::event::append(conn, &[row]).await?;
            diesel::sql_query("SELECT 1").execute(conn).await?;
            Err(diesel::result::Error::RollbackTransaction)
        })
        .await;
    updates(&app, &alice, 0, 1).await;
    let (seq, d) = seq_of(&mut ws, "USER_UPDATE").await;
    assert_eq!((seq, d["bio"].as_str().unwrap()), (1, "bio 0"));
}

#[actix_web::test]
async fn command_errors_carry_their_fields_and_requests_need_a_nonce() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (mut ws, _) = app.gateway("/gateway/users", &alice.access_token).await;
    let bad = ws
        .request("PRESENCE", "n1", json!({"status": "away"}))
        .await;
    assert_eq!(bad["error"]["code"], "validation_failed");
    assert!(bad["error"]["fields"]["status"].is_array(), "{bad}");
    ws.send(json!({"op": 12, "t": "PRESENCE", "d": {"status": "idle"}}))
        .await;
    assert_eq!(ws.closed().await, Some(4002));
}

/// Writes `n` USER_UPDATE events of 64 KiB for `user` at once (numbered 1 to `n`).
async fn flood(app: &TestApp, user: &TestUser, n: i64) {
    use diesel_async::RunQueryDsl;
    let mut conn = app.db.connect().await;
    diesel::sql_query(format!(
        "INSERT INTO outbox (topic, kind, domain, name, payload) \
         SELECT 'user:{}', 'event', 'users', 'USER_UPDATE', jsonb_build_object('bio', repeat('x', 65536), 'n', n) \
         FROM generate_series(1, {n}) AS n ORDER BY n",
        user.id
    ))
    .execute(&mut conn)
    .await
    .unwrap();
}

/// Resumes `session` from `last` and expects the flood's events after it up to `n`,
/// each once, in order.
async fn resume_the_rest(app: &TestApp, user: &TestUser, session: &str, last: i64, n: i64) {
    let mut ws = app.resume(&user.access_token, session, last).await;
    let mut next = last;
    while next < n {
        let frame = ws.frame().await;
        if frame["t"] == "USER_UPDATE" {
            next += 1;
            assert_eq!(frame["s"], next);
            assert_eq!(frame["d"]["n"], next);
        }
    }
}

#[actix_web::test]
async fn a_socket_that_cannot_keep_up_is_closed_and_can_resume() {
    let app = TestApp::spawn_with(|s| s.gateway_queue = 4).await;
    let alice = app.register("alice").await;
    let (mut ws, ready) = app.gateway("/gateway/users", &alice.access_token).await;
    let session_id = ready["session_id"].as_str().unwrap().to_owned();
    // 300 events of 64 KiB land at once while the client reads nothing: far more than
    // the socket buffers and the 4-frame queue hold.
    flood(&app, &alice, 300).await;
    // Until the server has closed it (reading before would let the writes through).
    app.until_offline(&alice).await;
    let mut last = 0;
    let code = loop {
        match ws.recv().await {
            Received::Frame(frame) if frame["t"] == "USER_UPDATE" => {
                last = frame["s"].as_i64().unwrap();
            }
            Received::Frame(_) => {}
            Received::Closed(code) => break code,
        }
    };
    assert_eq!(code, Some(4000), "closed as too slow");
    assert!(
        last < 300,
        "it was closed before everything was queued ({last})"
    );
    // Nothing is lost: a resume gets the rest, in order.
    resume_the_rest(&app, &alice, &session_id, last, 300).await;
}

/// The server's connections on `port` with bytes still to send: the client's port
/// and how many bytes (from `/proc/net/tcp`).
fn unsent_on(port: u16) -> Vec<(u16, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port_of = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
            let (local, remote) = (port_of(fields[1])?, port_of(fields[2])?);
            let tx = u64::from_str_radix(fields[4].split(':').next()?, 16).ok()?;
            (local == port && tx > 0).then_some((remote, tx))
        })
        .collect()
}

#[actix_web::test]
async fn a_client_that_never_reads_again_is_dropped_by_the_kernel_and_can_resume() {
    let app = TestApp::spawn_with(|s| {
        s.gateway_write_timeout_ms = 300;
        // Long enough to see the stuck state on a loaded test machine.
        s.tcp_user_timeout_ms = 5_000;
    })
    .await;
    let alice = app.register("alice").await;
    let (mut ws, ready) = app.gateway("/gateway/users", &alice.access_token).await;
    let session_id = ready["session_id"].as_str().unwrap().to_owned();
    // 200 events of 64 KiB (fewer than the queue holds) while the client reads
    // nothing: its kernel takes what its window holds, acknowledges the server's
    // window probes, and takes nothing more.
    flood(&app, &alice, 200).await;
    // The server's side of the socket holds far more than a frame waiting for an ACK.
    let mut stuck = None;
    for _ in 0..400 {
        stuck = unsent_on(app.port)
            .into_iter()
            .find(|&(_, unsent)| unsent > 256 * 1024);
        if stuck.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (client, _) = stuck.expect("the server's side holds unsent frames");
    // The gateway closes it as too slow (its close frame cannot reach the client);
    // then the kernel gives the connection up, and what it held, within the user
    // timeout. Without it the connection would stay for as long as the client lives.
    let held = || unsent_on(app.port).iter().any(|&(port, _)| port == client);
    for _ in 0..300 {
        if !held() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!held(), "the connection is still held");
    drop(ws.recv_within(Duration::from_millis(10)).await);
    // The session was not ended: it resumes with every event, in order.
    resume_the_rest(&app, &alice, &session_id, 0, 200).await;
}
