//! The auth API against a real server and a real database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use synctalk_db::schema::refresh_tokens;
use synctalk_testkit::{Status, TestApp};

const PASSWORD: &str = "correct horse battery staple";

async fn login(app: &TestApp, login: &str, password: &str) -> synctalk_testkit::Response {
    app.post(
        "/api/v1/auth/login",
        None,
        json!({"login": login, "password": password}),
    )
    .await
}

#[actix_web::test]
async fn register_returns_the_user_and_tokens() {
    let app = TestApp::spawn().await;
    let res = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": "alice", "email": "Alice@Example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    let user = &res.body["user"];
    assert_eq!(user["username"], "alice");
    assert_eq!(user["email"], "Alice@Example.com");
    assert!(user.get("password_hash").is_none());
    assert_eq!(res.body["token_type"], "Bearer");
    assert_eq!(res.body["expires_in"], 900);
    assert_eq!(res.body["refresh_token"].as_str().unwrap().len(), 43);
    let token = res.body["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3);
    let me = app.get("/api/v1/users/@me", Some(token)).await;
    assert_eq!(me.status, Status::OK);
    assert_eq!(me.body["id"], user["id"]);
}

#[actix_web::test]
async fn register_reports_every_invalid_field_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let res = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": "Alice", "email": "not-an-email", "password": "short"}),
        )
        .await;
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY, "{}", res.text);
    assert_eq!(res.code(), "validation_failed");
    let fields = res.body["error"]["fields"].as_object().unwrap();
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["email", "password", "username"]);
    assert!(
        fields["username"][0]
            .as_str()
            .unwrap()
            .contains("lower-case")
    );

    for (username, problem_field) in [
        ("ab", "username"),
        (&"x".repeat(33)[..], "username"),
        ("al ice", "username"),
    ] {
        let res = app
            .post(
                "/api/v1/auth/register",
                None,
                json!({"username": username, "email": "a@example.com", "password": PASSWORD}),
            )
            .await;
        assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY);
        assert!(
            res.body["error"]["fields"][problem_field].is_array(),
            "{}",
            res.text
        );
    }
    let long = "x".repeat(129);
    let res = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": "bob", "email": "b@example.com", "password": long}),
        )
        .await;
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY);

    let mut conn = app.db.connect().await;
    let count: i64 = synctalk_db::schema::users::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[actix_web::test]
async fn register_refuses_a_taken_username_or_email_ignoring_case() {
    let app = TestApp::spawn().await;
    app.register("alice").await;
    let res = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": "alice", "email": "other@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status, Status::CONFLICT);
    assert_eq!(res.code(), "username_taken");
    let res = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": "alice2", "email": "ALICE@example.COM", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status, Status::CONFLICT);
    assert_eq!(res.code(), "email_taken");
}

#[actix_web::test]
async fn malformed_and_incomplete_bodies_are_400() {
    let app = TestApp::spawn().await;
    let res = app
        .raw(
            synctalk_testkit::Method::POST,
            "/api/v1/auth/register",
            "application/json",
            b"{nope".to_vec(),
        )
        .await;
    assert_eq!(res.status, Status::BAD_REQUEST);
    assert_eq!(res.code(), "invalid_json");
    // Well-formed JSON of the wrong shape is a problem of the field it is about.
    let res = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": "alice", "email": "a@example.com"}),
        )
        .await;
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY, "{}", res.text);
    assert_eq!(res.code(), "validation_failed");
    assert_eq!(
        res.body["error"]["fields"]["password"],
        json!(["is required"])
    );
    let res = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": 5, "password": "x"}),
        )
        .await;
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY, "{}", res.text);
    assert!(
        res.body["error"]["fields"]["login"].is_array(),
        "{}",
        res.text
    );
    let res = app
        .raw(
            synctalk_testkit::Method::POST,
            "/api/v1/auth/login",
            "text/plain",
            b"hello".to_vec(),
        )
        .await;
    assert_eq!(res.status, Status::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(res.code(), "unsupported_media_type");
}

#[actix_web::test]
async fn login_by_username_or_email_and_one_answer_for_every_failure() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;

    let by_name = login(&app, "alice", PASSWORD).await;
    assert_eq!(by_name.status, Status::OK, "{}", by_name.text);
    assert_eq!(by_name.body["user"]["id"], alice.id.as_str());
    assert_ne!(
        by_name.body["session_id"],
        alice.session_id.as_str(),
        "each login is a new session"
    );
    let by_email = login(&app, "ALICE@example.com", PASSWORD).await;
    assert_eq!(by_email.status, Status::OK);

    let wrong_password = login(&app, "alice", "wrong password!").await;
    let unknown_user = login(&app, "nobody", PASSWORD).await;
    let unknown_email = login(&app, "nobody@example.com", PASSWORD).await;
    for res in [&wrong_password, &unknown_user, &unknown_email] {
        assert_eq!(res.status, Status::UNAUTHORIZED);
        assert_eq!(res.code(), "invalid_credentials");
    }
    assert_eq!(
        wrong_password.body, unknown_user.body,
        "the answers must not tell the cases apart"
    );
}

#[actix_web::test]
async fn passwords_and_refresh_tokens_are_stored_only_as_hashes() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let mut conn = app.db.connect().await;
    use synctalk_db::schema::{refresh_tokens, users};
    let hash: String = users::table
        .select(users::password_hash)
        .first(&mut conn)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(PASSWORD));
    let stored: Vec<Vec<u8>> = refresh_tokens::table
        .select(refresh_tokens::token_hash)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].len(), 32);
    assert_ne!(stored[0], alice.refresh_token.as_bytes());
}

async fn refresh(app: &TestApp, token: &str) -> synctalk_testkit::Response {
    app.post(
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": token}),
    )
    .await
}

#[actix_web::test]
async fn refresh_rotates_the_token_within_the_same_session() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let first = refresh(&app, &alice.refresh_token).await;
    assert_eq!(first.status, Status::OK, "{}", first.text);
    assert_eq!(first.body["session_id"], alice.session_id.as_str());
    let rotated = first.body["refresh_token"].as_str().unwrap();
    assert_ne!(rotated, alice.refresh_token);
    let access = first.body["access_token"].as_str().unwrap();
    assert_eq!(
        app.get("/api/v1/users/@me", Some(access)).await.status,
        Status::OK
    );

    let second = refresh(&app, rotated).await;
    assert_eq!(second.status, Status::OK, "the rotated token works once");

    let unknown = refresh(&app, "not-a-token").await;
    assert_eq!(unknown.status, Status::UNAUTHORIZED);
    assert_eq!(unknown.code(), "invalid_refresh_token");
}

#[actix_web::test]
async fn reusing_a_spent_refresh_token_revokes_the_whole_session() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let other_device = login(&app, "alice", PASSWORD).await;
    let other_access = other_device.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let rotated = refresh(&app, &alice.refresh_token).await;
    let new_refresh = rotated.body["refresh_token"].as_str().unwrap().to_owned();
    let new_access = rotated.body["access_token"].as_str().unwrap().to_owned();

    // An attacker replays the spent token, after the grace window for retries.
    backdate_spent_refresh_tokens(&app).await;
    let replay = refresh(&app, &alice.refresh_token).await;
    assert_eq!(replay.status, Status::UNAUTHORIZED);
    assert_eq!(replay.code(), "invalid_refresh_token");

    // The whole session is gone: its newest tokens too.
    assert_eq!(
        app.get("/api/v1/users/@me", Some(&new_access)).await.status,
        Status::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/v1/users/@me", Some(&alice.access_token))
            .await
            .status,
        Status::UNAUTHORIZED
    );
    assert_eq!(
        refresh(&app, &new_refresh).await.status,
        Status::UNAUTHORIZED
    );
    // Other devices are untouched.
    assert_eq!(
        app.get("/api/v1/users/@me", Some(&other_access))
            .await
            .status,
        Status::OK
    );
}

/// Moves every spent refresh token's spending an hour back, past any grace window.
async fn backdate_spent_refresh_tokens(app: &TestApp) {
    let mut conn = app.db.connect().await;
    diesel::sql_query(
        "UPDATE refresh_tokens SET used_at = used_at - interval '1 hour' WHERE used_at IS NOT NULL",
    )
    .execute(&mut conn)
    .await
    .unwrap();
}

#[actix_web::test]
async fn a_retried_refresh_within_the_grace_window_gets_the_same_successor() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    // The answer to the first refresh is lost; the client sends it again.
    let first = refresh(&app, &alice.refresh_token).await;
    let retry = refresh(&app, &alice.refresh_token).await;
    assert_eq!(first.status, Status::OK);
    assert_eq!(retry.status, Status::OK, "{}", retry.text);
    assert_eq!(retry.body["refresh_token"], first.body["refresh_token"]);
    assert_eq!(retry.body["session_id"], alice.session_id.as_str());
    let access = retry.body["access_token"].as_str().unwrap();
    assert_eq!(
        app.get("/api/v1/users/@me", Some(access)).await.status,
        Status::OK
    );

    // Two refreshes racing with one token: both get the same successor.
    let successor = first.body["refresh_token"].as_str().unwrap().to_owned();
    let (a, b) = tokio::join!(refresh(&app, &successor), refresh(&app, &successor));
    assert_eq!((a.status, b.status), (Status::OK, Status::OK));
    assert_eq!(a.body["refresh_token"], b.body["refresh_token"]);
    let newest = a.body["refresh_token"].as_str().unwrap().to_owned();

    // Once the successor was used, the old token is a stolen copy, grace or not.
    assert_eq!(refresh(&app, &newest).await.status, Status::OK);
    // And only the newest spent token still holds its (sealed) successor: a copy of
    // the database and an old token cannot walk the chain to the live one.
    let sealed: i64 = {
        let mut conn = app.db.connect().await;
        refresh_tokens::table
            .filter(refresh_tokens::successor_sealed.is_not_null())
            .count()
            .get_result(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(sealed, 1);
    let stolen = refresh(&app, &successor).await;
    assert_eq!(stolen.status, Status::UNAUTHORIZED);
    assert_eq!(stolen.code(), "invalid_refresh_token");
    assert_eq!(
        app.get("/api/v1/users/@me", Some(access)).await.status,
        Status::UNAUTHORIZED,
        "the session was revoked"
    );
}

#[actix_web::test]
async fn with_no_grace_window_a_retried_refresh_revokes_the_session() {
    let app = TestApp::spawn_with(|s| s.refresh_reuse_grace_secs = 0).await;
    let alice = app.register("alice").await;
    assert_eq!(refresh(&app, &alice.refresh_token).await.status, Status::OK);
    let retry = refresh(&app, &alice.refresh_token).await;
    assert_eq!(retry.status, Status::UNAUTHORIZED);
    assert_eq!(
        app.get("/api/v1/users/@me", Some(&alice.access_token))
            .await
            .status,
        Status::UNAUTHORIZED
    );
}

#[actix_web::test]
async fn repeated_failed_logins_slow_down_per_login_even_when_racing() {
    let app = TestApp::spawn_with(|s| {
        s.login_free_failures = 3;
        s.rate_limit_auth_per_minute = 10_000;
    })
    .await;
    app.register("alice").await;
    app.register("bob").await;
    app.register("carol").await;
    for attempt in 1..=3 {
        let wrong = login(&app, "alice", "wrong password!").await;
        assert_eq!(wrong.status, Status::UNAUTHORIZED, "attempt {attempt}");
    }
    // The third failure set a wait of a second; stretched here, so that a slow test
    // machine cannot see it end before the next two attempts.
    {
        #[derive(diesel::QueryableByName)]
        struct Wait {
            #[diesel(sql_type = diesel::sql_types::Double)]
            secs: f64,
        }
        let mut conn = app.db.connect().await;
        let wait: Wait = diesel::sql_query(
            "SELECT extract(epoch FROM retry_at - updated_at)::float8 AS secs \
             FROM login_failures WHERE failures = 3",
        )
        .get_result(&mut conn)
        .await
        .unwrap();
        assert!((wait.secs - 1.0).abs() < 0.01, "waits {} s", wait.secs);
        diesel::sql_query(
            "UPDATE login_failures SET retry_at = retry_at + interval '1 minute' WHERE failures = 3",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    // The next attempt waits, right password or not, and costs no password check.
    for password in ["wrong password!", PASSWORD] {
        let waiting = login(&app, "ALICE", password).await;
        assert_eq!(
            waiting.status,
            Status::TOO_MANY_REQUESTS,
            "{}",
            waiting.text
        );
        assert_eq!(waiting.code(), "rate_limited");
        assert!(waiting.header("retry-after").is_some());
        let left = waiting.body["error"]["retry_after_ms"].as_u64().unwrap();
        assert!((1..=61_000).contains(&left), "retry after {left} ms");
    }
    // Other logins are untouched.
    assert_eq!(login(&app, "bob", PASSWORD).await.status, Status::OK);
    // A login that names nobody answers the same way, so the wait tells nothing.
    for _ in 0..3 {
        assert_eq!(
            login(&app, "nobody", "wrong password!").await.status,
            Status::UNAUTHORIZED
        );
    }
    assert_eq!(
        login(&app, "nobody", "wrong password!").await.status,
        Status::TOO_MANY_REQUESTS
    );

    // Attempts racing each other are counted one by one: after two failures, of ten
    // at once exactly one is checked.
    for _ in 0..2 {
        assert_eq!(
            login(&app, "carol", "wrong password!").await.status,
            Status::UNAUTHORIZED
        );
    }
    let racing =
        futures_util::future::join_all((0..10).map(|_| login(&app, "carol", "wrong password!")))
            .await;
    let mut statuses: Vec<u16> = racing.iter().map(|r| r.status.as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [401, 429, 429, 429, 429, 429, 429, 429, 429, 429]);

    // Once the wait is over, the right password gets in and the count starts again.
    {
        let mut conn = app.db.connect().await;
        diesel::sql_query("UPDATE login_failures SET retry_at = now() - interval '1 second'")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(login(&app, "alice", PASSWORD).await.status, Status::OK);
    assert_eq!(
        login(&app, "alice", "wrong password!").await.status,
        Status::UNAUTHORIZED,
        "a success forgets the failures"
    );
    assert_eq!(login(&app, "alice", PASSWORD).await.status, Status::OK);
}

#[actix_web::test]
async fn logout_stops_the_sessions_tokens_at_once() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let res = app
        .post("/api/v1/auth/logout", Some(&alice.access_token), json!({}))
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    let me = app
        .get("/api/v1/users/@me", Some(&alice.access_token))
        .await;
    assert_eq!(me.status, Status::UNAUTHORIZED);
    assert_eq!(me.code(), "invalid_token");
    assert_eq!(
        refresh(&app, &alice.refresh_token).await.status,
        Status::UNAUTHORIZED
    );
    let again = app
        .post("/api/v1/auth/logout", Some(&alice.access_token), json!({}))
        .await;
    assert_eq!(again.status, Status::UNAUTHORIZED);
    let no_token = app.post("/api/v1/auth/logout", None, json!({})).await;
    assert_eq!(no_token.status, Status::UNAUTHORIZED);
    assert_eq!(no_token.code(), "unauthorized");
}

#[actix_web::test]
async fn sessions_are_listed_per_device_and_can_be_revoked() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let phone = app
        .request(
            synctalk_testkit::Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"login": "alice", "password": PASSWORD})),
        )
        .await;
    let phone_access = phone.body["access_token"].as_str().unwrap().to_owned();
    let phone_session = phone.body["session_id"].as_str().unwrap().to_owned();

    let list = app
        .get("/api/v1/auth/sessions", Some(&alice.access_token))
        .await;
    assert_eq!(list.status, Status::OK);
    let sessions = list.body.as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["id"], phone_session.as_str(), "newest first");
    assert_eq!(sessions[0]["current"], false);
    assert_eq!(sessions[1]["current"], true);
    assert_eq!(sessions[1]["ip"], "127.0.0.1");
    assert!(sessions[1]["last_used_at"].is_string());

    // Bob cannot see or end Alice's sessions.
    let path = format!("/api/v1/auth/sessions/{phone_session}");
    assert_eq!(
        app.delete(&path, Some(&bob.access_token)).await.status,
        Status::NOT_FOUND
    );
    assert_eq!(
        app.delete(&path, Some(&alice.access_token)).await.status,
        Status::NO_CONTENT
    );
    assert_eq!(
        app.get("/api/v1/users/@me", Some(&phone_access))
            .await
            .status,
        Status::UNAUTHORIZED
    );
    assert_eq!(
        app.delete(&path, Some(&alice.access_token)).await.status,
        Status::NOT_FOUND,
        "already ended"
    );
    let unknown = app
        .delete(
            "/api/v1/auth/sessions/not-a-uuid",
            Some(&alice.access_token),
        )
        .await;
    assert_eq!(unknown.status, Status::NOT_FOUND);
    let list = app
        .get("/api/v1/auth/sessions", Some(&alice.access_token))
        .await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/api/v1/auth/sessions", None).await.status,
        Status::UNAUTHORIZED
    );
}

#[actix_web::test]
async fn signing_in_again_on_a_device_replaces_its_session() {
    let app = TestApp::spawn().await;
    app.register("alice").await;
    let body = json!({"login": "alice", "password": PASSWORD, "device_id": "phone-1"});
    let first = app.post("/api/v1/auth/login", None, body.clone()).await;
    let second = app.post("/api/v1/auth/login", None, body).await;
    assert_eq!(second.status, Status::OK);
    let first_access = first.body["access_token"].as_str().unwrap();
    assert_eq!(
        app.get("/api/v1/users/@me", Some(first_access))
            .await
            .status,
        Status::UNAUTHORIZED
    );
    let second_access = second.body["access_token"].as_str().unwrap();
    let list = app.get("/api/v1/auth/sessions", Some(second_access)).await;
    let devices: Vec<&Value> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["device_id"])
        .collect();
    assert_eq!(devices.iter().filter(|d| **d == "phone-1").count(), 1);

    let bad = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "alice", "password": PASSWORD, "device_id": ""}),
        )
        .await;
    assert_eq!(bad.status, Status::UNPROCESSABLE_ENTITY);
    assert!(bad.body["error"]["fields"]["device_id"].is_array());
}

#[actix_web::test]
async fn bad_access_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let mut tampered = alice.access_token.clone();
    tampered.replace_range(tampered.len() - 3.., "abc");
    let (header, rest) = alice.access_token.split_once('.').unwrap();
    let _ = header;
    let none_alg = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}",
        rest.split('.').next().unwrap()
    );
    for token in [tampered.as_str(), none_alg.as_str(), "garbage", "a.b.c"] {
        let res = app.get("/api/v1/users/@me", Some(token)).await;
        assert_eq!(res.status, Status::UNAUTHORIZED, "{token}");
        assert_eq!(res.code(), "invalid_token");
        assert_eq!(res.header("www-authenticate"), Some("Bearer"));
    }
}

#[actix_web::test]
async fn expired_access_tokens_are_refused() {
    let app = TestApp::spawn_with(|s| s.access_token_ttl_secs = 1).await;
    let alice = app.register("alice").await;
    assert_eq!(
        app.get("/api/v1/users/@me", Some(&alice.access_token))
            .await
            .status,
        Status::OK
    );
    // Past the 1 s lifetime and the 5 s clock leeway.
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    let res = app
        .get("/api/v1/users/@me", Some(&alice.access_token))
        .await;
    assert_eq!(res.status, Status::UNAUTHORIZED);
    assert_eq!(res.code(), "invalid_token");
    // The refresh token still gets a fresh one.
    let fresh = refresh(&app, &alice.refresh_token).await;
    assert_eq!(fresh.status, Status::OK);
}

#[actix_web::test]
async fn auth_routes_are_rate_limited_per_ip() {
    let app = TestApp::spawn_with(|s| s.rate_limit_auth_per_minute = 3).await;
    let mut last = None;
    for i in 0..3 {
        let res = login(&app, "nobody", PASSWORD).await;
        assert_eq!(res.status, Status::UNAUTHORIZED);
        assert_eq!(res.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(
            res.header("x-ratelimit-remaining"),
            Some((2 - i).to_string().as_str())
        );
        last = Some(res);
    }
    assert!(
        last.unwrap()
            .header("x-ratelimit-reset-after")
            .unwrap()
            .parse::<f64>()
            .unwrap()
            > 0.0
    );
    let limited = login(&app, "nobody", PASSWORD).await;
    assert_eq!(limited.status, Status::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "rate_limited");
    let retry_ms = limited.body["error"]["retry_after_ms"].as_u64().unwrap();
    assert!(retry_ms > 0 && retry_ms <= 20_000, "{retry_ms}");
    assert!(
        limited
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    // Register and refresh share the per-IP bucket.
    let res = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": "zed", "email": "z@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(res.status, Status::TOO_MANY_REQUESTS);
    // Routes outside auth are not affected by the auth bucket.
    assert_eq!(app.get("/health", None).await.status, Status::OK);
}

#[actix_web::test]
async fn long_ended_sessions_are_pruned_with_their_tokens() {
    use synctalk_db::schema::{refresh_tokens, sessions};
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let live = app.register("bob").await;
    app.post("/api/v1/auth/logout", Some(&alice.access_token), json!({}))
        .await;
    let mut conn = app.db.connect().await;
    // Shorter than the server's own week, so that its prune (which runs once at
    // start) can never take the row this test ages before the call below does.
    let keep = chrono::Duration::days(2);
    assert_eq!(
        synctalk_auth::repo::prune_sessions(&mut conn, keep)
            .await
            .unwrap(),
        0,
        "ended just now: kept"
    );
    diesel::sql_query(
        "UPDATE sessions SET revoked_at = now() - interval '3 days' WHERE revoked_at IS NOT NULL",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        synctalk_auth::repo::prune_sessions(&mut conn, keep)
            .await
            .unwrap(),
        1
    );
    let left: i64 = sessions::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(left, 1);
    let tokens: i64 = refresh_tokens::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(tokens, 1, "the pruned session's tokens went with it");
    assert_eq!(
        app.get("/api/v1/users/@me", Some(&live.access_token))
            .await
            .status,
        Status::OK
    );
}

#[actix_web::test]
async fn concurrent_sign_ins_on_one_device_leave_one_live_session() {
    // Attempts count toward the slowdown as they start; eight at once are allowed here.
    let app = TestApp::spawn_with(|s| s.login_free_failures = 100).await;
    app.register("alice").await;
    let body = json!({"login": "alice", "password": PASSWORD, "device_id": "phone-1"});
    for _ in 0..3 {
        let logins = (0..8).map(|_| app.post("/api/v1/auth/login", None, body.clone()));
        let answers = futures_util::future::join_all(logins).await;
        assert!(
            answers.iter().all(|a| a.status == Status::OK),
            "{:?}",
            answers.iter().map(|a| a.text.clone()).collect::<Vec<_>>()
        );
        let live_tokens = {
            let mut live = 0;
            for answer in &answers {
                let token = answer.body["access_token"].as_str().unwrap();
                if app.get("/api/v1/users/@me", Some(token)).await.status == Status::OK {
                    live += 1;
                }
            }
            live
        };
        assert_eq!(live_tokens, 1, "one session per device");
    }
}

#[actix_web::test]
async fn the_per_ip_limit_holds_however_the_path_is_spelled() {
    let app = TestApp::spawn_with(|s| s.rate_limit_auth_per_minute = 3).await;
    let body = json!({"login": "nobody", "password": PASSWORD});
    let mut statuses = Vec::new();
    for path in [
        "/api/v1/auth/%6Cogin",
        "/api/v1/auth/%6cogin",
        "/api/v1/auth/log%69n",
        "/api/v1/%61uth/login",
        "/api/v1/auth/login",
    ] {
        statuses.push(app.post(path, None, body.clone()).await.status);
    }
    assert_eq!(
        statuses,
        [
            Status::UNAUTHORIZED,
            Status::UNAUTHORIZED,
            Status::UNAUTHORIZED,
            Status::TOO_MANY_REQUESTS,
            Status::TOO_MANY_REQUESTS,
        ]
    );
}
