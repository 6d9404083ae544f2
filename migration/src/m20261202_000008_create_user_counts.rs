//! Creates `user_counts`: the number of users, kept by triggers, so nothing counts `users`.
//!
//! `count(*)` reads the whole table, which at a few hundred thousand users was most of what an
//! uncached `/api/stats` cost. Triggers add or subtract one in the same transaction as each
//! insert or delete, so the sum is exact in every snapshot. On PostgreSQL the count is spread
//! over 256 slots, each change picking one at random, so that concurrent inserts seldom wait for
//! each other's row lock (held until commit); readers add the slots up. SQLite has one writer
//! at a time and uses slot 0.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Slots of the count on PostgreSQL.
pub(crate) const SLOTS: i32 = 256;

/// The PostgreSQL trigger of this migration: one random slot per row inserted or deleted
/// (`m20261205_000010` replaced it, and puts it back on the way down).
pub(crate) fn row_trigger() -> String {
    format!(
        "CREATE FUNCTION user_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
         DECLARE
             chosen int := floor(random() * {SLOTS})::int;
         BEGIN
             UPDATE user_counts
                SET users = users + CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END
              WHERE slot = chosen;
             RETURN NULL;
         END $$;
         CREATE TRIGGER user_counts_track AFTER INSERT OR DELETE ON users
             FOR EACH ROW EXECUTE FUNCTION user_counts_track();"
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// SQLite too: all or nothing, on one connection.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UserCounts::Table)
                    .col(
                        ColumnDef::new(UserCounts::Slot)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(UserCounts::Users).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        match db.get_database_backend() {
            DatabaseBackend::Postgres => {
                // Inside the migration's transaction: no user comes or goes between the count
                // and the triggers taking over.
                db.execute_unprepared(&format!(
                    "LOCK TABLE users IN SHARE MODE;
                     INSERT INTO user_counts (slot, users)
                         SELECT s, CASE WHEN s = 0 THEN (SELECT count(*) FROM users) ELSE 0 END
                         FROM generate_series(0, {last}) AS s;
                     {row_trigger}
                     CREATE FUNCTION user_counts_reset() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN
                         UPDATE user_counts SET users = 0;
                         RETURN NULL;
                     END $$;
                     CREATE TRIGGER user_counts_reset AFTER TRUNCATE ON users
                         FOR EACH STATEMENT EXECUTE FUNCTION user_counts_reset();",
                    last = SLOTS - 1,
                    row_trigger = row_trigger(),
                ))
                .await?;
            }
            _ => {
                db.execute_unprepared(
                    "INSERT INTO user_counts (slot, users) SELECT 0, count(*) FROM users;
                     CREATE TRIGGER user_counts_insert AFTER INSERT ON users BEGIN
                         UPDATE user_counts SET users = users + 1 WHERE slot = 0;
                     END;
                     CREATE TRIGGER user_counts_delete AFTER DELETE ON users BEGIN
                         UPDATE user_counts SET users = users - 1 WHERE slot = 0;
                     END;",
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match db.get_database_backend() {
            DatabaseBackend::Postgres => {
                db.execute_unprepared(
                    "DROP TRIGGER IF EXISTS user_counts_track ON users;
                     DROP TRIGGER IF EXISTS user_counts_reset ON users;
                     DROP FUNCTION IF EXISTS user_counts_track();
                     DROP FUNCTION IF EXISTS user_counts_reset();",
                )
                .await?;
            }
            _ => {
                db.execute_unprepared(
                    "DROP TRIGGER IF EXISTS user_counts_insert;
                     DROP TRIGGER IF EXISTS user_counts_delete;",
                )
                .await?;
            }
        }
        manager
            .drop_table(
                Table::drop()
                    .table(UserCounts::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum UserCounts {
    Table,
    Slot,
    Users,
}
