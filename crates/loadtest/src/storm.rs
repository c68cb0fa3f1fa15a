//! `synctalk-load storm`: a resume storm on one node.
//!
//! 1. Registers `--sockets / --per-user` users and opens `--sockets` gateway sessions at
//!    `--rate` per second (HELLO, IDENTIFY, READY), each then idle (heartbeats), noting
//!    the last `s` it saw.
//! 2. Drops every socket at the same moment without a close frame (the TCP connection
//!    just ends), so every session stays resumable, and waits until the server has
//!    recorded each one as disconnected.
//! 3. Writes one missed event per user: one `USER_UPDATE` outbox row on each user's
//!    topic in a single statement (`--via sql`, the relay numbers them) or one
//!    `PATCH /users/@me` per user (`--via patch`), and waits until the relay has
//!    published them and the node has applied them.
//! 4. Resumes every session at once (connect, HELLO, RESUME with its last `s`), and
//!    checks that each gets exactly its user's missed `USER_UPDATE`, with the next `s`,
//!    before RESUMED. The time to the last RESUMED is the figure.
//!
//! While the storm runs it samples `pg_stat_activity` (what the database's sessions
//! are doing), to show where the time goes. Every wait is bounded; it only talks to the
//! URL and database port given.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::resume::{Socket, database, next_json, open, patch, progress, send};
use crate::{Account, emit, latency_ms, micros, register_user};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Via {
    /// One INSERT of one outbox row per user topic (the relay numbers them).
    Sql,
    /// One `PATCH /users/@me` per user (also an event on the user's profile topic).
    Patch,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StormArgs {
    /// Server base URL (`http://127.0.0.1:8080`).
    #[arg(long)]
    url: String,
    /// The server's data dir, holding its PostgreSQL cluster's `port` and `password`.
    #[arg(long)]
    data_dir: PathBuf,
    /// Sessions to open, drop and resume.
    #[arg(long, default_value_t = 19_000)]
    sockets: usize,
    /// Sessions per user (each user gets one missed event, so each session one).
    #[arg(long, default_value_t = 20)]
    per_user: usize,
    /// Sessions opened per second before the drop (open loop).
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// How the missed events are written.
    #[arg(long, value_enum, default_value_t = Via::Sql)]
    via: Via,
    /// Heartbeat interval the client uses while the sessions are up, in ms.
    #[arg(long, default_value_t = 41_250)]
    heartbeat_ms: u64,
    /// Timeout for one IDENTIFY, and for one resume, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// How long to wait for the server to record the drops, and for the relay to
    /// publish the events, in seconds (each).
    #[arg(long, default_value_t = 120)]
    settle_timeout: u64,
    /// Times a resume whose connection fails (no HELLO: refused, reset, or a non-101
    /// status such as 408) tries again, after a jittered back-off (0.5-1 s, doubling),
    /// as a client would; 0: every resume gets one attempt.
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// Unique prefix for the usernames.
    #[arg(long, default_value = "storm")]
    prefix: String,
    /// Write the JSON results here.
    #[arg(long)]
    out: Option<String>,
}

/// One identified session, as it was when dropped.
struct Held {
    user: usize,
    session_id: String,
    last_seq: Option<i64>,
}

/// What one resume got.
enum Outcome {
    /// RESUMED after these dispatches (t, s, bio).
    Resumed {
        events: Vec<(String, Option<i64>, Option<String>)>,
        retries: u32,
        resume_to_resumed: Duration,
        connect_to_resumed: Duration,
        done_at: Instant,
    },
    /// INVALID_SESSION (op 9).
    Refused(Value),
    Failed(String),
}

/// Opens one session (HELLO, IDENTIFY, READY), then idles (heartbeats, noting the
/// last `s`) until `drop_now` fires, and drops the socket without a close frame.
async fn hold(
    url: String,
    token: String,
    timeout: Duration,
    heartbeat: Duration,
    drop_now: Rc<tokio::sync::Notify>,
    dropping: Rc<Cell<bool>>,
    ready: Rc<Cell<usize>>,
) -> anyhow::Result<(String, Option<i64>, Duration)> {
    let begun = Instant::now();
    let identify = async {
        let mut socket = open(&url, timeout).await?;
        send(&mut socket, json!({"op": 2, "d": {"token": token}})).await?;
        loop {
            let frame = next_json(&mut socket).await?;
            anyhow::ensure!(frame["op"] != 9, "IDENTIFY refused: {frame}");
            if frame["t"] == "READY" {
                let id = frame["d"]["session_id"]
                    .as_str()
                    .ok_or_else(|| anyhow::anyhow!("READY without session_id: {frame}"))?
                    .to_owned();
                return anyhow::Ok((socket, id));
            }
        }
    };
    let (mut socket, session_id) = actix_web::rt::time::timeout(timeout, identify)
        .await
        .map_err(|_| anyhow::anyhow!("no READY within {} s", timeout.as_secs()))??;
    let ready_in = begun.elapsed();
    ready.set(ready.get() + 1);
    let mut last_seq: Option<i64> = None;
    let mut next_beat = Instant::now() + heartbeat;
    loop {
        if dropping.get() {
            break;
        }
        tokio::select! {
            _ = drop_now.notified() => break,
            _ = actix_web::rt::time::sleep_until(next_beat.into()) => {
                send(&mut socket, json!({"op": 1, "d": null})).await?;
                next_beat = Instant::now() + heartbeat;
            }
            frame = socket.next() => match frame {
                Some(Ok(awc::ws::Frame::Text(text))) => {
                    let frame: Value = serde_json::from_slice(&text)?;
                    if let Some(s) = frame["s"].as_i64() {
                        last_seq = Some(s);
                    }
                }
                Some(Ok(awc::ws::Frame::Close(reason))) => anyhow::bail!("closed by the server: {reason:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => anyhow::bail!("socket error: {e}"),
                None => anyhow::bail!("closed by the server"),
            },
        }
    }
    // Dropping the socket ends the TCP connection with no close frame: resumable.
    drop(socket);
    Ok((session_id, last_seq, ready_in))
}

/// What every resume of a storm shares.
struct Shared {
    timeout: Duration,
    retries: u32,
    /// Fires (and `released` is set) once every resume is in.
    release: tokio::sync::Notify,
    released: Cell<bool>,
    /// Resumes that got RESUMED, a refusal or an error.
    settled: Cell<usize>,
    /// Connection errors a retry followed.
    connect_errors: std::cell::RefCell<BTreeMap<String, u64>>,
}

/// Resumes one session and reads up to RESUMED; keeps the socket until released.
async fn resume(url: String, token: String, held: Rc<Held>, shared: Rc<Shared>) -> Outcome {
    let (timeout, retries) = (shared.timeout, shared.retries);
    let (release, released, settled, connect_errors) = (
        &shared.release,
        &shared.released,
        &shared.settled,
        &shared.connect_errors,
    );
    let begun = Instant::now();
    let mut attempts = 0u32;
    let attempt = async {
        let mut socket = loop {
            match open(&url, timeout).await {
                Ok(socket) => break socket,
                Err(e) if attempts < retries => {
                    *connect_errors
                        .borrow_mut()
                        .entry(short(&e.to_string()))
                        .or_default() += 1;
                    // 0.5-1 s, doubling; the jitter from the session id.
                    let seed = held.session_id.bytes().fold(u64::from(attempts), |h, b| {
                        h.wrapping_mul(31).wrapping_add(u64::from(b))
                    });
                    let base = 500u64 << attempts.min(4);
                    let wait = base + seed % base;
                    attempts += 1;
                    actix_web::rt::time::sleep(Duration::from_millis(wait)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let sent = Instant::now();
        let seq = held.last_seq.map_or(Value::Null, Value::from);
        send(
            &mut socket,
            json!({"op": 6, "d": {"token": token, "session_id": held.session_id, "seq": seq}}),
        )
        .await?;
        let mut events = Vec::new();
        loop {
            let frame = next_json(&mut socket).await?;
            match frame["op"].as_i64() {
                Some(0) if frame["t"] == "RESUMED" => break,
                Some(0) => events.push((
                    frame["t"].as_str().unwrap_or_default().to_owned(),
                    frame["s"].as_i64(),
                    frame["d"]["bio"].as_str().map(str::to_owned),
                )),
                Some(9) => return anyhow::Ok(Err(frame)),
                _ => {}
            }
        }
        let done = Instant::now();
        anyhow::Ok(Ok((socket, events, done - sent, done)))
    };
    let outcome = actix_web::rt::time::timeout(timeout, attempt).await;
    settled.set(settled.get() + 1);
    let outcome = match outcome {
        Err(_) => return Outcome::Failed(format!("no RESUMED within {} s", timeout.as_secs())),
        Ok(Err(e)) => return Outcome::Failed(e.to_string()),
        Ok(Ok(Err(frame))) => return Outcome::Refused(frame),
        Ok(Ok(Ok(x))) => x,
    };
    let retries = attempts;
    let (mut socket, events, resume_to_resumed, done_at) = outcome;
    // Hold the socket (reading, so the server's writes never stall) until every resume
    // is in, so that closing these does not compete with the ones still resuming.
    let connect_to_resumed = done_at - begun;
    while !released.get() {
        tokio::select! {
            _ = release.notified() => break,
            frame = socket.next() => if !matches!(frame, Some(Ok(_))) { break },
        }
    }
    close(&mut socket).await;
    Outcome::Resumed {
        events,
        retries,
        resume_to_resumed,
        connect_to_resumed,
        done_at,
    }
}

/// A clean close ends the session.
async fn close(socket: &mut Socket) {
    let _ = actix_web::rt::time::timeout(
        Duration::from_secs(2),
        socket.send(awc::ws::Message::Close(Some(
            awc::ws::CloseCode::Normal.into(),
        ))),
    )
    .await;
}

/// Counts of what the database's other sessions were doing, over every sample.
type Activity = BTreeMap<String, u64>;

/// Samples `pg_stat_activity` every 200 ms until `stop`; returns the counts and the
/// number of samples.
async fn sample_activity(
    db: tokio_postgres::Client,
    stop: Rc<Cell<bool>>,
) -> anyhow::Result<(Activity, u64, u64)> {
    let mut counts = Activity::new();
    let (mut samples, mut most_active) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(900);
    while !stop.get() && Instant::now() < deadline {
        let rows = db
            .query(
                "SELECT state || ' / ' || coalesce(wait_event_type || ':' || wait_event, 'cpu') \
                        || ' / ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 90), count(*) \
                 FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                   AND backend_type = 'client backend' AND state <> 'idle' \
                 GROUP BY 1",
                &[],
            )
            .await?;
        let mut active = 0u64;
        for row in rows {
            let key: String = row.get(0);
            let n = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
            active += n;
            *counts.entry(key).or_default() += n;
        }
        most_active = most_active.max(active);
        samples += 1;
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((counts, samples, most_active))
}

/// Waits (bounded) until none of `sessions` is marked connected.
async fn wait_disconnected(
    db: &tokio_postgres::Client,
    sessions: &[String],
    timeout: Duration,
) -> anyhow::Result<(f64, i64)> {
    let begun = Instant::now();
    loop {
        let connected: i64 = db
            .query_one(
                "SELECT count(*) FROM gateway_sessions WHERE id::text = ANY($1) AND connected",
                &[&sessions],
            )
            .await?
            .get(0);
        if connected == 0 || begun.elapsed() > timeout {
            return Ok((begun.elapsed().as_secs_f64(), connected));
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One `USER_UPDATE` per user topic, in one statement; the payload is the user's
/// `CurrentUser` with `bio` = `bio`.
async fn insert_events(
    db: &tokio_postgres::Client,
    accounts: &[Account],
    bio: &str,
) -> anyhow::Result<()> {
    let mut topics = Vec::with_capacity(accounts.len());
    let mut payloads = Vec::with_capacity(accounts.len());
    for account in accounts {
        let mut user = account.user.clone();
        let id = user["id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("user without id: {user}"))?
            .to_owned();
        user["bio"] = Value::from(bio);
        topics.push(format!("user:{id}"));
        payloads.push(user.to_string());
    }
    db.execute(
        "INSERT INTO outbox (topic, kind, domain, name, payload) \
         SELECT t, 'event', 'users', 'USER_UPDATE', p::jsonb \
         FROM unnest($1::text[], $2::text[]) AS e(t, p)",
        &[&topics, &payloads],
    )
    .await?;
    Ok(())
}

pub(crate) async fn run(args: StormArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout);
    let settle = Duration::from_secs(args.settle_timeout);
    let per_user = args.per_user.max(1);
    let http = awc::Client::builder().timeout(timeout).finish();
    let gateway = format!("{}/gateway/users", args.url.replacen("http", "ws", 1));

    // 1. Users (a few registrations at a time).
    let users = args.sockets.div_ceil(per_user);
    let registering = Instant::now();
    let accounts: Vec<Account> = futures_util::stream::iter(0..users)
        .map(|i| {
            let (http, url, name) = (&http, &args.url, format!("{}_{i}", args.prefix));
            async move { register_user(http, url, &name).await }
        })
        .buffered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    eprintln!(
        "registered {users} users in {:.1} s",
        registering.elapsed().as_secs_f64()
    );

    // 2. Sessions, opened at a fixed rate.
    let drop_now = Rc::new(tokio::sync::Notify::new());
    let dropping = Rc::new(Cell::new(false));
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let opening = Instant::now();
    let mut tasks = Vec::with_capacity(args.sockets);
    let ready = Rc::new(Cell::new(0usize));
    for i in 0..args.sockets {
        let due = opening + interval * u32::try_from(i).unwrap_or(u32::MAX);
        actix_web::rt::time::sleep_until(due.into()).await;
        let user = i / per_user;
        let task = hold(
            gateway.clone(),
            accounts[user].access_token.clone(),
            timeout,
            Duration::from_millis(args.heartbeat_ms),
            drop_now.clone(),
            dropping.clone(),
            ready.clone(),
        );
        tasks.push(actix_web::rt::spawn(task));
    }
    // Wait until every session is READY or has failed (a failed task is finished).
    let db = database(&args.data_dir).await?;
    let ready_deadline = Instant::now() + timeout;
    loop {
        let finished = tasks.iter().filter(|t| t.is_finished()).count();
        if ready.get() + finished >= args.sockets || Instant::now() > ready_deadline {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let opened_seconds = opening.elapsed().as_secs_f64();
    // Let stray dispatches (presence) arrive, so each session knows its last s.
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;

    // Drop them all at once.
    dropping.set(true);
    drop_now.notify_waiters();
    let dropped_at = Instant::now();
    let mut held = Vec::with_capacity(args.sockets);
    let mut ready_h = Histogram::<u64>::new_with_bounds(1, 300_000_000, 3)?;
    let mut open_errors: BTreeMap<String, u64> = BTreeMap::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(Ok((session_id, last_seq, ready_in))) => {
                let _ = ready_h.record(micros(ready_in));
                held.push(Rc::new(Held {
                    user: i / per_user,
                    session_id,
                    last_seq,
                }));
            }
            Ok(Err(e)) => *open_errors.entry(short(&e.to_string())).or_default() += 1,
            Err(e) => *open_errors.entry(short(&e.to_string())).or_default() += 1,
        }
    }
    eprintln!(
        "{} sessions up in {opened_seconds:.1} s ({} failed); dropped",
        held.len(),
        args.sockets - held.len()
    );
    let with_seq = held.iter().filter(|h| h.last_seq.is_some()).count();
    let ids: Vec<String> = held.iter().map(|h| h.session_id.clone()).collect();
    let (drop_recorded_seconds, still_connected) = wait_disconnected(&db, &ids, settle).await?;
    eprintln!(
        "the server recorded the drops in {drop_recorded_seconds:.1} s ({still_connected} still connected)"
    );

    // 3. One missed event per user.
    let before = progress(&db).await?;
    let writing = Instant::now();
    let bio = format!("storm {}", args.prefix);
    match args.via {
        Via::Sql => insert_events(&db, &accounts, &bio).await?,
        Via::Patch => {
            let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(accounts.iter())
                .map(|a| patch(&http, &args.url, a, &bio))
                .buffer_unordered(32)
                .collect()
                .await;
            results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        }
    }
    let written_seconds = writing.elapsed().as_secs_f64();
    let publishing = Instant::now();
    let mut relay_done = None;
    let after = loop {
        let now = progress(&db).await?;
        if now.unpublished == 0 && relay_done.is_none() {
            relay_done = Some(publishing.elapsed().as_secs_f64());
        }
        if now.unpublished == 0 && now.node.is_some_and(|n| n >= now.head) {
            break now;
        }
        anyhow::ensure!(
            publishing.elapsed() < settle,
            "not published after {} s: {} unpublished, head {}, node {:?}",
            args.settle_timeout,
            now.unpublished,
            now.head,
            now.node
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    };
    let applied_seconds = publishing.elapsed().as_secs_f64();
    eprintln!(
        "{} events written in {written_seconds:.2} s, published and applied in {applied_seconds:.1} s; storming",
        after.head - before.head
    );

    // 4. Everyone resumes at once.
    let sampler_db = database(&args.data_dir).await?;
    let stop_sampling = Rc::new(Cell::new(false));
    let sampler = actix_web::rt::spawn(sample_activity(sampler_db, stop_sampling.clone()));
    let shared = Rc::new(Shared {
        timeout,
        retries: args.retries,
        release: tokio::sync::Notify::new(),
        released: Cell::new(false),
        settled: Cell::new(0),
        connect_errors: std::cell::RefCell::new(BTreeMap::new()),
    });
    let storm = Instant::now();
    let resumes: Vec<_> = held
        .iter()
        .map(|h| {
            actix_web::rt::spawn(resume(
                gateway.clone(),
                accounts[h.user].access_token.clone(),
                h.clone(),
                shared.clone(),
            ))
        })
        .collect();
    // Each resume ends in RESUMED, a refusal or an error (bounded by the timeout), then
    // holds its socket until all are in, so closing none competes with the rest.
    let storm_deadline = storm + timeout + Duration::from_secs(5);
    while shared.settled.get() < held.len() && Instant::now() < storm_deadline {
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let settled_seconds = storm.elapsed().as_secs_f64();
    shared.released.set(true);
    shared.release.notify_waiters();
    stop_sampling.set(true);

    let mut resume_h = Histogram::<u64>::new_with_bounds(1, 300_000_000, 3)?;
    let mut connect_h = Histogram::<u64>::new_with_bounds(1, 300_000_000, 3)?;
    let (mut ok, mut wrong, mut refused, mut failed) = (0usize, 0usize, 0usize, 0usize);
    let mut last_resumed: Option<Instant> = None;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut examples: Vec<Value> = Vec::new();
    let (mut lost, mut duplicated, mut extra) = (0usize, 0usize, 0usize);
    let (mut retried, mut retries_total) = (0usize, 0u64);
    for (h, task) in held.iter().zip(resumes) {
        let outcome = match actix_web::rt::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Outcome::Failed(e.to_string()),
            Err(_) => Outcome::Failed("not finished after release".into()),
        };
        match outcome {
            Outcome::Resumed {
                events,
                retries,
                resume_to_resumed,
                connect_to_resumed,
                done_at,
            } => {
                let next = h.last_seq.unwrap_or(0) + 1;
                let expected = vec![("USER_UPDATE".to_owned(), Some(next), Some(bio.clone()))];
                let ours = events
                    .iter()
                    .filter(|(t, _, b)| t == "USER_UPDATE" && b.as_deref() == Some(bio.as_str()))
                    .count();
                match ours {
                    0 => lost += 1,
                    1 => {}
                    _ => duplicated += 1,
                }
                extra += events.len() - ours;
                if retries > 0 {
                    retried += 1;
                    retries_total += u64::from(retries);
                }
                if events == expected {
                    ok += 1;
                    let _ = resume_h.record(micros(resume_to_resumed));
                    let _ = connect_h.record(micros(connect_to_resumed));
                    if last_resumed.is_none_or(|l| done_at > l) {
                        last_resumed = Some(done_at);
                    }
                } else {
                    wrong += 1;
                    if examples.len() < 10 {
                        examples.push(json!({
                            "session_id": h.session_id,
                            "last_seq": h.last_seq,
                            "events": events.iter().map(|(t, s, b)| json!({"t": t, "s": s, "bio": b})).collect::<Vec<_>>(),
                        }));
                    }
                }
            }
            Outcome::Refused(frame) => {
                refused += 1;
                *errors.entry(short(&frame["d"].to_string())).or_default() += 1;
            }
            Outcome::Failed(e) => {
                failed += 1;
                *errors.entry(short(&e)).or_default() += 1;
            }
        }
    }
    let (activity, samples, most_active) = match sampler.await {
        Ok(Ok(x)) => x,
        _ => (Activity::new(), 0, 0),
    };
    // The 15 most common things the database was doing, as the average number of
    // backends doing it.
    let mut top: Vec<(&String, &u64)> = activity.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1));
    let busy: Vec<Value> = top
        .iter()
        .take(15)
        .map(|(k, n)| json!({"what": k, "mean_backends": **n as f64 / samples.max(1) as f64}))
        .collect();
    let last_resumed_seconds = last_resumed.map(|l| (l - storm).as_secs_f64());
    let result = json!({
        "mode": "storm",
        "url": args.url,
        "sockets_requested": args.sockets,
        "users": users,
        "per_user": per_user,
        "open_rate_per_second": args.rate,
        "sessions_up": held.len(),
        "open_errors": open_errors,
        "identify_ms": latency_ms(&ready_h),
        "sessions_with_a_seq_before_drop": with_seq,
        "opened_seconds": opened_seconds,
        "drop_recorded_seconds": drop_recorded_seconds,
        "still_connected_after_drop": still_connected,
        "events_via": format!("{:?}", args.via).to_lowercase(),
        "events_written": after.head - before.head,
        "events_written_seconds": written_seconds,
        "relay_published_seconds": relay_done,
        "node_applied_seconds": applied_seconds,
        "away_seconds": (storm - dropped_at).as_secs_f64(),
        "resumes": held.len(),
        "resumed_ok": ok,
        "resumed_wrong_events": wrong,
        "refused": refused,
        "failed": failed,
        "lost": lost,
        "duplicated": duplicated,
        "other_dispatches": extra,
        "errors": errors,
        "retry": {
            "allowed": args.retries,
            "resumes_that_retried": retried,
            "retries": retries_total,
            "errors_retried": *shared.connect_errors.borrow(),
        },
        "wrong_examples": examples,
        "last_resumed_seconds": last_resumed_seconds,
        "all_settled_seconds": settled_seconds,
        "target_seconds": 20,
        "resume_ms": latency_ms(&resume_h),
        "connect_to_resumed_ms": latency_ms(&connect_h),
        "database_activity": {"samples": samples, "most_active_backends": most_active, "top": busy},
    });
    emit(&result, args.out.as_deref())?;
    anyhow::ensure!(
        ok == held.len() && held.len() == args.sockets,
        "{} of {} sessions up, {ok} resumed with exactly their event",
        held.len(),
        args.sockets
    );
    Ok(())
}

/// An error message, cut to a key for counting.
fn short(message: &str) -> String {
    message.chars().take(120).collect()
}
