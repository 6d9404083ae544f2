//! Whether the database has every migration this build expects, re-checked until it does.
//!
//! With `run_migrations` off (PostgreSQL's default) an instance may start before anyone has
//! migrated. It then answers 503 on what needs the tables, keeps request-log rows queued, and
//! carries on by itself once the migrations have been applied.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::configuration::env;
use crate::database::pending_migrations;

/// The migrations still missing, as last seen; none once the schema is current.
#[derive(Clone)]
pub struct Schema(watch::Receiver<Arc<[String]>>);

impl Schema {
    pub fn is_migrated(&self) -> bool {
        self.0.borrow().is_empty()
    }

    /// What is missing and how to fix it, while something is.
    pub fn problem(&self) -> Option<String> {
        let pending = self.0.borrow();
        (!pending.is_empty()).then(|| explain(&pending))
    }

    pub fn pending(&self) -> Vec<String> {
        self.0.borrow().to_vec()
    }

    /// Waits until nothing is pending; for ever if the check stopped before that.
    pub async fn migrated(&mut self) {
        if self.0.wait_for(|pending| pending.is_empty()).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The task looking for migrations; it ends by itself once none are pending.
pub struct SchemaWatcher(Option<JoinHandle<()>>);

impl SchemaWatcher {
    pub fn stop(self) {
        if let Some(task) = self.0 {
            task.abort();
        }
    }
}

/// Checks the schema of `db` now and, while migrations are pending, every `interval`.
pub async fn watch(
    db: DatabaseConnection,
    interval: Duration,
) -> Result<(Schema, SchemaWatcher), DbErr> {
    let pending: Arc<[String]> = pending_migrations(&db).await?.into();
    let (tx, rx) = watch::channel(pending.clone());
    if pending.is_empty() {
        return Ok((Schema(rx), SchemaWatcher(None)));
    }
    tracing::warn!(pending = pending.len(), "{}", explain(&pending));
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            match pending_migrations(&db).await {
                Ok(pending) if pending.is_empty() => {
                    tracing::info!("the database schema is migrated now; serving everything");
                    tx.send_replace(pending.into());
                    return;
                }
                Ok(pending) => {
                    tx.send_if_modified(|seen| {
                        let changed = **seen != *pending;
                        if changed {
                            *seen = pending.into();
                        }
                        changed
                    });
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not look for pending migrations");
                }
            }
        }
    });
    Ok((Schema(rx), SchemaWatcher(Some(task))))
}

fn explain(pending: &[String]) -> String {
    format!(
        "the database schema is not migrated: {} pending migration(s) ({}); apply them with \
         `cargo run -p migration -- up` (DATABASE_URL set to this database) or start the app \
         with {}=true",
        pending.len(),
        pending.join(", "),
        env::RUN_MIGRATIONS.env()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_explanation_names_the_migrations_and_both_fixes() {
        let text = explain(&["m1_users".into(), "m2_log".into()]);
        assert!(
            text.contains("2 pending migration(s) (m1_users, m2_log)"),
            "{text}"
        );
        assert!(text.contains("cargo run -p migration -- up"), "{text}");
        assert!(
            text.contains("APP__DATABASE__RUN_MIGRATIONS=true"),
            "{text}"
        );
    }
}
