//! `synctalk-load writes`: request throughput from closed-loop clients.
//!
//! Registers `--users` accounts (or reads them from `--accounts`), then runs
//! `--clients` closed-loop clients, each with one keep-alive connection and one
//! account, sending one kind of request (`--request`) back to back: a warm-up, then a
//! fixed measurement window. A request counts in the window when it completes inside
//! it. Every loop is bounded by the window and the request timeout.
//! - `profile`: `PATCH /api/v1/users/@me` (one users UPDATE and one outbox append of two
//!   events, in one transaction);
//! - `send`: `POST /api/v1/channels/{id}/messages` into the account's own channel (each
//!   account makes a guild when registered), so concurrent sends go to different
//!   channels;
//! - `history`: `GET /api/v1/channels/{id}/messages?limit=50` of the account's channel,
//!   which holds `--seed` messages sent when the account was registered.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use crate::{Account, emit, latency_ms, micros, register_user};

/// The request the clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Request {
    Profile,
    Send,
    History,
}

#[derive(Debug, clap::Args)]
pub(crate) struct WritesArgs {
    /// The request the clients send.
    #[arg(long, value_enum, default_value = "profile")]
    request: Request,
    /// Messages sent into each account's channel when it is registered (`history`).
    #[arg(long, default_value_t = 100)]
    seed: usize,
    /// Server base URL (`http://127.0.0.1:8080`).
    #[arg(long)]
    url: String,
    /// Accounts to register (ignored when --accounts names an existing file).
    #[arg(long, default_value_t = 32)]
    users: usize,
    /// Concurrent clients (client i writes as account i mod the number of accounts).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Measurement window, in seconds.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Warm-up before the window, in seconds (requests run but are not counted).
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Unique prefix for the usernames this run registers.
    #[arg(long, default_value = "writes")]
    prefix: String,
    /// Accounts file (JSON): read when it exists instead of registering, else written
    /// after registering.
    #[arg(long)]
    accounts: Option<PathBuf>,
    /// Only register the accounts (and write --accounts); send no load.
    #[arg(long)]
    register_only: bool,
    /// Per-request timeout, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Write the JSON results here.
    #[arg(long)]
    out: Option<String>,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    warmup_ok: u64,
    warmup_errors: u64,
    samples: Vec<String>,
}

impl Tally {
    fn error(&mut self, counted: bool, what: String) {
        if counted {
            self.errors += 1;
        } else {
            self.warmup_errors += 1;
        }
        if self.samples.len() < 5 {
            self.samples.push(what);
        }
    }
}

async fn accounts(args: &WritesArgs) -> anyhow::Result<Vec<Account>> {
    if let Some(path) = &args.accounts
        && path.exists()
    {
        let list: Vec<Account> = serde_json::from_slice(&std::fs::read(path)?)?;
        anyhow::ensure!(!list.is_empty(), "{}: no accounts", path.display());
        return Ok(list);
    }
    let started = Instant::now();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .finish();
    let mut list = Vec::with_capacity(args.users);
    for i in 0..args.users.max(1) {
        let mut account =
            register_user(&client, &args.url, &format!("{}_{i}", args.prefix)).await?;
        if args.request != Request::Profile {
            account.channel_id = Some(own_channel(&client, &args.url, &account).await?);
        }
        if args.request == Request::History {
            let url = format!(
                "{}/api/v1/channels/{}/messages",
                args.url,
                account.channel_id.as_deref().unwrap_or_default()
            );
            for n in 0..args.seed {
                let body = json!({"content": format!("history {i} {n}: some words to read")});
                let res = client
                    .post(&url)
                    .bearer_auth(&account.access_token)
                    .send_json(&body)
                    .await
                    .map_err(|e| anyhow::anyhow!("seed: {e}"))?;
                anyhow::ensure!(res.status().is_success(), "seed: {}", res.status());
            }
        }
        list.push(account);
    }
    eprintln!(
        "registered {} users in {:.1} s",
        list.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &args.accounts {
        std::fs::write(path, serde_json::to_vec_pretty(&list)?)?;
    }
    Ok(list)
}

/// Makes a guild owned by `account`; returns its text channel's id.
async fn own_channel(
    client: &awc::Client,
    base: &str,
    account: &Account,
) -> anyhow::Result<String> {
    let mut res = client
        .post(format!("{base}/api/v1/guilds"))
        .bearer_auth(&account.access_token)
        .send_json(&json!({"name": format!("{}'s", account.username)}))
        .await
        .map_err(|e| anyhow::anyhow!("guild: {e}"))?;
    let guild: serde_json::Value = res
        .json()
        .await
        .map_err(|e| anyhow::anyhow!("guild: {e}"))?;
    let id = guild["id"].as_str().unwrap_or_default();
    let mut res = client
        .get(format!("{base}/api/v1/guilds/{id}/channels"))
        .bearer_auth(&account.access_token)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("channels: {e}"))?;
    let channels: serde_json::Value = res
        .json()
        .await
        .map_err(|e| anyhow::anyhow!("channels: {e}"))?;
    channels
        .as_array()
        .and_then(|list| list.iter().find(|c| c["name"] == "general"))
        .and_then(|c| c["id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no channel in {guild}"))
}

pub(crate) async fn run(args: WritesArgs) -> anyhow::Result<()> {
    let accounts = accounts(&args).await?;
    if args.register_only {
        return Ok(());
    }
    let histogram = Rc::new(RefCell::new(Histogram::<u64>::new_with_bounds(
        1,
        120_000_000,
        3,
    )?));
    let tally = Rc::new(RefCell::new(Tally::default()));
    let timeout = Duration::from_secs(args.timeout);
    let begun = Instant::now();
    let window_start = begun + Duration::from_secs(args.warmup);
    let window_end = window_start + Duration::from_secs(args.duration);
    let request = args.request;
    let mut tasks = Vec::with_capacity(args.clients);
    for c in 0..args.clients {
        let account = &accounts[c % accounts.len()];
        let token = account.access_token.clone();
        let channel = account.channel_id.clone().unwrap_or_default();
        let url = match request {
            Request::Profile => format!("{}/api/v1/users/@me", args.url),
            Request::Send => format!("{}/api/v1/channels/{channel}/messages", args.url),
            Request::History => {
                format!("{}/api/v1/channels/{channel}/messages?limit=50", args.url)
            }
        };
        let (histogram, tally) = (histogram.clone(), tally.clone());
        tasks.push(actix_web::rt::spawn(async move {
            // One client each: its own keep-alive connection.
            let client = awc::Client::builder().timeout(timeout).finish();
            let mut n: u64 = 0;
            while Instant::now() < window_end {
                n += 1;
                let sent = Instant::now();
                let response = match request {
                    Request::Profile => {
                        let body = json!({"bio": format!("bench {c} {n}")});
                        client
                            .patch(&url)
                            .bearer_auth(&token)
                            .send_json(&body)
                            .await
                    }
                    Request::Send => {
                        let body = json!({"content": format!("bench {c} {n}")});
                        client.post(&url).bearer_auth(&token).send_json(&body).await
                    }
                    Request::History => client.get(&url).bearer_auth(&token).send().await,
                };
                let outcome = match response {
                    Ok(mut res) => {
                        let status = res.status();
                        // Read the body whole so the connection is reused.
                        match res.body().limit(1 << 20).await {
                            Ok(_) if status.is_success() => Ok(()),
                            Ok(body) => Err(format!(
                                "{status}: {}",
                                String::from_utf8_lossy(&body[..body.len().min(200)])
                            )),
                            Err(e) => Err(format!("{status}: body: {e}")),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                };
                let done = Instant::now();
                let counted = done >= window_start && done <= window_end;
                match outcome {
                    Ok(()) if counted => {
                        tally.borrow_mut().ok += 1;
                        let _ = histogram.borrow_mut().record(micros(done - sent));
                    }
                    Ok(()) => {
                        if done < window_start {
                            tally.borrow_mut().warmup_ok += 1;
                        }
                    }
                    Err(what) => {
                        tally.borrow_mut().error(counted, what);
                        // Do not spin on a refused connection.
                        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = actix_web::rt::time::timeout(timeout + Duration::from_secs(5), task).await;
    }
    let h = histogram.borrow();
    let t = tally.borrow();
    let window = window_end.duration_since(window_start).as_secs_f64();
    let result = json!({
        "mode": "writes",
        "request": format!("{request:?}").to_lowercase(),
        "url": args.url,
        "users": accounts.len(),
        "clients": args.clients,
        "warmup_seconds": args.warmup,
        "duration_seconds": window,
        "requests": t.ok,
        "errors": t.errors,
        "warmup_requests": t.warmup_ok,
        "warmup_errors": t.warmup_errors,
        "error_samples": t.samples,
        "requests_per_second": t.ok as f64 / window,
        "latency_ms": latency_ms(&h),
    });
    emit(&result, args.out.as_deref())?;
    if t.ok == 0 {
        anyhow::bail!("no request succeeded");
    }
    Ok(())
}
