//! SQLite (and any other backend): one batch as sea-orm multi-row inserts, one transaction.

use entity::prelude::*;
use entity::{request_log_spools, request_stats, requests_log};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr,
    EntityTrait, QueryFilter, TransactionTrait,
};

use super::record::{LogRecord, SpoolPosition};
use super::rollup::Rollup;

/// SQLite allows 32,766 bound values per statement: 8 per log row.
const ROWS_PER_INSERT: usize = 2000;

pub async fn write(
    db: &DatabaseConnection,
    server_id: &str,
    records: &[LogRecord],
    rollup: &Rollup,
    position: Option<SpoolPosition<'_>>,
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
    let txn = db.begin().await?;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        RequestsLog::insert_many(chunk.to_vec()).exec(&txn).await?;
    }
    write_rollup(&txn, server_id, rollup).await?;
    if let Some(position) = position {
        save_position(&txn, position).await?;
    }
    txn.commit().await
}

/// Adds the batch's counts to its rollup rows, then merges its histograms into theirs. The
/// transaction holds SQLite's write lock from the first insert, so nobody writes the rows
/// between the read and the update.
async fn write_rollup(
    txn: &DatabaseTransaction,
    server_id: &str,
    rollup: &Rollup,
) -> Result<(), DbErr> {
    let counts = rollup
        .iter()
        .map(|(key, counts)| request_stats::ActiveModel {
            server_id: Set(server_id.to_owned()),
            span_seconds: Set(key.span.seconds()),
            bucket_start: Set(key.start),
            requests: Set(counts.requests),
            errors: Set(counts.errors),
            duration_sum_us: Set(counts.duration_sum_us),
            latency_histogram: Set(Vec::new()),
        });
    let stored = RequestStats::insert_many(counts)
        .on_conflict(accumulate())
        .exec_with_returning(txn)
        .await?;
    for (key, counts) in rollup {
        let before = stored
            .iter()
            .find(|row| row.span_seconds == key.span.seconds() && row.bucket_start == key.start);
        RequestStats::update_many()
            .col_expr(
                request_stats::Column::LatencyHistogram,
                Expr::value(counts.histogram_after(before.map(|r| r.latency_histogram.as_slice()))),
            )
            .filter(request_stats::Column::ServerId.eq(server_id))
            .filter(request_stats::Column::SpanSeconds.eq(key.span.seconds()))
            .filter(request_stats::Column::BucketStart.eq(key.start))
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// A rollup row that already exists gets the new counts added; its histogram is merged after.
/// `excluded` is the row that failed to insert: SQLite and PostgreSQL both name it so.
fn accumulate() -> OnConflict {
    OnConflict::columns([
        request_stats::Column::SpanSeconds,
        request_stats::Column::BucketStart,
        request_stats::Column::ServerId,
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

/// The upsert of a spool's position, for backends written through sea-orm.
async fn save_position(
    conn: &impl ConnectionTrait,
    position: SpoolPosition<'_>,
) -> Result<(), DbErr> {
    RequestLogSpools::insert(request_log_spools::ActiveModel {
        spool_id: Set(position.spool_id.to_owned()),
        segment: Set(position.segment as i64),
        offset_bytes: Set(position.offset as i64),
    })
    .on_conflict(
        OnConflict::column(request_log_spools::Column::SpoolId)
            .update_columns([
                request_log_spools::Column::Segment,
                request_log_spools::Column::OffsetBytes,
            ])
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await
    .map(|_| ())
}
