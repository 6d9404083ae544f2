//! At most one log line per second for a kind of event, with how many were left out.
//!
//! Under a burst (every request failing during a database outage) a line per event would be
//! most of what the process writes; one line a second says the same, with the count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// One kind of event's budget. `const`-constructible, for statics.
#[derive(Debug, Default)]
pub struct Throttle {
    /// The Unix second of the last line logged.
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    pub const fn new() -> Self {
        Self {
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this event may be logged, `n` being how many were not since the last
    /// line; `None` when it is to be counted and left out.
    pub fn allow(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.allow_at(now)
    }

    fn allow_at(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        if now > last
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_and_the_next_one_counts_the_rest() {
        let throttle = Throttle::new();
        assert_eq!(throttle.allow_at(100), Some(0));
        assert_eq!(throttle.allow_at(100), None);
        assert_eq!(throttle.allow_at(100), None);
        assert_eq!(throttle.allow_at(101), Some(2));
        assert_eq!(throttle.allow_at(101), None);
        assert_eq!(throttle.allow_at(105), Some(1));
    }
}
