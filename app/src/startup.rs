//! Building the application (database, request log, listener) and serving it until shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::Instrument;
use warp::reply::Response;

use crate::configuration::Settings;
use crate::request_log::{self, LogRecord, RequestLogWriter};
use crate::state::AppState;
use crate::{database, routes};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_SERVER_ID: HeaderName = HeaderName::from_static("x-server-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A built, bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
    writer: RequestLogWriter,
    grace: Duration,
    keep_alive: Duration,
}

impl Application {
    /// Connects to the database, migrates if configured, starts the request-log writer and
    /// binds the listener (port 0 picks a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = database::connect(&settings.database)
            .await
            .context("cannot connect to the database (check database.url / APP__DATABASE__URL)")?;
        if settings.database.migrate_at_start(settings.is_sqlite()) {
            database::migrate(&db)
                .await
                .context("applying migrations")?;
        }
        if settings.application.api_key.is_none() {
            tracing::warn!(
                "no API key configured (application.api_key / APP__APPLICATION__API_KEY): \
                 POST, PUT and DELETE are open to anyone who can reach this server"
            );
        }
        // The log writer gets a pool of its own: its big batches then grow the buffers of one
        // connection instead of every connection of the request pool, and log writes never
        // queue behind (or hold up) requests for a connection.
        let log_db = if settings.request_log.enabled {
            let mut log_settings = settings.database.clone();
            log_settings.max_connections = 1;
            log_settings.min_connections = 1;
            database::connect(&log_settings)
                .await
                .context("cannot connect the request log to the database")?
        } else {
            db.clone()
        };
        let (log_handle, writer) = request_log::spawn(
            log_db,
            settings.application.server_id.clone(),
            &settings.request_log,
        );
        let state = AppState::new(&settings, db, log_handle, crate::metrics::recorder());
        let address = settings.application.address();
        let listener = TcpListener::bind(&address).await.with_context(|| {
            format!("cannot listen on {address} (application.host / application.port)")
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
            grace: Duration::from_secs(settings.application.shutdown_grace_seconds),
            keep_alive: Duration::from_secs(settings.application.keep_alive_timeout_seconds.max(1)),
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (database handle, server id).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `signal` completes; then stops accepting, lets in-flight requests finish
    /// (at most `shutdown_grace_seconds`), flushes the request log and closes the pool.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            writer,
            grace,
            keep_alive,
            ..
        } = self;
        let filter = warp::service(routes::api(state.clone()));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(keep_alive);
        let mut signal = std::pin::pin!(signal);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let service = AppService { inner: filter.clone(), state: state.clone(), peer };
                        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
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
                () = &mut signal => break,
            }
        }
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
        writer.shutdown(grace).await;
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

/// Wraps the warp routes with what every request gets: a request id, the `X-Server-Id`
/// header, a tracing span, metrics and a request-log row.
#[derive(Clone)]
struct AppService<S> {
    inner: S,
    state: AppState,
    peer: SocketAddr,
}

impl<S> hyper::service::Service<Request<Incoming>> for AppService<S>
where
    S: tower_service::Service<Request<Incoming>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let started = Instant::now();
        let request_id: Arc<str> = incoming_request_id(req.headers())
            .map(Arc::from)
            .unwrap_or_else(|| Arc::from(uuid::Uuid::now_v7().to_string()));
        let client_ip = client_ip(req.headers()).unwrap_or(self.peer.ip());
        let method = method_name(req.method());
        let route = routes::template(req.uri().path());
        let span = tracing::info_span!("request", request_id = %request_id, method, route);
        // HEAD is GET without the body (RFC 9110 section 9.3.2): routed as GET; hyper knows
        // the request was HEAD and sends the head alone, Content-Length included.
        if req.method() == Method::HEAD {
            *req.method_mut() = Method::GET;
        }
        // warp's future for the whole route tree is large: box it where it is made so it is
        // not copied again into this wrapper's state.
        let routed = Box::pin(self.inner.clone().call(req));
        let state = self.state.clone();
        Box::pin(
            async move {
                let Ok(mut response) = routed.await;
                let elapsed = started.elapsed();
                let status = response.status().as_u16();
                let headers = response.headers_mut();
                headers.insert(X_SERVER_ID.clone(), state.server_id_header().clone());
                if status == 405 {
                    headers.insert(http::header::ALLOW, HeaderValue::from_static(routes::allowed_methods(route)));
                }
                if let Ok(value) = HeaderValue::from_str(&request_id) {
                    headers.insert(X_REQUEST_ID.clone(), value);
                }
                metrics::counter!("http_requests_total", "route" => route, "method" => method, "status" => status_label(status))
                    .increment(1);
                metrics::histogram!("http_request_duration_seconds", "route" => route, "method" => method)
                    .record(elapsed.as_secs_f64());
                if status >= 500 {
                    tracing::warn!(status, duration_us = elapsed.as_micros() as u64, "request failed");
                } else {
                    tracing::debug!(status, duration_us = elapsed.as_micros() as u64, "request");
                }
                state.request_log().record(LogRecord {
                    method,
                    route,
                    status,
                    duration_us: elapsed.as_micros() as u64,
                    client_ip: Some(client_ip),
                    request_id,
                    at: chrono::Utc::now(),
                }, route == "/health");
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// An incoming `X-Request-Id` if it is 1-128 characters of `A-Z a-z 0-9 - _ . :`.
fn incoming_request_id(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(&X_REQUEST_ID)?.to_str().ok()?;
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then_some(value)
}

/// The first hop of `X-Forwarded-For`: the client as the load balancer saw it.
fn client_ip(headers: &HeaderMap) -> Option<IpAddr> {
    let value = headers.get(&X_FORWARDED_FOR)?.to_str().ok()?;
    value.split(',').next()?.trim().parse().ok()
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        400 => "400",
        401 => "401",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        500 => "500",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
