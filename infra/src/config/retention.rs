//! The retention section: how many days of request log and stats rollups the app keeps.

use super::keys::Section;
use super::reader::Reader;
use crate::limits;

/// Retention a stack may ask of the app, in days: ten years at most.
const RETENTION_DAYS: std::ops::RangeInclusive<u32> = 0..=3650;

/// Days of request-log rows and of hourly stats rollups.
pub(super) struct Retention {
    pub(super) request_log_days: u32,
    pub(super) stats_days: u32,
}

impl Retention {
    pub(super) fn parse(r: &mut Reader) -> Retention {
        let r = r.enter(Section::Retention);
        let [request_log_days, stats_days] =
            ["requestLogRetentionDays", "statsRetentionDays"].map(|key| {
                let days = r.uint(key);
                if let Some(problem) = limits::range_problem(days, &RETENTION_DAYS) {
                    r.err(key, format!("{problem} (0 keeps everything)"));
                }
                days
            });
        Retention {
            request_log_days,
            stats_days,
        }
    }
}
