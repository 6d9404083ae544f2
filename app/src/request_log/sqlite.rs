//! SQLite (and any other backend): one batch as sea-orm multi-row inserts, one transaction.

use entity::prelude::*;
use entity::{request_stats, requests_log};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, DatabaseConnection, DbErr, EntityTrait, TransactionTrait};

use super::record::LogRecord;
use super::rollup::Rollup;

/// SQLite allows 32,766 bound values per statement: 8 per log row, 7 per rollup row.
const ROWS_PER_INSERT: usize = 2000;

pub async fn write(
    db: &DatabaseConnection,
    server_id: &str,
    records: &[LogRecord],
    rollup: &Rollup,
) -> Result<(), DbErr> {
    let rows: Vec<_> = records
        .iter()
        .map(|r| requests_log::ActiveModel {
            server_id: Set(server_id.to_owned()),
            method: Set(r.method.to_owned()),
            path: Set(r.route.to_owned()),
            status: Set(i32::from(r.status)),
            duration_us: Set(i64::try_from(r.duration_us).unwrap_or(i64::MAX)),
            client_ip: Set(r.client_ip.map(|ip| ip.to_string())),
            request_id: Set(r.request_id.to_string()),
            created_at: Set(r.at),
            ..Default::default()
        })
        .collect();
    let stats: Vec<_> = rollup
        .iter()
        .map(|(key, counts)| request_stats::ActiveModel {
            server_id: Set(server_id.to_owned()),
            span_seconds: Set(key.span.seconds()),
            bucket_start: Set(key.start),
            latency_bucket: Set(key.latency_bucket),
            requests: Set(counts.requests),
            errors: Set(counts.errors),
            duration_sum_us: Set(counts.duration_sum_us),
        })
        .collect();
    let txn = db.begin().await?;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        RequestsLog::insert_many(chunk.to_vec()).exec(&txn).await?;
    }
    let accumulate = accumulate();
    for chunk in stats.chunks(ROWS_PER_INSERT) {
        RequestStats::insert_many(chunk.to_vec())
            .on_conflict(accumulate.clone())
            .exec(&txn)
            .await?;
    }
    txn.commit().await
}

/// A rollup row that already exists gets the new counts added. `excluded` is the row that
/// failed to insert: SQLite and PostgreSQL both name it so.
fn accumulate() -> OnConflict {
    OnConflict::columns([
        request_stats::Column::ServerId,
        request_stats::Column::SpanSeconds,
        request_stats::Column::BucketStart,
        request_stats::Column::LatencyBucket,
    ])
    .value(
        request_stats::Column::Requests,
        Expr::cust(r#""request_stats"."requests" + "excluded"."requests""#),
    )
    .value(
        request_stats::Column::Errors,
        Expr::cust(r#""request_stats"."errors" + "excluded"."errors""#),
    )
    .value(
        request_stats::Column::DurationSumUs,
        Expr::cust(r#""request_stats"."duration_sum_us" + "excluded"."duration_sum_us""#),
    )
    .to_owned()
}
