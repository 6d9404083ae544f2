//! The `user_counts` table: how many users there are, kept by triggers on `users`.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One share of the user count; the count is the sum over all slots. Triggers on `users` add
/// or subtract one in the same transaction as each insert or delete, so the sum is exact.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "user_counts")]
pub struct Model {
    /// Spreads concurrent inserts over rows on PostgreSQL; SQLite uses slot 0 only.
    #[sea_orm(primary_key, auto_increment = false)]
    pub slot: i32,
    pub users: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
