//! Moves email uniqueness to `users.email_key`, the canonical form of each address.
//!
//! The old unique index on `lower(email)` disagreed between databases (SQLite's `lower()` is
//! ASCII only, so `Äx@` and `äx@` were two users there and one on PostgreSQL) and ignored
//! Unicode normalisation everywhere (a composed `é` and `e` + combining accent made two
//! users). The key is computed here in Rust, by a frozen copy of the rule the app applied to
//! new rows when this migration was written (`entity::users::canonical_email`): a later change
//! to the app's rule must not change what this migration does to a database that runs it.
//!
//! Existing addresses that become the same once canonical stop the migration before it
//! changes anything; its error names them, to be changed or deleted by hand first.

use std::collections::BTreeMap;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::Statement;
use unicode_normalization::UnicodeNormalization;

#[derive(DeriveMigrationName)]
pub struct Migration;

const OLD_INDEX: &str = "users_email_lower_key";
const NEW_INDEX: &str = "users_email_key_key";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let keys = canonical_keys(manager).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(
                        ColumnDef::new(Users::EmailKey)
                            .text()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await?;
        for (key, email) in keys {
            manager
                .exec_stmt(
                    Query::update()
                        .table(Users::Table)
                        .value(Users::EmailKey, key)
                        .and_where(Expr::col(Users::Email).eq(email))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name(OLD_INDEX)
                    .table(Users::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(NEW_INDEX)
                    .table(Users::Table)
                    .col(Users::EmailKey)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(NEW_INDEX)
                    .table(Users::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::EmailKey)
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE UNIQUE INDEX IF NOT EXISTS {OLD_INDEX} ON users (lower(email))"
            ))
            .await
            .map(|_| ())
    }
}

/// The canonical form of an address as of 2026-12-02: trimmed, Unicode NFC, then fully
/// lower-cased. Frozen: the app's rule may change, this one stays what the migration did.
fn canonical_email(email: &str) -> String {
    email.trim().nfc().collect::<String>().to_lowercase()
}

/// Every user's canonical key and address (addresses are unique already: the old index saw
/// to that), or an error naming the addresses that would collide.
async fn canonical_keys(manager: &SchemaManager<'_>) -> Result<Vec<(String, String)>, DbErr> {
    let db = manager.get_connection();
    let rows = db
        .query_all_raw(Statement::from_string(
            manager.get_database_backend(),
            "SELECT email FROM users ORDER BY email",
        ))
        .await?;
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows {
        let email: String = row.try_get("", "email")?;
        by_key
            .entry(canonical_email(&email))
            .or_default()
            .push(email);
    }
    let collisions: Vec<String> = by_key
        .values()
        .filter(|emails| emails.len() > 1)
        .map(|emails| format!("{emails:?}"))
        .collect();
    if !collisions.is_empty() {
        return Err(DbErr::Migration(format!(
            "cannot make email uniqueness ignore case and Unicode normalisation: these users' \
             addresses are the same once trimmed, NFC-normalised and lower-cased: {}; change \
             or delete all but one address of each group, then migrate again",
            collisions.join(", ")
        )));
    }
    Ok(by_key
        .into_iter()
        .flat_map(|(key, emails)| emails.into_iter().map(move |email| (key.clone(), email)))
        .collect())
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Email,
    EmailKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frozen_rule_folds_case_and_normalisation_and_trims() {
        assert_eq!(canonical_email(" Äx@Example.COM "), "äx@example.com");
        assert_eq!(
            canonical_email("cafe\u{301}@example.com"),
            canonical_email("café@example.com")
        );
        assert_ne!(
            canonical_email("ann@example.com"),
            canonical_email("anne@example.com")
        );
    }
}
