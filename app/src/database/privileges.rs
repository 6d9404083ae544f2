//! Least privilege on PostgreSQL: a role that owns the schema, and a runtime role that reads and writes rows.
//!
//! Since PostgreSQL 15 only the database owner may create objects in schema `public`, and on a
//! managed cluster (DigitalOcean) the database belongs to the admin role, while roles created
//! through the provider get no privileges at all. So the admin grants CREATE on `public` to the
//! owner role once ([`grant_schema_to_owner`]); the owner then runs the migrations and the
//! request log's partition maintenance, and gives the runtime role rows only
//! ([`grant_rows_to`]), including on tables it creates later.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};

use super::pool::{ConnectError, connect_database};
use super::url::{describe, redact_url};

/// A role name as an SQL identifier, quoted so that any name is taken literally.
fn quoted(role: &str) -> String {
    format!("\"{}\"", role.replace('"', "\"\""))
}

/// The role a connection logs in as.
pub async fn current_role(db: &DatabaseConnection) -> Result<String, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT current_user::text AS role",
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("SELECT current_user returned no row".into()))?;
    row.try_get::<String>("", "role")
}

/// Run as the owner role after migrations: the runtime role may read and write the rows of every table and sequence the owner has made or will make (partitions
/// created later included), and nothing else: no CREATE, ALTER or DROP.
pub async fn grant_rows_to(owner: &DatabaseConnection, runtime_role: &str) -> Result<(), DbErr> {
    let role = quoted(runtime_role);
    // USAGE on schema public stays PUBLIC's, as PostgreSQL ships it; only its owner could grant it.
    for sql in [
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"),
        format!("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}"),
        format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}"
        ),
        format!(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {role}"
        ),
    ] {
        owner.execute_unprepared(&sql).await?;
    }
    Ok(())
}

/// Why [`grant_schema_to_owner`] did not finish; the messages never carry a password.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("granting CREATE on schema public of {url} to {role}: {reason}")]
    Grant {
        url: String,
        role: String,
        reason: String,
    },
}

/// Run once as the database's owner (the cluster admin): lets `owner_role` create the app's
/// tables in schema `public`. Idempotent.
pub async fn grant_schema_to_owner(admin_url: &str, owner_role: &str) -> Result<(), GrantError> {
    let db = connect_database(admin_url).await?;
    let result = db
        .execute_unprepared(&format!(
            "GRANT USAGE, CREATE ON SCHEMA public TO {}",
            quoted(owner_role)
        ))
        .await;
    let _ = db.close().await;
    result.map(|_| ()).map_err(|err| GrantError::Grant {
        url: redact_url(admin_url),
        role: owner_role.to_owned(),
        reason: describe(&err, admin_url),
    })
}
