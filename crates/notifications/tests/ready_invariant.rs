//! The notifications domain's invariant: READY taken at some moment plus every event
//! dispatched after it equals a READY (and a list) taken fresh afterwards, over a
//! script of messages, mentions, friend requests, reads, acks, deletions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use synctalk_testkit::{TestApp, WsClient};

/// What a client knows: each live notification's id and whether it is read, and the
/// unread count the server last said.
#[derive(Debug, Default)]
struct Model {
    read: BTreeMap<String, bool>,
    unread: i64,
}

impl Model {
    fn apply(&mut self, frame: &Value) {
        let d = &frame["d"];
        match frame["t"].as_str().unwrap_or("") {
            "NOTIFICATION_CREATE" => {
                let read = d["read"].as_bool().unwrap();
                self.read.insert(d["id"].as_str().unwrap().to_owned(), read);
                if !read {
                    self.unread += 1;
                }
            }
            "NOTIFICATION_UPDATE" => {
                let ids: Vec<String> = d["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_str().unwrap().to_owned())
                    .collect();
                if d["deleted"] == true {
                    for id in &ids {
                        self.read.remove(id);
                    }
                } else if d["all"] == true {
                    self.read.values_mut().for_each(|r| *r = true);
                } else {
                    for id in &ids {
                        if let Some(r) = self.read.get_mut(id) {
                            *r = true;
                        }
                    }
                }
                self.unread = d["unread_count"].as_i64().unwrap();
            }
            _ => {}
        }
    }
}

/// Applies events until none came for a second (the events of what was just done
/// come within that, even on a loaded test machine).
async fn drain(ws: &mut WsClient, model: &mut Model) {
    while let Some(received) = ws.recv_within(Duration::from_millis(1000)).await {
        if let synctalk_testkit::Received::Frame(frame) = received {
            model.apply(&frame);
        }
    }
}

#[actix_web::test]
async fn ready_plus_events_is_a_fresh_ready() {
    let app = TestApp::spawn().await;
    let (a, b, c) = (
        app.register("alice").await,
        app.register("bob").await,
        app.register("carol").await,
    );
    // Something unread before READY.
    let dm = app.open_dm(&a, &b).await;
    app.send_message(&a, &dm, "before you came").await;
    let (mut ws, ready) = app.gateway("/gateway/notifications", &b.access_token).await;
    let mut model = Model {
        unread: ready["unread_notifications"].as_i64().unwrap(),
        ..Model::default()
    };
    assert_eq!(model.unread, 1);

    // The script.
    let mut sent = Vec::new();
    for n in 0..4 {
        sent.push(app.send_message(&a, &dm, &format!("dm {n}")).await);
    }
    let group = app.open_group_dm(&c, &[&a, &b]).await;
    app.send_message(&c, &group, "group hello").await;
    let (_, general) = app.guild_with(&a, &[&b]).await;
    app.send_message(&a, &general, &format!("<@{}> look", b.id))
        .await;
    app.send_message(&a, &general, "nobody mentioned").await;
    app.post(
        "/api/v1/users/@me/relationships",
        Some(&c.access_token),
        json!({"username": "bob"}),
    )
    .await;
    // Reads of every kind, a deletion by its owner and one by the message's author.
    drain(&mut ws, &mut model).await;
    let ids: Vec<String> = model.read.keys().cloned().collect();
    app.post(
        &format!("/api/v1/notifications/{}/read", ids[0]),
        Some(&b.access_token),
        json!({}),
    )
    .await;
    app.delete(
        &format!("/api/v1/notifications/{}", ids[1]),
        Some(&b.access_token),
    )
    .await;
    app.post(
        &format!("/api/v1/channels/{dm}/messages/{}/ack", sent[1]),
        Some(&b.access_token),
        json!({}),
    )
    .await;
    app.delete(
        &format!("/api/v1/channels/{dm}/messages/{}", sent[3]),
        Some(&a.access_token),
    )
    .await;
    app.send_message(&a, &dm, "after the reads").await;
    drain(&mut ws, &mut model).await;
    let midway = model.unread;
    app.post(
        "/api/v1/notifications/read-all",
        Some(&b.access_token),
        json!({}),
    )
    .await;
    app.send_message(&a, &dm, "last one").await;
    drain(&mut ws, &mut model).await;

    // What the client pieced together is what the server says now.
    let (_, fresh) = app.gateway("/gateway/notifications", &b.access_token).await;
    let unread_now = model.read.values().filter(|r| !**r).count() as i64;
    assert_eq!(
        fresh["unread_notifications"], model.unread,
        "the last count said"
    );
    // The notification made before READY is not in the model's set, and was read by
    // read-all: every unread one now is one the client saw made.
    assert_eq!(fresh["unread_notifications"], unread_now);
    assert!(
        midway > 1,
        "the script left several unread midway: {midway}"
    );
    let listed = app
        .get("/api/v1/notifications?limit=100", Some(&b.access_token))
        .await
        .body;
    let listed: BTreeMap<String, bool> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_owned(),
                n["read"].as_bool().unwrap(),
            )
        })
        .collect();
    let seen: BTreeMap<String, bool> = listed
        .iter()
        .filter(|(id, _)| model.read.contains_key(*id))
        .map(|(id, r)| (id.clone(), *r))
        .collect();
    assert_eq!(seen, model.read, "every notification seen, as it is now");
    assert_eq!(
        listed.len(),
        model.read.len() + 1,
        "and the one from before READY"
    );
}
