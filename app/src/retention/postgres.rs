//! PostgreSQL: `requests_log`'s day partitions made ahead, dropped when aged out.
//!
//! A day partition is made as a table of its own and then attached, which needs only a light
//! lock on the parent, so inserts go on meanwhile; rows of that day waiting in the default
//! partition move into it first. Dropping a partition takes the parent for an instant.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr, Statement,
};

use super::lock;
use super::partitions::{
    DEFAULT_PARTITION, PARENT, day_start, partition_bounds, partition_day, partition_name,
};
use super::report::Report;

/// Days after today that get their partition ahead of time: the maintenance may miss a few
/// runs before a row ever lands in the default partition.
const DAYS_AHEAD: i64 = 2;

/// Rows deleted from the default partition per statement.
const DELETE_BATCH: u64 = 10_000;

const COLUMNS: &str =
    "id, server_id, method, path, status, duration_us, client_ip, request_id, created_at";

/// Creates the partitions due, drops the aged-out ones and empties the default partition of
/// rows that have a day partition now or are past the retention (`first_day`: the first day
/// kept; `None` keeps every day). Sets `report.skipped` when another instance holds the lock.
pub async fn maintain_log(
    db: &DatabaseConnection,
    first_day: Option<NaiveDate>,
    now: DateTime<Utc>,
    report: &mut Report,
) -> Result<(), DbErr> {
    let today = now.date_naive();
    let last_day = today + TimeDelta::days(DAYS_AHEAD);
    let Some(txn) = lock::step(db).await? else {
        report.skipped = true;
        return Ok(());
    };
    let partitions = partitions(&txn).await?;
    let stranded = default_days(&txn, first_day, last_day).await?;
    txn.commit().await?;

    let mut wanted: Vec<NaiveDate> = (-1..=DAYS_AHEAD)
        .map(|offset| today + TimeDelta::days(offset))
        .filter(|day| first_day.is_none_or(|first| *day >= first))
        .chain(stranded)
        .filter(|day| !partitions.iter().any(|(have, _)| have == day))
        .collect();
    wanted.sort();
    wanted.dedup();
    for day in wanted {
        let Some(txn) = lock::step(db).await? else {
            report.skipped = true;
            return Ok(());
        };
        if let Some(moved) = create_partition(&txn, day).await? {
            report.partitions_created += 1;
            report.log_rows_moved += moved;
        }
        txn.commit().await?;
    }

    let Some(first_day) = first_day else {
        return Ok(());
    };
    for (day, rows) in partitions.iter().filter(|(day, _)| *day < first_day) {
        let Some(txn) = lock::step(db).await? else {
            report.skipped = true;
            return Ok(());
        };
        let dropped = txn
            .execute_unprepared(&format!("DROP TABLE IF EXISTS {}", partition_name(*day)))
            .await;
        match dropped {
            Ok(_) => {
                txn.commit().await?;
                report.partitions_dropped += 1;
                report.log_rows_removed += rows;
            }
            // A lock timeout: writers kept the table busy; the next run tries again.
            Err(err) => {
                tracing::warn!(error = %err, partition = %partition_name(*day), "could not drop an aged-out partition; the next run tries again");
                txn.rollback().await?;
            }
        }
    }
    loop {
        let Some(txn) = lock::step(db).await? else {
            report.skipped = true;
            return Ok(());
        };
        let deleted = txn
            .execute_unprepared(&format!(
                "DELETE FROM {DEFAULT_PARTITION} WHERE ctid = ANY (ARRAY(\
                 SELECT ctid FROM {DEFAULT_PARTITION} WHERE created_at < {} LIMIT {DELETE_BATCH}))",
                day_start(first_day)
            ))
            .await?
            .rows_affected();
        txn.commit().await?;
        report.log_rows_removed += deleted;
        if deleted < DELETE_BATCH {
            return Ok(());
        }
    }
}

/// The day partitions there are, with their estimated row counts.
async fn partitions(txn: &DatabaseTransaction) -> Result<Vec<(NaiveDate, u64)>, DbErr> {
    let rows = txn
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            format!(
                "SELECT c.relname::text AS name, GREATEST(c.reltuples, 0)::int8 AS estimate \
                 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = '{PARENT}'::regclass"
            ),
        ))
        .await?;
    let mut days = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.try_get("", "name")?;
        if let Some(day) = partition_day(&name) {
            days.push((day, row.try_get::<i64>("", "estimate")?.max(0) as u64));
        }
    }
    Ok(days)
}

/// The days from `first_day` to `last_day` that have rows in the default partition. Later
/// days wait there until they come within reach; earlier ones are deleted.
async fn default_days(
    txn: &DatabaseTransaction,
    first_day: Option<NaiveDate>,
    last_day: NaiveDate,
) -> Result<Vec<NaiveDate>, DbErr> {
    let from = first_day.map_or(String::new(), |day| {
        format!("created_at >= {} AND ", day_start(day))
    });
    let rows = txn
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            format!(
                "SELECT DISTINCT to_char(created_at AT TIME ZONE 'UTC', 'YYYYMMDD') AS day \
                 FROM {DEFAULT_PARTITION} WHERE {from}created_at < {}",
                day_start(last_day + TimeDelta::days(1))
            ),
        ))
        .await?;
    rows.iter()
        .filter_map(|row| {
            let day = row.try_get::<String>("", "day").ok()?;
            NaiveDate::parse_from_str(&day, "%Y%m%d").ok()
        })
        .map(Ok)
        .collect()
}

/// Makes `day`'s partition, moving its rows out of the default partition; `None` when another
/// run made it meanwhile, else the rows moved.
async fn create_partition(txn: &DatabaseTransaction, day: NaiveDate) -> Result<Option<u64>, DbErr> {
    let name = partition_name(day);
    let exists = txn
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            format!("SELECT to_regclass('{name}') IS NOT NULL AS exists"),
        ))
        .await?
        .map(|row| row.try_get::<bool>("", "exists"))
        .transpose()?
        .unwrap_or(false);
    if exists {
        return Ok(None);
    }
    // Attaching scans the default partition for rows of the day; nothing may add one between
    // the move and the attach. Writers that have rows for the default partition wait a moment.
    txn.execute_unprepared(&format!(
        "LOCK TABLE {DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE;
         CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)"
    ))
    .await?;
    let moved = txn
        .execute_unprepared(&format!(
            "WITH moved AS (DELETE FROM {DEFAULT_PARTITION} \
             WHERE created_at >= {} AND created_at < {} RETURNING {COLUMNS}) \
             INSERT INTO {name} ({COLUMNS}) SELECT {COLUMNS} FROM moved",
            day_start(day),
            day_start(day + TimeDelta::days(1))
        ))
        .await?
        .rows_affected();
    txn.execute_unprepared(&format!(
        "ALTER TABLE {PARENT} ATTACH PARTITION {name} {}",
        partition_bounds(day)
    ))
    .await?;
    Ok(Some(moved))
}
