//! Faults with real processes: server nodes are `synctalk` processes of their own, killed
//! with SIGKILL; PostgreSQL is a cluster of the test's own, stopped and started; NATS is
//! a `nats-server` of the test's own, killed and started again. Through each fault a
//! writer keeps changing a profile, and a client on the gateway must receive every
//! change whose request was acknowledged (200), exactly once and in order, resuming
//! wherever its socket is cut.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use synctalk_testkit::{Received, TestDb, WsClient};
use tokio::time::{Instant, sleep};

/// A `synctalk` server process.
struct Node {
    child: Child,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Node {
    /// Starts a node with `env` (plus test defaults) and waits until it answers.
    async fn start(env: &[(&str, String)]) -> Node {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_synctalk"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SYNCTALK_PORT", port.to_string())
            .env("JWT_SECRET", synctalk_testkit::TEST_JWT_SECRET)
            .env("RATE_LIMIT_AUTH_PER_MINUTE", "100000")
            .env("RATE_LIMIT_USER_PER_MINUTE", "1000000")
            .env("ARGON2_MEMORY_KIB", "1024")
            .env("ARGON2_ITERATIONS", "1")
            .env("SYNCTALK_DOCS", "false")
            .env("LOG_LEVEL", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the synctalk binary");
        let node = Node { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while call(&node.base(), "GET", "/health", None, None).await.0 != 200 {
            assert!(Instant::now() < deadline, "node on {port} did not start");
            sleep(Duration::from_millis(100)).await;
        }
        node
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn gateway(&self) -> String {
        format!("ws://127.0.0.1:{}/gateway/users", self.port)
    }

    fn kill_9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    /// Asks it to stop as a deployment does (SIGTERM).
    fn terminate(&mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP call; the status (0 when the node did not answer) and the JSON body.
async fn call(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let mut request = client.request(
        awc::http::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{base}{path}"),
    );
    if let Some(token) = token {
        request = request.insert_header(("authorization", format!("Bearer {token}")));
    }
    let sent = match body {
        Some(body) => request.send_json(&body).await,
        None => request.send().await,
    };
    match sent {
        Ok(mut res) => {
            let bytes = res.body().await.unwrap_or_default();
            (
                res.status().as_u16(),
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        }
        Err(_) => (0, Value::Null),
    }
}

struct Account {
    id: String,
    token: String,
}

async fn register(base: &str, name: &str) -> Account {
    let (status, body) = call(
        base,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"username": name, "email": format!("{name}@example.com"), "password": "correct horse battery staple"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    Account {
        id: body["user"]["id"].as_str().unwrap().to_owned(),
        token: body["access_token"].as_str().unwrap().to_owned(),
    }
}

/// Alice and Bob, friends: Alice sees each change of Bob's profile.
async fn friends(base: &str) -> (Account, Account) {
    let alice = register(base, "alice").await;
    let bob = register(base, "bob").await;
    let (status, _) = call(
        base,
        "POST",
        "/api/v1/users/@me/relationships",
        Some(&bob.token),
        Some(json!({"username": "alice"})),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        base,
        "PUT",
        &format!("/api/v1/users/@me/relationships/{}", bob.id),
        Some(&alice.token),
        None,
    )
    .await;
    assert_eq!(status, 204);
    (alice, bob)
}

/// A gateway client that keeps what it receives of Bob and resumes when cut.
struct Receiver {
    ws: Option<WsClient>,
    token: String,
    bob: String,
    session_id: String,
    seq: i64,
    bios: Vec<String>,
    seqs: Vec<i64>,
    resumes: usize,
}

impl Receiver {
    async fn identify(url: &str, alice: &Account, bob: &Account) -> Receiver {
        let mut ws = WsClient::connect(url).await;
        assert_eq!(ws.frame().await["op"], 10, "HELLO first");
        let ready = ws.identify(&alice.token).await;
        Receiver {
            ws: Some(ws),
            token: alice.token.clone(),
            bob: bob.id.clone(),
            session_id: ready["session_id"].as_str().unwrap().to_owned(),
            seq: 0,
            bios: Vec::new(),
            seqs: Vec::new(),
            resumes: 0,
        }
    }

    /// Notes a frame's `s` and keeps Bob's profile changes.
    fn keep(&mut self, frame: &Value) {
        if let Some(s) = frame["s"].as_i64() {
            self.seq = s;
        }
        if frame["t"] == "USER_UPDATE" && frame["d"]["id"] == self.bob.as_str() {
            self.seqs.push(frame["s"].as_i64().unwrap());
            self.bios
                .push(frame["d"]["bio"].as_str().unwrap().to_owned());
        }
    }

    /// Reads for up to `wait`; false when the socket ended.
    async fn read(&mut self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let Some(ws) = self.ws.as_mut() else {
                return false;
            };
            if left.is_zero() {
                return true;
            }
            match ws.recv_within(left).await {
                None => return true,
                Some(Received::Closed(_)) => {
                    self.ws = None;
                    return false;
                }
                Some(Received::Frame(frame)) => self.keep(&frame),
            }
        }
    }

    /// Resumes on `url`, retrying while the node cannot take it yet.
    async fn resume(&mut self, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut ws = WsClient::connect(url).await;
            ws.send(json!({"op": 6, "d": {"token": self.token, "session_id": self.session_id, "seq": self.seq}}))
                .await;
            self.ws = Some(ws);
            // The replay and RESUMED, or a close (4000: try again).
            loop {
                let ws = self.ws.as_mut().unwrap();
                match ws.recv_within(Duration::from_secs(10)).await {
                    Some(Received::Frame(frame)) if frame["t"] == "RESUMED" => {
                        self.resumes += 1;
                        return;
                    }
                    Some(Received::Frame(frame)) if frame["op"] == 9 => {
                        panic!("the session could not be resumed: {frame}")
                    }
                    Some(Received::Frame(frame)) => self.keep(&frame),
                    Some(Received::Closed(_)) | None => break,
                }
            }
            assert!(Instant::now() < deadline, "could not resume in 30 s");
            sleep(Duration::from_millis(200)).await;
        }
    }

    /// Reads until `last` arrived (resuming on `url` when cut) or 30 s passed.
    async fn drain_until(&mut self, last: &str, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.bios.last().map(String::as_str) != Some(last) && Instant::now() < deadline {
            if !self.read(Duration::from_millis(200)).await {
                self.resume(url).await;
            }
        }
    }

    fn assert_exactly(&self, acknowledged: &[String]) {
        assert_eq!(
            self.bios,
            acknowledged,
            "received {} of {} acknowledged changes",
            self.bios.len(),
            acknowledged.len()
        );
        for pair in self.seqs.windows(2) {
            assert!(pair[0] < pair[1], "seq out of order: {:?}", self.seqs);
        }
    }
}

/// Bob's profile change number `n`; whether it was acknowledged.
async fn change(base: &str, bob: &Account, n: usize) -> bool {
    let (status, _) = call(
        base,
        "PATCH",
        "/api/v1/users/@me",
        Some(&bob.token),
        Some(json!({"bio": format!("bio {n}")})),
    )
    .await;
    status == 200
}

fn env_of(db: &str, nats: Option<&str>, prefix: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("DATABASE_URL", db.to_owned()),
        ("SYNCTALK_AUTO_MIGRATE", "true".to_owned()),
        ("NATS_SUBJECT_PREFIX", prefix.to_owned()),
    ];
    if let Some(nats) = nats {
        env.push(("NATS_URL", nats.to_owned()));
    }
    env
}

#[actix_web::test]
async fn kill_9_of_a_node_under_a_stream_of_events_loses_and_repeats_nothing() {
    let db = TestDb::migrated().await;
    let nats = synctalk_testkit::nats_url().await;
    let prefix = format!("faults_{}", uuid::Uuid::now_v7().simple());
    let env = env_of(db.url(), Some(&nats), &prefix);
    let mut a = Node::start(&env).await;
    let b = Node::start(&env).await;
    let (alice, bob) = friends(&b.base()).await;
    let mut receiver = Receiver::identify(&a.gateway(), &alice, &bob).await;

    let mut acknowledged = Vec::new();
    for n in 0..150 {
        if n == 60 {
            a.kill_9();
        }
        if change(&b.base(), &bob, n).await {
            acknowledged.push(format!("bio {n}"));
        }
        if !receiver.read(Duration::from_millis(5)).await {
            receiver.resume(&b.gateway()).await;
        }
    }
    assert!(!a.is_running());
    assert_eq!(
        acknowledged.len(),
        150,
        "the surviving node took every write"
    );
    receiver
        .drain_until(acknowledged.last().unwrap(), &b.gateway())
        .await;
    receiver.assert_exactly(&acknowledged);
}

/// The next PRESENCE_UPDATE about `user`'s status.
async fn presence_of(ws: &mut WsClient, user: &Account) -> String {
    loop {
        let frame = ws.dispatch("PRESENCE_UPDATE").await;
        if frame["d"]["user_id"] == user.id.as_str() {
            return frame["d"]["status"].as_str().unwrap().to_owned();
        }
    }
}

#[actix_web::test]
async fn a_user_whose_node_was_stopped_and_who_did_not_come_back_goes_offline() {
    let db = TestDb::migrated().await;
    let nats = synctalk_testkit::nats_url().await;
    let prefix = format!("faults_{}", uuid::Uuid::now_v7().simple());
    let mut env = env_of(db.url(), Some(&nats), &prefix);
    env.push(("PRESENCE_GRACE_MS", "2000".to_owned()));
    let mut a = Node::start(&env).await;
    let b = Node::start(&env).await;
    let (alice, bob) = friends(&b.base()).await;
    let mut bob_on_b = WsClient::connect(&b.gateway()).await;
    bob_on_b.frame().await;
    bob_on_b.identify(&bob.token).await;
    let mut alice_on_a = WsClient::connect(&a.gateway()).await;
    alice_on_a.frame().await;
    alice_on_a.identify(&alice.token).await;
    assert_eq!(presence_of(&mut bob_on_b, &alice).await, "online");
    // Node a is stopped as a deployment stops it: its sockets are told to reconnect,
    // and the process exits. Alice's client does not come back: once the grace is
    // over she is offline, though the node that held her socket is gone.
    a.terminate();
    while alice_on_a.frame().await["op"] != 7 {} // RECONNECT
    assert!(matches!(alice_on_a.recv().await, Received::Closed(_)));
    drop(alice_on_a);
    // Meanwhile (the grace) it is up but not ready: a load balancer sends nobody here.
    let (status, body) = call(&a.base(), "GET", "/ready", None, None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(presence_of(&mut bob_on_b, &alice).await, "offline");
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.is_running() {
        assert!(Instant::now() < deadline, "node a did not exit");
        sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_postgresql_restart_under_load_is_survived_without_a_restart() {
    let root = std::env::temp_dir().join(format!("synctalk-fault-pg-{}", uuid::Uuid::now_v7()));
    let cluster = synctalk_db::cluster::LocalCluster::start(
        &root,
        synctalk_db::cluster::Durability::Ephemeral,
    )
    .unwrap();
    let url = cluster.url("postgres");
    let mut node = Node::start(&env_of(&url, None, "unused")).await;
    let (alice, bob) = friends(&node.base()).await;
    let mut receiver = Receiver::identify(&node.gateway(), &alice, &bob).await;

    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut outage_seen = false;
    for n in 0..120 {
        if n == 40 {
            cluster.stop().unwrap();
            let (status, body) = call(&node.base(), "GET", "/ready", None, None).await;
            assert_eq!(status, 503, "{body}");
            assert_eq!(body["error"]["code"], "service_unavailable");
            outage_seen = true;
        }
        if n == 60 {
            synctalk_db::cluster::LocalCluster::start(
                &root,
                synctalk_db::cluster::Durability::Ephemeral,
            )
            .unwrap();
        }
        if change(&node.base(), &bob, n).await {
            acknowledged.push(format!("bio {n}"));
        } else {
            refused += 1;
        }
        if !receiver.read(Duration::from_millis(5)).await {
            receiver.resume(&node.gateway()).await;
        }
    }
    assert!(outage_seen);
    assert!(node.is_running(), "the node survived the outage");
    assert!(
        refused > 0,
        "writes during the outage were refused, not acknowledged"
    );
    assert!(
        acknowledged.len() >= 80,
        "writes came back: {}",
        acknowledged.len()
    );
    assert!(acknowledged.contains(&"bio 119".to_owned()));
    let (status, _) = call(&node.base(), "GET", "/ready", None, None).await;
    assert_eq!(status, 200, "ready again");
    receiver
        .drain_until(acknowledged.last().unwrap(), &node.gateway())
        .await;
    receiver.assert_exactly(&acknowledged);
    drop(node);
    cluster.stop().unwrap();
    let _ = std::fs::remove_dir_all(&root);
}

#[actix_web::test]
async fn a_nats_restart_is_survived_and_the_gap_filled_from_the_outbox() {
    let db = TestDb::migrated().await;
    let port = free_port();
    let start_nats = || {
        let binary = [
            "nats-server",
            "/usr/sbin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect("nats-server is not installed");
        Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server")
    };
    let mut nats = start_nats();
    let url = format!("nats://127.0.0.1:{port}");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        sleep(Duration::from_millis(50)).await;
    }
    let prefix = format!("faults_{}", uuid::Uuid::now_v7().simple());
    let env = env_of(db.url(), Some(&url), &prefix);
    let a = Node::start(&env).await;
    let b = Node::start(&env).await;
    let (alice, bob) = friends(&b.base()).await;
    let mut receiver = Receiver::identify(&a.gateway(), &alice, &bob).await;

    let mut acknowledged = Vec::new();
    for n in 0..120 {
        if n == 40 {
            nats.kill().unwrap();
            nats.wait().unwrap();
        }
        if n == 70 {
            nats = start_nats();
        }
        if change(&b.base(), &bob, n).await {
            acknowledged.push(format!("bio {n}"));
        }
        if !receiver.read(Duration::from_millis(5)).await {
            receiver.resume(&a.gateway()).await;
        }
    }
    assert_eq!(acknowledged.len(), 120, "writes go on without the bus");
    receiver
        .drain_until(acknowledged.last().unwrap(), &a.gateway())
        .await;
    receiver.assert_exactly(&acknowledged);
    let _ = nats.kill();
    let _ = nats.wait();
}
