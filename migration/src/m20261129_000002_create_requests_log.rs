//! Creates `requests_log`, indexed by time and by request id.
//!
//! Time serves windows and retention; the request id index is dropped again by
//! `m20261129_000004`.
//!
//! Few indexes on purpose: every one is paid on each batch insert; `/api/stats` reads the
//! `request_stats` rollup instead of scanning this table.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RequestsLog::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RequestsLog::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RequestsLog::ServerId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RequestsLog::Method)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(RequestsLog::Path).string_len(128).not_null())
                    .col(ColumnDef::new(RequestsLog::Status).integer().not_null())
                    .col(
                        ColumnDef::new(RequestsLog::DurationUs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(RequestsLog::ClientIp).string_len(64).null())
                    .col(
                        ColumnDef::new(RequestsLog::RequestId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RequestsLog::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("requests_log_created_at_idx")
                    .table(RequestsLog::Table)
                    .col(RequestsLog::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("requests_log_request_id_idx")
                    .table(RequestsLog::Table)
                    .col(RequestsLog::RequestId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(RequestsLog::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum RequestsLog {
    Table,
    Id,
    ServerId,
    Method,
    Path,
    Status,
    DurationUs,
    ClientIp,
    RequestId,
    CreatedAt,
}
