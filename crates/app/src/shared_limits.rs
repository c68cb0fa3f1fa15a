//! Rate limits shared by every node: a GCRA (generic cell rate algorithm, the one
//! `governor` runs in memory) kept in Redis, one key per bucket, checked and updated by
//! one Lua script in one round trip. Redis, not PostgreSQL: a limit is checked on every
//! request, and an in-memory store answers in a fraction of a millisecond without a
//! write-ahead log, where a PostgreSQL row would add a durable write to each request.
//! When Redis does not answer within [`TIMEOUT`], the node falls back to its own
//! in-memory limits (each node then allows the limit on its own) and says so in the
//! log and in `rate_limit_fallbacks_total`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;

/// How long a check may wait for Redis before the node uses its own limits.
pub const TIMEOUT: Duration = Duration::from_millis(250);

/// One GCRA step. The stored value is the bucket's "theoretical arrival time" in
/// microseconds of Redis' own clock (so nodes' clocks never matter); the key expires
/// when the bucket is full again. Returns {allowed, remaining, retry_after_us,
/// reset_after_us}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((now - allow_at) / interval), 0, new_tat - now}
";

/// What a check decided, with what the response headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The bucket's size.
    pub limit: u32,
    /// Requests left right now.
    pub remaining: u32,
    /// When refused: how long until one more request is allowed.
    pub retry_after: Duration,
    /// How long until the bucket is full again.
    pub reset_after: Duration,
}

/// The shared store.
#[derive(Clone)]
pub struct SharedLimits {
    conn: ConnectionManager,
    script: redis::Script,
    prefix: String,
}

impl SharedLimits {
    /// Connects to `url` (`redis://host:port/db`); keys start with `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(TIMEOUT);
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| anyhow::anyhow!("Redis at RATE_LIMIT_REDIS_URL did not answer"))??;
        Ok(Self {
            conn,
            script: redis::Script::new(GCRA),
            prefix: prefix.to_owned(),
        })
    }

    /// Takes one request from bucket `key` of limiter `name`, which allows `per_minute`
    /// requests a minute, refilled evenly. `Err` when Redis did not answer in time.
    pub async fn check(
        &self,
        name: &str,
        key: &str,
        per_minute: u32,
    ) -> Result<Decision, redis::RedisError> {
        let burst = per_minute.max(1);
        let interval_us = (60_000_000 / u64::from(burst)).max(1);
        let mut conn = self.conn.clone();
        let mut invocation = self
            .script
            .key(format!("{}:ratelimit:{name}:{key}", self.prefix));
        invocation.arg(interval_us).arg(burst);
        let call = invocation.invoke_async::<(i64, i64, i64, i64)>(&mut conn);
        let (allowed, remaining, retry_us, reset_us) =
            tokio::time::timeout(TIMEOUT, call).await.map_err(|_| {
                redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
            })??;
        let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
        Ok(Decision {
            allowed: allowed == 1,
            limit: burst,
            remaining: u32::try_from(remaining).unwrap_or(0).min(burst),
            retry_after: micros(retry_us),
            reset_after: micros(reset_us),
        })
    }
}

/// Logs a fallback to the node's own limits at most once every ten seconds.
pub fn fell_back(error: &redis::RedisError) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    metrics::counter!("rate_limit_fallbacks_total").increment(1);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 10
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(%error, "shared rate limits unavailable; this node uses its own");
    }
}
