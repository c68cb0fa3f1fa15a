//! A socket's outbound queue: what the hub hands a socket, written by the socket's
//! response body itself (an actix-ws [`Feed`]: no task, channel or copy per frame in
//! between; an event's envelope is written around its shared payload, never rendered
//! per socket). Pushing never waits; a close jumps the queue (the socket task sends
//! it); ephemeral events are shed first when the queue is half full; a full queue, or
//! items the socket has not taken within the write timeout, mean the client cannot keep
//! up (see `Hub::close_stalled`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::Instant;

use actix_ws::{Feed, FeedOut};
use tokio::sync::Notify;

use crate::event::Record;
use crate::protocol::CloseCode;

/// One item for the socket.
#[derive(Debug)]
pub enum Outbound {
    /// A frame already rendered (READY, RESUMED, ephemeral events).
    Text(Arc<str>),
    /// A replayable event with this session's sequence number; written around the
    /// payload every socket it goes to shares.
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

    /// Writes the frame (the same text as [`Outbound::render`]).
    fn write(&self, out: &mut FeedOut<'_>) {
        match self {
            Outbound::Text(text) => out.text(&[text.as_bytes()]),
            Outbound::Dispatch(record, seq) => {
                let mut digits = [0u8; 20];
                out.text(&[
                    br#"{"op":0,"t":""#,
                    record.name.as_bytes(),
                    br#"","s":"#,
                    decimal(*seq, &mut digits),
                    br#","d":"#,
                    record.payload.get().as_bytes(),
                    b"}",
                ]);
            }
        }
    }
}

/// `n` in decimal, written into the end of `buf`.
fn decimal(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let negative = n < 0;
    let mut n = n.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

#[derive(Default)]
struct Inner {
    items: VecDeque<Outbound>,
    close: Option<(CloseCode, &'static str)>,
    reconnect: bool,
    /// The response body, waiting for items.
    body: Option<Waker>,
    /// Since when items wait that the body has not taken (it takes none while the
    /// client does not read: its writes cannot finish).
    waiting_since: Option<Instant>,
    /// The socket task is answering a REQUEST: events wait until its RESPONSE is sent
    /// (a client gets the answer before the events the command caused).
    held: bool,
    /// The socket is ending: nothing more is written from the queue.
    stopped: bool,
}

impl Inner {
    /// After a push: the body's waker, to wake once the lock is released.
    fn pushed(&mut self) -> Option<Waker> {
        if self.waiting_since.is_none() && !self.items.is_empty() {
            self.waiting_since = Some(Instant::now());
        }
        self.body.take()
    }
}

/// The queue; shared by the hub (producer), the socket's response body (which writes
/// its frames) and the socket task (which sends the closes).
pub struct Queue {
    inner: Mutex<Inner>,
    notify: Notify,
    capacity: usize,
    /// The liveness of the thread that runs the socket, when known.
    worker: Option<Arc<WorkerBeat>>,
}

/// When a thread (an HTTP worker) last ran its tasks: a queue whose socket's thread
/// has not run lately is not stalled by its client, whatever waits in it.
#[derive(Debug)]
pub struct WorkerBeat {
    started: Instant,
    /// Milliseconds from `started` to the last beat.
    last: std::sync::atomic::AtomicU64,
}

/// How often a worker beats; a beat older than three of these means the worker is not
/// running its tasks.
const BEAT: std::time::Duration = std::time::Duration::from_millis(500);

impl WorkerBeat {
    fn beat(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the worker ran its tasks within the last three beats.
    fn is_running(&self) -> bool {
        let last =
            std::time::Duration::from_millis(self.last.load(std::sync::atomic::Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last) <= BEAT * 3
    }

    /// The calling thread's beat, started (a task on the thread's local task set) on
    /// first use. Call it on an actix worker.
    pub fn current() -> Arc<WorkerBeat> {
        thread_local! {
            static CURRENT: std::cell::OnceCell<Arc<WorkerBeat>> = const { std::cell::OnceCell::new() };
        }
        CURRENT.with(|current| {
            current
                .get_or_init(|| {
                    let beat = Arc::new(WorkerBeat {
                        started: Instant::now(),
                        last: std::sync::atomic::AtomicU64::new(0),
                    });
                    let weak = Arc::downgrade(&beat);
                    actix_web::rt::spawn(async move {
                        let mut tick = tokio::time::interval(BEAT);
                        loop {
                            tick.tick().await;
                            match weak.upgrade() {
                                Some(beat) => beat.beat(),
                                None => break,
                            }
                        }
                    });
                    beat
                })
                .clone()
        })
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// What the socket task must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Close with this code.
    Close(CloseCode, &'static str),
    /// Send RECONNECT, then close with 4000: the node is going away.
    Reconnect,
}

impl Queue {
    /// A queue that counts as full at `capacity` items.
    pub fn new(capacity: usize) -> Arc<Self> {
        Self::on(capacity, None)
    }

    /// A queue whose socket runs on the thread `worker` beats for.
    pub fn on(capacity: usize, worker: Option<Arc<WorkerBeat>>) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            capacity: capacity.max(2),
            worker,
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
        let body = inner.pushed();
        drop(inner);
        if let Some(body) = body {
            body.wake();
        }
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
        let body = inner.pushed();
        drop(inner);
        if let Some(body) = body {
            body.wake();
        }
    }

    /// Queues frames whatever the capacity (READY and a replay, which are bounded by
    /// the replay limit).
    pub fn push_all(&self, items: impl IntoIterator<Item = Outbound>) {
        let mut inner = self.lock();
        inner.items.extend(items);
        let body = inner.pushed();
        drop(inner);
        if let Some(body) = body {
            body.wake();
        }
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
        let mut inner = self.lock();
        inner.reconnect = true;
        if inner.close.is_none() {
            inner.close = Some((CloseCode::UnknownError, "server restarting; resume"));
        }
        inner.items.clear();
        drop(inner);
        self.notify.notify_one();
    }

    /// Holds the queued events back (while the socket task answers a REQUEST).
    pub fn hold(&self) {
        self.lock().held = true;
    }

    /// Lets the queued events go again.
    pub fn release(&self) {
        let mut inner = self.lock();
        inner.held = false;
        let body = inner.body.take();
        drop(inner);
        if let Some(body) = body {
            body.wake();
        }
    }

    /// Writes nothing more from the queue: the socket is ending (its task sends the
    /// close next, which nothing queued may follow).
    pub fn stop(&self) {
        let mut inner = self.lock();
        inner.stopped = true;
        inner.items.clear();
    }

    /// Whether a close was asked for.
    pub fn is_closing(&self) -> bool {
        self.lock().close.is_some()
    }

    /// Whether queued items have waited since `cutoff` or earlier without the socket
    /// taking any: its client stopped reading (not while they are held back, nor while
    /// the socket's own thread is not running its tasks).
    pub fn is_stalled(&self, cutoff: Instant) -> bool {
        let inner = self.lock();
        inner.close.is_none()
            && !inner.held
            && !inner.stopped
            && inner.waiting_since.is_some_and(|t| t <= cutoff)
            && self.worker.as_ref().is_none_or(|w| w.is_running())
    }

    /// Waits until the socket must close (or reconnect).
    pub async fn control(&self) -> Control {
        loop {
            {
                let inner = self.lock();
                if inner.reconnect {
                    return Control::Reconnect;
                }
                if let Some((code, reason)) = inner.close {
                    return Control::Close(code, reason);
                }
            }
            self.notify.notified().await;
        }
    }

    /// Writes the queued frames through `out` (until it is full); with none left,
    /// keeps `cx`'s waker for the next push. Nothing once a close was asked for (the
    /// socket task sends the close).
    fn feed(&self, cx: &mut Context<'_>, out: &mut FeedOut<'_>) {
        let mut inner = self.lock();
        if inner.close.is_some() || inner.reconnect || inner.stopped {
            return;
        }
        if inner.held {
            inner.body = Some(cx.waker().clone());
            return;
        }
        while !out.is_full() {
            match inner.items.pop_front() {
                Some(item) => item.write(out),
                None => break,
            }
        }
        inner.waiting_since = (!inner.items.is_empty()).then(Instant::now);
        if inner.items.is_empty() {
            if inner.items.capacity() > 64 {
                inner.items.shrink_to_fit();
            }
            match &inner.body {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => inner.body = Some(cx.waker().clone()),
            }
        } else {
            // Full: the body comes back for more once the buffer is written out.
            cx.waker().wake_by_ref();
        }
    }
}

/// The queue as the response body's source of frames.
pub struct QueueFeed(pub Arc<Queue>);

impl Feed for QueueFeed {
    fn poll_feed(&mut self, cx: &mut Context<'_>, out: &mut FeedOut<'_>) {
        self.0.feed(cx, out);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use actix_web::web::BytesMut;
    use futures_util::task::ArcWake;
    use serde_json::value::RawValue;

    use super::*;
    use crate::event::Kind;
    use crate::topic::{Domain, Topic};

    fn text(s: &str) -> Outbound {
        Outbound::Text(Arc::from(s))
    }

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl ArcWake for Wakes {
        fn wake_by_ref(this: &Arc<Self>) {
            this.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The frames `queue` writes now, as (first byte, text).
    fn fed(queue: &Queue, wakes: &Arc<Wakes>) -> Vec<(u8, String)> {
        let waker = futures_util::task::waker(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut buf = BytesMut::new();
        queue.feed(&mut cx, &mut FeedOut::new(&mut buf));
        let mut frames = Vec::new();
        let mut at = 0;
        while at < buf.len() {
            let (len, header) = match buf[at + 1] {
                126 => (
                    usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])),
                    4,
                ),
                127 => panic!("no frame here is that long"),
                short => (usize::from(short), 2),
            };
            let body = &buf[at + header..at + header + len];
            frames.push((buf[at], String::from_utf8(body.to_vec()).unwrap()));
            at += header + len;
        }
        frames
    }

    #[test]
    fn full_queues_refuse_sheds_ephemerals_first_and_close_overtakes() {
        let wakes = Arc::new(Wakes::default());
        let queue = Queue::new(4);
        assert!(queue.push(text("a")));
        assert!(queue.push(text("b")));
        // Half full: ephemeral events are dropped, replayable ones still fit.
        queue.push_ephemeral(Arc::from("typing"));
        assert!(queue.push(text("c")));
        assert!(queue.push(text("d")));
        assert!(!queue.push(text("e")), "a full queue refuses");
        let frames: Vec<String> = fed(&queue, &wakes).into_iter().map(|f| f.1).collect();
        assert_eq!(frames, ["a", "b", "c", "d"]);
        // Drained, the body waits: the next push wakes it, once.
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        assert!(queue.push(text("f")));
        assert!(queue.push(text("g")));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        queue.close(CloseCode::AuthenticationFailed, "session ended");
        assert!(
            fed(&queue, &wakes).is_empty(),
            "a close overtakes what is queued"
        );
        assert!(!queue.push(text("h")) || fed(&queue, &wakes).is_empty());
        let control = futures_util::FutureExt::now_or_never(queue.control());
        assert_eq!(
            control,
            Some(Control::Close(
                CloseCode::AuthenticationFailed,
                "session ended"
            ))
        );
    }

    #[test]
    fn held_events_wait_for_the_release_and_nothing_follows_a_stop_or_a_reconnect() {
        let wakes = Arc::new(Wakes::default());
        let queue = Queue::new(8);
        queue.hold();
        assert!(queue.push(text("event")));
        assert!(
            fed(&queue, &wakes).is_empty(),
            "held while a REQUEST is answered"
        );
        let before = wakes.0.load(Ordering::SeqCst);
        queue.release();
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            before + 1,
            "the release wakes the body"
        );
        assert_eq!(fed(&queue, &wakes), [(0x81, "event".to_owned())]);

        assert!(queue.push(text("late")));
        queue.stop();
        assert!(queue.push(text("later")));
        assert!(
            fed(&queue, &wakes).is_empty(),
            "nothing after the socket ended"
        );

        let queue = Queue::new(8);
        assert!(queue.push(text("queued")));
        queue.reconnect();
        assert!(fed(&queue, &wakes).is_empty());
        for _ in 0..2 {
            let control = futures_util::FutureExt::now_or_never(queue.control());
            assert_eq!(control, Some(Control::Reconnect), "it stays asked for");
        }
        assert!(fed(&queue, &wakes).is_empty());
    }

    #[test]
    fn items_untaken_since_the_cutoff_are_stalled_unless_held_or_taken() {
        let wakes = Arc::new(Wakes::default());
        let queue = Queue::new(8);
        let before = Instant::now();
        assert!(!queue.is_stalled(Instant::now()), "nothing queued");
        assert!(queue.push(text("a")));
        assert!(!queue.is_stalled(before), "queued after the cutoff");
        assert!(queue.is_stalled(Instant::now()));
        queue.hold();
        assert!(!queue.is_stalled(Instant::now()), "held back, not stalled");
        queue.release();
        assert_eq!(fed(&queue, &wakes).len(), 1);
        assert!(!queue.is_stalled(Instant::now()), "taken");
        assert!(queue.push(text("b")));
        queue.close(CloseCode::UnknownError, "too slow; resume to continue");
        assert!(!queue.is_stalled(Instant::now()), "already closing");
    }

    #[test]
    fn a_queue_whose_thread_does_not_run_is_not_stalled_by_its_client() {
        let started = Instant::now()
            .checked_sub(BEAT * 10)
            .expect("the clock reaches back");
        let worker = Arc::new(WorkerBeat {
            started,
            last: std::sync::atomic::AtomicU64::new(0),
        });
        let queue = Queue::on(8, Some(worker.clone()));
        assert!(queue.push(text("a")));
        assert!(
            !queue.is_stalled(Instant::now()),
            "its thread has not beaten for ten beats"
        );
        worker.beat();
        assert!(queue.is_stalled(Instant::now()), "its thread runs");
    }

    #[test]
    fn an_event_is_written_as_the_text_it_renders_to() {
        let wakes = Arc::new(Wakes::default());
        let long = format!(r#"{{"content":"{}"}}"#, "x".repeat(300));
        let record = |payload: &str| {
            Arc::new(Record {
                id: 1,
                position: 1,
                topic: Topic::User(synctalk_kernel::UserId(uuid::Uuid::nil())),
                kind: Kind::Event,
                domain: Domain::Users,
                name: Arc::from("MESSAGE_CREATE"),
                payload: RawValue::from_string(payload.to_owned()).unwrap(),
            })
        };
        let queue = Queue::new(8);
        let items = [
            Outbound::Dispatch(record(r#"{"id":"1"}"#), 7),
            Outbound::Dispatch(record(&long), 1_234_567_890_123),
            Outbound::Dispatch(record("{}"), 0),
        ];
        let expected: Vec<(u8, String)> = items.iter().map(|i| (0x81, i.render())).collect();
        assert_eq!(
            expected[0].1,
            r#"{"op":0,"t":"MESSAGE_CREATE","s":7,"d":{"id":"1"}}"#
        );
        queue.push_all(items);
        assert_eq!(fed(&queue, &wakes), expected);
    }
}
