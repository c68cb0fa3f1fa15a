//! The README's walkthrough, step by step: two empty accounts to a guild with a
//! moderator role, a channel only moderators see, a group DM and a first message,
//! with what bob's socket receives. If this test changes, change the README with it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use synctalk_testkit::{Method, Status, TestApp, WsClient};

async fn next_dispatch(ws: &mut WsClient) -> Value {
    loop {
        let frame = ws.frame().await;
        if frame["op"] == 0 && frame["t"] != "PRESENCE_UPDATE" {
            return frame;
        }
    }
}

#[actix_web::test]
async fn the_readme_walkthrough_works_as_written() {
    let app = TestApp::spawn().await;
    // 1.
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = Some(alice.access_token.as_str());
    // 2.
    let res = app
        .post("/api/v1/guilds", a, json!({"name": "Rustaceans"}))
        .await;
    assert_eq!(res.status, Status::CREATED);
    let g = res.body["id"].as_str().unwrap().to_owned();
    let channels = app.get(&format!("/api/v1/guilds/{g}/channels"), a).await;
    assert_eq!(channels.body[0]["name"], "general");
    // 3.
    let res = app
        .post(
            &format!("/api/v1/guilds/{g}/invites"),
            a,
            json!({"max_uses": 10}),
        )
        .await;
    let code = res.body["code"].as_str().unwrap().to_owned();
    let res = app
        .post(
            &format!("/api/v1/invites/{code}"),
            Some(&bob.access_token),
            json!({}),
        )
        .await;
    assert_eq!(res.status, Status::OK);
    assert_eq!(res.body["id"], g.as_str());
    // 4.
    let (mut ws, ready) = app
        .gateway(
            "/gateway?domains=guilds,channels,messaging",
            &bob.access_token,
        )
        .await;
    assert_eq!(ready["guilds"][0]["name"], "Rustaceans");
    assert_eq!(ready["guilds"][0]["channels"][0]["name"], "general");
    assert_eq!(ready["channels"], json!([]));
    // 5.
    let res = app
        .post(
            &format!("/api/v1/guilds/{g}/roles"),
            a,
            json!({"name": "mods", "permissions": "268435458"}),
        )
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    let m = res.body["id"].as_str().unwrap().to_owned();
    let res = app
        .request(
            Method::PUT,
            &format!("/api/v1/guilds/{g}/members/{}/roles/{m}", bob.id),
            a,
            None,
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    // 6.
    let res = app
        .post(
            &format!("/api/v1/guilds/{g}/channels"),
            a,
            json!({"name": "staff"}),
        )
        .await;
    let s = res.body["id"].as_str().unwrap().to_owned();
    let res = app
        .request(
            Method::PUT,
            &format!("/api/v1/channels/{s}/permissions/{m}"),
            a,
            Some(json!({"type": "role", "allow": "1024"})),
        )
        .await;
    assert_eq!(res.status, Status::OK);
    let res = app
        .request(
            Method::PUT,
            &format!("/api/v1/channels/{s}/permissions/{g}"),
            a,
            Some(json!({"type": "role", "deny": "1024"})),
        )
        .await;
    assert_eq!(res.status, Status::OK);
    // 7.
    let res = app
        .post(
            "/api/v1/users/@me/channels",
            a,
            json!({"recipient_ids": [bob.id], "name": "weekend"}),
        )
        .await;
    assert_eq!(res.status, Status::CREATED);

    // What bob's socket received, in order.
    let mut seen = Vec::new();
    for _ in 0..6 {
        let frame = next_dispatch(&mut ws).await;
        let d = &frame["d"];
        let what = d["name"]
            .as_str()
            .or(d["role"]["name"].as_str())
            .unwrap_or_default()
            .to_owned();
        seen.push((frame["t"].as_str().unwrap().to_owned(), what));
    }
    let seen: Vec<(&str, &str)> = seen.iter().map(|(t, w)| (t.as_str(), w.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("GUILD_ROLE_CREATE", "mods"),
            ("GUILD_MEMBER_UPDATE", ""),
            ("CHANNEL_CREATE", "staff"),
            ("CHANNEL_UPDATE", "staff"),
            ("CHANNEL_UPDATE", "staff"),
            ("CHANNEL_CREATE", "weekend"),
        ]
    );
    // Bob is a moderator: he sees staff; plain members would not.
    let res = app
        .get(&format!("/api/v1/channels/{s}"), Some(&bob.access_token))
        .await;
    assert_eq!(res.status, Status::OK);

    // 8. A message in staff, and bob answering it over the gateway.
    let res = app
        .post(
            &format!("/api/v1/channels/{s}/messages"),
            a,
            json!({"content": format!("welcome <@{}>", bob.id), "nonce": "w1"}),
        )
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    let welcome = res.body["id"].as_str().unwrap().to_owned();
    let frame = next_dispatch(&mut ws).await;
    assert_eq!(frame["t"], "MESSAGE_CREATE");
    assert_eq!(frame["d"]["mentions"][0]["id"], bob.id.as_str());
    let reply = ws
        .request(
            "SEND_MESSAGE",
            "1",
            json!({"channel_id": s, "content": "thanks!", "reply_to": welcome}),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"]["reply_to"]["id"], welcome.as_str());
    let frame = next_dispatch(&mut ws).await;
    assert_eq!(frame["t"], "MESSAGE_CREATE");
    assert_eq!(frame["d"]["content"], "thanks!");
    // 9. Bob marks staff read.
    let res = app
        .post(
            &format!("/api/v1/channels/{s}/messages/{welcome}/ack"),
            Some(&bob.access_token),
            json!({}),
        )
        .await;
    assert_eq!(res.status, Status::OK);
    assert_eq!(res.body["unread_count"], 0);
    let frame = next_dispatch(&mut ws).await;
    assert_eq!(frame["t"], "MESSAGE_ACK");
}
