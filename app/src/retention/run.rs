//! One maintenance run: the log's retention for the backend at hand, then the rollup's.

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseBackend, DatabaseConnection, DbErr};

use super::policy::Policy;
use super::report::Report;
use super::{postgres, rollups, sqlite};
use crate::request_log::rollup::Span;

/// One maintenance run as of `now` (tests pass other times than the clock's).
pub async fn run_once(
    db: &DatabaseConnection,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Report, DbErr> {
    let mut report = Report::default();
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            postgres::maintain_log(db, policy.first_log_day(now), now, &mut report).await?;
        }
        _ => sqlite::maintain_log(db, policy.first_log_day(now), &mut report).await?,
    }
    let cutoffs = [
        (Span::Minute, Some(policy.minute_cutoff(now))),
        (Span::Hour, policy.hour_cutoff(now)),
    ];
    for (span, cutoff) in cutoffs {
        if report.skipped {
            break;
        }
        if let Some(cutoff) = cutoff {
            rollups::prune(db, span, cutoff, &mut report).await?;
        }
    }
    Ok(report)
}
