//! The guilds and channels domains' invariant: READY taken at some moment plus every
//! event dispatched after it equals a READY taken fresh afterwards, over a long
//! script of joins, kicks, role and permission changes, channels made, hidden and
//! deleted, group DMs made, joined and left.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use serde_json::{Value, json};
use synctalk_testkit::{Method, TestApp, TestUser, WsClient};

const VIEW_CHANNEL: u64 = 1 << 10;
const EVERYONE_DEFAULT: u64 = 70_356_033;

/// A guild as one member sees it: name, roles, visible channels, own roles and nick,
/// and the member count.
#[derive(Debug, Clone, PartialEq)]
struct GuildModel {
    name: Value,
    owner: Value,
    roles: BTreeMap<String, (Value, Value, Value)>,
    channels: BTreeMap<String, Value>,
    my_roles: Vec<String>,
    nick: Value,
    count: i64,
}

fn channel_model(c: &Value) -> Value {
    json!([
        c["name"],
        c["topic"],
        c["position"],
        c["parent_id"],
        c["overwrites"]
    ])
}

fn guild_model(g: &Value) -> GuildModel {
    let mut my_roles: Vec<String> = g["member"]["role_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    my_roles.sort();
    GuildModel {
        name: g["name"].clone(),
        owner: g["owner_id"].clone(),
        roles: g["roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_owned(),
                    (
                        r["name"].clone(),
                        r["permissions"].clone(),
                        r["position"].clone(),
                    ),
                )
            })
            .collect(),
        channels: g["channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["id"].as_str().unwrap().to_owned(), channel_model(c)))
            .collect(),
        my_roles,
        nick: g["member"]["nick"].clone(),
        count: g["member_count"].as_i64().unwrap(),
    }
}

type Guilds = BTreeMap<String, GuildModel>;
type Dms = BTreeMap<String, Value>;

fn dm_model(c: &Value) -> Value {
    let mut recipients: Vec<&str> = c["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    recipients.sort_unstable();
    json!([c["kind"], c["name"], c["owner_id"], recipients])
}

fn models(ready: &Value) -> (Guilds, Dms) {
    let guilds = ready["guilds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["id"].as_str().unwrap().to_owned(), guild_model(g)))
        .collect();
    let dms = ready["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap().to_owned(), dm_model(c)))
        .collect();
    (guilds, dms)
}

/// What an event does to the models.
fn apply(guilds: &mut Guilds, dms: &mut Dms, me: &str, t: &str, d: &Value) {
    let guild_of = |d: &Value| d["guild_id"].as_str().map(str::to_owned);
    match t {
        "GUILD_CREATE" => {
            guilds.insert(d["id"].as_str().unwrap().to_owned(), guild_model(d));
        }
        "GUILD_UPDATE" => {
            let g = guilds.get_mut(d["id"].as_str().unwrap()).unwrap();
            g.name = d["name"].clone();
            g.owner = d["owner_id"].clone();
        }
        "GUILD_DELETE" => {
            guilds.remove(d["id"].as_str().unwrap());
        }
        // Your own follows your GUILD_CREATE, whose count has you already.
        "GUILD_MEMBER_ADD" if d["user"]["id"] != me => {
            guilds.get_mut(&guild_of(d).unwrap()).unwrap().count += 1;
        }
        "GUILD_MEMBER_REMOVE" => guilds.get_mut(&guild_of(d).unwrap()).unwrap().count -= 1,
        "GUILD_MEMBER_UPDATE" if d["user"]["id"] == me => {
            let g = guilds.get_mut(&guild_of(d).unwrap()).unwrap();
            let mut roles: Vec<String> = d["role_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_owned())
                .collect();
            roles.sort();
            g.my_roles = roles;
            g.nick = d["nick"].clone();
        }
        "GUILD_ROLE_CREATE" | "GUILD_ROLE_UPDATE" => {
            let g = guilds.get_mut(&guild_of(d).unwrap()).unwrap();
            let r = &d["role"];
            g.roles.insert(
                r["id"].as_str().unwrap().to_owned(),
                (
                    r["name"].clone(),
                    r["permissions"].clone(),
                    r["position"].clone(),
                ),
            );
        }
        "GUILD_ROLE_DELETE" => {
            let g = guilds.get_mut(&guild_of(d).unwrap()).unwrap();
            let id = d["role_id"].as_str().unwrap();
            g.roles.remove(id);
            g.my_roles.retain(|r| r != id);
            // Its overwrites go with it.
            for channel in g.channels.values_mut() {
                if let Some(overwrites) = channel[4].as_array_mut() {
                    overwrites.retain(|o| o["id"] != id);
                }
            }
        }
        "CHANNEL_CREATE" | "CHANNEL_UPDATE" => match guild_of(d) {
            Some(guild) => {
                let g = guilds.get_mut(&guild).unwrap();
                g.channels
                    .insert(d["id"].as_str().unwrap().to_owned(), channel_model(d));
            }
            None => {
                dms.insert(d["id"].as_str().unwrap().to_owned(), dm_model(d));
            }
        },
        "CHANNEL_DELETE" => match guild_of(d) {
            Some(guild) => {
                if let Some(g) = guilds.get_mut(&guild) {
                    g.channels.remove(d["id"].as_str().unwrap());
                }
            }
            None => {
                dms.remove(d["id"].as_str().unwrap());
            }
        },
        "CHANNEL_RECIPIENT_ADD" | "CHANNEL_RECIPIENT_REMOVE" => {
            let id = d["channel_id"].as_str().unwrap();
            if let Some(dm) = dms.get_mut(id) {
                let recipients = dm[3].as_array_mut().unwrap();
                let user = d["user"]["id"].clone();
                recipients.retain(|r| *r != user);
                if t == "CHANNEL_RECIPIENT_ADD" {
                    recipients.push(user);
                }
                let mut sorted: Vec<String> = recipients
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect();
                sorted.sort();
                *recipients = sorted.into_iter().map(Value::String).collect();
            }
        }
        _ => {}
    }
}

struct World {
    owner: TestUser,
    alice: TestUser,
    others: Vec<TestUser>,
    guild: String,
    code: String,
    roles: Vec<String>,
    channels: Vec<String>,
    groups: Vec<String>,
}

async fn op(app: &TestApp, w: &mut World, step: usize) {
    let token = Some(w.owner.access_token.as_str());
    let guild = w.guild.clone();
    let other = &w.others[step % w.others.len()];
    let pick = |v: &Vec<String>| v.get(step * 7 % v.len().max(1)).cloned();
    let _ = match step % 14 {
        0 => {
            let perms = if step.is_multiple_of(28) {
                VIEW_CHANNEL
            } else {
                0
            };
            let res = app
                .post(
                    &format!("/api/v1/guilds/{guild}/roles"),
                    token,
                    json!({"name": format!("r{step}"), "permissions": perms.to_string()}),
                )
                .await;
            if let Some(id) = res.body["id"].as_str() {
                w.roles.push(id.to_owned());
            }
            res
        }
        1 => {
            let Some(role) = pick(&w.roles) else { return };
            let path = format!("/api/v1/guilds/{guild}/members/{}/roles/{role}", w.alice.id);
            let method = if step.is_multiple_of(3) {
                Method::DELETE
            } else {
                Method::PUT
            };
            app.request(method, &path, token, None).await
        }
        2 => {
            let perms = if step.is_multiple_of(4) {
                EVERYONE_DEFAULT
            } else {
                EVERYONE_DEFAULT & !VIEW_CHANNEL
            };
            app.patch(
                &format!("/api/v1/guilds/{guild}/roles/{guild}"),
                token,
                json!({"permissions": perms.to_string()}),
            )
            .await
        }
        3 => {
            let res = app
                .post(
                    &format!("/api/v1/guilds/{guild}/channels"),
                    token,
                    json!({"name": format!("c{step}")}),
                )
                .await;
            if let Some(id) = res.body["id"].as_str() {
                w.channels.push(id.to_owned());
            }
            res
        }
        4 => {
            let Some(channel) = pick(&w.channels) else {
                return;
            };
            let (target, kind) = if step.is_multiple_of(3) {
                (w.alice.id.clone(), "member")
            } else {
                (pick(&w.roles).unwrap_or(guild.clone()), "role")
            };
            let body = if step.is_multiple_of(2) {
                json!({"type": kind, "deny": VIEW_CHANNEL.to_string()})
            } else {
                json!({"type": kind, "allow": VIEW_CHANNEL.to_string()})
            };
            app.request(
                Method::PUT,
                &format!("/api/v1/channels/{channel}/permissions/{target}"),
                token,
                Some(body),
            )
            .await
        }
        5 => {
            let Some(channel) = pick(&w.channels) else {
                return;
            };
            app.patch(
                &format!("/api/v1/channels/{channel}"),
                token,
                json!({"topic": format!("t{step}")}),
            )
            .await
        }
        6 => {
            app.post(
                &format!("/api/v1/invites/{}", w.code),
                Some(&other.access_token),
                json!({}),
            )
            .await
        }
        7 => {
            app.delete(
                &format!("/api/v1/users/@me/guilds/{guild}"),
                Some(&other.access_token),
            )
            .await
        }
        8 => {
            app.patch(
                &format!("/api/v1/guilds/{guild}/members/{}", w.alice.id),
                Some(&w.alice.access_token),
                json!({"nick": format!("n{step}")}),
            )
            .await
        }
        9 => {
            if step.is_multiple_of(3) {
                app.delete(
                    &format!("/api/v1/guilds/{guild}/members/{}", w.alice.id),
                    token,
                )
                .await
            } else {
                app.post(
                    &format!("/api/v1/invites/{}", w.code),
                    Some(&w.alice.access_token),
                    json!({}),
                )
                .await
            }
        }
        10 => {
            let Some(role) = pick(&w.roles) else { return };
            if step.is_multiple_of(5) {
                w.roles.retain(|r| *r != role);
                app.delete(&format!("/api/v1/guilds/{guild}/roles/{role}"), token)
                    .await
            } else {
                app.patch(
                    &format!("/api/v1/guilds/{guild}/roles/{role}"),
                    token,
                    json!({"position": 1 + step % 3, "name": format!("x{step}")}),
                )
                .await
            }
        }
        11 => {
            if step % 4 == 1 {
                let Some(channel) = pick(&w.channels) else {
                    return;
                };
                w.channels.retain(|c| *c != channel);
                app.delete(&format!("/api/v1/channels/{channel}"), token)
                    .await
            } else {
                app.patch(
                    &format!("/api/v1/guilds/{guild}"),
                    token,
                    json!({"name": format!("G{step}")}),
                )
                .await
            }
        }
        12 => {
            let ids: Vec<&str> = [&w.alice, other].iter().map(|u| u.id.as_str()).collect();
            let res = app
                .post(
                    "/api/v1/users/@me/channels",
                    token,
                    json!({"recipient_ids": ids, "name": format!("g{step}")}),
                )
                .await;
            if let Some(id) = res.body["id"].as_str() {
                w.groups.push(id.to_owned());
            }
            res
        }
        _ => {
            let Some(group) = pick(&w.groups) else { return };
            match step % 4 {
                0 => {
                    app.request(
                        Method::PUT,
                        &format!("/api/v1/channels/{group}/recipients/{}", w.alice.id),
                        token,
                        None,
                    )
                    .await
                }
                1 => {
                    app.delete(
                        &format!("/api/v1/channels/{group}/recipients/{}", w.alice.id),
                        token,
                    )
                    .await
                }
                2 => {
                    app.patch(
                        &format!("/api/v1/channels/{group}"),
                        token,
                        json!({"name": format!("h{step}")}),
                    )
                    .await
                }
                _ => {
                    app.delete(
                        &format!("/api/v1/channels/{group}/recipients/{}", other.id),
                        Some(&other.access_token),
                    )
                    .await
                }
            }
        }
    };
}

/// Applies events until the marker; returns how many there were.
async fn read_until_marker(ws: &mut WsClient, guilds: &mut Guilds, dms: &mut Dms, me: &str) -> i64 {
    let mut last = 0;
    loop {
        let frame = ws.frame().await;
        let (Some(t), Some(s)) = (frame["t"].as_str(), frame["s"].as_i64()) else {
            continue;
        };
        assert_eq!(s, last + 1, "no gap, no repeat");
        last = s;
        if t == "CHANNEL_UPDATE" && frame["d"]["name"] == "marker" {
            return last;
        }
        apply(guilds, dms, me, t, &frame["d"]);
    }
}

#[actix_web::test]
async fn ready_plus_events_equals_a_fresh_ready_for_guilds_and_channels() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let alice = app.register("alice").await;
    let mut others = Vec::new();
    for name in ["bob", "carol", "dave"] {
        others.push(app.register(name).await);
    }
    let guild = app
        .post(
            "/api/v1/guilds",
            Some(&owner.access_token),
            json!({"name": "G"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = app
        .post(
            &format!("/api/v1/guilds/{guild}/invites"),
            Some(&owner.access_token),
            json!({"max_age_secs": 0}),
        )
        .await
        .body["code"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(
        &format!("/api/v1/invites/{code}"),
        Some(&alice.access_token),
        json!({}),
    )
    .await;
    let mut world = World {
        owner,
        alice: alice.clone(),
        others,
        guild,
        code,
        roles: Vec::new(),
        channels: Vec::new(),
        groups: Vec::new(),
    };
    for step in 0..42 {
        op(&app, &mut world, step).await;
    }
    // A marker DM of alice's own, whose rename ends the run.
    let marker = app
        .post(
            "/api/v1/users/@me/channels",
            Some(&alice.access_token),
            json!({"recipient_ids": [], "name": "start"}),
        )
        .await;
    let marker = marker.body["id"].as_str().unwrap().to_owned();

    let (mut ws, ready) = app
        .gateway("/gateway?domains=guilds,channels", &alice.access_token)
        .await;
    let (mut guilds, mut dms) = models(&ready);
    for step in 42..210 {
        op(&app, &mut world, step).await;
    }
    let res = app
        .patch(
            &format!("/api/v1/channels/{marker}"),
            Some(&alice.access_token),
            json!({"name": "marker"}),
        )
        .await;
    assert_eq!(res.status.as_u16(), 200, "{}", res.text);
    let events = read_until_marker(&mut ws, &mut guilds, &mut dms, &alice.id).await;
    assert!(events > 100, "the script reaches alice: {events} events");
    dms.insert(marker.clone(), dm_model(&res.body));

    let (_, fresh) = app
        .gateway("/gateway?domains=guilds,channels", &alice.access_token)
        .await;
    let (fresh_guilds, fresh_dms) = models(&fresh);
    assert!(fresh_dms.len() > 1, "the script leaves alice in group DMs");
    assert_eq!(guilds, fresh_guilds);
    assert_eq!(dms, fresh_dms);
}
