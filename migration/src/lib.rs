//! Schema migrations for the API's database (SQLite and PostgreSQL alike).

pub use sea_orm_migration::prelude::*;

mod m20261129_000001_create_users;
mod m20261129_000002_create_requests_log;
mod m20261129_000003_create_request_stats;
mod m20261129_000004_drop_request_id_index;
mod m20261202_000005_canonical_email_key;
mod m20261202_000006_partition_requests_log;
mod m20261202_000007_request_stats_latency_histograms;
mod m20261202_000008_create_user_counts;
mod m20261205_000009_create_request_log_spools;
mod m20261205_000010_user_counts_per_statement;

/// Every migration, in the order they apply.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261129_000001_create_users::Migration),
            Box::new(m20261129_000002_create_requests_log::Migration),
            Box::new(m20261129_000003_create_request_stats::Migration),
            Box::new(m20261129_000004_drop_request_id_index::Migration),
            Box::new(m20261202_000005_canonical_email_key::Migration),
            Box::new(m20261202_000006_partition_requests_log::Migration),
            Box::new(m20261202_000007_request_stats_latency_histograms::Migration),
            Box::new(m20261202_000008_create_user_counts::Migration),
            Box::new(m20261205_000009_create_request_log_spools::Migration),
            Box::new(m20261205_000010_user_counts_per_statement::Migration),
        ]
    }
}
