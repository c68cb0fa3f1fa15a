//! Attachments: a file is uploaded first (`POST /attachments`, multipart), then sent
//! with a message (`attachment_ids`). The bytes go to an object store (a directory
//! under `./.data/` by default, any S3-compatible bucket by configuration), the row to
//! PostgreSQL once they are stored. The server decides the content type from the bytes
//! and refuses executables. A file is served back through URLs that are signed and
//! expire, so `<img src>` works without a header; every message payload carries fresh
//! ones, and only those who can read the channel get message payloads.

use std::sync::Arc;
use std::time::Duration;

use actix_multipart::{Field, Multipart};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};
use ring::hmac;
use serde::{Deserialize, Serialize};
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::{attachments, messages};
use synctalk_kernel::{AppError, AppResult, ChannelId, ErrorCode, MessageId, UserId};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// The most attachments one message carries.
pub const MAX_PER_MESSAGE: usize = 10;
/// The longest voice or video message, in milliseconds (a day).
pub const MAX_DURATION_MS: u32 = 86_400_000;
/// How long a URL is good for at least; expiry is rounded up to the hour, so a file's
/// URL stays the same for an hour and browsers cache it.
const URL_TTL_SECS: i64 = 24 * 3600;
/// An upload not sent with a message within this long can no longer be; an hour later
/// it is swept with its bytes.
const ATTACHABLE_FOR_SECS: f64 = 23.0 * 3600.0;
const SWEEP_AFTER_SECS: f64 = 24.0 * 3600.0;
/// How much of a file decides its type.
const SNIFF_BYTES: usize = 8192;
/// The longest file name kept, in characters.
const MAX_FILENAME: usize = 200;

/// A file attached to a message (or uploaded, waiting to be sent).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Attachment {
    /// Its id: give it in a message's `attachment_ids`.
    pub id: Uuid,
    /// The uploaded file's name (no directories; at most 200 characters).
    #[schema(example = "cat.png")]
    pub filename: String,
    /// Decided by the server from the file's bytes, not from what the client said.
    #[schema(example = "image/png")]
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    /// Where to fetch it: relative to the API's origin, signed, good for at least 24
    /// hours (no Authorization header needed). Message payloads carry fresh ones.
    #[schema(
        example = "/api/v1/attachments/01939f0c-7c4e-7a51-9d1c-0a8c6a3f2b10/cat.png?ex=1733443200&sig=x3Y"
    )]
    pub url: String,
    /// For voice and video messages: how long it plays, as the client said.
    pub duration_ms: Option<i32>,
}

/// The multipart form of `POST /attachments` (for the document: the form is read as a
/// stream of parts).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file: not empty, at most the upload limit (25 MiB by default).
    /// Executables are refused.
    #[schema(value_type = String, format = Binary, min_length = 1)]
    pub file: Vec<u8>,
    /// For audio and video: how long it plays, in milliseconds (ignored for other
    /// files).
    #[schema(minimum = 0, maximum = 86_400_000, nullable = false)]
    pub duration_ms: Option<u32>,
}

/// A row of `attachments`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = attachments, check_for_backend(diesel::pg::Pg))]
pub struct AttachmentRow {
    /// Id.
    pub id: Uuid,
    /// Who uploaded it.
    pub uploader_id: UserId,
    /// Its channel, once sent.
    pub channel_id: Option<ChannelId>,
    /// Its message, once sent.
    pub message_id: Option<MessageId>,
    /// File name.
    pub filename: String,
    /// Sniffed type.
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    /// Play time.
    pub duration_ms: Option<i32>,
    /// The key its URLs are signed with.
    pub url_key: Vec<u8>,
    /// Uploaded.
    pub created_at: DateTime<Utc>,
}

impl AttachmentRow {
    fn signature(&self, expires: i64) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.url_key);
        let tag = hmac::sign(&key, format!("{}.{expires}", self.id).as_bytes());
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    fn verify(&self, expires: i64, signature: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.url_key);
        hmac::verify(&key, format!("{}.{expires}", self.id).as_bytes(), &tag).is_ok()
    }

    /// The wire form, with a URL signed now.
    pub fn to_attachment(&self, now: DateTime<Utc>) -> Attachment {
        let expires = url_expiry(now);
        let name = percent_encoding::utf8_percent_encode(&self.filename, PATH_SEGMENT);
        Attachment {
            id: self.id,
            filename: self.filename.clone(),
            content_type: self.content_type.clone(),
            size: self.size,
            url: format!(
                "/api/v1/attachments/{}/{name}?ex={expires}&sig={}",
                self.id,
                self.signature(expires)
            ),
            duration_ms: self.duration_ms,
        }
    }
}

/// When URLs signed at `now` expire: on the hour, at least `URL_TTL_SECS` later (so
/// every URL signed within one hour is the same).
pub fn url_expiry(now: DateTime<Utc>) -> i64 {
    (now.timestamp() + URL_TTL_SECS + 3599) / 3600 * 3600
}

/// What a path segment must escape: everything but unreserved characters.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where attachments' bytes are kept, and how big an upload may be.
#[derive(Clone)]
pub struct Store {
    objects: Arc<dyn ObjectStore>,
    max_bytes: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("objects", &self.objects.to_string())
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl Store {
    /// `location` is a directory, or `s3://bucket` (credentials, region and endpoint
    /// from the usual `AWS_*` variables: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ENDPOINT` for S3-compatible services, `AWS_ALLOW_HTTP`).
    pub fn open(location: &str, max_bytes: u64) -> anyhow::Result<Self> {
        let objects: Arc<dyn ObjectStore> = if location.starts_with("s3://") {
            Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(location)
                    .build()?,
            )
        } else {
            std::fs::create_dir_all(location)?;
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(
                location,
            )?)
        };
        Ok(Self { objects, max_bytes })
    }

    /// The upload limit, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn path(id: Uuid) -> ObjectPath {
        ObjectPath::from(format!("attachments/{id}"))
    }
}

fn store_error(error: object_store::Error) -> AppError {
    AppError::internal(anyhow::Error::new(error).context("attachment store"))
}

fn multipart_error(error: actix_multipart::MultipartError) -> AppError {
    use actix_multipart::MultipartError as E;
    match error {
        E::ContentTypeMissing | E::ContentTypeParse | E::ContentTypeIncompatible => AppError::new(
            ErrorCode::UnsupportedMediaType,
            "the body must be multipart/form-data",
        ),
        other => AppError::new(
            ErrorCode::InvalidBody,
            format!("the multipart body is malformed: {other}"),
        ),
    }
}

/// A file name as kept: no directories, no control characters, at most 200
/// characters; `file` when nothing is left.
pub fn clean_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    // No controls, and none of the invisible characters that reorder or hide what
    // follows (`photo\u{202E}gnp.bat` would show as "phototab.png").
    let cleaned: String = base
        .chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(
                    c,
                    '\u{061C}'
                        | '\u{200B}'..='\u{200F}'
                        | '\u{202A}'..='\u{202E}'
                        | '\u{2060}'..='\u{2069}'
                        | '\u{FEFF}'
                )
        })
        .take(MAX_FILENAME)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "file".to_owned()
    } else {
        cleaned.to_owned()
    }
}

/// File name endings that run as programs when opened on some system: refused whatever
/// the bytes (scripts are text, so sniffing alone lets them through).
const RUNNABLE: &[&str] = &[
    "exe", "com", "scr", "bat", "cmd", "msi", "msp", "ps1", "psm1", "vbs", "vbe", "js", "jse",
    "wsf", "wsh", "hta", "cpl", "jar", "lnk", "reg", "app", "sh", "command", "apk", "dll",
];

/// Whether a file name ends in a runnable extension.
pub fn runnable(filename: &str) -> bool {
    filename
        .rsplit_once('.')
        .is_some_and(|(_, ext)| RUNNABLE.contains(&ext.to_ascii_lowercase().as_str()))
}

/// The content type of a file whose first bytes are `head`, or `None` for a file
/// refused (an executable or other program code).
pub fn sniff(head: &[u8]) -> Option<String> {
    let text = || {
        let valid = match std::str::from_utf8(head) {
            Ok(_) => true,
            // A character cut by the end of the sniffed part is fine.
            Err(e) => e.error_len().is_none() && head.len() >= SNIFF_BYTES,
        };
        if valid && !head.contains(&0) {
            "text/plain; charset=utf-8".to_owned()
        } else {
            "application/octet-stream".to_owned()
        }
    };
    match infer::get(head) {
        Some(kind) => match kind.matcher_type() {
            infer::MatcherType::App => None,
            // HTML, XML and scripts are shown as text, never rendered.
            infer::MatcherType::Text => Some(text()),
            _ => Some(kind.mime_type().to_owned()),
        },
        None => Some(text()),
    }
}

/// Whether a browser may show it in place (pictures, sound, video, plain text); all
/// else downloads.
fn inline(content_type: &str) -> bool {
    ["image/", "audio/", "video/", "text/plain"]
        .iter()
        .any(|p| content_type.starts_with(p))
}

/// Reads the `file` part into the store: its type from its first bytes, at most
/// `max_bytes`. On any error nothing stays stored.
async fn store_file(store: &Store, id: Uuid, field: &mut Field) -> AppResult<(String, i64)> {
    let mut head: Vec<u8> = Vec::with_capacity(SNIFF_BYTES);
    let mut rest: Option<web::Bytes> = None;
    let mut ended = false;
    while head.len() < SNIFF_BYTES {
        match field.try_next().await.map_err(multipart_error)? {
            Some(chunk) => {
                let room = SNIFF_BYTES - head.len();
                if chunk.len() > room {
                    head.extend_from_slice(&chunk[..room]);
                    rest = Some(chunk.slice(room..));
                } else {
                    head.extend_from_slice(&chunk);
                }
            }
            None => {
                ended = true;
                break;
            }
        }
    }
    if head.is_empty() {
        return Err(AppError::field("file", "must not be empty"));
    }
    let content_type = sniff(&head).ok_or_else(|| {
        AppError::new(
            ErrorCode::UnsupportedMediaType,
            "executables and other program files cannot be uploaded",
        )
    })?;
    let too_big = |_: u64| {
        AppError::new(
            ErrorCode::PayloadTooLarge,
            format!("the file is larger than {} bytes", store.max_bytes),
        )
    };
    let mut size = head.len() as u64;
    if size > store.max_bytes {
        return Err(too_big(size));
    }
    let path = Store::path(id);
    let upload = store
        .objects
        .put_multipart(&path)
        .await
        .map_err(store_error)?;
    let mut writer = WriteMultipart::new(upload);
    writer.write(&head);
    if let Some(rest) = rest {
        size += rest.len() as u64;
        writer.write(&rest);
    }
    loop {
        if size > store.max_bytes {
            let _ = writer.abort().await;
            return Err(too_big(size));
        }
        if ended {
            break;
        }
        let chunk = match field.try_next().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                ended = true;
                continue;
            }
            Err(error) => {
                let _ = writer.abort().await;
                return Err(multipart_error(error));
            }
        };
        size += chunk.len() as u64;
        if let Err(error) = writer.wait_for_capacity(4).await {
            return Err(store_error(error));
        }
        writer.write(&chunk);
    }
    writer.finish().await.map_err(store_error)?;
    Ok((content_type, i64::try_from(size).unwrap_or(i64::MAX)))
}

/// Reads a small text part (at most 32 bytes).
async fn small_text(field: &mut Field, name: &str) -> AppResult<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.try_next().await.map_err(multipart_error)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > 32 {
            return Err(AppError::field(name, "is too long"));
        }
    }
    String::from_utf8(bytes).map_err(|_| AppError::field(name, "must be text"))
}

/// An upload's parts, read: the file stored, its name and type, the duration.
struct Upload {
    filename: String,
    content_type: String,
    size: i64,
    duration_ms: Option<u32>,
}

async fn read_form(store: &Store, id: Uuid, form: &mut Multipart) -> AppResult<Upload> {
    let mut file: Option<(String, String, i64)> = None;
    let mut duration_ms = None;
    while let Some(mut field) = form.try_next().await.map_err(multipart_error)? {
        match field.name() {
            Some("file") if file.is_none() => {
                let filename = clean_filename(
                    field
                        .content_disposition()
                        .and_then(|d| d.get_filename())
                        .unwrap_or_default(),
                );
                if runnable(&filename) {
                    return Err(AppError::new(
                        ErrorCode::UnsupportedMediaType,
                        "executables and scripts cannot be uploaded",
                    ));
                }
                let (content_type, size) = store_file(store, id, &mut field).await?;
                file = Some((filename, content_type, size));
            }
            Some("file") => return Err(AppError::field("file", "only one file per upload")),
            Some("duration_ms") if duration_ms.is_none() => {
                let text = small_text(&mut field, "duration_ms").await?;
                duration_ms = Some(
                    text.trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|d| *d <= MAX_DURATION_MS)
                        .ok_or_else(|| {
                            AppError::field(
                                "duration_ms",
                                format!("must be a whole number from 0 to {MAX_DURATION_MS}"),
                            )
                        })?,
                );
            }
            Some(other) => {
                let name = other.to_owned();
                return Err(AppError::field(&name, "is not a field of an upload"));
            }
            None => return Err(AppError::field("file", "every part must have a name")),
        }
    }
    let (filename, content_type, size) =
        file.ok_or_else(|| AppError::field("file", "is required"))?;
    Ok(Upload {
        filename,
        content_type,
        size,
        duration_ms,
    })
}

/// The most uploads one user may hold not yet sent.
pub const MAX_UNSENT: i64 = 100;
/// The most bytes one user may hold in uploads not yet sent (1 GiB).
pub const MAX_UNSENT_BYTES: i64 = 1 << 30;

/// 409 when `user` already holds as many unsent uploads (or bytes) as allowed.
async fn within_quota(pool: &synctalk_db::Pool, user: UserId) -> AppResult<()> {
    #[derive(QueryableByName)]
    struct Held {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        bytes: i64,
    }
    let mut conn = synctalk_db::conn(pool).await?;
    let Held { count, bytes } = synctalk_db::sql(
        "SELECT count(*)::bigint AS count, coalesce(sum(size), 0)::bigint AS bytes \
         FROM attachments WHERE uploader_id = $1 AND message_id IS NULL",
    )
    .bind::<diesel::sql_types::Uuid, _>(user.0)
    .get_result(&mut conn)
    .await?;
    drop(conn);
    if count >= MAX_UNSENT || bytes >= MAX_UNSENT_BYTES {
        return Err(AppError::new(
            ErrorCode::Conflict,
            format!(
                "you hold {count} uploads ({bytes} bytes) not sent yet: send or wait for them to expire (at most {MAX_UNSENT} and 1 GiB)"
            ),
        ));
    }
    Ok(())
}

/// Stores an upload of `uploader`'s: 201 with the attachment. Its bytes are stored
/// before its row is written, and removed again if anything after fails; no database
/// connection is held while the client sends.
pub async fn upload(
    pool: &synctalk_db::Pool,
    store: &Store,
    uploader: UserId,
    form: &mut Multipart,
) -> AppResult<Attachment> {
    within_quota(pool, uploader).await?;
    let id = Uuid::now_v7();
    let stored = read_form(store, id, form).await;
    let row = match stored {
        Ok(upload) => {
            let mut upload = upload;
            // Only what plays has a duration; on anything else it is dropped.
            if !(upload.content_type.starts_with("audio/")
                || upload.content_type.starts_with("video/"))
            {
                upload.duration_ms = None;
            }
            match synctalk_db::conn(pool).await {
                Ok(mut conn) => insert(&mut conn, id, uploader, upload).await,
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e),
    };
    match row {
        Ok(row) => Ok(row.to_attachment(Utc::now())),
        Err(error) => {
            // Nothing stays stored for a refused or failed upload (a part may not
            // have been stored at all: that delete finds nothing).
            if let Err(e) = store.objects.delete(&Store::path(id)).await
                && !matches!(e, object_store::Error::NotFound { .. })
            {
                tracing::warn!(error = %e, %id, "could not remove a refused upload");
            }
            Err(error)
        }
    }
}

async fn insert(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    uploader: UserId,
    upload: Upload,
) -> AppResult<AttachmentRow> {
    let mut url_key = [0u8; 32];
    getrandom::fill(&mut url_key).map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?;
    let row = diesel::insert_into(attachments::table)
        .values((
            attachments::id.eq(id),
            attachments::uploader_id.eq(uploader),
            attachments::filename.eq(&upload.filename),
            attachments::content_type.eq(&upload.content_type),
            attachments::size.eq(upload.size),
            attachments::duration_ms.eq(upload.duration_ms.map(|d| d as i32)),
            attachments::url_key.eq(url_key.as_slice()),
        ))
        .returning(AttachmentRow::as_returning())
        .get_result(conn)
        .await?;
    Ok(row)
}

/// Ties `ids` (uploads of `author`'s, not sent yet) to a new message, in the send's
/// transaction: 404 `attachment` when one is unknown, someone else's, already sent or
/// too old.
pub async fn attach(
    mut conn: &AsyncPgConnection,
    author: UserId,
    channel: ChannelId,
    message: MessageId,
    ids: &[Uuid],
) -> AppResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let done = diesel::update(
        attachments::table
            .filter(attachments::id.eq_any(ids))
            .filter(attachments::uploader_id.eq(author))
            .filter(attachments::message_id.is_null())
            .filter(
                attachments::created_at
                    .gt(Utc::now() - chrono::Duration::seconds(ATTACHABLE_FOR_SECS as i64)),
            ),
    )
    .set((
        attachments::channel_id.eq(channel),
        attachments::message_id.eq(message),
    ))
    .execute(&mut conn)
    .await?;
    if done != ids.len() {
        return Err(AppError::not_found("attachment"));
    }
    Ok(())
}

/// The attachments of some messages of a channel, in upload order, with URLs signed
/// now.
pub async fn of_messages(
    mut conn: &AsyncPgConnection,
    channel: ChannelId,
    ids: &[MessageId],
) -> QueryResult<std::collections::HashMap<MessageId, Vec<Attachment>>> {
    let rows: Vec<AttachmentRow> = attachments::table
        .filter(attachments::channel_id.eq(channel))
        .filter(attachments::message_id.eq_any(ids))
        .order(attachments::id.asc())
        .select(AttachmentRow::as_select())
        .load(&mut conn)
        .await?;
    let now = Utc::now();
    let mut out: std::collections::HashMap<MessageId, Vec<Attachment>> =
        std::collections::HashMap::new();
    for row in rows {
        if let Some(message) = row.message_id {
            out.entry(message).or_default().push(row.to_attachment(now));
        }
    }
    Ok(out)
}

/// The query of a signed URL.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Signed {
    /// When the URL expires (Unix seconds).
    pub ex: Option<i64>,
    /// Its signature.
    pub sig: Option<String>,
}

/// One byte range of `size` bytes from a `Range` header: `None` for the whole file,
/// `Err` for a range that cannot be served (416).
fn byte_range(header: Option<&HeaderValue>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = header.and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    // Several ranges at once are answered with the whole file, as RFC 9110 allows.
    if spec.contains(',') {
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = (start.trim(), end.trim());
    let (first, last) = if start.is_empty() {
        let n: u64 = end.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size.checked_sub(1).ok_or(())?)
    } else {
        let first: u64 = start.parse().map_err(|_| ())?;
        let last = if end.is_empty() {
            size.checked_sub(1).ok_or(())?
        } else {
            end.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        (first, last)
    };
    if first >= size || first > last {
        return Err(());
    }
    Ok(Some((first, last)))
}

/// Serves a file through a signed URL: 404 unless the signature is right, the URL has
/// not expired, and the file's message (if sent) is not deleted. One byte range is
/// honoured (206); the ETag never changes, as the bytes never do.
pub async fn serve(
    pool: &synctalk_db::Pool,
    store: &Store,
    request: &HttpRequest,
    id: Uuid,
    signed: &Signed,
) -> AppResult<HttpResponse> {
    let (Some(expires), Some(signature)) = (signed.ex, signed.sig.as_deref()) else {
        return Err(AppError::not_found("attachment"));
    };
    if expires < Utc::now().timestamp() {
        return Err(AppError::not_found("attachment"));
    }
    // The connection goes back before the bytes are read from the store.
    let mut conn = synctalk_db::conn(pool).await?;
    let row: AttachmentRow = attachments::table
        .find(id)
        .select(AttachmentRow::as_select())
        .first(&mut conn)
        .await
        .optional()?
        .filter(|row| row.verify(expires, signature))
        .ok_or_else(|| AppError::not_found("attachment"))?;
    if let (Some(channel), Some(message)) = (row.channel_id, row.message_id) {
        let deleted: Option<Option<DateTime<Utc>>> = messages::table
            .find((channel, message))
            .select(messages::deleted_at)
            .first(&mut conn)
            .await
            .optional()?;
        if !matches!(deleted, Some(None)) {
            return Err(AppError::not_found("attachment"));
        }
    }
    drop(conn);
    let etag = format!("\"{}\"", row.id);
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::CONTENT_TYPE, row.content_type.clone()))
        .insert_header((header::ETAG, etag.clone()))
        .insert_header((header::CACHE_CONTROL, "private, max-age=3600"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        ))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header(header::ContentDisposition {
            disposition: if inline(&row.content_type) {
                header::DispositionType::Inline
            } else {
                header::DispositionType::Attachment
            },
            parameters: vec![header::DispositionParam::FilenameExt(
                header::ExtendedValue {
                    charset: header::Charset::Ext("UTF-8".into()),
                    language_tag: None,
                    value: row.filename.clone().into_bytes(),
                },
            )],
        });
    if request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish());
    }
    let size = u64::try_from(row.size).unwrap_or_default();
    let range = match byte_range(request.headers().get(header::RANGE), size) {
        Ok(range) => range,
        Err(()) => {
            return Ok(HttpResponse::RangeNotSatisfiable()
                .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
                .finish());
        }
    };
    let length = range.map_or(size, |(first, last)| last - first + 1);
    if let Some((first, last)) = range {
        response
            .status(actix_web::http::StatusCode::PARTIAL_CONTENT)
            .insert_header((
                header::CONTENT_RANGE,
                format!("bytes {first}-{last}/{size}"),
            ));
    }
    if request.method() == actix_web::http::Method::HEAD {
        // The headers GET would answer; the bytes are only looked for, not read.
        match store.objects.head(&Store::path(row.id)).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                return Err(AppError::not_found("attachment"));
            }
            Err(e) => return Err(store_error(e)),
        }
        return Ok(response
            .no_chunking(length)
            .streaming(futures_util::stream::empty::<
                Result<actix_web::web::Bytes, std::io::Error>,
            >()));
    }
    let options = GetOptions {
        range: range.map(|(first, last)| GetRange::Bounded(first..last + 1)),
        ..GetOptions::default()
    };
    let got = match store.objects.get_opts(&Store::path(row.id), options).await {
        Ok(got) => got,
        // Its bytes are not in this store (a node configured with another store).
        Err(object_store::Error::NotFound { .. }) => {
            tracing::warn!(attachment = %row.id, "an attachment's bytes are missing from the store");
            return Err(AppError::not_found("attachment"));
        }
        Err(e) => return Err(store_error(e)),
    };
    let body = got.into_stream().map_err(|e| {
        tracing::warn!(error = %e, "reading an attachment failed midway");
        std::io::Error::other(e)
    });
    Ok(response.no_chunking(length).streaming(body))
}

/// Removes uploads never sent with a message, a day after they were made, bytes
/// first: `(rows, failures)` of one batch of at most 500.
pub async fn sweep(conn: &mut AsyncPgConnection, store: &Store) -> AppResult<usize> {
    let ids: Vec<Uuid> = attachments::table
        .filter(attachments::message_id.is_null())
        .filter(
            attachments::created_at
                .lt(Utc::now() - chrono::Duration::seconds(SWEEP_AFTER_SECS as i64)),
        )
        .select(attachments::id)
        .limit(500)
        .load(conn)
        .await?;
    for id in &ids {
        match store.objects.delete(&Store::path(*id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error(e)),
        }
    }
    let removed = diesel::delete(
        attachments::table
            .filter(attachments::id.eq_any(&ids))
            .filter(attachments::message_id.is_null()),
    )
    .execute(conn)
    .await?;
    Ok(removed)
}

/// Sweeps old free uploads every `every`, forever.
pub async fn sweep_forever(pool: synctalk_db::Pool, store: Store, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        // Batch after batch until one comes back short.
        let swept = async {
            let mut conn = synctalk_db::conn(&pool).await?;
            let mut total = 0;
            loop {
                let n = sweep(&mut conn, &store).await?;
                total += n;
                if n < 500 {
                    break AppResult::Ok(total);
                }
            }
        }
        .await;
        match swept {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "swept uploads never sent"),
            Err(error) => tracing::warn!(%error, "sweeping uploads failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_directories_and_controls() {
        assert_eq!(clean_filename("../../etc/passwd"), "passwd");
        assert_eq!(clean_filename("C:\\Users\\a\\cat.png"), "cat.png");
        assert_eq!(clean_filename("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(clean_filename(""), "file");
        assert_eq!(clean_filename(".."), "file");
        assert_eq!(clean_filename(&"x".repeat(300)).chars().count(), 200);
    }

    #[test]
    fn types_come_from_the_bytes() {
        let png = [
            0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D,
        ];
        assert_eq!(sniff(&png).as_deref(), Some("image/png"));
        assert_eq!(
            sniff(b"hello world").as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(
            sniff(b"<!DOCTYPE html><html><script>alert(1)</script>").as_deref(),
            Some("text/plain; charset=utf-8"),
            "HTML is never served as HTML"
        );
        assert_eq!(
            sniff(&[0, 1, 2, 3, 0xff]).as_deref(),
            Some("application/octet-stream")
        );
        let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1];
        elf.resize(64, 0);
        assert_eq!(sniff(&elf), None);
        assert_eq!(sniff(b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff"), None);
    }

    #[test]
    fn ranges_are_clamped_or_refused() {
        let h = |s: &str| HeaderValue::from_str(s).ok();
        assert_eq!(byte_range(None, 10), Ok(None));
        assert_eq!(byte_range(h("bytes=0-3").as_ref(), 10), Ok(Some((0, 3))));
        assert_eq!(byte_range(h("bytes=5-").as_ref(), 10), Ok(Some((5, 9))));
        assert_eq!(byte_range(h("bytes=-4").as_ref(), 10), Ok(Some((6, 9))));
        assert_eq!(byte_range(h("bytes=-40").as_ref(), 10), Ok(Some((0, 9))));
        assert_eq!(byte_range(h("bytes=2-99").as_ref(), 10), Ok(Some((2, 9))));
        assert_eq!(byte_range(h("bytes=10-").as_ref(), 10), Err(()));
        assert_eq!(byte_range(h("bytes=4-2").as_ref(), 10), Err(()));
        assert_eq!(byte_range(h("bytes=x-2").as_ref(), 10), Err(()));
        assert_eq!(byte_range(h("bytes=0-1,4-5").as_ref(), 10), Ok(None));
    }

    #[test]
    fn urls_are_signed_per_file_and_expire_on_the_hour() {
        let row = AttachmentRow {
            id: Uuid::now_v7(),
            uploader_id: UserId(Uuid::now_v7()),
            channel_id: None,
            message_id: None,
            filename: "a b/ü.png".into(),
            content_type: "image/png".into(),
            size: 1,
            duration_ms: None,
            url_key: vec![7; 32],
            created_at: Utc::now(),
        };
        let a = row.to_attachment(Utc::now());
        assert!(a.url.contains("/a%20b%2F%C3%BC.png?ex="), "{}", a.url);
        let ex: i64 = a
            .url
            .split("ex=")
            .nth(1)
            .and_then(|s| s.split('&').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        assert_eq!(ex % 3600, 0);
        assert!(ex >= Utc::now().timestamp() + URL_TTL_SECS);
        let sig = a.url.split("sig=").nth(1).unwrap_or_default();
        assert!(row.verify(ex, sig));
        assert!(!row.verify(ex + 3600, sig), "the expiry is signed");
        let other = AttachmentRow {
            url_key: vec![8; 32],
            ..row.clone()
        };
        assert!(!other.verify(ex, sig), "each file has its own key");
    }
}
