use std::time::Duration;

use synctalk_kernel::Secret;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB (OWASP: 19456).
    pub memory_kib: u32,
    /// Iterations (OWASP: 2).
    pub iterations: u32,
    /// Lanes (OWASP: 1).
    pub parallelism: u32,
    /// Hashes computed at once (each holds `memory_kib` and a blocking thread).
    pub max_concurrent: usize,
    /// Requests that may wait for one; beyond that the answer is 503.
    pub max_waiting: usize,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            max_concurrent: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_waiting: 64,
        }
    }
}

/// Settings of the auth crate.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The HS256 signing secret (at least 32 bytes).
    pub jwt_secret: Secret,
    /// How long an access token lives.
    pub access_token_ttl: Duration,
    /// How long a session lives without a refresh.
    pub refresh_token_ttl: Duration,
    /// How long after a refresh the same refresh token, presented again, gets the same
    /// successor instead of revoking the session (zero: never).
    pub refresh_reuse_grace: Duration,
    /// Sign-in attempts in a row without a success, per login and client address,
    /// before the next one waits: 1 s, doubling with every further attempt.
    pub login_free_failures: u32,
    /// The longest such wait.
    pub login_max_delay: Duration,
    /// How long a session seen live is trusted without asking the database, while the
    /// node listens for ended sessions (zero: always ask).
    pub session_cache_ttl: Duration,
    /// Password hashing cost.
    pub argon2: Argon2Params,
}
