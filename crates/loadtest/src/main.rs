//! `synctalk-load`: the load tool behind the bench recipes.
//!
//! - `idle`: idle authenticated gateway sockets (open loop, below).
//! - `writes`: closed-loop event-writing requests (`PATCH /users/@me`), see [`writes`].
//! - `resume-big`: resuming sessions over an outbox of a million rows, see [`resume`].
//! - `guild`: a guild of 10,000 members: member pages, joins, kicks, see [`guild`].
//! - `messages`: messages fanned out to channel members, on SyncTalk or the bare
//!   broadcast server, see [`messages`].
//!
//! `synctalk-load idle` registers users, then opens gateway sockets at a fixed rate
//! (each one HELLO, IDENTIFY, READY), whatever the server's pace, records how long each
//! took in an HDR histogram, keeps every socket alive with heartbeats for the hold
//! time, and samples the servers' resident memory before and after. Results go to a
//! JSON file. Every loop is bounded in count and time; it only talks to the URLs given
//! (loopback in the bench recipe).

mod friends;
mod guild;
mod messages;
mod resume;
mod storm;
mod writes;

use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "synctalk-load",
    about = "Load tool for SyncTalk: idle sockets, event writes, resumes"
)]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Idle authenticated sockets: how many a node holds, and its memory per socket.
    Idle(IdleArgs),
    /// Closed-loop event writes: concurrent clients sending `PATCH /users/@me`.
    Writes(writes::WritesArgs),
    /// Resume dropped sessions over an outbox of (by default) a million rows.
    ResumeBig(resume::ResumeArgs),
    /// Resume storm: every session on a node dropped at once, then all resuming at once.
    Storm(storm::StormArgs),
    /// A big guild: member pages, joins and kicks, and each kick's event at every socket.
    Guild(guild::GuildArgs),
    /// Messages fanned out to a channel's members, on SyncTalk or the bare server.
    Messages(messages::MessagesArgs),
}

#[derive(Debug, clap::Args)]
struct IdleArgs {
    /// Server base URLs (`http://127.0.0.1:8080`); sockets are spread over them.
    #[arg(long, required = true, num_args = 1..)]
    url: Vec<String>,
    /// PIDs of the server processes, to sample their memory (same order as --url).
    #[arg(long, num_args = 0..)]
    server_pid: Vec<u32>,
    /// Sockets to open.
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    /// Sockets opened per second (open loop).
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Sockets per user.
    #[arg(long, default_value_t = 20)]
    per_user: usize,
    /// Seconds to hold the sockets open after the last one is up.
    #[arg(long, default_value_t = 10)]
    hold: u64,
    /// Heartbeat interval the client uses, in ms (should match the server's).
    #[arg(long, default_value_t = 41_250)]
    heartbeat_ms: u64,
    /// Give up on a socket that is not READY within this many seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Unique prefix for the users this run registers.
    #[arg(long, default_value = "load")]
    prefix: String,
    /// Friends per user: before the sockets open, the users are made friends in groups
    /// of N+1 (rows written to the database; needs --data-dir), so each session listens
    /// to N profile topics more. The users are rounded up to a multiple of N+1.
    #[arg(long, default_value_t = 0)]
    friends: usize,
    /// The server's data dir (its PostgreSQL cluster's `port` and `password`).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Write the JSON results here.
    #[arg(long)]
    out: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Mode::Idle(args) => actix_web::rt::System::new().block_on(idle(args)),
        Mode::Writes(args) => actix_web::rt::System::new().block_on(writes::run(args)),
        Mode::ResumeBig(args) => actix_web::rt::System::new().block_on(resume::run(args)),
        Mode::Storm(args) => actix_web::rt::System::new().block_on(storm::run(args)),
        Mode::Guild(args) => actix_web::rt::System::new().block_on(guild::run(args)),
        Mode::Messages(args) => actix_web::rt::System::new().block_on(messages::run(args)),
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A registered account: its access token and the user (`CurrentUser`) it got back.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Account {
    pub(crate) username: String,
    pub(crate) access_token: String,
    pub(crate) user: Value,
    /// A channel of the account's own (the `writes` mode's sends and pages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) channel_id: Option<String>,
}

pub(crate) async fn register_user(
    client: &awc::Client,
    base: &str,
    username: &str,
) -> anyhow::Result<Account> {
    let body = json!({"username": username, "email": format!("{username}@load.test"), "password": "load-test-password"});
    let mut res = client
        .post(format!("{base}/api/v1/auth/register"))
        .send_json(&body)
        .await
        .map_err(|e| anyhow::anyhow!("register: {e}"))?;
    let value: Value = res
        .json()
        .await
        .map_err(|e| anyhow::anyhow!("register body: {e}"))?;
    match value["access_token"].as_str() {
        Some(token) if value["user"].is_object() => Ok(Account {
            username: username.to_owned(),
            access_token: token.to_owned(),
            user: value["user"].clone(),
            channel_id: None,
        }),
        _ => anyhow::bail!("register {username} failed: {value}"),
    }
}

/// Percentiles of a histogram of microseconds, in milliseconds.
pub(crate) fn latency_ms(h: &Histogram<u64>) -> Value {
    let ms = |micros: u64| micros as f64 / 1000.0;
    json!({
        "count": h.len(),
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
        "mean": h.mean() / 1000.0,
    })
}

/// Prints the results and writes them to `out` when given.
pub(crate) fn emit(result: &Value, out: Option<&str>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(result)?;
    println!("{text}");
    if let Some(path) = out {
        std::fs::write(path, text + "\n")?;
    }
    Ok(())
}

/// A microsecond count for a histogram (at least 1).
pub(crate) fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[derive(Default)]
struct Tally {
    ready: usize,
    failed: usize,
    closed_early: usize,
}

async fn idle(args: IdleArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .finish();
    let mut users = args.sockets.div_ceil(args.per_user.max(1));
    if args.friends > 0 {
        users = users.div_ceil(args.friends + 1) * (args.friends + 1);
    }
    let mut tokens = Vec::with_capacity(users);
    let mut ids = Vec::with_capacity(users);
    for i in 0..users {
        let base = &args.url[i % args.url.len()];
        let account = register_user(&client, base, &format!("{}_{i}", args.prefix)).await?;
        tokens.push(account.access_token);
        ids.push(account.user["id"].as_str().unwrap_or_default().to_owned());
    }
    eprintln!(
        "registered {users} users in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut friendships = 0;
    if args.friends > 0 {
        let dir = args
            .data_dir
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("--friends needs --data-dir"))?;
        let db = resume::database(dir).await?;
        friendships = friends::befriend(&db, &ids, args.friends).await?;
        eprintln!("wrote {friendships} friendship rows");
    }

    let before: Vec<Option<u64>> = args.server_pid.iter().map(|pid| rss_kib(*pid)).collect();
    let histogram = Rc::new(std::cell::RefCell::new(Histogram::<u64>::new_with_bounds(
        1,
        120_000_000,
        3,
    )?));
    let tally = Rc::new(std::cell::RefCell::new(Tally::default()));
    let deadline = Instant::now()
        + Duration::from_secs_f64(args.sockets as f64 / args.rate.max(1) as f64)
        + Duration::from_secs(args.timeout + args.hold + 5);
    let stop_at = Rc::new(std::cell::Cell::new(deadline));
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let opening = Instant::now();
    let mut tasks = Vec::with_capacity(args.sockets);
    for i in 0..args.sockets {
        // Open loop: socket i starts at i / rate, however the earlier ones are doing.
        let due = opening + interval * u32::try_from(i).unwrap_or(u32::MAX);
        actix_web::rt::time::sleep_until(due.into()).await;
        let base = &args.url[i % args.url.len()];
        let url = format!("{}/gateway/users", base.replacen("http", "ws", 1));
        let token = tokens[(i / args.per_user.max(1)).min(tokens.len() - 1)].clone();
        let (histogram, tally, stop_at) = (histogram.clone(), tally.clone(), stop_at.clone());
        let heartbeat = Duration::from_millis(args.heartbeat_ms);
        let timeout = Duration::from_secs(args.timeout);
        tasks.push(actix_web::rt::spawn(async move {
            let begun = Instant::now();
            let connect = async {
                let client = awc::Client::builder().timeout(timeout).finish();
                let (_, mut framed) = client
                    .ws(url)
                    .max_frame_size(1 << 20)
                    .connect()
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let _hello = framed.next().await;
                let identify = json!({"op": 2, "d": {"token": token}}).to_string();
                framed.send(awc::ws::Message::Text(identify.into())).await?;
                loop {
                    match framed.next().await {
                        Some(Ok(awc::ws::Frame::Text(text))) => {
                            let frame: Value = serde_json::from_slice(&text)?;
                            if frame["t"] == "READY" {
                                return anyhow::Ok(framed);
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => anyhow::bail!("closed before READY"),
                    }
                }
            };
            let mut framed = match actix_web::rt::time::timeout(timeout, connect).await {
                Ok(Ok(framed)) => framed,
                _ => {
                    tally.borrow_mut().failed += 1;
                    return;
                }
            };
            let micros = u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX);
            let _ = histogram.borrow_mut().record(micros.max(1));
            tally.borrow_mut().ready += 1;
            // Idle: heartbeat, drain acks and events, until the hold ends.
            let mut next_beat = Instant::now() + heartbeat;
            loop {
                let until = next_beat.min(stop_at.get());
                match tokio::time::timeout_at(until.into(), framed.next()).await {
                    Ok(Some(Ok(awc::ws::Frame::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                        tally.borrow_mut().closed_early += 1;
                        return;
                    }
                    Ok(Some(Ok(_))) => {}
                    Err(_) => {
                        if Instant::now() >= stop_at.get() {
                            let _ = framed.close().await;
                            return;
                        }
                        let beat = json!({"op": 1, "d": null}).to_string();
                        if framed
                            .send(awc::ws::Message::Text(beat.into()))
                            .await
                            .is_err()
                        {
                            tally.borrow_mut().closed_early += 1;
                            return;
                        }
                        next_beat = Instant::now() + heartbeat;
                    }
                }
            }
        }));
    }
    let opened_in = opening.elapsed();
    // Wait until every socket is READY or failed (bounded by the timeout).
    let wait_until = Instant::now() + Duration::from_secs(args.timeout);
    while Instant::now() < wait_until {
        let done = {
            let t = tally.borrow();
            t.ready + t.failed >= args.sockets
        };
        if done {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    let all_up = opening.elapsed();
    // Let allocations settle, then measure, then hold.
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    let after: Vec<Option<u64>> = args.server_pid.iter().map(|pid| rss_kib(*pid)).collect();
    stop_at.set(Instant::now() + Duration::from_secs(args.hold));
    let held = stop_at.get();
    actix_web::rt::time::sleep_until(held.into()).await;
    let alive_at_end = {
        let t = tally.borrow();
        t.ready - t.closed_early
    };
    stop_at.set(Instant::now());
    for task in tasks {
        let _ = actix_web::rt::time::timeout(Duration::from_secs(5), task).await;
    }

    let h = histogram.borrow();
    let t = tally.borrow();
    let nodes: Vec<Value> = args
        .server_pid
        .iter()
        .enumerate()
        .map(|(i, pid)| {
            let (b, a) = (before[i], after[i]);
            let sockets_here = t.ready.div_ceil(args.url.len());
            json!({
                "pid": pid,
                "url": args.url.get(i),
                "rss_before_kib": b,
                "rss_after_kib": a,
                "sockets": sockets_here,
                "bytes_per_socket": match (b, a) {
                    (Some(b), Some(a)) if sockets_here > 0 => Some((a.saturating_sub(b) * 1024) / sockets_here as u64),
                    _ => None,
                },
            })
        })
        .collect();
    let result = json!({
        "mode": "idle",
        "sockets_requested": args.sockets,
        "sockets_ready": t.ready,
        "sockets_failed": t.failed,
        "sockets_alive_after_hold": alive_at_end,
        "rate_per_second": args.rate,
        "users": users,
        "friends_per_user": args.friends,
        "friendship_rows": friendships,
        "open_seconds": opened_in.as_secs_f64(),
        "all_ready_seconds": all_up.as_secs_f64(),
        "hold_seconds": args.hold,
        "identify_latency_ms": {
            "p50": h.value_at_quantile(0.50) as f64 / 1000.0,
            "p90": h.value_at_quantile(0.90) as f64 / 1000.0,
            "p99": h.value_at_quantile(0.99) as f64 / 1000.0,
            "p999": h.value_at_quantile(0.999) as f64 / 1000.0,
            "max": h.max() as f64 / 1000.0,
        },
        "nodes": nodes,
    });
    let text = serde_json::to_string_pretty(&result)?;
    println!("{text}");
    if let Some(path) = args.out {
        std::fs::write(path, text + "\n")?;
    }
    Ok(())
}
