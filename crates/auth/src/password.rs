//! Argon2id password hashing, always on a blocking thread.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::Argon2Params;

/// Hashes and verifies passwords with fixed parameters, a bounded number at once.
#[derive(Clone)]
pub struct Hasher {
    params: Params,
    gate: std::sync::Arc<Gate>,
    /// A hash of a random password, verified against when the user is unknown so that
    /// the answer takes as long as for a wrong password.
    dummy_hash: String,
}

impl Hasher {
    pub fn new(params_in: Argon2Params) -> anyhow::Result<Self> {
        let params = Params::new(
            params_in.memory_kib,
            params_in.iterations,
            params_in.parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        let max_concurrent = params_in.max_concurrent.max(1);
        let mut hasher = Self {
            params,
            gate: std::sync::Arc::new(Gate {
                admitted: tokio::sync::Semaphore::new(max_concurrent + params_in.max_waiting),
                running: tokio::sync::Semaphore::new(max_concurrent),
            }),
            dummy_hash: String::new(),
        };
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        hasher.dummy_hash = hasher.hash_now(&base64_encode(&random))?;
        Ok(hasher)
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    fn hash_now(&self, password: &str) -> anyhow::Result<String> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        let hash = self
            .argon2()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
        Ok(hash.to_string())
    }

    /// Waits for a turn (at most `max_concurrent` run, `max_waiting` wait); `Busy`
    /// when the line is full.
    async fn turn(&self) -> anyhow::Result<Turn<'_>> {
        let admitted = self.gate.admitted.try_acquire().map_err(|_| Busy)?;
        let running = self.gate.running.acquire().await?;
        Ok(Turn {
            _admitted: admitted,
            _running: running,
        })
    }

    /// Hashes a password on a blocking thread.
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let _turn = self.turn().await?;
        let hasher = self.clone();
        tokio::task::spawn_blocking(move || hasher.hash_now(&password)).await?
    }

    /// Checks a password against a stored hash, or against the dummy hash when there is
    /// no user, so both cases cost the same. `false` for no user.
    pub async fn verify(&self, password: String, stored: Option<String>) -> anyhow::Result<bool> {
        let _turn = self.turn().await?;
        let hasher = self.clone();
        tokio::task::spawn_blocking(move || {
            let known = stored.is_some();
            let stored = stored.unwrap_or_else(|| hasher.dummy_hash.clone());
            let parsed =
                PasswordHash::new(&stored).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
            let matches = hasher
                .argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            Ok(known && matches)
        })
        .await?
    }
}

/// How many password checks may run and wait at once.
struct Gate {
    /// Running or waiting.
    admitted: tokio::sync::Semaphore,
    /// Running.
    running: tokio::sync::Semaphore,
}

/// A check's place: counted among the admitted until it is done.
struct Turn<'a> {
    _admitted: tokio::sync::SemaphorePermit<'a>,
    _running: tokio::sync::SemaphorePermit<'a>,
}

/// Too many password checks at once: the request is refused (503), not queued.
#[derive(Debug, thiserror::Error)]
#[error("too many password checks at once")]
pub struct Busy;

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Params {
        Argon2Params {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 2,
            max_waiting: 64,
        }
    }

    #[tokio::test]
    async fn a_full_line_is_refused_at_once_and_the_rest_are_served() {
        let hasher = Hasher::new(Argon2Params {
            iterations: 50,
            max_concurrent: 1,
            max_waiting: 2,
            ..cheap()
        })
        .unwrap();
        let hash = hasher.hash("pw".into()).await.unwrap();
        let checks = (0..8).map(|_| hasher.verify("pw".into(), Some(hash.clone())));
        let results = futures_util::future::join_all(checks).await;
        let busy = results
            .iter()
            .filter(|r| {
                r.as_ref()
                    .is_err_and(|e| e.downcast_ref::<Busy>().is_some())
            })
            .count();
        let served = results.iter().filter(|r| matches!(r, Ok(true))).count();
        assert_eq!(
            (served, busy),
            (3, 5),
            "one running, two waiting, the rest refused"
        );
        // Once the line is free, checks are served again.
        assert!(hasher.verify("pw".into(), Some(hash)).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let hasher = Hasher::new(cheap()).unwrap();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(
            hasher
                .verify("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("wrong horse".into(), Some(hash))
                .await
                .unwrap()
        );
        assert!(!hasher.verify("correct horse".into(), None).await.unwrap());
    }

    #[test]
    fn default_parameters_are_owasp() {
        let params = Argon2Params::default();
        assert_eq!(
            (params.memory_kib, params.iterations, params.parallelism),
            (19_456, 2, 1)
        );
    }
}
