//! What every route shares: the error shape, request ids, limits, health, metrics, the
//! OpenAPI document, and the migrations.

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
    let wrong_method = app
        .request(Method::GET, "/api/v1/auth/login", None, None)
        .await;
    assert_eq!(wrong_method.status, Status::METHOD_NOT_ALLOWED);

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
