//! The program (`run`): building the application and serving it until a signal stops it.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::configuration::{Settings, env};
use crate::dashboard::Dashboard;
use crate::database::AvailabilityProbe;
use crate::handlers::meta::{EndpointEntry, index_document};
use crate::middleware::AppService;
use crate::request_log::{self, RequestLogWriter};
use crate::retention::{self, MaintenanceTask};
use crate::routes::ROUTES;
use crate::schema::{self, SchemaWatcher};
use crate::state::{AppState, Documents};
use crate::{database, openapi, router, telemetry};

/// The whole program: load settings, set up logs, serve until SIGTERM/SIGINT.
///
/// Exit codes: 0 after a clean shutdown, 2 for a configuration error, 1 for anything else.
pub fn run() -> ExitCode {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.telemetry);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // One signal for both phases: a SIGTERM while the database is still awaited must end
        // the wait as cleanly as it ends serving.
        let mut signal = std::pin::pin!(shutdown_signal());
        let app = tokio::select! {
            app = Application::build(settings) => app?,
            () = &mut signal => {
                tracing::info!("stopped before the database could be reached");
                return Ok(());
            }
        };
        app.run_until(signal).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(
                error = format!("{err:#}"),
                "the server stopped with an error"
            );
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A built, bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
    writer: RequestLogWriter,
    schema_watcher: SchemaWatcher,
    availability_probe: AvailabilityProbe,
    maintenance: MaintenanceTask,
    grace: Duration,
    keep_alive: Duration,
}

impl Application {
    /// Connects to the database (waiting for it as long as it takes), migrates if configured,
    /// starts the request-log writer and binds the listener (port 0 picks a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = database::connect_with_retry(&settings.database)
            .await
            .with_context(|| {
                format!(
                    "cannot connect to the database (check {})",
                    env::DATABASE_URL
                )
            })?;
        // With a separate schema owner, DDL (migrations, partition maintenance) runs as it and
        // requests run as a role that may only read and write rows.
        let owner_db =
            match settings.database.owner() {
                Some(owner) => Some(database::connect_with_retry(&owner).await.with_context(
                    || {
                        format!(
                            "cannot connect to the database as its owner (check {})",
                            env::OWNER_URL
                        )
                    },
                )?),
                None => None,
            };
        let ddl_db = owner_db.as_ref().unwrap_or(&db);
        if settings.database.migrate_at_start(settings.is_sqlite()) {
            database::migrate(ddl_db).await.map_err(|err| {
                anyhow::anyhow!(
                    "applying migrations: {err}{}",
                    if owner_db.is_some()
                        && err.to_string().contains("permission denied for schema")
                    {
                        ". The owner role may not create tables in schema public yet: the \
                         database's owner must grant it once (`infra db-bootstrap`, README)"
                    } else {
                        ""
                    }
                )
            })?;
        }
        if let Some(owner) = &owner_db {
            let runtime = database::current_role(&db)
                .await
                .context("reading the runtime role")?;
            database::grant_rows_to(owner, &runtime)
                .await
                .with_context(|| format!("granting {runtime} the rows of the app's tables"))?;
        }
        let (availability, availability_probe) =
            database::watch_availability(&settings.database, db.clone());
        let (schema, schema_watcher) =
            schema::watch(db.clone(), settings.database.schema_check_interval())
                .await
                .context("looking for pending migrations")?;
        if settings.application.api_key.is_none() {
            tracing::warn!(
                "no API key configured ({}): POST, PUT and DELETE are open to anyone who can \
                 reach this server",
                env::API_KEY
            );
        }
        // The log writer gets a pool of its own: its big batches then grow the buffers of one
        // connection instead of every connection of the request pool, and log writes never
        // queue behind (or hold up) requests for a connection.
        let log_db = if settings.request_log.enabled {
            let mut log_settings = settings.database.clone();
            log_settings.max_connections = 1;
            log_settings.min_connections = 1;
            database::connect_with_retry(&log_settings)
                .await
                .context("cannot connect the request log to the database")?
        } else {
            db.clone()
        };
        let (log_handle, writer) = request_log::spawn(
            log_db,
            schema.clone(),
            availability.clone(),
            settings.application.server_id.clone(),
            &settings.database_identity(),
            &settings.request_log,
        )?;
        let maintenance = retention::spawn(
            owner_db.clone().unwrap_or_else(|| db.clone()),
            schema.clone(),
            retention::Policy::from_settings(&settings.request_log, &settings.stats),
            Duration::from_secs(settings.request_log.maintenance_interval_seconds),
        );
        let documents = Documents {
            index: index_document(
                ROUTES
                    .iter()
                    .map(|route| EndpointEntry {
                        method: route.method.as_str(),
                        path: route.path,
                        description: route.summary,
                    })
                    .collect(),
                &settings.application.server_id,
            ),
            openapi: openapi::document_json().into(),
            dashboard: Dashboard::build(),
        };
        let state = AppState::new(
            &settings,
            db,
            availability,
            log_handle,
            schema,
            documents,
            crate::metrics::recorder(),
        );
        let address = settings.application.address();
        let listener = TcpListener::bind(&address).await.with_context(|| {
            format!(
                "cannot listen on {address} ({}, {})",
                env::HOST.path(),
                env::PORT.path()
            )
        })?;
        let port = listener.local_addr()?.port();
        tracing::info!(
            server_id = state.server_id(),
            address = %listener.local_addr()?,
            "listening"
        );
        Ok(Self {
            listener,
            port,
            state,
            writer,
            schema_watcher,
            availability_probe,
            maintenance,
            grace: Duration::from_secs(settings.application.shutdown_grace_seconds),
            keep_alive: Duration::from_secs(settings.application.keep_alive_timeout_seconds.max(1)),
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state, for the crate's own test hooks.
    pub(crate) fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `signal` completes; then drains for `drain_seconds` (still serving, with
    /// `/health` at 503 and `Connection: close` on every response), stops accepting, lets
    /// in-flight requests finish (at most `shutdown_grace_seconds`), flushes the request log
    /// and closes the pool.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            writer,
            schema_watcher,
            availability_probe,
            maintenance,
            grace,
            keep_alive,
            ..
        } = self;
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(keep_alive);
        let server = Server {
            listener,
            filter: warp::service(router::api(state.clone())),
            state: state.clone(),
            http,
            graceful: hyper_util::server::graceful::GracefulShutdown::new(),
        };
        server.accept_until(signal).await;
        state.start_draining();
        let drain = state.drain();
        if !drain.is_zero() {
            tracing::info!(
                drain_seconds = drain.as_secs(),
                "draining: /health answers 503 and every response closes its connection; \
                 still serving until the drain ends"
            );
            server.accept_until(tokio::time::sleep(drain)).await;
        }
        let Server {
            listener, graceful, ..
        } = server;
        drop(listener);
        tracing::info!("shutting down: no new connections; draining in-flight requests");
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_seconds = grace.as_secs(),
                "requests still running after the grace period were cut off"
            );
        }
        maintenance.stop();
        writer.shutdown(grace).await;
        schema_watcher.stop();
        availability_probe.stop();
        // Closing waits for every borrowed connection to come back; one whose query was
        // cancelled mid-flight (a client hung up) may not, and must not keep us from exiting.
        if tokio::time::timeout(Duration::from_secs(5), state.db().clone().close())
            .await
            .is_err()
        {
            tracing::warn!("database connections did not close within 5 s; exiting anyway");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The listener and what every accepted connection is served with.
struct Server<F> {
    listener: TcpListener,
    filter: F,
    state: AppState,
    http: hyper::server::conn::http1::Builder,
    /// Tracks every connection, so shutdown can wait for them.
    graceful: hyper_util::server::graceful::GracefulShutdown,
}

impl<F> Server<F>
where
    F: tower_service::Service<
            http::Request<hyper::body::Incoming>,
            Response = warp::reply::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    F::Future: Send,
{
    /// Accepts and serves connections until `until` completes.
    async fn accept_until(&self, until: impl Future<Output = ()>) {
        let mut until = std::pin::pin!(until);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let service = AppService::new(self.filter.clone(), self.state.clone(), peer);
                        let conn = self
                            .graceful
                            .watch(self.http.serve_connection(TokioIo::new(stream), service));
                        tokio::spawn(async move {
                            if let Err(err) = conn.await {
                                tracing::debug!(error = %err, "connection ended with an error");
                            }
                        });
                    }
                    Err(err) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                () = &mut until => return,
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
