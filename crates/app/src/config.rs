//! Typed, layered configuration: defaults, then an optional `.env` file, then
//! environment variables, then command-line flags. `synctalk --help` lists every
//! setting with its variable; secrets are never printed.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use synctalk_kernel::Secret;

/// SyncTalk: a real-time chat backend.
#[derive(Debug, Parser)]
#[command(name = "synctalk", version, about = "SyncTalk: a real-time chat backend. Every setting below is also read from its environment variable (and from a .env file).", long_about = None)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server settings.
    #[command(flatten)]
    pub settings: Settings,
}

/// What the binary does.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Print the OpenAPI document (what `openapi/openapi.json` holds) and exit.
    Openapi,
    /// Run pending migrations and exit.
    Migrate,
}

/// Deployment environment: decides defaults that differ between a laptop and
/// production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    /// Swagger UI on; a JWT secret is generated under the data dir when none is set.
    Development,
    /// Swagger UI off unless asked for; JWT_SECRET is required.
    Production,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Every setting of the server.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Deployment environment.
    #[arg(long, env = "SYNCTALK_ENV", value_enum, default_value = "development")]
    pub environment: Environment,
    /// Address to listen on.
    #[arg(long, env = "SYNCTALK_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "SYNCTALK_PORT", default_value_t = 8080)]
    pub port: u16,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "SYNCTALK_WORKERS")]
    pub workers: Option<usize>,
    /// PostgreSQL URL. When unset, SyncTalk starts its own cluster under the data dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// Where the self-managed PostgreSQL cluster (and a generated dev JWT secret) live.
    #[arg(long, env = "SYNCTALK_DATA_DIR", default_value = ".data")]
    pub data_dir: PathBuf,
    /// Run pending migrations at start-up.
    #[arg(long, env = "SYNCTALK_AUTO_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_migrate: bool,
    /// Largest number of pooled database connections.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: usize,
    /// How long to wait for a database connection, in seconds.
    #[arg(long, env = "DATABASE_TIMEOUT_SECS", default_value_t = 5)]
    pub database_timeout_secs: u64,
    /// Longest a statement may run, in milliseconds (`statement_timeout`).
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT_MS", default_value_t = 30_000)]
    pub database_statement_timeout_ms: u64,
    /// Longest a statement may wait for a lock, in milliseconds (`lock_timeout`).
    #[arg(long, env = "DATABASE_LOCK_TIMEOUT_MS", default_value_t = 10_000)]
    pub database_lock_timeout_ms: u64,
    /// HS256 secret for access tokens, at least 32 bytes. Required in production.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// Access-token lifetime, in seconds.
    #[arg(long, env = "ACCESS_TOKEN_TTL_SECS", default_value_t = 900)]
    pub access_token_ttl_secs: u64,
    /// Session lifetime without a refresh, in seconds (default 30 days).
    #[arg(long, env = "REFRESH_TOKEN_TTL_SECS", default_value_t = 2_592_000)]
    pub refresh_token_ttl_secs: u64,
    /// Seconds after a refresh during which the same refresh token, sent again (a retry
    /// whose answer was lost), gets the same new token instead of ending the session.
    /// Reuse after that ends the session. 0 turns the grace off.
    #[arg(long, env = "REFRESH_REUSE_GRACE_SECS", default_value_t = 10)]
    pub refresh_reuse_grace_secs: u64,
    /// Sign-in attempts in a row without a success, per login and client address,
    /// before the next one must wait (429 with `Retry-After`): 1 second after this many,
    /// doubling with each further attempt. Shared by every node (PostgreSQL).
    #[arg(long, env = "LOGIN_FREE_FAILURES", default_value_t = 5)]
    pub login_free_failures: u32,
    /// The longest wait after failed sign-ins, in seconds.
    #[arg(long, env = "LOGIN_MAX_DELAY_SECS", default_value_t = 60)]
    pub login_max_delay_secs: u64,
    /// Seconds a session seen live is trusted without asking the database again, while
    /// the node listens for ended sessions (PostgreSQL LISTEN); 0 asks every time.
    #[arg(long, env = "SESSION_CACHE_SECS", default_value_t = 10)]
    pub session_cache_secs: u64,
    /// Argon2id memory cost, in KiB.
    #[arg(long, env = "ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    pub argon2_memory_kib: u32,
    /// Argon2id iterations.
    #[arg(long, env = "ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,
    /// Argon2id parallelism.
    #[arg(long, env = "ARGON2_PARALLELISM", default_value_t = 1)]
    pub argon2_parallelism: u32,
    /// Password hashes computed at once (each holds ARGON2_MEMORY_KIB and a blocking
    /// thread); default: the CPUs.
    #[arg(long, env = "ARGON2_MAX_CONCURRENT")]
    pub argon2_max_concurrent: Option<usize>,
    /// Password checks that may wait for a turn; beyond that register, login and
    /// password changes answer 503 with Retry-After.
    #[arg(long, env = "ARGON2_MAX_WAITING", default_value_t = 64)]
    pub argon2_max_waiting: usize,
    /// Requests per minute per IP on register, login and refresh.
    #[arg(long, env = "RATE_LIMIT_AUTH_PER_MINUTE", default_value_t = 20)]
    pub rate_limit_auth_per_minute: u32,
    /// Requests per minute per user (per IP when unauthenticated) on other routes.
    #[arg(long, env = "RATE_LIMIT_USER_PER_MINUTE", default_value_t = 600)]
    pub rate_limit_user_per_minute: u32,
    /// Redis for rate limits shared by every node (`redis://host:6379/0`). Unset: each
    /// node keeps its own limits in memory, so N nodes allow N times each limit.
    #[arg(long, env = "RATE_LIMIT_REDIS_URL", hide_env_values = true)]
    pub rate_limit_redis_url: Option<Secret>,
    /// Prefix of the rate-limit keys in Redis (deployments sharing one Redis differ).
    #[arg(long, env = "RATE_LIMIT_REDIS_PREFIX", default_value = "synctalk")]
    pub rate_limit_redis_prefix: String,
    /// Gateway sockets one user may have on one node; IDENTIFY beyond it closes 4008.
    #[arg(long, env = "GATEWAY_MAX_SOCKETS_PER_USER", default_value_t = 100)]
    pub gateway_max_sockets_per_user: u32,
    /// Gateway connections (WebSocket upgrades) per minute per IP.
    #[arg(long, env = "GATEWAY_CONNECTS_PER_MINUTE", default_value_t = 300)]
    pub gateway_connects_per_minute: u32,
    /// Where attachments' bytes go: a directory, or `s3://bucket` for S3 or an
    /// S3-compatible service (credentials, region and endpoint from the usual `AWS_*`
    /// variables). Unset: `attachments/` under the data dir.
    #[arg(long, env = "ATTACHMENTS_STORE")]
    pub attachments_store: Option<String>,
    /// The VAPID key that signs Web Push requests: base64url of a P-256 private key in
    /// PKCS#8 DER. Unset: in development one is made once and kept under the data dir;
    /// in production Web Push is off. Every node of a deployment must share it.
    #[arg(long, env = "VAPID_PRIVATE_KEY", hide_env_values = true)]
    pub vapid_private_key: Option<Secret>,
    /// Who push services may contact about our pushes (`mailto:` or `https:`).
    #[arg(
        long,
        env = "VAPID_SUBJECT",
        default_value = "mailto:push@synctalk.invalid"
    )]
    pub vapid_subject: String,
    /// Largest upload, in bytes.
    #[arg(long, env = "UPLOAD_MAX_BYTES", default_value_t = 25 * 1024 * 1024)]
    pub upload_max_bytes: u64,
    /// Largest JSON body, in bytes.
    #[arg(long, env = "JSON_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub json_body_limit: usize,
    /// Memory for channels' newest messages, kept rendered for history pages, in MiB
    /// (0: every page read from the database).
    #[arg(long, env = "MESSAGE_CACHE_MB", default_value_t = 64)]
    pub message_cache_mb: u64,
    /// Serve Swagger UI at /docs (default: on in development, off in production).
    #[arg(long, env = "SYNCTALK_DOCS", action = clap::ArgAction::Set)]
    pub docs: Option<bool>,
    /// The load balancers whose X-Forwarded-For / Forwarded entries are believed:
    /// comma-separated addresses or CIDR ranges. Empty: clients are the sockets' peers.
    #[arg(
        long,
        env = "TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub trusted_proxies: Vec<String>,
    /// NATS server URL: turns on the multi-node bus. Unset: one node, in-process bus.
    #[arg(long, env = "NATS_URL", hide_env_values = true)]
    pub nats_url: Option<Secret>,
    /// Subject prefix on NATS (nodes of one deployment share it).
    #[arg(long, env = "NATS_SUBJECT_PREFIX", default_value = "synctalk")]
    pub nats_subject_prefix: String,
    /// How often gateway clients must heartbeat, in milliseconds.
    #[arg(long, env = "GATEWAY_HEARTBEAT_INTERVAL_MS", default_value_t = 41_250)]
    pub gateway_heartbeat_interval_ms: u64,
    /// How long a new socket has to IDENTIFY or RESUME, in milliseconds.
    #[arg(long, env = "GATEWAY_IDENTIFY_TIMEOUT_MS", default_value_t = 10_000)]
    pub gateway_identify_timeout_ms: u64,
    /// How long a dropped gateway session stays resumable, in seconds.
    #[arg(long, env = "GATEWAY_RESUME_WINDOW_SECS", default_value_t = 300)]
    pub gateway_resume_window_secs: u64,
    /// How long a user stays online after their last socket goes, in milliseconds.
    #[arg(long, env = "PRESENCE_GRACE_MS", default_value_t = 5_000)]
    pub presence_grace_ms: u64,
    /// Largest inbound gateway frame, in bytes.
    #[arg(long, env = "GATEWAY_MAX_FRAME_BYTES", default_value_t = 16_384)]
    pub gateway_max_frame_bytes: usize,
    /// Frames per minute a gateway socket may send (heartbeats included).
    #[arg(long, env = "GATEWAY_COMMANDS_PER_MINUTE", default_value_t = 120)]
    pub gateway_commands_per_minute: u32,
    /// Outbound frames queued per socket before it counts as too slow and is closed.
    #[arg(long, env = "GATEWAY_QUEUE", default_value_t = 256)]
    pub gateway_queue: usize,
    /// How long one write to a gateway socket may take before the client counts as
    /// gone (its session stays resumable), in milliseconds.
    #[arg(long, env = "GATEWAY_WRITE_TIMEOUT_MS", default_value_t = 10_000)]
    pub gateway_write_timeout_ms: u64,
    /// How long data written to a connection may stay unacknowledged (or the client's
    /// window stay shut) before the kernel drops the connection, in milliseconds; 0
    /// leaves the system's default (TCP retries for many minutes, and a client that
    /// stops reading but acknowledges window probes is kept for ever). Linux and
    /// Android only. The default is past the gateway's own heartbeat allowance (about
    /// 62 s), so it never cuts a socket the gateway would have kept.
    #[arg(long, env = "TCP_USER_TIMEOUT_MS", default_value_t = 120_000)]
    pub tcp_user_timeout_ms: u64,
    /// How often each node moves its gateway sessions' resume bases forward, in
    /// seconds (a base is written one interval after it was taken).
    #[arg(long, env = "GATEWAY_CHECKPOINT_SECS", default_value_t = 30)]
    pub gateway_checkpoint_secs: u64,
    /// How often the outbox relay looks for new events when idle, in milliseconds.
    #[arg(long, env = "OUTBOX_POLL_MS", default_value_t = 20)]
    pub outbox_poll_ms: u64,
    /// Whether an event appended on this node makes its relay look at once (then every
    /// 5 ms for 50 ms) instead of at its next poll.
    #[arg(long, env = "OUTBOX_WAKE", default_value_t = true, action = clap::ArgAction::Set)]
    pub outbox_wake: bool,
    /// Log filter, in `tracing` EnvFilter syntax (RUST_LOG wins when set).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    /// Seconds to let requests finish on shutdown.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,
}

impl Settings {
    /// The defaults, as if nothing were set (for tests).
    pub fn defaults() -> Self {
        let cli = Cli::parse_from(["synctalk"]);
        cli.settings
    }

    /// Whether Swagger UI is served.
    pub fn docs_enabled(&self) -> bool {
        self.docs
            .unwrap_or(self.environment == Environment::Development)
    }

    /// Where attachments' bytes go.
    pub fn attachments_store(&self) -> String {
        self.attachments_store.clone().unwrap_or_else(|| {
            self.data_dir
                .join("attachments")
                .to_string_lossy()
                .into_owned()
        })
    }

    /// The auth crate's settings; `jwt_secret` must be resolved first.
    pub fn auth_config(&self, jwt_secret: Secret) -> synctalk_auth::AuthConfig {
        synctalk_auth::AuthConfig {
            jwt_secret,
            access_token_ttl: Duration::from_secs(self.access_token_ttl_secs),
            refresh_token_ttl: Duration::from_secs(self.refresh_token_ttl_secs),
            refresh_reuse_grace: Duration::from_secs(self.refresh_reuse_grace_secs),
            login_free_failures: self.login_free_failures,
            login_max_delay: Duration::from_secs(self.login_max_delay_secs),
            session_cache_ttl: Duration::from_secs(self.session_cache_secs),
            argon2: synctalk_auth::Argon2Params {
                memory_kib: self.argon2_memory_kib,
                iterations: self.argon2_iterations,
                parallelism: self.argon2_parallelism,
                max_concurrent: self
                    .argon2_max_concurrent
                    .unwrap_or_else(|| synctalk_auth::Argon2Params::default().max_concurrent),
                max_waiting: self.argon2_max_waiting,
            },
        }
    }

    /// The gateway's settings.
    pub fn gateway_config(&self) -> synctalk_gateway::GatewayConfig {
        synctalk_gateway::GatewayConfig {
            heartbeat_interval: Duration::from_millis(self.gateway_heartbeat_interval_ms),
            identify_timeout: Duration::from_millis(self.gateway_identify_timeout_ms),
            max_frame_bytes: self.gateway_max_frame_bytes,
            commands_per_minute: self.gateway_commands_per_minute,
            write_timeout: Duration::from_millis(self.gateway_write_timeout_ms.max(1)),
        }
    }

    /// The hub's settings.
    pub fn hub_config(&self) -> synctalk_gateway::HubConfig {
        synctalk_gateway::HubConfig {
            resume_window: Duration::from_secs(self.gateway_resume_window_secs),
            queue: self.gateway_queue.max(1),
            checkpoint_every: Duration::from_secs(self.gateway_checkpoint_secs.max(1)),
            max_sockets_per_user: self.gateway_max_sockets_per_user.max(1),
            ..synctalk_gateway::HubConfig::default()
        }
    }

    /// The trusted proxies, parsed.
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<synctalk_kernel::http::Cidr>> {
        self.trusted_proxies
            .iter()
            .filter(|t| !t.trim().is_empty())
            .map(|t| {
                t.parse()
                    .map_err(|e: String| anyhow::anyhow!("TRUSTED_PROXIES: {e}"))
            })
            .collect()
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(secret) = &self.jwt_secret {
            anyhow::ensure!(
                secret.expose().len() >= 32,
                "JWT_SECRET must be at least 32 bytes"
            );
        }
        anyhow::ensure!(
            self.environment != Environment::Production || self.jwt_secret.is_some(),
            "JWT_SECRET is required when SYNCTALK_ENV=production"
        );
        // Every node of a deployment must sign and check tokens with one secret: a
        // secret made up per node would make every node refuse the others' tokens.
        anyhow::ensure!(
            self.nats_url.is_none() || self.jwt_secret.is_some(),
            "JWT_SECRET is required with NATS_URL (every node must share it)"
        );
        anyhow::ensure!(
            self.tcp_user_timeout_ms == 0 || self.tcp_user_timeout_ms >= 1_000,
            "TCP_USER_TIMEOUT_MS must be 0 (the system's default) or at least 1000: \
             shorter cuts connections on ordinary packet loss"
        );
        anyhow::ensure!(
            self.rate_limit_auth_per_minute > 0,
            "RATE_LIMIT_AUTH_PER_MINUTE must be > 0"
        );
        self.trusted_proxies()?;
        anyhow::ensure!(
            self.gateway_connects_per_minute > 0,
            "GATEWAY_CONNECTS_PER_MINUTE must be > 0"
        );
        anyhow::ensure!(
            self.rate_limit_user_per_minute > 0,
            "RATE_LIMIT_USER_PER_MINUTE must be > 0"
        );
        anyhow::ensure!(
            self.database_pool_size > 0,
            "DATABASE_POOL_SIZE must be > 0"
        );
        anyhow::ensure!(
            self.access_token_ttl_secs > 0,
            "ACCESS_TOKEN_TTL_SECS must be > 0"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_documented_values() {
        let settings = Settings::defaults();
        assert_eq!(settings.port, 8080);
        assert_eq!(settings.host.to_string(), "127.0.0.1");
        assert!(settings.docs_enabled());
        assert!(settings.auto_migrate);
        assert_eq!(settings.json_body_limit, 1024 * 1024);
        assert_eq!(settings.message_cache_mb, 64);
    }

    #[test]
    fn secrets_are_not_printed() {
        let mut settings = Settings::defaults();
        settings.jwt_secret = Some(Secret::new("super-secret-value-that-is-long-enough"));
        settings.database_url = Some(Secret::new("postgres://u:pw@host/db"));
        let printed = format!("{settings:?}");
        assert!(!printed.contains("super-secret"), "{printed}");
        assert!(!printed.contains("pw@host"), "{printed}");
    }

    #[test]
    fn several_nodes_need_one_shared_secret() {
        let mut settings = Settings::defaults();
        settings.nats_url = Some(Secret::new("nats://127.0.0.1:4222"));
        let refused = settings.validate().unwrap_err().to_string();
        assert!(refused.contains("JWT_SECRET"), "{refused}");
        settings.jwt_secret = Some(Secret::new("x".repeat(32)));
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn production_needs_a_secret() {
        let mut settings = Settings::defaults();
        settings.environment = Environment::Production;
        assert!(settings.validate().is_err());
        settings.jwt_secret = Some(Secret::new("short"));
        assert!(settings.validate().is_err());
        settings.jwt_secret = Some(Secret::new("x".repeat(32)));
        assert!(settings.validate().is_ok());
        assert!(!settings.docs_enabled());
    }
}
