//! Notifications: made for DM messages, mentions, friend requests, targeted invites
//! and sign-ins from new clients; read over REST and live on /gateway/notifications;
//! read by acks; weighed against settings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use synctalk_testkit::{Method, Status, TestApp, TestUser};

const QUIET: Duration = Duration::from_millis(400);
const VIEW_CHANNEL: u64 = 1 << 10;

async fn list(app: &TestApp, who: &TestUser, query: &str) -> Value {
    let res = app
        .get(
            &format!("/api/v1/notifications{query}"),
            Some(&who.access_token),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    res.body
}

async fn setting(app: &TestApp, who: &TestUser, target: &str, body: Value) -> Status {
    app.put(
        &format!("/api/v1/users/@me/notification-settings/{target}"),
        Some(&who.access_token),
        Some(body),
    )
    .await
    .status
}

#[actix_web::test]
async fn a_dm_notifies_live_and_an_ack_reads_it() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let channel = app.open_dm(&a, &b).await;
    let (mut ws, ready) = app.gateway("/gateway/notifications", &b.access_token).await;
    assert_eq!(ready["unread_notifications"], 0, "{ready}");

    let first = app
        .send_message(&a, &channel, "are you coming tonight?")
        .await;
    let created = ws.dispatch("NOTIFICATION_CREATE").await;
    assert_eq!(created["d"]["kind"], "message");
    assert_eq!(created["d"]["title"], "alice");
    assert_eq!(created["d"]["body"], "are you coming tonight?");
    assert_eq!(created["d"]["read"], false);
    assert_eq!(created["d"]["data"]["channel_id"], channel.as_str());
    assert_eq!(created["d"]["data"]["message_id"], first.as_str());
    assert_eq!(created["d"]["data"]["author_id"], a.id.as_str());
    let long = "x".repeat(300);
    app.send_message(&a, &channel, &long).await;
    let second = ws.dispatch("NOTIFICATION_CREATE").await;
    assert_eq!(
        second["d"]["body"].as_str().unwrap().chars().count(),
        201,
        "cut to 200 and an ellipsis"
    );
    // The sender is not told of their own message.
    assert_eq!(list(&app, &a, "").await, json!([]));
    let mine = list(&app, &b, "?unread=true").await;
    assert_eq!(mine.as_array().unwrap().len(), 2);

    // A new socket's READY counts them; an ack of the newest reads both.
    let (_, ready) = app.gateway("/gateway/notifications", &b.access_token).await;
    assert_eq!(ready["unread_notifications"], 2);
    let newest = mine[0]["data"]["message_id"].as_str().unwrap().to_owned();
    let res = app
        .post(
            &format!("/api/v1/channels/{channel}/messages/{newest}/ack"),
            Some(&b.access_token),
            json!({}),
        )
        .await;
    assert_eq!(res.status, Status::OK);
    let update = ws.dispatch("NOTIFICATION_UPDATE").await;
    assert_eq!(update["d"]["read"], true);
    assert_eq!(update["d"]["unread_count"], 0);
    assert_eq!(update["d"]["ids"].as_array().unwrap().len(), 2);
    assert_eq!(list(&app, &b, "?unread=true").await, json!([]));
    assert_eq!(
        list(&app, &b, "?unread=false")
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[actix_web::test]
async fn notifications_are_read_deleted_and_paged_by_their_owner_only() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let channel = app.open_dm(&a, &b).await;
    for n in 0..5 {
        app.send_message(&a, &channel, &format!("message {n}"))
            .await;
    }
    let (mut ws, _) = app.gateway("/gateway/notifications", &b.access_token).await;
    let all = list(&app, &b, "").await;
    let ids: Vec<String> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(all[0]["body"], "message 4", "newest first");
    let page = list(&app, &b, &format!("?limit=2&before={}", ids[1])).await;
    assert_eq!(page.as_array().unwrap().len(), 2);
    assert_eq!(page[0]["id"], ids[2].as_str());
    // Catching up from the oldest known: the next ones above it, newest first.
    let newer = list(&app, &b, &format!("?limit=2&after={}", ids[4])).await;
    assert_eq!(newer, json!([all[2], all[3]]));
    let between = list(&app, &b, &format!("?after={}&before={}", ids[4], ids[1])).await;
    assert_eq!(between, json!([all[2], all[3]]));
    for bad in [
        "?limit=0",
        "?limit=101",
        "?before=nope",
        "?after=nope",
        "?unread=maybe",
    ] {
        let res = app
            .get(
                &format!("/api/v1/notifications{bad}"),
                Some(&b.access_token),
            )
            .await;
        assert_eq!(res.status, Status::BAD_REQUEST, "{bad}");
    }

    // Alice cannot touch Bob's.
    let read = format!("/api/v1/notifications/{}/read", ids[0]);
    let res = app.post(&read, Some(&a.access_token), json!({})).await;
    assert_eq!(res.status, Status::NOT_FOUND);
    let res = app
        .delete(
            &format!("/api/v1/notifications/{}", ids[0]),
            Some(&a.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NOT_FOUND);

    // Read one (twice: the same answer, one event), delete one, read the rest.
    for _ in 0..2 {
        let res = app.post(&read, Some(&b.access_token), json!({})).await;
        assert_eq!(res.status, Status::OK, "{}", res.text);
        assert_eq!(res.body["read"], true);
    }
    let update = ws.dispatch("NOTIFICATION_UPDATE").await;
    assert_eq!(update["d"]["ids"], json!([ids[0]]));
    assert_eq!(update["d"]["unread_count"], 4);
    ws.none_of(&["NOTIFICATION_UPDATE"], QUIET).await;
    let res = app
        .delete(
            &format!("/api/v1/notifications/{}", ids[1]),
            Some(&b.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let update = ws.dispatch("NOTIFICATION_UPDATE").await;
    assert_eq!(update["d"]["deleted"], true);
    assert_eq!(update["d"]["unread_count"], 3);
    let res = app
        .delete(
            &format!("/api/v1/notifications/{}", ids[1]),
            Some(&b.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NOT_FOUND, "deleted already");
    assert_eq!(list(&app, &b, "").await.as_array().unwrap().len(), 4);
    let res = app
        .post(
            "/api/v1/notifications/read-all",
            Some(&b.access_token),
            json!({}),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let update = ws.dispatch("NOTIFICATION_UPDATE").await;
    assert_eq!(update["d"]["all"], true);
    assert_eq!(update["d"]["unread_count"], 0);
    // Nothing left unread: nothing to announce.
    let res = app
        .post(
            "/api/v1/notifications/read-all",
            Some(&b.access_token),
            json!({}),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    ws.none_of(&["NOTIFICATION_UPDATE"], QUIET).await;
    assert_eq!(
        app.get("/api/v1/notifications", None).await.status,
        Status::UNAUTHORIZED
    );
}

#[actix_web::test]
async fn guild_messages_notify_mentions_and_settings_decide() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (m1, m2) = (app.register("mia").await, app.register("max").await);
    let (guild, general) = app.guild_with(&owner, &[&m1, &m2]).await;

    // A mention notifies the one mentioned, not the others.
    app.send_message(&owner, &general, &format!("hey <@{}>", m1.id))
        .await;
    let mine = list(&app, &m1, "").await;
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine[0]["title"], "owner mentioned you in #general");
    assert_eq!(mine[0]["data"]["guild_id"], guild.as_str());
    assert_eq!(list(&app, &m2, "").await, json!([]), "not mentioned");
    app.send_message(&owner, &general, "no mention").await;
    assert_eq!(list(&app, &m1, "").await.as_array().unwrap().len(), 1);

    // Every message, for whoever asks; a channel's setting wins over its guild's.
    assert_eq!(
        setting(&app, &m2, &guild, json!({"level": "all"})).await,
        Status::OK
    );
    app.send_message(&owner, &general, "for everyone who listens")
        .await;
    assert_eq!(list(&app, &m2, "").await.as_array().unwrap().len(), 1);
    assert_eq!(
        setting(&app, &m2, &general, json!({"level": "mentions"})).await,
        Status::OK
    );
    app.send_message(&owner, &general, "quiet here").await;
    assert_eq!(list(&app, &m2, "").await.as_array().unwrap().len(), 1);

    // Muted, or nothing: not even mentions.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    assert_eq!(
        setting(
            &app,
            &m1,
            &general,
            json!({"level": "all", "muted_until": later})
        )
        .await,
        Status::OK
    );
    app.send_message(&owner, &general, &format!("<@{}> muted?", m1.id))
        .await;
    assert_eq!(list(&app, &m1, "").await.as_array().unwrap().len(), 1);
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    assert_eq!(
        setting(
            &app,
            &m1,
            &general,
            json!({"level": "nothing", "muted_until": past})
        )
        .await,
        Status::OK
    );
    app.send_message(&owner, &general, &format!("<@{}> nothing?", m1.id))
        .await;
    assert_eq!(list(&app, &m1, "").await.as_array().unwrap().len(), 1);

    // A mention in a channel they cannot see tells them nothing.
    let res = app
        .post(
            &format!("/api/v1/guilds/{guild}/channels"),
            Some(&owner.access_token),
            json!({"name": "secret"}),
        )
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    let secret = res.body["id"].as_str().unwrap().to_owned();
    let res = app
        .put(
            &format!("/api/v1/channels/{secret}/permissions/{guild}"),
            Some(&owner.access_token),
            Some(json!({"type": "role", "deny": VIEW_CHANNEL.to_string()})),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    app.send_message(&owner, &secret, &format!("psst <@{}>", m2.id))
        .await;
    assert_eq!(
        setting(&app, &m2, &secret, json!({"level": "all"})).await,
        Status::NOT_FOUND,
        "a channel they cannot see is not theirs to set"
    );
    assert_eq!(list(&app, &m2, "").await.as_array().unwrap().len(), 1);

    // Settings: listed, removed once, for one's own guilds and channels only.
    let res = app
        .get(
            "/api/v1/users/@me/notification-settings",
            Some(&m2.access_token),
        )
        .await;
    assert_eq!(res.body.as_array().unwrap().len(), 2, "{}", res.text);
    let kinds: Vec<&str> = res
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["target_kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"guild") && kinds.contains(&"channel"),
        "{kinds:?}"
    );
    let path = format!("/api/v1/users/@me/notification-settings/{general}");
    assert_eq!(
        app.delete(&path, Some(&m2.access_token)).await.status,
        Status::NO_CONTENT
    );
    assert_eq!(
        app.delete(&path, Some(&m2.access_token)).await.status,
        Status::NOT_FOUND
    );
    let outsider = app.register("outsider").await;
    assert_eq!(
        setting(&app, &outsider, &guild, json!({"level": "all"})).await,
        Status::NOT_FOUND
    );
    assert_eq!(
        setting(
            &app,
            &m2,
            &uuid::Uuid::now_v7().to_string(),
            json!({"level": "all"})
        )
        .await,
        Status::NOT_FOUND
    );
    for bad in [
        json!({"level": "loud"}),
        json!({}),
        json!({"level": "all", "extra": 1}),
    ] {
        let status = setting(&app, &m2, &guild, bad.clone()).await;
        assert_eq!(status, Status::UNPROCESSABLE_ENTITY, "{bad}");
    }
}

#[actix_web::test]
async fn dm_settings_can_silence_a_conversation() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let channel = app.open_dm(&a, &b).await;
    assert_eq!(
        setting(&app, &b, &channel, json!({"level": "nothing"})).await,
        Status::OK
    );
    app.send_message(&a, &channel, "hello?").await;
    assert_eq!(list(&app, &b, "").await, json!([]));
    assert_eq!(
        setting(&app, &b, &channel, json!({"level": "mentions"})).await,
        Status::OK
    );
    app.send_message(&a, &channel, &format!("<@{}> hello!", b.id))
        .await;
    assert_eq!(list(&app, &b, "").await.as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn friend_requests_invites_and_new_sign_ins_notify() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let (mut ws, _) = app.gateway("/gateway/notifications", &b.access_token).await;

    // Alice asks Bob to be friends (again, after cancelling).
    let ask = async || {
        let res = app
            .post(
                "/api/v1/users/@me/relationships",
                Some(&a.access_token),
                json!({"username": "bob"}),
            )
            .await;
        assert!(res.status.is_success(), "{}", res.text);
    };
    ask().await;
    let request = ws.dispatch("NOTIFICATION_CREATE").await;
    assert_eq!(request["d"]["kind"], "friend_request");
    assert_eq!(request["d"]["title"], "alice sent you a friend request");
    assert_eq!(request["d"]["data"]["user_id"], a.id.as_str());

    // Cancelled, the request's notification goes; sent again, a new one comes.
    let res = app
        .delete(
            &format!("/api/v1/users/@me/relationships/{}", b.id),
            Some(&a.access_token),
        )
        .await;
    assert!(res.status.is_success(), "{}", res.text);
    let gone = ws.dispatch("NOTIFICATION_UPDATE").await;
    assert_eq!(gone["d"]["deleted"], true);
    assert_eq!(gone["d"]["ids"], json!([request["d"]["id"]]));
    ask().await;
    let again = ws.dispatch("NOTIFICATION_CREATE").await;
    assert_eq!(again["d"]["kind"], "friend_request");

    let (guild, _) = app.guild_with(&a, &[]).await;
    let res = app
        .post(
            &format!("/api/v1/guilds/{guild}/invites"),
            Some(&a.access_token),
            json!({"target_user_id": b.id}),
        )
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    let invite = ws.dispatch("NOTIFICATION_CREATE").await;
    assert_eq!(invite["d"]["kind"], "guild_invite");
    assert_eq!(invite["d"]["data"]["code"], res.body["code"]);
    assert_eq!(invite["d"]["data"]["guild_id"], guild.as_str());
    // More invites to the same guild while that one is unread tell nothing new.
    for _ in 0..3 {
        let res = app
            .post(
                &format!("/api/v1/guilds/{guild}/invites"),
                Some(&a.access_token),
                json!({"target_user_id": b.id}),
            )
            .await;
        assert_eq!(res.status, Status::CREATED);
    }
    ws.none_of(&["NOTIFICATION_CREATE"], QUIET).await;

    // Registering is no "new sign-in"; the first sign-in from another client is.
    let login = |agent: &'static str| {
        let app = &app;
        async move {
            app.request_with_headers(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"login": "bob", "password": "correct horse battery staple"})),
                &[("user-agent", agent)],
            )
            .await
        }
    };
    let res = login("SyncTalk-Phone/2.0").await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    let notice = ws.dispatch("NOTIFICATION_CREATE").await;
    assert_eq!(notice["d"]["kind"], "system");
    assert_eq!(notice["d"]["title"], "New sign-in");
    assert!(
        notice["d"]["body"]
            .as_str()
            .unwrap()
            .contains("SyncTalk-Phone/2.0"),
        "{notice}"
    );
    assert_eq!(login("SyncTalk-Phone/2.0").await.status, Status::OK);
    ws.none_of(&["NOTIFICATION_CREATE"], QUIET).await;
    let kinds: Vec<String> = list(&app, &b, "")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["system", "guild_invite", "friend_request"],
        "one live request"
    );
}

#[actix_web::test]
async fn an_edited_or_deleted_message_leaves_no_old_text_in_notifications() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let channel = app.open_dm(&a, &b).await;
    let (mut ws, _) = app.gateway("/gateway/notifications", &b.access_token).await;
    let id = app
        .send_message(&a, &channel, "my password is hunter2")
        .await;
    let created = ws.dispatch("NOTIFICATION_CREATE").await;
    let res = app
        .patch(
            &format!("/api/v1/channels/{channel}/messages/{id}"),
            Some(&a.access_token),
            json!({"content": "oops, nothing to see"}),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    assert_eq!(list(&app, &b, "").await[0]["body"], "oops, nothing to see");
    let res = app
        .delete(
            &format!("/api/v1/channels/{channel}/messages/{id}"),
            Some(&a.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let update = ws.dispatch("NOTIFICATION_UPDATE").await;
    assert_eq!(update["d"]["deleted"], true);
    assert_eq!(update["d"]["ids"], json!([created["d"]["id"]]));
    assert_eq!(update["d"]["unread_count"], 0);
    assert_eq!(list(&app, &b, "").await, json!([]));
}

#[actix_web::test]
async fn everyone_and_role_mentions_notify_the_members_who_can_see_them() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (m1, m2, m3) = (
        app.register("mia").await,
        app.register("max").await,
        app.register("moe").await,
    );
    let (guild, general) = app.guild_with(&owner, &[&m1, &m2, &m3]).await;
    let role = app
        .post(
            &format!("/api/v1/guilds/{guild}/roles"),
            Some(&owner.access_token),
            json!({"name": "team"}),
        )
        .await;
    assert_eq!(role.status, Status::CREATED, "{}", role.text);
    let role = role.body["id"].as_str().unwrap().to_owned();
    let res = app
        .put(
            &format!("/api/v1/guilds/{guild}/members/{}/roles/{role}", m1.id),
            Some(&owner.access_token),
            None,
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT, "{}", res.text);
    let count = async |who: &TestUser| list(&app, who, "").await.as_array().unwrap().len();

    // A role mention: its members, as mentioned.
    app.send_message(&owner, &general, &format!("stand up <@&{role}>"))
        .await;
    let mine = list(&app, &m1, "").await;
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine[0]["title"], "owner mentioned you in #general");
    assert_eq!((count(&m2).await, count(&m3).await), (0, 0));

    // @everyone from someone allowed to: every member but the author; settings decide.
    assert_eq!(
        setting(&app, &m3, &guild, json!({"level": "nothing"})).await,
        Status::OK
    );
    app.send_message(&owner, &general, "@everyone meeting at noon")
        .await;
    assert_eq!(
        (count(&m1).await, count(&m2).await, count(&m3).await),
        (2, 1, 0)
    );
    assert_eq!(count(&owner).await, 0, "not the author");
    let mine = list(&app, &m2, "").await;
    assert_eq!(mine[0]["title"], "owner mentioned you in #general");
    assert_eq!(mine[0]["body"], "@everyone meeting at noon");

    // Without MENTION_EVERYONE, @everyone is text and a role mention tells nobody
    // (roles are not mentionable by everyone, so no member can page a whole role).
    app.send_message(&m2, &general, &format!("@everyone hello? <@&{role}>"))
        .await;
    assert_eq!((count(&m1).await, count(&owner).await), (2, 0));

    // Not in a channel they cannot see.
    let res = app
        .put(
            &format!("/api/v1/channels/{general}/permissions/{}", m2.id),
            Some(&owner.access_token),
            Some(json!({"type": "member", "deny": VIEW_CHANNEL.to_string()})),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    app.send_message(&owner, &general, &format!("@everyone and <@&{role}> again"))
        .await;
    assert_eq!((count(&m1).await, count(&m2).await), (3, 1));

    // A guild past 1,000 members: a role or @everyone pages nobody (a name still does).
    {
        use diesel_async::RunQueryDsl;
        let mut conn = app.db.connect().await;
        diesel::sql_query(format!(
            "UPDATE guilds SET member_count = 1001 WHERE id = '{guild}'"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    app.send_message(
        &owner,
        &general,
        &format!("@everyone <@&{role}> and <@{}>", m3.id),
    )
    .await;
    assert_eq!(
        (count(&m1).await, count(&m3).await),
        (3, 0),
        "m3 set nothing"
    );
    app.send_message(&owner, &general, &format!("<@&{role}> <@{}>", m1.id))
        .await;
    assert_eq!(count(&m1).await, 4, "named");
}
