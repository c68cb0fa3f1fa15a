//! Web Push: a notification for a user none of whose sockets is connected goes to each
//! of their browsers' push subscriptions, encrypted as RFC 8291 requires (aes128gcm,
//! ECDH on P-256, HKDF-SHA256) and signed with VAPID (RFC 8292, an ES256 JWT). A
//! subscription the push service answers 404 or 410 for is dropped.
//!
//! A push endpoint is a URL the client chose, so sends are guarded against request
//! forgery: only `https` to public addresses in production (every address the name
//! resolves to is checked, and the connection goes to a checked address); in
//! development plain `http` to loopback is allowed too, so it can be tried locally. No
//! redirects are followed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use ring::rand::SystemRandom;
use ring::{aead, agreement, hkdf, signature};
use serde::{Deserialize, Serialize};
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{gateway_sessions, notifications, push_subscriptions};
use synctalk_kernel::error::FieldErrors;
use synctalk_kernel::{AppError, AppResult, UserId};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::dto::{Notification, NotificationRow};

/// What an endpoint must look like (as the OpenAPI document says): https, a domain
/// name whose last label starts with a letter (no address literals), an optional port
/// below 10000, a path without blanks.
const ENDPOINT_SHAPE: &str = "^https://[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*\\.[A-Za-z][A-Za-z0-9-]*(:[1-9][0-9]{0,3})?(/[^\\s]*)?$";

fn shaped(endpoint: &str) -> bool {
    static SHAPE: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(ENDPOINT_SHAPE).ok());
    SHAPE.as_ref().is_some_and(|re| re.is_match(endpoint))
}

/// Who may be a push endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointPolicy {
    /// `https` to public addresses only.
    Public,
    /// Also plain `http`, and loopback addresses (development).
    AllowLoopback,
}

/// The VAPID key pair that signs every push.
pub struct Vapid {
    pair: signature::EcdsaKeyPair,
    subject: String,
}

impl std::fmt::Debug for Vapid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vapid")
            .field("public_key", &self.public_key())
            .finish()
    }
}

impl Vapid {
    /// From a PKCS#8 document (DER), signing as `subject` (`mailto:` or `https:`).
    pub fn from_pkcs8(der: &[u8], subject: &str) -> anyhow::Result<Self> {
        let pair = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der,
            &SystemRandom::new(),
        )
        .map_err(|e| anyhow::anyhow!("not a P-256 PKCS#8 key: {e}"))?;
        Ok(Self {
            pair,
            subject: subject.to_owned(),
        })
    }

    /// A new key, as PKCS#8 DER.
    pub fn generate_pkcs8() -> anyhow::Result<Vec<u8>> {
        let doc = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .map_err(|_| anyhow::anyhow!("could not generate a VAPID key"))?;
        Ok(doc.as_ref().to_vec())
    }

    /// The public key browsers subscribe with (`applicationServerKey`): the
    /// uncompressed point, base64url.
    pub fn public_key(&self) -> String {
        use signature::KeyPair as _;
        URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref())
    }

    /// The `Authorization` header for a push to `origin`.
    fn authorization(&self, origin: &str) -> anyhow::Result<String> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({
            "aud": origin,
            "exp": Utc::now().timestamp() + 12 * 3600,
            "sub": self.subject,
        });
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?);
        let signed = format!("{header}.{claims}");
        let signature = self
            .pair
            .sign(&SystemRandom::new(), signed.as_bytes())
            .map_err(|_| anyhow::anyhow!("VAPID signing failed"))?;
        Ok(format!(
            "vapid t={signed}.{}, k={}",
            URL_SAFE_NO_PAD.encode(signature.as_ref()),
            self.public_key()
        ))
    }
}

/// A browser's push subscription.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PushSubscription {
    /// Its id.
    pub id: Uuid,
    /// The push service URL.
    pub endpoint: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// The keys of `PushSubscription.toJSON()`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionKeys {
    /// The browser's P-256 public key, base64url (65 bytes, uncompressed).
    #[schema(pattern = "^B[A-P][A-Za-z0-9_-]{84}[AEIMQUYcgkosw048]=?$")]
    pub p256dh: String,
    /// The browser's 16-byte authentication secret, base64url.
    #[schema(pattern = "^[A-Za-z0-9_-]{21}[AQgw](==)?$")]
    pub auth: String,
}

/// `POST /users/@me/push-subscriptions`: what `PushSubscription.toJSON()` gives.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NewSubscription {
    /// The push service URL: `https` to a public host (development also allows
    /// `http` to loopback), at most 2048 characters.
    #[schema(
        max_length = 2048,
        pattern = "^https://[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*\\.[A-Za-z][A-Za-z0-9-]*(:[1-9][0-9]{0,3})?(/[^\\s]*)?$",
        example = "https://fcm.googleapis.com/fcm/send/abc123"
    )]
    pub endpoint: String,
    /// The browser's keys.
    pub keys: SubscriptionKeys,
    /// Ignored (browsers send it: null, or when it expires in Unix milliseconds).
    #[serde(default, rename = "expirationTime")]
    pub expiration_time: Option<f64>,
}

/// The VAPID public key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VapidKey {
    /// Give it to `pushManager.subscribe({applicationServerKey})`: base64url of the
    /// uncompressed P-256 point.
    pub public_key: String,
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

impl EndpointPolicy {
    /// Whether a push may go to `ip`.
    pub fn allows(self, ip: IpAddr) -> bool {
        is_public(ip) || (self == Self::AllowLoopback && ip.is_loopback())
    }

    /// Checks an endpoint URL as written: a problem for `endpoint`, or the URL.
    pub fn check(self, endpoint: &str) -> Result<reqwest::Url, String> {
        if endpoint.chars().count() > 2048 {
            return Err("must be at most 2048 characters".into());
        }
        let url =
            reqwest::Url::parse(endpoint).map_err(|_| "must be an absolute URL".to_owned())?;
        let http_ok = self == Self::AllowLoopback;
        match url.scheme() {
            "https" => {}
            "http" if http_ok => {}
            _ => {
                return Err(if http_ok {
                    "must be an https (or, in development, http) URL".into()
                } else {
                    "must be an https URL".into()
                });
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry a user name or password".into());
        }
        match url.host() {
            Some(url::Host::Ipv4(ip)) if !self.allows(IpAddr::V4(ip)) => {
                Err("must be a public address".into())
            }
            Some(url::Host::Ipv6(ip)) if !self.allows(IpAddr::V6(ip)) => {
                Err("must be a public address".into())
            }
            Some(url::Host::Domain(name))
                if self == Self::Public
                    && (name == "localhost" || name.ends_with(".localhost")) =>
            {
                Err("must be a public address".into())
            }
            Some(_) if url.scheme() == "http" && !is_loopback_host(&url) => {
                Err("plain http is allowed for loopback only".into())
            }
            // Loopback in development; everything else has the documented shape.
            Some(_) if self == Self::AllowLoopback && is_loopback_host(&url) => Ok(url),
            Some(_) if !shaped(endpoint) => Err(
                "must be https://host.domain[:port]/path with a domain name (letters, digits, hyphens)"
                    .into(),
            ),
            Some(_) => Ok(url),
            None => Err("must name a host".into()),
        }
    }
}

fn is_loopback_host(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

/// The resolver's refusal: the endpoint's name resolves to no address the policy
/// allows. A refusal for good (the subscription is not tried again), not a failure
/// of the moment.
#[derive(Debug)]
struct NoPublicAddress;

impl std::fmt::Display for NoPublicAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the push endpoint resolves to no public address")
    }
}

impl std::error::Error for NoPublicAddress {}

/// Whether a send failed because the resolver refused the endpoint's addresses.
fn refused_by_resolver(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<NoPublicAddress>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Resolves names to the addresses the policy allows only, so the connection goes to
/// an address that was checked (no second lookup to rebind).
struct GuardedResolver(EndpointPolicy);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|addr| policy.allows(addr.ip()))
                .collect();
            if found.is_empty() {
                return Err(Box::new(NoPublicAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// Checks and decodes a subscription's keys: (p256dh, auth), or the problems by field.
pub fn parse_keys(keys: &SubscriptionKeys) -> Result<(Vec<u8>, Vec<u8>), FieldErrors> {
    let mut problems = FieldErrors::new();
    let p256dh = URL_SAFE_NO_PAD
        .decode(keys.p256dh.trim_end_matches('='))
        .ok()
        .filter(|k| k.len() == 65 && k[0] == 4);
    if p256dh.is_none() {
        problems.insert(
            "keys.p256dh".into(),
            vec!["must be a base64url uncompressed P-256 point (65 bytes)".into()],
        );
    }
    let auth = URL_SAFE_NO_PAD
        .decode(keys.auth.trim_end_matches('='))
        .ok()
        .filter(|k| k.len() == 16);
    if auth.is_none() {
        problems.insert(
            "keys.auth".into(),
            vec!["must be 16 bytes, base64url".into()],
        );
    }
    match (p256dh, auth) {
        (Some(p), Some(a)) => Ok((p, a)),
        _ => Err(problems),
    }
}

/// Registers a subscription of `user`'s (an endpoint already registered moves to this
/// user with its new keys: a browser that signed in as someone else).
pub async fn subscribe(
    conn: &mut AsyncPgConnection,
    user: UserId,
    endpoint: &str,
    p256dh: &[u8],
    auth: &[u8],
) -> AppResult<(PushSubscription, bool)> {
    let id = Uuid::now_v7();
    let (sub_id, endpoint, created_at): (Uuid, String, DateTime<Utc>) =
        diesel::insert_into(push_subscriptions::table)
            .values((
                push_subscriptions::id.eq(id),
                push_subscriptions::user_id.eq(user),
                push_subscriptions::endpoint.eq(endpoint),
                push_subscriptions::p256dh.eq(p256dh),
                push_subscriptions::auth.eq(auth),
            ))
            .on_conflict(push_subscriptions::endpoint)
            .do_update()
            .set((
                push_subscriptions::user_id.eq(user),
                push_subscriptions::p256dh.eq(p256dh),
                push_subscriptions::auth.eq(auth),
            ))
            .returning((
                push_subscriptions::id,
                push_subscriptions::endpoint,
                push_subscriptions::created_at,
            ))
            .get_result(conn)
            .await?;
    if sub_id != id {
        // Registered again (new keys, maybe another user): a push it refused or took
        // under its old keys is owed to it again.
        synctalk_db::sql(
            "UPDATE notifications SET push_done = array_remove(push_done, $1) \
             WHERE push_state = 'pending' AND $1 = ANY(push_done)",
        )
        .bind::<diesel::sql_types::Uuid, _>(sub_id)
        .execute(conn)
        .await?;
    }
    // Beyond MAX_SUBSCRIPTIONS, the oldest go (a browser's endpoint changes over time;
    // its old ones would only fail).
    synctalk_db::sql(
        "DELETE FROM push_subscriptions WHERE user_id = $1 AND id NOT IN \
         (SELECT id FROM push_subscriptions WHERE user_id = $1 \
          ORDER BY created_at DESC, id DESC LIMIT $2)",
    )
    .bind::<diesel::sql_types::Uuid, _>(user.0)
    .bind::<diesel::sql_types::BigInt, _>(MAX_SUBSCRIPTIONS)
    .execute(conn)
    .await?;
    Ok((
        PushSubscription {
            id: sub_id,
            endpoint,
            created_at,
        },
        sub_id == id,
    ))
}

/// `user`'s subscriptions, oldest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    user: UserId,
) -> QueryResult<Vec<PushSubscription>> {
    let rows: Vec<(Uuid, String, DateTime<Utc>)> = push_subscriptions::table
        .filter(push_subscriptions::user_id.eq(user))
        .order(push_subscriptions::id.asc())
        .select((
            push_subscriptions::id,
            push_subscriptions::endpoint,
            push_subscriptions::created_at,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, endpoint, created_at)| PushSubscription {
            id,
            endpoint,
            created_at,
        })
        .collect())
}

/// Removes one of `user`'s subscriptions: 404 when there is no such one of theirs.
pub async fn unsubscribe(conn: &mut AsyncPgConnection, user: UserId, id: Uuid) -> AppResult<()> {
    let removed = diesel::delete(
        push_subscriptions::table
            .filter(push_subscriptions::id.eq(id))
            .filter(push_subscriptions::user_id.eq(user)),
    )
    .execute(conn)
    .await?;
    if removed == 0 {
        return Err(AppError::not_found("push subscription"));
    }
    Ok(())
}

/// Marks new notifications of users with subscriptions as waiting for a push (in the
/// transaction that made them).
pub(crate) async fn queue(mut conn: &AsyncPgConnection, ids: &[Uuid]) -> QueryResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    synctalk_db::sql(
        "UPDATE notifications n SET push_state = 'pending' \
         WHERE n.id = ANY($1) \
           AND EXISTS (SELECT 1 FROM push_subscriptions s WHERE s.user_id = n.user_id)",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids.to_vec())
    .execute(&mut conn)
    .await?;
    Ok(())
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand(prk: &hkdf::Prk, info: &[&[u8]], len: usize) -> anyhow::Result<Vec<u8>> {
    let mut out = vec![0u8; len];
    prk.expand(info, Len(len))
        .and_then(|okm| okm.fill(&mut out))
        .map_err(|_| anyhow::anyhow!("HKDF failed"))?;
    Ok(out)
}

/// RFC 8291: `payload` encrypted for a browser whose key is `ua_public` and whose
/// secret is `auth`, as one aes128gcm record with its header.
pub fn encrypt(payload: &[u8], ua_public: &[u8], auth: &[u8]) -> anyhow::Result<Vec<u8>> {
    let rng = SystemRandom::new();
    let ephemeral = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
        .map_err(|_| anyhow::anyhow!("no ephemeral key"))?;
    let as_public = ephemeral
        .compute_public_key()
        .map_err(|_| anyhow::anyhow!("no public key"))?;
    let as_public = as_public.as_ref().to_vec();
    let shared = agreement::agree_ephemeral(
        ephemeral,
        &agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, ua_public),
        |secret| secret.to_vec(),
    )
    .map_err(|_| anyhow::anyhow!("the browser's key is not a P-256 point"))?;
    // IKM = HKDF(auth, ecdh_secret, "WebPush: info" || 0 || ua_public || as_public, 32)
    let prk_key = hkdf::Salt::new(hkdf::HKDF_SHA256, auth).extract(&shared);
    let ikm = expand(&prk_key, &[b"WebPush: info\0", ua_public, &as_public], 32)?;
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&rng, &mut salt).map_err(|_| anyhow::anyhow!("no salt"))?;
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(&ikm);
    let cek = expand(&prk, &[b"Content-Encoding: aes128gcm\0"], 16)?;
    let nonce = expand(&prk, &[b"Content-Encoding: nonce\0"], 12)?;
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_128_GCM, &cek).map_err(|_| anyhow::anyhow!("bad key"))?,
    );
    let mut record = payload.to_vec();
    // The last (and only) record's padding delimiter.
    record.push(2);
    let nonce =
        aead::Nonce::try_assume_unique_for_key(&nonce).map_err(|_| anyhow::anyhow!("bad nonce"))?;
    key.seal_in_place_append_tag(nonce, aead::Aad::empty(), &mut record)
        .map_err(|_| anyhow::anyhow!("encryption failed"))?;
    let mut body = Vec::with_capacity(16 + 4 + 1 + as_public.len() + record.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&4096u32.to_be_bytes());
    body.push(u8::try_from(as_public.len()).unwrap_or(65));
    body.extend_from_slice(&as_public);
    body.extend_from_slice(&record);
    Ok(body)
}

/// Sends pushes: claims waiting notifications and pushes each to its user's
/// subscriptions unless a socket of theirs is connected.
pub struct Pusher {
    pool: synctalk_db::Pool,
    vapid: Arc<Vapid>,
    client: reqwest::Client,
    policy: EndpointPolicy,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher")
            .field("policy", &self.policy)
            .finish()
    }
}

/// What a push service said.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    /// Taken.
    Delivered,
    /// The subscription is no more (404, 410): dropped.
    Gone,
    /// Not now (no answer, 429, 5xx): tried again later, not before the wait the
    /// push service asked for (Retry-After).
    Failed(Option<Duration>),
    /// Never (another 4xx, an endpoint the policy forbids, keys that do not work).
    Refused,
}

/// How long a claimed notification is held by the node pushing it: past the longest
/// its sends can take, so another node takes it only from a node that died.
const LEASE: Duration = Duration::from_secs(10 * 60);

/// When a push that failed for the moment is tried again, after each attempt; after
/// the last it is given up.
const RETRY_AFTER: [Duration; 5] = [
    Duration::from_secs(2),
    Duration::from_secs(15),
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
];

/// Attempts at most: the first and one per [`RETRY_AFTER`].
pub const MAX_ATTEMPTS: usize = RETRY_AFTER.len() + 1;

/// Notifications claimed at once. Each one's subscriptions (at most
/// [`MAX_SUBSCRIPTIONS`]) are pushed together, each push within 15 s (connect and
/// answer), so a batch ends well within its [`LEASE`].
const BATCH: usize = 20;

/// A user's subscriptions at most (browsers, profiles, devices): a new one beyond
/// it replaces their oldest.
pub const MAX_SUBSCRIPTIONS: i64 = 10;

/// `delay` give or take a fifth, at random.
fn jitter(delay: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut byte);
    delay.mul_f64(0.8 + 0.4 * f64::from(byte[0]) / 255.0)
}

impl Pusher {
    /// A pusher signing with `vapid`, sending where `policy` allows.
    pub fn new(
        pool: synctalk_db::Pool,
        vapid: Arc<Vapid>,
        policy: EndpointPolicy,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            // Straight to the endpoint: through a proxy (HTTPS_PROXY in the
            // environment), the proxy would resolve the name, not the guard.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .dns_resolver(Arc::new(GuardedResolver(policy)))
            .build()?;
        Ok(Self {
            pool,
            vapid,
            client,
            policy,
        })
    }

    /// Claims up to [`BATCH`] waiting notifications that are due (each held by one node at a
    /// time, whatever the number of nodes) and sends them; how many were claimed.
    ///
    /// A claim is a lease: `push_at` moves [`LEASE`] ahead, so the notification of a
    /// node that dies while pushing is claimed again once it runs out. A notification
    /// is done once every subscription took it (or is gone, or refused it for good),
    /// its user read it or came online; a push service that failed for the moment
    /// (network, 429, 5xx) has it tried again after [`RETRY_AFTER`], up to
    /// [`MAX_ATTEMPTS`] times in all. So a push may arrive twice (a retry after a
    /// subscription that had it, or a lease that ran out): its payload's `id` lets a
    /// service worker show it once (as the notification's `tag`), and its `Topic`
    /// header lets the push service replace an undelivered copy.
    pub async fn run_once(&self) -> AppResult<usize> {
        // The database's time `delay` from now: one clock for every node.
        let from_now = |delay: Duration| {
            let micros = i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
            diesel::dsl::sql::<diesel::sql_types::Timestamptz>("now() + ")
                .bind::<diesel::sql_types::Interval, _>(
                diesel::data_types::PgInterval::from_microseconds(micros),
            )
        };
        let mut conn = synctalk_db::conn(&self.pool).await?;
        let claimed: Vec<(NotificationRow, i16, Vec<Option<Uuid>>)> = conn
            .transaction::<_, AppError, _>(async |conn| {
                // Claimed as often as it may be tried, by nodes that died before they
                // could say how it went: given up.
                diesel::update(
                    notifications::table
                        .filter(notifications::push_state.eq("pending"))
                        .filter(notifications::push_at.le(diesel::dsl::now))
                        .filter(notifications::push_attempts.ge(MAX_ATTEMPTS as i16)),
                )
                .set(notifications::push_state.eq("failed"))
                .execute(conn)
                .await?;
                let ids: Vec<Uuid> = notifications::table
                    .filter(notifications::push_state.eq("pending"))
                    .filter(notifications::push_at.le(diesel::dsl::now))
                    .order(notifications::push_at.asc())
                    .limit(BATCH as i64)
                    .select(notifications::id)
                    .for_update()
                    .skip_locked()
                    .load(conn)
                    .await?;
                Ok(
                    diesel::update(notifications::table.filter(notifications::id.eq_any(&ids)))
                        .set((
                            notifications::push_at.eq(from_now(LEASE)),
                            notifications::push_attempts.eq(notifications::push_attempts + 1),
                        ))
                        .returning((
                            NotificationRow::as_returning(),
                            notifications::push_attempts,
                            notifications::push_done,
                        ))
                        .get_results(conn)
                        .await?,
                )
            })
            .await?;
        let count = claimed.len();
        for (row, attempts, done) in claimed {
            let id = row.id;
            let done: Vec<Uuid> = done.into_iter().flatten().collect();
            let (again, newly_done) = self.push(&mut conn, row, &done).await?;
            let (state, delay) = match again {
                None => ("done", None),
                Some(asked) => match usize::try_from(attempts - 1)
                    .ok()
                    .and_then(|n| RETRY_AFTER.get(n))
                {
                    // A push service's Retry-After (at most an hour) if it asked for
                    // longer; a fifth either way at random, so that retries spread.
                    Some(delay) => ("pending", Some(jitter((*delay).max(asked)))),
                    None => {
                        tracing::warn!(notification = %id, attempts, "push given up");
                        ("failed", None)
                    }
                },
            };
            // The subscriptions it is done with, whoever holds the claim now: a node
            // that claimed it since skips them too.
            if !newly_done.is_empty() {
                diesel::update(notifications::table.find(id))
                    .set(notifications::push_done.eq(notifications::push_done.concat(newly_done)))
                    .execute(&mut conn)
                    .await?;
            }
            // The outcome only while the claim is still this node's (its lease may have
            // run out and another node claimed it since).
            diesel::update(
                notifications::table
                    .find(id)
                    .filter(notifications::push_state.eq("pending"))
                    .filter(notifications::push_attempts.eq(attempts)),
            )
            .set((
                notifications::push_state.eq(state),
                notifications::push_at.eq(from_now(delay.unwrap_or_default())),
            ))
            .execute(&mut conn)
            .await?;
        }
        Ok(count)
    }

    /// Pushes one claimed notification to its user's subscriptions but those it is
    /// `done` with (all at once), unless it was read or they are connected: `Some`
    /// (with the longest wait a push service asked for) when one of them should be
    /// tried again, and the subscriptions it is now done with (taken, or refused for
    /// good), which a retry skips.
    async fn push(
        &self,
        conn: &mut AsyncPgConnection,
        row: NotificationRow,
        done: &[Uuid],
    ) -> AppResult<(Option<Duration>, Vec<Option<Uuid>>)> {
        if row.read_at.is_some() {
            return Ok((None, Vec::new()));
        }
        let online: bool = diesel::select(diesel::dsl::exists(
            gateway_sessions::table
                .filter(gateway_sessions::user_id.eq(row.user_id))
                .filter(gateway_sessions::connected.eq(true)),
        ))
        .get_result(conn)
        .await?;
        if online {
            return Ok((None, Vec::new()));
        }
        let user = row.user_id;
        let topic = URL_SAFE_NO_PAD.encode(row.id.as_bytes());
        let payload = serde_json::to_vec(&Notification::from(row))
            .map_err(|e| AppError::internal(anyhow::anyhow!(e)))?;
        let subscriptions: Vec<(Uuid, String, Vec<u8>, Vec<u8>)> = push_subscriptions::table
            .filter(push_subscriptions::user_id.eq(user))
            .filter(push_subscriptions::id.ne_all(done))
            .select((
                push_subscriptions::id,
                push_subscriptions::endpoint,
                push_subscriptions::p256dh,
                push_subscriptions::auth,
            ))
            .load(conn)
            .await?;
        let sent = futures_util::future::join_all(subscriptions.iter().map(
            |(_, endpoint, p256dh, auth)| self.send(endpoint, p256dh, auth, &topic, &payload),
        ))
        .await;
        let mut again: Option<Duration> = None;
        let mut newly_done = Vec::new();
        for ((id, ..), sent) in subscriptions.iter().zip(sent) {
            match sent {
                Sent::Delivered | Sent::Refused => newly_done.push(Some(*id)),
                Sent::Failed(asked) => {
                    again = Some(again.unwrap_or_default().max(asked.unwrap_or_default()));
                }
                Sent::Gone => {
                    diesel::delete(push_subscriptions::table.find(*id))
                        .execute(conn)
                        .await?;
                    tracing::info!(subscription = %id, "push subscription gone; dropped");
                }
            }
        }
        Ok((again, newly_done))
    }

    async fn send(
        &self,
        endpoint: &str,
        p256dh: &[u8],
        auth: &[u8],
        topic: &str,
        payload: &[u8],
    ) -> Sent {
        let url = match self.policy.check(endpoint) {
            Ok(url) => url,
            Err(problem) => {
                tracing::warn!(%problem, "push endpoint refused");
                return Sent::Refused;
            }
        };
        let origin = url.origin().ascii_serialization();
        let (body, authorization) = match (
            encrypt(payload, p256dh, auth),
            self.vapid.authorization(&origin),
        ) {
            (Ok(body), Ok(authorization)) => (body, authorization),
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "push could not be prepared");
                return Sent::Refused;
            }
        };
        let sent = self
            .client
            .post(url)
            .header("Content-Encoding", "aes128gcm")
            .header("Content-Type", "application/octet-stream")
            .header("TTL", "86400")
            .header("Urgency", "normal")
            .header("Topic", topic)
            .header("Authorization", authorization)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(res) if res.status().is_success() => Sent::Delivered,
            Ok(res) if matches!(res.status().as_u16(), 404 | 410) => Sent::Gone,
            Ok(res) if res.status().as_u16() == 429 || res.status().is_server_error() => {
                tracing::warn!(status = %res.status(), "push service failed a push; later again");
                // Retry-After in seconds (its date form is taken as no ask).
                let asked = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|secs| Duration::from_secs(secs.min(3600)));
                Sent::Failed(asked)
            }
            Ok(res) => {
                tracing::warn!(status = %res.status(), "push service refused a push");
                Sent::Refused
            }
            Err(error) if refused_by_resolver(&error) => {
                tracing::warn!(%error, "push endpoint refused");
                Sent::Refused
            }
            Err(error) => {
                tracing::warn!(%error, "push could not be sent");
                Sent::Failed(None)
            }
        }
    }

    /// Sends pushes forever, looking for waiting ones every `every`.
    pub async fn run(self, every: Duration) {
        loop {
            match self.run_once().await {
                Ok(BATCH) => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "pushing failed"),
            }
            tokio::time::sleep(every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name that resolves only to addresses the policy forbids is a refusal for good
    /// (not retried as a network failure); a refused connection is not.
    #[tokio::test]
    async fn a_name_resolving_to_no_allowed_address_is_refused_for_good() {
        let client = |policy| {
            reqwest::Client::builder()
                .dns_resolver(Arc::new(GuardedResolver(policy)))
                .build()
                .unwrap()
        };
        // `localhost` resolves to loopback only: no public address.
        let error = client(EndpointPolicy::Public)
            .post("http://localhost:9/push")
            .send()
            .await
            .unwrap_err();
        assert!(refused_by_resolver(&error), "{error:?}");
        // Allowed in development: the port is closed, a failure of the moment.
        let error = client(EndpointPolicy::AllowLoopback)
            .post("http://localhost:9/push")
            .send()
            .await
            .unwrap_err();
        assert!(!refused_by_resolver(&error), "{error:?}");
    }

    #[test]
    fn endpoints_must_be_public_https_unless_developing() {
        let public = EndpointPolicy::Public;
        let dev = EndpointPolicy::AllowLoopback;
        assert!(
            public
                .check("https://fcm.googleapis.com/fcm/send/x")
                .is_ok()
        );
        for bad in [
            "http://example.com/push",
            "https://127.0.0.1/push",
            "https://localhost/push",
            "https://10.0.0.8/push",
            "https://192.168.1.1/push",
            "https://169.254.169.254/latest",
            "https://[::1]/push",
            "https://[fd00::1]/push",
            "https://[::ffff:10.0.0.1]/push",
            "https://user:pw@example.com/push",
            "ftp://example.com/push",
            "not a url",
        ] {
            assert!(public.check(bad).is_err(), "{bad}");
        }
        assert!(dev.check("http://127.0.0.1:9000/push").is_ok());
        assert!(dev.check("http://localhost:9000/push").is_ok());
        assert!(
            dev.check("http://example.com/push").is_err(),
            "http only to loopback"
        );
        assert!(dev.check("https://10.0.0.8/push").is_err());
        assert!(!public.allows("100.64.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));
        assert!(public.allows("8.8.8.8".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));
    }

    #[test]
    fn keys_are_checked() {
        let good = SubscriptionKeys {
            p256dh: URL_SAFE_NO_PAD.encode([4u8; 65]),
            auth: URL_SAFE_NO_PAD.encode([1u8; 16]),
        };
        assert!(parse_keys(&good).is_ok());
        let bad = SubscriptionKeys {
            p256dh: URL_SAFE_NO_PAD.encode([3u8; 65]),
            auth: "short".into(),
        };
        assert_eq!(parse_keys(&bad).err().map(|p| p.len()), Some(2));
    }
}
