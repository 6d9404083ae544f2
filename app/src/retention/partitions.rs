//! `requests_log`'s day partitions on PostgreSQL: names and bounds, as maintenance spells them.
//!
//! Migration `m20261202_000006_partition_requests_log` made the first partitions with its own
//! frozen copy of these names, so a database it migrated and one this code maintains agree only
//! while the two spell alike: a new scheme needs a new migration renaming what exists.

use chrono::NaiveDate;

/// The partitioned table.
pub const PARENT: &str = "requests_log";

/// Where a row goes when no day partition covers it, so that an insert never fails for want of
/// one. Maintenance moves such rows into their day's partition, or deletes them once they are
/// older than the retention.
pub const DEFAULT_PARTITION: &str = "requests_log_default";

const PREFIX: &str = "requests_log_p";

/// The partition holding `day` (UTC): `requests_log_p20261202`.
pub fn partition_name(day: NaiveDate) -> String {
    format!("{PREFIX}{}", day.format("%Y%m%d"))
}

/// The day a partition is named after; `None` for any other table.
pub fn partition_day(table: &str) -> Option<NaiveDate> {
    let digits = table.strip_prefix(PREFIX)?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
}

/// The first instant of `day` (UTC) as a `timestamptz` literal.
pub fn day_start(day: NaiveDate) -> String {
    format!("'{} 00:00:00+00'", day.format("%Y-%m-%d"))
}

/// `FOR VALUES FROM (<day>) TO (<next day>)`: one UTC day, its start included.
pub fn partition_bounds(day: NaiveDate) -> String {
    let next = day.succ_opt().unwrap_or(day);
    format!(
        "FOR VALUES FROM ({}) TO ({})",
        day_start(day),
        day_start(next)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_days_round_trip_and_other_tables_are_not_days() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        assert_eq!(partition_name(day), "requests_log_p20261231");
        assert_eq!(partition_day(&partition_name(day)), Some(day));
        assert_eq!(partition_day(DEFAULT_PARTITION), None);
        assert_eq!(partition_day("requests_log_p2026123"), None);
        assert_eq!(partition_day("requests_log_p20261332"), None);
        assert_eq!(
            partition_bounds(day),
            "FOR VALUES FROM ('2026-12-31 00:00:00+00') TO ('2027-01-01 00:00:00+00')"
        );
    }
}
