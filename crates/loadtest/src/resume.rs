//! `synctalk-load resume-big`: resuming sessions that were away while the outbox grew
//! by a million rows.
//!
//! 1. Registers one user and opens `--sessions` gateway sessions (HELLO, IDENTIFY,
//!    READY), each then dropped without a close frame, so each stays resumable.
//! 2. On the server's database (port and password from its data dir) appends `--rows`
//!    outbox rows for other users' topics in one statement, then sends `--events`
//!    `PATCH /users/@me` for this user, and waits until the relay has published
//!    everything and the node has applied it.
//! 3. Resumes each session once, from `seq` 0, timing RESUME to RESUMED, and checks that
//!    exactly the `--events` USER_UPDATE dispatches, `s` 1..=events, came before it;
//!    with `--vacuum-after n`, the outbox is vacuumed after the first n resumes, so the
//!    results show both states. Each resume notes whether an autovacuum of the outbox
//!    was running at the time.
//!
//! Every wait is bounded; it only talks to the URL and database port given.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::{Account, emit, latency_ms, micros, register_user};

#[derive(Debug, clap::Args)]
pub(crate) struct ResumeArgs {
    /// Server base URL (`http://127.0.0.1:8080`).
    #[arg(long)]
    url: String,
    /// The server's data dir, holding its PostgreSQL cluster's `port` and `password`.
    #[arg(long)]
    data_dir: PathBuf,
    /// Outbox rows to append for other topics while the sessions are away.
    #[arg(long, default_value_t = 1_000_000)]
    rows: i64,
    /// Events written for the user while its sessions are away.
    #[arg(long, default_value_t = 5)]
    events: usize,
    /// Sessions to open, drop and resume (one measurement each).
    #[arg(long, default_value_t = 20)]
    sessions: usize,
    /// After this many resumes, `VACUUM (ANALYZE) outbox` and resume the rest: the
    /// first ones see the outbox right after it was published (every row the relay
    /// numbered still has a dead version), the rest see it as after autovacuum.
    #[arg(long)]
    vacuum_after: Option<usize>,
    /// Append the rows already published (positions right after the relay's cursor,
    /// moved in the same transaction) instead of letting the relay number them.
    #[arg(long)]
    prepublished: bool,
    /// Unique prefix for the username.
    #[arg(long, default_value = "resume")]
    prefix: String,
    /// Timeout for one connection, request or resume, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// How long to wait for the relay to publish the rows, in seconds.
    #[arg(long, default_value_t = 900)]
    publish_timeout: u64,
    /// Write the JSON results here.
    #[arg(long)]
    out: Option<String>,
}

pub(crate) type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// The next JSON text frame.
pub(crate) async fn next_json(socket: &mut Socket) -> anyhow::Result<Value> {
    loop {
        match socket.next().await {
            Some(Ok(awc::ws::Frame::Text(text))) => return Ok(serde_json::from_slice(&text)?),
            Some(Ok(awc::ws::Frame::Close(reason))) => anyhow::bail!("closed: {reason:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => anyhow::bail!("socket error: {e}"),
            None => anyhow::bail!("closed"),
        }
    }
}

/// The loopback address the next socket connects from. Tens of thousands of sockets
/// from one address to one server port make the kernel search its whole ephemeral
/// port range for each connect (most of the load tool's time went there, and the
/// server, waiting for request heads, answered 408); spread over 200 addresses, as
/// clients on many hosts would be.
fn next_source() -> std::net::IpAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 200;
    std::net::Ipv4Addr::new(127, 0, 1, u8::try_from(n).unwrap_or(0) + 1).into()
}

/// Connects from one of many loopback addresses.
pub(crate) async fn connect(url: &str, timeout: Duration) -> anyhow::Result<Socket> {
    let client = awc::Client::builder()
        .connector(awc::Connector::new().local_address(next_source()))
        .timeout(timeout)
        .finish();
    let (_, socket) = client
        .ws(url)
        .max_frame_size(1 << 20)
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("connect: {e:?}"))?;
    Ok(socket)
}

/// Connects (from one of many loopback addresses) and reads HELLO.
pub(crate) async fn open(url: &str, timeout: Duration) -> anyhow::Result<Socket> {
    let mut socket = connect(url, timeout).await?;
    let hello = next_json(&mut socket).await?;
    anyhow::ensure!(hello["op"] == 10, "expected HELLO, got {hello}");
    Ok(socket)
}

pub(crate) async fn send(socket: &mut Socket, frame: Value) -> anyhow::Result<()> {
    socket
        .send(awc::ws::Message::Text(frame.to_string().into()))
        .await?;
    Ok(())
}

/// Opens a session and drops its socket without a close frame; returns its id.
async fn identify_and_drop(url: &str, token: &str, timeout: Duration) -> anyhow::Result<String> {
    let mut socket = open(url, timeout).await?;
    send(&mut socket, json!({"op": 2, "d": {"token": token}})).await?;
    loop {
        let frame = next_json(&mut socket).await?;
        if frame["op"] == 9 {
            anyhow::bail!("IDENTIFY refused: {frame}");
        }
        if frame["t"] == "READY" {
            let id = frame["d"]["session_id"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("READY without session_id: {frame}"))?;
            // Dropping the socket closes the TCP connection with no close frame: the
            // session stays resumable.
            drop(socket);
            return Ok(id.to_owned());
        }
    }
}

/// One resume: the dispatches before RESUMED, and how long it took.
struct Resumed {
    events: Vec<(String, Option<i64>)>,
    connect_to_resumed: Duration,
    resume_to_resumed: Duration,
}

async fn resume_once(
    url: &str,
    token: &str,
    session_id: &str,
    timeout: Duration,
) -> anyhow::Result<Resumed> {
    let begun = Instant::now();
    let mut socket = open(url, timeout).await?;
    let sent = Instant::now();
    send(
        &mut socket,
        json!({"op": 6, "d": {"token": token, "session_id": session_id, "seq": 0}}),
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
            )),
            Some(9) => anyhow::bail!("RESUME refused: {frame}"),
            _ => {}
        }
    }
    let done = Instant::now();
    // A clean close ends the session.
    let _ = socket
        .send(awc::ws::Message::Close(Some(
            awc::ws::CloseCode::Normal.into(),
        )))
        .await;
    Ok(Resumed {
        events,
        connect_to_resumed: done - begun,
        resume_to_resumed: done - sent,
    })
}

pub(crate) async fn database(data_dir: &std::path::Path) -> anyhow::Result<tokio_postgres::Client> {
    let read = |name: &str| -> anyhow::Result<String> {
        let path = data_dir.join(name);
        Ok(std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            .trim()
            .to_owned())
    };
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(read("port")?.parse()?)
        .user("synctalk")
        .password(read("password")?)
        .dbname("synctalk");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    actix_web::rt::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("database connection: {e}");
        }
    });
    Ok(client)
}

/// Appends `rows` outbox rows for random users' topics, unpublished (the relay numbers
/// them) or published (numbered right after the cursor, which moves past them).
async fn seed(db: &mut tokio_postgres::Client, rows: i64, published: bool) -> anyhow::Result<()> {
    const ROWS: &str = "SELECT 'user:' || gen_random_uuid(), 'event', 'users', 'USER_UPDATE', \
                        json_build_object('n', g, 'bio', 'away') \
                        FROM generate_series(1, $1::bigint) AS g";
    if !published {
        db.execute(
            &format!("INSERT INTO outbox (topic, kind, domain, name, payload) {ROWS}"),
            &[&rows],
        )
        .await?;
        return Ok(());
    }
    let tx = db.transaction().await?;
    // The relay numbers under this lock too, so positions stay unique and gap-free.
    let cursor: i64 = tx
        .query_one(
            "SELECT position FROM outbox_relay WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await?
        .get(0);
    tx.execute(
        "WITH written AS ( \
           INSERT INTO outbox (topic, kind, domain, name, payload) \
           SELECT 'user:' || gen_random_uuid(), 'event', 'users', 'USER_UPDATE', \
                  json_build_object('n', g, 'bio', 'away') \
           FROM generate_series(1, $1::bigint) AS g RETURNING id, topic \
         ) \
         INSERT INTO outbox_published (id, position, topic) \
         SELECT id, $2::bigint + row_number() OVER (ORDER BY id), topic FROM written",
        &[&rows, &cursor],
    )
    .await?;
    tx.execute(
        "UPDATE outbox_relay SET position = position + $1::bigint WHERE id = 1",
        &[&rows],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) struct Progress {
    pub(crate) unpublished: i64,
    pub(crate) head: i64,
    pub(crate) node: Option<i64>,
}

pub(crate) async fn progress(db: &tokio_postgres::Client) -> anyhow::Result<Progress> {
    let row = db
        .query_one(
            // Two counts of index ranges above the relay's floor (a row's published
            // mark is a row of outbox_published with its id): asking row by row took a
            // second over a million rows, on the core the relay numbers them on.
            "SELECT (SELECT count(*) FROM outbox o \
                     WHERE o.id > (SELECT floor FROM outbox_relay WHERE id = 1)) \
                  - (SELECT count(*) FROM outbox_published p \
                     WHERE p.id > (SELECT floor FROM outbox_relay WHERE id = 1)), \
                    (SELECT position FROM outbox_relay WHERE id = 1), \
                    (SELECT min(position) FROM gateway_nodes \
                      WHERE last_seen_at > now() - interval '30 seconds')",
            &[],
        )
        .await?;
    Ok(Progress {
        unpublished: row.get(0),
        head: row.get(1),
        node: row.get(2),
    })
}

pub(crate) async fn patch(
    client: &awc::Client,
    base: &str,
    account: &Account,
    bio: &str,
) -> anyhow::Result<()> {
    let mut res = client
        .patch(format!("{base}/api/v1/users/@me"))
        .bearer_auth(&account.access_token)
        .send_json(&json!({ "bio": bio }))
        .await
        .map_err(|e| anyhow::anyhow!("PATCH /users/@me: {e}"))?;
    let body = res
        .body()
        .await
        .map_err(|e| anyhow::anyhow!("PATCH body: {e}"))?;
    anyhow::ensure!(
        res.status().is_success(),
        "PATCH /users/@me: {}: {}",
        res.status(),
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

pub(crate) async fn run(args: ResumeArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout);
    let http = awc::Client::builder().timeout(timeout).finish();
    let gateway = format!("{}/gateway/users", args.url.replacen("http", "ws", 1));
    let account = register_user(&http, &args.url, &format!("{}_user", args.prefix)).await?;
    let token = account.access_token.clone();

    let mut sessions = Vec::with_capacity(args.sessions);
    for _ in 0..args.sessions {
        sessions.push(identify_and_drop(&gateway, &token, timeout).await?);
    }
    let away_since = Instant::now();
    eprintln!("{} sessions opened and dropped", sessions.len());

    let mut db = database(&args.data_dir).await?;
    let before = progress(&db).await?;
    let seeding = Instant::now();
    seed(&mut db, args.rows, args.prepublished).await?;
    let seed_seconds = seeding.elapsed().as_secs_f64();
    eprintln!("appended {} outbox rows in {seed_seconds:.1} s", args.rows);

    for i in 1..=args.events {
        patch(&http, &args.url, &account, &format!("away {i}")).await?;
    }

    // Wait until the relay has published everything and the node has applied it (the
    // node reports how far it got on its 5 s heartbeat).
    let publishing = Instant::now();
    let deadline = publishing + Duration::from_secs(args.publish_timeout);
    let mut relay_done: Option<f64> = None;
    let mut last_report = Instant::now();
    let after = loop {
        let now = progress(&db).await?;
        if now.unpublished == 0 && relay_done.is_none() {
            relay_done = Some(publishing.elapsed().as_secs_f64());
        }
        if now.unpublished == 0 && now.node.is_some_and(|n| n >= now.head) {
            break now;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not published after {} s: {} unpublished, head {}, node {:?}",
            args.publish_timeout,
            now.unpublished,
            now.head,
            now.node
        );
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "publishing: {} unpublished, head {}, node {:?}",
                now.unpublished, now.head, now.node
            );
        }
        // Each look counts about a million index entries (0.2 s of the relay's core
        // before a vacuum): once a second, so the count measures the relay rather than
        // slowing it.
        actix_web::rt::time::sleep(Duration::from_secs(1)).await;
    };
    let applied_seconds = publishing.elapsed().as_secs_f64();
    let outbox_rows: i64 = db
        .query_one("SELECT count(*) FROM outbox", &[])
        .await?
        .get(0);
    let bases: Vec<i64> = db
        .query(
            "SELECT base_position FROM gateway_sessions WHERE id::text = ANY($1)",
            &[&sessions],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    // Whether autovacuum already cleaned the outbox up (its dead row versions and index
    // entries decide how much a resume's scans skip).
    let autovacuums: i64 = db
        .query_one(
            "SELECT coalesce(sum(autovacuum_count), 0)::bigint FROM pg_stat_user_tables \
             WHERE relname = 'outbox'",
            &[],
        )
        .await?
        .get(0);
    eprintln!(
        "published: head {} (was {}), {outbox_rows} outbox rows; resuming",
        after.head, before.head
    );

    let away_seconds = away_since.elapsed().as_secs_f64();
    let histogram = || Histogram::<u64>::new_with_bounds(1, 120_000_000, 3);
    let (mut resume_h, mut connect_h) = (histogram()?, histogram()?);
    // Per phase: before and after the VACUUM.
    let mut phase_h = [histogram()?, histogram()?];
    let mut vacuum_seconds = None;
    let expected: Vec<(String, Option<i64>)> = (1..=args.events)
        .map(|s| ("USER_UPDATE".to_owned(), i64::try_from(s).ok()))
        .collect();
    let mut runs = Vec::with_capacity(sessions.len());
    let mut failures = 0;
    for (i, session) in sessions.iter().enumerate() {
        if args.vacuum_after == Some(i) {
            let vacuuming = Instant::now();
            db.batch_execute("VACUUM (ANALYZE) outbox, outbox_published")
                .await?;
            vacuum_seconds = Some(vacuuming.elapsed().as_secs_f64());
            eprintln!(
                "vacuumed the outbox in {:.1} s",
                vacuuming.elapsed().as_secs_f64()
            );
        }
        let phase = usize::from(vacuum_seconds.is_some());
        let autovacuum: bool = db
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_progress_vacuum p \
                   JOIN pg_class c ON c.oid = p.relid WHERE c.relname = 'outbox')",
                &[],
            )
            .await?
            .get(0);
        let outcome =
            actix_web::rt::time::timeout(timeout, resume_once(&gateway, &token, session, timeout))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("no RESUMED within {} s", args.timeout)));
        match outcome {
            Ok(r) => {
                let ok = r.events == expected;
                if ok {
                    let _ = resume_h.record(micros(r.resume_to_resumed));
                    let _ = connect_h.record(micros(r.connect_to_resumed));
                    let _ = phase_h[phase].record(micros(r.resume_to_resumed));
                } else {
                    failures += 1;
                }
                runs.push(json!({
                    "session_id": session,
                    "ok": ok,
                    "after_vacuum": phase == 1,
                    "autovacuum_running": autovacuum,
                    "resume_ms": r.resume_to_resumed.as_secs_f64() * 1000.0,
                    "connect_to_resumed_ms": r.connect_to_resumed.as_secs_f64() * 1000.0,
                    "events": r.events.iter().map(|(t, s)| json!({"t": t, "s": s})).collect::<Vec<_>>(),
                }));
            }
            Err(error) => {
                failures += 1;
                runs.push(json!({
                    "session_id": session,
                    "ok": false,
                    "after_vacuum": phase == 1,
                    "autovacuum_running": autovacuum,
                    "error": error.to_string(),
                }));
            }
        }
    }

    let result = json!({
        "mode": "resume-big",
        "url": args.url,
        "rows_appended": args.rows,
        "prepublished": args.prepublished,
        "events": args.events,
        "sessions": sessions.len(),
        "failures": failures,
        "seed_seconds": seed_seconds,
        "relay_published_seconds": relay_done,
        "node_applied_seconds": applied_seconds,
        "away_seconds": away_seconds,
        "outbox_rows": outbox_rows,
        "outbox_autovacuums_before_resumes": autovacuums,
        "head_before": before.head,
        "head_after": after.head,
        "replay_span_positions": bases.iter().min().map(|b| after.head - b),
        "resume_ms": latency_ms(&resume_h),
        "vacuum_after": args.vacuum_after,
        "vacuum_seconds": vacuum_seconds,
        "resume_ms_before_vacuum": latency_ms(&phase_h[0]),
        "resume_ms_after_vacuum": latency_ms(&phase_h[1]),
        "connect_to_resumed_ms": latency_ms(&connect_h),
        "runs": runs,
    });
    emit(&result, args.out.as_deref())?;
    anyhow::ensure!(
        failures == 0,
        "{failures} of {} resumes failed or got the wrong events",
        sessions.len()
    );
    Ok(())
}
