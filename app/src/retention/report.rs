//! `Report`: what one maintenance run did.

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Another instance held the maintenance lock, so this one left (the rest of) the run to it.
    pub skipped: bool,
    pub partitions_created: u64,
    pub partitions_dropped: u64,
    /// Log rows deleted, plus the rows of dropped partitions as PostgreSQL estimates them.
    pub log_rows_removed: u64,
    /// Rows moved out of the default partition into their day's partition.
    pub log_rows_moved: u64,
    pub rollup_rows_removed: u64,
}

impl Report {
    /// Whether the run changed anything.
    pub fn changed_anything(&self) -> bool {
        self.partitions_created
            + self.partitions_dropped
            + self.log_rows_removed
            + self.log_rows_moved
            + self.rollup_rows_removed
            > 0
    }
}
