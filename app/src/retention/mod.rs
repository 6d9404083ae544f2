//! Retention: `requests_log` and `request_stats` kept within their configured age.
//!
//! A maintenance run, every `request_log.maintenance_interval_seconds` on every instance:
//!
//! - PostgreSQL's `requests_log` is partitioned by UTC day. A run creates the partitions of
//!   yesterday, today and the next two days, drops every partition whose whole day is older
//!   than `request_log.retention_days`, and empties the default partition (where rows no day
//!   partition covers land, so an insert never fails): rows past the retention are deleted,
//!   rows of a day within it move into that day's new partition. SQLite deletes aged-out rows
//!   in bounded batches instead, so the writer never waits long.
//! - `request_stats` loses its minute rows after `stats.minute_retention_hours` (the hour rows
//!   written beside them carry the same counts) and its hour rows after `stats.retention_days`,
//!   one day's rows per statement.
//!
//! On PostgreSQL every step of a run is a transaction holding an advisory lock taken with
//! "try": one instance of the cluster works at a time, and an instance that finds the lock
//! taken leaves the rest of its run to the holder. Every step is safe to repeat, so a run cut
//! short (a lock timeout, a restart) is finished by the next one.

mod footprint;
mod lock;
mod partitions;
mod policy;
mod postgres;
mod report;
mod rollups;
mod run;
mod schedule;
mod sqlite;

pub use lock::step as lock_step;
pub use policy::Policy;
pub use report::Report;
pub use run::run_once;
pub use schedule::{MaintenanceTask, spawn};
