//! Integration tests: the real server on a free port, over HTTP, on SQLite and PostgreSQL.

/// Runs each listed `async fn(Backend)` once against SQLite and once against PostgreSQL.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = crate::helpers::Backend::postgres() {
                        super::$name(backend).await
                    }
                }
            )*
        }
    };
}

mod auth;
mod binary;
mod drain;
mod full_disk;
mod health;
mod helpers;
mod migrations;
mod outage;
mod privileges;
mod request_log;
mod retention;
mod routing;
mod schema;
mod secrets;
mod spool;
mod stats;
mod users;
