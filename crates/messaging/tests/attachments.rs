//! Attachments: upload, send with a message, download through signed URLs, and every
//! way an upload or a download is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use synctalk_testkit::{Status, TestApp, TestUser};

const ATTACH_FILES: u64 = 1 << 15;
/// A part of a form: name, file name, bytes.
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

/// The start of an ELF executable.
const ELF: [u8; 64] = {
    let mut bytes = [0u8; 64];
    bytes[0] = 0x7f;
    bytes[1] = b'E';
    bytes[2] = b'L';
    bytes[3] = b'F';
    bytes[4] = 2;
    bytes[5] = 1;
    bytes[6] = 1;
    bytes
};
const QUIET: Duration = Duration::from_millis(400);

/// A PNG's first bytes and some more.
fn png() -> Vec<u8> {
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    bytes.extend((0..20_000u32).map(|i| (i % 251) as u8));
    bytes
}

async fn upload(app: &TestApp, who: &TestUser, name: &str, bytes: &[u8]) -> Value {
    let res = app
        .multipart(
            "/api/v1/attachments",
            Some(&who.access_token),
            &[("file", Some(name), bytes)],
        )
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    res.body
}

/// A GET with one header.
async fn get_with(app: &TestApp, url: &str, name: &str, value: &str) -> synctalk_testkit::Response {
    app.request_with_headers(
        actix_web::http::Method::GET,
        url,
        None,
        None,
        &[(name, value)],
    )
    .await
}

fn files_in(dir: &std::path::Path) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() { walk(&path) } else { 1 }
                })
                .sum()
        })
    }
    walk(dir)
}

#[actix_web::test]
async fn an_upload_is_sent_with_a_message_and_served_to_readers_by_signed_url() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let member = app.register("member").await;
    let (_, general) = app.guild_with(&owner, &[&member]).await;
    let (mut member_ws, _) = app
        .gateway("/gateway/messaging", &member.access_token)
        .await;

    let bytes = png();
    let up = upload(&app, &owner, "../../holiday.png", &bytes).await;
    assert_eq!(up["filename"], "holiday.png", "no directories");
    assert_eq!(up["content_type"], "image/png", "from the bytes");
    assert_eq!(up["size"], bytes.len());
    assert_eq!(up["duration_ms"], Value::Null);
    let url = up["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!(
            "/api/v1/attachments/{}/holiday.png?ex=",
            up["id"].as_str().unwrap()
        )),
        "{url}"
    );

    // The uploader can fetch it before sending, without a header.
    let got = app.get(&url, None).await;
    assert_eq!(got.status, Status::OK);
    assert_eq!(got.bytes, bytes);
    assert_eq!(got.header("content-type"), Some("image/png"));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    assert!(
        got.header("content-disposition")
            .unwrap()
            .starts_with("inline")
    );
    assert!(
        got.header("content-security-policy")
            .unwrap()
            .contains("sandbox")
    );

    // Sent with no content: the message carries it, and so does its event.
    let res = app
        .post(
            &format!("/api/v1/channels/{general}/messages"),
            Some(&owner.access_token),
            json!({"attachment_ids": [up["id"], up["id"]]}),
        )
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    assert_eq!(res.body["content"], "");
    let files = res.body["attachments"].as_array().unwrap();
    assert_eq!(files.len(), 1, "a repeated id counts once");
    assert_eq!(files[0]["id"], up["id"]);
    let event = member_ws.dispatch("MESSAGE_CREATE").await;
    let event_url = event["d"]["attachments"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = app
        .get(
            &format!("/api/v1/channels/{general}/messages"),
            Some(&member.access_token),
        )
        .await;
    assert_eq!(listed.body[0]["attachments"][0]["id"], up["id"]);

    // A reader fetches it from the event's URL: whole, a range, or not modified.
    let got = app.get(&event_url, None).await;
    assert_eq!(got.status, Status::OK);
    assert_eq!(got.bytes, bytes);
    let etag = got.header("etag").unwrap().to_owned();
    let part = get_with(&app, &event_url, "range", "bytes=8-15").await;
    assert_eq!(part.status, Status::PARTIAL_CONTENT);
    assert_eq!(part.bytes, bytes[8..16]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 8-15/{}", bytes.len()).as_str())
    );
    let past = get_with(&app, &event_url, "range", "bytes=999999-").await;
    assert_eq!(past.status, Status::RANGE_NOT_SATISFIABLE);
    let same = get_with(&app, &event_url, "if-none-match", &etag).await;
    assert_eq!(same.status, Status::NOT_MODIFIED);
    // HEAD: GET's headers (length, type, validators), no body.
    let head = app
        .request(actix_web::http::Method::HEAD, &event_url, None, None)
        .await;
    assert_eq!(head.status, Status::OK, "{}", head.text);
    assert_eq!(
        head.header("content-length"),
        Some(bytes.len().to_string().as_str())
    );
    assert_eq!(head.header("content-type"), Some("image/png"));
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    assert_eq!(head.header("accept-ranges"), Some("bytes"));
    assert!(head.bytes.is_empty(), "no body");

    // Without its signature, with another expiry or another file's, it is not there.
    let (path, query) = event_url.split_once('?').unwrap();
    let sig = query.split("sig=").nth(1).unwrap();
    let ex: i64 = query
        .split("ex=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .unwrap()
        .parse()
        .unwrap();
    for bad in [
        path.to_owned(),
        format!("{path}?ex={}&sig={sig}", ex + 3600),
        format!("{path}?ex={ex}&sig=AAAA{sig}"),
        format!("{path}?ex=100&sig={sig}"),
        format!("/api/v1/attachments/not-an-id/x.png?{query}"),
    ] {
        let res = app.get(&bad, None).await;
        assert_eq!(res.status, Status::NOT_FOUND, "{bad}");
        assert_eq!(res.code(), "not_found");
    }
    let other = upload(&app, &owner, "b.png", &bytes).await;
    let other_path = other["url"].as_str().unwrap().split('?').next().unwrap();
    assert_eq!(
        app.get(&format!("{other_path}?{query}"), None).await.status,
        Status::NOT_FOUND,
        "a signature is good for its own file only"
    );

    // Sent once, it cannot be sent again, nor by someone else.
    for who in [&owner, &member] {
        let res = app
            .post(
                &format!("/api/v1/channels/{general}/messages"),
                Some(&who.access_token),
                json!({"content": "again", "attachment_ids": [up["id"]]}),
            )
            .await;
        assert_eq!(res.status, Status::NOT_FOUND, "{}", res.text);
    }
    let res = app
        .post(
            &format!("/api/v1/channels/{general}/messages"),
            Some(&member.access_token),
            json!({"content": "mine?", "attachment_ids": [other["id"]]}),
        )
        .await;
    assert_eq!(res.status, Status::NOT_FOUND, "someone else's upload");
    // Nothing was sent by the refused sends.
    let listed = app
        .get(
            &format!("/api/v1/channels/{general}/messages"),
            Some(&member.access_token),
        )
        .await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    member_ws.none_of(&["MESSAGE_CREATE"], QUIET).await;

    // Deleting the message takes the file with it.
    let id = res_id(&listed.body[0]);
    let res = app
        .delete(
            &format!("/api/v1/channels/{general}/messages/{id}"),
            Some(&owner.access_token),
        )
        .await;
    assert_eq!(res.status, Status::NO_CONTENT);
    assert_eq!(app.get(&event_url, None).await.status, Status::NOT_FOUND);
}

fn res_id(message: &Value) -> String {
    message["id"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn sends_are_refused_without_content_files_or_the_right_to_attach() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let member = app.register("member").await;
    let (guild, general) = app.guild_with(&owner, &[&member]).await;
    let messages = format!("/api/v1/channels/{general}/messages");

    for body in [
        json!({}),
        json!({"content": ""}),
        json!({"attachment_ids": []}),
    ] {
        let res = app
            .post(&messages, Some(&member.access_token), body.clone())
            .await;
        assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            res.body["error"]["fields"]["content"].is_array(),
            "{}",
            res.text
        );
    }
    let many: Vec<String> = (0..11).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let res = app
        .post(
            &messages,
            Some(&member.access_token),
            json!({"attachment_ids": many}),
        )
        .await;
    assert_eq!(res.status, Status::UNPROCESSABLE_ENTITY);
    assert!(res.body["error"]["fields"]["attachment_ids"].is_array());
    let res = app
        .post(
            &messages,
            Some(&member.access_token),
            json!({"attachment_ids": [uuid::Uuid::now_v7()]}),
        )
        .await;
    assert_eq!(res.status, Status::NOT_FOUND, "an unknown upload");

    // Without ATTACH_FILES: text still goes, files do not.
    let res = app
        .put(
            &format!("/api/v1/channels/{general}/permissions/{guild}"),
            Some(&owner.access_token),
            Some(json!({"type": "role", "deny": ATTACH_FILES.to_string()})),
        )
        .await;
    assert_eq!(res.status, Status::OK, "{}", res.text);
    let up = upload(&app, &member, "a.png", &png()).await;
    let res = app
        .post(
            &messages,
            Some(&member.access_token),
            json!({"content": "look", "attachment_ids": [up["id"]]}),
        )
        .await;
    assert_eq!(res.status, Status::FORBIDDEN);
    assert_eq!(res.code(), "missing_permissions");
    let res = app
        .post(
            &messages,
            Some(&member.access_token),
            json!({"content": "words only"}),
        )
        .await;
    assert_eq!(res.status, Status::CREATED);

    // In a DM anyone may attach; over the gateway too.
    let dm = app
        .post(
            "/api/v1/users/@me/channels",
            Some(&member.access_token),
            json!({"recipient_id": owner.id}),
        )
        .await;
    assert!(dm.status.is_success(), "{}", dm.text);
    let dm = dm.body["id"].as_str().unwrap().to_owned();
    let (mut ws, _) = app
        .gateway("/gateway/messaging", &member.access_token)
        .await;
    let answer = ws
        .request(
            "SEND_MESSAGE",
            "n1",
            json!({"channel_id": dm, "attachment_ids": [up["id"]]}),
        )
        .await;
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["result"]["attachments"][0]["id"], up["id"]);
}

#[actix_web::test]
async fn uploads_are_checked_and_nothing_refused_is_kept() {
    let app = TestApp::spawn_with(|s| s.upload_max_bytes = 64 * 1024).await;
    let user = app.register("uploader").await;
    let token = Some(user.access_token.as_str());
    let dir = app.db.attachments_dir();
    let path = "/api/v1/attachments";

    let refused: [(&[Part], Status, &str); 8] = [
        // An executable (ELF), whatever its name.
        (
            &[("file", Some("cat.png"), &ELF)],
            Status::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        // Over the limit.
        (
            &[("file", Some("big.bin"), &[7u8; 65 * 1024])],
            Status::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            &[("file", Some("empty.txt"), b"")],
            Status::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            &[("duration_ms", None, b"12")],
            Status::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            &[("file", Some("a.txt"), b"hi"), ("colour", None, b"red")],
            Status::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            &[
                ("file", Some("a.txt"), b"hi"),
                ("file", Some("b.txt"), b"ho"),
            ],
            Status::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        // A duration that is not a whole number.
        (
            &[
                ("duration_ms", None, b"-5"),
                ("file", Some("a.mp3"), b"ID3\x03\0\0\0\0\0\0"),
            ],
            Status::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            &[
                ("file", Some("a.mp3"), b"ID3\x03\0\0\0\0\0\0"),
                ("duration_ms", None, b"1.5"),
            ],
            Status::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
    ];
    for (parts, status, code) in refused {
        let res = app.multipart(path, token, parts).await;
        assert_eq!(res.status, status, "{}", res.text);
        assert_eq!(res.code(), code, "{}", res.text);
    }
    assert_eq!(files_in(&dir), 0, "nothing refused is kept");

    // Not multipart, not signed in.
    let res = app
        .raw(
            actix_web::http::Method::POST,
            path,
            "application/json",
            b"{}".to_vec(),
        )
        .await;
    assert!(
        [Status::UNAUTHORIZED, Status::UNSUPPORTED_MEDIA_TYPE].contains(&res.status),
        "{}",
        res.text
    );
    let res = app
        .request_with_headers(
            actix_web::http::Method::POST,
            path,
            token,
            None,
            &[("content-type", "text/plain")],
        )
        .await;
    assert_eq!(res.status, Status::UNSUPPORTED_MEDIA_TYPE, "{}", res.text);
    let res = app
        .multipart(path, None, &[("file", Some("a.txt"), b"hi")])
        .await;
    assert_eq!(res.status, Status::UNAUTHORIZED);

    // Voice messages carry their duration; HTML is kept as plain text.
    let res = app
        .multipart(
            path,
            token,
            &[
                ("file", Some("voice.mp3"), b"ID3\x03\0\0\0\0\0\0more"),
                ("duration_ms", None, b"1500"),
            ],
        )
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    assert_eq!(res.body["content_type"], "audio/mpeg");
    assert_eq!(res.body["duration_ms"], 1500);
    // A picture has no duration: one given is dropped.
    let res = app
        .multipart(
            path,
            token,
            &[
                ("file", Some("a.png"), &png()[..100]),
                ("duration_ms", None, b"1000"),
            ],
        )
        .await;
    assert_eq!(res.status, Status::CREATED, "{}", res.text);
    assert_eq!(res.body["duration_ms"], Value::Null);
    let page = upload(
        &app,
        &user,
        "x.html",
        b"<html><script>alert(1)</script></html>",
    )
    .await;
    assert_eq!(page["content_type"], "text/plain; charset=utf-8");
    let got = app.get(page["url"].as_str().unwrap(), None).await;
    assert_eq!(
        got.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // Names cannot hide what they are; scripts are refused by name.
    let named = upload(&app, &user, "photo\u{202E}gnp.txt", b"plain").await;
    assert_eq!(named["filename"], "photognp.txt");
    let res = app
        .multipart(path, token, &[("file", Some("setup.BAT"), b"@echo off")])
        .await;
    assert_eq!(res.status, Status::UNSUPPORTED_MEDIA_TYPE, "{}", res.text);
    let blob = upload(&app, &user, "data.bin", &[0, 1, 2, 3, 255, 0]).await;
    assert_eq!(blob["content_type"], "application/octet-stream");
    let got = app.get(blob["url"].as_str().unwrap(), None).await;
    assert!(
        got.header("content-disposition")
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(files_in(&dir), 5);
}

#[actix_web::test]
async fn a_user_holds_a_bounded_number_of_unsent_uploads() {
    let app = TestApp::spawn().await;
    let user = app.register("hoarder").await;
    for n in 0..synctalk_messaging::attachments::MAX_UNSENT {
        upload(&app, &user, &format!("{n}.txt"), b"x").await;
    }
    let res = app
        .multipart(
            "/api/v1/attachments",
            Some(&user.access_token),
            &[("file", Some("one-more.txt"), b"x")],
        )
        .await;
    assert_eq!(res.status, Status::CONFLICT, "{}", res.text);
    assert_eq!(
        files_in(&app.db.attachments_dir()),
        100,
        "the refused one is not kept"
    );
}

#[actix_web::test]
async fn uploads_never_sent_are_swept_after_a_day() {
    use diesel_async::RunQueryDsl;
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (_, general) = app.guild_with(&owner, &[]).await;
    let sent = upload(&app, &owner, "kept.png", &png()).await;
    let res = app
        .post(
            &format!("/api/v1/channels/{general}/messages"),
            Some(&owner.access_token),
            json!({"attachment_ids": [sent["id"]]}),
        )
        .await;
    assert_eq!(res.status, Status::CREATED);
    let free = upload(&app, &owner, "gone.png", &png()).await;
    let fresh = upload(&app, &owner, "fresh.png", &png()).await;
    let mut conn = app.db.connect().await;
    for id in [&sent["id"], &free["id"]] {
        diesel::sql_query(
            "UPDATE attachments SET created_at = now() - interval '25 hours' WHERE id = $1",
        )
        .bind::<diesel::sql_types::Uuid, _>(id.as_str().unwrap().parse::<uuid::Uuid>().unwrap())
        .execute(&mut conn)
        .await
        .unwrap();
    }
    // Too old to send now.
    let res = app
        .post(
            &format!("/api/v1/channels/{general}/messages"),
            Some(&owner.access_token),
            json!({"attachment_ids": [free["id"]]}),
        )
        .await;
    assert_eq!(res.status, Status::NOT_FOUND);

    let store = synctalk_messaging::attachments::Store::open(
        app.db.attachments_dir().to_str().unwrap(),
        1 << 20,
    )
    .unwrap();
    let swept = synctalk_messaging::attachments::sweep(&mut conn, &store)
        .await
        .unwrap();
    assert_eq!(swept, 1, "only the old upload never sent");
    assert_eq!(files_in(&app.db.attachments_dir()), 2);
    assert_eq!(
        app.get(free["url"].as_str().unwrap(), None).await.status,
        Status::NOT_FOUND
    );
    assert_eq!(
        app.get(fresh["url"].as_str().unwrap(), None).await.status,
        Status::OK
    );
    assert_eq!(
        app.get(sent["url"].as_str().unwrap(), None).await.status,
        Status::OK
    );
}

#[actix_web::test]
async fn search_can_keep_messages_with_files_of_a_kind() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let (_, general) = app.guild_with(&owner, &[]).await;
    let picture = upload(&app, &owner, "crab.png", &png()).await;
    let notes = upload(&app, &owner, "crab.txt", b"notes about crabs").await;
    let messages = format!("/api/v1/channels/{general}/messages");
    for body in [
        json!({"content": "crab photo", "attachment_ids": [picture["id"]]}),
        json!({"content": "crab notes", "attachment_ids": [notes["id"]]}),
        json!({"content": "crab plain"}),
    ] {
        let res = app.post(&messages, Some(&owner.access_token), body).await;
        assert_eq!(res.status, Status::CREATED, "{}", res.text);
    }
    let found = |has: &'static str| {
        let app = &app;
        let token = owner.access_token.clone();
        let general = general.clone();
        async move {
            let res = app
                .get(
                    &format!("/api/v1/channels/{general}/messages/search?q=crab{has}"),
                    Some(&token),
                )
                .await;
            assert_eq!(res.status, Status::OK, "{}", res.text);
            res.body
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["content"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(found("").await, ["crab plain", "crab notes", "crab photo"]);
    assert_eq!(found("&has=attachment").await, ["crab notes", "crab photo"]);
    assert_eq!(found("&has=image").await, ["crab photo"]);
    assert_eq!(found("&has=file").await, ["crab notes"]);
    assert!(found("&has=video").await.is_empty());
    let res = app
        .get(
            &format!("/api/v1/channels/{general}/messages/search?q=crab&has=link"),
            Some(&owner.access_token),
        )
        .await;
    assert_eq!(res.status, Status::BAD_REQUEST);
    assert_eq!(res.code(), "invalid_query");
}
