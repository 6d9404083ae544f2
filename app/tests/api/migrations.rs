//! Migrations: idempotent, and safe when every droplet starts at once.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::helpers::{Backend, fresh_database};

async fn migrations_apply_once_when_instances_start_together(backend: Backend) {
    let (url, _dir) = fresh_database(&backend).await;
    let instances = match backend {
        // SQLite is one local file with one migrator (the app or the local stack runner);
        // running it again must simply find nothing to do.
        Backend::Sqlite => 1,
        Backend::Postgres(_) => 4,
    };
    let runs = (0..instances).map(|_| app::migrate_database(&url));
    let results = futures_util::future::join_all(runs).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    app::migrate_database(&url)
        .await
        .expect("a second run finds nothing to do");

    let db = &Database::connect(&url).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n FROM seaql_migrations".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.try_get::<i64>("", "n").unwrap(),
        Migrator::migrations().len() as i64,
        "each migration recorded once"
    );
    for table in ["users", "requests_log", "request_stats"] {
        db.execute_unprepared(&format!("SELECT count(*) FROM {table}"))
            .await
            .unwrap();
    }
}

async fn every_migration_rolls_back_and_applies_again(backend: Backend) {
    let (url, _dir) = fresh_database(&backend).await;
    app::migrate_database(&url).await.unwrap();
    let db = Database::connect(&url).await.unwrap();

    Migrator::down(&db, None).await.expect("every down runs");
    assert!(
        db.execute_unprepared("SELECT count(*) FROM requests_log")
            .await
            .is_err(),
        "requests_log survived the rollback"
    );
    app::migrate_database(&url)
        .await
        .expect("up again after down");
    assert_eq!(
        Migrator::get_pending_migrations(&db).await.unwrap().len(),
        0
    );
    db.execute_unprepared("SELECT count(*) FROM request_stats")
        .await
        .unwrap();
}

on_both_databases!(
    migrations_apply_once_when_instances_start_together,
    every_migration_rolls_back_and_applies_again,
);
