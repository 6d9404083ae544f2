//! Rows the request log lost, counted by reason in `request_log_dropped_total{reason}`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why rows were lost: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The spool held `request_log.spool_max_bytes` already (the database was away for long).
    SpoolFull,
    /// The spool's file system refused the row (full, read-only, failing).
    SpoolError,
    /// A spool line that is not a row (a damaged file).
    Corrupt,
    /// The database refused the row itself; the other rows of its batch were written.
    Rejected,
    /// Answered after the final flush began: the spool was closed.
    Shutdown,
}

impl DropReason {
    pub const ALL: [Self; 5] = [
        Self::SpoolFull,
        Self::SpoolError,
        Self::Corrupt,
        Self::Rejected,
        Self::Shutdown,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Self::SpoolFull => "spool_full",
            Self::SpoolError => "spool_error",
            Self::Corrupt => "corrupt",
            Self::Rejected => "rejected",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Rows lost since start, all reasons together; the metric has them by reason.
#[derive(Debug, Default)]
pub struct Dropped(AtomicU64);

impl Dropped {
    /// Counts `rows` lost for `reason`; returns how many were lost before them.
    pub fn count(&self, reason: DropReason, rows: u64) -> u64 {
        metrics::counter!("request_log_dropped_total", "reason" => reason.label()).increment(rows);
        self.0.fetch_add(rows, Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
