//! The test kit: every test gets its own database, cloned from a migrated template,
//! and its own real server on port 0.
//!
//! With `DATABASE_URL` set the databases are made on that server; otherwise the kit
//! starts a private PostgreSQL cluster (the same code `cargo run` uses) under the
//! system temp dir and keeps it running for later test runs. Test processes share it
//! safely (a file lock for the cluster, an advisory lock for the template).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use actix_web::dev::ServerHandle;
use actix_web::http::header::HeaderMap;
pub use actix_web::http::{Method, StatusCode};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};
use synctalk_app::{Application, Settings};
use synctalk_db::cluster::{Durability, LocalCluster};
use synctalk_kernel::Secret;
use tokio::sync::OnceCell;

struct Shared {
    admin_url: String,
    template: String,
}

static SHARED: OnceCell<Result<Shared, String>> = OnceCell::const_new();

async fn shared() -> &'static Shared {
    let result = SHARED
        .get_or_init(|| async { init_shared().await.map_err(|e| format!("{e:#}")) })
        .await;
    match result {
        Ok(shared) => shared,
        Err(error) => panic!("test database set-up failed: {error}"),
    }
}

async fn init_shared() -> anyhow::Result<Shared> {
    let admin_url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => synctalk_db::url_with_database(&url, "postgres"),
        _ => {
            let root = cluster_root();
            let cluster = tokio::task::spawn_blocking(move || {
                LocalCluster::start(&root, Durability::Ephemeral)
            })
            .await??;
            cluster.url("postgres")
        }
    };
    let template = format!("synctalk_template_{:016x}", migrations_hash());

    // One process makes the template; the others wait for it.
    let mut lock = AsyncPgConnection::establish(&admin_url).await?;
    diesel::sql_query("SELECT pg_advisory_lock(7307000002)")
        .execute(&mut lock)
        .await?;
    let made = async {
        if !synctalk_db::database_exists(&admin_url, &template).await? {
            let building = format!("{template}_building");
            synctalk_db::drop_database(&admin_url, &building).await?;
            synctalk_db::create_database(&admin_url, &building, None).await?;
            synctalk_db::run_migrations(&synctalk_db::url_with_database(&admin_url, &building))
                .await?;
            let rename = format!("ALTER DATABASE \"{building}\" RENAME TO \"{template}\"");
            diesel::sql_query(rename).execute(&mut lock).await?;
        }
        anyhow::Ok(())
    }
    .await;
    diesel::sql_query("SELECT pg_advisory_unlock(7307000002)")
        .execute(&mut lock)
        .await?;
    made?;
    Ok(Shared {
        admin_url,
        template,
    })
}

/// A database migrated from scratch (not from the template), replaced on each call:
/// what `diesel print-schema` reads in CI to prove `schema.rs` matches the migrations.
pub async fn schema_check_database() -> anyhow::Result<String> {
    let shared = init_shared().await?;
    let name = "synctalk_schema_check";
    synctalk_db::drop_database(&shared.admin_url, name).await?;
    synctalk_db::create_database(&shared.admin_url, name, None).await?;
    let url = synctalk_db::url_with_database(&shared.admin_url, name);
    synctalk_db::run_migrations(&url).await?;
    Ok(url)
}

/// Where the private cluster lives: one per checkout, under the temp dir (which the
/// unprivileged `postgres` user can reach even when the checkout is under /root).
fn cluster_root() -> PathBuf {
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    std::env::temp_dir().join(format!(
        "synctalk-test-pg-{:08x}",
        fnv1a(workspace.as_bytes()) as u32
    ))
}

/// A hash of every migration file, so a changed migration gets a fresh template.
fn migrations_hash() -> u64 {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|entry| {
            std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|entry| entry.path())
        .collect();
    files.sort();
    let mut bytes = Vec::new();
    for file in files {
        bytes.extend(
            file.strip_prefix(&dir)
                .unwrap_or(&file)
                .to_string_lossy()
                .as_bytes(),
        );
        bytes.extend(std::fs::read(&file).unwrap_or_default());
    }
    fnv1a(&bytes)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A database of one test's own, dropped when the test ends.
pub struct TestDb {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDb {
    /// A fresh database with every migration applied (a copy of the template).
    pub async fn migrated() -> Self {
        let shared = shared().await;
        let db = Self::named(shared);
        synctalk_db::create_database(&shared.admin_url, &db.name, Some(&shared.template))
            .await
            .unwrap();
        db
    }

    /// A fresh, empty database (for migration tests).
    pub async fn empty() -> Self {
        let shared = shared().await;
        let db = Self::named(shared);
        synctalk_db::create_database(&shared.admin_url, &db.name, None)
            .await
            .unwrap();
        db
    }

    fn named(shared: &Shared) -> Self {
        let name = format!("synctalk_test_{}", uuid::Uuid::now_v7().simple());
        let url = synctalk_db::url_with_database(&shared.admin_url, &name);
        Self {
            admin_url: shared.admin_url.clone(),
            name,
            url,
        }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database now (to test what happens when it is gone).
    pub async fn drop_now(&self) {
        synctalk_db::drop_database(&self.admin_url, &self.name)
            .await
            .unwrap();
    }

    /// A direct connection, for looking behind the API.
    pub async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        // Its own thread and runtime: Drop may run inside (or after) the test's runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime
                .block_on(synctalk_db::drop_database(&admin, &name))
                .ok()
        })
        .join();
    }
}

/// The settings tests run with: port 0, one worker, cheap password hashing, rate limits
/// out of the way (a test that checks them sets its own).
pub fn test_settings() -> Settings {
    let mut settings = Settings::defaults();
    settings.port = 0;
    settings.workers = Some(1);
    settings.database_url = None;
    settings.database_pool_size = 4;
    settings.argon2_memory_kib = 1024;
    settings.argon2_iterations = 1;
    settings.rate_limit_auth_per_minute = 100_000;
    settings.rate_limit_user_per_minute = 100_000;
    settings.docs = Some(true);
    settings.jwt_secret = Some(Secret::new(TEST_JWT_SECRET));
    settings
}

/// The JWT secret of test servers (so a test can forge tokens).
pub const TEST_JWT_SECRET: &str = "test-secret-for-synctalk-tests-only-0123456789";

/// A running server on its own database.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The port.
    pub port: u16,
    /// Its database.
    pub db: TestDb,
    handle: ServerHandle,
    client: awc::Client,
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Response {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
    /// The body as text.
    pub text: String,
}

impl Response {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// A signed-in test user.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// Id.
    pub id: String,
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
    /// Access token.
    pub access_token: String,
    /// Refresh token.
    pub refresh_token: String,
    /// Session id.
    pub session_id: String,
}

impl TestApp {
    /// A server with [`test_settings`].
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A server with changed settings.
    pub async fn spawn_with(change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = test_settings();
        change(&mut settings);
        let db = TestDb::migrated().await;
        let pool = synctalk_db::connect(
            db.url(),
            settings.database_pool_size,
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
        let secret = settings.jwt_secret.clone().unwrap();
        let app = Application::build(&settings, pool, secret).await.unwrap();
        let port = app.port();
        let handle = app.handle();
        actix_web::rt::spawn(app.run_until_stopped());
        let client = awc::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .finish();
        Self {
            base: format!("http://127.0.0.1:{port}"),
            port,
            db,
            handle,
            client,
        }
    }

    /// A request with an optional bearer token and JSON body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let res = match body {
            Some(body) => req.send_json(&body).await,
            None => req.send().await,
        };
        read(res.unwrap()).await
    }

    /// A request with a raw body and content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Response {
        let req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .insert_header(("content-type", content_type));
        read(req.send_body(body).await.unwrap()).await
    }

    /// GET.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, path, token, None).await
    }

    /// POST with JSON.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(Method::POST, path, token, Some(body)).await
    }

    /// PATCH with JSON.
    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(Method::PATCH, path, token, Some(body)).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::DELETE, path, token, None).await
    }

    /// Registers `username` (email `<username>@example.com`, a fixed password).
    pub async fn register(&self, username: &str) -> TestUser {
        let password = "correct horse battery staple";
        let res = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({"username": username, "email": format!("{username}@example.com"), "password": password}),
            )
            .await;
        assert_eq!(
            res.status,
            StatusCode::CREATED,
            "register {username}: {}",
            res.text
        );
        TestUser {
            id: res.body["user"]["id"].as_str().unwrap().to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
            access_token: res.body["access_token"].as_str().unwrap().to_owned(),
            refresh_token: res.body["refresh_token"].as_str().unwrap().to_owned(),
            session_id: res.body["session_id"].as_str().unwrap().to_owned(),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Sends the stop command now; the server winds down with the test's runtime.
        drop(self.handle.stop(false));
    }
}

async fn read<S>(mut res: awc::ClientResponse<S>) -> Response
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.body().limit(16 * 1024 * 1024).await.unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Response {
        status,
        headers,
        body,
        text,
    }
}

pub use actix_web::http::StatusCode as Status;
pub use serde_json::json as body;
