//! The messaging domain's invariant: READY's read states plus every event dispatched
//! after it (MESSAGE_CREATE, MESSAGE_UPDATE, MESSAGE_DELETE, MESSAGE_ACK) equal the
//! read states of a READY taken fresh afterwards, over a script of messages, mentions,
//! edits, deletions and acks (forward and back).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use synctalk_testkit::{Received, TestApp, TestUser, WsClient};

/// One channel's read state as the client keeps it, and the messages it saw made
/// there: (by someone else, mentions me).
#[derive(Debug, Default, Clone, PartialEq)]
struct State {
    last_read: Value,
    unread: i64,
    mentions: i64,
}

struct Model {
    me: String,
    states: BTreeMap<String, State>,
    messages: BTreeMap<String, (bool, bool)>,
}

fn ids_cmp(a: &str, b: &Value) -> bool {
    // Is message `a` after the read marker `b` (null: nothing read)?
    b.as_str().is_none_or(|b| a > b)
}

impl Model {
    fn from_ready(me: &TestUser, ready: &Value) -> Self {
        let states = ready["read_states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["channel_id"].as_str().unwrap().to_owned(),
                    State {
                        last_read: s["last_read_message_id"].clone(),
                        unread: s["unread_count"].as_i64().unwrap(),
                        mentions: s["mention_count"].as_i64().unwrap(),
                    },
                )
            })
            .collect();
        Self {
            me: me.id.clone(),
            states,
            messages: BTreeMap::new(),
        }
    }

    fn mentions_me(&self, d: &Value) -> bool {
        d["mention_everyone"] == true
            || d["mentions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u["id"] == self.me.as_str())
    }

    fn apply(&mut self, frame: &Value) {
        let d = &frame["d"];
        match frame["t"].as_str().unwrap_or("") {
            "MESSAGE_CREATE" => {
                let id = d["id"].as_str().unwrap().to_owned();
                let other = d["author"]["id"] != self.me.as_str();
                let mentioned = self.mentions_me(d);
                let state = self
                    .states
                    .entry(d["channel_id"].as_str().unwrap().to_owned())
                    .or_default();
                if other && ids_cmp(&id, &state.last_read) {
                    state.unread += 1;
                    if mentioned {
                        state.mentions += 1;
                    }
                }
                self.messages.insert(id, (other, mentioned));
            }
            "MESSAGE_UPDATE" => {
                let id = d["id"].as_str().unwrap().to_owned();
                let now = self.mentions_me(d);
                if let Some((other, was)) = self.messages.get(&id).copied() {
                    let state = self
                        .states
                        .get_mut(d["channel_id"].as_str().unwrap())
                        .unwrap();
                    if other && ids_cmp(&id, &state.last_read) && was != now {
                        state.mentions += if now { 1 } else { -1 };
                    }
                    self.messages.insert(id, (other, now));
                }
            }
            "MESSAGE_DELETE" => {
                let id = d["id"].as_str().unwrap().to_owned();
                if let Some((other, mentioned)) = self.messages.remove(&id) {
                    let state = self
                        .states
                        .get_mut(d["channel_id"].as_str().unwrap())
                        .unwrap();
                    if other && ids_cmp(&id, &state.last_read) {
                        state.unread -= 1;
                        if mentioned {
                            state.mentions -= 1;
                        }
                    }
                }
            }
            "MESSAGE_ACK" => {
                self.states.insert(
                    d["channel_id"].as_str().unwrap().to_owned(),
                    State {
                        last_read: d["last_read_message_id"].clone(),
                        unread: d["unread_count"].as_i64().unwrap(),
                        mentions: d["mention_count"].as_i64().unwrap(),
                    },
                );
            }
            _ => {}
        }
    }
}

/// Applies events until none came for a second (the events of what was just done
/// come within that, even on a loaded test machine).
async fn drain(ws: &mut WsClient, model: &mut Model) {
    while let Some(received) = ws.recv_within(Duration::from_millis(1000)).await {
        if let Received::Frame(frame) = received {
            model.apply(&frame);
        }
    }
}

#[actix_web::test]
async fn read_states_in_ready_plus_events_are_a_fresh_ready() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let (_, general) = app.guild_with(&a, &[&b]).await;
    let dm = app.open_dm(&a, &b).await;
    // Unread before READY, and read up to one of them.
    let early = app.send_message(&a, &general, "before").await;
    app.send_message(&a, &general, "before, unread").await;
    app.post(
        &format!("/api/v1/channels/{general}/messages/{early}/ack"),
        Some(&b.access_token),
        json!({}),
    )
    .await;
    let (mut ws, ready) = app.gateway("/gateway/messaging", &b.access_token).await;
    let mut model = Model::from_ready(&b, &ready);

    let mention = format!("<@{}> hi", b.id);
    let g1 = app.send_message(&a, &general, &mention).await;
    let g2 = app.send_message(&a, &general, "@everyone meeting").await;
    let g3 = app.send_message(&a, &general, "plain").await;
    let d1 = app.send_message(&a, &dm, "dm one").await;
    let d2 = app.send_message(&a, &dm, "dm two").await;
    app.send_message(&b, &dm, "my own, never unread").await;
    drain(&mut ws, &mut model).await;

    // Acks forward and back, edits that add and take away a mention, deletions of read
    // and unread messages.
    app.post(
        &format!("/api/v1/channels/{general}/messages/{g1}/ack"),
        Some(&b.access_token),
        json!({}),
    )
    .await;
    app.patch(
        &format!("/api/v1/channels/{dm}/messages/{d2}"),
        Some(&a.access_token),
        json!({"content": format!("dm two, <@{}>", b.id)}),
    )
    .await;
    app.patch(
        &format!("/api/v1/channels/{general}/messages/{g1}"),
        Some(&a.access_token),
        json!({"content": "no mention any more"}),
    )
    .await;
    app.delete(
        &format!("/api/v1/channels/{general}/messages/{g2}"),
        Some(&a.access_token),
    )
    .await;
    app.delete(
        &format!("/api/v1/channels/{dm}/messages/{d1}"),
        Some(&a.access_token),
    )
    .await;
    app.post(
        &format!("/api/v1/channels/{dm}/messages/{d2}/ack"),
        Some(&b.access_token),
        json!({}),
    )
    .await;
    app.send_message(&a, &dm, &format!("<@{}> after the ack", b.id))
        .await;
    app.send_message(&a, &general, "more").await;
    drain(&mut ws, &mut model).await;
    // Back to an older message: what follows is unread again.
    app.post(
        &format!("/api/v1/channels/{general}/messages/{early}/ack"),
        Some(&b.access_token),
        json!({}),
    )
    .await;
    app.delete(
        &format!("/api/v1/channels/{general}/messages/{g3}"),
        Some(&a.access_token),
    )
    .await;
    drain(&mut ws, &mut model).await;

    let (_, fresh) = app.gateway("/gateway/messaging", &b.access_token).await;
    let fresh = Model::from_ready(&b, &fresh);
    assert_eq!(model.states, fresh.states);
    assert!(
        model
            .states
            .values()
            .any(|s| s.unread > 0 && s.mentions > 0),
        "the script left unread mentions: {:?}",
        model.states
    );
}
