//! The `users` table: the records the CRUD API manages.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One user. `email` keeps the caller's spelling; uniqueness is enforced on its lower-cased
/// form by the `users_email_lower_key` index so `Ann@X.io` and `ann@x.io` collide.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// UUID v7, so ids sort by creation time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// The server id of the instance that created the row.
    pub created_by: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
