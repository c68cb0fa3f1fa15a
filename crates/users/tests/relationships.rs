//! Friends as relationships over REST, and what both sides see live on their gateway
//! sockets (two users, two devices each), with presence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use synctalk_testkit::{Method, Status, TestApp, TestUser, WsClient};

async fn put(
    app: &TestApp,
    me: &TestUser,
    other: &TestUser,
    body: Option<Value>,
) -> synctalk_testkit::Response {
    let path = format!("/api/v1/users/@me/relationships/{}", other.id);
    app.request(Method::PUT, &path, Some(&me.access_token), body)
        .await
}

async fn request(app: &TestApp, me: &TestUser, username: &str) -> synctalk_testkit::Response {
    app.post(
        "/api/v1/users/@me/relationships",
        Some(&me.access_token),
        json!({"username": username}),
    )
    .await
}

async fn relationships(app: &TestApp, me: &TestUser) -> Vec<(String, String)> {
    let res = app
        .get("/api/v1/users/@me/relationships", Some(&me.access_token))
        .await;
    assert_eq!(res.status, Status::OK);
    res.body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["user"]["username"].as_str().unwrap().to_owned(),
                r["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The next relationship event (skipping presence).
async fn relationship_event(ws: &mut WsClient) -> (String, Value) {
    loop {
        let frame = ws.frame().await;
        if let Some(name @ ("RELATIONSHIP_ADD" | "RELATIONSHIP_REMOVE")) = frame["t"].as_str() {
            assert!(
                frame["s"].is_i64(),
                "relationship events are replayable: {frame}"
            );
            return (name.to_owned(), frame["d"].clone());
        }
    }
}

/// The next PRESENCE_UPDATE about `user` (skipping other frames).
async fn presence_of(ws: &mut WsClient, user: &TestUser) -> String {
    loop {
        let frame = ws.frame().await;
        if frame["t"] == "PRESENCE_UPDATE" && frame["d"]["user_id"] == user.id.as_str() {
            return frame["d"]["status"].as_str().unwrap().to_owned();
        }
    }
}

#[actix_web::test]
async fn request_accept_unfriend_over_rest() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;

    assert_eq!(
        request(&app, &alice, "bob").await.status,
        Status::NO_CONTENT
    );
    assert_eq!(
        relationships(&app, &alice).await,
        [("bob".to_owned(), "outgoing".to_owned())]
    );
    assert_eq!(
        relationships(&app, &bob).await,
        [("alice".to_owned(), "incoming".to_owned())]
    );
    let again = request(&app, &alice, "bob").await;
    assert_eq!(again.status, Status::CONFLICT);
    assert_eq!(again.code(), "conflict");

    // Alice cannot accept her own request.
    assert_eq!(
        put(&app, &alice, &bob, None).await.status,
        Status::NOT_FOUND
    );
    assert_eq!(
        put(&app, &bob, &alice, None).await.status,
        Status::NO_CONTENT
    );
    assert_eq!(
        relationships(&app, &alice).await,
        [("bob".to_owned(), "friend".to_owned())]
    );
    assert_eq!(
        relationships(&app, &bob).await,
        [("alice".to_owned(), "friend".to_owned())]
    );
    let friends_again = request(&app, &bob, "alice").await;
    assert_eq!(friends_again.status, Status::CONFLICT);

    let path = format!("/api/v1/users/@me/relationships/{}", bob.id);
    assert_eq!(
        app.delete(&path, Some(&alice.access_token)).await.status,
        Status::NO_CONTENT
    );
    assert!(relationships(&app, &alice).await.is_empty());
    assert!(relationships(&app, &bob).await.is_empty());
    assert_eq!(
        app.delete(&path, Some(&alice.access_token)).await.status,
        Status::NOT_FOUND
    );
}

#[actix_web::test]
async fn crossing_requests_become_a_friendship_and_requests_can_be_declined() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    request(&app, &alice, "bob").await;
    // Bob asking back accepts.
    assert_eq!(
        request(&app, &bob, "alice").await.status,
        Status::NO_CONTENT
    );
    assert_eq!(
        relationships(&app, &alice).await,
        [("bob".to_owned(), "friend".to_owned())]
    );

    let carol = app.register("carol").await;
    request(&app, &carol, "alice").await;
    let path = format!("/api/v1/users/@me/relationships/{}", carol.id);
    assert_eq!(
        app.delete(&path, Some(&alice.access_token)).await.status,
        Status::NO_CONTENT,
        "decline"
    );
    assert!(relationships(&app, &carol).await.is_empty());
}

#[actix_web::test]
async fn blocking_stops_requests_and_unblocking_allows_them() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    request(&app, &alice, "bob").await;
    put(&app, &bob, &alice, None).await;

    assert_eq!(
        put(&app, &bob, &alice, Some(json!({"type": "blocked"})))
            .await
            .status,
        Status::NO_CONTENT
    );
    assert_eq!(
        relationships(&app, &bob).await,
        [("alice".to_owned(), "blocked".to_owned())]
    );
    assert!(
        relationships(&app, &alice).await.is_empty(),
        "the friendship is gone for her too"
    );
    let refused = request(&app, &alice, "bob").await;
    assert_eq!(refused.status, Status::FORBIDDEN);
    assert_eq!(refused.code(), "blocked");
    let own_block = request(&app, &bob, "alice").await;
    assert_eq!(own_block.status, Status::CONFLICT, "unblock first");

    let path = format!("/api/v1/users/@me/relationships/{}", alice.id);
    assert_eq!(
        app.delete(&path, Some(&bob.access_token)).await.status,
        Status::NO_CONTENT,
        "unblock"
    );
    assert_eq!(
        request(&app, &alice, "bob").await.status,
        Status::NO_CONTENT
    );
}

#[actix_web::test]
async fn relationship_routes_refuse_bad_input() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    assert_eq!(
        request(&app, &alice, "nobody").await.status,
        Status::NOT_FOUND
    );
    let myself = request(&app, &alice, "alice").await;
    // A well-formed request about yourself: the state forbids it, not the input.
    assert_eq!(myself.status, Status::CONFLICT);
    assert_eq!(myself.code(), "conflict");
    let malformed = app
        .raw(
            Method::POST,
            "/api/v1/users/@me/relationships",
            "application/json",
            b"{".to_vec(),
        )
        .await;
    assert_eq!(
        malformed.status,
        Status::UNAUTHORIZED,
        "no token comes first"
    );
    let bad_type = put(&app, &alice, &bob, Some(json!({"type": "incoming"}))).await;
    assert_eq!(bad_type.status, Status::UNPROCESSABLE_ENTITY);
    let bad_type = put(&app, &alice, &bob, Some(json!({"type": "enemy"}))).await;
    assert_eq!(bad_type.status, Status::UNPROCESSABLE_ENTITY);
    let unknown = app
        .request(
            Method::PUT,
            &format!("/api/v1/users/@me/relationships/{}", uuid::Uuid::now_v7()),
            Some(&alice.access_token),
            None,
        )
        .await;
    assert_eq!(unknown.status, Status::NOT_FOUND);
    let not_an_id = app
        .request(
            Method::PUT,
            "/api/v1/users/@me/relationships/x",
            Some(&alice.access_token),
            None,
        )
        .await;
    assert_eq!(not_an_id.status, Status::NOT_FOUND);
    assert_eq!(
        app.get("/api/v1/users/@me/relationships", None)
            .await
            .status,
        Status::UNAUTHORIZED
    );
    assert!(
        relationships(&app, &alice).await.is_empty(),
        "nothing changed"
    );
    assert!(relationships(&app, &bob).await.is_empty());
}

#[actix_web::test]
async fn both_sides_see_relationship_changes_live_on_every_device() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut alice_devices = vec![
        app.gateway("/gateway/users", &alice.access_token).await.0,
        app.gateway("/gateway/users", &alice.access_token).await.0,
    ];
    let mut bob_devices = vec![
        app.gateway("/gateway/users", &bob.access_token).await.0,
        app.gateway("/gateway?domains=users", &bob.access_token)
            .await
            .0,
    ];

    request(&app, &alice, "bob").await;
    for ws in &mut alice_devices {
        let (name, d) = relationship_event(ws).await;
        assert_eq!(
            (name.as_str(), d["type"].as_str(), d["id"].as_str()),
            ("RELATIONSHIP_ADD", Some("outgoing"), Some(bob.id.as_str()))
        );
        assert_eq!(d["user"]["username"], "bob");
    }
    for ws in &mut bob_devices {
        let (name, d) = relationship_event(ws).await;
        assert_eq!(
            (name.as_str(), d["type"].as_str(), d["id"].as_str()),
            (
                "RELATIONSHIP_ADD",
                Some("incoming"),
                Some(alice.id.as_str())
            )
        );
    }
    put(&app, &bob, &alice, None).await;
    for ws in alice_devices.iter_mut().chain(bob_devices.iter_mut()) {
        let (name, d) = relationship_event(ws).await;
        assert_eq!(
            (name.as_str(), d["type"].as_str()),
            ("RELATIONSHIP_ADD", Some("friend"))
        );
    }
    app.delete(
        &format!("/api/v1/users/@me/relationships/{}", alice.id),
        Some(&bob.access_token),
    )
    .await;
    for ws in alice_devices.iter_mut() {
        let (name, d) = relationship_event(ws).await;
        assert_eq!(
            (name.as_str(), d),
            (
                "RELATIONSHIP_REMOVE",
                json!({"id": bob.id, "type": "friend"})
            )
        );
    }
    for ws in bob_devices.iter_mut() {
        let (name, d) = relationship_event(ws).await;
        assert_eq!(
            (name.as_str(), d),
            (
                "RELATIONSHIP_REMOVE",
                json!({"id": alice.id, "type": "friend"})
            )
        );
    }
}

#[actix_web::test]
async fn presence_is_aggregated_over_devices_and_shown_to_friends_only() {
    let app = TestApp::spawn_with(|s| s.presence_grace_ms = 300).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let eve = app.register("eve").await;
    request(&app, &alice, "bob").await;
    put(&app, &bob, &alice, None).await;

    let (mut bob_phone, _) = app.gateway("/gateway/users", &bob.access_token).await;
    let (mut eve_ws, _) = app.gateway("/gateway/users", &eve.access_token).await;

    // Alice's first device: online. Her second: no change.
    let (mut laptop, _) = app.gateway("/gateway/users", &alice.access_token).await;
    assert_eq!(presence_of(&mut bob_phone, &alice).await, "online");
    let (mut phone, ready) = app.gateway("/gateway/users", &alice.access_token).await;
    let bob_presence = ready["presences"].as_array().unwrap();
    assert_eq!(
        bob_presence,
        &vec![json!({"user_id": bob.id, "status": "online"})],
        "READY has friends' presences"
    );

    // dnd on one device wins.
    assert_eq!(
        laptop
            .request("PRESENCE", "1", json!({"status": "dnd"}))
            .await["ok"],
        true
    );
    assert_eq!(presence_of(&mut bob_phone, &alice).await, "dnd");
    assert_eq!(
        phone
            .request("PRESENCE", "2", json!({"status": "idle"}))
            .await["ok"],
        true
    );
    // Closing the dnd device leaves the idle one.
    laptop.close().await;
    assert_eq!(presence_of(&mut bob_phone, &alice).await, "idle");
    // A quick drop and resume within the grace changes nothing...
    let (reconnected, _) = app.gateway("/gateway/users", &alice.access_token).await;
    drop(phone);
    actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    // ...and the last socket going makes her offline after the grace.
    reconnected.close().await;
    let mut seen = Vec::new();
    loop {
        let status = presence_of(&mut bob_phone, &alice).await;
        seen.push(status.clone());
        if status == "offline" {
            break;
        }
    }
    assert!(
        seen.iter().all(|s| s == "online" || s == "offline"),
        "{seen:?}"
    );

    // Eve, no friend, saw none of it.
    while let Some(received) = eve_ws.recv_within(Duration::from_millis(300)).await {
        if let synctalk_testkit::Received::Frame(frame) = received {
            assert_ne!(
                frame["d"]["user_id"],
                alice.id.as_str(),
                "eve saw alice's presence: {frame}"
            );
        }
    }
}

#[actix_web::test]
async fn logging_out_the_last_session_makes_you_offline() {
    let app = TestApp::spawn_with(|s| s.presence_grace_ms = 200).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    request(&app, &alice, "bob").await;
    put(&app, &bob, &alice, None).await;
    let (mut bob_ws, _) = app.gateway("/gateway/users", &bob.access_token).await;
    let (mut alice_ws, _) = app.gateway("/gateway/users", &alice.access_token).await;
    assert_eq!(presence_of(&mut bob_ws, &alice).await, "online");
    app.post("/api/v1/auth/logout", Some(&alice.access_token), json!({}))
        .await;
    assert_eq!(alice_ws.closed().await, Some(4004));
    assert_eq!(presence_of(&mut bob_ws, &alice).await, "offline");
}

#[actix_web::test]
async fn profile_changes_reach_friends_without_the_email() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    request(&app, &alice, "bob").await;
    put(&app, &bob, &alice, None).await;
    let (mut bob_ws, _) = app.gateway("/gateway/users", &bob.access_token).await;
    let (mut alice_ws, _) = app.gateway("/gateway/users", &alice.access_token).await;
    app.patch(
        "/api/v1/users/@me",
        Some(&alice.access_token),
        json!({"display_name": "Alice"}),
    )
    .await;
    let to_bob = bob_ws.dispatch("USER_UPDATE").await;
    assert_eq!(to_bob["d"]["display_name"], "Alice");
    assert!(to_bob["d"].get("email").is_none(), "{to_bob}");
    let to_alice = alice_ws.dispatch("USER_UPDATE").await;
    assert_eq!(to_alice["d"]["email"], "alice@example.com");
}

#[actix_web::test]
async fn new_friends_learn_each_others_presence_at_once() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let (mut alice_ws, _) = app.gateway("/gateway/users", &alice.access_token).await;
    let (mut bob_ws, _) = app.gateway("/gateway/users", &bob.access_token).await;
    request(&app, &alice, "bob").await;
    assert_eq!(
        put(&app, &bob, &alice, None).await.status,
        Status::NO_CONTENT
    );
    assert_eq!(presence_of(&mut bob_ws, &alice).await, "online");
    assert_eq!(presence_of(&mut alice_ws, &bob).await, "online");
}

#[actix_web::test]
async fn a_deleted_friend_is_gone_from_ready_relationships_and_presences() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    request(&app, &alice, "bob").await;
    assert_eq!(
        put(&app, &bob, &alice, None).await.status,
        Status::NO_CONTENT
    );
    // Bob online, then gone for good.
    let (_bob_ws, _) = app.gateway("/gateway/users", &bob.access_token).await;
    let (_, ready) = app.gateway("/gateway/users", &alice.access_token).await;
    assert!(
        ready["presences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["user_id"] == bob.id.as_str()),
        "a friend's presence is in READY: {ready}"
    );
    let deleted = app
        .delete("/api/v1/users/@me", Some(&bob.access_token))
        .await;
    assert_eq!(deleted.status, Status::NO_CONTENT);
    let (_, ready) = app.gateway("/gateway/users", &alice.access_token).await;
    assert_eq!(ready["presences"], json!([]), "{ready}");
    assert_eq!(ready["relationships"], json!([]), "{ready}");
}

#[actix_web::test]
async fn a_null_body_accepts_like_an_empty_one() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    request(&app, &alice, "bob").await;
    let accepted = put(&app, &bob, &alice, Some(Value::Null)).await;
    assert_eq!(accepted.status, Status::NO_CONTENT, "{}", accepted.text);
    assert_eq!(
        relationships(&app, &alice).await,
        [("bob".to_owned(), "friend".to_owned())]
    );
}
