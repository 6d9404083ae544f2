//! What the load balancer saw over the last 15 minutes: per backend, requests, 5xx and latency in 5-second buckets, and a log of backends leaving and rejoining rotation.
//!
//! Recording is a few relaxed atomic adds on the response path; the buckets form a ring
//! indexed by wall-clock time, so nothing has to rotate them. A bucket is cleared by the first
//! response that lands in it after it went out of date: responses racing that clear may lose a
//! count, which a dashboard can afford and a lock on the hot path could not.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Seconds per bucket.
pub const STEP_SECONDS: u64 = 5;
/// Buckets kept: 15 minutes.
pub const BUCKETS: usize = 180;
/// Latency classes, powers of two of microseconds from 128 µs (the last one open-ended).
const LATENCY_CLASSES: usize = 20;
/// Rotation changes kept.
const MAX_EVENTS: usize = 256;

struct Bucket {
    /// Which bucket of time this holds, plus one (0: never used).
    tag: AtomicU64,
    requests: AtomicU32,
    server_errors: AtomicU32,
    latency: [AtomicU32; LATENCY_CLASSES],
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            tag: AtomicU64::new(0),
            requests: AtomicU32::new(0),
            server_errors: AtomicU32::new(0),
            latency: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    fn clear(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.server_errors.store(0, Ordering::Relaxed);
        for c in &self.latency {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// One backend's ring of buckets.
pub(crate) struct Series {
    buckets: Box<[Bucket]>,
}

/// One bucket as reported: its start (Unix seconds), counts, and the 95th percentile of the
/// time to the response head (upper bound of its latency class), if any response landed in it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub t: u64,
    pub requests: u32,
    pub server_errors: u32,
    pub p95_ms: Option<f64>,
}

impl Series {
    pub(crate) fn new() -> Series {
        Series {
            buckets: (0..BUCKETS).map(|_| Bucket::new()).collect(),
        }
    }

    /// Counts one response: how long the backend took to its head, and whether it was a 5xx.
    pub(crate) fn record(&self, now: u64, latency: Duration, server_error: bool) {
        let n = now / STEP_SECONDS;
        let bucket = &self.buckets[(n % BUCKETS as u64) as usize];
        let tag = n + 1;
        let seen = bucket.tag.load(Ordering::Acquire);
        if seen != tag
            && bucket
                .tag
                .compare_exchange(seen, tag, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            bucket.clear();
        }
        bucket.requests.fetch_add(1, Ordering::Relaxed);
        if server_error {
            bucket.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        bucket.latency[latency_class(latency)].fetch_add(1, Ordering::Relaxed);
    }

    /// The last [`BUCKETS`] buckets up to the one holding `now` (fewer right after the epoch),
    /// oldest first; buckets nothing landed in count zero.
    pub(crate) fn points(&self, now: u64) -> Vec<Point> {
        let last = now / STEP_SECONDS;
        let first = (last + 1).saturating_sub(BUCKETS as u64);
        (first..=last)
            .map(|n| {
                let b = &self.buckets[(n % BUCKETS as u64) as usize];
                let t = n * STEP_SECONDS;
                if b.tag.load(Ordering::Acquire) != n + 1 {
                    return Point {
                        t,
                        requests: 0,
                        server_errors: 0,
                        p95_ms: None,
                    };
                }
                let classes: Vec<u32> = b
                    .latency
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .collect();
                Point {
                    t,
                    requests: b.requests.load(Ordering::Relaxed),
                    server_errors: b.server_errors.load(Ordering::Relaxed),
                    p95_ms: p95_ms(&classes),
                }
            })
            .collect()
    }
}

/// The class of a latency: 0 below 128 µs, then one per doubling.
fn latency_class(latency: Duration) -> usize {
    let us = latency.as_micros().max(1) as u64;
    let class = (64 - us.leading_zeros()).saturating_sub(7) as usize;
    class.min(LATENCY_CLASSES - 1)
}

/// Upper bound of the class holding the 95th percentile, in milliseconds.
fn p95_ms(classes: &[u32]) -> Option<f64> {
    let total: u64 = classes.iter().map(|&c| u64::from(c)).sum();
    if total == 0 {
        return None;
    }
    let rank = (total * 95).div_ceil(100);
    let mut seen = 0;
    for (i, &c) in classes.iter().enumerate() {
        seen += u64::from(c);
        if seen >= rank {
            return Some((128u64 << i) as f64 / 1000.0);
        }
    }
    None
}

/// Wall-clock seconds, the clock the buckets and the events are kept by.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A backend entering or leaving rotation, or joining or leaving the load balancer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    pub backend: String,
    /// `up`, `down`, `added` or `removed`.
    pub change: &'static str,
    /// Why, for a backend going down.
    pub reason: Option<String>,
}

/// The newest [`MAX_EVENTS`] rotation changes.
#[derive(Default)]
pub(crate) struct Events {
    log: Mutex<VecDeque<Event>>,
}

impl Events {
    pub(crate) fn push(&self, backend: &str, change: &'static str, reason: Option<&str>) {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() == MAX_EVENTS {
            log.pop_front();
        }
        log.push_back(Event {
            at_ms,
            backend: backend.to_owned(),
            change,
            reason: reason.map(str::to_owned),
        });
    }

    pub(crate) fn list(&self) -> Vec<Event> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_by_wall_clock_and_forget_what_is_older_than_the_ring() {
        let s = Series::new();
        let t0 = 1_000_000;
        s.record(t0, Duration::from_millis(1), false);
        s.record(t0 + 1, Duration::from_millis(1), true);
        s.record(t0 + STEP_SECONDS, Duration::from_millis(3), false);
        let points = s.points(t0 + STEP_SECONDS);
        assert_eq!(points.len(), BUCKETS);
        let last = points[BUCKETS - 1];
        let before = points[BUCKETS - 2];
        assert_eq!((before.requests, before.server_errors), (2, 1));
        assert_eq!(last.requests, 1);
        assert_eq!(before.t + STEP_SECONDS, last.t);
        // A full turn of the ring later the old buckets read as empty, and reusing a slot
        // starts it from zero.
        let later = t0 + STEP_SECONDS * (BUCKETS as u64 + 1);
        assert!(s.points(later).iter().all(|p| p.requests == 0));
        s.record(later, Duration::from_millis(1), false);
        assert_eq!(s.points(later)[BUCKETS - 1].requests, 1);
    }

    #[test]
    fn p95_is_the_upper_bound_of_its_latency_class() {
        let (s, t) = (Series::new(), 1_000_000);
        for _ in 0..95 {
            s.record(t, Duration::from_micros(200), false);
        }
        for _ in 0..5 {
            s.record(t, Duration::from_millis(50), false);
        }
        // 200 µs is in [128, 256) µs.
        assert_eq!(s.points(t)[BUCKETS - 1].p95_ms, Some(0.256));
        s.record(t, Duration::from_millis(50), false);
        assert_eq!(s.points(t)[BUCKETS - 1].p95_ms, Some(65.536));
        assert_eq!(
            latency_class(Duration::from_secs(3600)),
            LATENCY_CLASSES - 1
        );
    }

    #[test]
    fn the_event_log_keeps_the_newest() {
        let e = Events::default();
        for i in 0..MAX_EVENTS + 3 {
            e.push(&format!("b{i}"), "down", Some("refused"));
        }
        let list = e.list();
        assert_eq!(list.len(), MAX_EVENTS);
        assert_eq!(list[0].backend, "b3");
    }
}
