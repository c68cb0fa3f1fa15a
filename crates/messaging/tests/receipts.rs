//! Delivery and read receipts in DMs and group DMs: delivered when a socket of the
//! member was sent the message (live or on resume), read when they ack it or a later
//! one; MESSAGE_RECEIPT to the channel; none in guild channels.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use synctalk_testkit::{Status, TestApp, TestUser};

const QUIET: Duration = Duration::from_millis(400);

async fn receipts(app: &TestApp, who: &TestUser, channel: &str, message: &str) -> Value {
    let res = app
        .get(
            &format!("/api/v1/channels/{channel}/messages/{message}/receipts"),
            Some(&who.access_token),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    res.body
}

fn of<'a>(list: &'a Value, user: &TestUser) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r["user_id"] == user.id.as_str())
        .unwrap_or_else(|| panic!("no receipt of {} in {list}", user.username))
}

#[actix_web::test]
async fn group_dm_messages_are_delivered_to_sockets_and_read_by_acks() {
    let app = TestApp::spawn().await;
    let (a, b, c) = (
        app.register("alice").await,
        app.register("bob").await,
        app.register("carol").await,
    );
    let group = app.open_group_dm(&a, &[&b, &c]).await;
    let (mut a_ws, _) = app.gateway("/gateway/messaging", &a.access_token).await;
    let (mut b_ws, b_ready) = app.gateway("/gateway/messaging", &b.access_token).await;

    // Bob is connected, Carol is not.
    let first = app.send_message(&a, &group, "hi both").await;
    let created = b_ws.dispatch("MESSAGE_CREATE").await;
    assert_eq!(created["d"]["id"], first.as_str());
    let receipt = a_ws.next_of(&["MESSAGE_RECEIPT"]).await;
    assert_eq!(receipt["d"]["user_id"], b.id.as_str(), "{receipt}");
    assert_eq!(receipt["d"]["message_id"], first.as_str());
    assert_eq!(receipt["d"]["channel_id"], group.as_str());
    assert!(receipt["d"]["delivered_at"].is_string());
    assert_eq!(receipt["d"]["read_at"], Value::Null);
    let list = receipts(&app, &a, &group, &first).await;
    assert_eq!(
        list.as_array().unwrap().len(),
        2,
        "the author has none: {list}"
    );
    assert!(of(&list, &b)["delivered_at"].is_string());
    assert_eq!(
        of(&list, &c)["delivered_at"],
        Value::Null,
        "no socket of Carol's"
    );
    assert_eq!(of(&list, &c)["read_at"], Value::Null);
    // Delivered once: a second socket of Bob's changes nothing.
    let (b2, _) = app.gateway("/gateway/messaging", &b.access_token).await;
    a_ws.none_of(&["MESSAGE_RECEIPT"], QUIET).await;
    b2.close().await;

    // Carol reads it without a socket: read implies delivered.
    let res = app
        .post(
            &format!("/api/v1/channels/{group}/messages/{first}/ack"),
            Some(&c.access_token),
            json!({}),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    let read = a_ws.next_of(&["MESSAGE_RECEIPT"]).await;
    assert_eq!(read["d"]["user_id"], c.id.as_str());
    assert!(read["d"]["read_at"].is_string());
    assert!(read["d"]["delivered_at"].is_string());
    let list = receipts(&app, &b, &group, &first).await;
    assert!(of(&list, &c)["read_at"].is_string());

    // Bob drops; what he misses is delivered when he resumes.
    let seq = created["s"].as_i64().unwrap();
    let session = b_ready["session_id"].as_str().unwrap().to_owned();
    drop(b_ws);
    app.until_offline(&b).await;
    let second = app.send_message(&a, &group, "are you there?").await;
    a_ws.none_of(&["MESSAGE_RECEIPT"], QUIET).await;
    let mut resumed = app.ws("/gateway/messaging").await;
    assert_eq!(resumed.frame().await["op"], 10);
    resumed
        .send(json!({"op": 6, "d": {"token": b.access_token, "session_id": session, "seq": seq}}))
        .await;
    let replayed = resumed.next_of(&["MESSAGE_CREATE"]).await;
    assert_eq!(replayed["d"]["id"], second.as_str());
    let receipt = a_ws.next_of(&["MESSAGE_RECEIPT"]).await;
    assert_eq!(receipt["d"]["user_id"], b.id.as_str());
    assert_eq!(receipt["d"]["message_id"], second.as_str());

    // Bob acks the newest: both read, one event naming the newest.
    let res = app
        .post(
            &format!("/api/v1/channels/{group}/messages/{second}/ack"),
            Some(&b.access_token),
            json!({}),
        )
        .await;
    assert_eq!(res.status, Status::OK);
    let read = a_ws.next_of(&["MESSAGE_RECEIPT"]).await;
    assert_eq!(read["d"]["user_id"], b.id.as_str());
    assert_eq!(read["d"]["message_id"], second.as_str());
    for message in [&first, &second] {
        let list = receipts(&app, &a, &group, message).await;
        assert!(of(&list, &b)["read_at"].is_string(), "{list}");
    }
    // Acking again, or an older message, reads nothing new.
    for message in [&second, &first] {
        let res = app
            .post(
                &format!("/api/v1/channels/{group}/messages/{message}/ack"),
                Some(&b.access_token),
                json!({}),
            )
            .await;
        assert_eq!(res.status, Status::OK);
    }
    a_ws.none_of(&["MESSAGE_RECEIPT"], QUIET).await;

    // Strangers see nothing of them.
    let stranger = app.register("stranger").await;
    let res = app
        .get(
            &format!("/api/v1/channels/{group}/messages/{first}/receipts"),
            Some(&stranger.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NOT_FOUND);
    let res = app
        .get(
            &format!(
                "/api/v1/channels/{group}/messages/{}/receipts",
                uuid::Uuid::now_v7()
            ),
            Some(&a.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NOT_FOUND);
}

#[actix_web::test]
async fn guild_channels_keep_no_receipts() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let member = app.register("member").await;
    let (_, general) = app.guild_with(&owner, &[&member]).await;
    let (mut owner_ws, _) = app.gateway("/gateway/messaging", &owner.access_token).await;
    let (mut member_ws, _) = app
        .gateway("/gateway/messaging", &member.access_token)
        .await;
    let id = app.send_message(&owner, &general, "hello guild").await;
    member_ws.dispatch("MESSAGE_CREATE").await;
    owner_ws.dispatch("MESSAGE_CREATE").await;
    let res = app
        .post(
            &format!("/api/v1/channels/{general}/messages/{id}/ack"),
            Some(&member.access_token),
            json!({}),
        )
        .await;
    assert_eq!(res.status, Status::OK);
    owner_ws.none_of(&["MESSAGE_RECEIPT"], QUIET).await;
    assert_eq!(receipts(&app, &owner, &general, &id).await, json!([]));
}

#[actix_web::test]
async fn a_delivery_on_another_node_is_a_delivery() {
    let nodes = TestApp::cluster(2, |_| {}).await;
    let (one, two) = (&nodes[0], &nodes[1]);
    let a = one.register("alice").await;
    let b = one.register("bob").await;
    let dm = one.open_dm(&a, &b).await;
    let (mut a_ws, _) = one.gateway("/gateway/messaging", &a.access_token).await;
    let (mut b_ws, _) = two.gateway("/gateway/messaging", &b.access_token).await;
    let id = one.send_message(&a, &dm, "across nodes").await;
    assert_eq!(
        b_ws.dispatch("MESSAGE_CREATE").await["d"]["id"],
        id.as_str()
    );
    let receipt = a_ws.next_of(&["MESSAGE_RECEIPT"]).await;
    assert_eq!(receipt["d"]["user_id"], b.id.as_str());
    assert_eq!(receipt["d"]["message_id"], id.as_str());
    let list = receipts(two, &a, &dm, &id).await;
    assert!(of(&list, &b)["delivered_at"].is_string());
}

#[actix_web::test]
async fn a_member_who_blocked_the_author_keeps_no_receipts_of_theirs() {
    let app = TestApp::spawn().await;
    let (a, b, c) = (
        app.register("alice").await,
        app.register("bob").await,
        app.register("carol").await,
    );
    let group = app.open_group_dm(&a, &[&b, &c]).await;
    let res = app
        .put(
            &format!("/api/v1/users/@me/relationships/{}", a.id),
            Some(&c.access_token),
            Some(json!({"type": "blocked"})),
        )
        .await;
    assert!(res.status.is_success(), "{}", res.text);
    let (_c_ws, _) = app.gateway("/gateway/messaging", &c.access_token).await;
    let id = app.send_message(&a, &group, "hello group").await;
    let list = receipts(&app, &a, &group, &id).await;
    let users: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        users,
        [b.id.as_str()],
        "Carol's online state is not Alice's to see"
    );
}
