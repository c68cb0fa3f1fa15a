//! Guild channels and overwrites, DMs and group DMs, over REST and live: who gets
//! which events, and that losing sight of a channel ends its events at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use synctalk_testkit::{Received, Response, Status, TestApp, TestUser};

const VIEW_CHANNEL: u64 = 1 << 10;
const BAN_MEMBERS: u64 = 1 << 2;
const MANAGE_ROLES: u64 = 1 << 28;
const MANAGE_CHANNELS: u64 = 1 << 4;

async fn guild_with(app: &TestApp, owner: &TestUser, members: &[&TestUser]) -> (String, String) {
    app.guild_with(owner, members).await
}

async fn put(app: &TestApp, path: &str, who: &TestUser, body: Option<Value>) -> Response {
    app.put(path, Some(&who.access_token), body).await
}

#[actix_web::test]
async fn guild_channels_need_manage_channels_and_reach_their_viewers() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (a, outsider) = (app.register("aaa").await, app.register("outsider").await);
    let (guild, general) = guild_with(&app, &owner, &[&a]).await;
    let (mut a_ws, _) = app.gateway("/gateway/guilds", &a.access_token).await;
    let path = format!("/api/v1/guilds/{guild}/channels");

    let res = app
        .post(&path, Some(&a.access_token), json!({"name": "x"}))
        .await;
    assert_eq!(res.status, Status::FORBIDDEN);
    assert_eq!(res.code(), "missing_permissions");
    let res = app
        .post(&path, Some(&outsider.access_token), json!({"name": "x"}))
        .await;
    assert_eq!(res.status, Status::NOT_FOUND);
    for bad in [
        json!({"name": ""}),
        json!({"name": "x", "kind": "dm"}),
        json!({"name": "x", "kind": "x"}),
        json!({"name": "x", "position": 2.5}),
        json!({"name": "x", "position": -1}),
    ] {
        let res = app
            .post(&path, Some(&owner.access_token), bad.clone())
            .await;
        assert_eq!(
            res.status,
            Status::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            res.text
        );
    }
    // A parent that is no category of this guild is as unknown as any other.
    let res = app
        .post(
            &path,
            Some(&owner.access_token),
            json!({"name": "x", "parent_id": general}),
        )
        .await;
    assert_eq!(res.status, Status::NOT_FOUND, "{}", res.text);
    let category = app
        .post(
            &path,
            Some(&owner.access_token),
            json!({"name": "Talk", "kind": "category"}),
        )
        .await;
    assert_eq!(category.status, Status::CREATED, "{}", category.text);
    let cat = category.body["id"].as_str().unwrap().to_owned();
    let res = app
        .post(
            &path,
            Some(&owner.access_token),
            json!({"name": "rust", "parent_id": cat, "topic": "crabs"}),
        )
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    let rust = res.body["id"].as_str().unwrap().to_owned();
    assert_eq!(res.body["parent_id"], cat.as_str());
    assert_eq!(res.body["kind"], "text");

    // Everyone can see them: a gets both CHANNEL_CREATEs, then the channel's updates.
    let first = a_ws.next_of(&["CHANNEL_CREATE"]).await;
    assert_eq!(first["d"]["id"], cat.as_str());
    let second = a_ws.next_of(&["CHANNEL_CREATE"]).await;
    assert_eq!(second["d"]["id"], rust.as_str());
    let res = app
        .patch(
            &format!("/api/v1/channels/{rust}"),
            Some(&owner.access_token),
            json!({"topic": "more crabs"}),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    let update = a_ws.next_of(&["CHANNEL_UPDATE"]).await;
    assert_eq!(update["d"]["topic"], "more crabs");
    let res = app
        .patch(
            &format!("/api/v1/channels/{rust}"),
            Some(&a.access_token),
            json!({"name": "mine"}),
        )
        .await;
    assert_eq!(res.status, Status::FORBIDDEN);
    assert_eq!(
        app.get(
            &format!("/api/v1/channels/{rust}"),
            Some(&outsider.access_token)
        )
        .await
        .status,
        Status::NOT_FOUND
    );

    // Deleting the category moves rust out of it.
    let res = app
        .delete(
            &format!("/api/v1/channels/{cat}"),
            Some(&owner.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let gone = a_ws.next_of(&["CHANNEL_DELETE"]).await;
    assert_eq!(gone["d"]["id"], cat.as_str());
    let moved = a_ws.next_of(&["CHANNEL_UPDATE"]).await;
    assert_eq!(moved["d"]["id"], rust.as_str());
    assert!(moved["d"]["parent_id"].is_null());
    let list = app.get(&path, Some(&a.access_token)).await;
    let names: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["general", "rust"]);
    let log = app
        .get(
            &format!("/api/v1/guilds/{guild}/audit-log"),
            Some(&owner.access_token),
        )
        .await;
    let actions: Vec<&str> = log
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["channel_create", "channel_update", "channel_delete"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

#[actix_web::test]
async fn a_private_channel_hides_at_once_and_shows_to_those_let_in() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (a, b) = (app.register("aaa").await, app.register("bbb").await);
    let (guild, general) = guild_with(&app, &owner, &[&a, &b]).await;
    let (mut a_ws, _) = app.gateway("/gateway/guilds", &a.access_token).await;
    let (mut b_ws, _) = app.gateway("/gateway/guilds", &b.access_token).await;

    // @everyone may not view general: both lose it.
    let everyone = format!("/api/v1/channels/{general}/permissions/{guild}");
    let res = put(
        &app,
        &everyone,
        &owner,
        Some(json!({"type": "role", "deny": VIEW_CHANNEL.to_string()})),
    )
    .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    assert_eq!(
        res.body,
        json!({"id": guild, "type": "role", "allow": "0", "deny": VIEW_CHANNEL.to_string()})
    );
    for ws in [&mut a_ws, &mut b_ws] {
        let lost = ws.next_of(&["CHANNEL_DELETE", "CHANNEL_UPDATE"]).await;
        assert_eq!(lost["t"], "CHANNEL_DELETE", "{lost}");
        assert_eq!(lost["d"]["id"], general.as_str());
    }
    assert_eq!(
        app.get(
            &format!("/api/v1/channels/{general}"),
            Some(&a.access_token)
        )
        .await
        .status,
        Status::NOT_FOUND
    );

    // A member overwrite lets a back in; b stays out and hears nothing of it.
    let res = put(
        &app,
        &format!("/api/v1/channels/{general}/permissions/{}", a.id),
        &owner,
        Some(json!({"type": "member", "allow": VIEW_CHANNEL.to_string()})),
    )
    .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    let back = a_ws.next_of(&["CHANNEL_CREATE"]).await;
    assert_eq!(back["d"]["id"], general.as_str());
    let res = app
        .patch(
            &format!("/api/v1/channels/{general}"),
            Some(&owner.access_token),
            json!({"name": "secret"}),
        )
        .await;
    assert_eq!(res.status, Status::OK);
    let renamed = a_ws.next_of(&["CHANNEL_UPDATE"]).await;
    assert_eq!(renamed["d"]["name"], "secret");
    b_ws.none_of(
        &["CHANNEL_UPDATE", "CHANNEL_CREATE"],
        Duration::from_millis(500),
    )
    .await;
    let (_, ready) = app.gateway("/gateway/guilds", &b.access_token).await;
    assert_eq!(ready["guilds"][0]["channels"], json!([]));

    // Overwrites: unknown targets are 404, and nobody allows what they lack.
    let res = put(
        &app,
        &format!(
            "/api/v1/channels/{general}/permissions/{}",
            uuid::Uuid::now_v7()
        ),
        &owner,
        Some(json!({"type": "role"})),
    )
    .await;
    assert_eq!(res.status, Status::NOT_FOUND);
    let role = app
        .post(
            &format!("/api/v1/guilds/{guild}/roles"),
            Some(&owner.access_token),
            json!({"name": "warden", "permissions": (MANAGE_ROLES | MANAGE_CHANNELS).to_string()}),
        )
        .await;
    let role_id = role.body["id"].as_str().unwrap();
    assert_eq!(
        put(
            &app,
            &format!("/api/v1/guilds/{guild}/members/{}/roles/{role_id}", a.id),
            &owner,
            None
        )
        .await
        .status,
        Status::NO_CONTENT
    );
    let res = put(
        &app,
        &format!("/api/v1/channels/{general}/permissions/{}", b.id),
        &a,
        Some(json!({"type": "member", "allow": BAN_MEMBERS.to_string()})),
    )
    .await;
    assert_eq!(res.status, Status::FORBIDDEN);
    let res = put(
        &app,
        &format!("/api/v1/channels/{general}/permissions/{}", b.id),
        &a,
        Some(json!({"type": "member", "allow": VIEW_CHANNEL.to_string()})),
    )
    .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    let shown = b_ws.next_of(&["CHANNEL_CREATE"]).await;
    assert_eq!(shown["d"]["id"], general.as_str());
    // Removing it hides it again.
    let res = app
        .delete(
            &format!("/api/v1/channels/{general}/permissions/{}", b.id),
            Some(&a.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let hidden = b_ws.next_of(&["CHANNEL_DELETE"]).await;
    assert_eq!(hidden["d"]["id"], general.as_str());
}

#[actix_web::test]
async fn a_resume_replays_what_a_guild_wide_subscription_brought_while_away() {
    // The resume lands on another node, which reads the replay from the outbox; the
    // relay is slow, so the last rows are still unpublished when the RESUME arrives
    // (RESUMED must wait for them, though they are of topics the session only comes to
    // listen to on the way).
    let nodes = TestApp::cluster(2, |s| {
        s.outbox_poll_ms = 400;
        s.outbox_wake = false;
    })
    .await;
    let (app, other) = (&nodes[0], &nodes[1]);
    let owner = app.register("owner").await;
    let a = app.register("aaa").await;
    let res = app
        .post(
            "/api/v1/guilds",
            Some(&owner.access_token),
            json!({"name": "G"}),
        )
        .await;
    let guild = res.body["id"].as_str().unwrap().to_owned();
    let code = app
        .post(
            &format!("/api/v1/guilds/{guild}/invites"),
            Some(&owner.access_token),
            json!({}),
        )
        .await
        .body["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut ws, ready) = app.gateway("/gateway/guilds", &a.access_token).await;
    let session = ready["session_id"].as_str().unwrap().to_owned();
    ws.heartbeat().await;
    drop(ws); // dropped, not closed: resumable

    // While away: a joins (a subscription on a's user topic), a channel is made for the
    // whole guild (a subscription written to the guild's topic), and renamed.
    assert_eq!(
        app.post(
            &format!("/api/v1/invites/{code}"),
            Some(&a.access_token),
            json!({})
        )
        .await
        .status,
        Status::OK
    );
    // The join's rows are published (a poll goes by); what follows is not, yet, when
    // the RESUME arrives.
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let res = app
        .post(
            &format!("/api/v1/guilds/{guild}/channels"),
            Some(&owner.access_token),
            json!({"name": "new"}),
        )
        .await;
    let channel = res.body["id"].as_str().unwrap().to_owned();
    let res = app
        .patch(
            &format!("/api/v1/channels/{channel}"),
            Some(&owner.access_token),
            json!({"name": "newer"}),
        )
        .await;
    assert_eq!(res.status, Status::OK);

    let mut ws = other.ws("/gateway/guilds").await;
    assert_eq!(ws.frame().await["op"], 10);
    ws.send(json!({"op": 6, "d": {"token": a.access_token, "session_id": session, "seq": null}}))
        .await;
    let mut got = Vec::new();
    loop {
        let frame = ws.frame().await;
        if frame["t"] == "RESUMED" {
            break;
        }
        if frame["op"] == 0 {
            got.push((
                frame["t"].as_str().unwrap().to_owned(),
                frame["s"].as_i64().unwrap(),
            ));
        }
    }
    let names: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        names,
        [
            "GUILD_CREATE",
            "GUILD_MEMBER_ADD",
            "CHANNEL_CREATE",
            "CHANNEL_UPDATE"
        ]
    );
    let seqs: Vec<i64> = got.iter().map(|(_, s)| *s).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
}

#[actix_web::test]
async fn a_dm_is_the_same_channel_for_the_same_pair_and_blocked_users_cannot_open_one() {
    let app = TestApp::spawn().await;
    let (a, b, c) = (
        app.register("aaa").await,
        app.register("bbb").await,
        app.register("ccc").await,
    );
    let (mut b_ws, ready) = app.gateway("/gateway/channels", &b.access_token).await;
    assert_eq!(ready["channels"], json!([]));
    let open = |who: &TestUser, other: &TestUser| {
        let (token, id) = (who.access_token.clone(), other.id.clone());
        let app = &app;
        async move {
            app.post(
                "/api/v1/users/@me/channels",
                Some(&token),
                json!({"recipient_id": id}),
            )
            .await
        }
    };
    let first = open(&a, &b).await;
    assert_eq!(first.status, Status::CREATED, "{}", first.text);
    assert_eq!(first.body["kind"], "dm");
    assert_eq!(first.body["recipients"].as_array().unwrap().len(), 2);
    let again = open(&a, &b).await;
    assert_eq!(again.status, Status::OK);
    assert_eq!(again.body["id"], first.body["id"]);
    let theirs = open(&b, &a).await;
    assert_eq!(theirs.status, Status::OK);
    assert_eq!(theirs.body["id"], first.body["id"]);
    let created = b_ws.next_of(&["CHANNEL_CREATE"]).await;
    assert_eq!(created["d"]["id"], first.body["id"]);
    let dm = first.body["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/api/v1/channels/{dm}"), Some(&c.access_token))
            .await
            .status,
        Status::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/api/v1/channels/{dm}"), Some(&b.access_token))
            .await
            .status,
        Status::OK
    );
    assert_eq!(
        app.delete(&format!("/api/v1/channels/{dm}"), Some(&a.access_token))
            .await
            .status,
        Status::CONFLICT
    );

    // c blocks a: a cannot open a DM with c.
    let res = put(
        &app,
        &format!("/api/v1/users/@me/relationships/{}", a.id),
        &c,
        Some(json!({"type": "blocked"})),
    )
    .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let res = open(&a, &c).await;
    assert_eq!(res.status, Status::FORBIDDEN);
    assert_eq!(res.code(), "blocked");
    let res = open(&a, &a).await;
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY);
    let res = app
        .post(
            "/api/v1/users/@me/channels",
            Some(&a.access_token),
            json!({"recipient_id": uuid::Uuid::now_v7()}),
        )
        .await;
    assert_eq!(res.status, Status::NOT_FOUND);
    let res = app
        .post(
            "/api/v1/users/@me/channels",
            Some(&a.access_token),
            json!({}),
        )
        .await;
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY);
    let list = app
        .get("/api/v1/users/@me/channels", Some(&a.access_token))
        .await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn two_racing_opens_of_a_dm_make_one_channel() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.register("aaa").await, app.register("bbb").await);
    let path = "/api/v1/users/@me/channels";
    let (x, y) = tokio::join!(
        app.post(path, Some(&a.access_token), json!({"recipient_id": b.id})),
        app.post(path, Some(&b.access_token), json!({"recipient_id": a.id})),
    );
    assert_eq!(x.body["id"], y.body["id"], "{} {}", x.text, y.text);
    let mut statuses = [x.status.as_u16(), y.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 201]);
}

#[actix_web::test]
async fn group_dms_add_remove_leave_and_stay_within_ten() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let mut others = Vec::new();
    for i in 0..10 {
        others.push(app.register(&format!("user{i}")).await);
    }
    let ids: Vec<&str> = others[..3].iter().map(|u| u.id.as_str()).collect();
    let (mut u0_ws, _) = app
        .gateway("/gateway/channels", &others[0].access_token)
        .await;
    let res = app
        .post(
            "/api/v1/users/@me/channels",
            Some(&owner.access_token),
            json!({"recipient_ids": ids, "name": "weekend"}),
        )
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    assert_eq!(res.body["kind"], "group_dm");
    assert_eq!(res.body["owner_id"], owner.id.as_str());
    assert_eq!(res.body["recipients"].as_array().unwrap().len(), 4);
    let group = res.body["id"].as_str().unwrap().to_owned();
    let created = u0_ws.next_of(&["CHANNEL_CREATE"]).await;
    assert_eq!(created["d"]["name"], "weekend");

    // Any member adds; the others hear CHANNEL_RECIPIENT_ADD.
    let recipient = |i: usize| format!("/api/v1/channels/{group}/recipients/{}", others[i].id);
    assert_eq!(
        put(&app, &recipient(3), &others[0], None).await.status,
        Status::NO_CONTENT
    );
    let added = u0_ws.next_of(&["CHANNEL_RECIPIENT_ADD"]).await;
    assert_eq!(added["d"]["user"]["id"], others[3].id.as_str());
    assert_eq!(
        put(&app, &recipient(3), &others[0], None).await.status,
        Status::NO_CONTENT,
        "again: nothing changes"
    );
    for i in 4..9 {
        assert_eq!(
            put(&app, &recipient(i), &owner, None).await.status,
            Status::NO_CONTENT
        );
    }
    let full = put(&app, &recipient(9), &owner, None).await;
    assert_eq!(full.status, Status::CONFLICT);
    assert_eq!(full.code(), "group_full");
    let too_big: Vec<&str> = others.iter().map(|u| u.id.as_str()).collect();
    let res = app
        .post(
            "/api/v1/users/@me/channels",
            Some(&owner.access_token),
            json!({"recipient_ids": too_big}),
        )
        .await;
    assert_eq!(res.code(), "group_full");

    // Only the owner removes others; the removed member hears CHANNEL_DELETE last.
    let res = app
        .delete(&recipient(1), Some(&others[0].access_token))
        .await;
    assert_eq!(res.status, Status::FORBIDDEN);
    let res = app.delete(&recipient(0), Some(&owner.access_token)).await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let removed = u0_ws
        .next_of(&["CHANNEL_RECIPIENT_REMOVE", "CHANNEL_DELETE"])
        .await;
    assert_eq!(removed["t"], "CHANNEL_RECIPIENT_REMOVE");
    let gone = u0_ws.next_of(&["CHANNEL_DELETE"]).await;
    assert_eq!(gone["d"]["id"], group.as_str());
    let res = app
        .patch(
            &format!("/api/v1/channels/{group}"),
            Some(&others[1].access_token),
            json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    u0_ws
        .none_of(&["CHANNEL_UPDATE"], Duration::from_millis(500))
        .await;
    assert_eq!(
        app.get(
            &format!("/api/v1/channels/{group}"),
            Some(&others[0].access_token)
        )
        .await
        .status,
        Status::NOT_FOUND
    );

    // The owner leaves: ownership passes on. Everyone leaves but one, who cannot.
    assert_eq!(
        app.delete(
            &format!("/api/v1/channels/{group}"),
            Some(&owner.access_token)
        )
        .await
        .status,
        Status::NO_CONTENT
    );
    let now = app
        .get(
            &format!("/api/v1/channels/{group}"),
            Some(&others[1].access_token),
        )
        .await;
    assert_eq!(now.body["owner_id"], others[1].id.as_str());
    let members: Vec<String> = now.body["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    let mut tokens = Vec::new();
    for id in &members {
        tokens.push(
            others
                .iter()
                .find(|u| &u.id == id)
                .unwrap()
                .access_token
                .clone(),
        );
    }
    for token in &tokens[..tokens.len() - 1] {
        assert_eq!(
            app.delete(&format!("/api/v1/channels/{group}"), Some(token))
                .await
                .status,
            Status::NO_CONTENT
        );
    }
    let last = app
        .delete(
            &format!("/api/v1/channels/{group}"),
            Some(tokens.last().unwrap()),
        )
        .await;
    assert_eq!(last.status, Status::CONFLICT);
}

#[actix_web::test]
async fn folders_group_my_guilds_and_dms_and_follow_me_to_my_other_devices() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.register("aaa").await, app.register("bbb").await);
    let (guild, _) = guild_with(&app, &b, &[&a]).await;
    let theirs = app
        .post(
            "/api/v1/guilds",
            Some(&b.access_token),
            json!({"name": "Theirs"}),
        )
        .await;
    let dm = app
        .post(
            "/api/v1/users/@me/channels",
            Some(&a.access_token),
            json!({"recipient_id": b.id}),
        )
        .await;
    let dm = dm.body["id"].as_str().unwrap().to_owned();
    let (mut phone, ready) = app.gateway("/gateway/users", &a.access_token).await;
    assert_eq!(ready["folders"], json!([]));

    let folders = "/api/v1/users/@me/folders";
    let work = app
        .post(folders, Some(&a.access_token), json!({"name": "Work"}))
        .await;
    assert_eq!(work.status, Status::CREATED, "{}", work.text);
    let work = work.body["id"].as_str().unwrap().to_owned();
    let update = phone.next_of(&["FOLDER_UPDATE"]).await;
    assert_eq!(update["d"]["folders"][0]["name"], "Work");

    let item = |folder: &str, id: &str| format!("{folders}/{folder}/items/{id}");
    let res = put(&app, &item(&work, &guild), &a, None).await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    let res = put(&app, &item(&work, &dm), &a, Some(json!({"position": 0}))).await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    assert_eq!(
        res.body["items"],
        json!([{"id": dm, "kind": "channel"}, {"id": guild, "kind": "guild"}])
    );
    // Only what is yours: a guild you are not in, a stranger's folder.
    let not_mine = theirs.body["id"].as_str().unwrap();
    assert_eq!(
        put(&app, &item(&work, not_mine), &a, None).await.status,
        Status::NOT_FOUND
    );
    assert_eq!(
        put(&app, &item(&work, &guild), &b, None).await.status,
        Status::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("{folders}/{work}"), Some(&b.access_token))
            .await
            .status,
        Status::NOT_FOUND
    );

    // An item sits in one folder: putting it in another moves it.
    let play = app
        .post(folders, Some(&a.access_token), json!({"name": "Play"}))
        .await
        .body;
    let play = play["id"].as_str().unwrap().to_owned();
    let res = put(&app, &item(&play, &guild), &a, None).await;
    assert_eq!(res.body["items"], json!([{"id": guild, "kind": "guild"}]));
    let all = app.get(folders, Some(&a.access_token)).await.body;
    assert_eq!(all[0]["items"], json!([{"id": dm, "kind": "channel"}]));
    let res = app
        .patch(
            &format!("{folders}/{play}"),
            Some(&a.access_token),
            json!({"name": "Fun", "position": 0}),
        )
        .await;
    assert_eq!(res.status, Status::OK);
    // A guild you leave drops out of your folders.
    assert_eq!(
        app.delete(
            &format!("/api/v1/users/@me/guilds/{guild}"),
            Some(&a.access_token)
        )
        .await
        .status,
        Status::NO_CONTENT
    );
    let all = app.get(folders, Some(&a.access_token)).await.body;
    let fun = all
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Fun")
        .unwrap();
    assert_eq!(fun["items"], json!([]));
    assert_eq!(
        app.delete(&item(&work, &dm), Some(&a.access_token))
            .await
            .status,
        Status::NO_CONTENT
    );
    assert_eq!(
        app.delete(&item(&work, &dm), Some(&a.access_token))
            .await
            .status,
        Status::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("{folders}/{work}"), Some(&a.access_token))
            .await
            .status,
        Status::NO_CONTENT
    );
    // The other device saw each change, in order, ending with the last state.
    let mut last = Value::Null;
    while let Some(Received::Frame(frame)) = phone.recv_within(Duration::from_millis(300)).await {
        if frame["t"] == "FOLDER_UPDATE" {
            last = frame["d"].clone();
        }
    }
    assert_eq!(last["folders"].as_array().unwrap().len(), 1);
    assert_eq!(last["folders"][0]["name"], "Fun");
    let (_, ready) = app.gateway("/gateway/users", &a.access_token).await;
    assert_eq!(ready["folders"], last["folders"]);
    let bad = app
        .post(folders, Some(&a.access_token), json!({"name": " "}))
        .await;
    assert_eq!(bad.status, Status::UNPROCESSABLE_ENTITY);
}
