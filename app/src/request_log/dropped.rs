//! Rows the request log lost, counted by reason in `request_log_dropped_total{reason}`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why rows were lost: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full (the database was away or slow for longer than the queue lasts).
    QueueFull,
    /// The database refused the row itself; the other rows of its batch were written.
    Rejected,
    /// Still queued when the process stopped and could not be written in time.
    Shutdown,
}

impl DropReason {
    pub const ALL: [Self; 3] = [Self::QueueFull, Self::Rejected, Self::Shutdown];

    pub const fn label(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
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
