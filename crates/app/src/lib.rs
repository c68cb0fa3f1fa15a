//! The SyncTalk server: wires the domain crates into one actix-web app.
//!
//! [`Application::build`] binds (port 0 picks a free port, which tests use) and
//! returns the app with its port; [`resolve_database`] finds or starts the database.

pub mod config;
mod middleware;
pub mod openapi;
mod routes;
pub mod shared_limits;
pub mod telemetry;

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use synctalk_auth::AuthService;
use synctalk_db::Pool;
use synctalk_db::cluster::{Durability, LocalCluster};
use synctalk_gateway::{Bus, Gateway, Hub};
use synctalk_kernel::Secret;
use synctalk_kernel::http::{self as kernel_http, TrustedProxies};
use tracing_actix_web::TracingLogger;
use utoipa_swagger_ui::SwaggerUi;

pub use config::{Cli, Command, Settings};

/// A bound, not yet running server.
pub struct Application {
    server: Server,
    port: u16,
    hub: Arc<Hub>,
    relay: tokio::task::AbortHandle,
}

impl Application {
    /// Builds the app on an already migrated database (`url` is for the outbox relay's
    /// own connection).
    pub async fn build(
        settings: &Settings,
        pool: Pool,
        url: &Secret,
        jwt_secret: Secret,
    ) -> anyhow::Result<Self> {
        settings.validate()?;
        let user_timeout = (settings.tcp_user_timeout_ms > 0)
            .then(|| Duration::from_millis(settings.tcp_user_timeout_ms));
        let listener = listen(settings.host, settings.port, user_timeout)
            .with_context(|| format!("cannot listen on {}:{}", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();

        let bus = match &settings.nats_url {
            Some(nats) => Bus::nats(nats.expose(), &settings.nats_subject_prefix).await?,
            None => Bus::local(),
        };
        let hub = Hub::start(
            pool.clone(),
            url.expose().to_owned(),
            bus.clone(),
            settings.hub_config(),
        )
        .await?;
        let presences = synctalk_users::presence::Presences::new(
            pool.clone(),
            &hub,
            Duration::from_millis(settings.presence_grace_ms),
        );
        // Presence goes to those who share a guild, too.
        let audience_pool = pool.clone();
        presences.set_audience(Arc::new(move |users| {
            let pool = audience_pool.clone();
            Box::pin(async move {
                let mut conn = synctalk_db::conn(&pool)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok(synctalk_guilds::read::guild_topics(&mut conn, &users).await?)
            })
        }));
        // Sockets lost all at once (a node that died, or this one stopping): their
        // users' presence once the grace is over (a node that stops waits for it).
        let lost = presences.clone();
        hub.on_sockets_lost(Arc::new(move |users| {
            let lost = lost.clone();
            Box::pin(async move { lost.settle(users).await })
        }));
        let relay_config = synctalk_gateway::relay::RelayConfig {
            poll: Duration::from_millis(settings.outbox_poll_ms.max(1)),
            // Sessions of a node that died resume from bases up to two checkpoints old.
            retention: Duration::from_secs(2 * settings.gateway_checkpoint_secs + 60),
            prune_every: Duration::from_secs(30),
            wake: settings.outbox_wake,
        };
        let relay = actix_web::rt::spawn(synctalk_gateway::relay::run(
            url.expose().to_owned(),
            bus.clone(),
            relay_config,
        ));

        let auth = web::Data::new(AuthService::new(
            pool.clone(),
            &settings.auth_config(jwt_secret),
        )?);
        actix_web::rt::spawn(
            auth.session_cache()
                .listen(url.expose().to_owned(), pool.clone()),
        );
        let typing = synctalk_messaging::typing::Typing::new(&hub, pool.clone());
        let tails = web::Data::new(synctalk_messaging::tail::Tails::new(
            settings.message_cache_mb.saturating_mul(1024 * 1024),
        ));
        let attachments = synctalk_messaging::attachments::Store::open(
            &settings.attachments_store(),
            settings.upload_max_bytes,
        )
        .context("ATTACHMENTS_STORE: cannot open the attachment store")?;
        if settings.nats_url.is_some() && !settings.attachments_store().starts_with("s3://") {
            // Several nodes: a download may reach a node that never saw the upload.
            // (In development they usually share one machine, and so the directory.)
            const SHARED: &str = "attachments are kept in a local directory while NATS_URL \
                joins several nodes: every node must share that directory, or use \
                ATTACHMENTS_STORE=s3://bucket";
            let store = settings.attachments_store();
            if settings.environment == config::Environment::Production {
                tracing::warn!(%store, "{SHARED}");
            } else {
                tracing::info!(%store, "{SHARED}");
            }
        }
        actix_web::rt::spawn(synctalk_messaging::attachments::sweep_forever(
            pool.clone(),
            attachments.clone(),
            Duration::from_secs(3600),
        ));
        let attachments = web::Data::new(attachments);
        let vapid = resolve_vapid(settings)?.map(Arc::new);
        let policy = if settings.environment == config::Environment::Development {
            synctalk_notifications::push::EndpointPolicy::AllowLoopback
        } else {
            synctalk_notifications::push::EndpointPolicy::Public
        };
        if let Some(vapid) = &vapid {
            let pusher =
                synctalk_notifications::push::Pusher::new(pool.clone(), vapid.clone(), policy)?;
            actix_web::rt::spawn(pusher.run(Duration::from_millis(500)));
        } else {
            tracing::warn!("no VAPID_PRIVATE_KEY: Web Push is off");
        }
        let push_config = web::Data::new(synctalk_notifications::PushConfig { vapid, policy });
        actix_web::rt::spawn(synctalk_messaging::receipts::record_deliveries(
            pool.clone(),
            hub.watch_deliveries(synctalk_messaging::receipts::tracked_record, 4096),
        ));
        let mut limits = middleware::RateLimits::new(
            settings.rate_limit_auth_per_minute,
            settings.rate_limit_user_per_minute,
            settings.gateway_connects_per_minute,
        );
        if let Some(url) = &settings.rate_limit_redis_url {
            let store = shared_limits::SharedLimits::connect(
                url.expose(),
                &settings.rate_limit_redis_prefix,
            )
            .await
            .context("RATE_LIMIT_REDIS_URL: cannot reach Redis")?;
            limits = limits.shared(store);
        }
        let limits = Arc::new(limits);
        let gateway = web::Data::new(
            Gateway::new(
                hub.clone(),
                vec![
                    Arc::new(synctalk_users::gateway::UsersGateway::new(
                        presences.clone(),
                    )),
                    Arc::new(synctalk_guilds::gateway::GuildsGateway),
                    Arc::new(synctalk_channels::gateway::ChannelsGateway),
                    Arc::new(synctalk_notifications::gateway::NotificationsGateway),
                    Arc::new(synctalk_messaging::gateway::MessagingGateway::new(
                        typing.clone(),
                    )),
                    Arc::new(synctalk_channels::folders::FoldersGateway),
                    Arc::new(synctalk_guilds::gateway::GuildPresenceTopics),
                ],
                Arc::new(auth.get_ref().clone()),
                Arc::new(ReadyMe),
                settings.gateway_config(),
            )
            .with_command_limit(limits.clone()),
        );
        let presences = web::Data::new(presences);
        let typing = web::Data::from(typing);
        let bus_data = web::Data::new(bus.clone());
        let authenticator = synctalk_kernel::auth::shared(Arc::new(auth.get_ref().clone()));
        // Requests take connections from a pool of their worker's own, made on the
        // worker as it needs them: a connection's I/O task then runs on the thread that
        // uses it, and no query hops between threads (measured by `just bench-writes`:
        // connections made by the main thread's tasks had every query wake it). The
        // node's pool (`pool`) serves the gateway and the background tasks.
        let workers = settings.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let worker_pool = (
            url.expose().to_owned(),
            settings.database_pool_size.div_ceil(workers.max(1)).max(2),
            Duration::from_secs(settings.database_timeout_secs),
            session_limits(settings),
        );
        // A quarter of the node's connections at most are lent to requests whose
        // worker's own are all taken: the rest stay for the gateway and the
        // background tasks, whatever a flood of slow requests does.
        let lender = pool.lender(settings.database_pool_size / 4);
        let pool = web::Data::new(pool);
        let limits = web::Data::from(limits);
        let doc = web::Data::new(openapi::document_json());
        let trust = web::Data::new(TrustedProxies(settings.trusted_proxies()?));
        let json_limit = settings.json_body_limit;
        let docs = settings.docs_enabled();
        telemetry::metrics();

        let (prune_limits, prune_auth) = (limits.clone(), auth.clone());
        actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            for round in 0u64.. {
                tick.tick().await;
                prune_limits.prune();
                if let Err(error) = prune_auth.forget_successors().await {
                    tracing::warn!(%error, "could not forget old refresh successors");
                }
                if round % 60 == 0 {
                    match prune_auth.prune().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(sessions = n, "pruned old sessions"),
                        Err(error) => tracing::warn!(%error, "could not prune old sessions"),
                    }
                }
            }
        });

        let mut server = HttpServer::new(move || {
            let api = web::scope("/api/v1")
                .service(
                    kernel_http::resource("/openapi.json", "GET")
                        .route(web::get().to(routes::openapi_json)),
                )
                .configure(synctalk_auth::configure)
                .configure(synctalk_users::configure)
                .configure(synctalk_guilds::configure)
                .configure(synctalk_channels::configure)
                .configure(synctalk_messaging::configure)
                .configure(synctalk_notifications::configure);
            let (url, size, timeout, session) = &worker_pool;
            let requests = match synctalk_db::lazy(url, *size, *timeout, *session) {
                // All its own connections taken, a request borrows an idle one of the
                // node's pool rather than wait (or answer 503) while that one idles.
                Ok(own) => web::Data::new(own.with_overflow(lender.clone())),
                Err(error) => {
                    tracing::warn!(%error, "a worker shares the node's pool");
                    pool.clone()
                }
            };
            let mut app = App::new()
                .app_data(requests)
                .app_data(auth.clone())
                .app_data(authenticator.clone())
                .app_data(limits.clone())
                .app_data(doc.clone())
                .app_data(trust.clone())
                .app_data(gateway.clone())
                .app_data(bus_data.clone())
                .app_data(presences.clone())
                .app_data(typing.clone())
                .app_data(tails.clone())
                .app_data(attachments.clone())
                .app_data(push_config.clone())
                .app_data(kernel_http::json_config(json_limit))
                .app_data(kernel_http::query_config())
                .app_data(kernel_http::path_config())
                .wrap(from_fn(middleware::rate_limit))
                .wrap(from_fn(middleware::request_meta))
                .wrap(TracingLogger::<middleware::RootSpan>::new())
                .service(
                    kernel_http::resource("/health", "GET").route(web::get().to(routes::health)),
                )
                .service(kernel_http::resource("/ready", "GET").route(web::get().to(routes::ready)))
                .service(
                    kernel_http::resource("/metrics", "GET").route(web::get().to(routes::metrics)),
                )
                .configure(Gateway::configure)
                .service(api);
            if docs {
                app = app.service(web::redirect("/docs", "/docs/")).service(
                    SwaggerUi::new("/docs/{_:.*}").config(
                        utoipa_swagger_ui::Config::from("/api/v1/openapi.json")
                            .persist_authorization(true),
                    ),
                );
            }
            app.default_service(web::to(kernel_http::not_found))
        })
        // Gateway frames are small and must not wait: with Nagle's algorithm a frame
        // written while the one before is unacknowledged waited for the client's
        // delayed ACK (up to 40 ms; measured by `just bench-messages`).
        .tcp_nodelay(true)
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout_secs);
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        Ok(Self {
            server: server.run(),
            port,
            hub,
            relay: relay.abort_handle(),
        })
    }

    /// The node's gateway hub.
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Stops this node's outbox relay (another node takes over; for failure tests).
    pub fn relay_handle(&self) -> tokio::task::AbortHandle {
        self.relay.clone()
    }

    /// Graceful stop: every gateway socket gets RECONNECT (its session stays
    /// resumable on another node); once presence's grace is over, its users who did
    /// not come back on another node are announced offline; then in-flight requests
    /// finish.
    pub async fn shutdown(hub: &Hub, handle: &ServerHandle) {
        hub.shutdown().await;
        handle.stop(true).await;
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop it.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGINT or SIGTERM: graceful, in-flight requests finish).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Every gateway event type of every domain: the registry the AsyncAPI contract test
/// checks, so no event can exist without its schema.
pub fn events() -> Vec<synctalk_gateway::EventInfo> {
    let mut all = synctalk_users::events::all();
    all.extend(synctalk_guilds::events::all());
    all.extend(synctalk_channels::events::all());
    all.extend(synctalk_messaging::events::all());
    all.extend(synctalk_notifications::events::all());
    all.extend(synctalk_gateway::GatewayDomain::events(
        &synctalk_channels::folders::FoldersGateway,
    ));
    all
}

/// READY's `user`: your own profile, with your email.
struct ReadyMe;

impl synctalk_gateway::ReadyUser for ReadyMe {
    fn load<'a>(
        &'a self,
        conn: &'a mut synctalk_db::AsyncPgConnection,
        auths: &'a [synctalk_kernel::AuthUser],
    ) -> synctalk_gateway::BoxFuture<
        'a,
        Result<Vec<Option<serde_json::Value>>, synctalk_kernel::AppError>,
    > {
        Box::pin(async move {
            let ids: Vec<synctalk_kernel::UserId> = auths.iter().map(|a| a.user_id).collect();
            let found = synctalk_users::repo::find_many(conn, &ids).await?;
            auths
                .iter()
                .map(|auth| {
                    found
                        .iter()
                        .find(|u| u.id == auth.user_id)
                        .map(|u| {
                            serde_json::to_value(synctalk_users::dto::CurrentUser::from(u.clone()))
                                .map_err(synctalk_kernel::AppError::internal)
                        })
                        .transpose()
                })
                .collect()
        })
    }
}

/// The database to use, and the local cluster if we started one.
pub struct Database {
    /// The URL of SyncTalk's database.
    pub url: Secret,
    /// Set when SyncTalk manages the cluster itself (no `DATABASE_URL`).
    pub cluster: Option<LocalCluster>,
}

/// Uses `DATABASE_URL`, or starts the local cluster under the data dir and makes sure
/// its `synctalk` database exists.
pub async fn resolve_database(settings: &Settings) -> anyhow::Result<Database> {
    if let Some(url) = &settings.database_url {
        return Ok(Database {
            url: url.clone(),
            cluster: None,
        });
    }
    let root = settings.data_dir.clone();
    let cluster =
        tokio::task::spawn_blocking(move || LocalCluster::start(&root, Durability::Durable))
            .await??;
    tracing::info!(port = cluster.port(), dir = %settings.data_dir.display(), "local PostgreSQL cluster is up");
    let admin = cluster.url("postgres");
    if !synctalk_db::database_exists(&admin, "synctalk").await? {
        synctalk_db::create_database(&admin, "synctalk", None).await?;
    }
    Ok(Database {
        url: Secret::new(cluster.url("synctalk")),
        cluster: Some(cluster),
    })
}

/// The JWT secret: configured, or in development one generated once and kept under the
/// data dir (so tokens survive restarts).
pub fn resolve_jwt_secret(settings: &Settings) -> anyhow::Result<Secret> {
    if let Some(secret) = &settings.jwt_secret {
        return Ok(secret.clone());
    }
    anyhow::ensure!(
        settings.environment == config::Environment::Development,
        "JWT_SECRET is required in production"
    );
    let path = settings.data_dir.join("jwt-secret");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && existing.trim().len() >= 32
    {
        return Ok(Secret::new(existing.trim()));
    }
    let secret = random_secret()?;
    write_private(&path, &secret)?;
    Ok(Secret::new(secret))
}

/// The VAPID key: configured; or in development one made once and kept under the data
/// dir; or none (Web Push off).
pub fn resolve_vapid(
    settings: &Settings,
) -> anyhow::Result<Option<synctalk_notifications::push::Vapid>> {
    use base64::Engine as _;
    use synctalk_notifications::push::Vapid;
    let decode = |text: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim().trim_end_matches('='))
            .context("VAPID_PRIVATE_KEY is not base64url")
    };
    if let Some(key) = &settings.vapid_private_key {
        let der = decode(key.expose())?;
        return Vapid::from_pkcs8(&der, &settings.vapid_subject)
            .context("VAPID_PRIVATE_KEY")
            .map(Some);
    }
    if settings.environment != config::Environment::Development {
        return Ok(None);
    }
    let path = settings.data_dir.join("vapid-key");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && let Ok(der) = decode(&existing)
        && let Ok(vapid) = Vapid::from_pkcs8(&der, &settings.vapid_subject)
    {
        return Ok(Some(vapid));
    }
    let der = Vapid::generate_pkcs8()?;
    write_private(
        &path,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&der),
    )?;
    Vapid::from_pkcs8(&der, &settings.vapid_subject).map(Some)
}

fn random_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom_fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn getrandom_fill(bytes: &mut [u8]) -> anyhow::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(bytes)?;
    Ok(())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// Connects a pool to a database and, if asked, migrates it first.
pub async fn connect(settings: &Settings, url: &Secret) -> anyhow::Result<Pool> {
    let timeout = Duration::from_secs(settings.database_timeout_secs);
    let limits = session_limits(settings);
    let pool =
        synctalk_db::connect_with(url.expose(), settings.database_pool_size, timeout, limits)
            .await
            .context("cannot connect to the database (check DATABASE_URL)")?;
    if settings.auto_migrate {
        let ran = synctalk_db::run_migrations(url.expose()).await?;
        if ran > 0 {
            tracing::info!(migrations = ran, "database migrated");
        }
    }
    Ok(pool)
}

/// The limits every pooled connection runs under.
fn session_limits(settings: &Settings) -> synctalk_db::SessionLimits {
    synctalk_db::SessionLimits {
        statement_timeout: Duration::from_millis(settings.database_statement_timeout_ms),
        lock_timeout: Duration::from_millis(settings.database_lock_timeout_ms),
        ..synctalk_db::SessionLimits::default()
    }
}

/// The listening socket. Its backlog holds a reconnect storm (every socket of a node
/// coming back at once) while the workers accept; the kernel caps it at
/// `net.core.somaxconn`. Accepted connections inherit its `TCP_USER_TIMEOUT`: a
/// client that stops reading but still acknowledges the kernel's window probes is
/// dropped by the kernel once `user_timeout` passes with nothing taken, where
/// otherwise its connection (and what is buffered for it) would stay for ever; the
/// gateway's own close (4000, see `GATEWAY_WRITE_TIMEOUT_MS`) cannot reach it.
fn listen(
    host: std::net::IpAddr,
    port: u16,
    user_timeout: Option<Duration>,
) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let address = std::net::SocketAddr::new(host, port);
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket.set_tcp_user_timeout(user_timeout)?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    if user_timeout.is_some() {
        tracing::warn!("TCP_USER_TIMEOUT_MS is not supported on this system; ignored");
    }
    socket.bind(&address.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}
