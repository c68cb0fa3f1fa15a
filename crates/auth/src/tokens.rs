//! Access tokens (HS256 JWTs) and refresh tokens (random, stored hashed).

use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use synctalk_kernel::{SessionId, UserId};
use uuid::Uuid;

const ISSUER: &str = "synctalk";

/// The claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: Uuid,
    /// The session.
    pub sid: Uuid,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Expires at (unix seconds).
    pub exp: i64,
    /// Always `synctalk`.
    pub iss: String,
}

/// Signs and verifies access tokens.
#[derive(Clone)]
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl AccessTokens {
    pub fn new(secret: &str, ttl: Duration) -> anyhow::Result<Self> {
        // Only HS256 is accepted: a token claiming another algorithm ("none", RS256
        // with our secret as a public key) is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        validation.leeway = 5;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret.as_bytes())?,
            decoding: DecodingKey::from_secret(secret.as_bytes())?,
            validation,
            ttl,
        })
    }

    /// The lifetime of an access token, in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs()
    }

    /// Issues a token for a session.
    pub fn issue(&self, user: UserId, session: SessionId) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user.0,
            sid: session.0,
            iat: now,
            exp: now + i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2),
            iss: ISSUER.into(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Verifies signature, algorithm, issuer and expiry.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// A new refresh token: the value for the client and the hash to store.
pub fn new_refresh_token() -> anyhow::Result<(String, Vec<u8>)> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh_token(&token);
    Ok((token, hash))
}

/// The stored form of a refresh token.
pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Seals a refresh token's successor with a key only the holder of that refresh token
/// can derive: the successor's 32 bytes XOR SHA-256 of a context string and the token.
/// The database keeps only the token's plain SHA-256 (a different input), so neither a
/// copy of the database nor anyone without the spent token can open it; each key seals
/// exactly one successor.
pub fn seal(presented: &str, successor: &str) -> Option<Vec<u8>> {
    let plain = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(successor)
        .ok()?;
    let key = successor_key(presented);
    (plain.len() == key.len()).then(|| plain.iter().zip(key).map(|(p, k)| p ^ k).collect())
}

/// Opens what [`seal`] sealed, given the same presented token.
pub fn unseal(presented: &str, sealed: &[u8]) -> Option<String> {
    let key = successor_key(presented);
    if sealed.len() != key.len() {
        return None;
    }
    let plain: Vec<u8> = sealed.iter().zip(key).map(|(s, k)| s ^ k).collect();
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(plain))
}

fn successor_key(presented: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"synctalk refresh successor\0");
    hasher.update(presented.as_bytes());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_successor_opens_only_with_its_token() {
        let (spent, _) = new_refresh_token().unwrap();
        let (successor, successor_hash) = new_refresh_token().unwrap();
        let sealed = seal(&spent, &successor).unwrap();
        assert_ne!(sealed, successor.as_bytes());
        assert_ne!(sealed, successor_hash);
        assert_eq!(unseal(&spent, &sealed).as_deref(), Some(successor.as_str()));
        let (other, _) = new_refresh_token().unwrap();
        assert_ne!(unseal(&other, &sealed).as_deref(), Some(successor.as_str()));
        assert_eq!(unseal(&spent, &sealed[1..]), None);
    }

    #[test]
    fn round_trip_and_tampering() {
        let tokens = AccessTokens::new(
            "a-test-secret-that-is-long-enough!!",
            Duration::from_secs(60),
        )
        .unwrap();
        let (user, session) = (UserId::new(), SessionId::new());
        let token = tokens.issue(user, session).unwrap();
        let claims = tokens.verify(&token).unwrap();
        assert_eq!((claims.sub, claims.sid), (user.0, session.0));

        let other = AccessTokens::new(
            "another-secret-that-is-long-enough!",
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(other.verify(&token).is_none(), "wrong secret accepted");
        let mut tampered = token.clone();
        tampered.pop();
        assert!(tokens.verify(&tampered).is_none());
    }

    #[test]
    fn alg_none_is_refused() {
        let tokens = AccessTokens::new(
            "a-test-secret-that-is-long-enough!!",
            Duration::from_secs(60),
        )
        .unwrap();
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = engine.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let now = chrono::Utc::now().timestamp();
        let body = engine.encode(format!(
            r#"{{"sub":"{}","sid":"{}","iat":{now},"exp":{},"iss":"synctalk"}}"#,
            Uuid::now_v7(),
            Uuid::now_v7(),
            now + 60
        ));
        assert!(tokens.verify(&format!("{header}.{body}.")).is_none());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let tokens = AccessTokens::new(
            "a-test-secret-that-is-long-enough!!",
            Duration::from_secs(0),
        )
        .unwrap();
        let now = chrono::Utc::now().timestamp();
        let old = Claims {
            sub: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            iat: now - 100,
            exp: now - 60,
            iss: ISSUER.into(),
        };
        let claims_token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &old, &tokens.encoding).unwrap();
        assert!(tokens.verify(&claims_token).is_none());
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let (a, hash_a) = new_refresh_token().unwrap();
        let (b, _) = new_refresh_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash_refresh_token(&a), hash_a);
        assert_eq!(hash_a.len(), 32);
    }
}
