//! The users domain's invariant: READY taken at some moment plus every event
//! dispatched after it equals a READY taken fresh afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use serde_json::{Value, json};
use synctalk_testkit::{Method, TestApp, TestUser};

/// Relationships as READY shows them: other user's id -> (type, display name, bio).
type Model = BTreeMap<String, (String, Value, Value)>;

fn model_of(ready: &Value) -> Model {
    ready["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                (
                    r["type"].as_str().unwrap().to_owned(),
                    r["user"]["display_name"].clone(),
                    r["user"]["bio"].clone(),
                ),
            )
        })
        .collect()
}

/// What an event does to the model.
fn apply(model: &mut Model, me: &str, t: &str, d: &Value) {
    match t {
        "RELATIONSHIP_ADD" => {
            model.insert(
                d["id"].as_str().unwrap().to_owned(),
                (
                    d["type"].as_str().unwrap().to_owned(),
                    d["user"]["display_name"].clone(),
                    d["user"]["bio"].clone(),
                ),
            );
        }
        "RELATIONSHIP_REMOVE" => {
            let id = d["id"].as_str().unwrap();
            if model.get(id).is_some_and(|r| r.0 == d["type"]) {
                model.remove(id);
            }
        }
        "USER_UPDATE" if d["id"] != me => {
            if let Some(r) = model.get_mut(d["id"].as_str().unwrap()) {
                r.1 = d["display_name"].clone();
                r.2 = d["bio"].clone();
            }
        }
        _ => {}
    }
}

async fn op(app: &TestApp, users: &[TestUser], step: usize) {
    // A fixed, varied script over alice (0) and four others.
    let a = &users[step % users.len()];
    let b = &users[(step * 7 + 3) % users.len()];
    if a.id == b.id {
        return;
    }
    let path = format!("/api/v1/users/@me/relationships/{}", b.id);
    let _ = match step % 6 {
        0 | 3 => {
            app.post(
                "/api/v1/users/@me/relationships",
                Some(&a.access_token),
                json!({"username": b.username}),
            )
            .await
        }
        1 => app.request(Method::PUT, &path, Some(&a.access_token), None).await,
        2 => app.delete(&path, Some(&a.access_token)).await,
        4 => {
            app.request(Method::PUT, &path, Some(&a.access_token), Some(json!({"type": "blocked"})))
                .await
        }
        _ => {
            app.patch(
                "/api/v1/users/@me",
                Some(&a.access_token),
                json!({"bio": format!("step {step}"), "display_name": format!("{} {step}", a.username)}),
            )
            .await
        }
    };
}

#[actix_web::test]
async fn ready_plus_events_equals_a_fresh_ready() {
    let app = TestApp::spawn().await;
    let mut users = Vec::new();
    for name in ["alice", "bob", "carol", "dave", "erin"] {
        users.push(app.register(name).await);
    }
    let alice = users[0].clone();
    for step in 0..40 {
        op(&app, &users, step).await;
    }
    let (mut ws, ready) = app.gateway("/gateway/users", &alice.access_token).await;
    let mut model = model_of(&ready);
    for step in 40..160 {
        op(&app, &users, step).await;
    }
    // A change of alice's own, as a marker: everything before it has arrived.
    app.patch(
        "/api/v1/users/@me",
        Some(&alice.access_token),
        json!({"bio": "marker"}),
    )
    .await;
    let mut last = 0;
    loop {
        let frame = ws.frame().await;
        let (Some(t), Some(s)) = (frame["t"].as_str(), frame["s"].as_i64()) else {
            continue;
        };
        assert_eq!(s, last + 1, "no gap, no repeat");
        last = s;
        if t == "USER_UPDATE"
            && frame["d"]["id"] == alice.id.as_str()
            && frame["d"]["bio"] == "marker"
        {
            break;
        }
        apply(&mut model, &alice.id, t, &frame["d"]);
    }
    let (_, fresh) = app.gateway("/gateway/users", &alice.access_token).await;
    assert!(
        !model_of(&fresh).is_empty(),
        "the script leaves alice with relationships"
    );
    assert_eq!(model, model_of(&fresh));
}
