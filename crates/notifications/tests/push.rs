//! Web Push against a push endpoint of the test's own that checks the VAPID signature
//! and decrypts what it receives as a browser would (RFC 8291, RFC 8292).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{aead, agreement, hkdf, signature};
use serde_json::{Value, json};
use synctalk_testkit::{Status, TestApp, TestUser};
use tokio::sync::mpsc;

/// A push as the endpoint received it.
#[derive(Debug)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A push service on 127.0.0.1 answering `status` (changeable) to every push.
async fn push_service() -> (String, Arc<AtomicU16>, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let status = Arc::new(AtomicU16::new(201));
    let answer = status.clone();
    let server = HttpServer::new(move || {
        let tx = tx.clone();
        let answer = answer.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let tx = tx.clone();
            let answer = answer.clone();
            async move {
                // The answer is decided when the push arrives, before the test hears
                // of it (and may change the status for the next one).
                let status = answer.load(Ordering::SeqCst);
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                    .collect();
                let _ = tx.send(Received {
                    headers,
                    body: body.to_vec(),
                });
                HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
            }
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    (format!("http://127.0.0.1:{port}"), status, rx)
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn expand(prk: &hkdf::Prk, info: &[&[u8]], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    prk.expand(info, Len(len)).unwrap().fill(&mut out).unwrap();
    out
}

/// Decrypts an aes128gcm body as the browser holding `private` and `auth` would.
fn decrypt(
    body: &[u8],
    private: agreement::EphemeralPrivateKey,
    ua_public: &[u8],
    auth: &[u8],
) -> Vec<u8> {
    let salt = &body[..16];
    let rs = u32::from_be_bytes(body[16..20].try_into().unwrap());
    assert_eq!(rs, 4096);
    let idlen = body[20] as usize;
    assert_eq!(idlen, 65, "the key id is the server's public key");
    let as_public = &body[21..21 + idlen];
    let mut record = body[21 + idlen..].to_vec();
    let shared = agreement::agree_ephemeral(
        private,
        &agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, as_public),
        |s| s.to_vec(),
    )
    .unwrap();
    let prk_key = hkdf::Salt::new(hkdf::HKDF_SHA256, auth).extract(&shared);
    let ikm = expand(&prk_key, &[b"WebPush: info\0", ua_public, as_public], 32);
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&ikm);
    let cek = expand(&prk, &[b"Content-Encoding: aes128gcm\0"], 16);
    let nonce = expand(&prk, &[b"Content-Encoding: nonce\0"], 12);
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &cek).unwrap());
    let plain = key
        .open_in_place(
            aead::Nonce::try_assume_unique_for_key(&nonce).unwrap(),
            aead::Aad::empty(),
            &mut record,
        )
        .unwrap();
    let end = plain.iter().rposition(|b| *b != 0).unwrap();
    assert_eq!(plain[end], 2, "one record, the last");
    plain[..end].to_vec()
}

/// Checks the VAPID header: an ES256 JWT for `origin`, signed by `key`.
fn check_vapid(header: &str, origin: &str, key: &str) {
    let rest = header.strip_prefix("vapid ").expect("vapid scheme");
    let mut token = None;
    let mut k = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(t) = part.strip_prefix("t=") {
            token = Some(t);
        } else if let Some(v) = part.strip_prefix("k=") {
            k = Some(v);
        }
    }
    assert_eq!(k, Some(key), "k is the public key served");
    let token = token.expect("t=");
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let public = URL_SAFE_NO_PAD.decode(key).unwrap();
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, public)
        .verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
        .expect("signed by the VAPID key");
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(signed.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], origin);
    assert!(claims["exp"].as_i64().unwrap() > chrono::Utc::now().timestamp());
    assert!(claims["sub"].as_str().unwrap().starts_with("mailto:"));
}

async fn subscriptions(app: &TestApp, who: &TestUser) -> Value {
    let res = app
        .get(
            "/api/v1/users/@me/push-subscriptions",
            Some(&who.access_token),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    res.body
}

#[actix_web::test]
async fn an_offline_user_gets_an_encrypted_signed_push_and_a_gone_endpoint_is_dropped() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let (service, status, mut pushes) = push_service().await;
    let key = app.get("/api/v1/push/vapid-public-key", None).await;
    assert_eq!(key.status, Status::OK, "{}", key.text);
    let key = key.body["public_key"].as_str().unwrap().to_owned();
    assert_eq!(URL_SAFE_NO_PAD.decode(&key).unwrap().len(), 65);

    // Bob's browser subscribes.
    let rng = SystemRandom::new();
    let private = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).unwrap();
    let ua_public = private.compute_public_key().unwrap().as_ref().to_vec();
    let mut auth = [0u8; 16];
    rng.fill(&mut auth).unwrap();
    let endpoint = format!("{service}/push/bob");
    let body = json!({
        "endpoint": endpoint,
        "expirationTime": null,
        "keys": {"p256dh": URL_SAFE_NO_PAD.encode(&ua_public), "auth": URL_SAFE_NO_PAD.encode(auth)},
    });
    let res = app
        .post(
            "/api/v1/users/@me/push-subscriptions",
            Some(&b.access_token),
            body.clone(),
        )
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    assert_eq!(res.body["endpoint"], endpoint.as_str());
    let again = app
        .post(
            "/api/v1/users/@me/push-subscriptions",
            Some(&b.access_token),
            body,
        )
        .await;
    assert_eq!(again.status, Status::OK, "the same endpoint again: updated");
    assert_eq!(again.body["id"], res.body["id"]);

    // Bob has no socket: Alice's DM is pushed to him.
    let dm = app.open_dm(&a, &b).await;
    let message = app.send_message(&a, &dm, "are you there?").await;
    let push = tokio::time::timeout(Duration::from_secs(10), pushes.recv())
        .await
        .expect("a push within 10 s")
        .unwrap();
    assert_eq!(push.headers["content-encoding"], "aes128gcm");
    assert_eq!(push.headers["ttl"], "86400");
    check_vapid(&push.headers["authorization"], &service, &key);
    let plain = decrypt(&push.body, private, &ua_public, &auth);
    let notification: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(notification["kind"], "message");
    assert_eq!(notification["title"], "alice");
    assert_eq!(notification["body"], "are you there?");
    assert_eq!(notification["data"]["message_id"], message.as_str());

    // Connected, he is told live, not pushed.
    let (ws, _) = app.gateway("/gateway/notifications", &b.access_token).await;
    app.send_message(&a, &dm, "now you are here").await;
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), pushes.recv())
            .await
            .is_err(),
        "no push while a socket is connected"
    );
    drop(ws);
    app.until_offline(&b).await;

    // The push service says the subscription is gone: it is dropped.
    status.store(410, Ordering::SeqCst);
    app.send_message(&a, &dm, "still there?").await;
    let mut gone = false;
    for _ in 0..50 {
        if subscriptions(&app, &b).await == json!([]) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(gone, "a 410 drops the subscription");
}

/// Subscribes `who` to `endpoint` with a fresh browser key: its private half, public
/// half and auth secret.
async fn subscribe(
    app: &TestApp,
    who: &TestUser,
    endpoint: &str,
) -> (agreement::EphemeralPrivateKey, Vec<u8>, [u8; 16]) {
    let rng = SystemRandom::new();
    let private = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).unwrap();
    let ua_public = private.compute_public_key().unwrap().as_ref().to_vec();
    let mut auth = [0u8; 16];
    rng.fill(&mut auth).unwrap();
    let res = app
        .post(
            "/api/v1/users/@me/push-subscriptions",
            Some(&who.access_token),
            json!({
                "endpoint": endpoint,
                "keys": {"p256dh": URL_SAFE_NO_PAD.encode(&ua_public), "auth": URL_SAFE_NO_PAD.encode(auth)},
            }),
        )
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    (private, ua_public, auth)
}

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct PushState {
    #[diesel(sql_type = diesel::sql_types::Text)]
    push_state: String,
    #[diesel(sql_type = diesel::sql_types::SmallInt)]
    push_attempts: i16,
}

async fn push_state(app: &TestApp, message: &str) -> PushState {
    use diesel_async::RunQueryDsl;
    let mut conn = app.db.connect().await;
    diesel::sql_query(format!(
        "SELECT push_state, push_attempts FROM notifications WHERE message_id = '{message}'"
    ))
    .get_result(&mut conn)
    .await
    .unwrap()
}

/// The push state of `message`'s notification once it is `state` (or after 20 s).
async fn settled(app: &TestApp, message: &str, state: &str) -> PushState {
    let mut now = push_state(app, message).await;
    for _ in 0..200 {
        if now.push_state == state {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        now = push_state(app, message).await;
    }
    now
}

/// Makes every waiting push due now (instead of waiting out its retry delay).
async fn due_now(app: &TestApp) {
    use diesel_async::RunQueryDsl;
    let mut conn = app.db.connect().await;
    diesel::sql_query("UPDATE notifications SET push_at = now() WHERE push_state = 'pending'")
        .execute(&mut conn)
        .await
        .unwrap();
}

/// The next push, with every waiting push made due now and again until it comes.
async fn hurried_push(app: &TestApp, pushes: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    for _ in 0..50 {
        due_now(app).await;
        if let Ok(push) = tokio::time::timeout(Duration::from_millis(200), pushes.recv()).await {
            return push.unwrap();
        }
    }
    panic!("no push within 10 s");
}

async fn next_push(pushes: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(10), pushes.recv())
        .await
        .expect("a push within 10 s")
        .unwrap()
}

/// A push service that fails for the moment (5xx, 429) gets the push again later, the
/// same notification under the same `Topic`; after the last attempt it is given up.
#[actix_web::test]
async fn a_push_that_failed_for_the_moment_is_tried_again_then_given_up() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let (service, status, mut pushes) = push_service().await;
    let (private, ua_public, auth) = subscribe(&app, &b, &format!("{service}/push/bob")).await;
    let dm = app.open_dm(&a, &b).await;

    status.store(503, Ordering::SeqCst);
    let message = app.send_message(&a, &dm, "are you there?").await;
    let first = next_push(&mut pushes).await;
    status.store(201, Ordering::SeqCst);
    // Tried again on its own, a couple of seconds later.
    let second = next_push(&mut pushes).await;
    assert_eq!(second.headers["topic"], first.headers["topic"]);
    assert!(
        second.headers["topic"].len() <= 32,
        "a Topic is at most 32 characters"
    );
    let plain = decrypt(&second.body, private, &ua_public, &auth);
    let notification: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(notification["data"]["message_id"], message.as_str());
    assert_eq!(
        settled(&app, &message, "done").await,
        PushState {
            push_state: "done".into(),
            push_attempts: 2
        }
    );

    // Failing every time: six attempts (their delays skipped), then it is given up.
    status.store(500, Ordering::SeqCst);
    let message = app.send_message(&a, &dm, "hello?").await;
    for _ in 1..=6 {
        hurried_push(&app, &mut pushes).await;
    }
    assert_eq!(
        settled(&app, &message, "failed").await,
        PushState {
            push_state: "failed".into(),
            push_attempts: 6
        }
    );
    due_now(&app).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), pushes.recv())
            .await
            .is_err(),
        "no seventh attempt"
    );

    // A refusal for good (another 4xx) is not tried again.
    status.store(400, Ordering::SeqCst);
    let message = app.send_message(&a, &dm, "still?").await;
    next_push(&mut pushes).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    due_now(&app).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    due_now(&app).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), pushes.recv())
            .await
            .is_err(),
        "a 400 is not tried again"
    );
    assert_eq!(push_state(&app, &message).await.push_state, "done");
}

/// A retry goes only to the subscriptions that failed: one that took the push (or
/// refused it for good) does not get it again.
#[actix_web::test]
async fn a_retry_skips_the_subscriptions_that_took_the_push() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let (taking, _, mut taken) = push_service().await;
    let (failing, status, mut failed) = push_service().await;
    subscribe(&app, &b, &format!("{taking}/push/phone")).await;
    subscribe(&app, &b, &format!("{failing}/push/laptop")).await;
    let dm = app.open_dm(&a, &b).await;

    status.store(503, Ordering::SeqCst);
    let message = app.send_message(&a, &dm, "are you there?").await;
    let first = next_push(&mut taken).await;
    next_push(&mut failed).await;
    status.store(201, Ordering::SeqCst);
    let retried = hurried_push(&app, &mut failed).await;
    assert_eq!(retried.headers["topic"], first.headers["topic"]);
    assert_eq!(
        settled(&app, &message, "done").await,
        PushState {
            push_state: "done".into(),
            push_attempts: 2
        }
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(1000), taken.recv())
            .await
            .is_err(),
        "the phone that took the push got it again"
    );
}

/// A user keeps at most ten subscriptions: an eleventh replaces their oldest.
#[actix_web::test]
async fn an_eleventh_subscription_replaces_the_oldest() {
    let app = TestApp::spawn().await;
    let b = app.register("bob").await;
    for n in 0..11 {
        subscribe(&app, &b, &format!("http://127.0.0.1:9/push/{n}")).await;
    }
    let endpoints: Vec<String> = subscriptions(&app, &b)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["endpoint"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(endpoints.len(), 10, "{endpoints:?}");
    assert!(!endpoints.contains(&"http://127.0.0.1:9/push/0".to_owned()));
    assert!(endpoints.contains(&"http://127.0.0.1:9/push/10".to_owned()));
}

#[actix_web::test]
async fn subscriptions_are_checked_and_owned() {
    let app = TestApp::spawn().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let keys = json!({"p256dh": URL_SAFE_NO_PAD.encode([4u8; 65]), "auth": URL_SAFE_NO_PAD.encode([7u8; 16])});
    let path = "/api/v1/users/@me/push-subscriptions";
    for (endpoint, why) in [
        ("http://example.com/push", "plain http beyond loopback"),
        ("https://10.1.2.3/push", "a private address"),
        (
            "https://169.254.169.254/latest/meta-data",
            "link-local (cloud metadata)",
        ),
        ("https://[fd00::1]/push", "a unique local address"),
        ("https://user:pw@push.example.com/x", "credentials"),
        ("file:///etc/passwd", "not http"),
        ("push.example.com/x", "not absolute"),
    ] {
        let res = app
            .post(
                path,
                Some(&a.access_token),
                json!({"endpoint": endpoint, "keys": keys}),
            )
            .await;
        assert_eq!(
            res.status,
            Status::UNPROCESSABLE_ENTITY,
            "{why}: {}",
            res.text
        );
        assert!(
            res.body["error"]["fields"]["endpoint"].is_array(),
            "{}",
            res.text
        );
    }
    let res = app
        .post(
            path,
            Some(&a.access_token),
            json!({"endpoint": "https://push.example.com/x", "keys": {"p256dh": "AAAA", "auth": "x"}}),
        )
        .await;
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY);
    assert!(
        res.body["error"]["fields"]["keys.p256dh"].is_array(),
        "{}",
        res.text
    );
    assert!(res.body["error"]["fields"]["keys.auth"].is_array());

    let res = app
        .post(
            path,
            Some(&a.access_token),
            json!({"endpoint": "https://push.example.com/a", "keys": keys}),
        )
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    let id = res.body["id"].as_str().unwrap().to_owned();
    assert_eq!(subscriptions(&app, &b).await, json!([]));
    let mine = format!("{path}/{id}");
    assert_eq!(
        app.delete(&mine, Some(&b.access_token)).await.status,
        Status::NOT_FOUND
    );
    assert_eq!(
        app.delete(&mine, Some(&a.access_token)).await.status,
        Status::NO_CONTENT
    );
    assert_eq!(
        app.delete(&mine, Some(&a.access_token)).await.status,
        Status::NOT_FOUND
    );
    assert_eq!(app.get(path, None).await.status, Status::UNAUTHORIZED);

    // In production, loopback and plain http are refused too.
    let prod =
        TestApp::spawn_with(|s| s.environment = synctalk_app::config::Environment::Production)
            .await;
    let c = prod.register("carol").await;
    let res = prod
        .post(
            path,
            Some(&c.access_token),
            json!({"endpoint": "http://127.0.0.1:9/push", "keys": keys}),
        )
        .await;
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY, "{}", res.text);
    let res = prod
        .post(
            path,
            Some(&c.access_token),
            json!({"endpoint": "https://localhost/push", "keys": keys}),
        )
        .await;
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY, "{}", res.text);
}
