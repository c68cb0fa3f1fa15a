//! One gateway socket, from HELLO to close.
//!
//! The socket task owns the WebSocket: it reads frames, answers heartbeats and
//! commands (each write with a deadline), and sends the closes the hub asks for; what
//! the hub queues for the socket its response body writes itself
//! ([`crate::queue::QueueFeed`]), held back while a REQUEST is answered and stopped once
//! the socket ends. A client that stops reading is closed as too slow when its queue is
//! full, or when what is queued has waited a write timeout untaken (the gateway's
//! sweep). Every exit
//! path after registration goes through the hub's `disconnect` and the domains'
//! `disconnected`, so no session stays marked connected.

use std::num::NonZeroU32;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseReason, Session};
use futures_util::StreamExt;
use governor::{Quota, RateLimiter};
use serde_json::Value;
use synctalk_kernel::{AppError, AuthUser, ErrorCode};
use tokio::time::{Instant, sleep_until};

use crate::hub::{Opening, Refused, Registration};
use crate::protocol::{CloseCode, CommandError, Frame, Identify, Op, Resume};
use crate::queue::{Control, Queue, QueueFeed, WorkerBeat};
use crate::topic::{Domain, DomainSet};
use crate::{CommandContext, Gateway, Ready};

/// The clock of every socket's command limiter. Each `quanta::Clock` made anew asks the
/// CPU (`cpuid`) whether its counter can be trusted, which a virtual machine answers
/// slowly: made per socket, it was about 2% of the server's core while sockets
/// identified at 1,000/s (`perf record`). A copy shares the calibration.
static CLOCK: std::sync::LazyLock<governor::clock::QuantaClock> =
    std::sync::LazyLock::new(governor::clock::QuantaClock::default);

#[derive(serde::Deserialize)]
pub(crate) struct DomainsQuery {
    domains: Option<String>,
}

/// `GET /gateway?domains=a,b` (all registered domains when absent).
pub(crate) async fn combined(
    req: HttpRequest,
    body: web::Payload,
    gateway: web::Data<Gateway>,
    query: web::Query<DomainsQuery>,
) -> Result<HttpResponse, AppError> {
    let domains: DomainSet = match &query.domains {
        None => gateway.domains.iter().map(|d| d.domain()).collect(),
        Some(list) => {
            let mut set = DomainSet::default();
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let domain = Domain::parse(name)
                    .filter(|d| gateway.domain(*d).is_some())
                    .ok_or_else(|| {
                        AppError::new(
                            ErrorCode::InvalidQuery,
                            format!("unknown gateway domain {name}"),
                        )
                    })?;
                set.insert(domain);
            }
            set
        }
    };
    if domains.is_empty() {
        return Err(AppError::new(
            ErrorCode::InvalidQuery,
            "name at least one domain",
        ));
    }
    upgrade(req, body, gateway.into_inner(), domains)
}

/// `GET /gateway/{domain}`.
pub(crate) async fn single(
    req: HttpRequest,
    body: web::Payload,
    gateway: web::Data<Gateway>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let domain = Domain::parse(&path)
        .filter(|d| gateway.domain(*d).is_some())
        .ok_or_else(|| AppError::not_found("gateway"))?;
    upgrade(
        req,
        body,
        gateway.into_inner(),
        [domain].into_iter().collect(),
    )
}

fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    gateway: Arc<Gateway>,
    domains: DomainSet,
) -> Result<HttpResponse, AppError> {
    // The socket's response body writes what the hub queues for it, itself.
    let queue = Queue::on(gateway.hub.config().queue, Some(WorkerBeat::current()));
    let feed = Box::new(QueueFeed(queue.clone()));
    let (response, session, stream) = actix_ws::handle_with_feed(&req, body, &[], Some(feed))
        .map_err(|e| {
            AppError::new(
                ErrorCode::InvalidQuery,
                format!("not a WebSocket upgrade: {e}"),
            )
        })?;
    let max = gateway.config.max_frame_bytes;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    actix_web::rt::spawn(async move {
        let socket = Socket {
            gateway,
            session,
            domains,
        };
        socket.run(stream, queue).await;
    });
    Ok(response)
}

struct Socket {
    gateway: Arc<Gateway>,
    session: Session,
    domains: DomainSet,
}

enum Inbound {
    Frame(Frame),
    Ping(actix_web::web::Bytes),
    Closed { clean: bool },
    Fail(CloseCode, &'static str),
}

/// Why a socket could not be identified or resumed.
type Refusal = (CloseCode, &'static str);

/// How the identified loop ended: the close to send, and whether the session ended.
type Ending = (Option<(CloseCode, &'static str)>, bool);

impl Socket {
    /// Writes one frame within the write deadline.
    async fn write(&mut self, text: String) -> bool {
        let deadline = self.gateway.config.write_timeout;
        matches!(
            tokio::time::timeout(deadline, self.session.text(text)).await,
            Ok(Ok(()))
        )
    }

    async fn send(&mut self, frame: &Frame) -> bool {
        self.write(frame.to_text()).await
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        tracing::debug!(code = code.code(), reason, "closing gateway socket");
        let deadline = self.gateway.config.write_timeout;
        let _ = tokio::time::timeout(
            deadline,
            self.session.clone().close(Some(CloseReason {
                code: code.code().into(),
                description: Some(reason.to_owned()),
            })),
        )
        .await;
    }

    async fn run(mut self, mut stream: AggregatedMessageStream, queue: Arc<Queue>) {
        let config = self.gateway.config;
        let limiter = RateLimiter::direct_with_clock(
            Quota::per_minute(
                NonZeroU32::new(config.commands_per_minute).unwrap_or(NonZeroU32::MIN),
            ),
            CLOCK.clone(),
        );
        // Boxed: the set-up (HELLO, the identify loop, its closes) is freed once the
        // socket is live instead of staying part of its task for its whole life.
        let Some((live, auth)) = Box::pin(self.handshake(&mut stream, &queue, &limiter)).await
        else {
            return;
        };
        metrics::gauge!("gateway_sockets").increment(1.0);
        for domain in &self.gateway.domains {
            domain.connected(auth, live.session_id).await;
        }
        // Boxed too: inline, the compiler's layout of this task kept about 1 KiB more
        // per socket than the loop's own future.
        let (code, clean) = Box::pin(self.serve(auth, &live, &mut stream, &queue, &limiter)).await;
        // Nothing queued goes out after this: the close (if any) is next.
        queue.stop();
        metrics::gauge!("gateway_sockets").decrement(1.0);
        let gateway = self.gateway.clone();
        Box::pin(gateway.hub.disconnect(live.session_id, live.epoch, clean)).await;
        for domain in &gateway.domains {
            domain.disconnected(auth, live.session_id).await;
        }
        if let Some((code, reason)) = code {
            Box::pin(self.close(code, reason)).await;
        }
    }

    /// HELLO, then frames until an IDENTIFY or a RESUME succeeds; `None` when the socket
    /// ended first (closed, with its reason when it has one).
    async fn handshake(
        &mut self,
        stream: &mut AggregatedMessageStream,
        queue: &Arc<Queue>,
        limiter: &governor::DefaultDirectRateLimiter,
    ) -> Option<(Registration, AuthUser)> {
        let config = self.gateway.config;
        let hello =
            Frame::hello(u64::try_from(config.heartbeat_interval.as_millis()).unwrap_or(41_250));
        if !self.send(&hello).await {
            return None;
        }
        // Until IDENTIFY or RESUME.
        let deadline = Instant::now() + config.identify_timeout;
        let mut failed_resumes = 0;
        loop {
            let inbound = tokio::select! {
                inbound = next(stream) => inbound,
                _ = sleep_until(deadline) => {
                    self.close(CloseCode::NotAuthenticated, "identify in time").await;
                    return None;
                }
            };
            if limiter.check().is_err() {
                self.close(CloseCode::RateLimited, "too many frames").await;
                return None;
            }
            let frame = match inbound {
                Inbound::Closed { .. } => return None,
                Inbound::Fail(code, reason) => {
                    self.close(code, reason).await;
                    return None;
                }
                Inbound::Ping(bytes) => {
                    if self.session.pong(&bytes).await.is_err() {
                        return None;
                    }
                    continue;
                }
                Inbound::Frame(frame) => frame,
            };
            let attempt = match Op::from_u8(frame.op) {
                Some(Op::Heartbeat) => {
                    if !self.send(&Frame::heartbeat_ack()).await {
                        return None;
                    }
                    continue;
                }
                Some(Op::Identify) => Box::pin(self.identify(frame, queue.clone()))
                    .await
                    .map(Some),
                Some(Op::Resume) => Box::pin(self.resume(frame, queue.clone())).await,
                Some(_) => {
                    self.close(CloseCode::NotAuthenticated, "identify first")
                        .await;
                    return None;
                }
                None => {
                    self.close(CloseCode::UnknownOp, "unknown op").await;
                    return None;
                }
            };
            match attempt {
                Ok(Some(live)) => return Some(live),
                // Not resumable: INVALID_SESSION was sent; the client identifies again.
                // Each failed RESUME costs a database lookup, so a socket gets a few.
                Ok(None) => {
                    failed_resumes += 1;
                    if failed_resumes >= MAX_FAILED_RESUMES {
                        self.close(CloseCode::RateLimited, "too many failed resumes")
                            .await;
                        return None;
                    }
                }
                Err((code, reason)) => {
                    self.close(code, reason).await;
                    return None;
                }
            }
        }
    }

    /// The identified loop.
    async fn serve(
        &mut self,
        auth: AuthUser,
        live: &Registration,
        stream: &mut AggregatedMessageStream,
        queue: &Queue,
        limiter: &governor::DefaultDirectRateLimiter,
    ) -> Ending {
        let interval = self.gateway.config.heartbeat_interval;
        // A heartbeat may come up to half an interval late.
        let allowance = interval + interval / 2;
        // One timer for the life of the loop, moved on by each heartbeat: made afresh
        // in every pass, it was put in and taken out of the timer wheel per delivery.
        let heartbeat_due = sleep_until(Instant::now() + allowance);
        tokio::pin!(heartbeat_due);
        loop {
            // In this order: a heartbeat already received counts before the timer,
            // and the timer before more frames go out.
            tokio::select! {
                biased;
                inbound = next(stream) => {
                    if limiter.check().is_err() {
                        return (Some((CloseCode::RateLimited, "too many frames")), false);
                    }
                    match inbound {
                        Inbound::Closed { clean } => return (None, clean),
                        Inbound::Fail(code, reason) => return (Some((code, reason)), false),
                        Inbound::Ping(bytes) => {
                            if self.session.pong(&bytes).await.is_err() {
                                return (None, false);
                            }
                        }
                        Inbound::Frame(frame) => match Op::from_u8(frame.op) {
                            Some(Op::Heartbeat) => {
                                heartbeat_due.as_mut().reset(Instant::now() + allowance);
                                if !self.send(&Frame::heartbeat_ack()).await {
                                    return (None, false);
                                }
                            }
                            Some(Op::Request) if frame.nonce.is_none() || frame.t.is_none() => {
                                return (Some((CloseCode::DecodeError, "REQUEST needs t and nonce")), false);
                            }
                            Some(Op::Request) => {
                                // Its RESPONSE goes out before the events it caused.
                                queue.hold();
                                let response = Box::pin(self.request(auth, live, frame)).await;
                                let sent = self.send(&response).await;
                                queue.release();
                                if !sent {
                                    return (None, false);
                                }
                            }
                            Some(Op::Identify) | Some(Op::Resume) => {
                                return (Some((CloseCode::AlreadyAuthenticated, "already authenticated")), false);
                            }
                            Some(_) | None => return (Some((CloseCode::UnknownOp, "unknown op")), false),
                        },
                    }
                }
                () = &mut heartbeat_due => {
                    return (Some((CloseCode::SessionTimedOut, "no heartbeat")), false);
                }
                control = queue.control() => match control {
                    Control::Reconnect => {
                        let _ = self.send(&Frame::reconnect()).await;
                        return (Some((CloseCode::UnknownError, "server restarting; resume")), false);
                    }
                    Control::Close(code, reason) => {
                        return (Some((code, reason)), code == CloseCode::AuthenticationFailed);
                    }
                },
            }
        }
    }

    /// Only a bad token closes with 4004; a fault on our side is 4000 (try again).
    async fn authenticate(&self, token: &str) -> Result<AuthUser, Refusal> {
        match self.gateway.authenticator.authenticate(token).await {
            Ok(auth) => Ok(auth),
            Err(error)
                if matches!(
                    error.code(),
                    ErrorCode::InvalidToken | ErrorCode::Unauthorized
                ) =>
            {
                Err((CloseCode::AuthenticationFailed, "invalid token"))
            }
            Err(error) => {
                tracing::warn!(?error, "could not check a gateway token");
                Err((
                    CloseCode::UnknownError,
                    "could not check the token; try again",
                ))
            }
        }
    }

    async fn refuse_shutdown(&mut self) -> Refusal {
        let _ = self.send(&Frame::reconnect()).await;
        (CloseCode::UnknownError, "server restarting; connect again")
    }

    async fn identify(
        &mut self,
        frame: Frame,
        queue: Arc<Queue>,
    ) -> Result<(Registration, AuthUser), Refusal> {
        if self.gateway.hub.is_shutting_down() {
            return Err(self.refuse_shutdown().await);
        }
        let identify: Identify = serde_json::from_value(frame.d)
            .map_err(|_| (CloseCode::DecodeError, "IDENTIFY needs {token}"))?;
        // The signature here; the session in READY's snapshot (one query fewer).
        let auth = self
            .gateway
            .authenticator
            .verify(&identify.token)
            .ok_or((CloseCode::AuthenticationFailed, "invalid token"))?;
        let session_id = uuid::Uuid::now_v7();
        let (opening, ready) = match self.snapshot(auth, session_id).await {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => return Err((CloseCode::AuthenticationFailed, "session ended")),
            Err(error) => {
                tracing::error!(?error, "could not load READY");
                return Err((
                    CloseCode::UnknownError,
                    "could not open the session; try again",
                ));
            }
        };
        match self.gateway.hub.open(opening, ready, queue).await {
            Ok(Ok(live)) => Ok((live, auth)),
            Ok(Err(Refused::Revoked)) => Err((CloseCode::AuthenticationFailed, "session ended")),
            Ok(Err(Refused::ShuttingDown)) => Err(self.refuse_shutdown().await),
            Ok(Err(Refused::TooMany)) => Err((
                CloseCode::RateLimited,
                "too many gateway sockets for this user",
            )),
            Ok(Err(_)) => Err((
                CloseCode::UnknownError,
                "could not open the session; try again",
            )),
            Err(error) => {
                tracing::error!(%error, "identify failed");
                Err((
                    CloseCode::UnknownError,
                    "could not open the session; try again",
                ))
            }
        }
    }

    /// READY and what the session listens to (see [`Snapshots`]). `None`: the session
    /// or the user is gone.
    async fn snapshot(
        &self,
        auth: AuthUser,
        session_id: uuid::Uuid,
    ) -> Result<Option<(Opening, String)>, AppError> {
        self.gateway
            .snapshots
            .take(Wanted {
                auth,
                session_id,
                domains: self.domains,
            })
            .await
    }

    async fn resume(
        &mut self,
        frame: Frame,
        queue: Arc<Queue>,
    ) -> Result<Option<(Registration, AuthUser)>, Refusal> {
        if self.gateway.hub.is_shutting_down() {
            return Err(self.refuse_shutdown().await);
        }
        let resume: Resume = serde_json::from_value(frame.d).map_err(|_| {
            (
                CloseCode::DecodeError,
                "RESUME needs {token, session_id, seq}",
            )
        })?;
        let auth = self.authenticate(&resume.token).await?;
        let hub = self.gateway.hub.clone();
        match hub.resume(auth, resume.session_id, resume.seq, queue).await {
            Ok(Ok(live)) => {
                self.domains = live.domains;
                Ok(Some((live, auth)))
            }
            Ok(Err(Refused::Invalid(reason))) => {
                if !self
                    .send(&Frame::invalid_session(false, reason.as_str()))
                    .await
                {
                    return Err((CloseCode::UnknownError, "gone"));
                }
                Ok(None)
            }
            Ok(Err(Refused::InvalidSeq)) => Err((CloseCode::InvalidSeq, "invalid seq")),
            Ok(Err(Refused::Revoked)) => Err((CloseCode::AuthenticationFailed, "session ended")),
            Ok(Err(Refused::ShuttingDown)) => Err(self.refuse_shutdown().await),
            Ok(Err(Refused::TooMany)) => Err((
                CloseCode::RateLimited,
                "too many gateway sockets for this user",
            )),
            Err(error) => {
                // A fault on our side: the session is still resumable.
                tracing::error!(%error, "resume failed");
                let _ = self
                    .send(&Frame::invalid_session(true, "unavailable"))
                    .await;
                Err((CloseCode::UnknownError, "could not resume; try again"))
            }
        }
    }

    async fn request(&self, auth: AuthUser, live: &Registration, frame: Frame) -> Frame {
        let nonce = frame.nonce.clone().unwrap_or_default();
        let name = frame.t.clone().unwrap_or_default();
        let handler = self
            .domains
            .iter()
            .filter_map(|d| self.gateway.domain(d))
            .find(|d| d.commands().contains(&name.as_str()));
        let result = match handler {
            None => Err(CommandError {
                code: "unknown_command".into(),
                message: format!("unknown command {name:?}"),
                fields: None,
            }),
            Some(_)
                if let Some(limit) = &self.gateway.command_limit
                    && let Err(wait) = limit.check(auth.user_id).await =>
            {
                Err(CommandError {
                    code: "rate_limited".into(),
                    message: format!("too many requests: retry after {wait} ms"),
                    fields: None,
                })
            }
            Some(handler) => {
                let ctx = CommandContext {
                    auth,
                    session_id: live.session_id,
                    hub: self.gateway.hub.clone(),
                };
                handler
                    .command(&ctx, &name, frame.d)
                    .await
                    .map_err(CommandError::from)
            }
        };
        Frame::response(nonce, result)
    }
}

/// One identify's request for READY.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted {
    auth: AuthUser,
    session_id: uuid::Uuid,
    domains: DomainSet,
}

type Snapshot = Result<Option<(Opening, String)>, AppError>;

/// Takes READY snapshots for the identifies that arrive together: one repeatable-read
/// transaction (the signed-in sessions still live, the relay's position, each
/// domain's part and topics, the committed but unpublished rows those topics already
/// reflect) serves them all, so a burst of identifies costs a few queries each batch
/// rather than each socket.
pub(crate) struct Snapshots {
    queue: tokio::sync::mpsc::UnboundedSender<(Wanted, tokio::sync::oneshot::Sender<Snapshot>)>,
}

/// The most identifies one snapshot serves.
const SNAPSHOT_BATCH: usize = 128;

/// Failed RESUMEs a socket may make before it is closed with 4008.
const MAX_FAILED_RESUMES: u32 = 3;

impl Snapshots {
    pub(crate) fn start(
        pool: synctalk_db::Pool,
        domains: Vec<Arc<dyn crate::GatewayDomain>>,
        user: Arc<dyn crate::ReadyUser>,
    ) -> Self {
        let (queue, mut rx) = tokio::sync::mpsc::unbounded_channel::<(
            Wanted,
            tokio::sync::oneshot::Sender<Snapshot>,
        )>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < SNAPSHOT_BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let wanted: Vec<Wanted> = batch.iter().map(|(w, _)| *w).collect();
                match snapshot(&pool, &domains, user.as_ref(), &wanted).await {
                    Ok(results) => {
                        for ((_, done), result) in batch.into_iter().zip(results) {
                            let _ = done.send(Ok(result));
                        }
                    }
                    Err(error) => {
                        tracing::error!(
                            ?error,
                            identifies = wanted.len(),
                            "could not take READY snapshots"
                        );
                        for (_, done) in batch {
                            let _ = done.send(Err(AppError::new(
                                ErrorCode::ServiceUnavailable,
                                "could not load READY",
                            )));
                        }
                    }
                }
            }
        });
        Self { queue }
    }

    async fn take(&self, wanted: Wanted) -> Snapshot {
        let (done, result) = tokio::sync::oneshot::channel();
        let gone = || AppError::internal(anyhow::anyhow!("the READY snapshot task stopped"));
        self.queue.send((wanted, done)).map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }
}

async fn snapshot(
    pool: &synctalk_db::Pool,
    domains: &[Arc<dyn crate::GatewayDomain>],
    user: &dyn crate::ReadyUser,
    wanted: &[Wanted],
) -> Result<Vec<Option<(Opening, String)>>, AppError> {
    let mut conn = synctalk_db::conn(pool).await?;
    conn.build_transaction()
        .repeatable_read()
        .read_only()
        .run::<_, AppError, _>(async |conn| {
            let (live, position) = sessions_live(conn, wanted).await?;
            let auths: Vec<AuthUser> = wanted.iter().map(|w| w.auth).collect();
            let users = user.load(conn, &auths).await?;
            let mut readies: Vec<Ready> = wanted.iter().map(|_| Ready::default()).collect();
            for (ready, user) in readies.iter_mut().zip(&users) {
                if let Some(user) = user {
                    ready.insert("user", user.clone())?;
                }
            }
            for handler in domains {
                let carried: Vec<usize> = (0..wanted.len())
                    .filter(|i| live[*i] && wanted[*i].domains.contains(handler.domain()))
                    .collect();
                if carried.is_empty() {
                    continue;
                }
                let auths: Vec<AuthUser> = carried.iter().map(|i| wanted[*i].auth).collect();
                let parts = handler.ready(conn, &auths).await?;
                if parts.len() != carried.len() {
                    return Err(AppError::internal(anyhow::anyhow!(
                        "the {} domain returned {} READY parts for {} sockets",
                        handler.domain().as_str(),
                        parts.len(),
                        carried.len()
                    )));
                }
                for (i, part) in carried.into_iter().zip(parts) {
                    readies[i].merge(part)?;
                }
            }
            let mut out = Vec::with_capacity(wanted.len());
            let mut all_topics = Vec::new();
            let mut assembled = Vec::with_capacity(wanted.len());
            for ((w, ready), user) in wanted.iter().zip(readies).zip(&users) {
                let (fields, mut topics) = ready.into_parts();
                topics.extend(crate::Topic::pinned(w.auth.user_id, w.auth.session_id));
                topics.sort_unstable();
                topics.dedup();
                all_topics.extend(topics.iter().copied());
                assembled.push((fields, topics, user.is_some()));
            }
            all_topics.sort_unstable();
            all_topics.dedup();
            let unpublished = crate::event::unpublished_of(conn, &all_topics).await?;
            for ((w, (mut fields, topics, found)), live) in wanted.iter().zip(assembled).zip(&live)
            {
                if !found || !live {
                    out.push(None);
                    continue;
                }
                let skip: Vec<i64> = unpublished
                    .iter()
                    .filter(|(_, topic)| topics.binary_search(topic).is_ok())
                    .map(|(id, _)| *id)
                    .collect();
                fields.insert("session_id".into(), Value::String(w.session_id.to_string()));
                fields.insert(
                    "domains".into(),
                    Value::Array(w.domains.names().into_iter().map(Value::String).collect()),
                );
                let frame = Frame::dispatch("READY", None, Value::Object(fields)).to_text();
                out.push(Some((
                    Opening {
                        session_id: w.session_id,
                        auth: w.auth,
                        domains: w.domains,
                        position,
                        topics,
                        skip,
                    },
                    frame,
                )));
            }
            Ok(out)
        })
        .await
}

/// Which of the signed-in sessions are still live (in READY's snapshot: a logout that
/// commits after it reaches the socket through the outbox instead), and the relay's
/// position in the same snapshot.
async fn sessions_live(
    conn: &mut synctalk_db::AsyncPgConnection,
    wanted: &[Wanted],
) -> Result<(Vec<bool>, i64), AppError> {
    use diesel::sql_types::{Array, BigInt, Nullable, Uuid as SqlUuid};
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Live {
        #[diesel(sql_type = Nullable<SqlUuid>)]
        id: Option<uuid::Uuid>,
        #[diesel(sql_type = Nullable<SqlUuid>)]
        user_id: Option<uuid::Uuid>,
        #[diesel(sql_type = BigInt)]
        position: i64,
    }
    let ids: Vec<uuid::Uuid> = wanted.iter().map(|w| w.auth.session_id.0).collect();
    let rows: Vec<Live> = diesel::sql_query(
        "SELECT s.id, s.user_id, r.position FROM outbox_relay r \
         LEFT JOIN sessions s ON s.id = ANY($1) AND s.revoked_at IS NULL AND s.expires_at > now() \
         WHERE r.id = 1",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .load(conn)
    .await
    .map_err(AppError::internal)?;
    let position = <[Live]>::first(&rows).map_or(0, |r| r.position);
    let live = wanted
        .iter()
        .map(|w| {
            rows.iter()
                .any(|r| r.id == Some(w.auth.session_id.0) && r.user_id == Some(w.auth.user_id.0))
        })
        .collect();
    Ok((live, position))
}

async fn next(stream: &mut AggregatedMessageStream) -> Inbound {
    loop {
        match stream.next().await {
            None => return Inbound::Closed { clean: false },
            Some(Err(actix_ws::ProtocolError::Overflow)) => {
                return Inbound::Fail(CloseCode::DecodeError, "frame too large");
            }
            Some(Err(_)) => return Inbound::Closed { clean: false },
            Some(Ok(AggregatedMessage::Text(text))) => {
                return match serde_json::from_str::<Frame>(&text) {
                    Ok(frame) => Inbound::Frame(frame),
                    Err(_) => Inbound::Fail(CloseCode::DecodeError, "not a frame"),
                };
            }
            Some(Ok(AggregatedMessage::Binary(_))) => {
                return Inbound::Fail(CloseCode::DecodeError, "frames are JSON text");
            }
            Some(Ok(AggregatedMessage::Ping(bytes))) => return Inbound::Ping(bytes),
            Some(Ok(AggregatedMessage::Close(reason))) => {
                let clean = reason.is_some_and(|r| u16::from(r.code) == 1000);
                return Inbound::Closed { clean };
            }
            Some(Ok(AggregatedMessage::Pong(_))) => {}
        }
    }
}
