//! Migrations: idempotent, and safe when every droplet starts at once.

use app::configuration::DatabaseSettings;
use app::database;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Statement};

use crate::helpers::{Backend, fresh_database};

async fn migrations_apply_once_when_instances_start_together(backend: Backend) {
    let (url, _dir) = fresh_database(&backend).await;
    let settings = DatabaseSettings::for_url(&url).unwrap();
    let instances = match backend {
        // SQLite is one local file with one migrator (the app or the local stack runner);
        // running it again must simply find nothing to do.
        Backend::Sqlite => 1,
        Backend::Postgres(_) => 4,
    };
    let mut pools = Vec::new();
    for _ in 0..instances {
        pools.push(database::connect(&settings).await.unwrap());
    }
    let results = futures_util::future::join_all(pools.iter().map(database::migrate)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    database::migrate(&pools[0])
        .await
        .expect("a second run finds nothing to do");

    let db = &pools[0];
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
    let settings = DatabaseSettings::for_url(&url).unwrap();
    let db = database::connect(&settings).await.unwrap();
    database::migrate(&db).await.unwrap();

    Migrator::down(&db, None).await.expect("every down runs");
    assert!(
        db.execute_unprepared("SELECT count(*) FROM requests_log")
            .await
            .is_err(),
        "requests_log survived the rollback"
    );
    database::migrate(&db).await.expect("up again after down");
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
