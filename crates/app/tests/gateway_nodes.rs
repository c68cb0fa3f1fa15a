//! Several SyncTalk nodes on one PostgreSQL and one NATS: events reach sockets on
//! every node, and a session resumes on any node with nothing lost or repeated.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;
use synctalk_testkit::{Status, TestApp, TestUser, WsClient};

async fn update(app: &TestApp, user: &TestUser, bio: &str) {
    let res = app
        .patch(
            "/api/v1/users/@me",
            Some(&user.access_token),
            json!({"bio": bio}),
        )
        .await;
    assert_eq!(res.status, Status::OK);
}

async fn next_update(ws: &mut WsClient) -> (i64, String) {
    let frame = ws.dispatch("USER_UPDATE").await;
    (
        frame["s"].as_i64().unwrap(),
        frame["d"]["bio"].as_str().unwrap().to_owned(),
    )
}

#[actix_web::test]
async fn an_event_caused_on_one_node_reaches_sockets_on_the_other() {
    let nodes = TestApp::cluster(2, |_| {}).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let alice = a.register("alice").await;
    let (mut on_b, _) = b.gateway("/gateway/users", &alice.access_token).await;
    let (mut on_a, _) = a.gateway("/gateway/users", &alice.access_token).await;
    update(a, &alice, "from a").await;
    assert_eq!(next_update(&mut on_b).await, (1, "from a".to_owned()));
    assert_eq!(next_update(&mut on_a).await, (1, "from a".to_owned()));
    update(b, &alice, "from b").await;
    assert_eq!(next_update(&mut on_b).await, (2, "from b".to_owned()));
    assert_eq!(next_update(&mut on_a).await, (2, "from b".to_owned()));
}

/// Alice and bob, friends.
async fn friends(app: &TestApp) -> (TestUser, TestUser) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    app.post(
        "/api/v1/users/@me/relationships",
        Some(&alice.access_token),
        json!({"username": "bob"}),
    )
    .await;
    let res = app
        .request(
            synctalk_testkit::Method::PUT,
            &format!("/api/v1/users/@me/relationships/{}", alice.id),
            Some(&bob.access_token),
            None,
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    (alice, bob)
}

#[actix_web::test]
async fn presence_crosses_nodes() {
    let nodes = TestApp::cluster(2, |s| s.presence_grace_ms = 200).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let (alice, bob) = friends(a).await;
    let (mut bob_on_b, _) = b.gateway("/gateway/users", &bob.access_token).await;
    let (alice_on_a, _) = a.gateway("/gateway/users", &alice.access_token).await;
    assert_eq!(presence_of(&mut bob_on_b, &alice).await, "online");
    alice_on_a.close().await;
    assert_eq!(presence_of(&mut bob_on_b, &alice).await, "offline");
}

#[actix_web::test]
async fn a_client_that_drops_from_one_node_resumes_on_the_other() {
    let nodes = TestApp::cluster(2, |_| {}).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let alice = a.register("alice").await;
    let (mut ws, ready) = a.gateway("/gateway/users", &alice.access_token).await;
    let session_id = ready["session_id"].as_str().unwrap().to_owned();
    for bio in ["one", "two"] {
        update(a, &alice, bio).await;
    }
    assert_eq!(next_update(&mut ws).await, (1, "one".to_owned()));
    // Mid-stream: event 2 is on its way when the client drops.
    drop(ws);
    for bio in ["three", "four"] {
        update(a, &alice, bio).await;
    }
    let mut ws = b.resume(&alice.access_token, &session_id, 1).await;
    let mut got = Vec::new();
    loop {
        let frame = ws.frame().await;
        match frame["t"].as_str() {
            Some("USER_UPDATE") => got.push((
                frame["s"].as_i64().unwrap(),
                frame["d"]["bio"].as_str().unwrap().to_owned(),
            )),
            Some("RESUMED") => break,
            _ => {}
        }
    }
    // Whatever was not replayed yet arrives right after, still in order.
    while got.len() < 3 {
        got.push(next_update(&mut ws).await);
    }
    assert_eq!(
        got,
        [
            (2, "two".to_owned()),
            (3, "three".to_owned()),
            (4, "four".to_owned())
        ]
    );
    update(a, &alice, "five").await;
    assert_eq!(next_update(&mut ws).await, (5, "five".to_owned()));
}

#[actix_web::test]
async fn sessions_resume_after_the_node_that_held_them_dies() {
    let nodes = TestApp::cluster(2, |_| {}).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let alice = a.register("alice").await;
    let (mut ws, ready) = a.gateway("/gateway/users", &alice.access_token).await;
    let session_id = ready["session_id"].as_str().unwrap().to_owned();
    update(a, &alice, "before").await;
    assert_eq!(next_update(&mut ws).await, (1, "before".to_owned()));

    a.kill().await;
    assert!(matches!(
        ws.recv().await,
        synctalk_testkit::Received::Closed(_)
    ));
    // The survivor takes over the relay and the session.
    update(b, &alice, "after").await;
    let mut ws = b.resume(&alice.access_token, &session_id, 1).await;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while got.is_empty() && tokio::time::Instant::now() < deadline {
        let frame = ws.frame().await;
        if frame["t"] == "USER_UPDATE" {
            got.push((
                frame["s"].as_i64().unwrap(),
                frame["d"]["bio"].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert_eq!(got, [(2, "after".to_owned())]);
}

/// The next PRESENCE_UPDATE about `user` (skipping those about others, such as yourself).
async fn presence_of(ws: &mut WsClient, user: &TestUser) -> String {
    loop {
        let frame = ws.dispatch("PRESENCE_UPDATE").await;
        assert!(frame["s"].is_null(), "presence is ephemeral: {frame}");
        if frame["d"]["user_id"] == user.id.as_str() {
            return frame["d"]["status"].as_str().unwrap().to_owned();
        }
    }
}

/// Calls `GET /users/@me` on `app` until it answers 401, for at most 5 s (half the
/// session cache's life, so a node that waited for its cache to expire fails; the rest
/// is room for a loaded test machine); how long that took.
async fn until_refused(app: &TestApp, token: &str) -> Duration {
    let begun = tokio::time::Instant::now();
    while app.get("/api/v1/users/@me", Some(token)).await.status != Status::UNAUTHORIZED {
        assert!(
            begun.elapsed() < Duration::from_secs(5),
            "a session ended elsewhere still works here after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    begun.elapsed()
}

#[actix_web::test]
async fn a_session_ended_on_one_node_stops_working_on_every_node_at_once() {
    let nodes = TestApp::cluster(2, |_| {}).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let alice = a.register("alice").await;
    let bob = a.register("bob").await;
    // Node b has seen both sessions live (and may trust that for a while).
    for user in [&alice, &bob] {
        let me = b.get("/api/v1/users/@me", Some(&user.access_token)).await;
        assert_eq!(me.status, Status::OK);
    }
    let res = a
        .post("/api/v1/auth/logout", Some(&alice.access_token), json!({}))
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    until_refused(b, &alice.access_token).await;
    let res = a.delete("/api/v1/users/@me", Some(&bob.access_token)).await;
    assert_eq!(res.status, Status::NO_CONTENT);
    until_refused(b, &bob.access_token).await;
    // And they stay refused.
    for user in [&alice, &bob] {
        let me = b.get("/api/v1/users/@me", Some(&user.access_token)).await;
        assert_eq!(me.status, Status::UNAUTHORIZED);
    }
}

/// A node and Alice, whose session the node has just seen live (and may cache).
async fn seen_live() -> (TestApp, TestUser) {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let me = app
        .get("/api/v1/users/@me", Some(&alice.access_token))
        .await;
    assert_eq!(me.status, Status::OK);
    (app, alice)
}

/// Ends `user`'s session with an UPDATE of its own, as an operator would.
async fn revoke_by_hand(conn: &mut diesel_async::AsyncPgConnection, user: &TestUser) {
    use diesel_async::RunQueryDsl;
    diesel::sql_query(format!(
        "UPDATE sessions SET revoked_at = now() WHERE id = '{}'",
        user.session_id
    ))
    .execute(conn)
    .await
    .unwrap();
}

#[actix_web::test]
async fn a_node_that_stops_hearing_about_ended_sessions_stops_trusting_its_cache() {
    use diesel_async::RunQueryDsl;
    let (app, alice) = seen_live().await;
    let mut conn = app.db.connect().await;
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    let listening = "SELECT pid FROM pg_stat_activity \
                     WHERE datname = current_database() AND query LIKE 'LISTEN%'";
    // The node's listening connection is cut...
    let cut: Vec<Pid> = diesel::sql_query(format!(
        "SELECT pid FROM ({listening}) l WHERE pg_terminate_backend(pid)"
    ))
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(cut.len(), 1);
    // ...and once the node noticed (it listens again, on a new connection; it stopped
    // trusting its cache when the old one went)...
    let mut relistened = false;
    for _ in 0..400 {
        let now: Vec<Pid> = diesel::sql_query(listening).load(&mut conn).await.unwrap();
        if now.iter().any(|p| p.pid != cut[0].pid) {
            relistened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(relistened, "the node did not listen again");
    // ...and the session ends without a word on the channel (as if the word was lost:
    // with triggers off for this connection).
    diesel::sql_query("SET session_replication_role = replica")
        .execute(&mut conn)
        .await
        .unwrap();
    revoke_by_hand(&mut conn, &alice).await;
    let me = app
        .get("/api/v1/users/@me", Some(&alice.access_token))
        .await;
    assert_eq!(me.status, Status::UNAUTHORIZED, "the cache was not trusted");
}

#[actix_web::test]
async fn a_session_ended_by_hand_in_the_database_is_refused_at_once() {
    let (app, alice) = seen_live().await;
    let mut conn = app.db.connect().await;
    revoke_by_hand(&mut conn, &alice).await;
    until_refused(&app, &alice.access_token).await;
}
