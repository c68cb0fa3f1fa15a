//! The node's hub: which local socket wants which topics, the per-session sequence
//! numbers, and durable delivery that persists progress before it sends, so a session
//! can resume on any node with nothing lost and nothing repeated.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncConnection, RunQueryDsl};
use futures_channel::mpsc;
use synctalk_db::{AsyncPgConnection, Pool};
use synctalk_kernel::{AuthUser, SessionId, UserId};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::bus::Bus;
use crate::event::{self, BusMessage, Control, Event, OutboxRecord};
use crate::protocol::{CloseCode, Frame};
use crate::topic::{Domain, DomainSet, Topic};

/// How many recent positions a session keeps for resume.
const RECENT: i64 = 512;
/// The most events one resume replays; beyond that the client must refetch.
const MAX_REPLAY: i64 = 5000;

/// What the hub sends a socket.
#[derive(Debug)]
pub enum Outbound {
    /// A frame of text.
    Text(String),
    /// Close with a code.
    Close(CloseCode, &'static str),
}

struct Entry {
    user_id: UserId,
    auth_session: SessionId,
    domains: DomainSet,
    topics: Vec<Topic>,
    tx: mpsc::Sender<Outbound>,
    seq: i64,
    epoch: i32,
    /// Events at or below this position are already in what the client loaded.
    floor: i64,
}

#[derive(Default)]
struct State {
    sessions: HashMap<Uuid, Entry>,
    by_topic: HashMap<Topic, Vec<Uuid>>,
    last_position: i64,
}

impl State {
    fn insert(&mut self, id: Uuid, entry: Entry) {
        for topic in &entry.topics {
            self.by_topic.entry(*topic).or_default().push(id);
        }
        if let Some(old) = self.sessions.insert(id, entry) {
            self.unindex(id, &old.topics);
        }
    }

    fn remove(&mut self, id: Uuid) -> Option<Entry> {
        let entry = self.sessions.remove(&id)?;
        self.unindex(id, &entry.topics);
        Some(entry)
    }

    fn unindex(&mut self, id: Uuid, topics: &[Topic]) {
        for topic in topics {
            if let Some(ids) = self.by_topic.get_mut(topic) {
                ids.retain(|other| *other != id);
                if ids.is_empty() {
                    self.by_topic.remove(topic);
                }
            }
        }
    }

    /// The local sessions an event goes to, each once.
    fn audience(&self, event: &Event) -> Vec<Uuid> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for topic in &event.audience {
            for id in self.by_topic.get(topic).into_iter().flatten() {
                let Some(entry) = self.sessions.get(id) else {
                    continue;
                };
                if entry.domains.contains(event.domain) && seen.insert(*id) {
                    out.push(*id);
                }
            }
        }
        out
    }
}

/// A new socket's identity.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// Who.
    pub auth: AuthUser,
    /// Which domains the socket carries.
    pub domains: DomainSet,
    /// The outbox head read before READY was loaded: READY reflects everything up to
    /// it, so the session's events start after it.
    pub floor: i64,
}

impl Subscriber {
    fn topics(&self) -> Vec<Topic> {
        vec![
            Topic::User(self.auth.user_id),
            Topic::Session(self.auth.session_id),
        ]
    }
}

/// Why a resume was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ResumeError {
    /// Unknown, expired, someone else's, or too far behind: identify again.
    Invalid,
    /// A sequence number the session never reached (close 4007).
    InvalidSeq,
}

/// A resumed session: the frames it missed, in order.
pub struct Resumed {
    /// The gateway session.
    pub session_id: Uuid,
    /// Its epoch on this node.
    pub epoch: i32,
    /// The domains it carries.
    pub domains: DomainSet,
    /// Replayed dispatches.
    pub frames: Vec<Frame>,
}

/// A presence status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Active.
    Online,
    /// Away.
    Idle,
    /// Do not disturb.
    Dnd,
    /// No socket anywhere.
    Offline,
}

impl Status {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Idle => "idle",
            Status::Dnd => "dnd",
            Status::Offline => "offline",
        }
    }

    /// Parses a stored status.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "online" => Status::Online,
            "idle" => Status::Idle,
            "dnd" => Status::Dnd,
            "offline" => Status::Offline,
            _ => return None,
        })
    }
}

/// Called when a user's aggregated presence changes.
pub type PresenceHook = Arc<dyn Fn(UserId, Status) -> crate::BoxFuture<'static, ()> + Send + Sync>;

/// Timing of the hub.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// How long a dropped session stays resumable.
    pub resume_window: Duration,
    /// How long after its last socket a user stays online.
    pub presence_grace: Duration,
    /// Outbound frames queued per socket before it counts as too slow.
    pub queue: usize,
}

/// The node's hub.
pub struct Hub {
    node_id: Uuid,
    pool: Pool,
    bus: Bus,
    config: HubConfig,
    state: Mutex<State>,
    presence_hooks: std::sync::RwLock<Vec<PresenceHook>>,
}

fn db<E: std::fmt::Display>(error: E) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

impl Hub {
    /// Starts the hub: registers the node, follows the bus, beats, sweeps dead nodes.
    pub async fn start(pool: Pool, bus: Bus, config: HubConfig) -> anyhow::Result<Arc<Self>> {
        let node_id = Uuid::now_v7();
        let mut conn = pool.get().await.map_err(db)?;
        diesel::sql_query("INSERT INTO gateway_nodes (id) VALUES ($1)")
            .bind::<SqlUuid, _>(node_id)
            .execute(&mut conn)
            .await?;
        let head = event::head(&mut conn).await?;
        drop(conn);
        let hub = Arc::new(Self {
            node_id,
            pool,
            bus: bus.clone(),
            config,
            state: Mutex::new(State {
                last_position: head,
                ..State::default()
            }),
            presence_hooks: std::sync::RwLock::new(Vec::new()),
        });
        let mut rx = bus.subscribe();
        let follower = Arc::downgrade(&hub);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    message = rx.recv() => {
                        let Some(hub) = follower.upgrade() else { break };
                        match message {
                            Ok(message) => hub.handle(&message).await,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                tracing::warn!(missed = n, "bus receiver lagged; catching up from the outbox");
                                hub.catch_up().await;
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                        }
                    }
                    _ = tick.tick() => {
                        let Some(hub) = follower.upgrade() else { break };
                        hub.catch_up().await;
                    }
                }
            }
        });
        let beater = Arc::downgrade(&hub);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let Some(hub) = beater.upgrade() else { break };
                if let Err(error) = hub.beat().await {
                    tracing::warn!(%error, "gateway node heartbeat failed");
                }
            }
        });
        Ok(hub)
    }

    /// This node's id.
    pub fn node_id(&self) -> Uuid {
        self.node_id
    }

    /// The bus.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Timing.
    pub fn config(&self) -> HubConfig {
        self.config
    }

    /// Registers what to do when a presence changes.
    pub fn on_presence(&self, hook: PresenceHook) {
        if let Ok(mut hooks) = self.presence_hooks.write() {
            hooks.push(hook);
        }
    }

    /// How many sockets this node holds.
    pub async fn socket_count(&self) -> usize {
        self.state.lock().await.sessions.len()
    }

    async fn handle(&self, message: &BusMessage) {
        match message {
            BusMessage::Durable { prev, records } => {
                if let Err(error) = self.deliver_durable(*prev, records).await {
                    tracing::error!(%error, "durable delivery failed; will catch up");
                }
            }
            BusMessage::Ephemeral(event) => self.deliver_ephemeral(event).await,
            BusMessage::Control(control) => self.control(control).await,
        }
    }

    /// Delivers anything the relay published that this node has not seen.
    async fn catch_up(&self) {
        let cursor = async {
            #[derive(QueryableByName)]
            struct Cursor {
                #[diesel(sql_type = BigInt)]
                position: i64,
            }
            let mut conn = self.pool.get().await.map_err(db)?;
            let row: Cursor = diesel::sql_query("SELECT position FROM outbox_relay WHERE id = 1")
                .get_result(&mut conn)
                .await?;
            anyhow::Ok(row.position)
        }
        .await;
        match cursor {
            Ok(cursor) if cursor > self.state.lock().await.last_position => {
                if let Err(error) = self.deliver_durable(cursor, &[]).await {
                    tracing::warn!(%error, "catch-up failed");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "catch-up check failed"),
        }
    }

    async fn deliver_durable(&self, prev: i64, records: &[OutboxRecord]) -> anyhow::Result<()> {
        let mut state = self.state.lock().await;
        let mut batch: Vec<OutboxRecord> = Vec::new();
        if prev > state.last_position {
            // A gap: fetch what we missed, in order, up to what this message starts at.
            let mut conn = self.pool.get().await.map_err(db)?;
            let mut after = state.last_position;
            loop {
                let chunk = event::read_range(&mut conn, after, Some(prev), 1000).await?;
                let Some(last) = chunk.last().map(|r| r.position) else {
                    break;
                };
                after = last;
                batch.extend(chunk);
            }
            if batch.is_empty() || batch.last().is_some_and(|r| r.position < prev) {
                // Positions of rolled-back transactions are gaps too.
            }
        }
        let floor = state.last_position;
        batch.extend(records.iter().filter(|r| r.position > floor).cloned());
        batch.retain(|r| r.position > floor);
        let Some(until) = batch
            .last()
            .map(|r| r.position)
            .or((prev > floor).then_some(prev))
        else {
            return Ok(());
        };

        // Assign sequence numbers.
        let mut deliveries: Vec<(Uuid, i64, usize)> = Vec::new();
        let mut touched: HashMap<Uuid, (i32, i64, Vec<i64>)> = HashMap::new();
        for (index, record) in batch.iter().enumerate() {
            for id in state.audience(&record.event) {
                let Some(entry) = state.sessions.get_mut(&id) else {
                    continue;
                };
                if record.position <= entry.floor {
                    continue;
                }
                entry.seq += 1;
                deliveries.push((id, entry.seq, index));
                let slot = touched.entry(id).or_insert((entry.epoch, 0, Vec::new()));
                slot.1 = entry.seq;
                slot.2.push(record.position);
            }
        }

        // Persist before sending: whatever a client receives, a resume elsewhere knows.
        let mut fenced: Vec<Uuid> = Vec::new();
        if !touched.is_empty() {
            let ids: Vec<Uuid> = touched.keys().copied().collect();
            let epochs: Vec<i32> = ids.iter().map(|id| touched[id].0).collect();
            let seqs: Vec<i64> = ids.iter().map(|id| touched[id].1).collect();
            let adds: Vec<String> = ids
                .iter()
                .map(|id| {
                    touched[id]
                        .2
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect();
            #[derive(QueryableByName)]
            struct Kept {
                #[diesel(sql_type = SqlUuid)]
                id: Uuid,
            }
            let mut conn = self.pool.get().await.map_err(db)?;
            let kept: Vec<Kept> = diesel::sql_query(
                "UPDATE gateway_sessions AS g SET seq = v.seq, position = $5, last_seen_at = now(), \
                 recent = (g.recent || string_to_array(v.adds, ',')::bigint[])\
                 [greatest(1, cardinality(g.recent) + cardinality(string_to_array(v.adds, ',')) - $6 + 1):] \
                 FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::text[]) AS v(id, epoch, seq, adds) \
                 WHERE g.id = v.id AND g.epoch = v.epoch AND g.node_id = $7 RETURNING g.id",
            )
            .bind::<Array<SqlUuid>, _>(&ids)
            .bind::<Array<Integer>, _>(&epochs)
            .bind::<Array<BigInt>, _>(&seqs)
            .bind::<Array<Text>, _>(&adds)
            .bind::<BigInt, _>(until)
            .bind::<BigInt, _>(RECENT)
            .bind::<SqlUuid, _>(self.node_id)
            .load(&mut conn)
            .await?;
            let kept: HashSet<Uuid> = kept.into_iter().map(|k| k.id).collect();
            fenced = ids.into_iter().filter(|id| !kept.contains(id)).collect();
        }
        state.last_position = until;

        for id in &fenced {
            if let Some(mut entry) = state.remove(*id) {
                let _ = entry.tx.try_send(Outbound::Close(
                    CloseCode::UnknownError,
                    "session resumed elsewhere",
                ));
            }
        }
        let mut slow = Vec::new();
        for (id, seq, index) in deliveries {
            if fenced.contains(&id) || slow.contains(&id) {
                continue;
            }
            let Some(entry) = state.sessions.get_mut(&id) else {
                continue;
            };
            let event = &batch[index].event;
            let frame = Frame::dispatch(&event.name, Some(seq), event.payload.clone());
            if entry.tx.try_send(Outbound::Text(frame.to_text())).is_err() {
                slow.push(id);
            }
        }
        for id in slow {
            // The socket cannot keep up: dropping its queue closes it; it may resume.
            tracing::info!(session_id = %id, "closing a slow consumer");
            state.remove(id);
        }
        Ok(())
    }

    async fn deliver_ephemeral(&self, event: &Event) {
        let mut state = self.state.lock().await;
        let frame = Frame::dispatch(&event.name, None, event.payload.clone()).to_text();
        let mut slow = Vec::new();
        for id in state.audience(event) {
            if let Some(entry) = state.sessions.get_mut(&id)
                && entry.tx.try_send(Outbound::Text(frame.clone())).is_err()
            {
                slow.push(id);
            }
        }
        for id in slow {
            state.remove(id);
        }
    }

    async fn control(&self, control: &Control) {
        let mut state = self.state.lock().await;
        let targets: Vec<Uuid> = state
            .sessions
            .iter()
            .filter(|(id, entry)| match control {
                Control::RevokeAuthSession(session) => entry.auth_session == *session,
                Control::CloseUser(user) => entry.user_id == *user,
                Control::TakenOver { session_id, epoch } => {
                    *id == session_id && entry.epoch < *epoch
                }
            })
            .map(|(id, _)| *id)
            .collect();
        for id in targets {
            if let Some(mut entry) = state.remove(id) {
                let outbound = match control {
                    Control::TakenOver { .. } => {
                        Outbound::Close(CloseCode::UnknownError, "session resumed elsewhere")
                    }
                    _ => Outbound::Close(CloseCode::AuthenticationFailed, "session ended"),
                };
                let _ = entry.tx.try_send(outbound);
            }
        }
    }

    /// The newest committed outbox position.
    pub async fn outbox_head(&self) -> anyhow::Result<i64> {
        let mut conn = self.pool.get().await.map_err(db)?;
        Ok(event::head(&mut conn).await?)
    }

    /// Opens a new gateway session for an identified socket.
    pub async fn identify(
        &self,
        who: &Subscriber,
        tx: mpsc::Sender<Outbound>,
    ) -> anyhow::Result<(Uuid, Vec<Frame>)> {
        let id = Uuid::now_v7();
        let mut state = self.state.lock().await;
        let mut conn = self.pool.get().await.map_err(db)?;
        // Events this node delivered after READY's snapshot but before the session was
        // registered would be missed: replay them right after READY.
        let mut frames = Vec::new();
        let mut recent = Vec::new();
        if state.last_position > who.floor {
            let missed = event::read_for(
                &mut conn,
                who.floor,
                state.last_position,
                &who.topics(),
                &who.domains.names(),
                MAX_REPLAY,
            )
            .await?;
            for (i, record) in missed.iter().enumerate() {
                let seq = i64::try_from(i).unwrap_or(i64::MAX) + 1;
                frames.push(Frame::dispatch(
                    &record.event.name,
                    Some(seq),
                    record.event.payload.clone(),
                ));
                recent.push(record.position);
            }
        }
        let floor = who.floor.max(state.last_position);
        let seq = i64::try_from(frames.len()).unwrap_or(0);
        diesel::sql_query(
            "INSERT INTO gateway_sessions (id, user_id, auth_session_id, domains, node_id, position, seq, recent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<SqlUuid, _>(who.auth.user_id.0)
        .bind::<SqlUuid, _>(who.auth.session_id.0)
        .bind::<Array<Text>, _>(who.domains.names())
        .bind::<SqlUuid, _>(self.node_id)
        .bind::<BigInt, _>(floor)
        .bind::<BigInt, _>(seq)
        .bind::<Array<BigInt>, _>(&recent)
        .execute(&mut conn)
        .await?;
        drop(conn);
        state.insert(
            id,
            Entry {
                user_id: who.auth.user_id,
                auth_session: who.auth.session_id,
                domains: who.domains,
                topics: who.topics(),
                tx,
                seq,
                epoch: 1,
                floor,
            },
        );
        Ok((id, frames))
    }

    /// Resumes a session on this node: takes it over, replays what the client missed.
    pub async fn resume(
        &self,
        auth: AuthUser,
        session_id: Uuid,
        client_seq: i64,
        tx: mpsc::Sender<Outbound>,
    ) -> anyhow::Result<Result<Resumed, ResumeError>> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = SqlUuid)]
            user_id: Uuid,
            #[diesel(sql_type = SqlUuid)]
            auth_session_id: Uuid,
            #[diesel(sql_type = Array<Text>)]
            domains: Vec<String>,
            #[diesel(sql_type = Integer)]
            epoch: i32,
            #[diesel(sql_type = BigInt)]
            seq: i64,
            #[diesel(sql_type = BigInt)]
            position: i64,
            #[diesel(sql_type = Array<BigInt>)]
            recent: Vec<i64>,
            #[diesel(sql_type = Bool)]
            expired: bool,
        }
        // Deliver whatever the relay has published first, so the replay reaches as far
        // as the outbox has been relayed.
        self.catch_up().await;
        let mut state = self.state.lock().await;
        let head = state.last_position;
        let window = i64::try_from(self.config.resume_window.as_millis()).unwrap_or(i64::MAX);
        let node_id = self.node_id;
        let mut conn = self.pool.get().await.map_err(db)?;
        let outcome = (*conn)
            .transaction::<_, anyhow::Error, _>(async |conn: &mut AsyncPgConnection| {
                let row: Option<Row> = diesel::sql_query(
                    "SELECT g.user_id, g.auth_session_id, g.domains, g.epoch, g.seq, g.position, g.recent, \
                     NOT (g.last_seen_at > now() - make_interval(secs => $2::double precision / 1000) \
                          OR (g.connected AND n.last_seen_at > now() - interval '30 seconds')) AS expired \
                     FROM gateway_sessions g LEFT JOIN gateway_nodes n ON n.id = g.node_id \
                     WHERE g.id = $1 FOR UPDATE OF g",
                )
                .bind::<SqlUuid, _>(session_id)
                .bind::<BigInt, _>(window)
                .get_result(conn)
                .await
                .optional()?;
                let Some(row) = row else { return Ok(Err(ResumeError::Invalid)) };
                if row.user_id != auth.user_id.0 || row.auth_session_id != auth.session_id.0 || row.expired {
                    return Ok(Err(ResumeError::Invalid));
                }
                if client_seq > row.seq || client_seq < 0 {
                    return Ok(Err(ResumeError::InvalidSeq));
                }
                let oldest = row.seq - i64::try_from(row.recent.len()).unwrap_or(0);
                if client_seq < oldest {
                    return Ok(Err(ResumeError::Invalid));
                }
                let skip = usize::try_from(client_seq - oldest).unwrap_or(0);
                let exact_positions = &row.recent[skip..];
                let exact = event::read_positions(conn, exact_positions).await?;
                if exact.len() != exact_positions.len() {
                    return Ok(Err(ResumeError::Invalid));
                }
                let domains: DomainSet = row.domains.iter().filter_map(|d| Domain::parse(d)).collect();
                let topics = vec![Topic::User(auth.user_id), Topic::Session(auth.session_id)];
                let after =
                    event::read_for(conn, row.position, head, &topics, &row.domains, MAX_REPLAY + 1).await?;
                if i64::try_from(after.len()).unwrap_or(i64::MAX) > MAX_REPLAY {
                    return Ok(Err(ResumeError::Invalid));
                }
                let mut frames = Vec::with_capacity(exact.len() + after.len());
                let mut seq = client_seq;
                for record in exact.iter().chain(after.iter()) {
                    seq += 1;
                    frames.push(Frame::dispatch(&record.event.name, Some(seq), record.event.payload.clone()));
                }
                let mut recent = row.recent.clone();
                recent.extend(after.iter().map(|r| r.position));
                let excess = recent.len().saturating_sub(usize::try_from(RECENT).unwrap_or(512));
                recent.drain(..excess);
                let epoch = row.epoch + 1;
                diesel::sql_query(
                    "UPDATE gateway_sessions SET epoch = $2, node_id = $3, connected = true, seq = $4, \
                     position = $5, recent = $6, last_seen_at = now() WHERE id = $1",
                )
                .bind::<SqlUuid, _>(session_id)
                .bind::<Integer, _>(epoch)
                .bind::<SqlUuid, _>(node_id)
                .bind::<BigInt, _>(seq)
                .bind::<BigInt, _>(head.max(row.position))
                .bind::<Array<BigInt>, _>(&recent)
                .execute(conn)
                .await?;
                Ok(Ok((Resumed { session_id, epoch, domains, frames }, seq, head.max(row.position))))
            })
            .await?;
        drop(conn);
        let (resumed, seq, floor) = match outcome {
            Ok(ok) => ok,
            Err(error) => return Ok(Err(error)),
        };
        if let Some(mut old) = state.remove(session_id) {
            let _ = old.tx.try_send(Outbound::Close(
                CloseCode::UnknownError,
                "session resumed elsewhere",
            ));
        }
        state.insert(
            session_id,
            Entry {
                user_id: auth.user_id,
                auth_session: auth.session_id,
                domains: resumed.domains,
                topics: vec![Topic::User(auth.user_id), Topic::Session(auth.session_id)],
                tx,
                seq,
                epoch: resumed.epoch,
                floor,
            },
        );
        drop(state);
        self.bus
            .publish(BusMessage::Control(Control::TakenOver {
                session_id,
                epoch: resumed.epoch,
            }))
            .await;
        Ok(Ok(resumed))
    }

    /// A socket went away. A clean close (1000) ends the session; any other drop keeps
    /// it resumable for the window.
    pub async fn disconnect(
        self: &Arc<Self>,
        session_id: Uuid,
        epoch: i32,
        user: UserId,
        clean: bool,
    ) {
        {
            let mut state = self.state.lock().await;
            if state
                .sessions
                .get(&session_id)
                .is_some_and(|e| e.epoch == epoch)
            {
                state.remove(session_id);
            }
        }
        let result = async {
            let mut conn = self.pool.get().await.map_err(db)?;
            let sql = if clean {
                "DELETE FROM gateway_sessions WHERE id = $1 AND epoch = $2"
            } else {
                "UPDATE gateway_sessions SET connected = false, last_seen_at = now() WHERE id = $1 AND epoch = $2"
            };
            diesel::sql_query(sql)
                .bind::<SqlUuid, _>(session_id)
                .bind::<Integer, _>(epoch)
                .execute(&mut conn)
                .await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, "could not record a disconnect");
        }
        let hub = Arc::clone(self);
        let grace = self.config.presence_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace + Duration::from_millis(50)).await;
            hub.refresh_presence(user).await;
        });
    }

    /// Sets the status of one socket and updates the user's presence.
    pub async fn set_status(
        &self,
        session_id: Uuid,
        user: UserId,
        status: Status,
    ) -> anyhow::Result<()> {
        let mut conn = self.pool.get().await.map_err(db)?;
        diesel::sql_query("UPDATE gateway_sessions SET status = $2 WHERE id = $1")
            .bind::<SqlUuid, _>(session_id)
            .bind::<Text, _>(status.as_str())
            .execute(&mut conn)
            .await?;
        drop(conn);
        self.refresh_presence(user).await;
        Ok(())
    }

    /// Recomputes a user's presence over all their sockets on all live nodes and
    /// announces it when it changed.
    pub async fn refresh_presence(&self, user: UserId) {
        match self.compute_presence(user).await {
            Ok(Some(status)) => {
                let hooks: Vec<PresenceHook> = self
                    .presence_hooks
                    .read()
                    .map(|h| h.clone())
                    .unwrap_or_default();
                for hook in hooks {
                    hook(user, status).await;
                }
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "presence update failed"),
        }
    }

    /// The new presence if it changed.
    async fn compute_presence(&self, user: UserId) -> anyhow::Result<Option<Status>> {
        #[derive(QueryableByName)]
        struct Changed {
            #[diesel(sql_type = Nullable<Text>)]
            status: Option<String>,
        }
        let grace = i64::try_from(self.config.presence_grace.as_millis()).unwrap_or(0);
        let mut conn = self.pool.get().await.map_err(db)?;
        // dnd wins over online, online over idle; none at all is offline.
        let row: Changed = diesel::sql_query(
            "WITH live AS ( \
               SELECT g.status FROM gateway_sessions g JOIN gateway_nodes n ON n.id = g.node_id \
               WHERE g.user_id = $1 AND n.last_seen_at > now() - interval '30 seconds' \
                 AND (g.connected OR g.last_seen_at > now() - make_interval(secs => $2::double precision / 1000)) \
             ), now_status AS ( \
               SELECT CASE WHEN bool_or(status = 'dnd') THEN 'dnd' \
                           WHEN bool_or(status = 'online') THEN 'online' \
                           WHEN count(*) > 0 THEN 'idle' ELSE 'offline' END AS status FROM live \
             ), upsert AS ( \
               INSERT INTO presences (user_id, status) SELECT $1, status FROM now_status \
               ON CONFLICT (user_id) DO UPDATE SET status = EXCLUDED.status, updated_at = now() \
               WHERE presences.status IS DISTINCT FROM EXCLUDED.status RETURNING status \
             ) SELECT (SELECT status FROM upsert) AS status",
        )
        .bind::<SqlUuid, _>(user.0)
        .bind::<BigInt, _>(grace)
        .get_result(&mut conn)
        .await?;
        // A first row for a user who was never online is no change.
        Ok(row.status.and_then(|s| Status::parse(&s)))
    }

    /// The presences of some users (offline when unknown).
    pub async fn presences(&self, users: &[UserId]) -> anyhow::Result<Vec<(UserId, Status)>> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = SqlUuid)]
            user_id: Uuid,
            #[diesel(sql_type = Text)]
            status: String,
        }
        let ids: Vec<Uuid> = users.iter().map(|u| u.0).collect();
        let mut conn = self.pool.get().await.map_err(db)?;
        let rows: Vec<Row> =
            diesel::sql_query("SELECT user_id, status FROM presences WHERE user_id = ANY($1)")
                .bind::<Array<SqlUuid>, _>(&ids)
                .load(&mut conn)
                .await?;
        let known: HashMap<Uuid, Status> = rows
            .into_iter()
            .filter_map(|r| Some((r.user_id, Status::parse(&r.status)?)))
            .collect();
        Ok(users
            .iter()
            .map(|u| (*u, known.get(&u.0).copied().unwrap_or(Status::Offline)))
            .collect())
    }

    async fn beat(&self) -> anyhow::Result<()> {
        #[derive(QueryableByName)]
        struct Orphan {
            #[diesel(sql_type = SqlUuid)]
            user_id: Uuid,
        }
        let mut conn = self.pool.get().await.map_err(db)?;
        diesel::sql_query(
            "INSERT INTO gateway_nodes (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET last_seen_at = now()",
        )
        .bind::<SqlUuid, _>(self.node_id)
        .execute(&mut conn)
        .await?;
        // Sockets of nodes that stopped beating are gone; their sessions stay
        // resumable for the window, counted from the node's last beat.
        let orphans: Vec<Orphan> = diesel::sql_query(
            "WITH dead AS (DELETE FROM gateway_nodes WHERE last_seen_at < now() - interval '30 seconds' \
                           RETURNING id, last_seen_at) \
             UPDATE gateway_sessions g SET connected = false, node_id = NULL, last_seen_at = dead.last_seen_at \
             FROM dead WHERE g.node_id = dead.id RETURNING g.user_id",
        )
        .load(&mut conn)
        .await?;
        // Sessions past the window are gone for good.
        let window = i64::try_from(self.config.resume_window.as_millis()).unwrap_or(i64::MAX);
        diesel::sql_query(
            "DELETE FROM gateway_sessions WHERE NOT connected \
             AND last_seen_at < now() - make_interval(secs => $1::double precision / 1000)",
        )
        .bind::<BigInt, _>(window)
        .execute(&mut conn)
        .await?;
        drop(conn);
        let users: HashSet<Uuid> = orphans.into_iter().map(|o| o.user_id).collect();
        for user in users {
            self.refresh_presence(UserId(user)).await;
        }
        Ok(())
    }

    /// Tells every socket to reconnect (graceful shutdown) and forgets them; their
    /// sessions stay resumable.
    pub async fn shutdown(&self) {
        let mut state = self.state.lock().await;
        let ids: Vec<Uuid> = state.sessions.keys().copied().collect();
        for id in ids {
            if let Some(mut entry) = state.remove(id) {
                let _ = entry
                    .tx
                    .try_send(Outbound::Text(Frame::reconnect().to_text()));
                let _ = entry.tx.try_send(Outbound::Close(
                    CloseCode::UnknownError,
                    "server restarting; resume",
                ));
            }
        }
        drop(state);
        if let Ok(mut conn) = self.pool.get().await {
            let _ = diesel::sql_query(
                "UPDATE gateway_sessions SET connected = false, last_seen_at = now() WHERE node_id = $1",
            )
            .bind::<SqlUuid, _>(self.node_id)
            .execute(&mut conn)
            .await;
            let _ = diesel::sql_query("DELETE FROM gateway_nodes WHERE id = $1")
                .bind::<SqlUuid, _>(self.node_id)
                .execute(&mut conn)
                .await;
        }
    }

    /// Publishes an ephemeral event (never stored, never replayed).
    pub async fn publish_ephemeral(&self, event: Event) {
        self.bus.publish(BusMessage::Ephemeral(event)).await;
    }
}
