//! `synctalk-load messages`: messages fanned out to a channel's members, against
//! SyncTalk or the bare broadcast server (`synctalk-bare`), with the same parameters.
//!
//! Every member has one socket: on SyncTalk `/gateway/messaging` (IDENTIFY, READY),
//! on the bare server `/ws`. A message is sent open loop, at its due time whatever the
//! server's pace: on SyncTalk `POST /api/v1/channels/{id}/messages` (persisted, then
//! fanned out through the outbox), on the bare server a text frame from the first
//! member's socket (which the server sends to every socket), padded to `--frame-bytes`
//! (the bench recipe passes the size of SyncTalk's MESSAGE_CREATE frames). Each message
//! carries `bench#<seq>#`; a socket finds it in the frame's bytes (no JSON parsing, so
//! the load tool costs the same per frame for both servers). Latencies run from the
//! message's due time.
//!
//! Phases, each with its own member sockets (opened, measured, closed):
//! - `small`: `--small-rate` messages/s into a channel of `--small-members` for
//!   `--small-seconds`: send to delivered-to-every-member p99.
//! - `fanout`: a channel of `--fanout-members`, one step per rate of `--fanout-rates`
//!   (`--step-seconds` each, then drained): deliveries per CPU-second of the server
//!   processes (`--server-pid`), beside the CPU of `--side-pid` processes and their
//!   children (PostgreSQL, NATS), and the time each set's threads waited, runnable, for
//!   a CPU; the steps stop after the first whose per-delivery p99 exceeds
//!   `--fanout-p99-ms`.
//! - `big`: `--big-messages` messages, one at a time, into a channel of
//!   `--big-members`: how long until the last member has each.
//!
//! On SyncTalk the phases use guilds of the first N registered users (one per phase,
//! made by user 0). Every loop is bounded in count and time; it only talks to the URLs
//! given (loopback in the bench recipe).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::resume::{Socket, connect, next_json, send};
use crate::{Account, emit, latency_ms, micros, register_user};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    Synctalk,
    Bare,
}

#[derive(Debug, clap::Args)]
pub(crate) struct MessagesArgs {
    /// The server under test.
    #[arg(long, value_enum, default_value = "synctalk")]
    target: Target,
    /// Base URLs (`http://127.0.0.1:8080`); sockets and sends are spread over them.
    #[arg(long, required = true, num_args = 1..)]
    url: Vec<String>,
    /// PIDs of the server processes: their CPU time is what deliveries are divided by.
    #[arg(long, num_args = 0..)]
    server_pid: Vec<u32>,
    /// PIDs whose CPU time, with their children's, is reported beside (PostgreSQL's
    /// postmaster, nats-server).
    #[arg(long, num_args = 0..)]
    side_pid: Vec<u32>,
    /// Phases to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "small,fanout,big")]
    phases: Vec<String>,
    #[arg(long, default_value_t = 100)]
    small_members: usize,
    /// Messages per second in the small phase.
    #[arg(long, default_value_t = 100)]
    small_rate: u64,
    #[arg(long, default_value_t = 20)]
    small_seconds: u64,
    #[arg(long, default_value_t = 1000)]
    fanout_members: usize,
    /// Messages per second of each fan-out step.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "25,50,75,100,150,200,300,400,600"
    )]
    fanout_rates: Vec<u64>,
    #[arg(long, default_value_t = 10)]
    step_seconds: u64,
    /// The per-delivery p99 a fan-out step must keep to count.
    #[arg(long, default_value_t = 100.0)]
    fanout_p99_ms: f64,
    #[arg(long, default_value_t = 10_000)]
    big_members: usize,
    #[arg(long, default_value_t = 30)]
    big_messages: usize,
    /// Milliseconds between the last member having one big message and the next send.
    #[arg(long, default_value_t = 500)]
    big_gap_ms: u64,
    /// Sockets opened per second.
    #[arg(long, default_value_t = 1000)]
    socket_rate: u64,
    /// Registrations and joins in flight at once during set-up.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds between the last socket up and the first message of a phase.
    #[arg(long, default_value_t = 3)]
    settle: u64,
    /// Bare server: the size of each text frame, in bytes.
    #[arg(long, default_value_t = 600)]
    frame_bytes: usize,
    /// Request, socket and drain timeout, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Unique prefix for the usernames this run registers.
    #[arg(long, default_value = "messages")]
    prefix: String,
    /// Write the JSON results here.
    #[arg(long)]
    out: Option<String>,
}

const MARK: &[u8] = b"bench#";

/// One message on its way to every member socket.
struct Track {
    due: Instant,
    got: usize,
    last: Instant,
}

/// What the sockets saw, shared by every socket task (one thread).
struct Book {
    tracks: HashMap<u64, Track>,
    per_delivery: Histogram<u64>,
    frames: u64,
    frame_bytes: u64,
}

impl Book {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            tracks: HashMap::new(),
            per_delivery: Histogram::new_with_bounds(1, 600_000_000, 3)?,
            frames: 0,
            frame_bytes: 0,
        })
    }

    fn saw(&mut self, text: &[u8]) {
        let Some(at) = memchr::memmem::find(text, MARK) else {
            return;
        };
        let digits = &text[at + MARK.len()..];
        let end = digits.iter().position(|b| !b.is_ascii_digit()).unwrap_or(0);
        let Some(seq) = std::str::from_utf8(&digits[..end])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return;
        };
        let now = Instant::now();
        self.frames += 1;
        self.frame_bytes += text.len() as u64;
        if let Some(track) = self.tracks.get_mut(&seq) {
            track.got += 1;
            track.last = now;
            let _ = self.per_delivery.record(micros(now - track.due));
        }
    }
}

/// CPU time of processes, in seconds: the user and system time of each from
/// `/proc/<pid>/stat` (all its threads, those that ended included) and, with `reaped`,
/// of the children it has waited for (PostgreSQL's ended backends and workers).
fn cpu_seconds(pids: &[u32], reaped: bool) -> f64 {
    // /proc counts in USER_HZ, which Linux fixes at 100.
    const TICKS: f64 = 100.0;
    let mut ticks: u64 = 0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        // After the name: state, ppid, ... utime (12th), stime, cutime, cstime.
        let fields: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(4)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let take = if reaped { 4 } else { 2 };
        ticks += fields.iter().take(take).sum::<u64>();
    }
    ticks as f64 / TICKS
}

/// The pids given and their children (PostgreSQL's backends, say).
fn with_children(pids: &[u32]) -> Vec<u32> {
    let mut all = pids.to_vec();
    if pids.is_empty() {
        return all;
    }
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid.is_some_and(|p| pids.contains(&p)) {
            all.push(pid);
        }
    }
    all
}

/// CPU seconds of the server processes and of the side processes, read at once.
fn cpu_now(args: &MessagesArgs) -> (f64, f64) {
    (
        cpu_seconds(&args.server_pid, false),
        cpu_seconds(&with_children(&args.side_pid), true),
    )
}

/// Seconds the threads of processes spent runnable but waiting for a CPU: the second
/// field of `/proc/<pid>/task/<tid>/schedstat` summed over the threads alive now (a
/// thread that ended takes its count with it). On one shared core this is the queueing
/// the processes impose on each other, which CPU time does not show.
fn runqueue_wait_seconds(pids: &[u32]) -> f64 {
    let mut nanos: u64 = 0;
    for pid in pids {
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            nanos += stat
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    nanos as f64 / 1e9
}

/// Run-queue waits of the server processes and of the side processes, read at once.
fn wait_now(args: &MessagesArgs) -> (f64, f64) {
    (
        runqueue_wait_seconds(&args.server_pid),
        runqueue_wait_seconds(&with_children(&args.side_pid)),
    )
}

/// What a phase set up on SyncTalk: a channel whose members are the first `members`
/// accounts.
struct Room {
    members: usize,
    channel_id: String,
}

struct Run {
    args: MessagesArgs,
    accounts: Vec<Account>,
    client: awc::Client,
    book: Rc<RefCell<Book>>,
    next_seq: Cell<u64>,
    send_errors: Cell<u64>,
    /// SyncTalk: from a send's due time to its response.
    responses: RefCell<Histogram<u64>>,
    error_samples: RefCell<Vec<String>>,
}

/// The member sockets of one phase.
struct Members {
    up: usize,
    failed: usize,
    stop: tokio::sync::watch::Sender<bool>,
    /// Bare server: frames for the first socket to send.
    outbound: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    tasks: Vec<actix_web::rt::task::JoinHandle<()>>,
}

impl Members {
    async fn close(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = actix_web::rt::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Run {
    fn base(&self, i: usize) -> &str {
        &self.args.url[i % self.args.url.len()]
    }

    async fn post(&self, url: String, token: &str, body: &Value) -> anyhow::Result<Value> {
        // A connection that could not be made (the request never left) is tried again,
        // twice at most: one failed connect would otherwise cost a whole step its
        // figure. Anything later is not (a send is not idempotent without a nonce).
        let mut attempt = 0;
        let mut res = loop {
            attempt += 1;
            match self
                .client
                .post(url.as_str())
                .bearer_auth(token)
                .send_json(body)
                .await
            {
                Ok(res) => break res,
                Err(awc::error::SendRequestError::Connect(e)) if attempt < 3 => {
                    eprintln!("connect failed ({e}); trying again");
                    actix_web::rt::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => return Err(anyhow::anyhow!("{e}")),
            }
        };
        let status = res.status();
        let body: Value = res.json().limit(1 << 20).await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "{status}: {body}");
        Ok(body)
    }

    /// A guild of the first `members` accounts, and its text channel.
    async fn room(&self, members: usize) -> anyhow::Result<Room> {
        let owner = &self.accounts[0].access_token;
        let base = self.base(0);
        let guild = self
            .post(
                format!("{base}/api/v1/guilds"),
                owner,
                &json!({"name": format!("Fan-out {members}")}),
            )
            .await?;
        let guild_id = guild["id"].as_str().unwrap_or_default().to_owned();
        let invite = self
            .post(
                format!("{base}/api/v1/guilds/{guild_id}/invites"),
                owner,
                &json!({"max_age_secs": 0}),
            )
            .await?;
        let code = invite["code"].as_str().unwrap_or_default().to_owned();
        let joined: Vec<anyhow::Result<Value>> =
            futures_util::stream::iter(self.accounts[1..members].iter().enumerate())
                .map(|(i, a)| {
                    let url = format!("{}/api/v1/invites/{code}", self.base(i));
                    async move { self.post(url, &a.access_token, &json!({})).await }
                })
                .buffer_unordered(self.args.concurrency)
                .collect()
                .await;
        let failed = joined.iter().filter(|r| r.is_err()).count();
        anyhow::ensure!(failed == 0, "{failed} joins failed");
        let mut res = self
            .client
            .get(format!("{base}/api/v1/guilds/{guild_id}/channels"))
            .bearer_auth(owner)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let channels: Value = res
            .json()
            .limit(1 << 20)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let channel_id = channels
            .as_array()
            .and_then(|list| list.iter().find(|c| c["name"] == "general"))
            .and_then(|c| c["id"].as_str())
            .ok_or_else(|| anyhow::anyhow!("no general channel: {channels}"))?
            .to_owned();
        Ok(Room {
            members,
            channel_id,
        })
    }

    /// Opens `members` sockets at `--socket-rate` and waits until they are up.
    async fn open_members(&self, members: usize) -> Members {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let up = Rc::new(Cell::new(0usize));
        let failed = Rc::new(Cell::new(0usize));
        let timeout = Duration::from_secs(self.args.timeout);
        let opening = Instant::now();
        let mut tasks = Vec::with_capacity(members);
        let mut outbound = None;
        for i in 0..members {
            let due = opening
                + Duration::from_micros(1_000_000 * i as u64 / self.args.socket_rate.max(1));
            let ws = self.base(i).replacen("http", "ws", 1);
            let (url, token) = match self.args.target {
                Target::Synctalk => (
                    format!("{ws}/gateway/messaging"),
                    Some(self.accounts[i].access_token.clone()),
                ),
                Target::Bare => (format!("{ws}/ws"), None),
            };
            let frames = if i == 0 && self.args.target == Target::Bare {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                outbound = Some(tx);
                Some(rx)
            } else {
                None
            };
            let (book, up, failed, mut stopped) = (
                self.book.clone(),
                up.clone(),
                failed.clone(),
                stopped.clone(),
            );
            tasks.push(actix_web::rt::spawn(async move {
                actix_web::rt::time::sleep_until(due.into()).await;
                let Ok(Ok(socket)) =
                    actix_web::rt::time::timeout(timeout, join(&url, token.as_deref(), timeout))
                        .await
                else {
                    failed.set(failed.get() + 1);
                    return;
                };
                up.set(up.get() + 1);
                member(socket, token.is_some(), frames, &book, &mut stopped).await;
            }));
        }
        let deadline = Instant::now()
            + timeout
            + Duration::from_secs(members as u64 / self.args.socket_rate.max(1));
        while up.get() + failed.get() < members && Instant::now() < deadline {
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "{} of {members} sockets up in {:.1} s",
            up.get(),
            opening.elapsed().as_secs_f64()
        );
        actix_web::rt::time::sleep(Duration::from_secs(self.args.settle)).await;
        Members {
            up: up.get(),
            failed: failed.get(),
            stop,
            outbound,
            tasks,
        }
    }

    /// Sends message `seq` (tracked from `due`), without waiting for the server.
    fn send(self: &Rc<Self>, room: &Room, members: &Members, due: Instant) -> u64 {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        self.book.borrow_mut().tracks.insert(
            seq,
            Track {
                due,
                got: 0,
                last: due,
            },
        );
        match self.args.target {
            Target::Bare => {
                let head = format!(
                    r#"{{"op":0,"t":"MESSAGE_CREATE","s":null,"d":{{"content":"bench#{seq}#"#
                );
                let pad = self.args.frame_bytes.saturating_sub(head.len() + 4);
                let frame = format!("{head}{}\"}}}}", "x".repeat(pad));
                if let Some(tx) = &members.outbound {
                    let _ = tx.send(frame);
                }
            }
            Target::Synctalk => {
                let this = self.clone();
                let url = format!(
                    "{}/api/v1/channels/{}/messages",
                    self.base(seq as usize),
                    room.channel_id
                );
                actix_web::rt::spawn(async move {
                    let token = &this.accounts[0].access_token;
                    let body = json!({"content": format!("bench#{seq}# message {seq}")});
                    let sent = this.post(url, token, &body).await;
                    let _ = this.responses.borrow_mut().record(micros(due.elapsed()));
                    if let Err(e) = sent {
                        this.send_errors.set(this.send_errors.get() + 1);
                        let mut samples = this.error_samples.borrow_mut();
                        if samples.len() < 5 {
                            samples.push(e.to_string());
                        }
                    }
                });
            }
        }
        seq
    }

    /// Waits until every message in `seqs` reached `sockets` sockets (or the timeout).
    async fn drain(&self, seqs: &std::ops::Range<u64>, sockets: usize) {
        let deadline = Instant::now() + Duration::from_secs(self.args.timeout);
        while Instant::now() < deadline {
            let done = {
                let book = self.book.borrow();
                seqs.clone()
                    .all(|s| book.tracks.get(&s).is_some_and(|t| t.got >= sockets))
            };
            if done {
                return;
            }
            actix_web::rt::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Sends at `rate` for `seconds` (open loop), drains, and reports.
    async fn step(
        self: &Rc<Self>,
        room: &Room,
        members: &Members,
        rate: u64,
        seconds: u64,
    ) -> anyhow::Result<Value> {
        self.book.borrow_mut().per_delivery.reset();
        self.responses.borrow_mut().reset();
        let errors_before = self.send_errors.get();
        let (cpu0, side0) = cpu_now(&self.args);
        let (wait0, side_wait0) = wait_now(&self.args);
        let begun = Instant::now();
        let count = rate * seconds;
        let first = self.next_seq.get();
        for i in 0..count {
            let due = begun + Duration::from_micros(1_000_000 * i / rate.max(1));
            actix_web::rt::time::sleep_until(due.into()).await;
            self.send(room, members, due);
        }
        let seqs = first..self.next_seq.get();
        self.drain(&seqs, members.up).await;
        let elapsed = begun.elapsed().as_secs_f64();
        let (cpu1, side1) = cpu_now(&self.args);
        let (wait1, side_wait1) = wait_now(&self.args);
        let mut book = self.book.borrow_mut();
        let mut to_last = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
        let (mut deliveries, mut complete) = (0usize, 0u64);
        for seq in seqs.clone() {
            if let Some(t) = book.tracks.remove(&seq) {
                deliveries += t.got;
                if t.got >= members.up {
                    complete += 1;
                    let _ = to_last.record(micros(t.last - t.due));
                }
            }
        }
        let (cpu, side) = (cpu1 - cpu0, side1 - side0);
        Ok(json!({
            "rate": rate,
            "messages": count,
            "send_errors": self.send_errors.get() - errors_before,
            "sockets": members.up,
            "deliveries": deliveries,
            "expected": count as usize * members.up,
            "messages_at_every_socket": complete,
            "per_delivery_ms": latency_ms(&book.per_delivery),
            "send_response_ms": latency_ms(&self.responses.borrow()),
            "to_last_member_ms": latency_ms(&to_last),
            "seconds": elapsed,
            "server_cpu_seconds": cpu,
            "side_cpu_seconds": side,
            "server_runqueue_wait_seconds": wait1 - wait0,
            "side_runqueue_wait_seconds": side_wait1 - side_wait0,
            // No figure rather than a wrong one when no server CPU was read.
            "deliveries_per_server_cpu_second": (cpu > 0.0).then(|| deliveries as f64 / cpu),
            "deliveries_per_cpu_second_with_side": (cpu > 0.0).then(|| deliveries as f64 / (cpu + side)),
        }))
    }
}

/// Connects and, on SyncTalk, identifies (HELLO, IDENTIFY, READY).
async fn join(url: &str, token: Option<&str>, timeout: Duration) -> anyhow::Result<Socket> {
    let mut socket = connect(url, timeout).await?;
    if let Some(token) = token {
        let hello = next_json(&mut socket).await?;
        anyhow::ensure!(hello["op"] == 10, "expected HELLO, got {hello}");
        send(&mut socket, json!({"op": 2, "d": {"token": token}})).await?;
        loop {
            let frame = next_json(&mut socket).await?;
            anyhow::ensure!(frame["op"] != 9, "IDENTIFY refused: {frame}");
            if frame["t"] == "READY" {
                break;
            }
        }
    }
    Ok(socket)
}

/// A member socket: books every marked frame until told to stop; heartbeats on SyncTalk;
/// sends `outbound` frames (the bare server's sender).
async fn member(
    mut socket: Socket,
    heartbeats: bool,
    mut outbound: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
    book: &RefCell<Book>,
    stopped: &mut tokio::sync::watch::Receiver<bool>,
) {
    let mut beat = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::select! {
            frame = socket.next() => match frame {
                Some(Ok(awc::ws::Frame::Text(text))) => book.borrow_mut().saw(&text),
                Some(Ok(awc::ws::Frame::Ping(bytes))) => {
                    if socket.send(awc::ws::Message::Pong(bytes)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(awc::ws::Frame::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            Some(text) = async { match outbound.as_mut() { Some(rx) => rx.recv().await, None => None } } => {
                if socket.send(awc::ws::Message::Text(text.into())).await.is_err() {
                    return;
                }
            },
            () = actix_web::rt::time::sleep_until(beat.into()), if heartbeats => {
                if send(&mut socket, json!({"op": 1, "d": null})).await.is_err() {
                    return;
                }
                beat = Instant::now() + Duration::from_secs(30);
            },
            _ = stopped.changed() => {
                let _ = socket.send(awc::ws::Message::Close(None)).await;
                return;
            },
        }
    }
}

pub(crate) async fn run(args: MessagesArgs) -> anyhow::Result<()> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .finish();
    let most = args
        .phases
        .iter()
        .map(|p| match p.as_str() {
            "small" => args.small_members,
            "fanout" => args.fanout_members,
            _ => args.big_members,
        })
        .max()
        .unwrap_or(0);
    let started = Instant::now();
    let accounts: Vec<Account> = if args.target == Target::Synctalk {
        futures_util::stream::iter(0..most)
            .map(|i| {
                let (client, base) = (&client, &args.url[i % args.url.len()]);
                let name = format!("{}_{i}", args.prefix);
                async move { register_user(client, base, &name).await }
            })
            .buffered(args.concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?
    } else {
        Vec::new()
    };
    let registered = started.elapsed().as_secs_f64();
    eprintln!("registered {} users in {registered:.1} s", accounts.len());
    let run = Rc::new(Run {
        args,
        accounts,
        client,
        book: Rc::new(RefCell::new(Book::new()?)),
        next_seq: Cell::new(1),
        send_errors: Cell::new(0),
        responses: RefCell::new(Histogram::new_with_bounds(1, 600_000_000, 3)?),
        error_samples: RefCell::new(Vec::new()),
    });
    let mut phases = serde_json::Map::new();
    for phase in run.args.phases.clone() {
        let size = match phase.as_str() {
            "small" => run.args.small_members,
            "fanout" => run.args.fanout_members,
            "big" => run.args.big_members,
            other => anyhow::bail!("unknown phase {other}"),
        };
        let room = match run.args.target {
            Target::Synctalk => run.room(size).await?,
            Target::Bare => Room {
                members: size,
                channel_id: String::new(),
            },
        };
        let members = run.open_members(room.members).await;
        eprintln!("phase {phase}: {} sockets", members.up);
        let result = match phase.as_str() {
            "small" => {
                let (rate, seconds) = (run.args.small_rate, run.args.small_seconds);
                run.step(&room, &members, rate, seconds).await?
            }
            "fanout" => {
                let mut steps = Vec::new();
                for &rate in &run.args.fanout_rates {
                    let step = run
                        .step(&room, &members, rate, run.args.step_seconds)
                        .await?;
                    eprintln!("  {rate}/s: {}", step["per_delivery_ms"]);
                    let over = step["per_delivery_ms"]["p99"].as_f64().unwrap_or(f64::MAX)
                        > run.args.fanout_p99_ms
                        || step["deliveries"] != step["expected"];
                    steps.push(step);
                    if over {
                        break;
                    }
                    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
                }
                let best = steps
                    .iter()
                    .filter(|s| {
                        s["per_delivery_ms"]["p99"].as_f64().unwrap_or(f64::MAX)
                            <= run.args.fanout_p99_ms
                            && s["deliveries"] == s["expected"]
                    })
                    .max_by_key(|s| s["rate"].as_u64().unwrap_or(0))
                    .cloned();
                json!({"p99_limit_ms": run.args.fanout_p99_ms, "steps": steps, "best": best})
            }
            _ => {
                let mut to_last = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
                let (mut deliveries, mut complete) = (0usize, 0usize);
                for _ in 0..run.args.big_messages {
                    let due = Instant::now();
                    let seq = run.send(&room, &members, due);
                    run.drain(&(seq..seq + 1), members.up).await;
                    if let Some(t) = run.book.borrow_mut().tracks.remove(&seq) {
                        deliveries += t.got;
                        if t.got >= members.up {
                            complete += 1;
                            let _ = to_last.record(micros(t.last - t.due));
                        }
                    }
                    actix_web::rt::time::sleep(Duration::from_millis(run.args.big_gap_ms)).await;
                }
                json!({
                    "messages": run.args.big_messages,
                    "sockets": members.up,
                    "deliveries": deliveries,
                    "expected": run.args.big_messages * members.up,
                    "messages_at_every_socket": complete,
                    "to_last_member_ms": latency_ms(&to_last),
                })
            }
        };
        let mut result = result;
        result["members"] = json!(room.members);
        result["sockets_up"] = json!(members.up);
        result["sockets_failed"] = json!(members.failed);
        phases.insert(phase.clone(), result);
        members.close().await;
        actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    }
    let book = run.book.borrow();
    let result = json!({
        "mode": "messages",
        "target": format!("{:?}", run.args.target).to_lowercase(),
        "nodes": run.args.url.len(),
        "registered_seconds": registered,
        "marked_frames": book.frames,
        "mean_frame_bytes": book.frame_bytes as f64 / (book.frames.max(1)) as f64,
        "send_errors": run.send_errors.get(),
        "send_error_samples": *run.error_samples.borrow(),
        "phases": phases,
    });
    emit(&result, run.args.out.as_deref())
}
