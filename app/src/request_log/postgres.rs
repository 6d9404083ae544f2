//! PostgreSQL: log rows in with `COPY`, the rollup with `UNNEST` statements, one transaction.

use std::borrow::Cow;
use std::io::Write;

use chrono::{DateTime, Utc};
use sea_orm::sqlx::{Postgres, Transaction};
use sea_orm::{DatabaseConnection, DbErr, RuntimeErr};

use super::record::{LogRecord, SpoolPosition};
use super::rollup::Rollup;

/// Three statements whatever the batch size: far cheaper than multi-row `VALUES` lists with
/// thousands of parameters.
pub async fn write(
    db: &DatabaseConnection,
    server_id: &str,
    records: &[LogRecord],
    rollup: &Rollup,
    position: Option<SpoolPosition<'_>>,
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
    write_rollup(&mut txn, server_id, rollup).await?;
    if let Some(position) = position {
        sea_orm::sqlx::query(
            "INSERT INTO request_log_spools (spool_id, segment, offset_bytes) \
             VALUES ($1, $2, $3) ON CONFLICT (spool_id) DO UPDATE \
             SET segment = excluded.segment, offset_bytes = excluded.offset_bytes",
        )
        .bind(position.spool_id)
        .bind(position.segment as i64)
        .bind(position.offset as i64)
        .execute(&mut *txn)
        .await
        .map_err(db_err)?;
    }
    txn.commit().await.map_err(db_err)
}

/// Adds the batch's counts to its rollup rows, then its histograms.
///
/// The upsert adds the counts and locks the rows; only then are the stored histograms read and
/// merged here, so writers of the same rows (an instance and its replacement during a restart
/// share a server id) wait for each other instead of losing counts.
async fn write_rollup(
    txn: &mut Transaction<'_, Postgres>,
    server_id: &str,
    rollup: &Rollup,
) -> Result<(), DbErr> {
    let spans: Vec<i32> = rollup.iter().map(|(k, _)| k.span.seconds()).collect();
    let starts: Vec<DateTime<Utc>> = rollup.iter().map(|(k, _)| k.start).collect();
    let stored: Vec<(i32, DateTime<Utc>, Vec<u8>)> = sea_orm::sqlx::query_as(
        "INSERT INTO request_stats \
         (server_id, span_seconds, bucket_start, requests, errors, duration_sum_us, \
          latency_histogram) \
         SELECT $1, span, start, requests, errors, duration_sum_us, '\\x'::bytea \
         FROM UNNEST($2::int4[], $3::timestamptz[], $4::int8[], $5::int8[], $6::int8[]) \
              AS t(span, start, requests, errors, duration_sum_us) \
         ON CONFLICT (span_seconds, bucket_start, server_id) DO UPDATE SET \
         requests = request_stats.requests + excluded.requests, \
         errors = request_stats.errors + excluded.errors, \
         duration_sum_us = request_stats.duration_sum_us + excluded.duration_sum_us \
         RETURNING span_seconds, bucket_start, latency_histogram",
    )
    .bind(server_id)
    .bind(&spans)
    .bind(&starts)
    .bind(rollup.iter().map(|(_, c)| c.requests).collect::<Vec<_>>())
    .bind(rollup.iter().map(|(_, c)| c.errors).collect::<Vec<_>>())
    .bind(
        rollup
            .iter()
            .map(|(_, c)| c.duration_sum_us)
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut **txn)
    .await
    .map_err(db_err)?;
    let merged: Vec<Vec<u8>> = rollup
        .iter()
        .map(|(key, counts)| {
            let before = stored
                .iter()
                .find(|(span, start, _)| *span == key.span.seconds() && *start == key.start);
            counts.histogram_after(before.map(|(_, _, h)| h.as_slice()))
        })
        .collect();
    sea_orm::sqlx::query(
        "UPDATE request_stats AS s SET latency_histogram = t.histogram \
         FROM UNNEST($2::int4[], $3::timestamptz[], $4::bytea[]) AS t(span, start, histogram) \
         WHERE s.server_id = $1 AND s.span_seconds = t.span AND s.bucket_start = t.start",
    )
    .bind(server_id)
    .bind(&spans)
    .bind(&starts)
    .bind(&merged)
    .execute(&mut **txn)
    .await
    .map_err(db_err)?;
    Ok(())
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
