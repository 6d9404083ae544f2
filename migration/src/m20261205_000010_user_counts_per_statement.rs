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

use crate::m20261202_000008_create_user_counts::{SLOTS, row_trigger};

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
             {}
             {}",
            statement_trigger("added", "INSERT", "NEW", '+'),
            statement_trigger("removed", "DELETE", "OLD", '-'),
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
             {}",
            row_trigger()
        ))
        .await?;
        Ok(())
    }
}

/// A trigger `user_counts_{name}` after each `event` statement on `users`: the rows of its
/// transition table (`NEW` or `OLD`) added to (`+`) or taken from (`-`) one random slot.
fn statement_trigger(name: &str, event: &str, transition: &str, sign: char) -> String {
    format!(
        "CREATE FUNCTION user_counts_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
         DECLARE
             n bigint;
             chosen int := floor(random() * {SLOTS})::int;
         BEGIN
             SELECT count(*) INTO n FROM {name};
             IF n > 0 THEN
                 UPDATE user_counts SET users = users {sign} n WHERE slot = chosen;
             END IF;
             RETURN NULL;
         END $$;
         CREATE TRIGGER user_counts_{name} AFTER {event} ON users
             REFERENCING {transition} TABLE AS {name}
             FOR EACH STATEMENT EXECUTE FUNCTION user_counts_{name}();"
    )
}
