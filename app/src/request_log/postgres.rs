//! PostgreSQL: log rows in with `COPY`, the rollup with one `UNNEST` upsert, one transaction.

use std::borrow::Cow;
use std::io::Write;

use sea_orm::{DatabaseConnection, DbErr, RuntimeErr};

use super::record::LogRecord;
use super::rollup::{Rollup, RollupCounts, RollupKey};

/// Two statements whatever the batch size: far cheaper than multi-row `VALUES` lists with
/// thousands of parameters.
pub async fn write(
    db: &DatabaseConnection,
    server_id: &str,
    records: &[LogRecord],
    rollup: &Rollup,
) -> Result<(), DbErr> {
    let pool = db.get_postgres_connection_pool();
    let mut txn = pool.begin().await.map_err(begin_err)?;
    // Telemetry, not business data: a database crash may lose the last fraction of a second of
    // log rows, but the commit no longer waits for a WAL flush, which is most of its cost.
    sea_orm::sqlx::query("SET LOCAL synchronous_commit TO OFF")
        .execute(&mut *txn)
        .await
        .map_err(db_err)?;
    // COPY is PostgreSQL's cheapest way in: no per-row expression evaluation, one message.
    let mut copy = txn
        .copy_in_raw(
            "COPY requests_log \
             (server_id, method, path, status, duration_us, client_ip, request_id, created_at) \
             FROM STDIN",
        )
        .await
        .map_err(db_err)?;
    copy.send(copy_text(server_id, records))
        .await
        .map_err(db_err)?;
    copy.finish().await.map_err(db_err)?;
    let (keys, counts): (Vec<&RollupKey>, Vec<&RollupCounts>) = rollup.iter().unzip();
    sea_orm::sqlx::query(
        "INSERT INTO request_stats \
         (server_id, span_seconds, bucket_start, latency_bucket, requests, errors, duration_sum_us) \
         SELECT $1, * FROM UNNEST($2::int4[], $3::timestamptz[], $4::int4[], $5::int8[], \
         $6::int8[], $7::int8[]) \
         ON CONFLICT (server_id, span_seconds, bucket_start, latency_bucket) DO UPDATE SET \
         requests = request_stats.requests + excluded.requests, \
         errors = request_stats.errors + excluded.errors, \
         duration_sum_us = request_stats.duration_sum_us + excluded.duration_sum_us",
    )
    .bind(server_id)
    .bind(keys.iter().map(|k| k.span.seconds()).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.start).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.latency_bucket).collect::<Vec<_>>())
    .bind(counts.iter().map(|c| c.requests).collect::<Vec<_>>())
    .bind(counts.iter().map(|c| c.errors).collect::<Vec<_>>())
    .bind(counts.iter().map(|c| c.duration_sum_us).collect::<Vec<_>>())
    .execute(&mut *txn)
    .await
    .map_err(db_err)?;
    txn.commit().await.map_err(db_err)
}

/// sqlx's error as sea-orm's: [`crate::database::classify`] then reads the driver error (its
/// kind, its SQLSTATE) to tell "the database is away" from "it refused these rows".
fn db_err(err: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(std::sync::Arc::new(err)))
}

/// A failure to get a connection and start the transaction: the database is away, whatever
/// it said (a refused session's SQLSTATE, such as 55000 for a database that takes no
/// connections, says nothing about the rows).
fn begin_err(err: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::SqlxError(std::sync::Arc::new(err)))
}

/// The rows in COPY's text format: tab-separated, `\N` for null, one line per row.
fn copy_text(server_id: &str, records: &[LogRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * 128);
    let server_id = copy_escape(server_id);
    for r in records {
        let _ = write!(
            out,
            "{server_id}\t{}\t{}\t{}\t{}\t",
            r.method,
            copy_escape(r.route),
            r.status,
            r.duration_us.min(i64::MAX as u64)
        );
        match r.client_ip {
            Some(ip) => {
                let _ = write!(out, "{ip}");
            }
            None => out.extend_from_slice(b"\\N"),
        }
        let _ = writeln!(
            out,
            "\t{}\t{}",
            copy_escape(&r.request_id),
            r.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        );
    }
    out
}

/// Escapes what COPY's text format treats specially. Our values (validated ids, route
/// templates) never contain these; this keeps a surprise from corrupting a batch.
fn copy_escape(value: &str) -> Cow<'_, str> {
    if value
        .bytes()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        Cow::Owned(
            value
                .replace('\\', "\\\\")
                .replace('\t', "\\t")
                .replace('\n', "\\n")
                .replace('\r', "\\r"),
        )
    } else {
        Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::DateTime;

    use super::*;

    #[test]
    fn copy_rows_are_tab_separated_with_escapes_and_nulls() {
        let at = DateTime::parse_from_rfc3339("2026-11-29T10:00:00.5Z")
            .unwrap()
            .to_utc();
        let row = LogRecord {
            method: "GET",
            route: "/api/users/:id",
            status: 404,
            duration_us: 1234,
            client_ip: None,
            request_id: Arc::from("odd\tid"),
            at,
        };
        let text = String::from_utf8(copy_text("local-1", &[row])).unwrap();
        assert_eq!(
            text,
            "local-1\tGET\t/api/users/:id\t404\t1234\t\\N\todd\\tid\t2026-11-29T10:00:00.500000Z\n"
        );
    }
}
