//! A socket's outbound queue: what the hub hands a socket, and what the socket task
//! writes. Pushing never waits; a close jumps the queue; ephemeral events are shed
//! first when the queue is half full; a full queue means the client cannot keep up.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::event::Record;
use crate::protocol::CloseCode;

/// One item for the socket.
#[derive(Debug)]
pub enum Outbound {
    /// A frame already rendered (READY, RESUMED, ephemeral events).
    Text(Arc<str>),
    /// A replayable event with this session's sequence number; rendered by the socket
    /// task, so the payload is shared by every socket it goes to.
    Dispatch(Arc<Record>, i64),
}

impl Outbound {
    /// The frame's text.
    pub fn render(&self) -> String {
        match self {
            Outbound::Text(text) => text.to_string(),
            Outbound::Dispatch(record, seq) => record.frame(*seq),
        }
    }
}

#[derive(Default)]
struct Inner {
    items: VecDeque<Outbound>,
    close: Option<(CloseCode, &'static str)>,
    reconnect: bool,
}

/// The queue; shared by the hub (producer) and the socket task (consumer).
pub struct Queue {
    inner: Mutex<Inner>,
    notify: Notify,
    capacity: usize,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// What the socket task gets next.
#[derive(Debug)]
pub enum Next {
    /// A frame to write.
    Frame(Outbound),
    /// Close with this code.
    Close(CloseCode, &'static str),
    /// Send RECONNECT, then close with 4000: the node is going away.
    Reconnect,
}

impl Queue {
    /// A queue that counts as full at `capacity` items.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            capacity: capacity.max(2),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a replayable event; `false` when the queue is full (the caller closes the
    /// socket, whose session stays resumable).
    #[must_use]
    pub fn push(&self, item: Outbound) -> bool {
        let mut inner = self.lock();
        if inner.close.is_some() {
            return true;
        }
        if inner.items.len() >= self.capacity {
            return false;
        }
        inner.items.push_back(item);
        drop(inner);
        self.notify.notify_one();
        true
    }

    /// Queues an ephemeral event, unless the queue is half full (it is then dropped:
    /// it would be stale by the time it is read anyway).
    pub fn push_ephemeral(&self, text: Arc<str>) {
        let mut inner = self.lock();
        if inner.close.is_some() || inner.items.len() >= self.capacity / 2 {
            metrics::counter!("gateway_ephemeral_shed_total").increment(1);
            return;
        }
        inner.items.push_back(Outbound::Text(text));
        drop(inner);
        self.notify.notify_one();
    }

    /// Queues frames whatever the capacity (READY and a replay, which are bounded by
    /// the replay limit).
    pub fn push_all(&self, items: impl IntoIterator<Item = Outbound>) {
        let mut inner = self.lock();
        inner.items.extend(items);
        drop(inner);
        self.notify.notify_one();
    }

    /// Asks the socket to close; this overtakes whatever is queued.
    pub fn close(&self, code: CloseCode, reason: &'static str) {
        let mut inner = self.lock();
        if inner.close.is_none() {
            inner.close = Some((code, reason));
        }
        inner.items.clear();
        drop(inner);
        self.notify.notify_one();
    }

    /// Asks the socket to send RECONNECT and close (graceful shutdown).
    pub fn reconnect(&self) {
        self.lock().reconnect = true;
        self.close(CloseCode::UnknownError, "server restarting; resume");
    }

    /// Whether a close was asked for.
    pub fn is_closing(&self) -> bool {
        self.lock().close.is_some()
    }

    /// Waits for the next thing to do.
    pub async fn next(&self) -> Next {
        loop {
            {
                let mut inner = self.lock();
                if inner.reconnect {
                    inner.reconnect = false;
                    return Next::Reconnect;
                }
                if let Some((code, reason)) = inner.close {
                    return Next::Close(code, reason);
                }
                if let Some(item) = inner.items.pop_front() {
                    if inner.items.capacity() > 64 && inner.items.len() < inner.items.capacity() / 4
                    {
                        inner.items.shrink_to_fit();
                    }
                    return Next::Frame(item);
                }
            }
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Outbound {
        Outbound::Text(Arc::from(s))
    }

    #[tokio::test]
    async fn full_queues_refuse_sheds_ephemerals_first_and_close_overtakes() {
        let queue = Queue::new(4);
        assert!(queue.push(text("a")));
        assert!(queue.push(text("b")));
        // Half full: ephemeral events are dropped, replayable ones still fit.
        queue.push_ephemeral(Arc::from("typing"));
        assert!(queue.push(text("c")));
        assert!(queue.push(text("d")));
        assert!(!queue.push(text("e")), "a full queue refuses");
        match queue.next().await {
            Next::Frame(item) => assert_eq!(item.render(), "a"),
            other => panic!("{other:?}"),
        }
        queue.close(CloseCode::AuthenticationFailed, "session ended");
        assert!(matches!(
            queue.next().await,
            Next::Close(CloseCode::AuthenticationFailed, _)
        ));
    }
}
