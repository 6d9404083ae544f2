//! The REST API every droplet (and every local instance) runs: warp on hyper, sea-orm on
//! SQLite or PostgreSQL.

pub mod apidoc;
pub mod configuration;
pub mod database;
pub mod domain;
pub mod error;
pub mod handlers;
pub mod input;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod reply;
pub mod request_log;
pub mod router;
pub mod routes;
pub mod service;
pub mod startup;
pub mod state;
pub mod stats;
pub mod telemetry;

use std::process::ExitCode;

/// The whole program: load settings, set up logs, serve until SIGTERM/SIGINT.
///
/// Exit codes: 0 after a clean shutdown, 2 for a configuration error, 1 for anything else.
pub fn run() -> ExitCode {
    let settings = match configuration::Settings::load() {
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
        let app = startup::Application::build(settings).await?;
        app.run_until_stopped().await
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
