//! The database: the connection pool, migrations, and URLs fit for logs.

mod migrate;
mod pool;
mod redact;

pub use migrate::{MigrateError, migrate, migrate_database, pending_migrations};
pub use pool::connect_with_retry;
