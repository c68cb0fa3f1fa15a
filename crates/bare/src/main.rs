//! `synctalk-bare`: the physical limit the messaging benchmarks are measured against.
//!
//! A WebSocket server on the same stack as SyncTalk (actix-web, actix-ws, one worker
//! per CPU it may run on) with no authentication, no storage and no protocol: every
//! text frame a socket sends goes to every connected socket, the sender included. The
//! frame is shared, never copied per socket (a `tokio::sync::broadcast` of one
//! `ByteString`). `GET /stats` tells how many sockets are connected, frames came in, and
//! deliveries were skipped because a socket fell more than the channel's capacity
//! behind.
//!
//! `synctalk-bare [PORT]` listens on 127.0.0.1 (PORT, default 8090). Benchmarks only:
//! nothing here is meant to face a network.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use actix_ws::AggregatedMessage;
use bytestring::ByteString;
use tokio::sync::broadcast;

/// Frames a socket may fall behind before it skips some (counted in `lagged`).
const CAPACITY: usize = 4096;

struct Hub {
    frames: broadcast::Sender<ByteString>,
    sockets: AtomicU64,
    frames_in: AtomicU64,
    lagged: AtomicU64,
}

async fn socket(
    req: HttpRequest,
    body: web::Payload,
    hub: web::Data<Hub>,
) -> actix_web::Result<HttpResponse> {
    let (response, mut session, stream) = actix_ws::handle(&req, body)?;
    let mut stream = stream
        .max_frame_size(1 << 20)
        .aggregate_continuations()
        .max_continuation_size(1 << 20);
    let mut frames = hub.frames.subscribe();
    hub.sockets.fetch_add(1, Ordering::Relaxed);
    actix_web::rt::spawn(async move {
        loop {
            tokio::select! {
                inbound = stream.recv() => match inbound {
                    Some(Ok(AggregatedMessage::Text(text))) => {
                        hub.frames_in.fetch_add(1, Ordering::Relaxed);
                        let _ = hub.frames.send(text);
                    }
                    Some(Ok(AggregatedMessage::Ping(bytes))) => {
                        if session.pong(&bytes).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(AggregatedMessage::Binary(_) | AggregatedMessage::Pong(_))) => {}
                    Some(Ok(AggregatedMessage::Close(_)) | Err(_)) | None => break,
                },
                outbound = frames.recv() => match outbound {
                    Ok(text) => {
                        if session.text(text).await.is_err() {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        hub.lagged.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        hub.sockets.fetch_sub(1, Ordering::Relaxed);
        let _ = session.close(None).await;
    });
    Ok(response)
}

async fn stats(hub: web::Data<Hub>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(format!(
            r#"{{"sockets":{},"frames_in":{},"lagged":{}}}"#,
            hub.sockets.load(Ordering::Relaxed),
            hub.frames_in.load(Ordering::Relaxed),
            hub.lagged.load(Ordering::Relaxed),
        ))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(port) => port
            .parse()
            .map_err(|_| std::io::Error::other(format!("not a port: {port}")))?,
        None => 8090,
    };
    let hub = web::Data::new(Hub {
        frames: broadcast::channel(CAPACITY).0,
        sockets: AtomicU64::new(0),
        frames_in: AtomicU64::new(0),
        lagged: AtomicU64::new(0),
    });
    HttpServer::new(move || {
        App::new()
            .app_data(hub.clone())
            .route("/ws", web::get().to(socket))
            .route("/stats", web::get().to(stats))
    })
    .backlog(4096)
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
