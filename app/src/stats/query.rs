//! The one statement behind an answer: a window's rollup summed per server, and the user count.
//!
//! The database sums the window's rows per server and hands back one row each, histograms
//! concatenated (stored histograms read as their sum when concatenated). Decoding a result row
//! costs the app about a microsecond whatever its size, and a day-long window has up to 55
//! rollup rows per server; the user count rides along in the same statement, as each statement
//! costs a round trip and a pooled connection of its own.

use entity::prelude::*;
use sea_orm::sea_query::{Alias, Expr, JoinType, PostgresQueryBuilder, Query, SimpleExpr};
use sea_orm::{DatabaseBackend, DatabaseConnection, DbErr, EntityName, FromQueryResult, Statement};

use crate::request_log::rollup::{WindowPlan, WindowStart};

/// One server's rollup, summed over the window.
#[derive(Debug)]
pub struct ServerTotals {
    pub server_id: String,
    pub requests: i64,
    pub errors: i64,
    pub duration_sum_us: i64,
    pub latency_histogram: Vec<u8>,
    /// Histograms to take away from `latency_histogram`: minutes of the window's first hour
    /// row from before the window starts.
    pub latency_subtract: Vec<u8>,
}

/// What an answer is computed from.
#[derive(Debug)]
pub struct WindowRows {
    pub total_users: u64,
    pub servers: Vec<ServerTotals>,
}

/// The user count joined to every server's totals, or alone when the window has no rows.
#[derive(FromQueryResult)]
struct Joined {
    total_users: i64,
    server_id: Option<String>,
    requests: Option<i64>,
    errors: Option<i64>,
    duration_sum_us: Option<i64>,
    latency_histogram: Option<Vec<u8>>,
    latency_subtract: Option<Vec<u8>>,
}

const ROLLUP_COLUMNS: [&str; 6] = [
    "server_id",
    "requests",
    "errors",
    "duration_sum_us",
    "latency_histogram",
    "latency_subtract",
];

/// The window's rollup per server (all time when `start` is `None`) and how many users there
/// are, the count summed from the `user_counts` slots its triggers keep.
pub async fn window_rows(
    db: &DatabaseConnection,
    start: Option<WindowStart>,
) -> Result<WindowRows, DbErr> {
    let backend = db.get_database_backend();
    let mut per_server = Query::select();
    per_server.expr_as(Expr::col(("w", "server_id")), "server_id");
    for column in ["requests", "errors", "duration_sum_us"] {
        // PostgreSQL sums BIGINT into NUMERIC; the cast keeps both databases on i64.
        per_server.expr_as(
            Expr::cust(format!("CAST(SUM(w.sign * w.{column}) AS BIGINT)")),
            column,
        );
    }
    per_server
        .expr_as(concatenated_histograms(backend, ">"), "latency_histogram")
        .expr_as(concatenated_histograms(backend, "<"), "latency_subtract")
        .from_subquery(WindowPlan::new(start).rows(), "w")
        .group_by_col(("w", "server_id"));
    let users = Query::select()
        .expr_as(
            // PostgreSQL sums BIGINT into NUMERIC; the cast keeps both databases on i64.
            Expr::cust("CAST(COALESCE(SUM(users), 0) AS BIGINT)"),
            "total_users",
        )
        .from(UserCounts.table_ref())
        .to_owned();
    let mut query = Query::select();
    query.expr_as(Expr::col(("u", "total_users")), "total_users");
    for column in ROLLUP_COLUMNS {
        // Named with `AS`: SQLite names result columns after their source text otherwise.
        query.expr_as(Expr::col(("r", column)), column);
    }
    query.from_subquery(users, "u").join_subquery(
        JoinType::LeftJoin,
        per_server,
        Alias::new("r"),
        Expr::cust("1 = 1"),
    );
    let statement = match backend {
        // With the times as parameters PostgreSQL plans the statement again on every execution
        // (their values decide the plan), which costs more than running it. Written out, they
        // make a statement that is prepared and planned once per connection and minute. Our
        // own timestamps and constants, quoted by sea-query: nothing a caller sent.
        DatabaseBackend::Postgres => {
            Statement::from_string(backend, query.to_string(PostgresQueryBuilder))
        }
        // SQLite compares the times as text, in the form the driver binds them in.
        _ => backend.build(&query),
    };
    let joined = Joined::find_by_statement(statement).all(db).await?;
    let total_users = joined
        .first()
        .map_or(0, |row| row.total_users.max(0) as u64);
    let servers = joined
        .into_iter()
        .filter_map(|row| {
            Some(ServerTotals {
                server_id: row.server_id?,
                requests: row.requests?,
                errors: row.errors?,
                duration_sum_us: row.duration_sum_us?,
                latency_histogram: row.latency_histogram?,
                latency_subtract: row.latency_subtract.unwrap_or_default(),
            })
        })
        .collect();
    Ok(WindowRows {
        total_users,
        servers,
    })
}

/// The histograms of the group's rows whose sign compares to 0 by `op`, one after the other.
fn concatenated_histograms(backend: DatabaseBackend, op: &str) -> SimpleExpr {
    Expr::cust(match backend {
        DatabaseBackend::Postgres => {
            format!("string_agg(w.latency_histogram, ''::bytea) FILTER (WHERE w.sign {op} 0)")
        }
        // SQLite concatenates text: through hex, so no byte is taken for a character.
        _ => format!(
            "unhex(group_concat(hex(w.latency_histogram), '') FILTER (WHERE w.sign {op} 0))"
        ),
    })
}
