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

/// Inserts a user row as an older build would have, without the canonical key.
async fn insert_old_user(db: &sea_orm::DatabaseConnection, email: &str) {
    let id = uuid::Uuid::now_v7();
    let backend = db.get_database_backend();
    let statement = Statement::from_sql_and_values(
        backend,
        match backend {
            sea_orm::DatabaseBackend::Postgres => {
                "INSERT INTO users (id, name, email, created_at, updated_at, created_by) \
                 VALUES ($1, 'Old', $2, now(), now(), 'old')"
            }
            _ => {
                "INSERT INTO users (id, name, email, created_at, updated_at, created_by) \
                 VALUES (?, 'Old', ?, '2026-11-30T10:00:00Z', '2026-11-30T10:00:00Z', 'old')"
            }
        },
        [id.into(), email.into()],
    );
    db.execute_raw(statement).await.expect("an old user row");
}

async fn existing_addresses_get_their_canonical_key_and_collisions_stop_the_migration(
    backend: Backend,
) {
    let (url, _dir) = fresh_database(&backend).await;
    let db = Database::connect(&url).await.unwrap();
    Migrator::up(&db, Some(4)).await.unwrap();
    insert_old_user(&db, "Bob@Example.com").await;
    // The old index compared lower(email) only: these two were different users.
    insert_old_user(&db, "café@example.com").await;
    insert_old_user(&db, "cafe\u{301}@example.com").await;

    let err = app::migrate_database(&url)
        .await
        .expect_err("colliding addresses stop the migration");
    let text = err.to_string();
    // Quoted and escaped, so the operator sees how the two differ.
    for needle in [
        "\"café@example.com\"",
        r#""cafe\u{301}@example.com""#,
        "delete all but one",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from {text:?}");
    }
    assert_eq!(
        Migrator::get_pending_migrations(&db).await.unwrap().len(),
        1,
        "nothing applied"
    );
    assert!(
        db.execute_unprepared("SELECT email_key FROM users")
            .await
            .is_err(),
        "the table was left as it was"
    );

    db.execute_unprepared("DELETE FROM users WHERE name = 'Old' AND email LIKE 'cafe%'")
        .await
        .unwrap();
    app::migrate_database(&url)
        .await
        .expect("migrates once resolved");
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT email, email_key FROM users WHERE email = 'Bob@Example.com'",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.try_get::<String>("", "email_key").unwrap(),
        "bob@example.com"
    );
    let duplicate = db
        .execute_unprepared(
            "INSERT INTO users (id, name, email, email_key, created_at, updated_at, created_by) \
             VALUES ('0190c3a4-0000-7000-8000-000000000001', 'B', 'BOB@example.com', \
             'bob@example.com', '2026-11-30T10:00:00Z', '2026-11-30T10:00:00Z', 'x')",
        )
        .await;
    assert!(duplicate.is_err(), "the key is unique");
}

on_both_databases!(
    existing_addresses_get_their_canonical_key_and_collisions_stop_the_migration,
    migrations_apply_once_when_instances_start_together,
    every_migration_rolls_back_and_applies_again,
);
