//! The event bus between nodes: in-process by default, NATS when `NATS_URL` is set.
//!
//! In process, every message reaches the one node. On NATS, records are routed by
//! topic: each batch the relay publishes goes out as slices on `<prefix>.s.<shard>`
//! (the shard of each record's topic, see [`shard`]) followed by a head on
//! `<prefix>.head` that says how many records each shard carried. A node listens
//! only to the shards of the topics its sockets listen to, and to the heads, which
//! tell it exactly what to wait for and what to read from the outbox instead.
//! Ephemeral events go to the shards of their topics; control messages to every node.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::sync::broadcast;

use crate::event::{BusMessage, Control, Ephemeral, Record};
use crate::topic::Topic;

/// How many shards topics are spread over on NATS.
pub const SHARDS: u16 = 1024;

/// The shard of a topic (FNV-1a of its text form).
pub fn shard(topic: &Topic) -> u16 {
    let text = topic.to_string();
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    u16::try_from(hash % u64::from(SHARDS)).unwrap_or(0)
}

struct Nats {
    client: async_nats::Client,
    prefix: String,
    shards: Mutex<HashMap<u16, tokio::task::AbortHandle>>,
}

/// The bus handle; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    local: broadcast::Sender<Arc<BusMessage>>,
    nats: Option<Arc<Nats>>,
    local_max_payload: usize,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("nats", &self.nats.as_ref().map(|n| &n.prefix))
            .finish()
    }
}

const CAPACITY: usize = 8192;

/// How long a node waits for NATS to answer a round trip.
const ROUND_TRIP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits (at most `ROUND_TRIP_WAIT`, also while async-nats reconnects) until the NATS
/// server has taken every subscription this client sent before. async-nats' flush
/// only writes them out; but the server handles a connection's operations in order,
/// so a message to a fresh inbox of ours that comes back was handled after them. (On
/// a cluster of NATS servers interest reaches the other servers a moment later: a
/// publisher connected to another server may still miss the new subscription.)
async fn round_trip(client: &async_nats::Client) -> anyhow::Result<()> {
    let trip = async {
        let inbox = client.new_inbox();
        let mut echo = client.subscribe(inbox.clone()).await?;
        client.publish(inbox, "".into()).await?;
        client.flush().await?;
        match echo.next().await {
            Some(_) => Ok(()),
            None => anyhow::bail!("the connection to NATS closed"),
        }
    };
    tokio::time::timeout(ROUND_TRIP_WAIT, trip)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from NATS within {ROUND_TRIP_WAIT:?}"))?
}

fn cost(record: &Record) -> usize {
    record.payload.get().len() + record.name.len() + 160
}

/// Splits records into runs of at most `budget` bytes; a record larger than that on
/// its own is left out (returned in the second list).
fn chunks(records: Vec<Record>, budget: usize) -> (Vec<Vec<Record>>, Vec<i64>) {
    let (mut out, mut left_out) = (Vec::new(), Vec::new());
    let (mut chunk, mut size) = (Vec::new(), 0);
    for record in records {
        let c = cost(&record);
        if c > budget {
            left_out.push(record.position);
            continue;
        }
        if !chunk.is_empty() && size + c > budget {
            out.push(std::mem::take(&mut chunk));
            size = 0;
        }
        size += c;
        chunk.push(record);
    }
    if !chunk.is_empty() {
        out.push(chunk);
    }
    (out, left_out)
}

impl Bus {
    /// An in-process bus (one node).
    pub fn local() -> Self {
        Self::local_with_max_payload(usize::MAX / 2)
    }

    /// An in-process bus that, like NATS, carries messages of at most `bytes` (for
    /// tests of what the relay does with large batches).
    pub fn local_with_max_payload(bytes: usize) -> Self {
        let (local, _) = broadcast::channel(CAPACITY);
        Self {
            local,
            nats: None,
            local_max_payload: bytes,
        }
    }

    /// A bus over NATS under `prefix` (the nodes of one deployment share it).
    pub async fn nats(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name("synctalk")
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to NATS at {url}: {e}"))?;
        let (local, _) = broadcast::channel(CAPACITY);
        let nats = Arc::new(Nats {
            client,
            prefix: prefix.to_owned(),
            shards: Mutex::new(HashMap::new()),
        });
        let bus = Self {
            local,
            nats: Some(nats.clone()),
            local_max_payload: 0,
        };
        bus.forward(format!("{prefix}.head")).await?;
        Ok(bus)
    }

    /// Subscribes to a subject and hands what arrives to this node's receivers.
    async fn forward(&self, subject: String) -> anyhow::Result<tokio::task::AbortHandle> {
        let mut handles = self.forward_all(vec![subject]).await?;
        handles
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no subscription"))
    }

    /// Subscribes to subjects, then waits for one round trip to the NATS server however
    /// many ([`round_trip`]), and hands what arrives to this node's receivers: what is
    /// published once this returns reaches them. A failure leaves none of them
    /// subscribed.
    async fn forward_all(
        &self,
        subjects: Vec<String>,
    ) -> anyhow::Result<Vec<tokio::task::AbortHandle>> {
        let Some(nats) = &self.nats else {
            anyhow::bail!("not on NATS");
        };
        let mut subscribers = Vec::with_capacity(subjects.len());
        for subject in subjects {
            subscribers.push(
                nats.client
                    .subscribe(subject.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot subscribe to {subject}: {e}"))?,
            );
        }
        if let Err(error) = round_trip(&nats.client).await {
            // Still subscribed, only not known to be yet: a slice missed meanwhile is
            // read from the outbox once its head has waited `SLICE_WAIT` (an ephemeral
            // event is not).
            tracing::warn!(%error, "NATS did not confirm new subscriptions");
        }
        Ok(subscribers
            .into_iter()
            .map(|mut subscriber| {
                let forward = self.local.clone();
                tokio::spawn(async move {
                    while let Some(message) = subscriber.next().await {
                        match serde_json::from_slice::<BusMessage>(&message.payload) {
                            Ok(decoded) => {
                                let _ = forward.send(Arc::new(decoded));
                            }
                            Err(error) => tracing::warn!(%error, "undecodable bus message"),
                        }
                    }
                })
                .abort_handle()
            })
            .collect())
    }

    /// Whether records are routed by shard (NATS), so a node must ask for the shards
    /// it needs.
    pub fn is_routed(&self) -> bool {
        self.nats.is_some()
    }

    /// Starts receiving shards' records, with one round trip to NATS for all those not
    /// received before.
    pub async fn listen(&self, shards: &[u16]) -> anyhow::Result<()> {
        let Some(nats) = &self.nats else {
            return Ok(());
        };
        let new: Vec<u16> = {
            let listened = nats
                .shards
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?;
            let mut new: Vec<u16> = shards
                .iter()
                .copied()
                .filter(|s| !listened.contains_key(s))
                .collect();
            new.sort_unstable();
            new.dedup();
            new
        };
        if new.is_empty() {
            return Ok(());
        }
        let subjects = new
            .iter()
            .map(|shard| format!("{}.s.{shard}", nats.prefix))
            .collect();
        let handles = self.forward_all(subjects).await?;
        let mut listened = nats
            .shards
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        for (shard, handle) in new.into_iter().zip(handles) {
            // Another registration may have subscribed it meanwhile: keep one.
            match listened.entry(shard) {
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert(handle);
                }
                std::collections::hash_map::Entry::Occupied(_) => handle.abort(),
            }
        }
        Ok(())
    }

    /// Stops receiving a shard.
    pub fn unlisten(&self, shard: u16) {
        if let Some(nats) = &self.nats
            && let Ok(mut shards) = nats.shards.lock()
            && let Some(handle) = shards.remove(&shard)
        {
            handle.abort();
        }
    }

    /// The shards this node receives (all, in process: `None`).
    pub fn listening(&self) -> Option<Vec<u16>> {
        let nats = self.nats.as_ref()?;
        Some(
            nats.shards
                .lock()
                .map(|s| s.keys().copied().collect())
                .unwrap_or_default(),
        )
    }

    async fn send(&self, subject: String, message: &BusMessage) {
        let Some(nats) = &self.nats else {
            let _ = self.local.send(Arc::new(message.clone()));
            return;
        };
        match serde_json::to_vec(message) {
            Ok(bytes) => {
                if let Err(error) = nats.client.publish(subject, bytes.into()).await {
                    tracing::warn!(%error, "NATS publish failed");
                }
            }
            Err(error) => tracing::error!(%error, "cannot encode a bus message"),
        }
    }

    /// Publishes published outbox records `prev + 1 ..= last` (the relay), in
    /// messages no larger than the bus carries.
    pub async fn publish_batch(&self, prev: i64, records: Vec<Record>) {
        let Some(last) = records.last().map(|r| r.position) else {
            return;
        };
        let budget = self.max_payload().saturating_sub(4096).max(1024);
        let Some(nats) = &self.nats else {
            // In process: contiguous runs; a record too large is announced by its
            // position only, and read from the outbox.
            let mut from = prev;
            let (runs, _) = chunks(records, budget);
            for run in runs {
                let (first, end) = (run[0].position, run[run.len() - 1].position);
                if first > from + 1 {
                    self.send(
                        String::new(),
                        &BusMessage::Durable {
                            prev: from,
                            last: first - 1,
                            records: Vec::new(),
                        },
                    )
                    .await;
                }
                self.send(
                    String::new(),
                    &BusMessage::Durable {
                        prev: first - 1,
                        last: end,
                        records: run,
                    },
                )
                .await;
                from = end;
            }
            if from < last {
                self.send(
                    String::new(),
                    &BusMessage::Durable {
                        prev: from,
                        last,
                        records: Vec::new(),
                    },
                )
                .await;
            }
            return;
        };
        let mut by_shard: BTreeMap<u16, Vec<Record>> = BTreeMap::new();
        for record in records {
            by_shard
                .entry(shard(&record.topic))
                .or_default()
                .push(record);
        }
        let mut counts = Vec::with_capacity(by_shard.len());
        let mut missing = Vec::new();
        for (s, records) in by_shard {
            let (runs, left_out) = chunks(records, budget);
            missing.extend(left_out);
            let carried: usize = runs.iter().map(Vec::len).sum();
            counts.push((s, u32::try_from(carried).unwrap_or(u32::MAX)));
            for run in runs {
                let subject = format!("{}.s.{s}", nats.prefix);
                self.send(
                    subject,
                    &BusMessage::Slice {
                        shard: s,
                        prev,
                        last,
                        records: run,
                    },
                )
                .await;
            }
        }
        missing.sort_unstable();
        let head = BusMessage::Head {
            prev,
            last,
            counts,
            missing,
        };
        self.send(format!("{}.head", nats.prefix), &head).await;
    }

    /// Publishes an ephemeral event to the nodes that listen to its topics.
    pub async fn publish_ephemeral(&self, event: Ephemeral) {
        let Some(nats) = &self.nats else {
            self.send(String::new(), &BusMessage::Ephemeral(event))
                .await;
            return;
        };
        // Every shard of its topics gets the whole event (a node delivers the first
        // copy to all its listeners of any of the topics, and drops the others).
        let shards: std::collections::BTreeSet<u16> = event.topics.iter().map(shard).collect();
        let message = BusMessage::Ephemeral(event);
        for s in shards {
            self.send(format!("{}.s.{s}", nats.prefix), &message).await;
        }
    }

    /// Publishes a control message to every node.
    pub async fn publish_control(&self, control: Control) {
        let subject = self
            .nats
            .as_ref()
            .map(|n| format!("{}.head", n.prefix))
            .unwrap_or_default();
        self.send(subject, &BusMessage::Control(control)).await;
    }

    /// A receiver of everything this node gets.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BusMessage>> {
        self.local.subscribe()
    }

    /// The largest message the bus carries, in bytes.
    pub fn max_payload(&self) -> usize {
        match &self.nats {
            Some(nats) => nats.client.server_info().max_payload,
            None => self.local_max_payload,
        }
    }

    /// Checks the NATS connection (always fine in process).
    pub fn is_healthy(&self) -> bool {
        match &self.nats {
            Some(nats) => {
                nats.client.connection_state() == async_nats::connection::State::Connected
            }
            None => true,
        }
    }
}
