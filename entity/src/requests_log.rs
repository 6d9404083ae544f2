//! The `requests_log` table: one row per request an instance answered.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One answered request, written in batches off the request path.
///
/// On PostgreSQL the table is partitioned by UTC day of `created_at` and its primary key is
/// `(created_at, id)`; `id` alone is unique all the same (one sequence numbers every row).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "requests_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The server id of the instance that answered.
    pub server_id: String,
    pub method: String,
    /// The route template (e.g. `/api/users/:id`), not the raw path, so rows group by route.
    pub path: String,
    pub status: i32,
    pub duration_us: i64,
    pub client_ip: Option<String>,
    pub request_id: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
