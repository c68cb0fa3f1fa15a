//! The event bus between nodes: in-process by default, NATS when `NATS_URL` is set.
//! Every node subscribes; what one node (or the relay) publishes reaches them all.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::broadcast;

use crate::event::BusMessage;

/// The bus handle; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    local: broadcast::Sender<Arc<BusMessage>>,
    nats: Option<(async_nats::Client, String)>,
    local_max_payload: usize,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("nats", &self.nats.as_ref().map(|(_, s)| s))
            .finish()
    }
}

const CAPACITY: usize = 4096;

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

    /// A bus over NATS: messages go to `<prefix>.bus`, and what arrives there is
    /// handed to this node's subscribers.
    pub async fn nats(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name("synctalk")
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to NATS at {url}: {e}"))?;
        let subject = format!("{prefix}.bus");
        let mut subscriber = client
            .subscribe(subject.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe to {subject}: {e}"))?;
        client
            .flush()
            .await
            .map_err(|e| anyhow::anyhow!("NATS flush: {e}"))?;
        let (local, _) = broadcast::channel(CAPACITY);
        let forward = local.clone();
        tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                match serde_json::from_slice::<BusMessage>(&message.payload) {
                    Ok(decoded) => {
                        let _ = forward.send(Arc::new(decoded));
                    }
                    Err(error) => tracing::warn!(%error, "undecodable bus message"),
                }
            }
            tracing::warn!("NATS subscription ended");
        });
        Ok(Self {
            local,
            nats: Some((client, subject)),
            local_max_payload: 0,
        })
    }

    /// Whether this bus spans nodes.
    pub fn is_shared(&self) -> bool {
        self.nats.is_some()
    }

    /// Publishes to every node (this one included).
    pub async fn publish(&self, message: BusMessage) {
        match &self.nats {
            Some((client, subject)) => match serde_json::to_vec(&message) {
                Ok(bytes) => {
                    if let Err(error) = client.publish(subject.clone(), bytes.into()).await {
                        tracing::warn!(%error, "NATS publish failed");
                    }
                }
                Err(error) => tracing::error!(%error, "cannot encode a bus message"),
            },
            None => {
                let _ = self.local.send(Arc::new(message));
            }
        }
    }

    /// A receiver of everything published.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BusMessage>> {
        self.local.subscribe()
    }

    /// The largest message the bus carries, in bytes.
    pub fn max_payload(&self) -> usize {
        match &self.nats {
            Some((client, _)) => client.server_info().max_payload,
            None => self.local_max_payload,
        }
    }

    /// Checks the NATS connection (always fine in process).
    pub fn is_healthy(&self) -> bool {
        match &self.nats {
            Some((client, _)) => {
                client.connection_state() == async_nats::connection::State::Connected
            }
            None => true,
        }
    }
}
