//! All database access: `Query` reads, `Mutation` writes, both over `&DatabaseConnection`.

use std::collections::HashMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use entity::prelude::*;
use entity::{request_stats, requests_log, users};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseBackend, DatabaseConnection, DbErr,
    EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
    TransactionTrait,
};
use uuid::Uuid;

use crate::request_log::LogRecord;
use crate::stats::latency_bucket;

/// Reads.
pub struct Query;

/// Writes.
pub struct Mutation;

/// Why a user write did not happen.
#[derive(Debug)]
pub enum WriteError {
    /// Another user already has this email (compared case-insensitively).
    EmailTaken,
    NotFound,
    Db(DbErr),
}

impl From<DbErr> for WriteError {
    fn from(err: DbErr) -> Self {
        if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            Self::EmailTaken
        } else {
            Self::Db(err)
        }
    }
}

/// One (server, latency bucket) row of the stats rollup, summed over a window.
#[derive(Debug, FromQueryResult)]
pub struct StatsRow {
    pub server_id: String,
    pub latency_bucket: i32,
    pub requests: i64,
    pub errors: i64,
    pub duration_sum_us: i64,
}

impl Query {
    /// `SELECT 1`, for `/health`.
    pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
        db.ping().await
    }

    /// A page of users, newest first, and the total count.
    pub async fn list_users(
        db: &DatabaseConnection,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<users::Model>, u64), DbErr> {
        let page = Users::find()
            .order_by_desc(users::Column::CreatedAt)
            .order_by_desc(users::Column::Id)
            .limit(limit)
            .offset(offset)
            .all(db);
        let total = Users::find().count(db);
        let (page, total) = tokio::try_join!(page, total)?;
        Ok((page, total))
    }

    pub async fn find_user(
        db: &DatabaseConnection,
        id: Uuid,
    ) -> Result<Option<users::Model>, DbErr> {
        Users::find_by_id(id).one(db).await
    }

    pub async fn count_users(db: &DatabaseConnection) -> Result<u64, DbErr> {
        Users::find().count(db).await
    }

    /// The rollup summed per server and latency bucket, for requests finished at or after
    /// `since` (rounded down to the minute; all time when `None`).
    ///
    /// Minute rows cover the ragged start of a window up to the next full hour; hour rows cover
    /// the rest, so a day-long window reads about 60 + 24 rows per server and bucket.
    pub async fn stats_rows(
        db: &DatabaseConnection,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<StatsRow>, DbErr> {
        let filter = match since {
            None => Condition::all().add(request_stats::Column::SpanSeconds.eq(HOUR)),
            Some(since) => {
                let start = minute(since);
                let first_full_hour = ceil_hour(start);
                Condition::any()
                    .add(
                        Condition::all()
                            .add(request_stats::Column::SpanSeconds.eq(MINUTE))
                            .add(request_stats::Column::BucketStart.gte(start))
                            .add(request_stats::Column::BucketStart.lt(first_full_hour)),
                    )
                    .add(
                        Condition::all()
                            .add(request_stats::Column::SpanSeconds.eq(HOUR))
                            .add(request_stats::Column::BucketStart.gte(first_full_hour)),
                    )
            }
        };
        RequestStats::find()
            .select_only()
            .column(request_stats::Column::ServerId)
            .column(request_stats::Column::LatencyBucket)
            // PostgreSQL sums BIGINT into NUMERIC; the cast keeps both databases on i64.
            .column_as(Expr::cust("CAST(SUM(requests) AS BIGINT)"), "requests")
            .column_as(Expr::cust("CAST(SUM(errors) AS BIGINT)"), "errors")
            .column_as(
                Expr::cust("CAST(SUM(duration_sum_us) AS BIGINT)"),
                "duration_sum_us",
            )
            .filter(filter)
            .group_by(request_stats::Column::ServerId)
            .group_by(request_stats::Column::LatencyBucket)
            .into_model::<StatsRow>()
            .all(db)
            .await
    }
}

impl Mutation {
    /// Inserts a user; `EmailTaken` when the email is in use in any letter case.
    pub async fn create_user(
        db: &DatabaseConnection,
        name: String,
        email: String,
        created_by: &str,
    ) -> Result<users::Model, WriteError> {
        let now = Utc::now();
        let model = users::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(name),
            email: Set(email),
            created_at: Set(now),
            updated_at: Set(now),
            created_by: Set(created_by.to_owned()),
        };
        Ok(Users::insert(model).exec_with_returning(db).await?)
    }

    /// Replaces a user's name and email.
    pub async fn update_user(
        db: &DatabaseConnection,
        id: Uuid,
        name: String,
        email: String,
    ) -> Result<users::Model, WriteError> {
        let result = Users::update_many()
            .col_expr(users::Column::Name, Expr::value(name))
            .col_expr(users::Column::Email, Expr::value(email))
            .col_expr(users::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(users::Column::Id.eq(id))
            .exec_with_returning(db)
            .await?;
        result.into_iter().next().ok_or(WriteError::NotFound)
    }

    /// Deletes a user; false when there was none.
    pub async fn delete_user(db: &DatabaseConnection, id: Uuid) -> Result<bool, DbErr> {
        Ok(Users::delete_by_id(id).exec(db).await?.rows_affected > 0)
    }

    /// Writes a batch of log rows and folds it into the `request_stats` rollup, atomically.
    pub async fn insert_request_logs(
        db: &DatabaseConnection,
        server_id: &str,
        records: &[LogRecord],
    ) -> Result<(), DbErr> {
        if records.is_empty() {
            return Ok(());
        }
        let rollup = rollup(records);
        match db.get_database_backend() {
            DatabaseBackend::Postgres => {
                insert_logs_postgres(db, server_id, records, &rollup).await
            }
            _ => insert_logs_generic(db, server_id, records, &rollup).await,
        }
    }
}

/// Minute and hour rollup rows of a batch: (span, start, bucket) -> (requests, errors, µs).
type Rollup = HashMap<(i32, DateTime<Utc>, i32), (i64, i64, i64)>;

const MINUTE: i32 = 60;
const HOUR: i32 = 3600;

fn rollup(records: &[LogRecord]) -> Rollup {
    let mut rollup = Rollup::new();
    for r in records {
        let bucket = latency_bucket(r.duration_us);
        let duration = i64::try_from(r.duration_us).unwrap_or(i64::MAX);
        for (span, start) in [(MINUTE, minute(r.at)), (HOUR, hour(r.at))] {
            let entry = rollup.entry((span, start, bucket)).or_default();
            entry.0 += 1;
            entry.1 += i64::from(r.status >= 500);
            entry.2 = entry.2.saturating_add(duration);
        }
    }
    rollup
}

/// PostgreSQL: two statements whatever the batch size, the rows passed as arrays and expanded
/// by `UNNEST`. Far cheaper than a multi-row `VALUES` list with thousands of parameters.
async fn insert_logs_postgres(
    db: &DatabaseConnection,
    server_id: &str,
    records: &[LogRecord],
    rollup: &Rollup,
) -> Result<(), DbErr> {
    let pool = db.get_postgres_connection_pool();
    let err = |e: sea_orm::sqlx::Error| {
        use sea_orm::sqlx::Error as E;
        let unreachable = matches!(
            e,
            E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed
        );
        let e = sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(e));
        if unreachable {
            DbErr::Conn(e)
        } else {
            DbErr::Exec(e)
        }
    };
    let mut txn = pool.begin().await.map_err(err)?;
    // Telemetry, not business data: a database crash may lose the last fraction of a second of
    // log rows, but the commit no longer waits for a WAL flush, which is most of its cost.
    sea_orm::sqlx::query("SET LOCAL synchronous_commit TO OFF")
        .execute(&mut *txn)
        .await
        .map_err(err)?;
    // COPY is PostgreSQL's cheapest way in: no per-row expression evaluation, one message.
    let mut copy = txn
        .copy_in_raw(
            "COPY requests_log \
             (server_id, method, path, status, duration_us, client_ip, request_id, created_at) \
             FROM STDIN",
        )
        .await
        .map_err(err)?;
    copy.send(copy_text(server_id, records))
        .await
        .map_err(err)?;
    copy.finish().await.map_err(err)?;
    let rows: Vec<_> = rollup.iter().collect();
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
    .bind(rows.iter().map(|((span, _, _), _)| *span).collect::<Vec<_>>())
    .bind(rows.iter().map(|((_, start, _), _)| *start).collect::<Vec<_>>())
    .bind(rows.iter().map(|((_, _, bucket), _)| *bucket).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, (n, _, _))| *n).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, (_, e, _))| *e).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, (_, _, d))| *d).collect::<Vec<_>>())
    .execute(&mut *txn)
    .await
    .map_err(err)?;
    txn.commit().await.map_err(err)
}

/// The rows in COPY's text format: tab-separated, `\N` for null, one line per row.
fn copy_text(server_id: &str, records: &[LogRecord]) -> Vec<u8> {
    use std::io::Write;
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
fn copy_escape(value: &str) -> std::borrow::Cow<'_, str> {
    if value
        .bytes()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        std::borrow::Cow::Owned(
            value
                .replace('\\', "\\\\")
                .replace('\t', "\\t")
                .replace('\n', "\\n")
                .replace('\r', "\\r"),
        )
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// SQLite (and anything else): sea-orm multi-row inserts.
async fn insert_logs_generic(
    db: &DatabaseConnection,
    server_id: &str,
    records: &[LogRecord],
    rollup: &Rollup,
) -> Result<(), DbErr> {
    let rows = records.iter().map(|r| requests_log::ActiveModel {
        server_id: Set(server_id.to_owned()),
        method: Set(r.method.to_owned()),
        path: Set(r.route.to_owned()),
        status: Set(i32::from(r.status)),
        duration_us: Set(i64::try_from(r.duration_us).unwrap_or(i64::MAX)),
        client_ip: Set(r.client_ip.map(|ip| ip.to_string())),
        request_id: Set(r.request_id.to_string()),
        created_at: Set(r.at),
        ..Default::default()
    });
    let stats = rollup
        .iter()
        .map(
            |(&(span, start, bucket), &(n, errors, sum))| request_stats::ActiveModel {
                server_id: Set(server_id.to_owned()),
                span_seconds: Set(span),
                bucket_start: Set(start),
                latency_bucket: Set(bucket),
                requests: Set(n),
                errors: Set(errors),
                duration_sum_us: Set(sum),
            },
        );
    // `excluded` is the row that failed to insert: SQLite and PostgreSQL both name it so.
    let accumulate = OnConflict::columns([
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
    .to_owned();
    // SQLite allows 32,766 bound values per statement: 8 per log row, 7 per rollup row.
    const ROWS_PER_INSERT: usize = 2000;
    let rows: Vec<_> = rows.collect();
    let stats: Vec<_> = stats.collect();
    let txn = db.begin().await?;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        RequestsLog::insert_many(chunk.to_vec()).exec(&txn).await?;
    }
    for chunk in stats.chunks(ROWS_PER_INSERT) {
        RequestStats::insert_many(chunk.to_vec())
            .on_conflict(accumulate.clone())
            .exec(&txn)
            .await?;
    }
    txn.commit().await
}

/// `at`, rounded down to its minute: the rollup's finest time resolution.
pub fn minute(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

/// `at`, rounded down to its hour.
fn hour(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at)
}

/// The first full hour at or after `at`.
fn ceil_hour(at: DateTime<Utc>) -> DateTime<Utc> {
    let floor = hour(at);
    if floor == at {
        at
    } else {
        floor + TimeDelta::hours(1)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
