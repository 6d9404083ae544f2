//! The size of the stack's PostgreSQL database on disk, for `infra status`.

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};

/// A one-connection pool to the stack's database, when it is PostgreSQL.
pub struct DatabaseSize {
    db: Option<DatabaseConnection>,
}

impl DatabaseSize {
    /// Connects when `url` is a PostgreSQL URL; SQLite stacks report no size (`ls -l` tells).
    pub async fn connect(url: &str) -> DatabaseSize {
        if !url.starts_with("postgres") {
            return DatabaseSize { db: None };
        }
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.max_connections(1)
            .min_connections(0)
            .connect_timeout(Duration::from_secs(2))
            .acquire_timeout(Duration::from_secs(2))
            .sqlx_logging(false);
        DatabaseSize {
            db: Database::connect(opts).await.ok(),
        }
    }

    /// Bytes on disk of the whole database (tables, indexes, TOAST), or `None` when it is not
    /// PostgreSQL or does not answer within a second.
    pub async fn bytes(&self) -> Option<u64> {
        let db = self.db.as_ref()?;
        let query = Statement::from_string(
            db.get_database_backend(),
            "SELECT pg_database_size(current_database())::bigint AS bytes".to_owned(),
        );
        let row = tokio::time::timeout(Duration::from_secs(1), db.query_one_raw(query))
            .await
            .ok()?
            .ok()??;
        row.try_get::<i64>("", "bytes").ok().map(|b| b as u64)
    }
}
