//! The `request_log_spools` table: how far each instance's on-disk log spool is in the database.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// One spool (one process's spool directory): every row before `offset_bytes` of segment
/// `segment`, and every row of earlier segments, is in `requests_log`. Written in the same
/// transaction as the rows.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "request_log_spools")]
pub struct Model {
    /// The spool directory's name (a UUID v7, unique per process start).
    #[sea_orm(primary_key, auto_increment = false)]
    pub spool_id: String,
    pub segment: i64,
    pub offset_bytes: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
