//! `synctalk-load guild`: a big guild on one node.
//!
//! Registers `--members` users; the first makes a guild and an invite; the others
//! join by it (`--concurrency` at a time). Every member opens a socket on
//! `/gateway/guilds` (at `--rate` per second). After `--settle` seconds, one request at
//! a time (closed loop), it measures:
//! - pages of 100 members (`GET /guilds/{id}/members?limit=100&after=<a member>`);
//! - joins by invite of `--extra` more users (`POST /invites/{code}`);
//! - kicks of those users (`DELETE /guilds/{id}/members/{user}`), and for each kick how
//!   long until the last member socket had its GUILD_MEMBER_REMOVE, and how many got it;
//!   the next kick waits until then.
//!
//! Results go to a JSON file. Every loop is bounded in count and time; it only talks to
//! the URL given (loopback in the bench recipe).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::resume::{next_json, open, send};
use crate::{Account, emit, latency_ms, micros, register_user};

#[derive(Debug, clap::Args)]
pub(crate) struct GuildArgs {
    /// Server base URL (`http://127.0.0.1:8080`).
    #[arg(long)]
    url: String,
    /// Members of the guild, the owner included (each with one socket).
    #[arg(long, default_value_t = 10_000)]
    members: usize,
    /// Users who join and are then kicked, one at a time, while measured.
    #[arg(long, default_value_t = 200)]
    extra: usize,
    /// Member pages to read, while measured.
    #[arg(long, default_value_t = 500)]
    pages: usize,
    /// Registrations and joins in flight at once during set-up.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Sockets opened per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds to let the server settle after the sockets are up (their presence, the
    /// first checkpoint) before measuring.
    #[arg(long, default_value_t = 10)]
    settle: u64,
    /// Milliseconds between a join's or kick's event reaching the last member socket
    /// and the next request: the server and the kernel finish the 10,000 writes (and
    /// their acknowledgements) of the one before, so each request is timed alone.
    #[arg(long, default_value_t = 100)]
    gap_ms: u64,
    /// How long to wait for a kick's event at every socket, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Unique prefix for the usernames this run registers.
    #[arg(long, default_value = "guild")]
    prefix: String,
    /// Write the JSON results here.
    #[arg(long)]
    out: Option<String>,
}

/// Which member sockets got which GUILD_MEMBER_ADD / GUILD_MEMBER_REMOVE, and when the
/// last one did.
#[derive(Default)]
struct Seen {
    /// (event name, user id) -> (sockets that got it, when the last did).
    events: HashMap<(&'static str, String), (usize, Instant)>,
}

/// One measured kind of request (joins, kicks) and its event's way to every socket.
struct Measured {
    latency: Histogram<u64>,
    errors: usize,
    /// From the request's start to the last member socket having its event.
    to_last_socket: Histogram<u64>,
    deliveries: usize,
    expected: usize,
}

impl Measured {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            latency: Histogram::new(3)?,
            errors: 0,
            to_last_socket: Histogram::new(3)?,
            deliveries: 0,
            expected: 0,
        })
    }

    fn json(&self) -> Value {
        json!({
            "latency_ms": latency_ms(&self.latency),
            "errors": self.errors,
            "to_last_socket_ms": latency_ms(&self.to_last_socket),
            "event_deliveries": self.deliveries,
            "event_expected": self.expected,
        })
    }
}

async fn request(
    client: &awc::Client,
    method: awc::http::Method,
    url: String,
    token: &str,
) -> anyhow::Result<(u16, Value)> {
    let mut res = client
        .request(method, url)
        .bearer_auth(token)
        .insert_header(("content-type", "application/json"))
        .send_body("{}")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let status = res.status().as_u16();
    let body = res.body().limit(16 << 20).await.unwrap_or_default();
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

pub(crate) async fn run(args: GuildArgs) -> anyhow::Result<()> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .finish();
    let base = args.url.clone();
    let started = Instant::now();
    let total = args.members + args.extra;
    let accounts: Vec<Account> = futures_util::stream::iter(0..total)
        .map(|i| {
            let (client, base, name) = (&client, &base, format!("{}_{i}", args.prefix));
            async move { register_user(client, base, &name).await }
        })
        .buffered(args.concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let registered_in = started.elapsed();
    eprintln!(
        "registered {total} users in {:.1} s",
        registered_in.as_secs_f64()
    );
    let id = |a: &Account| a.user["id"].as_str().unwrap_or_default().to_owned();
    let owner = &accounts[0];
    let post = awc::http::Method::POST;
    let mut res = client
        .post(format!("{base}/api/v1/guilds"))
        .bearer_auth(&owner.access_token)
        .send_json(&json!({"name": "Big"}))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let guild_body: Value = res.json().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let guild_id = guild_body["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no guild: {guild_body}"))?
        .to_owned();
    let mut res = client
        .post(format!("{base}/api/v1/guilds/{guild_id}/invites"))
        .bearer_auth(&owner.access_token)
        .send_json(&json!({"max_age_secs": 0}))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let invite: Value = res.json().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let code = invite["code"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no invite: {invite}"))?
        .to_owned();
    let joining = Instant::now();
    let joined: Vec<anyhow::Result<(u16, Value)>> =
        futures_util::stream::iter(&accounts[1..args.members])
            .map(|a| {
                let (client, url) = (&client, format!("{base}/api/v1/invites/{code}"));
                async move { request(client, awc::http::Method::POST, url, &a.access_token).await }
            })
            .buffer_unordered(args.concurrency)
            .collect()
            .await;
    let join_failures = joined.iter().filter(|r| !matches!(r, Ok((200, _)))).count();
    let joined_in = joining.elapsed();
    eprintln!(
        "{} joined in {:.1} s ({join_failures} failed)",
        args.members - 1,
        joined_in.as_secs_f64()
    );

    // A socket per member, counting GUILD_MEMBER_ADDs and GUILD_MEMBER_REMOVEs.
    let seen = Rc::new(RefCell::new(Seen::default()));
    let ready = Rc::new(Cell::new(0usize));
    let failed = Rc::new(Cell::new(0usize));
    let stop = Rc::new(Cell::new(false));
    let ws_url = format!("{}/gateway/guilds", base.replacen("http", "ws", 1));
    let opening = Instant::now();
    let mut tasks = Vec::new();
    for (i, account) in accounts[..args.members].iter().enumerate() {
        let due = opening + Duration::from_micros(1_000_000 * i as u64 / args.rate.max(1));
        let (url, token) = (ws_url.clone(), account.access_token.clone());
        let (seen, ready, failed, stop) =
            (seen.clone(), ready.clone(), failed.clone(), stop.clone());
        let timeout = Duration::from_secs(args.timeout);
        tasks.push(actix_web::rt::spawn(async move {
            actix_web::rt::time::sleep_until(due.into()).await;
            let identify = async {
                let mut socket = open(&url, timeout).await?;
                send(&mut socket, json!({"op": 2, "d": {"token": token}})).await?;
                loop {
                    if next_json(&mut socket).await?["t"] == "READY" {
                        return anyhow::Ok(socket);
                    }
                }
            };
            let Ok(Ok(mut socket)) = actix_web::rt::time::timeout(timeout, identify).await else {
                failed.set(failed.get() + 1);
                return;
            };
            ready.set(ready.get() + 1);
            let mut beat = Instant::now() + Duration::from_secs(30);
            while !stop.get() {
                match tokio::time::timeout_at(beat.into(), next_json(&mut socket)).await {
                    Ok(Ok(frame)) => {
                        let kind = match frame["t"].as_str() {
                            Some("GUILD_MEMBER_ADD") => "GUILD_MEMBER_ADD",
                            Some("GUILD_MEMBER_REMOVE") => "GUILD_MEMBER_REMOVE",
                            _ => continue,
                        };
                        if let Some(user) = frame["d"]["user"]["id"].as_str() {
                            let mut seen = seen.borrow_mut();
                            let entry = seen
                                .events
                                .entry((kind, user.to_owned()))
                                .or_insert((0, Instant::now()));
                            entry.0 += 1;
                            entry.1 = Instant::now();
                        }
                    }
                    Ok(Err(_)) => return,
                    Err(_) => {
                        if send(&mut socket, json!({"op": 1, "d": null}))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        beat = Instant::now() + Duration::from_secs(30);
                    }
                }
            }
        }));
    }
    let deadline =
        Instant::now() + Duration::from_secs(args.timeout + args.members as u64 / args.rate.max(1));
    while ready.get() + failed.get() < args.members && Instant::now() < deadline {
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    let sockets_up = ready.get();
    eprintln!(
        "{sockets_up} sockets up in {:.1} s",
        opening.elapsed().as_secs_f64()
    );
    actix_web::rt::time::sleep(Duration::from_secs(args.settle)).await;

    // Pages of 100 members, after a member id (spread over the guild).
    let mut pages = Histogram::<u64>::new(3)?;
    let mut page_errors = 0;
    let ids: Vec<String> = accounts[..args.members].iter().map(id).collect();
    for i in 0..args.pages {
        let after = &ids[(i * 7919) % ids.len()];
        let url = format!("{base}/api/v1/guilds/{guild_id}/members?limit=100&after={after}");
        let begun = Instant::now();
        match request(&client, awc::http::Method::GET, url, &owner.access_token).await {
            Ok((200, body)) if body.is_array() => {
                let _ = pages.record(micros(begun.elapsed()));
            }
            _ => page_errors += 1,
        }
    }
    // Joins by invite, then kicks of the same users, one at a time. Each waits until
    // every member socket has the event of the one before (or `--timeout`): a request is
    // timed alone, not while the server and the load tool still carry 10,000 frames of
    // the previous one.
    let one_by_one = async |kind: &'static str, method: awc::http::Method, ok: u16| {
        let mut m = Measured::new()?;
        for a in &accounts[args.members..] {
            let user = id(a);
            let (url, token) = match kind {
                "GUILD_MEMBER_ADD" => (format!("{base}/api/v1/invites/{code}"), &a.access_token),
                _ => (
                    format!("{base}/api/v1/guilds/{guild_id}/members/{user}"),
                    &owner.access_token,
                ),
            };
            let begun = Instant::now();
            match request(&client, method.clone(), url, token).await {
                Ok((status, _)) if status == ok => {
                    let _ = m.latency.record(micros(begun.elapsed()));
                }
                _ => {
                    m.errors += 1;
                    continue;
                }
            }
            let key = (kind, user);
            let got = || seen.borrow().events.get(&key).copied();
            let wait_until = Instant::now() + Duration::from_secs(args.timeout);
            while got().is_none_or(|(n, _)| n < sockets_up) && Instant::now() < wait_until {
                actix_web::rt::time::sleep(Duration::from_millis(1)).await;
            }
            actix_web::rt::time::sleep(Duration::from_millis(args.gap_ms)).await;
            m.expected += sockets_up;
            if let Some((n, last)) = got() {
                m.deliveries += n;
                if n >= sockets_up {
                    let _ = m.to_last_socket.record(micros(last.duration_since(begun)));
                }
            }
        }
        anyhow::Ok(m)
    };
    let joins = one_by_one("GUILD_MEMBER_ADD", post.clone(), 200).await?;
    let kicks = one_by_one("GUILD_MEMBER_REMOVE", awc::http::Method::DELETE, 204).await?;
    stop.set(true);
    drop(tasks);
    let result = json!({
        "mode": "guild",
        "members": args.members,
        "sockets_up": sockets_up,
        "sockets_failed": failed.get(),
        "settle_seconds": args.settle,
        "gap_ms": args.gap_ms,
        "setup": {
            "registered_seconds": registered_in.as_secs_f64(),
            "joined_seconds": joined_in.as_secs_f64(),
            "join_failures": join_failures,
        },
        "member_page_ms": latency_ms(&pages),
        "member_page_errors": page_errors,
        "join": joins.json(),
        "kick": kicks.json(),
    });
    emit(&result, args.out.as_deref())
}
