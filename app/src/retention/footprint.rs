//! How big the log tables are, as `/metrics` gauges: estimates from the catalog, never a scan.

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement};

use super::partitions::{DEFAULT_PARTITION, PARENT};

/// Sets `request_log_table_rows`, `request_log_table_bytes` (PostgreSQL), `request_log_partitions`
/// (PostgreSQL) and `database_size_bytes` from the database's own bookkeeping.
pub async fn refresh(db: &DatabaseConnection) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        // Row counts are the planner's estimates (as of the last VACUUM or ANALYZE); sizes
        // include indexes and TOAST, summed over the partitions.
        DatabaseBackend::Postgres => format!(
            "SELECT 'requests_log' AS name, \
                    COALESCE(SUM(GREATEST(c.reltuples, 0)), 0)::float8 AS estimate, \
                    COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::float8 AS bytes, \
                    count(*) FILTER (WHERE c.relname <> '{DEFAULT_PARTITION}')::float8 AS partitions \
             FROM pg_partition_tree('{PARENT}') t JOIN pg_class c ON c.oid = t.relid \
             WHERE t.isleaf \
             UNION ALL \
             SELECT 'request_stats', GREATEST(reltuples, 0)::float8, \
                    pg_total_relation_size(oid)::float8, NULL \
             FROM pg_class WHERE oid = 'request_stats'::regclass \
             UNION ALL \
             SELECT 'database', NULL, pg_database_size(current_database())::float8, NULL"
        ),
        // SQLite keeps no estimates. Log ids are consecutive and deleted oldest first, so their
        // range is the row count; the rollup is small enough to count.
        _ => "SELECT 'requests_log' AS name, \
                     CAST(COALESCE(MAX(id) - MIN(id) + 1, 0) AS REAL) AS estimate, \
                     NULL AS bytes, NULL AS partitions FROM requests_log \
              UNION ALL SELECT 'request_stats', CAST(count(*) AS REAL), NULL, NULL \
                        FROM request_stats \
              UNION ALL SELECT 'database', NULL, CAST(page_count * page_size AS REAL), NULL \
                        FROM pragma_page_count(), pragma_page_size()"
            .to_owned(),
    };
    let rows = db
        .query_all_raw(Statement::from_string(backend, sql))
        .await?;
    for row in rows {
        let name: String = row.try_get("", "name")?;
        let estimate: Option<f64> = row.try_get("", "estimate")?;
        let bytes: Option<f64> = row.try_get("", "bytes")?;
        let partitions: Option<f64> = row.try_get("", "partitions")?;
        if name == "database" {
            if let Some(bytes) = bytes {
                metrics::gauge!("database_size_bytes").set(bytes);
            }
            continue;
        }
        if let Some(rows) = estimate {
            metrics::gauge!("request_log_table_rows", "table" => name.clone()).set(rows);
        }
        if let Some(bytes) = bytes {
            metrics::gauge!("request_log_table_bytes", "table" => name.clone()).set(bytes);
        }
        if let Some(partitions) = partitions {
            metrics::gauge!("request_log_partitions").set(partitions);
        }
    }
    Ok(())
}
