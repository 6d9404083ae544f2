//! Latency histograms, and how `request_stats.latency_histogram` stores one.
//!
//! Stored, a histogram is 5 bytes per non-empty bucket: the bucket index (`u8`), then its count
//! (`u32`, big-endian), buckets ascending. Reading adds entries up whatever their order, so two
//! stored histograms concatenated read as their sum.

/// Buckets per doubling of latency: 8 keeps any percentile within about 4.5% of the truth.
const BUCKETS_PER_OCTAVE: f64 = 8.0;
/// The slowest bucket: about 66 minutes and beyond, far past any request timeout.
const MAX_BUCKET: u8 = 255;

/// The histogram bucket a latency (in microseconds) falls in.
pub fn latency_bucket(duration_us: u64) -> u8 {
    if duration_us <= 1 {
        return 0;
    }
    ((duration_us as f64).log2() * BUCKETS_PER_OCTAVE)
        .floor()
        .min(f64::from(MAX_BUCKET)) as u8
}

/// The latency a bucket stands for: its geometric middle, in microseconds.
pub fn bucket_midpoint_us(bucket: u8) -> f64 {
    2f64.powf((f64::from(bucket) + 0.5) / BUCKETS_PER_OCTAVE)
}

/// Buckets a histogram has: one per index [`latency_bucket`] can return.
const BUCKETS: usize = MAX_BUCKET as usize + 1;

/// Bytes per stored bucket.
const ENTRY: usize = 5;

/// Requests per latency bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram(Box<[u64; BUCKETS]>);

impl Default for Histogram {
    fn default() -> Self {
        Self(Box::new([0; BUCKETS]))
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.buckets()).finish()
    }
}

impl Histogram {
    /// Counts `n` requests in `bucket`.
    pub fn add(&mut self, bucket: u8, n: u64) {
        let count = &mut self.0[usize::from(bucket)];
        *count = count.saturating_add(n);
    }

    /// Adds the counts of a stored histogram. A trailing partial entry (never written by this
    /// code) is ignored rather than failing a whole answer.
    pub fn add_stored(&mut self, stored: &[u8]) {
        for (bucket, n) in stored_entries(stored) {
            self.add(bucket, n);
        }
    }

    /// Takes away the counts of a stored histogram (never below zero).
    pub fn subtract_stored(&mut self, stored: &[u8]) {
        for (bucket, n) in stored_entries(stored) {
            let count = &mut self.0[usize::from(bucket)];
            *count = count.saturating_sub(n);
        }
    }

    /// The stored form. A count beyond `u32::MAX` (over a million requests a second in one
    /// bucket of one server for an hour) is capped there.
    pub fn to_stored(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.iter().filter(|&&n| n > 0).count() * ENTRY);
        for (bucket, n) in self.buckets() {
            out.push(bucket);
            out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
        }
        out
    }

    /// The non-empty buckets, lowest latency first.
    pub fn buckets(&self) -> impl Iterator<Item = (u8, u64)> + '_ {
        (0..=MAX_BUCKET)
            .zip(self.0.iter().copied())
            .filter(|&(_, n)| n > 0)
    }

    /// The bucket holding the request of rank `ceil(total * percent / 100)`; `None` when empty.
    pub fn percentile_bucket(&self, percent: u64) -> Option<u8> {
        let total: u64 = self.0.iter().sum();
        let rank = (total.saturating_mul(percent)).div_ceil(100).max(1);
        let mut seen = 0;
        for (bucket, n) in self.buckets() {
            seen += n;
            if seen >= rank {
                return Some(bucket);
            }
        }
        None
    }
}

/// The (bucket, count) entries of a stored histogram; a trailing partial entry is skipped.
fn stored_entries(stored: &[u8]) -> impl Iterator<Item = (u8, u64)> + '_ {
    stored.chunks_exact(ENTRY).map(|entry| {
        let n = u32::from_be_bytes([entry[1], entry[2], entry[3], entry[4]]);
        (entry[0], u64::from(n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_with_latency_and_midpoints_stay_close() {
        assert!(latency_bucket(100) < latency_bucket(1000));
        assert_eq!(latency_bucket(u64::MAX), MAX_BUCKET);
        for us in [3u64, 150, 2_000, 40_000, 1_000_000] {
            let mid = bucket_midpoint_us(latency_bucket(us));
            assert!((mid - us as f64).abs() / (us as f64) < 0.1, "{us} -> {mid}");
        }
    }

    #[test]
    fn stored_histograms_round_trip_and_concatenations_add_up() {
        let mut a = Histogram::default();
        a.add(61, 3);
        a.add(255, 70_000);
        a.add(0, 1);
        let stored = a.to_stored();
        assert_eq!(stored.len(), 15);
        assert_eq!(&stored[..5], &[0, 0, 0, 0, 1], "ascending, big-endian");
        let mut back = Histogram::default();
        back.add_stored(&stored);
        assert_eq!(back, a);

        let mut twice = Histogram::default();
        twice.add_stored(&[stored.clone(), stored].concat());
        assert_eq!(
            twice.buckets().collect::<Vec<_>>(),
            [(0, 2), (61, 6), (255, 140_000)]
        );
    }

    #[test]
    fn counts_past_u32_are_capped_when_stored_and_partial_entries_ignored() {
        let mut h = Histogram::default();
        h.add(7, u64::from(u32::MAX) + 5);
        let mut back = Histogram::default();
        back.add_stored(&h.to_stored());
        assert_eq!(
            back.buckets().collect::<Vec<_>>(),
            [(7, u64::from(u32::MAX))]
        );
        back.add_stored(&[9, 0, 0]);
        assert_eq!(back.buckets().count(), 1);
    }

    #[test]
    fn percentiles_come_from_the_ranked_bucket() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile_bucket(95), None);
        h.add(10, 90);
        h.add(50, 10);
        assert_eq!(h.percentile_bucket(90), Some(10));
        assert_eq!(h.percentile_bucket(95), Some(50));
        assert_eq!(h.percentile_bucket(0), Some(10));
    }
}
