//! Guilds over REST and live: create, invites and joining, roles and the hierarchy,
//! kicks and bans with what the removed member's sockets stop receiving, ownership,
//! deletion and the audit log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use synctalk_testkit::{Method, Received, Response, Status, TestApp, TestUser};

const VIEW_CHANNEL: u64 = 1 << 10;
const KICK_MEMBERS: u64 = 1 << 1;
const BAN_MEMBERS: u64 = 1 << 2;
const MANAGE_ROLES: u64 = 1 << 28;
const VIEW_AUDIT_LOG: u64 = 1 << 7;
const EVERYONE_DEFAULT: u64 = 70_356_033;

async fn create(app: &TestApp, owner: &TestUser, name: &str) -> Value {
    let res = app
        .post(
            "/api/v1/guilds",
            Some(&owner.access_token),
            json!({"name": name}),
        )
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    res.body
}

async fn invite(app: &TestApp, who: &TestUser, guild: &str, body: Value) -> String {
    let res = app
        .post(
            &format!("/api/v1/guilds/{guild}/invites"),
            Some(&who.access_token),
            body,
        )
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    res.body["code"].as_str().unwrap().to_owned()
}

async fn join(app: &TestApp, who: &TestUser, code: &str) -> Response {
    app.post(
        &format!("/api/v1/invites/{code}"),
        Some(&who.access_token),
        json!({}),
    )
    .await
}

async fn put(app: &TestApp, path: &str, who: &TestUser, body: Option<Value>) -> Response {
    app.request(Method::PUT, path, Some(&who.access_token), body)
        .await
}

/// A guild of `owner` that `members` joined by invite.
async fn guild_with(app: &TestApp, owner: &TestUser, members: &[&TestUser]) -> String {
    let guild = create(app, owner, "Rustaceans").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = invite(app, owner, &guild, json!({})).await;
    for member in members {
        let res = join(app, member, &code).await;
        assert_eq!(res.status, Status::OK, "{}", res.text);
    }
    guild
}

#[actix_web::test]
async fn a_new_guild_has_everyone_and_general_and_only_members_see_it() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let outsider = app.register("outsider").await;
    let (mut ws, ready) = app.gateway("/gateway/guilds", &owner.access_token).await;
    assert_eq!(ready["guilds"], json!([]));

    let guild = create(&app, &owner, "  Rustaceans ").await;
    assert_eq!(guild["name"], "Rustaceans");
    assert_eq!(guild["owner_id"], owner.id.as_str());
    let id = guild["id"].as_str().unwrap();

    let created = ws.dispatch("GUILD_CREATE").await;
    assert!(created["s"].is_i64());
    let d = &created["d"];
    assert_eq!(d["id"], id);
    assert_eq!(d["member_count"], 1);
    assert_eq!(d["member"]["user"]["id"], owner.id.as_str());
    assert_eq!(d["member"]["role_ids"], json!([]));
    assert_eq!(d["roles"][0]["id"], id, "@everyone has the guild's id");
    assert_eq!(d["roles"][0]["name"], "@everyone");
    assert_eq!(d["roles"][0]["permissions"], EVERYONE_DEFAULT.to_string());
    assert_eq!(d["channels"][0]["name"], "general");
    assert_eq!(d["channels"][0]["kind"], "text");

    let mine = app
        .get("/api/v1/users/@me/guilds", Some(&owner.access_token))
        .await;
    assert_eq!(mine.body.as_array().unwrap().len(), 1);
    let res = app
        .get(&format!("/api/v1/guilds/{id}"), Some(&owner.access_token))
        .await;
    assert_eq!(res.status, Status::OK);
    for path in [
        format!("/api/v1/guilds/{id}"),
        format!("/api/v1/guilds/{id}/members"),
        format!("/api/v1/guilds/{id}/roles"),
    ] {
        let res = app.get(&path, Some(&outsider.access_token)).await;
        assert_eq!(res.status, Status::NOT_FOUND, "{path}: {}", res.text);
    }
    let theirs = app
        .get("/api/v1/users/@me/guilds", Some(&outsider.access_token))
        .await;
    assert_eq!(theirs.body, json!([]));

    // A fresh READY carries it, with the same shape as GUILD_CREATE.
    let (_ws2, ready) = app.gateway("/gateway/guilds", &owner.access_token).await;
    assert_eq!(ready["guilds"][0], created["d"]);
}

#[actix_web::test]
async fn invalid_guild_input_is_422_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    for body in [
        json!({"name": "   "}),
        json!({"name": "x".repeat(101)}),
        json!({"name": "ok", "icon_url": "ftp://x"}),
        json!({"name": "a\u{202e}b"}),
        json!({"name": "a\u{0}b"}),
        json!({"name": "ok", "icon_url": "https://x/\u{0}"}),
        json!({}),
    ] {
        let res = app
            .post("/api/v1/guilds", Some(&owner.access_token), body.clone())
            .await;
        assert_eq!(
            res.status,
            Status::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            res.text
        );
        assert_eq!(res.code(), "validation_failed");
    }
    let mine = app
        .get("/api/v1/users/@me/guilds", Some(&owner.access_token))
        .await;
    assert_eq!(mine.body, json!([]));

    let id = create(&app, &owner, "G").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .patch(
            &format!("/api/v1/guilds/{id}"),
            Some(&owner.access_token),
            json!({"name": ""}),
        )
        .await;
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY);
    let res = app
        .post(
            &format!("/api/v1/guilds/{id}/invites"),
            Some(&owner.access_token),
            json!({"max_uses": 101}),
        )
        .await;
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY);
    let res = app
        .post(
            &format!("/api/v1/guilds/{id}/roles"),
            Some(&owner.access_token),
            json!({"permissions": 3072}),
        )
        .await;
    assert_eq!(
        res.status,
        Status::UNPROCESSABLE_ENTITY,
        "a number, not a string"
    );
    let res = app
        .get(&format!("/api/v1/guilds/{id}"), Some(&owner.access_token))
        .await;
    assert_eq!(res.body["name"], "G");
    let roles = app
        .get(
            &format!("/api/v1/guilds/{id}/roles"),
            Some(&owner.access_token),
        )
        .await;
    assert_eq!(roles.body.as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn joining_by_invite_and_its_limits() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (a, b, c) = (
        app.register("aaa").await,
        app.register("bbb").await,
        app.register("ccc").await,
    );
    let guild = create(&app, &owner, "G").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut owner_ws, _) = app.gateway("/gateway/guilds", &owner.access_token).await;
    let code = invite(&app, &owner, &guild, json!({"max_uses": 2})).await;

    let seen = app
        .get(&format!("/api/v1/invites/{code}"), Some(&a.access_token))
        .await;
    assert_eq!(seen.status, Status::OK);
    assert_eq!(seen.body["guild"]["id"], guild.as_str());
    assert_eq!(seen.body["member_count"], 1);

    let (mut a_ws, _) = app.gateway("/gateway/guilds", &a.access_token).await;
    let res = join(&app, &a, &code).await;
    assert_eq!(res.status, Status::OK);
    assert_eq!(res.body["id"], guild.as_str());
    let created = a_ws.dispatch("GUILD_CREATE").await;
    assert_eq!(created["d"]["member_count"], 2);
    let added = owner_ws.next_of(&["GUILD_MEMBER_ADD"]).await;
    assert_eq!(added["d"]["user"]["id"], a.id.as_str());
    assert_eq!(added["d"]["guild_id"], guild.as_str());
    // The joiner hears of themselves too, after GUILD_CREATE.
    let own = a_ws.next_of(&["GUILD_MEMBER_ADD"]).await;
    assert_eq!(own["d"]["user"]["id"], a.id.as_str());

    // Joining again uses nothing up.
    assert_eq!(join(&app, &a, &code).await.status, Status::OK);
    assert_eq!(join(&app, &b, &code).await.status, Status::OK);
    let used_up = join(&app, &c, &code).await;
    assert_eq!(used_up.status, Status::NOT_FOUND, "{}", used_up.text);
    // A member retrying their join (its answer was lost) still gets the guild.
    let retried = join(&app, &b, &code).await;
    assert_eq!(retried.status, Status::OK, "{}", retried.text);
    assert_eq!(retried.body["id"], guild.as_str());

    // Unknown and malformed codes.
    assert_eq!(join(&app, &c, "nope").await.status, Status::NOT_FOUND);
    assert_eq!(join(&app, &c, "..%2F..").await.status, Status::NOT_FOUND);

    // Revoked invites stop working; a plain member cannot revoke others'.
    let code2 = invite(&app, &owner, &guild, json!({})).await;
    let res = app
        .delete(&format!("/api/v1/invites/{code2}"), Some(&a.access_token))
        .await;
    assert_eq!(res.status, Status::FORBIDDEN);
    assert_eq!(res.code(), "missing_permissions");
    let res = app
        .delete(&format!("/api/v1/invites/{code2}"), Some(&c.access_token))
        .await;
    assert_eq!(
        res.status,
        Status::NOT_FOUND,
        "outsiders do not learn it exists"
    );
    let res = app
        .delete(
            &format!("/api/v1/invites/{code2}"),
            Some(&owner.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    assert_eq!(join(&app, &c, &code2).await.status, Status::NOT_FOUND);

    let members = app
        .get(
            &format!("/api/v1/guilds/{guild}/members?limit=2"),
            Some(&owner.access_token),
        )
        .await;
    let page: Vec<&str> = members
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(page.len(), 2);
    let last = page[1];
    let rest = app
        .get(
            &format!("/api/v1/guilds/{guild}/members?after={last}"),
            Some(&owner.access_token),
        )
        .await;
    assert_eq!(rest.body.as_array().unwrap().len(), 1);
    let mut all: Vec<&str> = page.clone();
    all.push(rest.body[0]["user"]["id"].as_str().unwrap());
    let mut sorted = all.clone();
    sorted.sort_unstable();
    assert_eq!(all, sorted, "user-id order");
}

#[actix_web::test]
async fn a_kicked_member_gets_guild_delete_and_then_nothing_of_the_guild() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (a, b) = (app.register("aaa").await, app.register("bbb").await);
    let guild = guild_with(&app, &owner, &[&a, &b]).await;
    let (mut a_ws, ready) = app.gateway("/gateway/guilds", &a.access_token).await;
    assert_eq!(ready["guilds"][0]["id"], guild.as_str());
    let (mut b_ws, _) = app.gateway("/gateway/guilds", &b.access_token).await;

    let res = app
        .request(
            Method::DELETE,
            &format!("/api/v1/guilds/{guild}/members/{}", a.id),
            Some(&b.access_token),
            None,
        )
        .await;
    assert_eq!(res.status, Status::FORBIDDEN, "b lacks KICK_MEMBERS");

    let res = app
        .request_with_headers(
            Method::DELETE,
            &format!("/api/v1/guilds/{guild}/members/{}", a.id),
            Some(&owner.access_token),
            None,
            &[("X-Audit-Log-Reason", "spam")],
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT, "{}", res.text);
    let gone = a_ws.next_of(&["GUILD_DELETE", "GUILD_MEMBER_REMOVE"]).await;
    assert_eq!(gone["t"], "GUILD_DELETE");
    assert_eq!(gone["d"]["id"], guild.as_str());
    let removed = b_ws.next_of(&["GUILD_MEMBER_REMOVE"]).await;
    assert_eq!(removed["d"]["user"]["id"], a.id.as_str());

    // What happens in the guild afterwards reaches b, never a.
    let res = app
        .patch(
            &format!("/api/v1/guilds/{guild}"),
            Some(&owner.access_token),
            json!({"name": "Renamed"}),
        )
        .await;
    assert_eq!(res.status, Status::OK);
    let update = b_ws.next_of(&["GUILD_UPDATE"]).await;
    assert_eq!(update["d"]["name"], "Renamed");
    a_ws.none_of(
        &["GUILD_UPDATE", "GUILD_MEMBER_REMOVE"],
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(
        app.get(&format!("/api/v1/guilds/{guild}"), Some(&a.access_token))
            .await
            .status,
        Status::NOT_FOUND
    );
    // A fresh READY of a no longer lists it; the audit log has the kick and its reason.
    let (_ws, ready) = app.gateway("/gateway/guilds", &a.access_token).await;
    assert_eq!(ready["guilds"], json!([]));
    let log = app
        .get(
            &format!("/api/v1/guilds/{guild}/audit-log"),
            Some(&owner.access_token),
        )
        .await;
    let kick = log
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "member_kick")
        .unwrap()
        .clone();
    assert_eq!(kick["target_id"], a.id.as_str());
    assert_eq!(kick["reason"], "spam");
    assert_eq!(kick["actor_id"], owner.id.as_str());
    assert_eq!(
        app.get(
            &format!("/api/v1/guilds/{guild}/audit-log"),
            Some(&b.access_token)
        )
        .await
        .status,
        Status::FORBIDDEN
    );
}

#[actix_web::test]
async fn bans_remove_at_once_and_keep_out() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (a, m) = (app.register("aaa").await, app.register("mod").await);
    let guild = guild_with(&app, &owner, &[&a, &m]).await;
    let code = invite(&app, &owner, &guild, json!({})).await;
    let (mut a_ws, _) = app.gateway("/gateway/guilds", &a.access_token).await;
    let plain = app.register("plain").await;
    assert_eq!(join(&app, &plain, &code).await.status, Status::OK);
    let (mut plain_ws, _) = app.gateway("/gateway/guilds", &plain.access_token).await;

    // A moderator role with BAN_MEMBERS, given to m.
    let role = app
        .post(
            &format!("/api/v1/guilds/{guild}/roles"),
            Some(&owner.access_token),
            json!({"name": "mods", "permissions": BAN_MEMBERS.to_string()}),
        )
        .await;
    assert_eq!(role.status, Status::CREATED, "{}", role.text);
    let role_id = role.body["id"].as_str().unwrap();
    let res = put(
        &app,
        &format!("/api/v1/guilds/{guild}/members/{}/roles/{role_id}", m.id),
        &owner,
        None,
    )
    .await;
    assert_eq!(res.status, Status::NO_CONTENT, "{}", res.text);
    let (mut m_ws, _) = app.gateway("/gateway/guilds", &m.access_token).await;

    // m bans a (below them), not the owner.
    let res = put(
        &app,
        &format!("/api/v1/guilds/{guild}/bans/{}", owner.id),
        &m,
        Some(json!({"reason": "x"})),
    )
    .await;
    assert_eq!(res.status, Status::FORBIDDEN);
    let res = put(
        &app,
        &format!("/api/v1/guilds/{guild}/bans/{}", a.id),
        &m,
        Some(json!({"reason": "rude"})),
    )
    .await;
    assert_eq!(res.status, Status::NO_CONTENT, "{}", res.text);
    let gone = a_ws.next_of(&["GUILD_DELETE"]).await;
    assert_eq!(gone["d"]["id"], guild.as_str());
    // Those who may see bans hear of it; the other members only that a left.
    let banned = m_ws.next_of(&["GUILD_BAN_ADD"]).await;
    assert_eq!(banned["d"]["user"]["id"], a.id.as_str());
    let removed = plain_ws
        .next_of(&["GUILD_MEMBER_REMOVE", "GUILD_BAN_ADD"])
        .await;
    assert_eq!(removed["t"], "GUILD_MEMBER_REMOVE");
    plain_ws
        .none_of(&["GUILD_BAN_ADD"], Duration::from_millis(300))
        .await;
    let res = app
        .get(
            &format!("/api/v1/guilds/{guild}/bans"),
            Some(&plain.access_token),
        )
        .await;
    assert_eq!(res.status, Status::FORBIDDEN);
    let rejoin = join(&app, &a, &code).await;
    assert_eq!(rejoin.status, Status::FORBIDDEN);
    assert_eq!(rejoin.code(), "banned");
    let bans = app
        .get(
            &format!("/api/v1/guilds/{guild}/bans"),
            Some(&m.access_token),
        )
        .await;
    assert_eq!(bans.body[0]["user"]["id"], a.id.as_str());
    assert_eq!(bans.body[0]["reason"], "rude");
    // Banning someone who is not (or no longer) a member works too; again is fine.
    let res = put(
        &app,
        &format!("/api/v1/guilds/{guild}/bans/{}", a.id),
        &owner,
        None,
    )
    .await;
    assert_eq!(res.status, Status::NO_CONTENT);

    let res = app
        .delete(
            &format!("/api/v1/guilds/{guild}/bans/{}", a.id),
            Some(&m.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    assert_eq!(join(&app, &a, &code).await.status, Status::OK);
    let res = app
        .delete(
            &format!("/api/v1/guilds/{guild}/bans/{}", a.id),
            Some(&m.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NOT_FOUND, "no ban to lift");
}

#[actix_web::test]
async fn roles_follow_the_hierarchy_and_nobody_grants_what_they_lack() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (m, a) = (app.register("mod").await, app.register("aaa").await);
    let guild = guild_with(&app, &owner, &[&m, &a]).await;
    let roles = format!("/api/v1/guilds/{guild}/roles");

    // Plain members cannot make roles.
    let res = app
        .post(&roles, Some(&a.access_token), json!({"name": "x"}))
        .await;
    assert_eq!(res.status, Status::FORBIDDEN);

    let low = app
        .post(&roles, Some(&owner.access_token), json!({"name": "low"}))
        .await
        .body;
    let high = app
        .post(
            &roles,
            Some(&owner.access_token),
            json!({"name": "high", "permissions": (MANAGE_ROLES | KICK_MEMBERS).to_string()}),
        )
        .await
        .body;
    // New roles go just above @everyone: high is 1, low moved to 2.
    let list = app.get(&roles, Some(&a.access_token)).await.body;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["@everyone", "high", "low"]);
    // Put high above low, and give it to m.
    let res = app
        .patch(
            &format!("{roles}/{}", high["id"].as_str().unwrap()),
            Some(&owner.access_token),
            json!({"position": 2}),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    assert_eq!(res.body["position"], 2);
    let res = put(
        &app,
        &format!(
            "/api/v1/guilds/{guild}/members/{}/roles/{}",
            m.id,
            high["id"].as_str().unwrap()
        ),
        &owner,
        None,
    )
    .await;
    assert_eq!(res.status, Status::NO_CONTENT);

    // m manages low (below), not high (their own) nor roles it would put above itself.
    let low_path = format!("{roles}/{}", low["id"].as_str().unwrap());
    let high_path = format!("{roles}/{}", high["id"].as_str().unwrap());
    let res = app
        .patch(
            &low_path,
            Some(&m.access_token),
            json!({"name": "lower", "color": 255}),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    let res = app
        .patch(&high_path, Some(&m.access_token), json!({"name": "mine"}))
        .await;
    assert_eq!(res.status, Status::FORBIDDEN);
    let res = app
        .patch(&low_path, Some(&m.access_token), json!({"position": 2}))
        .await;
    assert_eq!(res.status, Status::FORBIDDEN, "not up to their own level");
    // Nobody grants what they lack: m has no BAN_MEMBERS.
    let res = app
        .patch(
            &low_path,
            Some(&m.access_token),
            json!({"permissions": BAN_MEMBERS.to_string()}),
        )
        .await;
    assert_eq!(res.status, Status::FORBIDDEN);
    assert_eq!(res.code(), "missing_permissions");
    let res = app
        .patch(
            &low_path,
            Some(&m.access_token),
            json!({"permissions": KICK_MEMBERS.to_string()}),
        )
        .await;
    assert_eq!(res.status, Status::OK);
    assert_eq!(res.body["permissions"], KICK_MEMBERS.to_string());
    // Giving a role grants its permissions: m cannot give one with BAN_MEMBERS.
    let banners = app
        .post(
            &roles,
            Some(&owner.access_token),
            json!({"name": "banners", "permissions": BAN_MEMBERS.to_string()}),
        )
        .await
        .body;
    let res = put(
        &app,
        &format!(
            "/api/v1/guilds/{guild}/members/{}/roles/{}",
            a.id,
            banners["id"].as_str().unwrap()
        ),
        &m,
        None,
    )
    .await;
    assert_eq!(res.status, Status::FORBIDDEN, "{}", res.text);
    assert_eq!(res.code(), "missing_permissions");
    // m assigns low to a, but cannot kick m's equals or the owner.
    let res = put(
        &app,
        &format!(
            "/api/v1/guilds/{guild}/members/{}/roles/{}",
            a.id,
            low["id"].as_str().unwrap()
        ),
        &m,
        None,
    )
    .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let member = app
        .get(
            &format!("/api/v1/guilds/{guild}/members/{}", a.id),
            Some(&a.access_token),
        )
        .await;
    assert_eq!(member.body["role_ids"], json!([low["id"]]));
    let res = app
        .delete(
            &format!("/api/v1/guilds/{guild}/members/{}", owner.id),
            Some(&m.access_token),
        )
        .await;
    assert_eq!(res.status, Status::FORBIDDEN);
    // @everyone cannot be renamed or deleted; its permissions can be edited.
    let everyone = format!("{roles}/{guild}");
    assert_eq!(
        app.patch(&everyone, Some(&owner.access_token), json!({"name": "all"}))
            .await
            .status,
        Status::CONFLICT
    );
    assert_eq!(
        app.delete(&everyone, Some(&owner.access_token))
            .await
            .status,
        Status::CONFLICT
    );
    // Deleting low takes it from a.
    assert_eq!(
        app.delete(&low_path, Some(&m.access_token)).await.status,
        Status::NO_CONTENT
    );
    let member = app
        .get(
            &format!("/api/v1/guilds/{guild}/members/{}", a.id),
            Some(&a.access_token),
        )
        .await;
    assert_eq!(member.body["role_ids"], json!([]));
    let log = app
        .get(
            &format!("/api/v1/guilds/{guild}/audit-log?limit=100"),
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
    for action in [
        "role_create",
        "role_update",
        "role_delete",
        "member_role_update",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    // VIEW_AUDIT_LOG is needed to read it.
    assert_eq!(
        app.get(
            &format!("/api/v1/guilds/{guild}/audit-log"),
            Some(&m.access_token)
        )
        .await
        .status,
        Status::FORBIDDEN
    );
    let _ = VIEW_AUDIT_LOG;
}

#[actix_web::test]
async fn a_role_change_that_hides_channels_unsubscribes_at_once() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let a = app.register("aaa").await;
    let guild = guild_with(&app, &owner, &[&a]).await;
    let (mut a_ws, ready) = app.gateway("/gateway/guilds", &a.access_token).await;
    let general = ready["guilds"][0]["channels"][0].clone();
    assert_eq!(general["name"], "general");

    // @everyone loses VIEW_CHANNEL: a loses general (the owner sees everything).
    let everyone = format!("/api/v1/guilds/{guild}/roles/{guild}");
    let res = app
        .patch(
            &everyone,
            Some(&owner.access_token),
            json!({"permissions": (EVERYONE_DEFAULT & !VIEW_CHANNEL).to_string()}),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    let lost = a_ws.next_of(&["CHANNEL_DELETE", "CHANNEL_CREATE"]).await;
    assert_eq!(lost["t"], "CHANNEL_DELETE");
    assert_eq!(lost["d"]["id"], general["id"]);
    let (_, again) = app.gateway("/gateway/guilds", &a.access_token).await;
    assert_eq!(again["guilds"][0]["channels"], json!([]));
    let (_, owners) = app.gateway("/gateway/guilds", &owner.access_token).await;
    assert_eq!(owners["guilds"][0]["channels"][0]["id"], general["id"]);

    // A role with VIEW_CHANNEL brings it back to a.
    let role = app
        .post(
            &format!("/api/v1/guilds/{guild}/roles"),
            Some(&owner.access_token),
            json!({"name": "seers", "permissions": VIEW_CHANNEL.to_string()}),
        )
        .await;
    let role_id = role.body["id"].as_str().unwrap();
    let res = put(
        &app,
        &format!("/api/v1/guilds/{guild}/members/{}/roles/{role_id}", a.id),
        &owner,
        None,
    )
    .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let gained = a_ws.next_of(&["CHANNEL_DELETE", "CHANNEL_CREATE"]).await;
    assert_eq!(gained["t"], "CHANNEL_CREATE");
    assert_eq!(gained["d"]["id"], general["id"]);
    // Taking the role away hides it again.
    let res = app
        .request(
            Method::DELETE,
            &format!("/api/v1/guilds/{guild}/members/{}/roles/{role_id}", a.id),
            Some(&owner.access_token),
            None,
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let lost = a_ws.next_of(&["CHANNEL_DELETE", "CHANNEL_CREATE"]).await;
    assert_eq!(lost["t"], "CHANNEL_DELETE");
}

#[actix_web::test]
async fn ownership_moves_and_only_the_owner_deletes() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let a = app.register("aaa").await;
    let guild = guild_with(&app, &owner, &[&a]).await;
    let leave = format!("/api/v1/users/@me/guilds/{guild}");
    let res = app.delete(&leave, Some(&owner.access_token)).await;
    assert_eq!(res.status, Status::CONFLICT, "{}", res.text);
    assert_eq!(
        app.delete(&format!("/api/v1/guilds/{guild}"), Some(&a.access_token))
            .await
            .status,
        Status::FORBIDDEN
    );
    let res = app
        .patch(
            &format!("/api/v1/guilds/{guild}"),
            Some(&a.access_token),
            json!({"owner_id": a.id}),
        )
        .await;
    assert_eq!(res.status, Status::FORBIDDEN);
    let stranger = app.register("stranger").await;
    let res = app
        .patch(
            &format!("/api/v1/guilds/{guild}"),
            Some(&owner.access_token),
            json!({"owner_id": stranger.id}),
        )
        .await;
    assert_eq!(res.status, Status::NOT_FOUND, "no member: {}", res.text);
    let res = app
        .patch(
            &format!("/api/v1/guilds/{guild}"),
            Some(&owner.access_token),
            json!({"owner_id": a.id}),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    assert_eq!(res.body["owner_id"], a.id.as_str());
    assert_eq!(
        app.delete(&leave, Some(&owner.access_token)).await.status,
        Status::NO_CONTENT
    );
    assert_eq!(
        app.get(
            &format!("/api/v1/guilds/{guild}"),
            Some(&owner.access_token)
        )
        .await
        .status,
        Status::NOT_FOUND
    );

    let (mut a_ws, _) = app.gateway("/gateway/guilds", &a.access_token).await;
    assert_eq!(
        app.delete(&format!("/api/v1/guilds/{guild}"), Some(&a.access_token))
            .await
            .status,
        Status::NO_CONTENT
    );
    let gone = a_ws.next_of(&["GUILD_DELETE"]).await;
    assert_eq!(gone["d"]["id"], guild.as_str());
    assert_eq!(
        app.get(&format!("/api/v1/guilds/{guild}"), Some(&a.access_token))
            .await
            .status,
        Status::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/v1/users/@me/guilds", Some(&a.access_token))
            .await
            .body,
        json!([])
    );
}

#[actix_web::test]
async fn guild_events_reach_a_member_on_another_node() {
    let nodes = TestApp::cluster(2, |_| {}).await;
    let owner = nodes[0].register("owner").await;
    let a = nodes[0].register("aaa").await;
    let guild = guild_with(&nodes[0], &owner, &[&a]).await;
    let (mut a_ws, _) = nodes[1].gateway("/gateway/guilds", &a.access_token).await;
    let b = nodes[0].register("bbb").await;
    let code = invite(&nodes[0], &owner, &guild, json!({})).await;
    assert_eq!(join(&nodes[0], &b, &code).await.status, Status::OK);
    let added = a_ws.next_of(&["GUILD_MEMBER_ADD"]).await;
    assert_eq!(added["d"]["user"]["id"], b.id.as_str());
    let res = nodes[0]
        .request(
            Method::DELETE,
            &format!("/api/v1/guilds/{guild}/members/{}", a.id),
            Some(&owner.access_token),
            None,
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let gone = a_ws.next_of(&["GUILD_DELETE"]).await;
    assert_eq!(gone["d"]["id"], guild.as_str());
}

#[actix_web::test]
async fn presence_reaches_those_who_share_a_guild_and_stops_when_they_no_longer_do() {
    let app = TestApp::spawn_with(|s| s.presence_grace_ms = 100).await;
    let owner = app.register("owner").await;
    let (a, b) = (app.register("aaa").await, app.register("bbb").await);
    let guild = guild_with(&app, &owner, &[&a, &b]).await;
    // b watches on /gateway/users (a is no friend of b's).
    let (mut b_ws, _) = app.gateway("/gateway/users", &b.access_token).await;
    let (a_ws, _) = app.gateway("/gateway/guilds", &a.access_token).await;
    let online = loop {
        let frame = b_ws.dispatch("PRESENCE_UPDATE").await;
        if frame["d"]["user_id"] == a.id.as_str() {
            break frame;
        }
    };
    assert_eq!(online["d"]["status"], "online");
    // Once a has left, b no longer hears of a.
    drop(a_ws);
    let offline = loop {
        let frame = b_ws.dispatch("PRESENCE_UPDATE").await;
        if frame["d"]["user_id"] == a.id.as_str() {
            break frame;
        }
    };
    assert_eq!(offline["d"]["status"], "offline");
    let res = app
        .delete(
            &format!("/api/v1/users/@me/guilds/{guild}"),
            Some(&a.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let (_again, _) = app.gateway("/gateway/guilds", &a.access_token).await;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
    while let Some(Received::Frame(frame)) = b_ws
        .recv_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        assert!(
            !(frame["t"] == "PRESENCE_UPDATE" && frame["d"]["user_id"] == a.id.as_str()),
            "{frame}"
        );
    }
}
