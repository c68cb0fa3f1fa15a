//! A channel's access is read two ways: in one statement (every read-only request:
//! sends, pages, reactions...) and row by row under locks (changes of who sees what).
//! Both must decide alike for every kind of standing: roles and overwrites that allow
//! and deny, a member overwrite over a role's, a private category's child, a guild that
//! was deleted, a member who left, a DM and its outsiders.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel_async::AsyncConnection;
use serde_json::json;
use synctalk_channels::access;
use synctalk_db::AsyncPgConnection;
use synctalk_kernel::{AppResult, ChannelId, UserId};
use synctalk_testkit::{Status, TestApp};
use uuid::Uuid;

const VIEW_CHANNEL: u64 = 1 << 10;
const SEND_MESSAGES: u64 = 1 << 11;
const MANAGE_MESSAGES: u64 = 1 << 13;
const ATTACH_FILES: u64 = 1 << 15;

/// What a decision comes to: the channel, its guild and the permissions, or the error.
fn outcome(decided: AppResult<access::ChannelAccess>) -> String {
    match decided {
        Ok(a) => format!(
            "{} {:?} {:?} {} roles={:?}",
            a.row.id.0,
            a.kind,
            a.guild
                .as_ref()
                .map(|g| (g.guild.id.0, g.guild.name.clone())),
            a.permissions.0,
            a.guild.as_ref().map(|g| {
                let mut r = g.member_roles.clone();
                r.sort_by_key(|r| r.0);
                (r, g.role_rows.len())
            }),
        ),
        Err(e) => format!("error {:?}", e.code()),
    }
}

async fn both(conn: &mut AsyncPgConnection, channel: &str, user: &str) -> (String, String) {
    let channel = ChannelId(Uuid::parse_str(channel).unwrap());
    let user = UserId(Uuid::parse_str(user).unwrap());
    let unlocked = outcome(access::load(conn, channel, user, false).await);
    let locked = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            Ok(outcome(access::load(conn, channel, user, true).await))
        })
        .await
        .unwrap();
    (unlocked, locked)
}

#[actix_web::test]
async fn one_statement_and_locked_reads_decide_every_standing_alike() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let mod_ = app.register("moderator").await;
    let plain = app.register("plain").await;
    let muted = app.register("muted").await;
    let leaver = app.register("leaver").await;
    let outsider = app.register("outsider").await;
    let (guild, general) = app
        .guild_with(&owner, &[&mod_, &plain, &muted, &leaver])
        .await;
    let owner_token = Some(owner.access_token.as_str());

    let role = |name: &'static str, permissions: u64| {
        let app = &app;
        let guild = guild.clone();
        async move {
            let res = app
                .post(
                    &format!("/api/v1/guilds/{guild}/roles"),
                    owner_token,
                    json!({"name": name, "permissions": permissions.to_string()}),
                )
                .await;
            assert_eq!(res.status, Status::CREATED, "{}", res.text);
            res.body["id"].as_str().unwrap().to_owned()
        }
    };
    let mods = role("mods", MANAGE_MESSAGES | ATTACH_FILES).await;
    let quiet = role("quiet", 0).await;
    for (user, role) in [(&mod_, &mods), (&muted, &quiet), (&plain, &quiet)] {
        let res = app
            .put(
                &format!("/api/v1/guilds/{guild}/members/{}/roles/{role}", user.id),
                owner_token,
                None,
            )
            .await;
        assert!(res.status.is_success(), "{}", res.text);
    }
    let channel = |body: serde_json::Value| {
        let app = &app;
        let guild = guild.clone();
        async move {
            let res = app
                .post(
                    &format!("/api/v1/guilds/{guild}/channels"),
                    owner_token,
                    body,
                )
                .await;
            assert_eq!(res.status, Status::CREATED, "{}", res.text);
            res.body["id"].as_str().unwrap().to_owned()
        }
    };
    let overwrite = |channel: String, target: String, kind: &'static str, allow: u64, deny: u64| {
        let app = &app;
        async move {
            let res = app
                .put(
                    &format!("/api/v1/channels/{channel}/permissions/{target}"),
                    owner_token,
                    Some(
                        json!({"type": kind, "allow": allow.to_string(), "deny": deny.to_string()}),
                    ),
                )
                .await;
            assert_eq!(res.status, Status::OK, "{}", res.text);
        }
    };
    // A private category (hidden from @everyone, shown to mods) with a child synced to
    // it; a channel where "quiet" may not send but one quiet member may, by name.
    let private = channel(json!({"name": "staff", "kind": "category"})).await;
    overwrite(private.clone(), guild.clone(), "role", 0, VIEW_CHANNEL).await;
    overwrite(private.clone(), mods.clone(), "role", VIEW_CHANNEL, 0).await;
    let child = channel(json!({"name": "staff-chat", "kind": "text", "parent_id": private})).await;
    overwrite(child.clone(), guild.clone(), "role", 0, VIEW_CHANNEL).await;
    overwrite(child.clone(), mods.clone(), "role", VIEW_CHANNEL, 0).await;
    let hushed = channel(json!({"name": "hushed", "kind": "text"})).await;
    overwrite(hushed.clone(), quiet.clone(), "role", 0, SEND_MESSAGES).await;
    overwrite(hushed.clone(), plain.id.clone(), "member", SEND_MESSAGES, 0).await;
    overwrite(hushed.clone(), mod_.id.clone(), "member", 0, VIEW_CHANNEL).await;
    let voice = channel(json!({"name": "talk", "kind": "voice"})).await;
    let dm = app.open_dm(&owner, &plain).await;
    let group = app.open_group_dm(&owner, &[&mod_, &muted]).await;
    let res = app
        .delete(
            &format!("/api/v1/users/@me/guilds/{guild}"),
            Some(&leaver.access_token),
        )
        .await;
    assert!(res.status.is_success(), "{}", res.text);

    let mut conn = app.db.connect().await;
    let users = [&owner, &mod_, &plain, &muted, &leaver, &outsider];
    let channels = [&general, &private, &child, &hushed, &voice, &dm, &group];
    let mut granted = 0;
    for channel in channels {
        for user in users {
            let (unlocked, locked) = both(&mut conn, channel, &user.id).await;
            assert_eq!(unlocked, locked, "{} in {channel}", user.username);
            granted += usize::from(!unlocked.starts_with("error"));
        }
    }
    // Neither all nor none: the standings differ.
    assert!(granted > 10 && granted < 35, "{granted} granted");
    let (hushed_plain, _) = both(&mut conn, &hushed, &plain.id).await;
    let (hushed_muted, _) = both(&mut conn, &hushed, &muted.id).await;
    assert_ne!(hushed_plain, hushed_muted, "the member overwrite counts");
    assert!(
        both(&mut conn, &hushed, &mod_.id)
            .await
            .0
            .starts_with("error")
    );
    assert!(
        !both(&mut conn, &child, &mod_.id)
            .await
            .0
            .starts_with("error")
    );
    assert!(
        both(&mut conn, &child, &plain.id)
            .await
            .0
            .starts_with("error")
    );

    // A deleted guild's channels are as unknown as any.
    let res = app
        .delete(&format!("/api/v1/guilds/{guild}"), owner_token)
        .await;
    assert!(res.status.is_success(), "{}", res.text);
    for user in users {
        let (unlocked, locked) = both(&mut conn, &general, &user.id).await;
        assert_eq!(unlocked, locked);
        assert_eq!(unlocked, "error NotFound", "{}", user.username);
    }
    // An unknown channel.
    let (unlocked, locked) = both(&mut conn, &Uuid::now_v7().to_string(), &owner.id).await;
    assert_eq!(
        (unlocked.as_str(), locked.as_str()),
        ("error NotFound", "error NotFound")
    );
}
