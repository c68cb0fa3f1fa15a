//! What every route shares: the error shape, request ids, limits, health, metrics, the
//! OpenAPI document, and the migrations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use synctalk_testkit::{Method, Status, TestApp, TestDb};

#[actix_web::test]
async fn health_ready_and_metrics() {
    let app = TestApp::spawn().await;
    let health = app.get("/health", None).await;
    assert_eq!(health.status, Status::OK);
    assert_eq!(health.body, json!({"status": "ok"}));
    assert!(
        health.header("x-ratelimit-limit").is_none(),
        "rate-limit headers are for /api/v1 only"
    );
    let ready = app.get("/ready", None).await;
    assert_eq!(ready.status, Status::OK);
    app.get("/api/v1/users/@me", None).await;
    let metrics = app.get("/metrics", None).await;
    assert_eq!(metrics.status, Status::OK);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        metrics.text.contains(
            r#"http_requests_total{method="GET",route="/api/v1/users/@me",status="401"}"#
        ),
        "{}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .contains("http_request_duration_seconds_bucket")
    );
}

#[actix_web::test]
async fn ready_is_503_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    app.db.drop_now().await;
    let ready = app.get("/ready", None).await;
    assert_eq!(ready.status, Status::SERVICE_UNAVAILABLE);
    assert_eq!(ready.code(), "service_unavailable");
    assert_eq!(app.get("/health", None).await.status, Status::OK);
}

#[actix_web::test]
async fn every_response_has_a_request_id_and_errors_have_the_shape() {
    let app = TestApp::spawn().await;
    let unknown = app.get("/api/v1/nope", None).await;
    assert_eq!(unknown.status, Status::NOT_FOUND);
    assert_eq!(unknown.code(), "not_found");
    assert!(unknown.body["error"]["message"].is_string());
    let outside = app.get("/nope", None).await;
    assert_eq!(outside.status, Status::NOT_FOUND);
    assert_eq!(outside.code(), "not_found");

    let wrong_method = app
        .request(Method::PUT, "/api/v1/users/@me", None, None)
        .await;
    assert_eq!(wrong_method.status, Status::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.code(), "method_not_allowed");
    assert_eq!(wrong_method.header("allow"), Some("GET, PATCH, DELETE"));
    let wrong_method = app
        .request(Method::GET, "/api/v1/auth/login", None, None)
        .await;
    assert_eq!(wrong_method.status, Status::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.header("allow"), Some("POST"));

    let a = app.get("/health", None).await;
    let b = app.get("/health", None).await;
    let (a, b) = (
        a.header("x-request-id").unwrap().to_owned(),
        b.header("x-request-id").unwrap().to_owned(),
    );
    assert_ne!(a, b);
    assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
    assert!(unknown.header("x-request-id").is_some());
    assert!(wrong_method.header("x-request-id").is_some());
    assert!(
        unknown.header("x-ratelimit-limit").is_some(),
        "rate-limit headers on /api/v1"
    );
}

#[actix_web::test]
async fn bodies_over_the_limit_are_413() {
    let app = TestApp::spawn_with(|s| s.json_body_limit = 1024).await;
    let big = json!({"login": "x".repeat(2048), "password": "whatever"});
    let res = app.post("/api/v1/auth/login", None, big).await;
    assert_eq!(res.status, Status::PAYLOAD_TOO_LARGE);
    assert_eq!(res.code(), "payload_too_large");
}

#[actix_web::test]
async fn internal_errors_carry_no_internals() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let mut conn = app.db.connect().await;
    use diesel_async::RunQueryDsl;
    diesel::sql_query("ALTER TABLE sessions RENAME TO sessions_gone")
        .execute(&mut conn)
        .await
        .unwrap();
    let res = app
        .get("/api/v1/users/@me", Some(&alice.access_token))
        .await;
    assert_eq!(res.status, Status::INTERNAL_SERVER_ERROR);
    assert_eq!(res.code(), "internal_error");
    for leak in ["sessions", "relation", "SELECT", "diesel", "src/"] {
        assert!(!res.text.contains(leak), "leaked {leak}: {}", res.text);
    }
    assert!(res.header("x-request-id").is_some());
}

#[actix_web::test]
async fn the_openapi_document_is_served_and_matches_the_committed_file() {
    let app = TestApp::spawn().await;
    let served = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(served.status, Status::OK);
    let generated = synctalk_app::openapi::document_json();
    assert_eq!(served.text, generated);
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../openapi/openapi.json"
    ))
    .unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date: run `cargo run -- openapi > openapi/openapi.json`"
    );

    let doc = &served.body;
    for path in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/sessions",
        "/api/v1/auth/sessions/{session_id}",
        "/api/v1/users/@me",
        "/api/v1/users/{user_id}",
        "/api/v1/users",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let register = &doc["paths"]["/api/v1/auth/register"]["post"]["responses"];
    for status in ["201", "409", "422", "429", "500"] {
        assert!(register[status].is_object(), "register lacks {status}");
    }
    assert!(register["201"]["headers"]["X-Request-Id"].is_object());
    assert!(register["429"]["headers"]["Retry-After"].is_object());
}

#[actix_web::test]
async fn swagger_ui_is_served_in_development_and_can_be_turned_off() {
    let app = TestApp::spawn().await;
    let page = app.get("/docs/", None).await;
    assert_eq!(page.status, Status::OK);
    assert!(page.text.contains("swagger-ui"), "{}", page.text);
    let init = app.get("/docs/swagger-initializer.js", None).await;
    assert_eq!(init.status, Status::OK);
    assert!(init.text.contains("/api/v1/openapi.json"), "{}", init.text);
    // `/docs` redirects to `/docs/` (the client follows it).
    let redirected = app.get("/docs", None).await;
    assert_eq!(redirected.status, Status::OK);
    assert!(redirected.text.contains("swagger-ui"));

    let off = TestApp::spawn_with(|s| s.docs = Some(false)).await;
    assert_eq!(off.get("/docs/", None).await.status, Status::NOT_FOUND);
    assert_eq!(
        off.get("/api/v1/openapi.json", None).await.status,
        Status::OK
    );
}

#[actix_web::test]
async fn migrations_run_up_down_and_up_again() {
    let db = TestDb::empty().await;
    let up = synctalk_db::run_migrations(db.url()).await.unwrap();
    assert!(up >= 2, "{up}");
    assert_eq!(
        synctalk_db::run_migrations(db.url()).await.unwrap(),
        0,
        "nothing left to run"
    );
    let down = synctalk_db::revert_migrations(db.url()).await.unwrap();
    assert_eq!(down, up);
    let mut conn = db.connect().await;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let left: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public' \
         AND table_name <> '__diesel_schema_migrations'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(left.n, 0, "down.sql left tables behind");
    assert_eq!(synctalk_db::run_migrations(db.url()).await.unwrap(), up);
}

#[test]
fn the_readme_documents_every_error_code_and_setting() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    for code in synctalk_kernel::ErrorCode::ALL {
        let row = format!("| `{}` | {} |", code.as_str(), code.status().as_u16());
        assert!(readme.contains(&row), "README lacks the error row {row}");
    }
    use clap::CommandFactory;
    let command = synctalk_app::Cli::command();
    for arg in command.get_arguments() {
        if let Some(env) = arg.get_env() {
            let name = format!("| `{}` |", env.to_string_lossy());
            assert!(readme.contains(&name), "README lacks the setting {name}");
        }
    }
}

#[actix_web::test]
async fn an_unreachable_database_fails_start_up_fast_and_clearly() {
    let mut settings = synctalk_testkit::test_settings();
    settings.database_timeout_secs = 2;
    let url = synctalk_kernel::Secret::new("postgres://nobody:nothing@127.0.0.1:1/none");
    let started = std::time::Instant::now();
    let error = synctalk_app::connect(&settings, &url)
        .await
        .expect_err("connected to nothing");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let message = format!("{error:#}");
    assert!(
        message.contains("cannot connect to the database"),
        "{message}"
    );
    assert!(
        !message.contains("nothing@"),
        "the password leaked: {message}"
    );
}

#[actix_web::test]
async fn every_authenticated_route_needs_a_token_and_shares_the_users_rate_limit() {
    let app = TestApp::spawn_with(|s| s.rate_limit_user_per_minute = 1).await;
    let alice = app.register("alice").await;
    let routes = authenticated_routes(&app, &alice).await;
    for (method, path) in &routes {
        let body = (*method == Method::PATCH).then(|| json!({}));
        let res = app
            .request(method.clone(), path, Some("not-a-token"), body.clone())
            .await;
        // Without a valid token the bucket is the IP's, which the first call empties.
        assert!(
            res.status == Status::UNAUTHORIZED || res.status == Status::TOO_MANY_REQUESTS,
            "{method} {path}: {}",
            res.status
        );
    }
    // Alice's own bucket: one request, then 429 everywhere, and nothing changes.
    assert_eq!(
        app.get("/api/v1/users/@me", Some(&alice.access_token))
            .await
            .status,
        Status::OK
    );
    for (method, path) in &routes {
        let body = (*method == Method::PATCH).then(|| json!({"bio": "changed"}));
        let res = app
            .request(method.clone(), path, Some(&alice.access_token), body)
            .await;
        assert_eq!(res.status, Status::TOO_MANY_REQUESTS, "{method} {path}");
        assert_eq!(res.code(), "rate_limited");
        assert!(res.header("retry-after").is_some());
    }
    let mut conn = app.db.connect().await;
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use synctalk_db::schema::users;
    let bio: Option<String> = users::table
        .select(users::bio)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(bio, None, "a limited request changed something");
}

/// The authorization matrix: every operation the OpenAPI document marks as needing a
/// bearer token, read from the document (so a new route cannot be left out), without a
/// token, with an expired one, with a forged one and with one of a signed-out session.
#[actix_web::test]
async fn every_secured_operation_refuses_missing_expired_forged_and_revoked_tokens() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let routes = authenticated_routes(&app, &alice).await;
    assert!(routes.len() >= 11, "{routes:?}");

    // A second session of Alice's, signed out: its access token is still unexpired.
    let phone = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "alice", "password": alice.password}),
        )
        .await;
    let revoked = phone.body["access_token"].as_str().unwrap().to_owned();
    let session = phone.body["session_id"].as_str().unwrap();
    let res = app
        .delete(
            &format!("/api/v1/auth/sessions/{session}"),
            Some(&alice.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);

    let claims = |exp: i64| json!({"sub": alice.id, "sid": alice.session_id, "iat": exp - 900, "exp": exp, "iss": "synctalk"});
    let sign = |claims: serde_json::Value, secret: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let now = chrono::Utc::now().timestamp();
    let expired = sign(claims(now - 3600), synctalk_testkit::TEST_JWT_SECRET);
    let forged = sign(
        claims(now + 3600),
        "another-secret-that-is-long-enough-000000",
    );
    let cases = [
        (None, "unauthorized"),
        (Some(expired.as_str()), "invalid_token"),
        (Some(forged.as_str()), "invalid_token"),
        (Some(revoked.as_str()), "invalid_token"),
        (Some("not-a-token"), "invalid_token"),
    ];
    for (token, code) in cases {
        for (method, path) in &routes {
            let body =
                matches!(*method, Method::POST | Method::PATCH | Method::PUT).then(|| json!({}));
            let res = app.request(method.clone(), path, token, body).await;
            assert_eq!(
                res.status,
                Status::UNAUTHORIZED,
                "{method} {path} with {token:?}"
            );
            assert_eq!(res.code(), code, "{method} {path} with {token:?}");
        }
    }
    // Nothing was done: Alice is still there and signed in.
    assert_eq!(
        app.get("/api/v1/users/@me", Some(&alice.access_token))
            .await
            .status,
        Status::OK
    );
}

#[actix_web::test]
async fn malformed_bodies_on_every_json_route_are_400() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    for path in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
    ] {
        let res = app
            .raw(Method::POST, path, "application/json", b"{\"x\":".to_vec())
            .await;
        assert_eq!(res.status, Status::BAD_REQUEST, "{path}");
        assert_eq!(res.code(), "invalid_json");
    }
    let res = app
        .request(
            Method::PATCH,
            "/api/v1/users/@me",
            Some(&alice.access_token),
            Some(json!("not an object")),
        )
        .await;
    // JSON, but not an object: a problem of the body's shape.
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY);
    assert_eq!(res.code(), "validation_failed");
}

/// Every operation the OpenAPI document secures with a bearer token, with path ids that
/// exist for `alice` (hers), or any well-formed ones (a guild's, a role's, an invite's:
/// the token is judged before the route looks anything up).
async fn authenticated_routes(
    app: &TestApp,
    alice: &synctalk_testkit::TestUser,
) -> Vec<(Method, String)> {
    let doc = app.get("/api/v1/openapi.json", None).await.body;
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            if !secured {
                continue;
            }
            let concrete = path
                .replace("{session_id}", &alice.session_id)
                .replace("{user_id}", &alice.id)
                .replace("{guild_id}", &uuid::Uuid::now_v7().to_string())
                .replace("{role_id}", &uuid::Uuid::now_v7().to_string())
                .replace("{channel_id}", &uuid::Uuid::now_v7().to_string())
                .replace("{target_id}", &uuid::Uuid::now_v7().to_string())
                .replace("{folder_id}", &uuid::Uuid::now_v7().to_string())
                .replace("{item_id}", &uuid::Uuid::now_v7().to_string())
                .replace("{message_id}", &uuid::Uuid::now_v7().to_string())
                .replace("{notification_id}", &uuid::Uuid::now_v7().to_string())
                .replace("{subscription_id}", &uuid::Uuid::now_v7().to_string())
                .replace("{emoji}", "%F0%9F%91%8D")
                .replace("{code}", "aBc123_-");
            assert!(!concrete.contains('{'), "fill in the ids of {path}");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            routes.push((method, concrete));
        }
    }
    routes
}

#[actix_web::test]
async fn invented_methods_do_not_make_new_metric_series() {
    let app = TestApp::spawn().await;
    for name in ["FOOBAR", "XYZZY1", "PROPFIND"] {
        let method = actix_web::http::Method::from_bytes(name.as_bytes()).unwrap();
        app.request(method, "/health", None, None).await;
    }
    let metrics = app.get("/metrics", None).await.text;
    for name in ["FOOBAR", "XYZZY1", "PROPFIND"] {
        assert!(!metrics.contains(name), "{name} became a label");
    }
    assert!(
        metrics.contains(r#"http_requests_total{method="other",route="/health""#),
        "{metrics}"
    );
}

#[actix_web::test]
async fn nul_characters_are_refused_before_the_database() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let login = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "a\u{0}b", "password": "correct horse battery staple"}),
        )
        .await;
    assert_eq!(login.status, Status::UNAUTHORIZED, "{}", login.text);
    assert_eq!(login.code(), "invalid_credentials");
    let search = app
        .get("/api/v1/users?query=%00", Some(&alice.access_token))
        .await;
    assert_eq!(search.status, Status::BAD_REQUEST, "{}", search.text);
    assert_eq!(search.code(), "invalid_query");
    let befriend = app
        .post(
            "/api/v1/users/@me/relationships",
            Some(&alice.access_token),
            json!({"username": "\u{0}"}),
        )
        .await;
    assert_eq!(
        befriend.status,
        Status::UNPROCESSABLE_ENTITY,
        "{}",
        befriend.text
    );
    assert!(
        befriend.body["error"]["fields"]["username"].is_array(),
        "{}",
        befriend.text
    );
}

#[actix_web::test]
async fn gateway_connections_are_limited_per_ip() {
    let app = TestApp::spawn_with(|s| s.gateway_connects_per_minute = 3).await;
    let mut statuses = Vec::new();
    for path in [
        "/gateway/users",
        "/gateway",
        "/gateway/%75sers",
        "/gateway/users",
    ] {
        statuses.push(app.get(path, None).await.status);
    }
    // Not upgrades (400), until the fourth: 429, whatever the spelling.
    assert_eq!(
        statuses,
        [
            Status::BAD_REQUEST,
            Status::BAD_REQUEST,
            Status::BAD_REQUEST,
            Status::TOO_MANY_REQUESTS
        ]
    );
    // The REST API and health have their own buckets.
    assert_eq!(app.get("/health", None).await.status, Status::OK);
}

#[actix_web::test]
async fn every_documented_path_answers_other_methods_405_with_its_allow_list() {
    let app = TestApp::spawn().await;
    let doc = app.get("/api/v1/openapi.json", None).await.body;
    let all = ["GET", "POST", "PUT", "PATCH", "DELETE", "TRACE", "OPTIONS"];
    for (path, item) in doc["paths"].as_object().unwrap() {
        let documented: Vec<String> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        let concrete = path
            .replace("{session_id}", &uuid::Uuid::now_v7().to_string())
            .replace("{user_id}", &uuid::Uuid::now_v7().to_string());
        for method in all.iter().filter(|m| !documented.iter().any(|d| d == *m)) {
            let res = app
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    &concrete,
                    None,
                    None,
                )
                .await;
            assert_eq!(res.status, Status::METHOD_NOT_ALLOWED, "{method} {path}");
            let mut allowed: Vec<&str> = res
                .header("allow")
                .unwrap_or_else(|| panic!("{method} {path}: no Allow"))
                .split(", ")
                .collect();
            // HEAD, where a path offers it, is its GET without the body (RFC 9110): it
            // goes with a documented GET and is not documented on its own.
            if documented.iter().any(|d| d == "GET") {
                allowed.retain(|m| *m != "HEAD");
            }
            allowed.sort_unstable();
            let mut expected: Vec<&str> = documented.iter().map(String::as_str).collect();
            expected.sort_unstable();
            assert_eq!(allowed, expected, "{method} {path}");
        }
    }
}

/// A worker's pool whose connections are all taken borrows an idle one of the node's
/// pool at once, instead of waiting (and answering 503 at its timeout) while that one
/// idles; never more than the node's pool lends, never one it would have to make; with
/// none to borrow it waits for one of its own.
#[actix_web::test]
async fn a_full_worker_pool_borrows_an_idle_connection_of_the_nodes() {
    use diesel_async::RunQueryDsl;
    use std::time::{Duration, Instant};
    use synctalk_db::{DbError, SessionLimits, conn, lazy};

    let db = TestDb::migrated().await;
    // Also the limit on making a connection: room for a loaded test machine.
    let timeout = Duration::from_millis(2000);
    let limits = SessionLimits::default();
    let node = lazy(db.url(), 3, timeout, limits).unwrap();
    let alone = lazy(db.url(), 1, timeout, limits).unwrap();
    let worker = lazy(db.url(), 1, timeout, limits)
        .unwrap()
        .with_overflow(node.lender(1));

    // A pool of its own only: the second request waits its timeout, then fails.
    let held = conn(&alone).await.unwrap();
    let start = Instant::now();
    assert!(matches!(conn(&alone).await, Err(DbError::Unavailable(_))));
    assert!(start.elapsed() >= timeout);
    drop(held);

    // The node's pool has made no connection yet: none is lent (none is made for it).
    let mine = conn(&worker).await.unwrap();
    let start = Instant::now();
    assert!(matches!(conn(&worker).await, Err(DbError::Unavailable(_))));
    assert!(start.elapsed() >= timeout);
    assert_eq!(node.status().size, 0);

    // Two idle connections in the node's pool: one is lent at once, not a second.
    let (a, b) = (conn(&node).await.unwrap(), conn(&node).await.unwrap());
    drop((a, b));
    let start = Instant::now();
    let mut borrowed = conn(&worker).await.unwrap();
    assert!(
        start.elapsed() < timeout,
        "waited {:?} with an idle connection in the node's pool",
        start.elapsed()
    );
    let one: Vec<i32> = diesel::dsl::sql::<diesel::sql_types::Integer>("SELECT 1")
        .load(&mut *borrowed)
        .await
        .unwrap();
    assert_eq!(one, vec![1]);
    assert_eq!(node.status().available, 1, "{:?}", node.status());
    let start = Instant::now();
    assert!(
        matches!(conn(&worker).await, Err(DbError::Unavailable(_))),
        "lent more than the lender's limit"
    );
    assert!(start.elapsed() >= timeout);
    assert_eq!(node.status().available, 1, "kept for the node's own users");

    // Nothing to borrow: the next waits for its own pool's connection, given back.
    let release = async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(mine);
    };
    let (third, ()) = tokio::join!(conn(&worker), release);
    assert!(third.is_ok());
    assert_eq!(worker.status().available, 0);
    drop(third);
    drop(borrowed);
    assert_eq!(node.status().available, 2, "given back to the node's pool");
    // And its permit with it: another can be borrowed.
    let _mine = conn(&worker).await.unwrap();
    let _borrowed = tokio::time::timeout(timeout / 2, conn(&worker))
        .await
        .expect("a permit was not given back")
        .unwrap();
}
