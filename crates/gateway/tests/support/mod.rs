//! A gateway of its own for the core's tests: the real hub, relay, sessions and
//! sockets, with a small test domain ("rooms") instead of any product domain. A room is
//! a channel topic; members listen to it; SAY posts a ROOM_MESSAGE to it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use serde_json::{Value, json};
use synctalk_db::Pool;
use synctalk_gateway::{
    BoxFuture, Bus, CommandContext, Domain, Gateway, GatewayConfig, GatewayDomain, Hub, HubConfig,
    Outgoing, ReadyPart, ReadyUser, Topic, event, gateway_event,
};
use synctalk_kernel::auth::BoxFuture as AuthFuture;
use synctalk_kernel::{AppError, AuthUser, Authenticator, ChannelId, ErrorCode, SessionId, UserId};
use synctalk_testkit::{TestDb, WsClient};

/// A message in a room; `n` counts the room's messages from 1.
#[derive(Debug, Serialize)]
pub struct RoomMessage {
    pub room: ChannelId,
    pub n: i64,
    pub text: String,
}
gateway_event!(RoomMessage, "ROOM_MESSAGE", Messaging, replayed);

/// You joined a room (to your user topic).
#[derive(Debug, Serialize)]
pub struct RoomJoined {
    pub room: ChannelId,
}
gateway_event!(RoomJoined, "ROOM_JOIN", Messaging, replayed);

/// You lost sight of a room (to your user topic): the last thing you get of it.
#[derive(Debug, Serialize)]
pub struct RoomLeft {
    pub room: ChannelId,
}
gateway_event!(RoomLeft, "ROOM_LEAVE", Messaging, replayed);

/// Someone types in a room (ephemeral).
#[derive(Debug, Serialize)]
pub struct Typing {
    pub room: ChannelId,
}
gateway_event!(Typing, "ROOM_TYPING", Messaging, ephemeral);

/// Something on the user topic (a marker that proves what arrived before it).
#[derive(Debug, Serialize)]
pub struct Marker {
    pub label: String,
}
gateway_event!(Marker, "MARKER", Messaging, replayed);

/// READY's rooms part: each room you are in and how many messages it has.
#[derive(Debug, Serialize)]
struct RoomsReady {
    rooms: Vec<RoomState>,
}

#[derive(Debug, Serialize, diesel::QueryableByName)]
struct RoomState {
    #[diesel(sql_type = SqlUuid)]
    room: uuid::Uuid,
    #[diesel(sql_type = BigInt)]
    messages: i64,
}

struct Rooms;

impl GatewayDomain for Rooms {
    fn domain(&self) -> Domain {
        Domain::Messaging
    }

    fn ready<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        auths: &'a [AuthUser],
    ) -> BoxFuture<'a, Result<Vec<ReadyPart>, AppError>> {
        Box::pin(async move {
            let mut parts = Vec::new();
            for auth in auths {
                let rooms: Vec<RoomState> = diesel::sql_query(
                    "SELECT m.room, (SELECT count(*) FROM test_messages t WHERE t.room = m.room) AS messages \
                     FROM test_members m WHERE m.user_id = $1 ORDER BY m.room",
                )
                .bind::<SqlUuid, _>(auth.user_id.0)
                .load(conn)
                .await
                .map_err(AppError::internal)?;
                let topics = rooms
                    .iter()
                    .map(|r| Topic::Channel(ChannelId(r.room)))
                    .collect();
                parts.push(ReadyPart::new(&RoomsReady { rooms }, topics)?);
            }
            Ok(parts)
        })
    }

    fn commands(&self) -> &'static [&'static str] {
        &["SAY"]
    }

    fn command<'a>(
        &'a self,
        ctx: &'a CommandContext,
        _name: &'a str,
        data: Value,
    ) -> BoxFuture<'a, Result<Value, AppError>> {
        Box::pin(async move {
            let room: ChannelId = serde_json::from_value(data["room"].clone())
                .map_err(|_| AppError::field("room", "a room id"))?;
            let text = data["text"].as_str().unwrap_or("").to_owned();
            let mut conn = synctalk_db::conn(ctx.hub.pool()).await?;
            if !is_member(&mut conn, ctx.auth.user_id, room).await {
                return Err(AppError::new(ErrorCode::NotFound, "no such room"));
            }
            say(&mut conn, room, &text).await;
            Ok(Value::Null)
        })
    }
}

/// Tokens are `user_id:session_id`; the session must be live in the database.
struct Tokens {
    pool: Pool,
}

impl Authenticator for Tokens {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a, Result<AuthUser, AppError>> {
        Box::pin(async move {
            let invalid = || AppError::new(ErrorCode::InvalidToken, "bad token");
            let (user, session) = token.split_once(':').ok_or_else(invalid)?;
            let auth = AuthUser {
                user_id: user.parse().map_err(|_| invalid())?,
                session_id: session.parse().map_err(|_| invalid())?,
            };
            #[derive(diesel::QueryableByName)]
            struct Live {
                #[diesel(sql_type = BigInt)]
                n: i64,
            }
            let mut conn = synctalk_db::conn(&self.pool).await?;
            let live: Live = diesel::sql_query(
                "SELECT count(*) AS n FROM sessions WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
            )
            .bind::<SqlUuid, _>(auth.session_id.0)
            .bind::<SqlUuid, _>(auth.user_id.0)
            .get_result(&mut conn)
            .await
            .map_err(AppError::internal)?;
            if live.n == 1 {
                Ok(auth)
            } else {
                Err(invalid())
            }
        })
    }

    fn verify(&self, token: &str) -> Option<AuthUser> {
        let (user, session) = token.split_once(':')?;
        Some(AuthUser {
            user_id: user.parse().ok()?,
            session_id: session.parse().ok()?,
        })
    }
}

struct Me;

impl ReadyUser for Me {
    fn load<'a>(
        &'a self,
        _conn: &'a mut AsyncPgConnection,
        auths: &'a [AuthUser],
    ) -> BoxFuture<'a, Result<Vec<Option<Value>>, AppError>> {
        Box::pin(async move {
            Ok(auths
                .iter()
                .map(|a| Some(json!({"id": a.user_id})))
                .collect())
        })
    }
}

/// One node of the test gateway.
pub struct Node {
    pub port: u16,
    pub hub: Arc<Hub>,
    pub pool: Pool,
    pub db: Arc<TestDb>,
    handle: ServerHandle,
    relay: tokio::task::JoinHandle<()>,
}

/// How a node is set up.
#[derive(Clone)]
pub struct Setup {
    pub hub: HubConfig,
    pub gateway: GatewayConfig,
    pub limits: synctalk_db::SessionLimits,
    /// How often the relay polls the outbox.
    pub relay_poll: Duration,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            hub: HubConfig {
                resume_window: Duration::from_secs(60),
                ..HubConfig::default()
            },
            gateway: GatewayConfig::default(),
            limits: synctalk_db::SessionLimits::default(),
            relay_poll: Duration::from_millis(5),
        }
    }
}

async fn tables(db: &TestDb) {
    let mut conn = db.connect().await;
    diesel::sql_query(
        "CREATE TABLE IF NOT EXISTS test_members (room uuid, user_id uuid, PRIMARY KEY (room, user_id))",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(
        "CREATE TABLE IF NOT EXISTS test_messages (room uuid, n bigint, text text, PRIMARY KEY (room, n))",
    )
    .execute(&mut conn)
    .await
    .unwrap();
}

impl Node {
    /// A node on its own database and an in-process bus.
    pub async fn spawn() -> Node {
        Self::spawn_with(Setup::default()).await
    }

    /// A node with settings.
    pub async fn spawn_with(setup: Setup) -> Node {
        let db = Arc::new(TestDb::migrated().await);
        Self::on(db, Bus::local(), setup).await
    }

    /// Two nodes on one database and one NATS.
    pub async fn pair(setup: Setup) -> (Node, Node) {
        let db = Arc::new(TestDb::migrated().await);
        let nats = synctalk_testkit::nats_url().await;
        let prefix = format!("gw_test_{}", uuid::Uuid::now_v7().simple());
        let a = Self::on(
            db.clone(),
            Bus::nats(&nats, &prefix).await.unwrap(),
            setup.clone(),
        )
        .await;
        let b = Self::on(db, Bus::nats(&nats, &prefix).await.unwrap(), setup).await;
        (a, b)
    }

    pub async fn on(db: Arc<TestDb>, bus: Bus, setup: Setup) -> Node {
        tables(&db).await;
        let pool = synctalk_db::connect_with(db.url(), 8, Duration::from_secs(5), setup.limits)
            .await
            .unwrap();
        let hub = Hub::start(pool.clone(), db.url().to_owned(), bus.clone(), setup.hub)
            .await
            .unwrap();
        let relay = tokio::spawn(synctalk_gateway::relay::run(
            db.url().to_owned(),
            bus,
            synctalk_gateway::relay::RelayConfig {
                poll: setup.relay_poll,
                retention: Duration::from_secs(60),
                // Tests prune by hand and count what went: the relay's own prune
                // must not take rows first.
                prune_every: Duration::from_secs(3600),
                // Tests that set a slow poll mean it: no wake-up by appends (which,
                // in one process, would come from every node).
                wake: false,
            },
        ));
        let gateway = web::Data::new(Gateway::new(
            hub.clone(),
            vec![Arc::new(Rooms)],
            Arc::new(Tokens { pool: pool.clone() }),
            Arc::new(Me),
            setup.gateway,
        ));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(gateway.clone())
                .configure(Gateway::configure)
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Node {
            port,
            hub,
            pool,
            db,
            handle,
            relay,
        }
    }

    /// A socket to the rooms gateway, after HELLO.
    pub async fn ws(&self) -> WsClient {
        let mut ws =
            WsClient::connect(&format!("ws://127.0.0.1:{}/gateway/messaging", self.port)).await;
        let hello = ws.frame().await;
        assert_eq!(hello["op"], 10, "{hello}");
        ws
    }

    /// Identifies and returns READY's `d`.
    pub async fn identify(&self, user: &User) -> (WsClient, Value) {
        let mut ws = self.ws().await;
        let ready = ws.identify(&user.token()).await;
        (ws, ready)
    }

    /// Sends RESUME on a new socket.
    pub async fn resume(&self, user: &User, session_id: &str, seq: Value) -> WsClient {
        let mut ws = self.ws().await;
        ws.send(
            json!({"op": 6, "d": {"token": user.token(), "session_id": session_id, "seq": seq}}),
        )
        .await;
        ws
    }

    /// A direct connection to the database.
    pub async fn conn(&self) -> AsyncPgConnection {
        self.db.connect().await
    }

    /// Dies as a crash would: no relay, sockets dropped without a word.
    pub async fn kill(&self) {
        self.relay.abort();
        self.handle.stop(false).await;
    }

    /// A user with a live signed-in session.
    pub async fn user(&self, name: &str) -> User {
        let mut conn = self.conn().await;
        let user = User {
            id: UserId::new(),
            session: SessionId::new(),
        };
        diesel::sql_query(
            "INSERT INTO users (id, username, email, password_hash) VALUES ($1, $2, $2 || '@example.com', 'x')",
        )
        .bind::<SqlUuid, _>(user.id.0)
        .bind::<Text, _>(format!("{name}_{}", &user.id.0.simple().to_string()[24..]))
        .execute(&mut conn)
        .await
        .unwrap();
        diesel::sql_query(
            "INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, now() + interval '1 day')",
        )
        .bind::<SqlUuid, _>(user.session.0)
        .bind::<SqlUuid, _>(user.id.0)
        .execute(&mut conn)
        .await
        .unwrap();
        user
    }
}

/// A test user and their signed-in session.
#[derive(Debug, Clone, Copy)]
pub struct User {
    pub id: UserId,
    pub session: SessionId,
}

impl User {
    pub fn token(&self) -> String {
        format!("{}:{}", self.id, self.session)
    }
}

pub async fn is_member(conn: &mut AsyncPgConnection, user: UserId, room: ChannelId) -> bool {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let n: N = diesel::sql_query(
        "SELECT count(*) AS n FROM test_members WHERE room = $1 AND user_id = $2",
    )
    .bind::<SqlUuid, _>(room.0)
    .bind::<SqlUuid, _>(user.0)
    .get_result(conn)
    .await
    .unwrap();
    n.n == 1
}

/// Posts the room's next message; returns its number.
pub async fn say(conn: &mut AsyncPgConnection, room: ChannelId, text: &str) -> i64 {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        // The room's own lock orders its writers (as a channel row would).
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 1))")
            .bind::<Text, _>(room.to_string())
            .execute(conn)
            .await?;
        let n: N = diesel::sql_query(
            "INSERT INTO test_messages (room, n, text) \
             SELECT $1, coalesce(max(n), 0) + 1, $2 FROM test_messages WHERE room = $1 RETURNING n",
        )
        .bind::<SqlUuid, _>(room.0)
        .bind::<Text, _>(text)
        .get_result(conn)
        .await?;
        let row = Outgoing::event(
            Topic::Channel(room),
            &RoomMessage {
                room,
                n: n.n,
                text: text.to_owned(),
            },
        )
        .unwrap();
        event::append(conn, &[row]).await?;
        Ok(n.n)
    })
    .await
    .unwrap()
}

/// Joins a room: the user's sessions start listening to it, then learn they joined.
pub async fn join(conn: &mut AsyncPgConnection, user: UserId, room: ChannelId) {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        diesel::sql_query("INSERT INTO test_members (room, user_id) VALUES ($1, $2)")
            .bind::<SqlUuid, _>(room.0)
            .bind::<SqlUuid, _>(user.0)
            .execute(conn)
            .await?;
        let rows = [
            Outgoing::subscribe(Domain::Messaging, Topic::User(user), Topic::Channel(room))
                .unwrap(),
            Outgoing::event(Topic::User(user), &RoomJoined { room }).unwrap(),
        ];
        event::append(conn, &rows).await
    })
    .await
    .unwrap();
}

/// Leaves a room: the user's sessions stop listening, then learn they left (the last
/// thing they get of it).
pub async fn leave(conn: &mut AsyncPgConnection, user: UserId, room: ChannelId) {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        diesel::sql_query("DELETE FROM test_members WHERE room = $1 AND user_id = $2")
            .bind::<SqlUuid, _>(room.0)
            .bind::<SqlUuid, _>(user.0)
            .execute(conn)
            .await?;
        let rows = [
            Outgoing::unsubscribe(Domain::Messaging, Topic::User(user), Topic::Channel(room))
                .unwrap(),
            Outgoing::event(Topic::User(user), &RoomLeft { room }).unwrap(),
        ];
        event::append(conn, &rows).await
    })
    .await
    .unwrap();
}

/// Writes a marker event to the user's own topic.
pub async fn mark(conn: &mut AsyncPgConnection, user: UserId, label: &str) {
    let row = Outgoing::event(
        Topic::User(user),
        &Marker {
            label: label.to_owned(),
        },
    )
    .unwrap();
    event::append(conn, &[row]).await.unwrap();
}

/// Ends a signed-in session the way logout does: revoked, and the revocation written
/// to the outbox in the same transaction.
pub async fn revoke(conn: &mut AsyncPgConnection, session: SessionId) {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        diesel::sql_query("UPDATE sessions SET revoked_at = now() WHERE id = $1")
            .bind::<SqlUuid, _>(session.0)
            .execute(conn)
            .await?;
        let row = Outgoing::revoke(Domain::Users, Topic::Session(session), "logout").unwrap();
        event::append(conn, &[row]).await
    })
    .await
    .unwrap();
}

/// The replayable dispatches up to (not including) `until`, as `(t, s, d)`.
pub async fn dispatches_until(ws: &mut WsClient, until: &str) -> Vec<(String, i64, Value)> {
    let mut got = Vec::new();
    loop {
        let frame = ws.frame().await;
        if frame["op"] != 0 {
            continue;
        }
        let t = frame["t"].as_str().unwrap().to_owned();
        if t == until {
            return got;
        }
        if let Some(s) = frame["s"].as_i64() {
            got.push((t, s, frame["d"].clone()));
        }
    }
}
