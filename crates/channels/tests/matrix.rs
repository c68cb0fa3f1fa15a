//! The authorization matrix of guilds, channels and messages: every operation the
//! OpenAPI document tags `guilds`, `channels` or `messaging` (read from the document,
//! so a new route cannot be left out), tried by an outsider, a plain member, a member whose role has exactly
//! the permission the route needs, and the owner, each on a fresh guild; each gets
//! exactly the documented status. A private resource is 404 to those who cannot see
//! it, never 403.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use serde_json::{Value, json};
use synctalk_testkit::{Method, Status, TestApp, TestUser};

const KICK_MEMBERS: u64 = 1 << 1;
const BAN_MEMBERS: u64 = 1 << 2;
const MANAGE_CHANNELS: u64 = 1 << 4;
const MANAGE_GUILD: u64 = 1 << 5;
const VIEW_AUDIT_LOG: u64 = 1 << 7;
const MANAGE_MESSAGES: u64 = 1 << 13;
const MANAGE_NICKNAMES: u64 = 1 << 27;
const MANAGE_ROLES: u64 = 1 << 28;

/// What a row needs set up beyond the common guild.
#[derive(Clone, Copy, PartialEq)]
enum Setup {
    None,
    /// Each actor's target user is banned first.
    BanTargets,
    /// Each actor's channel has an overwrite for the actor's role.
    Overwrites,
    /// Each actor's target has the actor's role.
    GiveRoles,
}

struct Row {
    method: Method,
    path: &'static str,
    /// The permission of the "permitted" member's role.
    permission: u64,
    body: Option<Value>,
    setup: Setup,
    /// Outsider, plain member, permitted member, owner.
    expect: [u16; 4],
    /// The code of a 403.
    refusal: &'static str,
    /// A query string for the request (`?q=...`).
    query: &'static str,
}

fn row(
    method: Method,
    path: &'static str,
    permission: u64,
    body: Option<Value>,
    expect: [u16; 4],
) -> Row {
    Row {
        method,
        path,
        permission,
        body,
        setup: Setup::None,
        expect,
        refusal: "missing_permissions",
        query: "",
    }
}

fn rows() -> Vec<Row> {
    use Method as M;
    let named = || Some(json!({"name": "renamed"}));
    let mut rows = vec![
        row(
            M::POST,
            "/api/v1/guilds",
            0,
            Some(json!({"name": "mine"})),
            [201, 201, 201, 201],
        ),
        row(
            M::GET,
            "/api/v1/users/@me/guilds",
            0,
            None,
            [200, 200, 200, 200],
        ),
        row(
            M::DELETE,
            "/api/v1/users/@me/guilds/{guild_id}",
            0,
            None,
            [404, 204, 204, 409],
        ),
        row(
            M::GET,
            "/api/v1/guilds/{guild_id}",
            0,
            None,
            [404, 200, 200, 200],
        ),
        row(
            M::PATCH,
            "/api/v1/guilds/{guild_id}",
            MANAGE_GUILD,
            named(),
            [404, 403, 200, 200],
        ),
        row(
            M::DELETE,
            "/api/v1/guilds/{guild_id}",
            MANAGE_GUILD,
            None,
            [404, 403, 403, 204],
        ),
        row(
            M::GET,
            "/api/v1/guilds/{guild_id}/members",
            0,
            None,
            [404, 200, 200, 200],
        ),
        row(
            M::GET,
            "/api/v1/guilds/{guild_id}/members/{user_id}",
            0,
            None,
            [404, 200, 200, 200],
        ),
        row(
            M::PATCH,
            "/api/v1/guilds/{guild_id}/members/{user_id}",
            MANAGE_NICKNAMES,
            Some(json!({"nick": "nick"})),
            [404, 403, 200, 200],
        ),
        row(
            M::DELETE,
            "/api/v1/guilds/{guild_id}/members/{user_id}",
            KICK_MEMBERS,
            None,
            [404, 403, 204, 204],
        ),
        row(
            M::PUT,
            "/api/v1/guilds/{guild_id}/members/{user_id}/roles/{role_id}",
            MANAGE_ROLES,
            None,
            [404, 403, 204, 204],
        ),
        Row {
            setup: Setup::GiveRoles,
            ..row(
                M::DELETE,
                "/api/v1/guilds/{guild_id}/members/{user_id}/roles/{role_id}",
                MANAGE_ROLES,
                None,
                [404, 403, 204, 204],
            )
        },
        row(
            M::GET,
            "/api/v1/guilds/{guild_id}/roles",
            0,
            None,
            [404, 200, 200, 200],
        ),
        row(
            M::POST,
            "/api/v1/guilds/{guild_id}/roles",
            MANAGE_ROLES,
            named(),
            [404, 403, 201, 201],
        ),
        row(
            M::PATCH,
            "/api/v1/guilds/{guild_id}/roles/{role_id}",
            MANAGE_ROLES,
            named(),
            [404, 403, 200, 200],
        ),
        row(
            M::DELETE,
            "/api/v1/guilds/{guild_id}/roles/{role_id}",
            MANAGE_ROLES,
            None,
            [404, 403, 204, 204],
        ),
        row(
            M::GET,
            "/api/v1/guilds/{guild_id}/bans",
            BAN_MEMBERS,
            None,
            [404, 403, 200, 200],
        ),
        row(
            M::PUT,
            "/api/v1/guilds/{guild_id}/bans/{user_id}",
            BAN_MEMBERS,
            Some(json!({"reason": "r"})),
            [404, 403, 204, 204],
        ),
        Row {
            setup: Setup::BanTargets,
            ..row(
                M::DELETE,
                "/api/v1/guilds/{guild_id}/bans/{user_id}",
                BAN_MEMBERS,
                None,
                [404, 403, 204, 204],
            )
        },
        row(
            M::GET,
            "/api/v1/guilds/{guild_id}/invites",
            MANAGE_GUILD,
            None,
            [404, 403, 200, 200],
        ),
        // CREATE_INVITE is @everyone's by default.
        row(
            M::POST,
            "/api/v1/guilds/{guild_id}/invites",
            0,
            Some(json!({})),
            [404, 201, 201, 201],
        ),
        // Anyone signed in may look at an invite and join with it.
        row(
            M::GET,
            "/api/v1/invites/{code}",
            0,
            None,
            [200, 200, 200, 200],
        ),
        row(
            M::POST,
            "/api/v1/invites/{code}",
            0,
            None,
            [200, 200, 200, 200],
        ),
        row(
            M::DELETE,
            "/api/v1/invites/{code}",
            MANAGE_GUILD,
            None,
            [404, 403, 204, 204],
        ),
        row(
            M::GET,
            "/api/v1/guilds/{guild_id}/audit-log",
            VIEW_AUDIT_LOG,
            None,
            [404, 403, 200, 200],
        ),
        row(
            M::GET,
            "/api/v1/guilds/{guild_id}/channels",
            0,
            None,
            [404, 200, 200, 200],
        ),
        row(
            M::GET,
            "/api/v1/channels/{channel_id}/messages",
            0,
            None,
            [404, 200, 200, 200],
        ),
        row(
            M::POST,
            "/api/v1/channels/{channel_id}/messages",
            0,
            Some(json!({"content": "hi"})),
            [404, 201, 201, 201],
        ),
        row(
            M::GET,
            "/api/v1/channels/{channel_id}/messages/{message_id}",
            0,
            None,
            [404, 200, 200, 200],
        ),
        Row {
            refusal: "forbidden",
            ..row(
                M::PATCH,
                "/api/v1/channels/{channel_id}/messages/{message_id}",
                MANAGE_MESSAGES,
                Some(json!({"content": "edited"})),
                [404, 403, 403, 200],
            )
        },
        row(
            M::DELETE,
            "/api/v1/channels/{channel_id}/messages/{message_id}",
            MANAGE_MESSAGES,
            None,
            [404, 403, 204, 204],
        ),
        row(
            M::PUT,
            "/api/v1/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
            0,
            None,
            [404, 204, 204, 204],
        ),
        row(
            M::DELETE,
            "/api/v1/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
            0,
            None,
            [404, 204, 204, 204],
        ),
        row(
            M::GET,
            "/api/v1/channels/{channel_id}/messages/{message_id}/reactions/{emoji}",
            0,
            None,
            [404, 200, 200, 200],
        ),
        row(
            M::GET,
            "/api/v1/channels/{channel_id}/messages/{message_id}/receipts",
            0,
            None,
            [404, 200, 200, 200],
        ),
        row(
            M::GET,
            "/api/v1/channels/{channel_id}/pins",
            0,
            None,
            [404, 200, 200, 200],
        ),
        row(
            M::POST,
            "/api/v1/channels/{channel_id}/typing",
            0,
            Some(json!({})),
            [404, 204, 204, 204],
        ),
        row(
            M::POST,
            "/api/v1/channels/{channel_id}/messages/{message_id}/ack",
            0,
            Some(json!({})),
            [404, 200, 200, 200],
        ),
        row(
            M::GET,
            "/api/v1/users/@me/read-states",
            0,
            None,
            [200, 200, 200, 200],
        ),
        Row {
            query: "?q=hello",
            ..row(
                M::GET,
                "/api/v1/channels/{channel_id}/messages/search",
                0,
                None,
                [404, 200, 200, 200],
            )
        },
        Row {
            query: "?q=hello",
            ..row(
                M::GET,
                "/api/v1/guilds/{guild_id}/messages/search",
                0,
                None,
                [404, 200, 200, 200],
            )
        },
        row(
            M::PUT,
            "/api/v1/channels/{channel_id}/pins/{message_id}",
            MANAGE_MESSAGES,
            None,
            [404, 403, 204, 204],
        ),
        row(
            M::DELETE,
            "/api/v1/channels/{channel_id}/pins/{message_id}",
            MANAGE_MESSAGES,
            None,
            [404, 403, 204, 204],
        ),
        row(
            M::POST,
            "/api/v1/guilds/{guild_id}/channels",
            MANAGE_CHANNELS,
            named(),
            [404, 403, 201, 201],
        ),
        row(
            M::GET,
            "/api/v1/channels/{channel_id}",
            0,
            None,
            [404, 200, 200, 200],
        ),
        row(
            M::PATCH,
            "/api/v1/channels/{channel_id}",
            MANAGE_CHANNELS,
            named(),
            [404, 403, 200, 200],
        ),
        row(
            M::DELETE,
            "/api/v1/channels/{channel_id}",
            MANAGE_CHANNELS,
            None,
            [404, 403, 204, 204],
        ),
        row(
            M::PUT,
            "/api/v1/channels/{channel_id}/permissions/{target_id}",
            MANAGE_ROLES,
            Some(json!({"type": "role", "allow": "0", "deny": "0"})),
            [404, 403, 200, 200],
        ),
        Row {
            setup: Setup::Overwrites,
            ..row(
                M::DELETE,
                "/api/v1/channels/{channel_id}/permissions/{target_id}",
                MANAGE_ROLES,
                None,
                [404, 403, 204, 204],
            )
        },
    ];
    // Anyone's own DMs.
    rows.push(row(
        M::GET,
        "/api/v1/users/@me/channels",
        0,
        None,
        [200, 200, 200, 200],
    ));
    rows
}

/// The people of every row: reused across rows, each row on a guild of its own.
struct People {
    owner: TestUser,
    outsider: TestUser,
    plain: TestUser,
    permitted: TestUser,
    /// One target per actor, members of every row's guild.
    targets: [TestUser; 4],
}

/// One row's guild, with a resource of each kind per actor.
struct Fixture {
    guild: String,
    roles: Vec<String>,
    codes: Vec<String>,
    channels: Vec<String>,
    /// A message of the owner in each channel.
    messages: Vec<String>,
}

async fn ok(res: synctalk_testkit::Response, status: Status) -> Value {
    assert_eq!(res.status, status, "{}", res.text);
    res.body
}

async fn invite(app: &TestApp, owner: &TestUser, guild: &str) -> String {
    let path = format!("/api/v1/guilds/{guild}/invites");
    let res = app.post(&path, Some(&owner.access_token), json!({})).await;
    ok(res, Status::CREATED).await["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn fixture(app: &TestApp, people: &People, row: &Row) -> Fixture {
    let owner = &people.owner;
    let token = Some(owner.access_token.as_str());
    let guild = ok(
        app.post("/api/v1/guilds", token, json!({"name": "G"}))
            .await,
        Status::CREATED,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let join = invite(app, owner, &guild).await;
    for member in [&people.plain, &people.permitted]
        .into_iter()
        .chain(people.targets.iter())
    {
        ok(
            app.post(
                &format!("/api/v1/invites/{join}"),
                Some(&member.access_token),
                json!({}),
            )
            .await,
            Status::OK,
        )
        .await;
    }
    let mut roles = Vec::new();
    let mut codes = Vec::new();
    let mut channels = Vec::new();
    let mut messages = Vec::new();
    for i in 0..4 {
        let role = ok(
            app.post(
                &format!("/api/v1/guilds/{guild}/roles"),
                token,
                json!({"name": format!("r{i}")}),
            )
            .await,
            Status::CREATED,
        )
        .await;
        roles.push(role["id"].as_str().unwrap().to_owned());
        codes.push(invite(app, owner, &guild).await);
        let channel = ok(
            app.post(
                &format!("/api/v1/guilds/{guild}/channels"),
                token,
                json!({"name": format!("c{i}")}),
            )
            .await,
            Status::CREATED,
        )
        .await;
        let channel = channel["id"].as_str().unwrap().to_owned();
        let message = ok(
            app.post(
                &format!("/api/v1/channels/{channel}/messages"),
                token,
                json!({"content": format!("m{i}")}),
            )
            .await,
            Status::CREATED,
        )
        .await;
        messages.push(message["id"].as_str().unwrap().to_owned());
        channels.push(channel);
    }
    // The permitted member's role: the row's permission, above every other role.
    let role = ok(
        app.post(
            &format!("/api/v1/guilds/{guild}/roles"),
            token,
            json!({"name": "permitted", "permissions": row.permission.to_string()}),
        )
        .await,
        Status::CREATED,
    )
    .await;
    let role = role["id"].as_str().unwrap();
    ok(
        app.patch(
            &format!("/api/v1/guilds/{guild}/roles/{role}"),
            token,
            json!({"position": 5}),
        )
        .await,
        Status::OK,
    )
    .await;
    ok(
        app.request(
            Method::PUT,
            &format!(
                "/api/v1/guilds/{guild}/members/{}/roles/{role}",
                people.permitted.id
            ),
            token,
            None,
        )
        .await,
        Status::NO_CONTENT,
    )
    .await;
    for i in 0..4 {
        let target = &people.targets[i];
        match row.setup {
            Setup::None => {}
            Setup::BanTargets => {
                ok(
                    app.request(
                        Method::PUT,
                        &format!("/api/v1/guilds/{guild}/bans/{}", target.id),
                        token,
                        None,
                    )
                    .await,
                    Status::NO_CONTENT,
                )
                .await;
            }
            Setup::GiveRoles => {
                let path = format!(
                    "/api/v1/guilds/{guild}/members/{}/roles/{}",
                    target.id, roles[i]
                );
                ok(
                    app.request(Method::PUT, &path, token, None).await,
                    Status::NO_CONTENT,
                )
                .await;
            }
            Setup::Overwrites => {
                let path = format!("/api/v1/channels/{}/permissions/{}", channels[i], roles[i]);
                ok(
                    app.request(
                        Method::PUT,
                        &path,
                        token,
                        Some(json!({"type": "role", "allow": "0"})),
                    )
                    .await,
                    Status::OK,
                )
                .await;
            }
        }
    }
    Fixture {
        guild,
        roles,
        codes,
        channels,
        messages,
    }
}

#[actix_web::test]
async fn every_guild_and_channel_route_answers_each_kind_of_caller_as_documented() {
    let app = TestApp::spawn().await;
    let people = People {
        owner: app.register("owner").await,
        outsider: app.register("outsider").await,
        plain: app.register("plain").await,
        permitted: app.register("permitted").await,
        targets: [
            app.register("target0").await,
            app.register("target1").await,
            app.register("target2").await,
            app.register("target3").await,
        ],
    };
    let rows = rows();

    // Every guilds and channels operation of the document has its row.
    let doc = app.get("/api/v1/openapi.json", None).await.body;
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let tags = operation["tags"].as_array().unwrap();
            if tags
                .iter()
                .any(|t| t == "guilds" || t == "channels" || t == "messaging")
            {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let mut covered: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    // Group DMs have a matrix of their own, below.
    for (method, path) in [
        ("POST", "/api/v1/users/@me/channels"),
        ("PUT", "/api/v1/channels/{channel_id}/recipients/{user_id}"),
        (
            "DELETE",
            "/api/v1/channels/{channel_id}/recipients/{user_id}",
        ),
        // Uploads belong to their uploader, not to a guild, and downloads go by signed
        // URL: who may do what with them is tested in messaging's attachments tests.
        ("POST", "/api/v1/attachments"),
        ("GET", "/api/v1/attachments/{attachment_id}/{filename}"),
    ] {
        covered.insert((method.to_owned(), path.to_owned()));
    }
    assert_eq!(covered, documented, "every route has a row");

    for row in &rows {
        let fixture = fixture(&app, &people, row).await;
        let actors = [
            &people.outsider,
            &people.plain,
            &people.permitted,
            &people.owner,
        ];
        for (i, actor) in actors.iter().enumerate() {
            let path = row
                .path
                .replace("{guild_id}", &fixture.guild)
                .replace("{user_id}", &people.targets[i].id)
                .replace("{role_id}", &fixture.roles[i])
                .replace("{target_id}", &fixture.roles[i])
                .replace("{code}", &fixture.codes[i])
                .replace("{channel_id}", &fixture.channels[i])
                .replace("{message_id}", &fixture.messages[i])
                .replace("{emoji}", "%F0%9F%91%8D")
                + row.query;
            let res = app
                .request(
                    row.method.clone(),
                    &path,
                    Some(&actor.access_token),
                    row.body.clone(),
                )
                .await;
            assert_eq!(
                res.status.as_u16(),
                row.expect[i],
                "{} {} as {}: {}",
                row.method,
                row.path,
                ["outsider", "plain member", "permitted member", "owner"][i],
                res.text
            );
            if res.status == Status::FORBIDDEN {
                assert_eq!(res.code(), row.refusal);
            }
        }
    }
}

#[actix_web::test]
async fn group_dm_routes_answer_outsiders_members_and_the_owner_as_documented() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let outsider = app.register("outsider").await;
    let (m1, m2, extra) = (
        app.register("mmm1").await,
        app.register("mmm2").await,
        app.register("extra").await,
    );
    let res = app
        .post(
            "/api/v1/users/@me/channels",
            Some(&owner.access_token),
            json!({"recipient_ids": [m1.id, m2.id]}),
        )
        .await;
    assert_eq!(res.status, Status::CREATED);
    let group = res.body["id"].as_str().unwrap().to_owned();
    let recipient = |user: &TestUser| format!("/api/v1/channels/{group}/recipients/{}", user.id);
    let channel = format!("/api/v1/channels/{group}");

    // Reads: members only.
    assert_eq!(
        app.get(&channel, Some(&outsider.access_token)).await.status,
        Status::NOT_FOUND
    );
    assert_eq!(
        app.get(&channel, Some(&m1.access_token)).await.status,
        Status::OK
    );
    // Adding: members only.
    let put = |who: &TestUser, path: String| {
        let token = who.access_token.clone();
        let app = &app;
        async move {
            app.request(Method::PUT, &path, Some(&token), None)
                .await
                .status
        }
    };
    assert_eq!(put(&outsider, recipient(&extra)).await, Status::NOT_FOUND);
    assert_eq!(put(&m1, recipient(&extra)).await, Status::NO_CONTENT);
    // Removing others: the owner only; yourself: anyone in it.
    let delete = |who: &TestUser, path: String| {
        let token = who.access_token.clone();
        let app = &app;
        async move { app.request(Method::DELETE, &path, Some(&token), None).await }
    };
    assert_eq!(
        delete(&outsider, recipient(&extra)).await.status,
        Status::NOT_FOUND
    );
    let res = delete(&m1, recipient(&extra)).await;
    assert_eq!(res.status, Status::FORBIDDEN);
    assert_eq!(res.code(), "missing_permissions");
    assert_eq!(
        delete(&owner, recipient(&extra)).await.status,
        Status::NO_CONTENT
    );
    assert_eq!(delete(&m2, recipient(&m2)).await.status, Status::NO_CONTENT);
    // Renaming: members only.
    let rename = |who: &TestUser| {
        let token = who.access_token.clone();
        let (app, channel) = (&app, channel.clone());
        async move {
            app.patch(&channel, Some(&token), json!({"name": "n"}))
                .await
                .status
        }
    };
    assert_eq!(rename(&outsider).await, Status::NOT_FOUND);
    assert_eq!(rename(&m2).await, Status::NOT_FOUND, "m2 left");
    assert_eq!(rename(&m1).await, Status::OK);
    // Opening DMs: anyone, with anyone who has not blocked them.
    let res = app
        .post(
            "/api/v1/users/@me/channels",
            Some(&outsider.access_token),
            json!({"recipient_id": m1.id}),
        )
        .await;
    assert_eq!(res.status, Status::CREATED);
}
