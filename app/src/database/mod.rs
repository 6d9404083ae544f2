//! The database: the connection pool, whether it is reachable, migrations, and URLs fit for logs.

mod availability;
mod failure;
mod migrate;
mod pool;
mod url;

pub use availability::{Availability, AvailabilityProbe, watch_availability};
pub use failure::{Failure, classify};
pub use migrate::{migrate, migrate_database, pending_migrations};
pub use pool::{connect_database, connect_with_retry};
