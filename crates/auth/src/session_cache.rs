//! Which sessions were live a moment ago, so that an authenticated request does not
//! ask the database every time.
//!
//! An entry is trusted only while this node LISTENs to `synctalk_session_ended`, on
//! which every transaction that ends a session (or deletes an account) notifies,
//! through triggers on `sessions` and `users` (PostgreSQL delivers the
//! notification to every node when it commits). A notification evicts the entry; a
//! lost listening connection empties the cache and turns it off until the node LISTENs
//! again. A check that raced a notification does not store what it read (the
//! generation counter), and entries live at most `ttl`. A session ended on another
//! node therefore stops working here within the notification's delivery (a
//! millisecond on a LAN), as its sockets do.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::StreamExt;
use synctalk_kernel::{SessionId, UserId};

use synctalk_db::SESSION_ENDED_CHANNEL as CHANNEL;

/// How often a node pings its own listening connection.
const PING_EVERY: Duration = Duration::from_secs(2);

/// Sessions seen live, trusted while this node listens.
#[derive(Debug)]
pub struct SessionCache {
    ttl: Duration,
    entries: Mutex<HashMap<SessionId, (UserId, Instant)>>,
    listening: AtomicBool,
    generation: AtomicU64,
}

impl SessionCache {
    /// A cache whose entries live `ttl` (zero: never used).
    pub fn new(ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
            listening: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        })
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, (UserId, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `session` of `user` was seen live within the ttl, and may be trusted.
    pub fn is_live(&self, session: SessionId, user: UserId) -> bool {
        if !self.listening.load(Ordering::Acquire) {
            return false;
        }
        self.entries()
            .get(&session)
            .is_some_and(|(owner, at)| *owner == user && at.elapsed() < self.ttl)
    }

    /// Read before asking the database; hand back to [`Self::remember`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remembers that the database said `session` is live, unless a session ended
    /// since `generation` was read (what was read may be stale then).
    pub fn remember(&self, session: SessionId, user: UserId, generation: u64) {
        if self.ttl.is_zero() || !self.listening.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self.entries();
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= 100_000 {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        entries.insert(session, (user, Instant::now()));
    }

    /// Forgets `session` (it ended).
    pub fn evict(&self, session: SessionId) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(&session);
    }

    fn stop_trusting(&self) {
        let mut entries = self.entries();
        self.listening.store(false, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// Listens for ended sessions on `url` for as long as the process runs, reconnecting
    /// after a loss (the cache is off meanwhile).
    pub async fn listen(self: Arc<Self>, url: String, pool: synctalk_db::Pool) {
        if self.ttl.is_zero() {
            return;
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.listen_once(&url, &pool).await {
                Ok(()) => tracing::warn!("session listener ended; reconnecting"),
                Err(error) => tracing::warn!(%error, "session listener failed; reconnecting"),
            }
            self.stop_trusting();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn listen_once(&self, url: &str, pool: &synctalk_db::Pool) -> anyhow::Result<()> {
        use diesel_async::RunQueryDsl;
        let mut conn = AsyncPgConnection::establish(url).await?;
        diesel::sql_query(format!("LISTEN {CHANNEL}"))
            .execute(&mut conn)
            .await?;
        // Whatever ended before LISTEN took effect was checked in the database: start
        // empty.
        {
            let mut entries = self.entries();
            self.generation.fetch_add(1, Ordering::AcqRel);
            entries.clear();
            self.listening.store(true, Ordering::Release);
        }
        // A connection can also fail silently (a half-open TCP connection, a proxy that
        // drops notifications): every PING_EVERY this node notifies the channel itself,
        // through the pool, and stops trusting the cache when nothing was heard for
        // three of those.
        let mut heard = Instant::now();
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut notifications = std::pin::pin!(conn.notifications_stream());
        loop {
            tokio::select! {
                notification = notifications.next() => {
                    let Some(notification) = notification else {
                        return Ok(());
                    };
                    let notification = notification?;
                    heard = Instant::now();
                    let payload = notification.payload.as_str();
                    let id = |prefix: &str| payload.strip_prefix(prefix).and_then(|id| id.parse().ok());
                    if let Some(id) = id("session:") {
                        self.evict(SessionId(id));
                    } else if let Some(id) = id("user:") {
                        self.evict_user(UserId(id));
                    } else if payload != "ping" {
                        self.forget_all();
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() > 3 * PING_EVERY {
                        anyhow::bail!("nothing heard on {CHANNEL} for {:?}", heard.elapsed());
                    }
                    if let Ok(mut conn) = synctalk_db::conn(pool).await {
                        let _ = synctalk_db::notify_session_channel(&mut conn, "ping").await;
                    }
                }
            }
        }
    }

    /// Forgets every session of `user` (the account is gone).
    pub fn evict_user(&self, user: UserId) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.retain(|_, (owner, _)| *owner != user);
    }

    /// An unreadable notification: drop everything (and keep listening).
    fn forget_all(&self) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}
