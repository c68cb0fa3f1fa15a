//! The node's hub. One job per module:
//!
//! - [`stream`]: a session's stream as a function of the outbox (sequence numbers,
//!   subscriptions, revocation), shared by live delivery and replay.
//! - [`local`]: the node's sockets by topic, and the records it delivered recently.
//! - delivery (here): follows the bus in position order, fills gaps from the outbox,
//!   hands events to socket queues; checkpoints move sessions' bases forward.
//! - [`store`]: gateway sessions in the database (identify, resume on any node,
//!   checkpoints, disconnects).
//! - [`liveness`]: node beats and sweeps, on a connection of its own.
//!
//! No lock is held across a database call or a socket write: the local state sits
//! under a plain mutex taken for short synchronous sections, and sockets have queues.

pub mod liveness;
pub mod local;
pub mod store;
pub mod stream;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use synctalk_db::Pool;
use synctalk_kernel::{AuthUser, UserId};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::bus::Bus;
use crate::event::{self, BusMessage, Control, Ephemeral, Record};
use crate::protocol::CloseCode;
use crate::queue::{Outbound, Queue};
use crate::topic::{DomainSet, Topic};
use local::{Base, Local, Pending, Registered, Socket};
pub use store::Refusal;
use stream::Stream;

/// Called with the users whose sockets a dead node took with it.
pub type LostHook = Arc<dyn Fn(Vec<UserId>) -> crate::BoxFuture<'static, ()> + Send + Sync>;

/// Settings of the hub.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// How long a dropped session stays resumable.
    pub resume_window: Duration,
    /// Outbound frames queued per socket before it counts as too slow.
    pub queue: usize,
    /// How often sessions' bases move forward (each base is written a checkpoint after
    /// it was captured, so a client has long received what it covers).
    pub checkpoint_every: Duration,
    /// The most events one replay (identify catch-up or resume) may hold.
    pub max_replay: i64,
    /// How many recently delivered records the node keeps for registrations.
    pub recent: usize,
    /// How many sockets one user may have on this node (new sessions beyond it are
    /// refused; a resume replaces its socket).
    pub max_sockets_per_user: u32,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            resume_window: Duration::from_secs(300),
            queue: 256,
            checkpoint_every: Duration::from_secs(30),
            max_replay: 5000,
            recent: 4096,
            max_sockets_per_user: 100,
        }
    }
}

/// A new session: who, what it carries, and READY's snapshot (the published position
/// it reflects, the topics it listens to, the unpublished ids it already reflects).
#[derive(Debug, Clone)]
pub struct Opening {
    /// The new gateway session's id (READY carries it).
    pub session_id: Uuid,
    /// Who.
    pub auth: AuthUser,
    /// The domains the socket carries.
    pub domains: DomainSet,
    /// The relay's position in READY's snapshot.
    pub position: i64,
    /// What it listens to (the pinned topics included).
    pub topics: Vec<Topic>,
    /// Committed but unpublished outbox ids READY reflects.
    pub skip: Vec<i64>,
}

/// Why a socket could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The session ended meanwhile (close 4004).
    Revoked,
    /// A resume that cannot be served (INVALID_SESSION with the reason).
    Invalid(Refusal),
    /// A resume with a sequence number the session never reached (close 4007).
    InvalidSeq,
    /// The node is shutting down (RECONNECT).
    ShuttingDown,
    /// The user already has as many sockets on this node as allowed (close 4008).
    TooMany,
}

/// A registered socket.
#[derive(Debug, Clone, Copy)]
pub struct Registration {
    /// The gateway session.
    pub session_id: Uuid,
    /// Its epoch on this node.
    pub epoch: i32,
    /// The domains it carries.
    pub domains: DomainSet,
}

/// The node's hub.
pub struct Hub {
    node_id: Uuid,
    pool: Pool,
    bus: Bus,
    config: HubConfig,
    local: Mutex<Local>,
    position: AtomicI64,
    advanced: Notify,
    shutting_down: AtomicBool,
    lost_hooks: RwLock<Vec<LostHook>>,
    /// On a routed bus: per shard, the relay's position when this node started to
    /// receive it; batches up to there are read from the outbox for that shard.
    cold: Mutex<HashMap<u16, (i64, std::time::Instant)>>,
    received: std::sync::atomic::AtomicU64,
    inserter: store::Batcher<store::Insert>,
    taker: store::Batcher<store::TakeOver>,
    leaver: store::Batcher<store::Disconnect>,
}

fn db<E: std::fmt::Display>(error: E) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

impl Hub {
    /// Starts the hub: registers the node, follows the bus, checkpoints, beats (on its
    /// own connection to `url`).
    pub async fn start(
        pool: Pool,
        url: String,
        bus: Bus,
        config: HubConfig,
    ) -> anyhow::Result<Arc<Self>> {
        let node_id = Uuid::now_v7();
        let mut conn = synctalk_db::conn(&pool).await.map_err(db)?;
        let head = event::head(&mut conn).await?;
        diesel_async::RunQueryDsl::execute(
            synctalk_db::sql("INSERT INTO gateway_nodes (id, position) VALUES ($1, $2)")
                .bind::<diesel::sql_types::Uuid, _>(node_id)
                .bind::<diesel::sql_types::BigInt, _>(head),
            &mut conn,
        )
        .await?;
        drop(conn);
        let hub = Arc::new(Self {
            node_id,
            bus: bus.clone(),
            config,
            local: Mutex::new(Local::new(
                head,
                config.recent,
                bus.is_routed(),
                config.max_sockets_per_user,
            )),
            position: AtomicI64::new(head),
            advanced: Notify::new(),
            shutting_down: AtomicBool::new(false),
            lost_hooks: RwLock::new(Vec::new()),
            cold: Mutex::new(HashMap::new()),
            received: std::sync::atomic::AtomicU64::new(0),
            inserter: store::Batcher::start(pool.clone(), store::Insert(node_id)),
            taker: store::Batcher::start(
                pool.clone(),
                store::TakeOver {
                    node: node_id,
                    window_ms: i64::try_from(config.resume_window.as_millis()).unwrap_or(i64::MAX),
                },
            ),
            leaver: store::Batcher::start(pool.clone(), store::Disconnect),
            pool,
        });
        tokio::spawn(follow(Arc::downgrade(&hub), bus.subscribe()));
        tokio::spawn(checkpoints(Arc::downgrade(&hub)));
        tokio::spawn(liveness::run(Arc::downgrade(&hub), url));
        Ok(hub)
    }

    /// Reports, from now on, every queueing to a socket of this node (live, or replayed
    /// on identify and resume) of an event `wants` picks, through a channel of
    /// `capacity` reports; when the receiver falls that far behind, reports are dropped
    /// (counted in `gateway_delivery_reports_dropped_total`), never deliveries.
    pub fn watch_deliveries(
        &self,
        wants: fn(&crate::event::Record) -> bool,
        capacity: usize,
    ) -> tokio::sync::mpsc::Receiver<local::Delivery> {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        self.local().watches.push(local::Watch::new(wants, tx));
        rx
    }

    fn local(&self) -> MutexGuard<'_, Local> {
        self.local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    /// Settings.
    pub fn config(&self) -> HubConfig {
        self.config
    }

    /// How far this node has delivered the outbox.
    pub fn position(&self) -> i64 {
        self.position.load(Ordering::Acquire)
    }

    /// How many outbox records this node has received (from the bus or the outbox).
    pub fn records_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// How many sockets this node holds.
    pub fn socket_count(&self) -> usize {
        self.local().len()
    }

    /// Whether shutdown began (no new sessions).
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Registers what to do for users whose sockets a dead node took with it.
    pub fn on_sockets_lost(&self, hook: LostHook) {
        if let Ok(mut hooks) = self.lost_hooks.write() {
            hooks.push(hook);
        }
    }

    pub(crate) async fn sockets_lost(&self, users: Vec<UserId>) {
        let hooks: Vec<LostHook> = self
            .lost_hooks
            .read()
            .map(|h| h.clone())
            .unwrap_or_default();
        for hook in hooks {
            hook(users.clone()).await;
        }
    }

    /// Publishes an ephemeral event (never stored, never replayed).
    pub async fn publish_ephemeral(&self, event: Ephemeral) {
        self.bus.publish_ephemeral(event).await;
    }

    /// Starts receiving the shards of `topics` this node does not receive yet (on a
    /// routed bus).
    pub(crate) async fn listen(&self, topics: &[Topic]) -> anyhow::Result<()> {
        if !self.bus.is_routed() {
            return Ok(());
        }
        let missing: Vec<u16> = {
            let local = self.local();
            let listened = local.listened.as_ref();
            let mut missing: Vec<u16> = topics
                .iter()
                .map(crate::bus::shard)
                .filter(|s| listened.is_none_or(|l| !l.contains_key(s)))
                .collect();
            missing.sort_unstable();
            missing.dedup();
            missing
        };
        if missing.is_empty() {
            return Ok(());
        }
        // All of them in one round trip to NATS, then one read of the head.
        self.bus.listen(&missing).await?;
        // Batches the relay marked before now may have gone out before this node
        // listened: those come from the outbox.
        let head = {
            let mut conn = synctalk_db::conn(&self.pool).await.map_err(db)?;
            event::head(&mut conn).await?
        };
        let now = std::time::Instant::now();
        if let Ok(mut cold) = self.cold.lock() {
            for shard in &missing {
                cold.insert(*shard, (head, now));
            }
        }
        let mut local = self.local();
        let position = local.position;
        if let Some(listened) = local.listened.as_mut() {
            for shard in missing {
                listened.entry(shard).or_insert(position);
            }
        }
        Ok(())
    }

    /// Stops receiving shards no socket of this node listens to any more (only shards
    /// listened to a while ago: a registration that just asked for one has not
    /// registered yet). Runs in the follower, so never between a batch's listening
    /// and its applying.
    fn unlisten_unused(&self) {
        if self.bus.listening().is_none() {
            return;
        }
        let mut local = self.local();
        let used = local.shards_in_use();
        let Ok(mut cold) = self.cold.lock() else {
            return;
        };
        let stale: Vec<u16> = cold
            .iter()
            .filter(|(shard, (_, since))| !used.contains(shard) && since.elapsed() > UNLISTEN_AFTER)
            .map(|(shard, _)| *shard)
            .collect();
        for shard in stale {
            cold.remove(&shard);
            if let Some(listened) = local.listened.as_mut() {
                listened.remove(&shard);
            }
            self.bus.unlisten(shard);
        }
    }

    async fn handle(&self, message: &BusMessage, routing: &mut Routing) {
        match message {
            BusMessage::Slice {
                shard,
                last,
                records,
                ..
            } => {
                if *last > self.position() {
                    routing
                        .slices
                        .entry((*last, *shard))
                        .or_default()
                        .extend(records.iter().cloned());
                }
            }
            BusMessage::Head {
                prev,
                last,
                counts,
                missing,
            } => {
                routing.heads.push_back(Head {
                    prev: *prev,
                    last: *last,
                    counts: counts.clone(),
                    missing: !missing.is_empty(),
                    due: tokio::time::Instant::now() + SLICE_WAIT,
                });
            }
            BusMessage::Ephemeral(event) if self.bus.is_routed() => {
                if routing.seen(event.id) {
                    self.local().ephemeral(event);
                }
            }
            BusMessage::Durable {
                prev,
                last,
                records,
            } => {
                if let Err(error) = self.durable(*prev, *last, records).await {
                    tracing::warn!(%error, "durable delivery failed; catching up from the outbox");
                }
            }
            BusMessage::Ephemeral(event) => self.local().ephemeral(event),
            BusMessage::Control(Control::TakenOver { session_id, epoch }) => {
                let mut local = self.local();
                if local.get(session_id).is_some_and(|s| s.epoch < *epoch)
                    && let Some(socket) = local.remove(*session_id)
                {
                    socket
                        .queue
                        .close(CloseCode::UnknownError, "session resumed elsewhere");
                }
            }
        }
    }

    /// Applies the heads whose slices are all here (or that waited long enough: their
    /// batches come from the outbox), in order.
    async fn drain(&self, routing: &mut Routing) {
        while let Some(head) = routing.heads.front() {
            if head.last <= self.position() {
                // Already applied (from the outbox): nothing to wait for.
                let last = head.last;
                routing.heads.pop_front();
                routing.slices.retain(|(l, _), _| *l > last);
                continue;
            }
            let cold: HashMap<u16, i64> = self
                .cold
                .lock()
                .map(|c| c.iter().map(|(s, (p, _))| (*s, *p)).collect())
                .unwrap_or_default();
            let listened: HashSet<u16> = self
                .local()
                .listened
                .as_ref()
                .map(|l| l.keys().copied().collect())
                .unwrap_or_default();
            let mut from_outbox = head.missing;
            let mut complete = true;
            for (shard, count) in &head.counts {
                if !listened.contains(shard) {
                    continue;
                }
                if cold.get(shard).is_some_and(|c| *c >= head.last) {
                    from_outbox = true;
                    continue;
                }
                let have = routing.slices.get(&(head.last, *shard)).map_or(0, Vec::len);
                if have < usize::try_from(*count).unwrap_or(usize::MAX) {
                    complete = false;
                }
            }
            if !complete && tokio::time::Instant::now() < head.due {
                return;
            }
            let Some(head) = routing.heads.pop_front() else {
                return;
            };
            let mut records: Vec<Record> = Vec::new();
            for (shard, _) in &head.counts {
                if let Some(slice) = routing.slices.remove(&(head.last, *shard))
                    && listened.contains(shard)
                {
                    records.extend(slice);
                }
            }
            routing.slices.retain(|(last, _), _| *last > head.last);
            records.sort_unstable_by_key(|r| r.position);
            // Sockets that start listening to a topic of a shard this node did not
            // receive: receive it from now on, and read this batch from the outbox.
            let new_topics: Vec<Topic> = records
                .iter()
                .filter(|r| r.kind == crate::event::Kind::Subscribe)
                .filter_map(Record::subject)
                .filter(|t| !listened.contains(&crate::bus::shard(t)))
                .collect();
            if !new_topics.is_empty() {
                if let Err(error) = self.listen(&new_topics).await {
                    tracing::warn!(%error, "could not listen to a shard");
                }
                from_outbox = true;
            }
            if !complete {
                tracing::debug!(
                    last = head.last,
                    "slices missing; reading the batch from the outbox"
                );
                from_outbox = true;
            }
            let result = if from_outbox {
                self.durable(head.last, head.last, &[]).await
            } else {
                self.routed(head.prev, head.last, records).await
            };
            if let Err(error) = result {
                tracing::warn!(%error, "durable delivery failed; catching up from the outbox");
            }
        }
    }

    /// Applies the records of the shards this node receives for `prev+1 ..= last`.
    async fn routed(&self, prev: i64, last: i64, records: Vec<Record>) -> anyhow::Result<()> {
        let position = self.position();
        if last <= position {
            return Ok(());
        }
        if prev > position {
            // A gap before this batch: read it (and the batch) from the outbox.
            return self.durable(last, last, &[]).await;
        }
        let batch: Vec<Arc<Record>> = records
            .into_iter()
            .filter(|r| r.position > position)
            .map(Arc::new)
            .collect();
        self.apply_and_listen(&batch, last).await
    }

    /// Applies `prev+1 ..= last`: the records the message carries when they cover the
    /// range right after this node's position, otherwise read from the outbox.
    async fn durable(&self, prev: i64, last: i64, records: &[Record]) -> anyhow::Result<()> {
        let position = self.position();
        if last <= position {
            return Ok(());
        }
        let complete = prev <= position
            && i64::try_from(records.len()).unwrap_or(0) == last - prev
            && records.first().is_none_or(|r| r.position == prev + 1);
        if complete {
            let batch: Vec<Arc<Record>> = records
                .iter()
                .filter(|r| r.position > position)
                .cloned()
                .map(Arc::new)
                .collect();
            return self.apply_and_listen(&batch, last).await;
        }
        // A gap (a lost or partial message, a new leader): read it, in order.
        let mut conn = synctalk_db::conn(&self.pool).await.map_err(db)?;
        let mut after = position;
        while after < last {
            let chunk = event::read_range(&mut conn, after, last, 1000).await?;
            let reached = chunk.last().map_or(last, |r| r.position);
            let batch: Vec<Arc<Record>> = chunk.into_iter().map(Arc::new).collect();
            self.apply_and_listen(&batch, reached).await?;
            after = reached;
        }
        Ok(())
    }

    /// Closes the sockets whose clients stopped reading: queued frames untaken for
    /// `limit` (the gateway's write timeout). Their sessions stay resumable.
    pub fn close_stalled(&self, limit: Duration) {
        let closed = self.local().close_stalled(limit);
        if closed > 0 {
            tracing::info!(
                sockets = closed,
                "closed sockets whose clients stopped reading"
            );
        }
    }

    /// Applies records; returns the topics sockets started listening to.
    fn apply(&self, batch: &[Arc<Record>], until: i64) -> Vec<Topic> {
        let applied = {
            let mut local = self.local();
            let applied = local.apply(batch);
            local.skip_to(until);
            self.position.store(local.position, Ordering::Release);
            applied
        };
        metrics::counter!("gateway_records_received_total").increment(batch.len() as u64);
        self.received
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        metrics::counter!("gateway_events_delivered_total").increment(applied.delivered);
        for id in applied.slow {
            tracing::info!(session_id = %id, "closed a slow consumer");
        }
        self.advanced.notify_waiters();
        applied.subscribed
    }

    /// Applies records, then receives the shards of any topic a socket started to
    /// listen to (before the next batch is applied).
    async fn apply_and_listen(&self, batch: &[Arc<Record>], until: i64) -> anyhow::Result<()> {
        let subscribed = self.apply(batch, until);
        if !subscribed.is_empty() {
            self.listen(&subscribed).await?;
        }
        Ok(())
    }

    /// Delivers whatever the relay published that this node has not seen (a lost bus
    /// message, a leader that died between marking and publishing).
    async fn catch_up(&self) {
        let head = async {
            let mut conn = synctalk_db::conn(&self.pool).await.map_err(db)?;
            anyhow::Ok(event::head(&mut conn).await?)
        }
        .await;
        match head {
            Ok(head) if head > self.position() => {
                if let Err(error) = self.durable(head, head, &[]).await {
                    tracing::warn!(%error, "catch-up failed");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "catch-up check failed"),
        }
    }

    async fn checkpoint(&self) {
        let due = self.local().checkpoint();
        let held: Vec<Uuid> = due.iter().map(|d| d.0).collect();
        let swept = async {
            let mut conn = synctalk_db::conn(&self.pool).await.map_err(db)?;
            anyhow::Ok(store::sweep_orphans(&mut conn, self.node_id, &held).await?)
        }
        .await;
        match swept {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                sessions = n,
                "marked sessions this node does not hold as dropped"
            ),
            Err(error) => tracing::warn!(%error, "could not sweep orphaned sessions"),
        }
        if due.is_empty() {
            return;
        }
        let written = async {
            let mut conn = synctalk_db::conn(&self.pool).await.map_err(db)?;
            anyhow::Ok(store::write_bases(&mut conn, self.node_id, &due).await?)
        }
        .await;
        match written {
            Ok(lost) => {
                let mut local = self.local();
                for id in lost {
                    let epoch = due.iter().find(|d| d.0 == id).map_or(0, |d| d.1);
                    if let Some(socket) = local.remove_at(id, epoch) {
                        socket
                            .queue
                            .close(CloseCode::UnknownError, "session resumed elsewhere");
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "checkpoint failed; bases stay where they were"),
        }
    }

    /// Waits until this node has delivered up to `position` (false after `timeout`).
    async fn reach(&self, position: i64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.advanced.notified();
            if self.position() >= position {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.position() >= position;
            }
        }
    }

    async fn register(
        &self,
        id: Uuid,
        mut pending: Pending,
    ) -> anyhow::Result<Result<(), Refused>> {
        for _ in 0..64 {
            self.listen(&pending.socket.stream.topics).await?;
            let outcome = self.local().register(id, pending);
            match outcome {
                Registered::Done => return Ok(Ok(())),
                Registered::Revoked => return Ok(Err(Refused::Revoked)),
                Registered::InvalidSeq => return Ok(Err(Refused::InvalidSeq)),
                Registered::TooMany => return Ok(Err(Refused::TooMany)),
                Registered::Superseded => {
                    return Ok(Err(Refused::Invalid(Refusal::Expired)));
                }
                Registered::Behind(behind, mut back) => {
                    let mut conn = synctalk_db::conn(&self.pool).await.map_err(db)?;
                    let records = stream::read(
                        &mut conn,
                        &back.socket.stream,
                        back.from,
                        behind.until,
                        self.config.max_replay,
                    )
                    .await?;
                    let Some(records) = records else {
                        return Ok(Err(Refused::Invalid(Refusal::TooFarBehind)));
                    };
                    let walked = stream::walk(&mut back.socket.stream, &records);
                    if walked.revoked {
                        return Ok(Err(Refused::Revoked));
                    }
                    let min_seq = back.min_seq;
                    back.frames.extend(
                        walked
                            .dispatches
                            .into_iter()
                            .filter(|(_, seq)| *seq > min_seq)
                            .map(|(r, seq)| Outbound::Dispatch(r, seq)),
                    );
                    back.from = behind.until;
                    pending = *back;
                }
            }
        }
        anyhow::bail!("a registration did not settle")
    }

    /// Opens a new session for an identified socket: READY goes first, then whatever
    /// was published after READY's snapshot, then live events.
    pub async fn open(
        &self,
        opening: Opening,
        ready: String,
        queue: Arc<Queue>,
    ) -> anyhow::Result<Result<Registration, Refused>> {
        if self.is_shutting_down() {
            return Ok(Err(Refused::ShuttingDown));
        }
        let id = opening.session_id;
        let mut topics = opening.topics;
        topics.extend(Topic::pinned(opening.auth.user_id, opening.auth.session_id));
        topics.sort_unstable();
        topics.dedup();
        let base = Base {
            seq: 0,
            position: opening.position,
            topics: Arc::from(topics),
        };
        self.inserter
            .call(store::NewSession {
                id,
                auth: opening.auth,
                domains: opening.domains,
                base: base.clone(),
                skip: opening.skip.clone(),
            })
            .await?;
        let socket = Socket {
            stream: Stream {
                user: opening.auth.user_id,
                auth_session: opening.auth.session_id,
                domains: opening.domains,
                topics: base.topics.clone(),
                seq: 0,
                skip: Arc::from(opening.skip),
            },
            epoch: 1,
            queue,
            next_base: base.clone(),
            floor: base.position,
        };
        let pending = Pending {
            socket,
            from: base.position,
            frames: vec![Outbound::Text(Arc::from(ready))],
            min_seq: 0,
            resumed: None,
        };
        let outcome = match self.register(id, pending).await {
            Ok(outcome) => outcome,
            Err(error) => {
                // Nobody holds the session: it must not stay marked connected.
                self.disconnect(id, 1, true).await;
                return Err(error);
            }
        };
        if outcome.is_err() {
            self.disconnect(id, 1, true).await;
        }
        Ok(outcome.map(|()| Registration {
            session_id: id,
            epoch: 1,
            domains: opening.domains,
        }))
    }

    /// Resumes a session on this node: takes it over, waits until every event
    /// committed before now has reached this node, replays what the client missed
    /// after `seq` (none: from the start), then RESUMED.
    pub async fn resume(
        &self,
        auth: AuthUser,
        session_id: Uuid,
        seq: Option<i64>,
        queue: Arc<Queue>,
    ) -> anyhow::Result<Result<Registration, Refused>> {
        if self.is_shutting_down() {
            return Ok(Err(Refused::ShuttingDown));
        }
        let taken = self
            .taker
            .call(store::TakeOverRequest {
                id: session_id,
                auth,
            })
            .await?;
        let barrier = taken.barrier;
        let taken = match taken.taken {
            Ok(taken) => taken,
            Err(refusal) => return Ok(Err(Refused::Invalid(refusal))),
        };
        let epoch = taken.epoch;
        let outcome = self
            .replay_resumed(auth, session_id, seq, queue, taken, &barrier)
            .await;
        match &outcome {
            Ok(Ok(_)) => {
                self.bus
                    .publish_control(Control::TakenOver { session_id, epoch })
                    .await;
            }
            // Refused after the take-over: the session is over.
            Ok(Err(_)) => self.disconnect(session_id, epoch, true).await,
            // A fault: it stays resumable.
            Err(_) => self.disconnect(session_id, epoch, false).await,
        }
        outcome
    }

    async fn replay_resumed(
        &self,
        auth: AuthUser,
        session_id: Uuid,
        seq: Option<i64>,
        queue: Arc<Queue>,
        taken: store::Taken,
        barrier: &store::Barrier,
    ) -> anyhow::Result<Result<Registration, Refused>> {
        // Everything committed before the RESUME arrived is delivered before RESUMED:
        // wait until the relay has published it and this node has applied it.
        let mut target = barrier.head;
        let waiting = &barrier.unpublished;
        if !waiting.is_empty() {
            let mut conn = synctalk_db::conn(&self.pool).await.map_err(db)?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            loop {
                let (done, last) = event::published(&mut conn, waiting).await?;
                if done {
                    target = target.max(last);
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    anyhow::bail!("the outbox relay is not publishing");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        if !self.reach(target, Duration::from_secs(2)).await {
            self.catch_up().await;
        }
        let client_seq = seq.unwrap_or(0);
        if client_seq < taken.base.seq {
            return Ok(Err(Refused::Invalid(Refusal::TooFarBehind)));
        }
        let socket = Socket {
            stream: Stream {
                user: auth.user_id,
                auth_session: auth.session_id,
                domains: taken.domains,
                topics: taken.base.topics.clone(),
                seq: taken.base.seq,
                skip: Arc::from(taken.skip),
            },
            epoch: taken.epoch,
            queue,
            next_base: taken.base.clone(),
            floor: taken.base.position,
        };
        let pending = Pending {
            socket,
            from: taken.base.position,
            frames: Vec::new(),
            min_seq: client_seq,
            resumed: Some(session_id),
        };
        let outcome = self.register(session_id, pending).await?;
        Ok(outcome.map(|()| Registration {
            session_id,
            epoch: taken.epoch,
            domains: taken.domains,
        }))
    }

    /// A socket went away (on every exit path). A clean close (1000) ends the
    /// session; any other drop keeps it resumable for the window.
    pub async fn disconnect(&self, session_id: Uuid, epoch: i32, clean: bool) {
        self.local().remove_at(session_id, epoch);
        let gone = store::Gone {
            id: session_id,
            epoch,
            clean,
        };
        if let Err(error) = self.leaver.call(gone).await {
            // The session stays marked connected on a live node until the node dies or
            // the next checkpoint finds it gone; nothing is lost for the client.
            tracing::warn!(%error, "could not record a disconnect");
        }
    }

    /// Tells every socket to reconnect (graceful shutdown) and refuses new sessions;
    /// their sessions stay resumable on another node. Returns once the sockets-lost
    /// hooks ran for their users (presence: after its grace).
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        {
            let mut local = self.local();
            for id in local.ids() {
                if let Some(socket) = local.remove(id) {
                    socket.queue.reconnect();
                }
            }
        }
        let mut users = Vec::new();
        if let Ok(mut conn) = synctalk_db::conn(&self.pool).await {
            use diesel_async::RunQueryDsl;
            #[derive(diesel::QueryableByName)]
            struct Held {
                #[diesel(sql_type = diesel::sql_types::Uuid)]
                user_id: Uuid,
            }
            // Rows locked in id order, as every writer of them locks them (sockets'
            // drops and other nodes' resumes run meanwhile). No node: a checkpoint of
            // this node's still on its way cannot mark them connected again.
            let held: diesel::QueryResult<Vec<Held>> = synctalk_db::sql(
                "WITH locked AS (SELECT id FROM gateway_sessions WHERE node_id = $1 \
                                 ORDER BY id FOR UPDATE) \
                 UPDATE gateway_sessions g SET connected = false, node_id = NULL, last_seen_at = now() \
                 FROM locked WHERE g.id = locked.id RETURNING g.user_id",
            )
            .bind::<diesel::sql_types::Uuid, _>(self.node_id)
            .load(&mut conn)
            .await;
            match held {
                Ok(held) => {
                    users = held.into_iter().map(|h| UserId(h.user_id)).collect();
                    users.sort_unstable();
                    users.dedup();
                    let _ = synctalk_db::sql("DELETE FROM gateway_nodes WHERE id = $1")
                        .bind::<diesel::sql_types::Uuid, _>(self.node_id)
                        .execute(&mut conn)
                        .await;
                }
                // The node's row stays: once it stops beating, another node declares
                // it dead and takes care of its sessions' users.
                Err(error) => tracing::warn!(%error, "could not mark this node's sessions dropped"),
            }
        }
        // No other node hears that these sockets went (this one no longer beats, and
        // is not declared dead): the hooks run here, before the process ends.
        if !users.is_empty() {
            self.sockets_lost(users).await;
        }
    }
}

/// How long a shard stays received after the last socket listening to it went.
const UNLISTEN_AFTER: Duration = Duration::from_secs(60);

/// How long a node waits for a batch's slices before it reads the batch from the
/// outbox instead.
const SLICE_WAIT: Duration = Duration::from_millis(250);

/// A batch announced on a routed bus.
struct Head {
    prev: i64,
    last: i64,
    counts: Vec<(u16, u32)>,
    missing: bool,
    due: tokio::time::Instant,
}

/// What the follower holds between messages on a routed bus.
#[derive(Default)]
struct Routing {
    slices: HashMap<(i64, u16), Vec<Record>>,
    heads: VecDeque<Head>,
    ephemeral_ids: VecDeque<u64>,
    ephemeral_seen: HashSet<u64>,
}

impl Routing {
    /// Whether an ephemeral event is seen for the first time.
    fn seen(&mut self, id: u64) -> bool {
        if !self.ephemeral_seen.insert(id) {
            return false;
        }
        self.ephemeral_ids.push_back(id);
        if self.ephemeral_ids.len() > 4096
            && let Some(old) = self.ephemeral_ids.pop_front()
        {
            self.ephemeral_seen.remove(&old);
        }
        true
    }
}

/// Follows the bus in order; checks the relay's cursor now and then for anything a
/// lost message left out.
async fn follow(
    hub: std::sync::Weak<Hub>,
    mut rx: tokio::sync::broadcast::Receiver<Arc<BusMessage>>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut routing = Routing::default();
    let mut ticks: u64 = 0;
    loop {
        let due = routing.heads.front().map(|h| h.due);
        tokio::select! {
            message = rx.recv() => {
                let Some(hub) = hub.upgrade() else { break };
                match message {
                    Ok(message) => {
                        hub.handle(&message, &mut routing).await;
                        hub.drain(&mut routing).await;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "bus receiver lagged; catching up from the outbox");
                        routing = Routing::default();
                        hub.catch_up().await;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600))), if due.is_some() => {
                let Some(hub) = hub.upgrade() else { break };
                hub.drain(&mut routing).await;
            }
            _ = tick.tick() => {
                let Some(hub) = hub.upgrade() else { break };
                if routing.heads.is_empty() {
                    hub.catch_up().await;
                }
                ticks += 1;
                if ticks.is_multiple_of(60) {
                    hub.unlisten_unused();
                }
            }
        }
    }
}

async fn checkpoints(hub: std::sync::Weak<Hub>) {
    let every = match hub.upgrade() {
        Some(hub) => hub.config.checkpoint_every,
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { break };
        hub.checkpoint().await;
    }
}
