//! The database: the connection pool, whether it is reachable, migrations, and URLs fit for logs.

mod availability;
mod failure;
mod migrate;
mod pool;
mod privileges;
mod url;

pub use availability::{Availability, AvailabilityProbe, watch_availability};
pub use failure::{Failure, classify};
pub use migrate::{migrate, migrate_database, pending_migrations};
pub use pool::{connect_database, connect_with_retry};
pub use privileges::{current_role, grant_rows_to, grant_schema_to_owner};
