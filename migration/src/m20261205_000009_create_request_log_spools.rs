//! Creates `request_log_spools`: how far each instance's on-disk spool of log rows is written.
//!
//! An instance appends every log row to a spool file before it answers, and its writer copies
//! the file into `requests_log` in batches. Each batch's transaction also moves its spool's row
//! here to the byte after the batch, so the position and the rows commit together: a spool
//! replayed after a crash (kill -9, a lost connection at commit) starts exactly where the
//! database left off, and no row is written twice or skipped.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RequestLogSpools::Table)
                    .col(
                        ColumnDef::new(RequestLogSpools::SpoolId)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RequestLogSpools::Segment)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RequestLogSpools::OffsetBytes)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RequestLogSpools::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum RequestLogSpools {
    Table,
    SpoolId,
    Segment,
    OffsetBytes,
}
