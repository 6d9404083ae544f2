//! Drops the `request_id` index of `requests_log`: it was most of what logging a request cost.
//!
//! Request ids are random, so every logged row wrote to a random leaf of that btree, which
//! made PostgreSQL spend about 10 µs of CPU per row instead of about 4.5, and, once the
//! table held millions of rows, about 19 µs and 3 KB of WAL per row (whole-page images after
//! each checkpoint). A request is still found by its id cheaply through the time index,
//! since every log line that carries the id also carries its time:
//! `WHERE created_at BETWEEN $from AND $to AND request_id = $id`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "requests_log_request_id_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(RequestsLog::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(RequestsLog::Table)
                    .col(RequestsLog::RequestId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum RequestsLog {
    Table,
    RequestId,
}
