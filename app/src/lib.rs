//! The REST API every droplet and every local instance runs: warp on hyper, sea-orm.
//!
//! The database is SQLite or PostgreSQL.
//!
//! Other crates see only what they use: [`run`] (the binary, and infra's `serve-app`),
//! [`DeploySettings`] with [`Environment`] and [`LogRetention`] (how infra configures an
//! instance), [`migrate_database`], [`connect_database`] and [`shutdown_signal`] (infra's local
//! stack and drills), [`grant_schema_to_owner`] (`infra db-bootstrap`), and [`Application`] with [`Settings`] and [`MigrationsMode`] (tests that
//! start the app on a free port). Types reached only through these (the settings sections, the
//! error types) stay unnamed outside, so that no other crate comes to depend on them.

mod apidoc;
mod configuration;
mod creates;
mod dashboard;
mod database;
mod domain;
mod echo;
mod error;
mod handlers;
mod input;
mod metrics;
mod middleware;
mod openapi;
mod reply;
mod request_log;
mod retention;
mod router;
mod routes;
mod schema;
mod service;
mod startup;
mod state;
mod stats;
mod storage;
mod telemetry;
#[doc(hidden)]
pub mod testing;
mod throttle;

pub use configuration::env::Environment;
pub use configuration::{DeploySettings, LogRetention, MigrationsMode, Settings, sqlite_file};
pub use database::{connect_database, grant_schema_to_owner, migrate_database};
pub use startup::{Application, run, shutdown_signal};

/// Paths of the routes other crates call (deployment checks, health checks); each is the
/// route table's own constant.
pub mod paths {
    pub use crate::dashboard::LB_STATUS;
    pub use crate::routes::{HEALTH, SERVER_INFO, STATS, USER, USERS};

    /// The path of one user.
    pub fn user(id: &str) -> String {
        USER.replace(":id", id)
    }
}
