//! Creates `request_stats`, the rollup that keeps `/api/stats` fast at millions of log rows.
//!
//! Per minute and per hour, per server and latency bucket.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RequestStats::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RequestStats::ServerId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RequestStats::SpanSeconds)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RequestStats::BucketStart)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RequestStats::LatencyBucket)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RequestStats::Requests)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RequestStats::Errors)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RequestStats::DurationSumUs)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(RequestStats::ServerId)
                            .col(RequestStats::SpanSeconds)
                            .col(RequestStats::BucketStart)
                            .col(RequestStats::LatencyBucket),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("request_stats_span_start_idx")
                    .table(RequestStats::Table)
                    .col(RequestStats::SpanSeconds)
                    .col(RequestStats::BucketStart)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(RequestStats::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum RequestStats {
    Table,
    ServerId,
    SpanSeconds,
    BucketStart,
    LatencyBucket,
    Requests,
    Errors,
    DurationSumUs,
}
