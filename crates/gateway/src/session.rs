//! One gateway socket, from HELLO to close.

use std::num::NonZeroU32;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseReason, Message, MessageStream, Session};
use futures_channel::mpsc;
use futures_util::StreamExt;
use governor::{Quota, RateLimiter};
use serde_json::{Map, Value};
use synctalk_kernel::{AppError, AuthUser, ErrorCode};
use tokio::time::{Instant, sleep_until};

use crate::hub::{Outbound, ResumeError, Subscriber};
use crate::protocol::{CloseCode, CommandError, Frame, Identify, Op, Resume};
use crate::topic::{Domain, DomainSet};
use crate::{CommandContext, Gateway};

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
    let (response, session, stream) = actix_ws::handle(&req, body).map_err(|e| {
        AppError::new(
            ErrorCode::InvalidQuery,
            format!("not a WebSocket upgrade: {e}"),
        )
    })?;
    let stream = stream.max_frame_size(gateway.config.max_frame_bytes);
    actix_web::rt::spawn(async move {
        let socket = Socket {
            gateway,
            session,
            domains,
        };
        socket.run(stream).await;
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
    Closed { clean: bool },
    Fail(CloseCode, &'static str),
}

struct Live {
    auth: AuthUser,
    session_id: uuid::Uuid,
    epoch: i32,
}

impl Socket {
    async fn send(&mut self, frame: &Frame) -> bool {
        self.session.text(frame.to_text()).await.is_ok()
    }

    async fn close(self, code: CloseCode, reason: &str) {
        tracing::debug!(code = code.code(), reason, "closing gateway socket");
        let _ = self
            .session
            .close(Some(CloseReason {
                code: code.code().into(),
                description: Some(reason.to_owned()),
            }))
            .await;
    }

    async fn run(mut self, mut stream: MessageStream) {
        let config = self.gateway.config;
        let limiter = RateLimiter::direct(Quota::per_minute(
            NonZeroU32::new(config.commands_per_minute).unwrap_or(NonZeroU32::MIN),
        ));
        if !self
            .send(&Frame::hello(
                u64::try_from(config.heartbeat_interval.as_millis()).unwrap_or(41_250),
            ))
            .await
        {
            return;
        }
        // Until IDENTIFY or RESUME.
        let deadline = Instant::now() + config.identify_timeout;
        let (tx, mut rx) = mpsc::channel::<Outbound>(self.gateway.hub.config().queue);
        let live = loop {
            let inbound = tokio::select! {
                inbound = next(&mut stream) => inbound,
                _ = sleep_until(deadline) => {
                    return self.close(CloseCode::NotAuthenticated, "identify in time").await;
                }
            };
            if limiter.check().is_err() {
                return self.close(CloseCode::RateLimited, "too many frames").await;
            }
            match inbound {
                Inbound::Closed { .. } => return,
                Inbound::Fail(code, reason) => return self.close(code, reason).await,
                Inbound::Frame(frame) => match Op::from_u8(frame.op) {
                    Some(Op::Heartbeat) => {
                        if !self.send(&Frame::heartbeat_ack()).await {
                            return;
                        }
                    }
                    // Boxed: the set-up futures are large, and would otherwise stay part of
                    // every socket's task for its whole life.
                    Some(Op::Identify) => match Box::pin(self.identify(frame, tx.clone())).await {
                        Ok(live) => break live,
                        Err((code, reason)) => return self.close(code, reason).await,
                    },
                    Some(Op::Resume) => match Box::pin(self.resume(frame, tx.clone())).await {
                        Ok(Some(live)) => break live,
                        Ok(None) => {
                            // Not resumable: say so and let the client identify again.
                            if !self.send(&Frame::invalid_session()).await {
                                return;
                            }
                        }
                        Err((code, reason)) => return self.close(code, reason).await,
                    },
                    Some(_) => {
                        return self
                            .close(CloseCode::NotAuthenticated, "identify first")
                            .await;
                    }
                    None => return self.close(CloseCode::UnknownOp, "unknown op").await,
                },
            }
        };
        drop(tx);
        metrics::gauge!("gateway_sockets").increment(1.0);
        let hub = self.gateway.hub.clone();
        let (code, clean) = self.serve(&live, &mut stream, &mut rx, &limiter).await;
        metrics::gauge!("gateway_sockets").decrement(1.0);
        Box::pin(hub.disconnect(live.session_id, live.epoch, live.auth.user_id, clean)).await;
        if let Some((code, reason)) = code {
            self.close(code, reason).await;
        }
    }

    /// The identified loop; returns how to close and whether the session ended.
    async fn serve(
        &mut self,
        live: &Live,
        stream: &mut MessageStream,
        rx: &mut mpsc::Receiver<Outbound>,
        limiter: &governor::DefaultDirectRateLimiter,
    ) -> (Option<(CloseCode, &'static str)>, bool) {
        let interval = self.gateway.config.heartbeat_interval;
        // A heartbeat may come up to half an interval late.
        let allowance = interval + interval / 2;
        let mut heartbeat_due = Instant::now() + allowance;
        loop {
            tokio::select! {
                biased;
                outbound = rx.next() => match outbound {
                    Some(Outbound::Text(text)) => {
                        if self.session.text(text).await.is_err() {
                            return (None, false);
                        }
                    }
                    Some(Outbound::Close(code, reason)) => {
                        let ended = code == CloseCode::AuthenticationFailed;
                        return (Some((code, reason)), ended);
                    }
                    None => return (Some((CloseCode::UnknownError, "too slow; resume to continue")), false),
                },
                _ = sleep_until(heartbeat_due) => {
                    return (Some((CloseCode::SessionTimedOut, "no heartbeat")), false);
                }
                inbound = next(stream) => {
                    if limiter.check().is_err() {
                        return (Some((CloseCode::RateLimited, "too many frames")), false);
                    }
                    match inbound {
                        Inbound::Closed { clean } => return (None, clean),
                        Inbound::Fail(code, reason) => return (Some((code, reason)), false),
                        Inbound::Frame(frame) => match Op::from_u8(frame.op) {
                            Some(Op::Heartbeat) => {
                                heartbeat_due = Instant::now() + allowance;
                                if !self.send(&Frame::heartbeat_ack()).await {
                                    return (None, false);
                                }
                            }
                            Some(Op::Request) if frame.nonce.is_none() || frame.t.is_none() => {
                                return (Some((CloseCode::DecodeError, "REQUEST needs t and nonce")), false);
                            }
                            Some(Op::Request) => {
                                let response = Box::pin(self.request(live, frame)).await;
                                if !self.send(&response).await {
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
            }
        }
    }

    async fn authenticate(&self, token: &str) -> Result<AuthUser, (CloseCode, &'static str)> {
        self.gateway
            .authenticator
            .authenticate(token)
            .await
            .map_err(|_| (CloseCode::AuthenticationFailed, "invalid token"))
    }

    async fn identify(
        &mut self,
        frame: Frame,
        tx: mpsc::Sender<Outbound>,
    ) -> Result<Live, (CloseCode, &'static str)> {
        let identify: Identify = serde_json::from_value(frame.d)
            .map_err(|_| (CloseCode::DecodeError, "IDENTIFY needs {token}"))?;
        let auth = self.authenticate(&identify.token).await?;
        // Read where the outbox stands before loading READY: READY reflects at least
        // that much, and the session's events start after it.
        let floor = self.gateway.hub.outbox_head().await.map_err(|error| {
            tracing::error!(%error, "identify failed");
            (CloseCode::UnknownError, "could not open the session")
        })?;
        let ready = self
            .ready_state(auth)
            .await
            .map_err(|_| (CloseCode::UnknownError, "could not load READY"))?;
        let who = Subscriber {
            auth,
            domains: self.domains,
            floor,
        };
        let hub = self.gateway.hub.clone();
        let (session_id, missed) = hub.identify(&who, tx).await.map_err(|error| {
            tracing::error!(%error, "identify failed");
            (CloseCode::UnknownError, "could not open the session")
        })?;
        let mut ready = ready;
        ready.insert("session_id".into(), Value::String(session_id.to_string()));
        ready.insert(
            "domains".into(),
            Value::Array(
                self.domains
                    .names()
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            ),
        );
        if !self
            .send(&Frame::dispatch("READY", None, Value::Object(ready)))
            .await
        {
            return Err((CloseCode::UnknownError, "gone"));
        }
        for frame in &missed {
            if !self.send(frame).await {
                return Err((CloseCode::UnknownError, "gone"));
            }
        }
        hub.refresh_presence(auth.user_id).await;
        Ok(Live {
            auth,
            session_id,
            epoch: 1,
        })
    }

    async fn ready_state(&self, auth: AuthUser) -> Result<Map<String, Value>, AppError> {
        let mut ready = Map::new();
        ready.insert("user".into(), (self.gateway.user_loader)(auth).await?);
        for domain in self.domains.iter() {
            if let Some(handler) = self.gateway.domain(domain) {
                ready.extend(handler.ready(auth, &self.gateway.hub).await?);
            }
        }
        Ok(ready)
    }

    async fn resume(
        &mut self,
        frame: Frame,
        tx: mpsc::Sender<Outbound>,
    ) -> Result<Option<Live>, (CloseCode, &'static str)> {
        let resume: Resume = serde_json::from_value(frame.d).map_err(|_| {
            (
                CloseCode::DecodeError,
                "RESUME needs {token, session_id, seq}",
            )
        })?;
        let auth = self.authenticate(&resume.token).await?;
        let hub = self.gateway.hub.clone();
        let outcome = hub
            .resume(auth, resume.session_id, resume.seq, tx)
            .await
            .map_err(|error| {
                tracing::error!(%error, "resume failed");
                (CloseCode::UnknownError, "could not resume")
            })?;
        match outcome {
            Ok(resumed) => {
                self.domains = resumed.domains;
                for frame in &resumed.frames {
                    if !self.send(frame).await {
                        return Err((CloseCode::UnknownError, "gone"));
                    }
                }
                let done = serde_json::json!({"session_id": resumed.session_id, "replayed": resumed.frames.len()});
                if !self.send(&Frame::dispatch("RESUMED", None, done)).await {
                    return Err((CloseCode::UnknownError, "gone"));
                }
                hub.refresh_presence(auth.user_id).await;
                Ok(Some(Live {
                    auth,
                    session_id: resumed.session_id,
                    epoch: resumed.epoch,
                }))
            }
            Err(ResumeError::Invalid) => Ok(None),
            Err(ResumeError::InvalidSeq) => Err((CloseCode::InvalidSeq, "invalid seq")),
        }
    }

    async fn request(&self, live: &Live, frame: Frame) -> Frame {
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
            Some(handler) => {
                let ctx = CommandContext {
                    auth: live.auth,
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

async fn next(stream: &mut MessageStream) -> Inbound {
    loop {
        match stream.next().await {
            None => return Inbound::Closed { clean: false },
            Some(Err(actix_ws::ProtocolError::Overflow)) => {
                return Inbound::Fail(CloseCode::DecodeError, "frame too large");
            }
            Some(Err(_)) => return Inbound::Closed { clean: false },
            Some(Ok(Message::Text(text))) => {
                return match serde_json::from_str::<Frame>(&text) {
                    Ok(frame) => Inbound::Frame(frame),
                    Err(_) => Inbound::Fail(CloseCode::DecodeError, "not a frame"),
                };
            }
            Some(Ok(Message::Binary(_))) => {
                return Inbound::Fail(CloseCode::DecodeError, "frames are JSON text");
            }
            Some(Ok(Message::Close(reason))) => {
                let clean = reason.is_some_and(|r| u16::from(r.code) == 1000);
                return Inbound::Closed { clean };
            }
            Some(Ok(
                Message::Ping(_) | Message::Pong(_) | Message::Nop | Message::Continuation(_),
            )) => {}
        }
    }
}
