//! The users API against a real server and a real database.

use serde_json::json;
use synctalk_testkit::{Status, TestApp};

#[actix_web::test]
async fn me_shows_your_profile_with_email_and_needs_a_token() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let me = app
        .get("/api/v1/users/@me", Some(&alice.access_token))
        .await;
    assert_eq!(me.status, Status::OK);
    assert_eq!(me.body["username"], "alice");
    assert_eq!(me.body["email"], "alice@example.com");
    for field in ["display_name", "avatar_url", "bio", "status_text"] {
        assert!(me.body[field].is_null(), "{field}");
    }
    assert!(me.body["created_at"].as_str().unwrap().ends_with('Z'));
    let anonymous = app.get("/api/v1/users/@me", None).await;
    assert_eq!(anonymous.status, Status::UNAUTHORIZED);
    assert_eq!(anonymous.code(), "unauthorized");
}

#[actix_web::test]
async fn patch_me_updates_clears_and_leaves_fields() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let token = Some(alice.access_token.as_str());
    let res = app
        .patch(
            "/api/v1/users/@me",
            token,
            json!({"display_name": "Alice", "bio": "hello", "status_text": "On holiday", "avatar_url": "https://cdn.example.com/a.png"}),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    assert_eq!(res.body["display_name"], "Alice");
    assert_eq!(res.body["status_text"], "On holiday");
    assert_eq!(res.body["email"], "alice@example.com");

    // Left out: unchanged; null: cleared.
    let res = app
        .patch("/api/v1/users/@me", token, json!({"bio": null}))
        .await;
    assert_eq!(res.status, Status::OK);
    assert!(res.body["bio"].is_null());
    assert_eq!(res.body["display_name"], "Alice");
    let res = app.patch("/api/v1/users/@me", token, json!({})).await;
    assert_eq!(res.status, Status::OK);
    assert_eq!(res.body["avatar_url"], "https://cdn.example.com/a.png");

    // Others see the profile without the email.
    let bob = app.register("bob").await;
    let seen = app
        .get(
            &format!("/api/v1/users/{}", alice.id),
            Some(&bob.access_token),
        )
        .await;
    assert_eq!(seen.status, Status::OK);
    assert_eq!(seen.body["display_name"], "Alice");
    assert!(seen.body.get("email").is_none(), "{}", seen.text);
}

#[actix_web::test]
async fn patch_me_with_invalid_fields_is_422_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let token = Some(alice.access_token.as_str());
    app.patch("/api/v1/users/@me", token, json!({"display_name": "Alice"}))
        .await;
    let res = app
        .patch(
            "/api/v1/users/@me",
            token,
            json!({"display_name": "x".repeat(33), "avatar_url": "javascript:alert(1)", "bio": "y".repeat(191), "status_text": "ok"}),
        )
        .await;
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY);
    let fields = res.body["error"]["fields"].as_object().unwrap();
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["avatar_url", "bio", "display_name"]);
    let me = app.get("/api/v1/users/@me", token).await;
    assert_eq!(me.body["display_name"], "Alice");
    assert!(
        me.body["status_text"].is_null(),
        "the valid field was not applied either"
    );

    let res = app
        .patch("/api/v1/users/@me", token, json!({"bio": 5}))
        .await;
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY, "{}", res.text);
    assert!(
        res.body["error"]["fields"]["bio"].is_array(),
        "{}",
        res.text
    );
    // An array would fill the struct by position: refused.
    let res = app
        .patch("/api/v1/users/@me", token, json!(["Alice"]))
        .await;
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY, "{}", res.text);
    assert!(
        res.body["error"]["fields"]["body"].is_array(),
        "{}",
        res.text
    );
    assert_eq!(
        app.patch("/api/v1/users/@me", None, json!({})).await.status,
        Status::UNAUTHORIZED
    );
}

#[actix_web::test]
async fn unknown_and_malformed_user_ids_are_404() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let token = Some(alice.access_token.as_str());
    let unknown = app
        .get(&format!("/api/v1/users/{}", uuid::Uuid::now_v7()), token)
        .await;
    assert_eq!(unknown.status, Status::NOT_FOUND);
    assert_eq!(unknown.code(), "not_found");
    assert_eq!(
        app.get("/api/v1/users/not-a-uuid", token).await.status,
        Status::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/api/v1/users/{}", alice.id), None)
            .await
            .status,
        Status::UNAUTHORIZED
    );
}

#[actix_web::test]
async fn search_by_prefix_with_cursor_pagination() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for name in ["anna", "andy", "anton", "bob", "ann_marie"] {
        ids.push(app.register(name).await.id);
    }
    let me = app.register("zed").await;
    let token = Some(me.access_token.as_str());
    let names = |res: &synctalk_testkit::Response| -> Vec<String> {
        res.body
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect()
    };

    let res = app.get("/api/v1/users?query=an", token).await;
    assert_eq!(res.status, Status::OK);
    assert_eq!(
        names(&res),
        ["anna", "andy", "anton", "ann_marie"],
        "by id, which is creation order"
    );
    assert!(res.body[0].get("email").is_none());

    let res = app.get("/api/v1/users?query=AN&limit=2", token).await;
    assert_eq!(
        names(&res),
        ["anna", "andy"],
        "the query is case-insensitive"
    );
    let last = res.body[1]["id"].as_str().unwrap();
    let res = app
        .get(
            &format!("/api/v1/users?query=an&limit=2&after={last}"),
            token,
        )
        .await;
    assert_eq!(names(&res), ["anton", "ann_marie"]);
    let res = app
        .get(&format!("/api/v1/users?query=an&before={}", ids[2]), token)
        .await;
    assert_eq!(names(&res), ["anna", "andy"]);
    // Both cursors: the ids strictly between them, from the `after` side.
    let res = app
        .get(
            &format!("/api/v1/users?query=an&after={}&before={}", ids[0], ids[4]),
            token,
        )
        .await;
    assert_eq!(names(&res), ["andy", "anton"]);
    let res = app
        .get(
            &format!("/api/v1/users?limit=1&after={}&before={}", ids[0], ids[4]),
            token,
        )
        .await;
    assert_eq!(names(&res), ["andy"]);
    let res = app
        .get(&format!("/api/v1/users?after={last}&before={last}"), token)
        .await;
    assert_eq!(res.status, Status::OK);
    assert_eq!(names(&res), Vec::<String>::new(), "an empty range");

    // `_` is a literal, not a LIKE wildcard.
    let res = app.get("/api/v1/users?query=ann_", token).await;
    assert_eq!(names(&res), ["ann_marie"]);
    let all = app.get("/api/v1/users", token).await;
    assert_eq!(all.body.as_array().unwrap().len(), 6);

    for bad in ["limit=0", "limit=101", "limit=abc", "after=nope"] {
        let res = app.get(&format!("/api/v1/users?{bad}"), token).await;
        assert_eq!(res.status, Status::BAD_REQUEST, "{bad}");
        assert_eq!(res.code(), "invalid_query", "{bad}");
    }
    assert_eq!(
        app.get("/api/v1/users", None).await.status,
        Status::UNAUTHORIZED
    );
}

#[actix_web::test]
async fn deleted_users_vanish_cannot_log_in_and_free_their_name() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let res = app
        .delete("/api/v1/users/@me", Some(&alice.access_token))
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);

    assert_eq!(
        app.get("/api/v1/users/@me", Some(&alice.access_token))
            .await
            .status,
        Status::UNAUTHORIZED
    );
    let seen = app
        .get(
            &format!("/api/v1/users/{}", alice.id),
            Some(&bob.access_token),
        )
        .await;
    assert_eq!(seen.status, Status::NOT_FOUND);
    let listed = app
        .get("/api/v1/users?query=alice", Some(&bob.access_token))
        .await;
    assert_eq!(listed.body.as_array().unwrap().len(), 0);
    let login = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "alice", "password": alice.password}),
        )
        .await;
    assert_eq!(login.status, Status::UNAUTHORIZED);
    assert_eq!(login.code(), "invalid_credentials");
    let refresh = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": alice.refresh_token}),
        )
        .await;
    assert_eq!(refresh.status, Status::UNAUTHORIZED);

    let again = app.register("alice").await;
    assert_ne!(again.id, alice.id);
}

#[actix_web::test]
async fn authenticated_routes_are_rate_limited_per_user() {
    let app = TestApp::spawn_with(|s| s.rate_limit_user_per_minute = 2).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    for _ in 0..2 {
        assert_eq!(
            app.get("/api/v1/users/@me", Some(&alice.access_token))
                .await
                .status,
            Status::OK
        );
    }
    let limited = app
        .get("/api/v1/users/@me", Some(&alice.access_token))
        .await;
    assert_eq!(limited.status, Status::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "rate_limited");
    assert!(limited.body["error"]["retry_after_ms"].as_u64().unwrap() > 0);
    // Bob has a bucket of his own.
    let res = app.get("/api/v1/users/@me", Some(&bob.access_token)).await;
    assert_eq!(res.status, Status::OK);
    assert_eq!(res.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(res.header("x-ratelimit-remaining"), Some("1"));
}
