//! Messages over REST and the gateway: send (with nonces), history, edit, delete,
//! replies, mentions, who may do what, and who hears of it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use synctalk_testkit::{Status, TestApp, TestUser};

const VIEW_CHANNEL: u64 = 1 << 10;
const SEND_MESSAGES: u64 = 1 << 11;
const QUIET: Duration = Duration::from_millis(400);

fn messages(channel: &str) -> String {
    format!("/api/v1/channels/{channel}/messages")
}

async fn send(app: &TestApp, who: &TestUser, channel: &str, body: Value) -> Value {
    let res = app
        .post(&messages(channel), Some(&who.access_token), body)
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    res.body
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn a_message_reaches_the_channels_readers_and_no_one_else() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (member, outsider) = (app.register("member").await, app.register("outsider").await);
    let (guild, general) = app.guild_with(&owner, &[&member]).await;
    let (mut member_ws, ready) = app
        .gateway("/gateway/messaging", &member.access_token)
        .await;
    assert!(ready["session_id"].is_string(), "{ready}");
    let (mut outsider_ws, _) = app
        .gateway("/gateway/messaging", &outsider.access_token)
        .await;
    let (mut guilds_ws, _) = app.gateway("/gateway/guilds", &member.access_token).await;

    let sent = send(&app, &owner, &general, json!({"content": "  hello  "})).await;
    assert_eq!(sent["content"], "hello", "trimmed");
    assert_eq!(sent["channel_id"], general.as_str());
    assert_eq!(sent["guild_id"], guild.as_str());
    assert_eq!(sent["author"]["id"], owner.id.as_str());
    assert!(
        sent["author"].get("email").is_none(),
        "no email on the wire"
    );
    assert_eq!(sent["edited_at"], Value::Null);
    assert_eq!(sent["reply_to"], Value::Null);
    assert_eq!(sent["pinned"], false);
    assert_eq!(sent["reactions"], json!([]));
    let event = member_ws.dispatch("MESSAGE_CREATE").await;
    assert_eq!(event["d"]["id"], sent["id"]);
    assert_eq!(event["d"]["content"], "hello");
    assert!(event["s"].is_i64(), "replayed: it has a sequence number");
    outsider_ws.none_of(&["MESSAGE_CREATE"], QUIET).await;
    guilds_ws.none_of(&["MESSAGE_CREATE"], QUIET).await;

    // Outsiders learn nothing, not even that the channel exists.
    for res in [
        app.get(&messages(&general), Some(&outsider.access_token))
            .await,
        app.post(
            &messages(&general),
            Some(&outsider.access_token),
            json!({"content": "hi"}),
        )
        .await,
        app.get(
            &format!("{}/{}", messages(&general), sent["id"].as_str().unwrap()),
            Some(&outsider.access_token),
        )
        .await,
    ] {
        assert_eq!(res.status, Status::NOT_FOUND, "{}", res.text);
    }
    let res = app.get(&messages(&general), None).await;
    assert_eq!(res.status, Status::UNAUTHORIZED);

    let list = app
        .get(&messages(&general), Some(&member.access_token))
        .await;
    assert_eq!(list.status, Status::OK);
    assert_eq!(
        ids(&list.body),
        vec![sent["id"].as_str().unwrap().to_owned()]
    );
    let one = app
        .get(
            &format!("{}/{}", messages(&general), sent["id"].as_str().unwrap()),
            Some(&member.access_token),
        )
        .await;
    assert_eq!(one.status, Status::OK);
    assert_eq!(one.body["content"], "hello");
}

#[actix_web::test]
async fn bad_sends_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (_, general) = app.guild_with(&owner, &[]).await;
    let token = Some(owner.access_token.as_str());
    let long = "x".repeat(4001);
    for bad in [
        json!({"content": ""}),
        json!({"content": "   \n "}),
        json!({"content": long}),
        json!({"content": "nul \u{0000} here"}),
        json!({"content": "bell \u{0007}"}),
        json!({"content": "x", "nonce": ""}),
        json!({"content": "x", "nonce": "n".repeat(65)}),
        json!({"content": "x", "extra": 1}),
        json!({"content": 5}),
        json!({}),
    ] {
        let res = app.post(&messages(&general), token, bad.clone()).await;
        assert_eq!(
            res.status,
            Status::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            res.text
        );
        assert_eq!(res.code(), "validation_failed");
    }
    let res = app
        .post(
            &messages(&general),
            token,
            json!({"content": "x", "reply_to": uuid::Uuid::now_v7()}),
        )
        .await;
    assert_eq!(res.status, Status::NOT_FOUND, "{}", res.text);
    let res = app
        .post(
            &messages(&general),
            token,
            json!({"content": "x", "attachment_ids": [uuid::Uuid::now_v7()]}),
        )
        .await;
    assert_eq!(res.status, Status::NOT_FOUND, "{}", res.text);
    // 4000 characters (not bytes) is fine.
    send(&app, &owner, &general, json!({"content": "é".repeat(4000)})).await;
    let list = app.get(&messages(&general), token).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1, "only the good one");
    for bad in [
        "limit=0",
        "limit=101",
        "before=x",
        "around=1",
        "after={id}x",
    ] {
        let query = bad.replace("{id}", &uuid::Uuid::now_v7().to_string());
        let res = app
            .get(&format!("{}?{query}", messages(&general)), token)
            .await;
        assert_eq!(res.status, Status::BAD_REQUEST, "{query}: {}", res.text);
        assert_eq!(res.code(), "invalid_query");
    }
}

#[actix_web::test]
async fn a_retried_send_with_its_nonce_makes_nothing_new_over_rest_or_the_gateway() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let member = app.register("member").await;
    let (_, general) = app.guild_with(&owner, &[&member]).await;
    let (mut member_ws, _) = app
        .gateway("/gateway/messaging", &member.access_token)
        .await;
    let token = Some(owner.access_token.as_str());
    let body = json!({"content": "once", "nonce": "n-1"});
    let first = app.post(&messages(&general), token, body.clone()).await;
    assert_eq!(first.status, Status::CREATED);
    assert_eq!(first.body["nonce"], "n-1");
    let again = app.post(&messages(&general), token, body.clone()).await;
    assert_eq!(again.status, Status::OK, "{}", again.text);
    assert_eq!(again.body["id"], first.body["id"]);
    let (mut owner_ws, _) = app.gateway("/gateway/messaging", &owner.access_token).await;
    let reply = owner_ws
        .request(
            "SEND_MESSAGE",
            "r1",
            json!({"channel_id": general, "content": "once", "nonce": "n-1"}),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"]["id"], first.body["id"]);

    // Ten sends of one nonce at once: one message.
    let path = messages(&general);
    let racing =
        (0..10).map(|_| app.post(&path, token, json!({"content": "race", "nonce": "n-2"})));
    let answers = futures_util::future::join_all(racing).await;
    let created = answers
        .iter()
        .filter(|r| r.status == Status::CREATED)
        .count();
    assert_eq!(created, 1, "exactly one made");
    assert!(answers.iter().all(|r| r.status.is_success()));
    let id = &answers[0].body["id"];
    assert!(answers.iter().all(|r| &r.body["id"] == id));

    // The same nonce from someone else, or in another channel, is another message.
    let other = app
        .post(
            &messages(&general),
            Some(&member.access_token),
            json!({"content": "mine", "nonce": "n-1"}),
        )
        .await;
    assert_eq!(other.status, Status::CREATED);
    let list = app.get(&messages(&general), token).await;
    assert_eq!(list.body.as_array().unwrap().len(), 3, "{}", list.text);
    let mut creates = 0;
    while member_ws.recv_within(QUIET).await.is_some_and(|_| true) {
        creates += 1;
    }
    assert_eq!(creates, 3, "one MESSAGE_CREATE per message made");
}

/// Over the gateway, a command's RESPONSE comes before the events it caused, on the
/// socket that sent it (the events wait while the command runs).
#[actix_web::test]
async fn a_gateway_send_is_answered_before_its_message_create_arrives() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (_, general) = app.guild_with(&owner, &[]).await;
    let (mut ws, _) = app.gateway("/gateway/messaging", &owner.access_token).await;
    for n in 0..30 {
        let nonce = format!("r{n}");
        ws.send(json!({"op": 12, "t": "SEND_MESSAGE", "nonce": nonce,
            "d": {"channel_id": general, "content": format!("m{n}")}}))
            .await;
        let mut order = Vec::new();
        while order.len() < 2 {
            let frame = ws.frame().await;
            match (frame["op"].as_u64(), frame["t"].as_str()) {
                (Some(13), _) => {
                    assert_eq!(frame["nonce"], nonce.as_str());
                    assert_eq!(frame["d"]["ok"], true, "{frame}");
                    order.push("RESPONSE");
                }
                (Some(0), Some("MESSAGE_CREATE")) => {
                    assert_eq!(frame["d"]["content"], format!("m{n}"));
                    order.push("MESSAGE_CREATE");
                }
                _ => {}
            }
        }
        assert_eq!(order, ["RESPONSE", "MESSAGE_CREATE"], "send {n}");
    }
}

#[actix_web::test]
async fn history_pages_by_cursor_newest_first_without_deleted_messages() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (_, general) = app.guild_with(&owner, &[]).await;
    let token = Some(owner.access_token.as_str());
    let mut sent = Vec::new();
    for i in 0..9 {
        sent.push(
            send(&app, &owner, &general, json!({"content": format!("m{i}")})).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // m8 is deleted: it never appears.
    let res = app
        .delete(&format!("{}/{}", messages(&general), sent[8]), token)
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let app = &app;
    let page = |query: String| {
        let path = format!("{}?{query}", messages(&general));
        async move { ids(&app.get(&path, token).await.body) }
    };
    let rev = |range: std::ops::Range<usize>| -> Vec<String> {
        sent[range].iter().rev().cloned().collect()
    };
    assert_eq!(page("limit=3".into()).await, rev(5..8));
    assert_eq!(page(format!("limit=3&before={}", sent[5])).await, rev(2..5));
    assert_eq!(page(format!("limit=3&after={}", sent[0])).await, rev(1..4));
    assert_eq!(page(format!("limit=3&around={}", sent[4])).await, rev(3..6));
    assert_eq!(page(format!("limit=4&around={}", sent[4])).await, rev(2..6));
    assert_eq!(
        page(format!("before={}", sent[0])).await,
        Vec::<String>::new()
    );
    assert_eq!(
        page(format!("after={}", sent[7])).await,
        Vec::<String>::new()
    );
    // Cursors combine as bounds.
    assert_eq!(
        page(format!("limit=2&after={}&before={}", sent[1], sent[6])).await,
        rev(2..4)
    );
    assert_eq!(
        page(format!("after={}&before={}", sent[1], sent[6])).await,
        rev(2..6)
    );
    assert_eq!(
        page(format!(
            "limit=6&around={}&before={}&after={}",
            sent[4], sent[6], sent[2]
        ))
        .await,
        rev(3..6)
    );
    assert_eq!(page(String::new()).await, rev(0..8));
    let res = app
        .get(&format!("{}/{}", messages(&general), sent[8]), token)
        .await;
    assert_eq!(res.status, Status::NOT_FOUND);
}

#[actix_web::test]
async fn only_the_author_edits_and_the_author_or_a_moderator_deletes() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (a, b) = (app.register("aaa").await, app.register("bbb").await);
    let (_, general) = app.guild_with(&owner, &[&a, &b]).await;
    let (mut b_ws, _) = app.gateway("/gateway/messaging", &b.access_token).await;
    let original = send(&app, &a, &general, json!({"content": "first"})).await;
    b_ws.dispatch("MESSAGE_CREATE").await;
    let path = format!(
        "{}/{}",
        messages(&general),
        original["id"].as_str().unwrap()
    );
    let reply = send(
        &app,
        &b,
        &general,
        json!({"content": "answer", "reply_to": original["id"]}),
    )
    .await;
    b_ws.dispatch("MESSAGE_CREATE").await;
    assert_eq!(reply["reply_to"]["id"], original["id"]);
    assert_eq!(reply["reply_to"]["content"], "first");
    assert_eq!(reply["reply_to"]["author_id"], a.id.as_str());
    assert_eq!(reply["reply_to"]["deleted"], false);

    let res = app
        .patch(&path, Some(&b.access_token), json!({"content": "hijack"}))
        .await;
    assert_eq!(res.status, Status::FORBIDDEN);
    let res = app
        .patch(
            &path,
            Some(&owner.access_token),
            json!({"content": "hijack"}),
        )
        .await;
    assert_eq!(res.status, Status::FORBIDDEN, "not even the owner edits");
    let res = app
        .patch(&path, Some(&a.access_token), json!({"content": ""}))
        .await;
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY);
    let res = app
        .patch(
            &path,
            Some(&a.access_token),
            json!({"content": "first, edited"}),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    assert_eq!(res.body["content"], "first, edited");
    assert!(res.body["edited_at"].is_string());
    let event = b_ws.dispatch("MESSAGE_UPDATE").await;
    assert_eq!(event["d"]["content"], "first, edited");

    let res = app.delete(&path, Some(&b.access_token)).await;
    assert_eq!(res.status, Status::FORBIDDEN);
    assert_eq!(res.code(), "missing_permissions");
    let res = app.delete(&path, Some(&owner.access_token)).await;
    assert_eq!(res.status, Status::NO_CONTENT, "the owner moderates");
    let event = b_ws.dispatch("MESSAGE_DELETE").await;
    assert_eq!(event["d"]["id"], original["id"]);
    assert_eq!(event["d"]["channel_id"], general.as_str());
    assert_eq!(
        app.get(&path, Some(&a.access_token)).await.status,
        Status::NOT_FOUND
    );
    assert_eq!(
        app.delete(&path, Some(&a.access_token)).await.status,
        Status::NOT_FOUND
    );
    assert_eq!(
        app.patch(&path, Some(&a.access_token), json!({"content": "x"}))
            .await
            .status,
        Status::NOT_FOUND
    );
    // The reply still says what it answered: a deleted message, without its text.
    let res = app
        .get(
            &format!("{}/{}", messages(&general), reply["id"].as_str().unwrap()),
            Some(&a.access_token),
        )
        .await;
    assert_eq!(res.body["reply_to"]["deleted"], true);
    assert_eq!(res.body["reply_to"]["content"], "");
}

#[actix_web::test]
async fn mentions_keep_only_who_and_what_is_there() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (member, outsider) = (app.register("member").await, app.register("outsider").await);
    let (guild, general) = app.guild_with(&owner, &[&member]).await;
    let role = app
        .post(
            &format!("/api/v1/guilds/{guild}/roles"),
            Some(&owner.access_token),
            json!({"name": "mods"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let content = format!(
        "<@{}> <@{}> <@&{role}> <@&{guild}> <@&{}> @everyone",
        member.id,
        outsider.id,
        uuid::Uuid::now_v7()
    );
    let by_member = send(&app, &member, &general, json!({"content": content})).await;
    assert_eq!(
        by_member["mentions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec![member.id.as_str()],
        "the outsider is not in the guild"
    );
    assert_eq!(
        by_member["mention_roles"],
        json!([]),
        "no MENTION_EVERYONE: a role mention is text"
    );
    assert_eq!(by_member["mention_everyone"], false, "no MENTION_EVERYONE");
    let by_owner = send(&app, &owner, &general, json!({"content": content})).await;
    assert_eq!(
        by_owner["mention_roles"],
        json!([role]),
        "not @everyone's id"
    );
    assert_eq!(by_owner["mention_everyone"], true);
    assert_eq!(
        by_owner["content"],
        content.as_str(),
        "the text is kept as written"
    );
}

#[actix_web::test]
async fn permissions_decide_who_reads_and_writes_and_losing_sight_ends_the_events() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let member = app.register("member").await;
    let (guild, general) = app.guild_with(&owner, &[&member]).await;
    let (mut ws, _) = app
        .gateway("/gateway/messaging", &member.access_token)
        .await;
    let overwrite = format!("/api/v1/channels/{general}/permissions/{guild}");

    // @everyone may read but not write in general.
    let res = app
        .put(
            &overwrite,
            Some(&owner.access_token),
            Some(json!({"type": "role", "deny": SEND_MESSAGES.to_string()})),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    let res = app
        .post(
            &messages(&general),
            Some(&member.access_token),
            json!({"content": "hi"}),
        )
        .await;
    assert_eq!(res.status, Status::FORBIDDEN);
    assert_eq!(res.code(), "missing_permissions");
    send(&app, &owner, &general, json!({"content": "read only"})).await;
    assert_eq!(
        ws.dispatch("MESSAGE_CREATE").await["d"]["content"],
        "read only"
    );

    // Then not even see it: no more of its messages, and its history is 404.
    let res = app
        .put(
            &overwrite,
            Some(&owner.access_token),
            Some(json!({"type": "role", "deny": (SEND_MESSAGES | VIEW_CHANNEL).to_string()})),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    send(&app, &owner, &general, json!({"content": "secret"})).await;
    ws.none_of(&["MESSAGE_CREATE"], QUIET).await;
    let res = app
        .get(&messages(&general), Some(&member.access_token))
        .await;
    assert_eq!(res.status, Status::NOT_FOUND);

    // A channel made after READY that everyone sees is heard at once.
    let res = app
        .post(
            &format!("/api/v1/guilds/{guild}/channels"),
            Some(&owner.access_token),
            json!({"name": "new"}),
        )
        .await;
    let fresh = res.body["id"].as_str().unwrap().to_owned();
    send(&app, &owner, &fresh, json!({"content": "in the new one"})).await;
    let event = ws.dispatch("MESSAGE_CREATE").await;
    assert_eq!(event["d"]["channel_id"], fresh.as_str());
    assert_eq!(event["d"]["content"], "in the new one");

    // A category holds no messages.
    let res = app
        .post(
            &format!("/api/v1/guilds/{guild}/channels"),
            Some(&owner.access_token),
            json!({"name": "cat", "kind": "category"}),
        )
        .await;
    let category = res.body["id"].as_str().unwrap().to_owned();
    let res = app
        .post(
            &messages(&category),
            Some(&owner.access_token),
            json!({"content": "x"}),
        )
        .await;
    assert_eq!(res.status, Status::CONFLICT, "{}", res.text);

    // Kicked: nothing more at all.
    let res = app
        .delete(
            &format!("/api/v1/guilds/{guild}/members/{}", member.id),
            Some(&owner.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    send(&app, &owner, &fresh, json!({"content": "after the kick"})).await;
    ws.none_of(&["MESSAGE_CREATE"], QUIET).await;
}

#[actix_web::test]
async fn direct_messages_reach_both_and_a_block_stops_them() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.register("aaa").await, app.register("bbb").await);
    let (mut b_ws, _) = app.gateway("/gateway/messaging", &b.access_token).await;
    let res = app
        .post(
            "/api/v1/users/@me/channels",
            Some(&a.access_token),
            json!({"recipient_id": b.id}),
        )
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    let dm = res.body["id"].as_str().unwrap().to_owned();
    let sent = send(
        &app,
        &a,
        &dm,
        json!({"content": format!("hey <@{}> @everyone", b.id)}),
    )
    .await;
    assert_eq!(sent["guild_id"], Value::Null);
    assert_eq!(sent["mentions"][0]["id"], b.id.as_str());
    let event = b_ws.dispatch("MESSAGE_CREATE").await;
    assert_eq!(event["d"]["id"], sent["id"]);
    let res = app
        .post(
            &messages(&dm),
            Some(&b.access_token),
            json!({"content": "hi back"}),
        )
        .await;
    assert_eq!(res.status, Status::CREATED);

    // b blocks a: neither can write any more; both still read.
    let res = app
        .put(
            &format!("/api/v1/users/@me/relationships/{}", a.id),
            Some(&b.access_token),
            Some(json!({"type": "blocked"})),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT, "{}", res.text);
    for who in [&a, &b] {
        let res = app
            .post(
                &messages(&dm),
                Some(&who.access_token),
                json!({"content": "x"}),
            )
            .await;
        assert_eq!(res.status, Status::FORBIDDEN, "{}", res.text);
        assert_eq!(res.code(), "blocked");
        let res = app.get(&messages(&dm), Some(&who.access_token)).await;
        assert_eq!(res.body.as_array().unwrap().len(), 2);
    }
    // Someone else's DM is 404.
    let c = app.register("ccc").await;
    let res = app.get(&messages(&dm), Some(&c.access_token)).await;
    assert_eq!(res.status, Status::NOT_FOUND);
}

#[actix_web::test]
async fn a_message_sent_on_one_node_reaches_a_socket_on_another() {
    let nodes = TestApp::cluster(2, |_| {}).await;
    let owner = nodes[0].register("owner").await;
    let member = nodes[0].register("member").await;
    let (_, general) = nodes[0].guild_with(&owner, &[&member]).await;
    let (mut ws, _) = nodes[1]
        .gateway("/gateway/messaging", &member.access_token)
        .await;
    let sent = send(&nodes[0], &owner, &general, json!({"content": "across"})).await;
    let event = ws.dispatch("MESSAGE_CREATE").await;
    assert_eq!(event["d"]["id"], sent["id"]);
    // And a send over the gateway on the second node reaches the first's readers.
    let (mut owner_ws, _) = nodes[0]
        .gateway("/gateway/messaging", &owner.access_token)
        .await;
    let reply = ws
        .request(
            "SEND_MESSAGE",
            "x",
            json!({"channel_id": general, "content": "back"}),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let event = owner_ws.dispatch("MESSAGE_CREATE").await;
    assert_eq!(event["d"]["content"], "back");
}

#[actix_web::test]
async fn reactions_count_once_per_user_and_emoji_and_need_add_reactions_to_start() {
    const ADD_REACTIONS: u64 = 1 << 6;
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (a, outsider) = (app.register("aaa").await, app.register("outsider").await);
    let (guild, general) = app.guild_with(&owner, &[&a]).await;
    let (mut ws, _) = app.gateway("/gateway/messaging", &a.access_token).await;
    let message = send(&app, &owner, &general, json!({"content": "react"})).await;
    ws.dispatch("MESSAGE_CREATE").await;
    let id = message["id"].as_str().unwrap();
    let thumbs = "%F0%9F%91%8D"; // 👍
    let mine = |emoji: &str| format!("{}/{id}/reactions/{emoji}/@me", messages(&general));

    // @everyone cannot start a reaction, only join one.
    let res = app
        .put(
            &format!("/api/v1/channels/{general}/permissions/{guild}"),
            Some(&owner.access_token),
            Some(json!({"type": "role", "deny": ADD_REACTIONS.to_string()})),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    let res = app.put(&mine(thumbs), Some(&a.access_token), None).await;
    assert_eq!(res.status, Status::FORBIDDEN, "{}", res.text);
    assert_eq!(res.code(), "missing_permissions");
    for _ in 0..2 {
        let res = app
            .put(&mine(thumbs), Some(&owner.access_token), None)
            .await;
        assert_eq!(res.status, Status::NO_CONTENT, "{}", res.text);
    }
    let event = ws.dispatch("MESSAGE_REACTION_ADD").await;
    assert_eq!(event["d"]["emoji"], "👍");
    assert_eq!(event["d"]["user_id"], owner.id.as_str());
    assert_eq!(event["d"]["message_id"], id);
    ws.none_of(&["MESSAGE_REACTION_ADD"], QUIET).await;
    let res = app.put(&mine(thumbs), Some(&a.access_token), None).await;
    assert_eq!(
        res.status,
        Status::NO_CONTENT,
        "joining one needs no ADD_REACTIONS"
    );
    ws.dispatch("MESSAGE_REACTION_ADD").await;

    let get = |who: &TestUser| {
        let path = format!("{}/{id}", messages(&general));
        let token = who.access_token.clone();
        let app = &app;
        async move { app.get(&path, Some(&token)).await.body }
    };
    assert_eq!(
        get(&a).await["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": true}])
    );
    let res = app.delete(&mine(thumbs), Some(&a.access_token)).await;
    assert_eq!(res.status, Status::NO_CONTENT);
    assert_eq!(
        ws.dispatch("MESSAGE_REACTION_REMOVE").await["d"]["user_id"],
        a.id.as_str()
    );
    let res = app.delete(&mine(thumbs), Some(&a.access_token)).await;
    assert_eq!(res.status, Status::NO_CONTENT, "idempotent");
    ws.none_of(&["MESSAGE_REACTION_REMOVE"], QUIET).await;
    assert_eq!(
        get(&a).await["reactions"],
        json!([{"emoji": "👍", "count": 1, "me": false}])
    );
    let list = app
        .get(
            &format!("{}/{id}/reactions/{thumbs}", messages(&general)),
            Some(&a.access_token),
        )
        .await;
    assert_eq!(list.status, Status::OK);
    assert_eq!(list.body[0]["id"], owner.id.as_str());
    assert_eq!(list.body.as_array().unwrap().len(), 1);

    for bad in ["x", "%F0%9F", "%F0%9F%91%8D%F0%9F%91%8D", "%3Cscript%3E"] {
        let res = app.put(&mine(bad), Some(&owner.access_token), None).await;
        assert_eq!(res.status, Status::NOT_FOUND, "{bad}: {}", res.text);
    }
    let res = app
        .put(&mine(thumbs), Some(&outsider.access_token), None)
        .await;
    assert_eq!(res.status, Status::NOT_FOUND);
}

#[actix_web::test]
async fn pins_need_manage_messages_in_a_guild_and_are_capped() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let member = app.register("member").await;
    let (_, general) = app.guild_with(&owner, &[&member]).await;
    let (mut ws, _) = app
        .gateway("/gateway/messaging", &member.access_token)
        .await;
    let mut ids = Vec::new();
    for i in 0..51 {
        ids.push(
            send(&app, &owner, &general, json!({"content": format!("p{i}")})).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let pin = |id: &str| format!("/api/v1/channels/{general}/pins/{id}");
    let res = app
        .put(&pin(&ids[0]), Some(&member.access_token), None)
        .await;
    assert_eq!(res.status, Status::FORBIDDEN);
    assert_eq!(res.code(), "missing_permissions");
    let res = app
        .put(&pin(&ids[0]), Some(&owner.access_token), None)
        .await;
    assert_eq!(res.status, Status::NO_CONTENT, "{}", res.text);
    let update = ws.next_of(&["MESSAGE_UPDATE"]).await;
    assert_eq!(update["d"]["pinned"], true);
    let pins = ws.next_of(&["CHANNEL_PINS_UPDATE"]).await;
    assert_eq!(pins["d"]["channel_id"], general.as_str());
    assert!(pins["d"]["last_pin_timestamp"].is_string());
    for id in &ids[1..50] {
        let res = app.put(&pin(id), Some(&owner.access_token), None).await;
        assert_eq!(res.status, Status::NO_CONTENT);
    }
    let res = app
        .put(&pin(&ids[50]), Some(&owner.access_token), None)
        .await;
    assert_eq!(res.status, Status::CONFLICT, "51st pin");
    let res = app
        .put(&pin(&ids[0]), Some(&owner.access_token), None)
        .await;
    assert_eq!(res.status, Status::NO_CONTENT, "pinning again is fine");
    let list = app
        .get(
            &format!("/api/v1/channels/{general}/pins"),
            Some(&member.access_token),
        )
        .await;
    assert_eq!(list.body.as_array().unwrap().len(), 50);
    assert_eq!(list.body[0]["id"], ids[49].as_str(), "latest pinned first");
    // A deleted message leaves the pins.
    let res = app
        .delete(
            &format!("{}/{}", messages(&general), ids[49]),
            Some(&owner.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let res = app
        .put(&pin(&ids[50]), Some(&owner.access_token), None)
        .await;
    assert_eq!(res.status, Status::NO_CONTENT, "room again");
    let res = app.delete(&pin(&ids[50]), Some(&owner.access_token)).await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let list = app
        .get(
            &format!("/api/v1/channels/{general}/pins"),
            Some(&member.access_token),
        )
        .await;
    assert_eq!(list.body.as_array().unwrap().len(), 49);

    // In a DM, either member pins.
    let dm = app
        .post(
            "/api/v1/users/@me/channels",
            Some(&member.access_token),
            json!({"recipient_id": owner.id}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = send(&app, &owner, &dm, json!({"content": "pin me"})).await;
    let res = app
        .put(
            &format!(
                "/api/v1/channels/{dm}/pins/{}",
                sent["id"].as_str().unwrap()
            ),
            Some(&member.access_token),
            None,
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT, "{}", res.text);
}

#[actix_web::test]
async fn typing_reaches_the_other_readers_once_per_renewal_window() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (member, outsider) = (app.register("member").await, app.register("outsider").await);
    let (guild, general) = app.guild_with(&owner, &[&member]).await;
    let (mut member_ws, _) = app
        .gateway("/gateway/messaging", &member.access_token)
        .await;
    let (mut owner_ws, _) = app.gateway("/gateway/messaging", &owner.access_token).await;
    let typing = format!("/api/v1/channels/{general}/typing");

    let res = app
        .post(&typing, Some(&owner.access_token), json!({}))
        .await;
    assert_eq!(res.status, Status::NO_CONTENT, "{}", res.text);
    let event = member_ws.dispatch("TYPING_START").await;
    assert_eq!(event["s"], Value::Null, "ephemeral");
    assert_eq!(event["d"]["user_id"], owner.id.as_str());
    assert_eq!(event["d"]["channel_id"], general.as_str());
    assert_eq!(event["d"]["guild_id"], guild.as_str());
    let at =
        chrono::DateTime::parse_from_rfc3339(event["d"]["timestamp"].as_str().unwrap()).unwrap();
    let until =
        chrono::DateTime::parse_from_rfc3339(event["d"]["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((until - at).num_seconds(), 8);
    owner_ws.none_of(&["TYPING_START"], QUIET).await;

    // A renewal right away is not sent again; after a message, typing starts afresh.
    let reply = owner_ws
        .request("TYPING", "t1", json!({"channel_id": general}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"], Value::Null);
    member_ws.none_of(&["TYPING_START"], QUIET).await;
    send(&app, &owner, &general, json!({"content": "done"})).await;
    member_ws.dispatch("MESSAGE_CREATE").await;
    let res = app
        .post(&typing, Some(&owner.access_token), json!({}))
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    member_ws.dispatch("TYPING_START").await;

    let res = app
        .post(&typing, Some(&outsider.access_token), json!({}))
        .await;
    assert_eq!(res.status, Status::NOT_FOUND);
    let reply = member_ws
        .request("TYPING", "t2", json!({"channel_id": uuid::Uuid::now_v7()}))
        .await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "not_found");
}

/// Makes a role "crew" in `guild` and gives it to `member`: its id.
async fn crew_role(app: &TestApp, owner: &TestUser, guild: &str, member: &TestUser) -> String {
    let role = app
        .post(
            &format!("/api/v1/guilds/{guild}/roles"),
            Some(&owner.access_token),
            json!({"name": "crew"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .put(
            &format!("/api/v1/guilds/{guild}/members/{}/roles/{role}", member.id),
            Some(&owner.access_token),
            None,
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT, "{}", res.text);
    role
}

/// A role mention counts (and pages) only from an author who may mention everyone:
/// from anyone else it is text, in the message and in its readers' mention counts.
#[actix_web::test]
async fn a_role_mention_without_mention_everyone_counts_for_nobody() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let member = app.register("member").await;
    let other = app.register("other").await;
    let (guild, general) = app.guild_with(&owner, &[&member, &other]).await;
    let role = crew_role(&app, &owner, &guild, &member).await;
    let mention_count = async || {
        let res = app
            .get("/api/v1/users/@me/read-states", Some(&member.access_token))
            .await;
        assert_eq!(res.status, Status::OK, "{}", res.text);
        let state = res
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["channel_id"] == general.as_str())
            .cloned()
            .unwrap();
        (
            state["unread_count"].clone(),
            state["mention_count"].clone(),
        )
    };

    let sent = send(
        &app,
        &other,
        &general,
        json!({"content": format!("crew <@&{role}>")}),
    )
    .await;
    assert_eq!(sent["mention_roles"], json!([]));
    assert_eq!(mention_count().await, (json!(1), json!(0)));
    let sent = send(
        &app,
        &owner,
        &general,
        json!({"content": format!("crew <@&{role}>")}),
    )
    .await;
    assert_eq!(sent["mention_roles"], json!([role]));
    assert_eq!(mention_count().await, (json!(2), json!(1)));
}

#[actix_web::test]
async fn read_states_count_unread_and_mentions_and_acks_reach_every_device() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let member = app.register("member").await;
    let (guild, general) = app.guild_with(&owner, &[&member]).await;
    let role = crew_role(&app, &owner, &guild, &member).await;
    let mut ids = Vec::new();
    for content in [
        "plain".to_owned(),
        format!("hi <@{}>", member.id),
        format!("crew <@&{role}>"),
        "@everyone look".to_owned(),
        "plain again".to_owned(),
    ] {
        ids.push(
            send(&app, &owner, &general, json!({"content": content})).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    send(&app, &member, &general, json!({"content": "my own"})).await;
    let state_of = |states: &Value| {
        states
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["channel_id"] == general.as_str())
            .cloned()
            .unwrap()
    };
    let res = app
        .get("/api/v1/users/@me/read-states", Some(&member.access_token))
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    let state = state_of(&res.body);
    assert_eq!(state["last_read_message_id"], Value::Null);
    assert_eq!(state["unread_count"], 5, "not my own message");
    assert_eq!(state["mention_count"], 3, "by name, by role, @everyone");

    let (mut other_device, ready) = app
        .gateway("/gateway/messaging", &member.access_token)
        .await;
    assert_eq!(
        state_of(&ready["read_states"]),
        state,
        "READY carries the same"
    );
    let res = app
        .post(
            &format!("{}/{}/ack", messages(&general), ids[2]),
            Some(&member.access_token),
            json!({}),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    assert_eq!(res.body["last_read_message_id"], ids[2].as_str());
    assert_eq!(res.body["unread_count"], 2);
    assert_eq!(res.body["mention_count"], 1);
    let event = other_device.dispatch("MESSAGE_ACK").await;
    assert_eq!(event["d"], res.body);

    // Over the gateway; a deleted message no longer counts.
    let reply = other_device
        .request(
            "ACK",
            "a1",
            json!({"channel_id": general, "message_id": ids[3]}),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    other_device.dispatch("MESSAGE_ACK").await;
    let res = app
        .delete(
            &format!("{}/{}", messages(&general), ids[4]),
            Some(&owner.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let res = app
        .get("/api/v1/users/@me/read-states", Some(&member.access_token))
        .await;
    let state = state_of(&res.body);
    assert_eq!(state["unread_count"], 0);
    assert_eq!(state["mention_count"], 0);

    // Acking what is not there, or where you cannot read, changes nothing.
    let res = app
        .post(
            &format!("{}/{}/ack", messages(&general), uuid::Uuid::now_v7()),
            Some(&member.access_token),
            json!({}),
        )
        .await;
    assert_eq!(res.status, Status::NOT_FOUND);
    let outsider = app.register("outsider").await;
    let res = app
        .post(
            &format!("{}/{}/ack", messages(&general), ids[0]),
            Some(&outsider.access_token),
            json!({}),
        )
        .await;
    assert_eq!(res.status, Status::NOT_FOUND);
    let res = app
        .get(
            "/api/v1/users/@me/read-states",
            Some(&outsider.access_token),
        )
        .await;
    assert_eq!(res.body, json!([]));
}

#[actix_web::test]
async fn a_review_found_holes_each_closed() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.register("aaa").await, app.register("bbb").await);
    let dm = app
        .post(
            "/api/v1/users/@me/channels",
            Some(&a.access_token),
            json!({"recipient_id": b.id}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine = send(
        &app,
        &b,
        &dm,
        json!({"content": "before the block", "nonce": "x1"}),
    )
    .await;
    let path = format!("{}/{}", messages(&dm), mine["id"].as_str().unwrap());

    // Content of nothing visible is blank.
    for blank in ["\u{200b}", "\u{2800}\u{3164}", " \u{feff} ", "\u{fe0f}"] {
        let res = app
            .post(
                &messages(&dm),
                Some(&a.access_token),
                json!({"content": blank}),
            )
            .await;
        assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY, "{blank:?}");
    }

    // A blocked user can neither edit into the DM nor react in it.
    let res = app
        .put(
            &format!("/api/v1/users/@me/relationships/{}", b.id),
            Some(&a.access_token),
            Some(json!({"type": "blocked"})),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let res = app
        .patch(&path, Some(&b.access_token), json!({"content": "sneaky"}))
        .await;
    assert_eq!(res.status, Status::FORBIDDEN, "{}", res.text);
    assert_eq!(res.code(), "blocked");
    let res = app
        .put(
            &format!("{path}/reactions/%F0%9F%91%8D/@me"),
            Some(&b.access_token),
            None,
        )
        .await;
    assert_eq!(res.status, Status::FORBIDDEN, "{}", res.text);

    // A retried send of a message deleted since is 404, not the deleted text.
    assert_eq!(
        app.delete(&path, Some(&b.access_token)).await.status,
        Status::NO_CONTENT
    );
    let res = app
        .post(
            &messages(&dm),
            Some(&b.access_token),
            json!({"content": "before the block", "nonce": "x1"}),
        )
        .await;
    assert_eq!(res.status, Status::NOT_FOUND, "{}", res.text);

    // At most 20 different emoji on one message.
    let owner = app.register("owner").await;
    let (_, general) = app.guild_with(&owner, &[]).await;
    let message = send(&app, &owner, &general, json!({"content": "many"})).await;
    let base = format!("{}/{}", messages(&general), message["id"].as_str().unwrap());
    let emoji = [
        "😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆", "😉", "😊", "😋", "😎", "😍", "😘", "🥰",
        "😗", "😙", "😚", "🙂", "🤗", "🤩",
    ];
    for (i, e) in emoji.iter().enumerate() {
        let encoded: String = e.bytes().map(|b| format!("%{b:02X}")).collect();
        let res = app
            .put(
                &format!("{base}/reactions/{encoded}/@me"),
                Some(&owner.access_token),
                None,
            )
            .await;
        let expected = if i < 20 {
            Status::NO_CONTENT
        } else {
            Status::CONFLICT
        };
        assert_eq!(res.status, expected, "emoji {i}: {}", res.text);
    }

    // Deleting a pinned message tells readers the pins changed.
    let (mut ws, _) = app.gateway("/gateway/messaging", &owner.access_token).await;
    let res = app
        .put(
            &format!(
                "/api/v1/channels/{general}/pins/{}",
                message["id"].as_str().unwrap()
            ),
            Some(&owner.access_token),
            None,
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    ws.next_of(&["CHANNEL_PINS_UPDATE"]).await;
    assert_eq!(
        app.delete(&base, Some(&owner.access_token)).await.status,
        Status::NO_CONTENT
    );
    ws.next_of(&["MESSAGE_DELETE"]).await;
    let pins = ws.next_of(&["CHANNEL_PINS_UPDATE"]).await;
    assert_eq!(pins["d"]["last_pin_timestamp"], Value::Null);
}

#[actix_web::test]
async fn search_finds_words_only_where_the_searcher_can_read() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (member, outsider) = (app.register("member").await, app.register("outsider").await);
    let (guild, general) = app.guild_with(&owner, &[&member]).await;
    let secret = app
        .post(
            &format!("/api/v1/guilds/{guild}/channels"),
            Some(&owner.access_token),
            json!({"name": "secret"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .put(
            &format!("/api/v1/channels/{secret}/permissions/{guild}"),
            Some(&owner.access_token),
            Some(json!({"type": "role", "deny": VIEW_CHANNEL.to_string()})),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    let first = send(
        &app,
        &owner,
        &general,
        json!({"content": "The rusty crab sings"}),
    )
    .await;
    send(&app, &member, &general, json!({"content": "a crab, again"})).await;
    send(
        &app,
        &owner,
        &secret,
        json!({"content": "secret crab plans"}),
    )
    .await;
    let gone = send(&app, &owner, &general, json!({"content": "crab to delete"})).await;
    let res = app
        .delete(
            &format!("{}/{}", messages(&general), gone["id"].as_str().unwrap()),
            Some(&owner.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let search = |path: String, who: &TestUser| {
        let token = who.access_token.clone();
        let app = &app;
        async move { app.get(&path, Some(&token)).await }
    };
    let contents = |res: &synctalk_testkit::Response| -> Vec<String> {
        res.body
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect()
    };
    let in_guild = search(
        format!("/api/v1/guilds/{guild}/messages/search?q=crab"),
        &member,
    )
    .await;
    assert_eq!(in_guild.status, Status::OK, "{}", in_guild.text);
    assert_eq!(
        contents(&in_guild),
        ["a crab, again", "The rusty crab sings"]
    );
    let by_owner = search(
        format!("/api/v1/guilds/{guild}/messages/search?q=crab"),
        &owner,
    )
    .await;
    assert_eq!(
        by_owner.body.as_array().unwrap().len(),
        3,
        "the owner sees secret"
    );
    let phrase = search(
        format!("{}/search?q=%22rusty%20crab%22", messages(&general)),
        &member,
    )
    .await;
    assert_eq!(contents(&phrase), ["The rusty crab sings"]);
    let from = search(
        format!(
            "{}/search?q=crab&author_id={}",
            messages(&general),
            owner.id
        ),
        &member,
    )
    .await;
    assert_eq!(contents(&from), ["The rusty crab sings"]);
    let page = search(
        format!("{}/search?q=crab&limit=1", messages(&general)),
        &member,
    )
    .await;
    assert_eq!(contents(&page), ["a crab, again"]);
    let next = search(
        format!(
            "{}/search?q=crab&limit=1&before={}",
            messages(&general),
            page.body[0]["id"].as_str().unwrap()
        ),
        &member,
    )
    .await;
    assert_eq!(next.body[0]["id"], first["id"]);
    let blank = search(format!("{}/search?q=%20%00", messages(&general)), &member).await;
    assert_eq!(blank.status, Status::OK);
    assert_eq!(blank.body, json!([]));
    for bad in [
        "",
        "q=",
        &format!("q={}", "x".repeat(201)),
        "q=crab&limit=0",
    ] {
        let res = search(format!("{}/search?{bad}", messages(&general)), &member).await;
        assert_eq!(res.status, Status::BAD_REQUEST, "{bad}: {}", res.text);
    }
    let res = search(format!("{}/search?q=crab", messages(&secret)), &member).await;
    assert_eq!(res.status, Status::NOT_FOUND);
    let res = search(
        format!("/api/v1/guilds/{guild}/messages/search?q=crab"),
        &outsider,
    )
    .await;
    assert_eq!(res.status, Status::NOT_FOUND);
}

#[actix_web::test]
async fn gateway_commands_share_the_users_rest_rate_limit() {
    let app = TestApp::spawn_with(|s| s.rate_limit_user_per_minute = 8).await;
    let owner = app.register("owner").await;
    // Three requests of the budget: the guild, its invite, its channels.
    let (_, general) = app.guild_with(&owner, &[]).await;
    let (mut ws, _) = app.gateway("/gateway/messaging", &owner.access_token).await;
    let mut ok = 0;
    let mut limited = 0;
    for i in 0..10 {
        let reply = ws
            .request(
                "SEND_MESSAGE",
                &format!("n{i}"),
                json!({"channel_id": general, "content": format!("m{i}")}),
            )
            .await;
        if reply["ok"] == true {
            ok += 1;
        } else {
            assert_eq!(reply["error"]["code"], "rate_limited", "{reply}");
            limited += 1;
        }
    }
    assert_eq!(ok, 5, "8 a minute, 3 spent over REST");
    assert_eq!(limited, 5);
    // And the other way round: REST is over the limit too.
    let res = app
        .post(
            &messages(&general),
            Some(&owner.access_token),
            json!({"content": "x"}),
        )
        .await;
    assert_eq!(res.status, Status::TOO_MANY_REQUESTS);
    let res = app
        .get(&messages(&general), Some(&owner.access_token))
        .await;
    assert_eq!(res.status, Status::TOO_MANY_REQUESTS);
}

/// Holds `channel`'s topic lock from outside (as a long send would) until dropped
/// through [`release`].
async fn hold_channel(app: &TestApp, channel: &str) -> diesel_async::AsyncPgConnection {
    hold_channels(app, &[channel]).await
}

/// [`hold_channel`] of several channels, on one connection. (A worker starts no
/// second batch into a channel its first is writing: two sends that keep both of its
/// send transactions waiting go to two held channels.)
async fn hold_channels(app: &TestApp, channels: &[&str]) -> diesel_async::AsyncPgConnection {
    use diesel_async::RunQueryDsl;
    let mut conn = app.db.connect().await;
    for channel in channels {
        diesel::sql_query("SELECT pg_advisory_lock(hashtextextended($1, 7307))")
            .bind::<diesel::sql_types::Text, _>(format!("channel:{channel}"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn
}

/// Waits until `n` transactions of this database wait for an advisory lock.
async fn wait_for_waiters(conn: &mut diesel_async::AsyncPgConnection, n: i64) {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    for _ in 0..400 {
        let waiting: N = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_locks \
             WHERE locktype = 'advisory' AND NOT granted AND database = \
                   (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .get_result(conn)
        .await
        .unwrap();
        if waiting.n >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} transactions came to wait for the lock");
}

/// Releases the channel once a send waits for it (and the sends behind it have had
/// time to queue).
async fn release(mut conn: diesel_async::AsyncPgConnection) {
    use diesel_async::RunQueryDsl;
    wait_for_waiters(&mut conn, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    diesel::sql_query("SELECT pg_advisory_unlock_all()")
        .execute(&mut conn)
        .await
        .unwrap();
}

/// Sends `first` and `second`, each once the one before waits for the channel `held`
/// holds (so each takes one of the worker's two send transactions), then `rest`, which
/// queue behind them and go as one batch; then releases the channel. The statuses, in
/// order.
async fn behind_two(
    app: &TestApp,
    [path, other]: [&str; 2],
    who: &TestUser,
    mut held: diesel_async::AsyncPgConnection,
    [first, second]: [&str; 2],
    rest: &[&str],
) -> Vec<u16> {
    let post_to =
        |path, content: &str| app.post(path, Some(&who.access_token), json!({"content": content}));
    let post = |content: &str| post_to(path, content);
    let (first, (second, rest)) = futures_util::future::join(post(first), async {
        wait_for_waiters(&mut held, 1).await;
        futures_util::future::join(post_to(other, second), async {
            wait_for_waiters(&mut held, 2).await;
            let rest = futures_util::future::join_all(rest.iter().map(|c| post(c)));
            futures_util::future::join(rest, release(held)).await.0
        })
        .await
    })
    .await;
    [&first, &second]
        .into_iter()
        .chain(&rest)
        .map(|a| a.status.as_u16())
        .collect()
}

/// How many transactions wrote the messages of `channel`.
async fn writers(app: &TestApp, channel: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let n: N = diesel::sql_query(
        "SELECT count(DISTINCT xmin::text) AS n FROM messages WHERE channel_id = $1::uuid",
    )
    .bind::<diesel::sql_types::Text, _>(channel)
    .get_result(&mut app.db.connect().await)
    .await
    .unwrap();
    n.n
}

#[actix_web::test]
async fn sends_that_wait_together_commit_together_and_each_gets_its_own_answer() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let mut members = Vec::new();
    for i in 0..4 {
        members.push(app.register(&format!("member{i}")).await);
    }
    let outsider = app.register("outsider").await;
    let joined: Vec<&TestUser> = members.iter().collect();
    let (_, general) = app.guild_with(&owner, &joined).await;
    let (mut ws, _) = app.gateway("/gateway/messaging", &owner.access_token).await;
    let path = messages(&general);
    // While a long transaction holds the channel, the sends queue on the worker;
    // then they go in one transaction.
    let held = hold_channel(&app, &general).await;
    let sends = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (
                m,
                json!({"content": format!("m{i}"), "nonce": format!("n{i}")}),
            )
        })
        .chain([(&outsider, json!({"content": "not mine to write"}))])
        .chain([(&members[0], json!({"content": "m0 again", "nonce": "n0"}))]);
    let (answers, ()) = futures_util::future::join(
        futures_util::future::join_all(
            sends.map(|(who, body)| app.post(&path, Some(&who.access_token), body)),
        ),
        release(held),
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!(statuses[1..5], [201, 201, 201, 404], "{answers:?}");
    // The two sends of nonce n0: whichever came first made the message.
    let mut pair = [statuses[0], statuses[5]];
    pair.sort_unstable();
    assert_eq!(pair, [200, 201], "{answers:?}");
    assert_eq!(
        answers[5].body["id"], answers[0].body["id"],
        "a retry finds the first"
    );
    let list = app.get(&path, Some(&owner.access_token)).await;
    assert_eq!(list.body.as_array().unwrap().len(), 4, "{}", list.text);
    assert!(
        writers(&app, &general).await < 4,
        "some of the sends shared a transaction"
    );
    // Their events come in id order, each once.
    let mut created = Vec::new();
    while created.len() < 4 {
        let frame = ws.dispatch("MESSAGE_CREATE").await;
        created.push(frame["d"]["id"].as_str().unwrap().to_owned());
    }
    let mut sorted = created.clone();
    sorted.sort();
    assert_eq!(created, sorted);
    assert!(ws.recv_within(QUIET).await.is_none(), "nothing more");
}

#[actix_web::test]
async fn a_batch_answers_every_kind_of_send_as_a_send_alone_would() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let member = app.register("member").await;
    let (friend, outsider) = (app.register("friend").await, app.register("outsider").await);
    let (guild, general) = app.guild_with(&owner, &[&member]).await;
    let channel = |name: &str, kind: &str| {
        let body = json!({"name": name, "kind": kind});
        let path = format!("/api/v1/guilds/{guild}/channels");
        let app = &app;
        let token = owner.access_token.clone();
        async move {
            let res = app.post(&path, Some(&token), body).await;
            assert_eq!(res.status, Status::CREATED, "{}", res.text);
            res.body["id"].as_str().unwrap().to_owned()
        }
    };
    let (other, quiet, followed) = (
        channel("other", "text").await,
        channel("quiet", "text").await,
        channel("followed", "text").await,
    );
    let category = channel("cat", "category").await;
    let side = channel("side", "text").await;
    let res = app
        .put(
            &format!("/api/v1/channels/{quiet}/permissions/{guild}"),
            Some(&owner.access_token),
            Some(json!({"type": "role", "deny": SEND_MESSAGES.to_string()})),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    let res = app
        .put(
            &format!("/api/v1/users/@me/notification-settings/{followed}"),
            Some(&owner.access_token),
            Some(json!({"level": "all"})),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    let dm = app.open_dm(&owner, &friend).await;
    let earlier = send(
        &app,
        &member,
        &other,
        json!({"content": "earlier", "nonce": "old"}),
    )
    .await;
    let (mut ws, _) = app.gateway("/gateway/messaging", &owner.access_token).await;
    let mention = format!("hey <@{}>", owner.id);
    let queued: Vec<(&TestUser, &str, Value)> = vec![
        (&member, &other, json!({"content": "plain"})),
        (&member, &other, json!({"content": "twice", "nonce": "x"})),
        (&member, &other, json!({"content": "twice", "nonce": "x"})),
        (&member, &other, json!({"content": "again", "nonce": "old"})),
        (&member, &category, json!({"content": "in a category"})),
        (&member, &quiet, json!({"content": "not allowed"})),
        (&outsider, &other, json!({"content": "not a member"})),
        (
            &member,
            &other,
            json!({"content": "a reply", "reply_to": earlier["id"]}),
        ),
        (&member, &other, json!({"content": mention})),
        (&member, &followed, json!({"content": "followed"})),
        (&owner, &dm, json!({"content": "direct"})),
        (
            &member,
            &general,
            json!({"content": "behind the held ones"}),
        ),
        // The same nonce on a reply (written on its own) and then on a plain send
        // (written with the others): the first is made, the second answers it.
        (
            &member,
            &other,
            json!({"content": "first y", "reply_to": earlier["id"], "nonce": "y"}),
        ),
        (
            &member,
            &other,
            json!({"content": "second y", "nonce": "y"}),
        ),
    ];
    // Two sends wait, on `general` and `side` (the worker's two send transactions);
    // the rest queue behind them and go as one batch.
    let mut held = hold_channels(&app, &[&general, &side]).await;
    let post = |(who, channel, body): &(&TestUser, &str, Value)| {
        let (path, token, body) = (messages(channel), who.access_token.clone(), body.clone());
        let app = &app;
        async move { app.post(&path, Some(&token), body).await }
    };
    let first = (&member, general.as_str(), json!({"content": "first"}));
    let second = (&member, side.as_str(), json!({"content": "second"}));
    let (_, (_, answers)) = futures_util::future::join(post(&first), async {
        wait_for_waiters(&mut held, 1).await;
        futures_util::future::join(post(&second), async {
            wait_for_waiters(&mut held, 2).await;
            let rest = futures_util::future::join_all(queued.iter().map(post));
            futures_util::future::join(rest, release(held)).await.0
        })
        .await
    })
    .await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!(
        statuses,
        [
            201, 201, 200, 200, 409, 403, 404, 201, 201, 201, 201, 201, 201, 200
        ],
        "{:?}",
        answers.iter().map(|a| &a.text).collect::<Vec<_>>()
    );
    assert_eq!(answers[13].body, answers[12].body, "the first with nonce y");
    assert_eq!(
        answers[2].body["id"], answers[1].body["id"],
        "the same nonce once"
    );
    assert_eq!(answers[3].body, earlier, "a retry answers the first");
    assert!(
        writers(&app, &other).await < 5,
        "the sends into `other` shared a transaction"
    );
    // Each answer is the message as a page shows it (author, guild, reply, mentions).
    let mut made = 0;
    for (answer, (_, channel, _)) in answers.iter().zip(&queued) {
        if answer.status != Status::CREATED {
            continue;
        }
        made += 1;
        let page = app.get(&messages(channel), Some(&owner.access_token)).await;
        let shown = page
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == answer.body["id"]);
        assert_eq!(shown, Some(&answer.body), "{}", page.text);
    }
    assert_eq!(answers[0].body["author"]["id"], member.id.as_str());
    assert_eq!(answers[0].body["guild_id"], guild.as_str());
    assert_eq!(answers[7].body["reply_to"]["id"], earlier["id"]);
    assert_eq!(answers[8].body["mentions"][0]["id"], owner.id.as_str());
    // One MESSAGE_CREATE for each message made, in id order in each channel.
    let mut created: Vec<(String, String)> = Vec::new();
    while let Some(synctalk_testkit::Received::Frame(frame)) = ws.recv_within(QUIET).await {
        if frame["t"] == "MESSAGE_CREATE" {
            let d = &frame["d"];
            created.push((
                d["channel_id"].as_str().unwrap().into(),
                d["id"].as_str().unwrap().into(),
            ));
        }
    }
    assert_eq!(created.len(), made + 2, "{created:?}");
    for (channel, _) in &created {
        let ids: Vec<&String> = created
            .iter()
            .filter(|(c, _)| c == channel)
            .map(|(_, id)| id)
            .collect();
        assert!(ids.is_sorted(), "{ids:?}");
    }
}

#[actix_web::test]
async fn a_send_that_fails_in_a_shared_transaction_fails_alone() {
    use diesel_async::RunQueryDsl;
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let member = app.register("member").await;
    let (guild, general) = app.guild_with(&owner, &[&member]).await;
    // A fault for one message only: the database refuses its row.
    let mut conn = app.db.connect().await;
    diesel::sql_query(
        "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.content = 'boom' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON messages \
         FOR EACH ROW EXECUTE FUNCTION refuse_boom()",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let res = app
        .post(
            &format!("/api/v1/guilds/{guild}/channels"),
            Some(&owner.access_token),
            json!({"name": "side"}),
        )
        .await;
    let side = res.body["id"].as_str().unwrap().to_owned();
    let (mut ws, _) = app.gateway("/gateway/messaging", &owner.access_token).await;
    let path = messages(&general);
    let held = hold_channels(&app, &[&general, &side]).await;
    // "boom" goes in the batch behind the first two: its failure rolls the batch back
    // and the others are made alone.
    let statuses = behind_two(
        &app,
        [&path, &messages(&side)],
        &member,
        held,
        ["a", "b"],
        &["c", "d", "boom", "e"],
    )
    .await;
    assert_eq!(statuses, [201, 201, 201, 201, 500, 201]);
    let list = app.get(&path, Some(&owner.access_token)).await;
    let mut stored: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    stored.sort_unstable();
    assert_eq!(stored, ["a", "c", "d", "e"]);
    let list = app.get(&messages(&side), Some(&owner.access_token)).await;
    assert_eq!(list.body[0]["content"], "b", "{}", list.text);
    let mut created = 0;
    while let Some(synctalk_testkit::Received::Frame(frame)) = ws.recv_within(QUIET).await {
        if frame["t"] == "MESSAGE_CREATE" {
            created += 1;
        }
    }
    assert_eq!(created, 5, "one MESSAGE_CREATE per message made");
}

#[actix_web::test]
async fn a_batch_takes_ids_above_a_newest_id_from_a_clock_ahead() {
    use diesel_async::RunQueryDsl;
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (_, general) = app.guild_with(&owner, &[]).await;
    // A message whose id is far ahead of this node's clock (written by a node whose
    // clock ran fast): new ids must still sort after it.
    diesel::sql_query(
        "INSERT INTO messages (channel_id, id, author_id, content) \
         SELECT $1::uuid, ('ff' || substr(md5(random()::text), 3, 10) || '7' || \
                substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid, \
                $2::uuid, 'from the future'",
    )
    .bind::<diesel::sql_types::Text, _>(&general)
    .bind::<diesel::sql_types::Text, _>(&owner.id)
    .execute(&mut app.db.connect().await)
    .await
    .unwrap();
    let path = messages(&general);
    let list = app.get(&path, Some(&owner.access_token)).await;
    let ahead = list.body[0]["id"].as_str().unwrap().to_owned();
    let held = hold_channel(&app, &general).await;
    let (answers, ()) = futures_util::future::join(
        futures_util::future::join_all((0..5).map(|i| {
            app.post(
                &path,
                Some(&owner.access_token),
                json!({"content": format!("m{i}")}),
            )
        })),
        release(held),
    )
    .await;
    assert!(
        answers.iter().all(|a| a.status == Status::CREATED),
        "{answers:?}"
    );
    let mut made: Vec<String> = answers
        .iter()
        .map(|a| a.body["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(made.iter().all(|id| *id > ahead), "{made:?} after {ahead}");
    made.sort();
    made.dedup();
    assert_eq!(made.len(), 5, "distinct ids");
    assert!(
        writers(&app, &general).await < 6,
        "the sends after the first shared a transaction"
    );
}

#[actix_web::test]
async fn a_batch_waits_for_a_held_channel_only_so_long() {
    use diesel_async::RunQueryDsl;
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (guild, general) = app.guild_with(&owner, &[]).await;
    let mut made = Vec::new();
    for name in ["blocked", "free", "side"] {
        let res = app
            .post(
                &format!("/api/v1/guilds/{guild}/channels"),
                Some(&owner.access_token),
                json!({"name": name}),
            )
            .await;
        made.push(res.body["id"].as_str().unwrap().to_owned());
    }
    let (blocked, free, side) = (&made[0], &made[1], &made[2]);
    let (client, token) = (&app, owner.access_token.as_str());
    let post = |channel: &str, content: &str| {
        let (path, body) = (messages(channel), json!({"content": content}));
        async move { client.post(&path, Some(token), body).await }
    };
    // Two sends wait, on `general` and `side` (the worker's two send transactions);
    // behind them a send to `blocked`, which a slow transaction holds, and one to
    // `free` queue as one batch.
    let mut gate = hold_channels(&app, &[&general, side]).await;
    let mut slow = hold_channel(&app, blocked).await;
    let (first, (second, (to_blocked, to_free))) =
        futures_util::future::join(post(&general, "g1"), async {
            wait_for_waiters(&mut gate, 1).await;
            futures_util::future::join(post(side, "g2"), async {
                wait_for_waiters(&mut gate, 2).await;
                let to_free = async {
                    // It is answered while `blocked` is still held: the batch gave up
                    // waiting for it and its sends went alone.
                    let answer =
                        tokio::time::timeout(Duration::from_secs(7), post(free, "f")).await;
                    diesel::sql_query("SELECT pg_advisory_unlock_all()")
                        .execute(&mut slow)
                        .await
                        .unwrap();
                    answer
                };
                let queued = futures_util::future::join(post(blocked, "b"), to_free);
                futures_util::future::join(queued, release(gate)).await.0
            })
            .await
        })
        .await;
    let to_free = to_free.expect("the send to a free channel waited for a held one");
    let statuses: Vec<u16> = [&first, &second, &to_blocked, &to_free]
        .iter()
        .map(|a| a.status.as_u16())
        .collect();
    assert_eq!(statuses, [201, 201, 201, 201]);
}

/// Runs `sql` on the app's database behind its back (no event, no outbox row).
async fn behind_its_back(app: &TestApp, sql: &str) {
    use diesel_async::RunQueryDsl;
    let mut conn = app.db.connect().await;
    diesel::sql_query(sql).execute(&mut conn).await.unwrap();
}

async fn page(app: &TestApp, who: &TestUser, channel: &str, query: &str) -> Value {
    let res = app
        .get(
            &format!("{}?{query}", messages(channel)),
            Some(&who.access_token),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    res.body
}

#[actix_web::test]
async fn a_page_comes_from_memory_only_while_the_database_confirms_it() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let member = app.register("member").await;
    let (guild, general) = app.guild_with(&owner, &[&member]).await;
    let mut sent = Vec::new();
    for n in 1..=3 {
        sent.push(send(&app, &owner, &general, json!({"content": format!("m{n}")})).await);
    }
    let [m1, m2, m3] = [0, 1, 2].map(|i| sent[i]["id"].as_str().unwrap().to_owned());
    let first = page(&app, &member, &general, "limit=50").await;
    assert_eq!(ids(&first), [m3.clone(), m2.clone(), m1.clone()]);

    // A change no event announces is not seen: the page is the node's.
    behind_its_back(
        &app,
        &format!("UPDATE messages SET content = 'behind' WHERE id = '{m3}'"),
    )
    .await;
    let again = page(&app, &member, &general, "limit=50").await;
    assert_eq!(again, first, "the second page comes from memory");
    assert_eq!(
        page(&app, &member, &general, "limit=2").await,
        json!(first.as_array().unwrap()[..2])
    );

    // Every change through the API is seen at once.
    let res = app
        .patch(
            &format!("{}/{m2}", messages(&general)),
            Some(&owner.access_token),
            json!({"content": "m2 edited"}),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    let list = page(&app, &member, &general, "limit=50").await;
    assert_eq!(list[1]["content"], "m2 edited");
    assert_eq!(list[0]["content"], "behind", "read from the table again");

    // The author's profile, shown on each message.
    let res = app
        .patch(
            "/api/v1/users/@me",
            Some(&owner.access_token),
            json!({"display_name": "Boss"}),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    let list = page(&app, &member, &general, "limit=50").await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|m| m["author"]["display_name"] == "Boss"),
        "{list}"
    );

    // Reactions: counts for all, `me` for each reader.
    let thumbs = format!("{}/{m1}/reactions/%F0%9F%91%8D/@me", messages(&general));
    let res = app.put(&thumbs, Some(&member.access_token), None).await;
    assert_eq!(res.status, Status::NO_CONTENT, "{}", res.text);
    for _ in 0..2 {
        let mine = page(&app, &member, &general, "limit=50").await;
        assert_eq!(
            mine[2]["reactions"],
            json!([{"emoji": "👍", "count": 1, "me": true}])
        );
        let theirs = page(&app, &owner, &general, "limit=50").await;
        assert_eq!(
            theirs[2]["reactions"],
            json!([{"emoji": "👍", "count": 1, "me": false}])
        );
    }
    // A new message, then a deleted one.
    let m4 = send(&app, &member, &general, json!({"content": "m4"})).await;
    assert_eq!(
        page(&app, &owner, &general, "limit=1").await[0]["id"],
        m4["id"]
    );
    let res = app
        .delete(
            &format!("{}/{m1}", messages(&general)),
            Some(&owner.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT, "{}", res.text);
    let list = page(&app, &owner, &general, "limit=50").await;
    assert_eq!(ids(&list), [m4["id"].as_str().unwrap(), &m3, &m2]);

    // Who may read is asked every time: kicked, the member reads nothing more.
    page(&app, &member, &general, "limit=50").await;
    let res = app
        .delete(
            &format!("/api/v1/guilds/{guild}/members/{}", member.id),
            Some(&owner.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT, "{}", res.text);
    let res = app
        .get(&messages(&general), Some(&member.access_token))
        .await;
    assert_eq!(res.status, Status::NOT_FOUND, "{}", res.text);
}

#[actix_web::test]
async fn pages_from_memory_and_from_the_table_agree_at_every_cursor() {
    let db = std::sync::Arc::new(synctalk_testkit::TestDb::migrated().await);
    let app = TestApp::spawn_on(db.clone(), |_| {}).await;
    let table = TestApp::spawn_on(db.clone(), |s| s.message_cache_mb = 0).await;
    // A cache of 1 MiB keeps tails of 16 KiB: 15 or so of these messages.
    let small = TestApp::spawn_on(db, |s| s.message_cache_mb = 1).await;
    let owner = app.register("owner").await;
    let (_, general) = app.guild_with(&owner, &[]).await;
    let mut newest_first = Vec::new();
    for n in 0..130 {
        let long = format!("n{n} {}", "x".repeat(900));
        newest_first.push(app.send_message(&owner, &general, &long).await);
    }
    newest_first.reverse();
    for node in [&app, &small] {
        // Fill the tail, then walk back by `before` with every size of page.
        page(node, &owner, &general, "limit=1").await;
        for limit in [1, 7, 50, 100] {
            let mut walked = Vec::new();
            let mut query = format!("limit={limit}");
            loop {
                let mine = page(node, &owner, &general, &query).await;
                let theirs = page(&table, &owner, &general, &query).await;
                assert_eq!(mine, theirs, "{query}");
                let got = ids(&mine);
                let Some(last) = got.last().cloned() else {
                    break;
                };
                walked.extend(got);
                query = format!("limit={limit}&before={last}");
            }
            assert_eq!(walked, newest_first, "limit {limit}");
        }
    }
    // Cursors that are no message's id, and the other cursors.
    let unknown = "00000000-0000-7000-8000-000000000000";
    for query in [
        format!("before={unknown}"),
        "before=ffffffff-ffff-7fff-bfff-ffffffffffff&limit=3".to_owned(),
        format!("after={}&limit=5", newest_first[10]),
        format!("around={}&limit=4", newest_first[60]),
    ] {
        assert_eq!(
            page(&app, &owner, &general, &query).await,
            page(&table, &owner, &general, &query).await,
            "{query}"
        );
    }
}

#[actix_web::test]
async fn a_change_on_one_node_shows_in_the_next_page_on_another() {
    let nodes = TestApp::cluster(2, |_| {}).await;
    let owner = nodes[0].register("owner").await;
    let member = nodes[0].register("member").await;
    let (_, general) = nodes[0].guild_with(&owner, &[&member]).await;
    let id = nodes[0].send_message(&owner, &general, "before").await;
    assert_eq!(
        page(&nodes[1], &member, &general, "limit=5").await[0]["content"],
        "before"
    );
    let res = nodes[0]
        .patch(
            &format!("{}/{id}", messages(&general)),
            Some(&owner.access_token),
            json!({"content": "after"}),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    // No waiting for the event to cross: the next page asks the database.
    assert_eq!(
        page(&nodes[1], &member, &general, "limit=5").await[0]["content"],
        "after"
    );
    let next = nodes[0].send_message(&owner, &general, "newer").await;
    assert_eq!(
        page(&nodes[1], &member, &general, "limit=5").await[0]["id"],
        next.as_str()
    );
}

#[actix_web::test]
async fn a_dm_reader_is_never_served_another_readers_memory() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let dm = app.open_dm(&alice, &bob).await;
    let id = app.send_message(&alice, &dm, "hello").await;
    assert_eq!(
        page(&app, &alice, &dm, "limit=5").await[0]["content"],
        "hello"
    );
    behind_its_back(
        &app,
        &format!("UPDATE messages SET content = 'behind' WHERE id = '{id}'"),
    )
    .await;
    // Alice's page is her memory of the DM; Bob's first is his own, from the table: how
    // quickly his page comes tells him nothing of whether Alice has read.
    assert_eq!(
        page(&app, &alice, &dm, "limit=5").await[0]["content"],
        "hello"
    );
    assert_eq!(
        page(&app, &bob, &dm, "limit=5").await[0]["content"],
        "behind"
    );
}

#[actix_web::test]
async fn a_readers_access_is_remembered_only_while_their_guild_and_channel_are_unchanged() {
    const READ_MESSAGE_HISTORY: u64 = 1 << 16;
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let member = app.register("member").await;
    let (guild, general) = app.guild_with(&owner, &[&member]).await;
    app.send_message(&owner, &general, "hi").await;
    let status = |who: &TestUser| {
        let (app, general, token) = (&app, &general, who.access_token.clone());
        async move { app.get(&messages(general), Some(&token)).await.status }
    };
    // The first page learns the channel's guild, the second remembers the decision.
    for _ in 0..3 {
        assert_eq!(status(&member).await, Status::OK);
    }
    // A change by hand, which no event announces, is not seen: the decision is memory.
    let everyone_role =
        format!("UPDATE roles SET permissions = permissions # {VIEW_CHANNEL} WHERE id = '{guild}'");
    behind_its_back(&app, &everyone_role).await;
    assert_eq!(status(&member).await, Status::OK, "remembered");
    behind_its_back(&app, &everyone_role).await;

    // Every change through the API is seen by the next page: an overwrite of the channel…
    let overwrite = format!("/api/v1/channels/{general}/permissions/{}", member.id);
    let res = app
        .put(
            &overwrite,
            Some(&owner.access_token),
            Some(json!({"type": "member", "deny": READ_MESSAGE_HISTORY.to_string()})),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    assert_eq!(status(&member).await, Status::FORBIDDEN);
    let res = app.delete(&overwrite, Some(&owner.access_token)).await;
    assert!(res.status.is_success(), "{}", res.text);
    for _ in 0..2 {
        assert_eq!(status(&member).await, Status::OK);
    }
    // …and a role of the guild.
    let roles = app
        .get(
            &format!("/api/v1/guilds/{guild}/roles"),
            Some(&owner.access_token),
        )
        .await;
    let everyone = roles
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == guild.as_str())
        .unwrap();
    let allowed: u64 = everyone["permissions"].as_str().unwrap().parse().unwrap();
    let role = format!("/api/v1/guilds/{guild}/roles/{guild}");
    let res = app
        .patch(
            &role,
            Some(&owner.access_token),
            json!({"permissions": (allowed & !VIEW_CHANNEL).to_string()}),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    assert_eq!(status(&member).await, Status::NOT_FOUND);
    assert_eq!(
        status(&owner).await,
        Status::OK,
        "the owner sees everything"
    );
}

#[actix_web::test]
async fn a_second_send_into_a_channel_a_batch_waits_for_waits_in_the_queue() {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (_, general) = app.guild_with(&owner, &[]).await;
    let path = messages(&general);
    let post = |content: &str| {
        app.post(
            &path,
            Some(&owner.access_token),
            json!({"content": content}),
        )
    };
    let mut held = hold_channel(&app, &general).await;
    let (first, (second, third)) = futures_util::future::join(post("one"), async {
        wait_for_waiters(&mut held, 1).await;
        let (second, third) = futures_util::future::join(
            futures_util::future::join(post("two"), post("three")),
            async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                let waiting: N = diesel::sql_query(
                    "SELECT count(*) AS n FROM pg_locks \
                     WHERE locktype = 'advisory' AND NOT granted AND database = \
                           (SELECT oid FROM pg_database WHERE datname = current_database())",
                )
                .get_result(&mut held)
                .await
                .unwrap();
                assert_eq!(
                    waiting.n, 1,
                    "no second transaction waits for the channel the first waits for"
                );
                release(held).await;
            },
        )
        .await
        .0;
        (second, third)
    })
    .await;
    for answer in [&first, &second, &third] {
        assert_eq!(answer.status, Status::CREATED, "{}", answer.text);
    }
    assert_eq!(
        writers(&app, &general).await,
        2,
        "the two that waited in the queue shared a transaction"
    );
}
