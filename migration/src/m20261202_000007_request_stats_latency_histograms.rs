//! `request_stats` gets one row per server and minute (or hour), its latency histogram in a blob.
//!
//! It had one row per latency bucket as well, so a day-long window summed thousands of rows.
//! Now `latency_histogram` holds the buckets: 5 bytes each, the bucket index (`u8`) and its
//! count (`u32`, big-endian), ascending. The key puts time first, `(span_seconds,
//! bucket_start, server_id)`, so a window and the retention's deletes are one range of it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Bytes per histogram entry: the bucket, then its count.
const ENTRY: usize = 5;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// SQLite too: its statements then share one connection, whose view of the schema follows
    /// each step (another pooled connection may still see a table this migration just dropped).
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_table(histogram_table()).await?;
        let db = manager.get_connection();
        // Both databases can spell the entries as hex and decode them; counts past u32 (never
        // seen in one bucket of one minute or hour) are capped.
        let histogram = match db.get_database_backend() {
            DatabaseBackend::Postgres => {
                "decode(string_agg(lpad(to_hex(latency_bucket), 2, '0') \
                 || lpad(to_hex(LEAST(requests, 4294967295)), 8, '0'), '' \
                 ORDER BY latency_bucket), 'hex')"
            }
            _ => {
                "unhex(group_concat(printf('%02X%08X', latency_bucket, \
                 MIN(requests, 4294967295)), '' ORDER BY latency_bucket))"
            }
        };
        db.execute_unprepared(&format!(
            "INSERT INTO request_stats_histograms \
             (server_id, span_seconds, bucket_start, requests, errors, duration_sum_us, \
              latency_histogram) \
             SELECT server_id, span_seconds, bucket_start, SUM(requests), SUM(errors), \
                    SUM(duration_sum_us), {histogram} \
             FROM request_stats GROUP BY server_id, span_seconds, bucket_start"
        ))
        .await?;
        manager
            .drop_table(Table::drop().table(RequestStats::Table).to_owned())
            .await?;
        manager
            .rename_table(
                Table::rename()
                    .table(RequestStatsHistograms::Table, RequestStats::Table)
                    .to_owned(),
            )
            .await?;
        if db.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared(
                "ALTER TABLE request_stats \
                 RENAME CONSTRAINT request_stats_histograms_pkey TO request_stats_pkey",
            )
            .await?;
        }
        Ok(())
    }

    /// One row per latency bucket again. Requests per bucket come back exactly; errors and
    /// the latency sum go to the row of each minute's (or hour's) lowest bucket, which keeps
    /// every total the old layout was read for.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .rename_table(
                Table::rename()
                    .table(RequestStats::Table, RequestStatsHistograms::Table)
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        let backend = db.get_database_backend();
        if backend == DatabaseBackend::Postgres {
            db.execute_unprepared(
                "ALTER TABLE request_stats_histograms \
                 RENAME CONSTRAINT request_stats_pkey TO request_stats_histograms_pkey",
            )
            .await?;
        }
        // The table and index as the migration that made them first makes them.
        crate::m20261129_000003_create_request_stats::Migration
            .up(manager)
            .await?;
        if backend == DatabaseBackend::Postgres {
            db.execute_unprepared(
                "INSERT INTO request_stats \
                 (server_id, span_seconds, bucket_start, latency_bucket, requests, errors, \
                  duration_sum_us) \
                 SELECT server_id, span_seconds, bucket_start, get_byte(latency_histogram, i * 5), \
                        (get_byte(latency_histogram, i * 5 + 1)::bigint << 24) \
                        | (get_byte(latency_histogram, i * 5 + 2) << 16) \
                        | (get_byte(latency_histogram, i * 5 + 3) << 8) \
                        | get_byte(latency_histogram, i * 5 + 4), \
                        CASE WHEN i = 0 THEN errors ELSE 0 END, \
                        CASE WHEN i = 0 THEN duration_sum_us ELSE 0 END \
                 FROM request_stats_histograms, \
                      generate_series(0, length(latency_histogram) / 5 - 1) AS i",
            )
            .await?;
        } else {
            // SQLite has no way to read a blob's bytes as numbers: the rows go through here.
            let rows = db
                .query_all_raw(Statement::from_string(
                    backend,
                    "SELECT server_id, span_seconds, bucket_start, errors, duration_sum_us, \
                     latency_histogram FROM request_stats_histograms",
                ))
                .await?;
            for row in rows {
                let histogram: Vec<u8> = row.try_get("", "latency_histogram")?;
                let mut insert = Query::insert();
                insert.into_table(RequestStats::Table).columns([
                    RequestStats::ServerId,
                    RequestStats::SpanSeconds,
                    RequestStats::BucketStart,
                    RequestStats::LatencyBucket,
                    RequestStats::Requests,
                    RequestStats::Errors,
                    RequestStats::DurationSumUs,
                ]);
                let server_id: String = row.try_get("", "server_id")?;
                let span_seconds: i32 = row.try_get("", "span_seconds")?;
                let bucket_start: String = row.try_get("", "bucket_start")?;
                for (i, entry) in histogram.chunks_exact(ENTRY).enumerate() {
                    let count = u32::from_be_bytes([entry[1], entry[2], entry[3], entry[4]]);
                    let first = i == 0;
                    insert.values_panic([
                        server_id.clone().into(),
                        span_seconds.into(),
                        bucket_start.clone().into(),
                        i32::from(entry[0]).into(),
                        i64::from(count).into(),
                        if first {
                            row.try_get::<i64>("", "errors")?
                        } else {
                            0
                        }
                        .into(),
                        if first {
                            row.try_get::<i64>("", "duration_sum_us")?
                        } else {
                            0
                        }
                        .into(),
                    ]);
                }
                if !histogram.is_empty() {
                    manager.exec_stmt(insert).await?;
                }
            }
        }
        manager
            .drop_table(
                Table::drop()
                    .table(RequestStatsHistograms::Table)
                    .to_owned(),
            )
            .await
    }
}

/// The new layout, created beside the old table and renamed once filled.
fn histogram_table() -> TableCreateStatement {
    Table::create()
        .table(RequestStatsHistograms::Table)
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
        .col(
            ColumnDef::new(RequestStats::LatencyHistogram)
                .blob()
                .not_null(),
        )
        .primary_key(
            Index::create()
                .col(RequestStats::SpanSeconds)
                .col(RequestStats::BucketStart)
                .col(RequestStats::ServerId),
        )
        .to_owned()
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
    LatencyHistogram,
}

#[derive(DeriveIden)]
enum RequestStatsHistograms {
    Table,
}
