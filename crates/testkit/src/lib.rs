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
    drop_stale_databases(&admin_url);
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

/// Drops, in the background, test databases older than an hour (their names carry a
/// UUIDv7, so their age) that earlier runs left behind.
fn drop_stale_databases(admin_url: &str) {
    let admin = admin_url.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async {
            #[derive(diesel::QueryableByName)]
            struct Name {
                #[diesel(sql_type = diesel::sql_types::Text)]
                datname: String,
            }
            let mut conn = AsyncPgConnection::establish(&admin).await.ok()?;
            let names: Vec<Name> = diesel::sql_query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'synctalk\\_test\\_%'",
            )
            .load(&mut conn)
            .await
            .ok()?;
            let hour_ago = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs()
                - 3600;
            for name in names {
                let Some(id) = name
                    .datname
                    .strip_prefix("synctalk_test_")
                    .and_then(|s| uuid::Uuid::parse_str(s).ok())
                else {
                    continue;
                };
                let created = id
                    .get_timestamp()
                    .map(|t| t.to_unix().0)
                    .unwrap_or(u64::MAX);
                if created < hour_ago {
                    let _ = synctalk_db::drop_database(&admin, &name.datname).await;
                }
            }
            Some(())
        })
    });
}

/// A NATS server for tests: `NATS_URL` when set, else a `nats-server` of the kit's
/// own (started once per checkout, on a free port, and left running like the
/// PostgreSQL cluster). Tests isolate themselves with subject prefixes.
pub async fn nats_url() -> String {
    static URL: OnceCell<String> = OnceCell::const_new();
    URL.get_or_init(|| async {
        match std::env::var("NATS_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => tokio::task::spawn_blocking(|| {
                let port = private_server(
                    "nats",
                    &[
                        "nats-server",
                        "/usr/sbin/nats-server",
                        "/usr/bin/nats-server",
                        "/usr/local/bin/nats-server",
                    ],
                    |port| {
                        vec![
                            "-a".into(),
                            "127.0.0.1".into(),
                            "-p".into(),
                            port.to_string(),
                        ]
                    },
                );
                format!("nats://127.0.0.1:{port}")
            })
            .await
            .unwrap(),
        }
    })
    .await
    .clone()
}

/// A Redis for tests: `REDIS_URL` when set, else a `redis-server` of the kit's own
/// (nothing saved to disk), started once and shared like the NATS server.
pub async fn redis_url() -> String {
    static URL: OnceCell<String> = OnceCell::const_new();
    URL.get_or_init(|| async {
        match std::env::var("REDIS_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => tokio::task::spawn_blocking(|| {
                let port = private_server(
                    "redis",
                    &[
                        "redis-server",
                        "/usr/bin/redis-server",
                        "/usr/local/bin/redis-server",
                    ],
                    |port| {
                        [
                            "--bind",
                            "127.0.0.1",
                            "--port",
                            &port.to_string(),
                            "--save",
                            "",
                            "--appendonly",
                            "no",
                        ]
                        .map(String::from)
                        .to_vec()
                    },
                );
                format!("redis://127.0.0.1:{port}/0")
            })
            .await
            .unwrap(),
        }
    })
    .await
    .clone()
}

/// A `redis-server` for one test alone, to be stopped by it (fault tests): the process
/// and its URL, once it accepts connections.
pub async fn own_redis() -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server is not installed");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (child, format!("redis://127.0.0.1:{port}/0"))
}

/// Starts a server of `kind` from the first of `binaries` that runs, on a free port of
/// 127.0.0.1, with `args(port)`, once per checkout: later test processes find it by the
/// port file. Returns the port.
// The server outlives this process on purpose (like the test PostgreSQL cluster), so
// it is never waited for.
#[allow(clippy::zombie_processes)]
fn private_server(kind: &str, binaries: &[&str], args: impl Fn(u16) -> Vec<String>) -> u16 {
    use std::net::{TcpListener, TcpStream};
    let dir = std::env::temp_dir().join(format!(
        "synctalk-test-{kind}-{:08x}",
        fnv1a(concat!(env!("CARGO_MANIFEST_DIR"), "/../..").as_bytes()) as u32
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join("lock")).unwrap();
    lock.lock().unwrap();
    let port_file = dir.join("port");
    if let Some(port) = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok())
        && TcpStream::connect(("127.0.0.1", port)).is_ok()
    {
        return port;
    }
    let binary = binaries
        .iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok()
        })
        .unwrap_or_else(|| panic!("{} is not installed, and no URL for it is set", binaries[0]));
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join(format!("{kind}.log"))).unwrap();
    use std::os::unix::process::CommandExt;
    std::process::Command::new(binary)
        .args(args(port))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            std::fs::write(&port_file, port.to_string()).unwrap();
            return port;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "{binary} did not start; see {}",
        dir.join(format!("{kind}.log")).display()
    );
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

    /// Where the servers on this database keep attachments (removed with it).
    pub fn attachments_dir(&self) -> std::path::PathBuf {
        std::env::temp_dir()
            .join("synctalk-test-attachments")
            .join(&self.name)
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
        // Its own thread and runtime (Drop may run inside or after the test's runtime),
        // not waited for: PostgreSQL's DROP DATABASE can take a while to collect every
        // backend's acknowledgement, and a database left behind by an exiting process
        // is removed by a later run (see `drop_stale_databases`).
        let _ = std::fs::remove_dir_all(self.attachments_dir());
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime
                .block_on(synctalk_db::drop_database(&admin, &name))
                .ok()
        });
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
    settings.gateway_connects_per_minute = 100_000;
    settings.docs = Some(true);
    settings.jwt_secret = Some(Secret::new(TEST_JWT_SECRET));
    settings.vapid_private_key = Some(Secret::new(test_vapid_key()));
    settings
}

/// The VAPID key of this test process's servers (made once: nodes of a test share it).
pub fn test_vapid_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        use base64::Engine as _;
        let der = synctalk_notifications::push::Vapid::generate_pkcs8().unwrap();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(der)
    })
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
    pub db: std::sync::Arc<TestDb>,
    handle: ServerHandle,
    hub: std::sync::Arc<synctalk_gateway::Hub>,
    relay: tokio::task::AbortHandle,
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
    /// The body as it came.
    pub bytes: Vec<u8>,
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
    /// Waits (up to 20 s) until none of `who`'s gateway sessions is marked connected:
    /// the server has seen every socket of theirs go, as a test that dropped one and
    /// then counts on it being gone must know.
    pub async fn until_offline(&self, who: &TestUser) {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = self.db.connect().await;
        for _ in 0..400 {
            let live: N = diesel::sql_query(
                "SELECT count(*) AS n FROM gateway_sessions WHERE user_id = $1::uuid AND connected",
            )
            .bind::<diesel::sql_types::Text, _>(&who.id)
            .get_result(&mut conn)
            .await
            .unwrap();
            if live.n == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{} still has a connected socket after 20 s", who.username);
    }

    /// A server with [`test_settings`].
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A server with changed settings.
    pub async fn spawn_with(change: impl FnOnce(&mut Settings)) -> Self {
        let db = std::sync::Arc::new(TestDb::migrated().await);
        Self::spawn_on(db, change).await
    }

    /// A server on an existing database (several servers on one database are the
    /// nodes of one deployment; give them one NATS with [`nats_url`]).
    pub async fn spawn_on(db: std::sync::Arc<TestDb>, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = test_settings();
        // The nodes of one test share their attachments, as they share the database.
        settings.attachments_store = Some(db.attachments_dir().to_string_lossy().into_owned());
        change(&mut settings);
        let pool = synctalk_db::connect(
            db.url(),
            settings.database_pool_size,
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
        let secret = settings.jwt_secret.clone().unwrap();
        let url = Secret::new(db.url());
        let app = Application::build(&settings, pool, &url, secret)
            .await
            .unwrap();
        let port = app.port();
        let handle = app.handle();
        let hub = app.hub();
        let relay = app.relay_handle();
        actix_web::rt::spawn(app.run_until_stopped());
        let client = awc::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .finish();
        Self {
            base: format!("http://127.0.0.1:{port}"),
            port,
            db,
            handle,
            hub,
            relay,
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
        self.request_with_headers(method, path, token, body, &[])
            .await
    }

    /// A request with an optional bearer token, JSON body and extra headers.
    pub async fn request_with_headers(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
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

    /// Sends `content` to a channel as `who` (asserting 201): the new message's id.
    pub async fn send_message(&self, who: &TestUser, channel: &str, content: &str) -> String {
        let res = self
            .post(
                &format!("/api/v1/channels/{channel}/messages"),
                Some(&who.access_token),
                serde_json::json!({ "content": content }),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
        res.body["id"].as_str().unwrap().to_owned()
    }

    /// Opens (or finds) the DM of `from` with `to`: its id.
    pub async fn open_dm(&self, from: &TestUser, to: &TestUser) -> String {
        let res = self
            .post(
                "/api/v1/users/@me/channels",
                Some(&from.access_token),
                serde_json::json!({ "recipient_id": to.id }),
            )
            .await;
        assert!(res.status.is_success(), "{}", res.text);
        res.body["id"].as_str().unwrap().to_owned()
    }

    /// Opens a group DM of `from` with `others`: its id.
    pub async fn open_group_dm(&self, from: &TestUser, others: &[&TestUser]) -> String {
        let ids: Vec<&str> = others.iter().map(|u| u.id.as_str()).collect();
        let res = self
            .post(
                "/api/v1/users/@me/channels",
                Some(&from.access_token),
                serde_json::json!({ "recipient_ids": ids }),
            )
            .await;
        assert!(res.status.is_success(), "{}", res.text);
        res.body["id"].as_str().unwrap().to_owned()
    }

    /// A `multipart/form-data` POST of `parts`: (name, file name, bytes) each.
    pub async fn multipart(
        &self,
        path: &str,
        token: Option<&str>,
        parts: &[(&str, Option<&str>, &[u8])],
    ) -> Response {
        let boundary = "synctalk-test-boundary-7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        for (name, filename, bytes) in parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            let disposition = match filename {
                Some(f) => format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                ),
                None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
            };
            body.extend_from_slice(disposition.as_bytes());
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .insert_header((
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            ));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
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

    /// PUT, with a JSON body or none.
    pub async fn put(&self, path: &str, token: Option<&str>, body: Option<Value>) -> Response {
        self.request(Method::PUT, path, token, body).await
    }

    /// A guild named "G" of `owner` that each of `members` joined by one invite:
    /// (the guild's id, its `general` channel's id).
    pub async fn guild_with(&self, owner: &TestUser, members: &[&TestUser]) -> (String, String) {
        let token = Some(owner.access_token.as_str());
        let res = self
            .post("/api/v1/guilds", token, json!({"name": "G"}))
            .await;
        assert_eq!(res.status, Status::CREATED, "{}", res.text);
        let guild = res.body["id"].as_str().unwrap_or_default().to_owned();
        let res = self
            .post(&format!("/api/v1/guilds/{guild}/invites"), token, json!({}))
            .await;
        assert_eq!(res.status, Status::CREATED, "{}", res.text);
        let code = res.body["code"].as_str().unwrap_or_default().to_owned();
        for member in members {
            let res = self
                .post(
                    &format!("/api/v1/invites/{code}"),
                    Some(&member.access_token),
                    json!({}),
                )
                .await;
            assert_eq!(res.status, Status::OK, "{}", res.text);
        }
        let res = self
            .get(&format!("/api/v1/guilds/{guild}/channels"), token)
            .await;
        let general = res.body[0]["id"].as_str().unwrap_or_default().to_owned();
        (guild, general)
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
        bytes: bytes.to_vec(),
    }
}

pub use actix_web::http::StatusCode as Status;
pub use serde_json::json as body;

/// What a WebSocket client received.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A JSON frame.
    Frame(Value),
    /// The server closed with this code (None: no close frame; the socket just ended).
    Closed(Option<u16>),
}

/// A real WebSocket client of a gateway.
pub struct WsClient {
    framed: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
}

impl TestApp {
    /// Connects a WebSocket to `path` (e.g. `/gateway/users`).
    pub async fn ws(&self, path: &str) -> WsClient {
        let url = format!("ws://127.0.0.1:{}{path}", self.port);
        let (_, framed) = self
            .client
            .ws(url)
            .max_frame_size(64 * 1024 * 1024)
            .connect()
            .await
            .unwrap();
        WsClient { framed }
    }

    /// Connects to `path`, expects HELLO, identifies with `token` and returns READY's `d`.
    pub async fn gateway(&self, path: &str, token: &str) -> (WsClient, Value) {
        let mut ws = self.ws(path).await;
        let hello = ws.frame().await;
        assert_eq!(hello["op"], 10, "{hello}");
        let ready = ws.identify(token).await;
        (ws, ready)
    }

    /// Connects to `/gateway/users`, expects HELLO and sends RESUME.
    pub async fn resume(&self, token: &str, session_id: &str, seq: i64) -> WsClient {
        let mut ws = self.ws("/gateway/users").await;
        let hello = ws.frame().await;
        assert_eq!(hello["op"], 10, "{hello}");
        ws.send(json!({"op": 6, "d": {"token": token, "session_id": session_id, "seq": seq}}))
            .await;
        ws
    }

    /// Stops this server the graceful way (RECONNECT to every gateway socket).
    pub async fn shutdown(&self) {
        Application::shutdown(&self.hub, &self.handle).await;
    }

    /// Kills this node as a crash would: its relay stops, its sockets drop without a
    /// word, nothing is cleaned up.
    pub async fn kill(&self) {
        self.relay.abort();
        self.handle.stop(false).await;
    }

    /// Several servers on one database and one NATS: the nodes of one deployment.
    pub async fn cluster(nodes: usize, change: impl Fn(&mut Settings)) -> Vec<TestApp> {
        let db = std::sync::Arc::new(TestDb::migrated().await);
        let nats = nats_url().await;
        let prefix = format!("synctalk_test_{}", uuid::Uuid::now_v7().simple());
        let mut apps = Vec::new();
        for _ in 0..nodes {
            let (nats, prefix) = (nats.clone(), prefix.clone());
            apps.push(
                TestApp::spawn_on(db.clone(), |s| {
                    s.nats_url = Some(Secret::new(nats));
                    s.nats_subject_prefix = prefix;
                    change(s);
                })
                .await,
            );
        }
        apps
    }
}

/// How long a test waits for any one frame.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl WsClient {
    /// Connects a WebSocket to a full `ws://` URL.
    pub async fn connect(url: &str) -> WsClient {
        let client = awc::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .finish();
        let (_, framed) = client
            .ws(url)
            .max_frame_size(64 * 1024 * 1024)
            .connect()
            .await
            .unwrap();
        WsClient { framed }
    }

    /// Sends a ping and waits for its pong (frames that come first are dropped).
    pub async fn ping(&mut self, data: &'static [u8]) -> bool {
        use futures_util::{SinkExt, StreamExt};
        self.framed
            .send(awc::ws::Message::Ping(data.into()))
            .await
            .unwrap();
        let pong = tokio::time::timeout(WAIT, async {
            loop {
                match self.framed.next().await {
                    Some(Ok(awc::ws::Frame::Pong(got))) => return &got[..] == data,
                    Some(Ok(_)) => {}
                    _ => return false,
                }
            }
        })
        .await;
        pong.unwrap_or(false)
    }

    /// Sends a JSON frame split into `pieces` WebSocket fragments.
    pub async fn send_fragmented(&mut self, frame: Value, pieces: usize) {
        use actix_http::ws::{Item, Message};
        use futures_util::SinkExt;
        let text = frame.to_string().into_bytes();
        let size = text.len().div_ceil(pieces.max(2));
        let chunks: Vec<Vec<u8>> = text.chunks(size).map(<[u8]>::to_vec).collect();
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let item = match i {
                0 => Item::FirstText(chunk.into()),
                i if i == last => Item::Last(chunk.into()),
                _ => Item::Continue(chunk.into()),
            };
            self.framed.send(Message::Continuation(item)).await.unwrap();
        }
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) {
        use futures_util::SinkExt;
        self.framed
            .send(awc::ws::Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.framed
            .send(awc::ws::Message::Text(text.to_owned().into()))
            .await
            .unwrap();
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        use futures_util::SinkExt;
        self.framed
            .send(awc::ws::Message::Binary(bytes.into()))
            .await
            .unwrap();
    }

    /// Closes cleanly (1000): the session ends.
    pub async fn close(mut self) {
        self.send_close().await;
        // Wait for the server's close so the session is ended before we go on.
        let _ = tokio::time::timeout(WAIT, async {
            loop {
                if let Received::Closed(_) = self.recv_any().await {
                    break;
                }
            }
        })
        .await;
    }

    /// Sends a clean close (1000) and drops the connection at once, without waiting
    /// for the server's close (as many clients do).
    pub async fn close_and_go(mut self) {
        self.send_close().await;
    }

    async fn send_close(&mut self) {
        use futures_util::SinkExt;
        let reason = awc::ws::CloseReason {
            code: awc::ws::CloseCode::Normal,
            description: None,
        };
        let _ = self
            .framed
            .send(awc::ws::Message::Close(Some(reason)))
            .await;
    }

    /// The next frame or close, within [`WAIT`].
    pub async fn recv(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.recv_any())
            .await
            .expect("no frame within the wait")
    }

    /// Whether anything arrives within `wait` (None: nothing did).
    pub async fn recv_within(&mut self, wait: std::time::Duration) -> Option<Received> {
        tokio::time::timeout(wait, self.recv_any()).await.ok()
    }

    async fn recv_any(&mut self) -> Received {
        use futures_util::{SinkExt, StreamExt};
        loop {
            match self.framed.next().await {
                None => return Received::Closed(None),
                Some(Err(_)) => return Received::Closed(None),
                Some(Ok(awc::ws::Frame::Text(bytes))) => {
                    return Received::Frame(serde_json::from_slice(&bytes).expect("a JSON frame"));
                }
                Some(Ok(awc::ws::Frame::Close(reason))) => {
                    return Received::Closed(reason.map(|r| u16::from(r.code)));
                }
                Some(Ok(awc::ws::Frame::Ping(data))) => {
                    let _ = self.framed.send(awc::ws::Message::Pong(data)).await;
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next frame, which must not be a close.
    pub async fn frame(&mut self) -> Value {
        match self.recv().await {
            Received::Frame(frame) => frame,
            Received::Closed(code) => panic!("closed ({code:?}) while a frame was expected"),
        }
    }

    /// The next DISPATCH, skipping heartbeat acks (and presence updates, unless
    /// `name` is PRESENCE_UPDATE: they come and go with every socket); it must be
    /// `name`.
    pub async fn dispatch(&mut self, name: &str) -> Value {
        loop {
            let frame = self.frame().await;
            if frame["op"] == 11 || (name != "PRESENCE_UPDATE" && frame["t"] == "PRESENCE_UPDATE") {
                continue;
            }
            assert_eq!(frame["op"], 0, "expected {name}, got {frame}");
            assert_eq!(frame["t"], name, "expected {name}, got {frame}");
            return frame;
        }
    }

    /// The next DISPATCH whose `t` is one of `names`, skipping every other frame.
    pub async fn next_of(&mut self, names: &[&str]) -> Value {
        loop {
            let frame = self.frame().await;
            if let Some(t) = frame["t"].as_str()
                && names.contains(&t)
            {
                return frame;
            }
        }
    }

    /// Asserts that nothing of `names` arrives for `wait` (other frames may).
    pub async fn none_of(&mut self, names: &[&str], wait: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await {
                None => return,
                Some(Received::Frame(frame)) => {
                    if let Some(t) = frame["t"].as_str() {
                        assert!(!names.contains(&t), "unexpected {frame}");
                    }
                }
                Some(Received::Closed(code)) => panic!("closed {code:?}"),
            }
        }
    }

    /// Expects the server to close, and returns the code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match self.recv().await {
                Received::Closed(code) => return code,
                Received::Frame(frame)
                    if frame["op"] == 11 || frame["op"] == 7 || frame["t"] == "PRESENCE_UPDATE" =>
                {
                    continue;
                }
                Received::Frame(frame) => panic!("expected a close, got {frame}"),
            }
        }
    }

    /// Identifies and returns READY's `d`.
    pub async fn identify(&mut self, token: &str) -> Value {
        self.send(json!({"op": 2, "d": {"token": token}})).await;
        let ready = self.dispatch("READY").await;
        assert!(ready["s"].is_null(), "READY is not replayable: {ready}");
        ready["d"].clone()
    }

    /// Sends a heartbeat and waits for its ack.
    pub async fn heartbeat(&mut self) {
        self.send(json!({"op": 1, "d": null})).await;
        loop {
            let frame = self.frame().await;
            if frame["op"] == 11 {
                return;
            }
        }
    }

    /// Sends a REQUEST and returns the RESPONSE's `d`.
    pub async fn request(&mut self, command: &str, nonce: &str, data: Value) -> Value {
        self.send(json!({"op": 12, "t": command, "nonce": nonce, "d": data}))
            .await;
        loop {
            let frame = self.frame().await;
            if frame["op"] == 13 {
                assert_eq!(frame["nonce"], nonce);
                return frame["d"].clone();
            }
        }
    }
}
