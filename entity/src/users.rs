//! The `users` table: the records the CRUD API manages.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// One user. `email` keeps the caller's spelling; uniqueness is enforced on `email_key`, its
/// [`canonical_email`] form, by the `users_email_key_key` index, so `Ann@X.io`, `ann@x.io`
/// and the same address in another Unicode normalisation collide on every database.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// UUID v7, so ids sort by creation time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub email: String,
    /// [`canonical_email`] of `email`: what uniqueness compares.
    pub email_key: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// The server id of the instance that created the row.
    pub created_by: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// The one form of an address that uniqueness compares, the same on every database: trimmed,
/// Unicode NFC (so a composed `é` and `e` + combining accent are one), then fully lower-cased
/// (Unicode, not ASCII only like SQLite's `lower()`).
pub fn canonical_email(email: &str) -> String {
    email.trim().nfc().collect::<String>().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_normalisation_do_not_make_another_address() {
        let key = canonical_email("Äx@Example.com");
        assert_eq!(key, "äx@example.com");
        assert_eq!(canonical_email(" äx@example.COM "), key);
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
