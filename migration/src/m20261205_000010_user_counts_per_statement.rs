//! Moves the PostgreSQL user count to statement-level triggers: one slot per statement, not per row.
//!
//! A row trigger that picks a random slot for each row makes a multi-row INSERT lock up to as
//! many slots as it has rows, in random order; two such statements in flight deadlock, and
//! PostgreSQL only notices after `deadlock_timeout` (1 s), then aborts one. Counting the
//! statement's transition table and adding it to one random slot locks one row per statement,
//! so concurrent writers can wait for each other but never deadlock, and a single-row insert
//! still touches one slot. PostgreSQL allows a transition table only on a trigger with one
//! event, hence one trigger for inserts and one for deletes. SQLite is unchanged.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Slots of the count, as `m20261202_000008_create_user_counts` made them.
const SLOTS: i32 = 256;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        // In the migration's transaction: the old trigger counts until the new ones take over.
        // The slot is chosen once, into a variable: `random()` in the WHERE clause would be
        // drawn anew for every row the UPDATE scans, matching none or several.
        db.execute_unprepared(&format!(
            "DROP TRIGGER user_counts_track ON users;
             DROP FUNCTION user_counts_track();
             CREATE FUNCTION user_counts_added() RETURNS trigger LANGUAGE plpgsql AS $$
             DECLARE
                 n bigint;
                 chosen int := floor(random() * {SLOTS})::int;
             BEGIN
                 SELECT count(*) INTO n FROM added;
                 IF n > 0 THEN
                     UPDATE user_counts SET users = users + n
                      WHERE slot = chosen;
                 END IF;
                 RETURN NULL;
             END $$;
             CREATE TRIGGER user_counts_added AFTER INSERT ON users
                 REFERENCING NEW TABLE AS added
                 FOR EACH STATEMENT EXECUTE FUNCTION user_counts_added();
             CREATE FUNCTION user_counts_removed() RETURNS trigger LANGUAGE plpgsql AS $$
             DECLARE
                 n bigint;
                 chosen int := floor(random() * {SLOTS})::int;
             BEGIN
                 SELECT count(*) INTO n FROM removed;
                 IF n > 0 THEN
                     UPDATE user_counts SET users = users - n
                      WHERE slot = chosen;
                 END IF;
                 RETURN NULL;
             END $$;
             CREATE TRIGGER user_counts_removed AFTER DELETE ON users
                 REFERENCING OLD TABLE AS removed
                 FOR EACH STATEMENT EXECUTE FUNCTION user_counts_removed();"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        db.execute_unprepared(&format!(
            "DROP TRIGGER IF EXISTS user_counts_added ON users;
             DROP TRIGGER IF EXISTS user_counts_removed ON users;
             DROP FUNCTION IF EXISTS user_counts_added();
             DROP FUNCTION IF EXISTS user_counts_removed();
             CREATE FUNCTION user_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
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
        ))
        .await?;
        Ok(())
    }
}
