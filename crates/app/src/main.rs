//! `synctalk`: the server binary. `synctalk --help` lists every setting.

use clap::Parser;
use synctalk_app::{Application, Cli, Command, telemetry};

fn main() -> std::process::ExitCode {
    // A missing .env is fine; a malformed one is worth a word.
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        eprintln!("ignoring .env: {error}");
    }
    let cli = Cli::parse();
    let command = cli.command.clone().unwrap_or(Command::Serve);
    if let Command::Openapi = command {
        print!("{}", synctalk_app::openapi::document_json());
        return std::process::ExitCode::SUCCESS;
    }
    telemetry::init_logging(&cli.settings);
    let (result, cluster) = actix_web::rt::System::new().block_on(run(cli, command));
    // Only now, with every task of the server gone with its runtime: stopped earlier,
    // the cluster closed connections that the relay, the push sender and the session
    // listener still held, and each logged a warning about it.
    if let Some(cluster) = cluster.filter(|c| c.started_here()) {
        match cluster.stop() {
            Ok(()) => tracing::info!("local PostgreSQL cluster stopped"),
            Err(error) => tracing::warn!(%error, "could not stop the local PostgreSQL cluster"),
        }
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("synctalk: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the command; returns its outcome and the local cluster it started, if any.
async fn run(
    cli: Cli,
    command: Command,
) -> (
    anyhow::Result<()>,
    Option<synctalk_db::cluster::LocalCluster>,
) {
    let settings = cli.settings;
    if let Err(error) = settings.validate() {
        return (Err(error), None);
    }
    let database = match synctalk_app::resolve_database(&settings).await {
        Ok(database) => database,
        Err(error) => return (Err(error), None),
    };
    let result = async {
        match command {
            Command::Migrate => {
                let ran = synctalk_db::run_migrations(database.url.expose()).await?;
                tracing::info!(migrations = ran, "migrations done");
                Ok(())
            }
            _ => {
                let pool = synctalk_app::connect(&settings, &database.url).await?;
                let secret = synctalk_app::resolve_jwt_secret(&settings)?;
                let app = Application::build(&settings, pool, &database.url, secret).await?;
                let (hub, handle) = (app.hub(), app.handle());
                actix_web::rt::spawn(async move {
                    wait_for_signal().await;
                    tracing::info!("shutting down: sending RECONNECT to gateway sockets");
                    Application::shutdown(&hub, &handle).await;
                });
                tracing::info!(
                    "SyncTalk listening on http://{}:{} (Swagger UI: {})",
                    settings.host,
                    app.port(),
                    if settings.docs_enabled() {
                        "/docs"
                    } else {
                        "off"
                    }
                );
                app.run_until_stopped().await?;
                tracing::info!("server stopped");
                Ok(())
            }
        }
    }
    .await;
    (result, database.cluster)
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
