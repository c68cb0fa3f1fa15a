//! The node's sockets: which session listens to which topic, and the recent records
//! the node delivered. Held under a plain mutex for short, synchronous sections only:
//! never across a database call or a socket write (sockets have queues).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use uuid::Uuid;

use super::stream::{self, Step, Stream};
use crate::event::{Ephemeral, Record};
use crate::protocol::CloseCode;
use crate::queue::{Outbound, Queue};
use crate::topic::Topic;

/// A base: where a stream stood at a point of the outbox.
#[derive(Debug, Clone)]
pub struct Base {
    /// The last sequence number sent up to there.
    pub seq: i64,
    /// The outbox position.
    pub position: i64,
    /// The topics listened to there.
    pub topics: Arc<[Topic]>,
}

/// One socket of this node.
pub(crate) struct Socket {
    pub stream: Stream,
    pub epoch: i32,
    pub queue: Arc<Queue>,
    /// Captured at the last checkpoint; written to the database at the next one, when
    /// the client has long had everything up to it.
    pub next_base: Base,
    /// Records at or below this position are already in the stream (READY or the
    /// replay reflected them).
    pub floor: i64,
}

/// Why a registration must first read the database.
pub(crate) struct Behind {
    /// Read the stream's records up to here, then try again.
    pub until: i64,
}

pub(crate) struct Local {
    /// On a routed bus, the shards this node receives and the position from which
    /// it has each one's records complete; `None`: it receives everything.
    pub listened: Option<HashMap<u16, i64>>,
    /// Sockets by slot; the topic index holds slots (4 bytes a listener, not 16).
    slots: Vec<Option<(Uuid, Socket)>>,
    free: Vec<u32>,
    ids: HashMap<Uuid, u32>,
    by_topic: HashMap<Topic, Vec<u32>>,
    /// Sockets per user, and how many a user may have on this node.
    per_user: HashMap<synctalk_kernel::UserId, u32>,
    max_per_user: u32,
    /// Every published record up to here has been applied.
    pub position: i64,
    recent: VecDeque<Arc<Record>>,
    recent_cap: usize,
    /// `recent` holds every record (of the shards listened to) after this position.
    recent_since: i64,
    /// Who is told of deliveries of which events.
    pub watches: Vec<Watch>,
}

/// Events queued to sockets, reported to a domain that keeps track of deliveries
/// (messaging's delivery receipts).
#[derive(Debug)]
pub struct Delivery {
    /// The event.
    pub record: Arc<Record>,
    /// The users one of whose sockets it was queued to (a user may appear twice).
    pub users: Vec<synctalk_kernel::UserId>,
}

/// A domain's wish to hear of deliveries of some events: those `wants` picks (it runs
/// under the hub's lock, once per record: keep it a cheap look at the name and the
/// payload's text).
#[derive(Debug, Clone)]
pub struct Watch {
    wants: fn(&Record) -> bool,
    tx: tokio::sync::mpsc::Sender<Delivery>,
}

impl Watch {
    pub(crate) fn new(wants: fn(&Record) -> bool, tx: tokio::sync::mpsc::Sender<Delivery>) -> Self {
        Self { wants, tx }
    }

    fn wants(&self, record: &Record) -> bool {
        (self.wants)(record)
    }

    /// Never waits: a watcher too far behind loses reports (counted), never the
    /// delivery itself.
    fn report(&self, record: &Arc<Record>, users: Vec<synctalk_kernel::UserId>) {
        if users.is_empty() {
            return;
        }
        let delivery = Delivery {
            record: record.clone(),
            users,
        };
        if self.tx.try_send(delivery).is_err() {
            metrics::counter!("gateway_delivery_reports_dropped_total").increment(1);
        }
    }
}

impl Local {
    pub fn new(position: i64, recent_cap: usize, routed: bool, max_per_user: u32) -> Self {
        Self {
            listened: routed.then(HashMap::new),
            slots: Vec::new(),
            free: Vec::new(),
            ids: HashMap::new(),
            by_topic: HashMap::new(),
            per_user: HashMap::new(),
            max_per_user,
            position,
            recent: VecDeque::new(),
            recent_cap,
            recent_since: position,
            watches: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether this node has every record of `topic` after `from`.
    pub fn complete(&self, topic: &Topic, from: i64) -> bool {
        match &self.listened {
            None => true,
            Some(listened) => listened
                .get(&crate::bus::shard(topic))
                .is_some_and(|since| *since <= from),
        }
    }

    /// The shards the node's sockets listen to.
    pub fn shards_in_use(&self) -> HashSet<u16> {
        self.by_topic.keys().map(crate::bus::shard).collect()
    }

    fn index(&mut self, slot: u32, topic: Topic) {
        self.by_topic.entry(topic).or_default().push(slot);
    }

    fn unindex(&mut self, slot: u32, topic: &Topic) {
        if let Some(slots) = self.by_topic.get_mut(topic) {
            slots.retain(|other| *other != slot);
            if slots.is_empty() {
                self.by_topic.remove(topic);
            } else if slots.capacity() > 8 && slots.len() < slots.capacity() / 4 {
                slots.shrink_to_fit();
            }
        }
    }

    pub fn remove(&mut self, id: Uuid) -> Option<Socket> {
        let slot = self.ids.remove(&id)?;
        let (_, socket) = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        if let Some(count) = self.per_user.get_mut(&socket.stream.user) {
            *count -= 1;
            if *count == 0 {
                self.per_user.remove(&socket.stream.user);
            }
        }
        for topic in socket.stream.topics.iter() {
            self.unindex(slot, topic);
        }
        Some(socket)
    }

    /// Removes the socket if it is still at `epoch`.
    pub fn remove_at(&mut self, id: Uuid, epoch: i32) -> Option<Socket> {
        if self.get(&id).is_some_and(|s| s.epoch == epoch) {
            return self.remove(id);
        }
        None
    }

    pub fn get(&self, id: &Uuid) -> Option<&Socket> {
        let slot = *self.ids.get(id)?;
        self.slots
            .get(slot as usize)?
            .as_ref()
            .map(|(_, socket)| socket)
    }

    pub fn ids(&self) -> Vec<Uuid> {
        self.ids.keys().copied().collect()
    }

    /// Registers a socket whose stream stands at `from`. Records this node applied
    /// after `from` are walked first (from memory), their events queued after
    /// `prefix` and before `suffix`; when memory does not reach back that far, the
    /// caller reads the database up to [`Behind::until`] and tries again.
    pub fn register(&mut self, id: Uuid, mut pending: Pending) -> Registered {
        let from = pending.from;
        let mut frames = std::mem::take(&mut pending.frames);
        if let Some(topic) = pending
            .socket
            .stream
            .topics
            .iter()
            .find(|t| !self.complete(t, from))
        {
            tracing::debug!(%topic, from, position = self.position, since = ?self.listened.as_ref().and_then(|l| l.get(&crate::bus::shard(topic))), "registering a socket whose shard is new here: reading the outbox");
            pending.frames = frames;
            return Registered::Behind(
                Behind {
                    until: self.position,
                },
                Box::new(pending),
            );
        }
        if self.position > from {
            let reaches = self.recent_since <= from;
            let mut stream = pending.socket.stream.clone();
            let mut walked = stream::Walk::default();
            let mut complete = reaches;
            for record in self.recent.iter().filter(|r| r.position > from) {
                if !complete {
                    break;
                }
                match stream.step(record) {
                    Step::Dispatch(seq) => walked.dispatches.push((record.clone(), seq)),
                    Step::Revoked => return Registered::Revoked,
                    Step::Subscribed(topic) => complete = self.complete(&topic, record.position),
                    Step::Nothing | Step::Unsubscribed(_) => {}
                }
            }
            if !complete {
                pending.frames = frames;
                return Registered::Behind(
                    Behind {
                        until: self.position,
                    },
                    Box::new(pending),
                );
            }
            pending.socket.stream = stream;
            frames.extend(
                walked
                    .dispatches
                    .into_iter()
                    .filter(|(_, seq)| *seq > pending.min_seq)
                    .map(|(r, seq)| Outbound::Dispatch(r, seq)),
            );
        }
        if pending.min_seq > pending.socket.stream.seq {
            return Registered::InvalidSeq;
        }
        if self
            .get(&id)
            .is_some_and(|old| old.epoch > pending.socket.epoch)
        {
            // A newer resume of this session already lives here.
            return Registered::Superseded;
        }
        let user = pending.socket.stream.user;
        if pending.resumed.is_none()
            && self.per_user.get(&user).copied().unwrap_or(0) >= self.max_per_user
        {
            return Registered::TooMany;
        }
        let mut socket = pending.socket;
        socket.floor = from.max(self.position);
        if let Some(session_id) = pending.resumed {
            let done = serde_json::json!({ "session_id": session_id, "replayed": frames.len() });
            let text = crate::protocol::Frame::dispatch("RESUMED", None, done).to_text();
            frames.push(Outbound::Text(Arc::from(text)));
        }
        for watch in &self.watches {
            for frame in &frames {
                if let Outbound::Dispatch(record, _) = frame
                    && watch.wants(record)
                {
                    watch.report(record, vec![user]);
                }
            }
        }
        socket.queue.push_all(frames);
        if let Some(old) = self.remove(id) {
            old.queue
                .close(CloseCode::UnknownError, "session resumed elsewhere");
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                // A node holds far fewer than 2^32 sockets (the open-file limit).
                let Ok(slot) = u32::try_from(self.slots.len()) else {
                    return Registered::Superseded;
                };
                self.slots.push(None);
                slot
            }
        };
        for topic in socket.stream.topics.iter() {
            self.index(slot, *topic);
        }
        self.slots[slot as usize] = Some((id, socket));
        self.ids.insert(id, slot);
        *self.per_user.entry(user).or_default() += 1;
        Registered::Done
    }

    /// Applies published records in position order; returns what must be done outside
    /// the lock.
    pub fn apply(&mut self, records: &[Arc<Record>]) -> Applied {
        let mut applied = Applied::default();
        for record in records {
            if record.position <= self.position {
                continue;
            }
            let mut changes: Vec<(u32, Uuid, Step)> = Vec::new();
            let watch = self.watches.iter().find(|w| w.wants(record)).cloned();
            let mut reached = Vec::new();
            if let Some(slots) = self.by_topic.get(&record.topic) {
                for slot in slots {
                    let Some((id, socket)) =
                        self.slots.get_mut(*slot as usize).and_then(Option::as_mut)
                    else {
                        continue;
                    };
                    if record.position <= socket.floor {
                        continue;
                    }
                    match socket.stream.step(record) {
                        Step::Nothing => {}
                        Step::Dispatch(seq) => {
                            applied.delivered += 1;
                            if !socket.queue.push(Outbound::Dispatch(record.clone(), seq)) {
                                changes.push((*slot, *id, Step::Revoked));
                                applied.slow.push(*id);
                            } else if watch.is_some() {
                                reached.push(socket.stream.user);
                            }
                        }
                        step => changes.push((*slot, *id, step)),
                    }
                }
            }
            if let Some(watch) = watch {
                watch.report(record, reached);
            }
            for (slot, id, step) in changes {
                match step {
                    Step::Subscribed(topic) => {
                        applied.subscribed.push(topic);
                        self.index(slot, topic);
                    }
                    Step::Unsubscribed(topic) => self.unindex(slot, &topic),
                    Step::Revoked => {
                        if let Some(socket) = self.remove(id) {
                            if applied.slow.contains(&id) {
                                // Its session stays resumable: the client catches up.
                                socket
                                    .queue
                                    .close(CloseCode::UnknownError, "too slow; resume to continue");
                            } else {
                                socket
                                    .queue
                                    .close(CloseCode::AuthenticationFailed, "session ended");
                            }
                        }
                    }
                    Step::Nothing | Step::Dispatch(_) => {}
                }
            }
            self.position = record.position;
            self.recent.push_back(record.clone());
            if self.recent.len() > self.recent_cap
                && let Some(dropped) = self.recent.pop_front()
            {
                self.recent_since = dropped.position;
            }
        }
        applied
    }

    /// Moves the position past records that exist nowhere (rolled back before the
    /// relay saw them cannot happen, but an unreadable row can).
    pub fn skip_to(&mut self, position: i64) {
        if position > self.position {
            self.position = position;
            if self.listened.is_none() {
                // In process every record comes here: positions skipped are records
                // that could not be read, and the window is no longer contiguous.
                self.recent.clear();
                self.recent_since = position;
            }
            // On a routed bus the rest of the batch is in shards not listened to.
        }
    }

    /// Closes (resumable) the sockets whose queued items have waited `limit` untaken:
    /// their clients stopped reading. Returns how many.
    pub fn close_stalled(&mut self, limit: std::time::Duration) -> usize {
        let Some(cutoff) = std::time::Instant::now().checked_sub(limit) else {
            return 0;
        };
        let stalled: Vec<Uuid> = self
            .slots
            .iter()
            .flatten()
            .filter(|(_, socket)| socket.queue.is_stalled(cutoff))
            .map(|(id, _)| *id)
            .collect();
        for id in &stalled {
            if let Some(socket) = self.remove(*id) {
                socket
                    .queue
                    .close(CloseCode::UnknownError, "too slow; resume to continue");
            }
        }
        stalled.len()
    }

    /// Queues an ephemeral event for every socket listening to one of its topics.
    pub fn ephemeral(&self, event: &Ephemeral) {
        let frame: Arc<str> = Arc::from(event.frame());
        let mut seen = HashSet::new();
        for topic in &event.topics {
            for slot in self.by_topic.get(topic).into_iter().flatten() {
                if let Some((_, socket)) = self.slots.get(*slot as usize).and_then(Option::as_ref)
                    && socket.stream.domains.contains(event.domain)
                    && event.except != Some(socket.stream.user)
                    && seen.insert(*slot)
                {
                    socket.queue.push_ephemeral(frame.clone());
                }
            }
        }
    }

    /// The bases to write now (captured a checkpoint ago), and captures the next ones.
    pub fn checkpoint(&mut self) -> Vec<(Uuid, i32, Base)> {
        let position = self.position;
        self.slots
            .iter_mut()
            .flatten()
            .map(|(id, socket)| {
                // A socket registered ahead of this node stands at its floor.
                let now = Base {
                    seq: socket.stream.seq,
                    position: position.max(socket.floor),
                    topics: socket.stream.topics.clone(),
                };
                let due = std::mem::replace(&mut socket.next_base, now);
                (*id, socket.epoch, due)
            })
            .collect()
    }
}

/// A socket on its way in: its stream stands at `from`; `frames` go out first (READY,
/// what was replayed so far), then what memory adds, then RESUMED for a resume.
pub(crate) struct Pending {
    pub socket: Socket,
    pub from: i64,
    pub frames: Vec<Outbound>,
    /// Events up to this sequence number are not sent (the client has them).
    pub min_seq: i64,
    /// A resume of this session: end with RESUMED.
    pub resumed: Option<Uuid>,
}

/// How a registration went.
pub(crate) enum Registered {
    /// Live from now on.
    Done,
    /// The session ended on the way (close 4004).
    Revoked,
    /// The client claims a sequence number the session never reached (close 4007).
    InvalidSeq,
    /// A newer resume of the session got here first.
    Superseded,
    /// The user has as many sockets on this node as allowed (a new session only).
    TooMany,
    /// Read the database first.
    Behind(Behind, Box<Pending>),
}

/// What applying records left to do.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Sockets closed because their queue was full.
    pub slow: Vec<Uuid>,
    /// Events queued.
    pub delivered: u64,
    /// Topics sockets started listening to.
    pub subscribed: Vec<Topic>,
}
