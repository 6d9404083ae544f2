//! `/api/stats` arithmetic: latency histogram buckets, windows, per-server summaries.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use serde::Serialize;
use utoipa::ToSchema;

use crate::service::StatsRow;

/// Buckets per doubling of latency: 8 keeps any percentile within about 4.5% of the truth.
const BUCKETS_PER_OCTAVE: f64 = 8.0;
const MAX_BUCKET: i32 = 255;

/// The histogram bucket a latency (in microseconds) falls in.
pub fn latency_bucket(duration_us: u64) -> i32 {
    if duration_us <= 1 {
        return 0;
    }
    ((duration_us as f64).log2() * BUCKETS_PER_OCTAVE)
        .floor()
        .min(f64::from(MAX_BUCKET)) as i32
}

/// The latency a bucket stands for: its geometric middle, in microseconds.
fn bucket_midpoint_us(bucket: i32) -> f64 {
    2f64.powf((f64::from(bucket) + 0.5) / BUCKETS_PER_OCTAVE)
}

/// Parses a window such as `90s`, `15m`, `1h`, `7d`; `all` (or empty) means all time.
pub fn parse_window(raw: &str) -> Result<Option<Duration>, String> {
    let raw = raw.trim();
    if raw.is_empty() || raw.eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    let problem = || {
        format!(
            "window {raw:?} is not a number followed by s, m, h or d (e.g. 15m, 1h, 24h, 7d), or `all`"
        )
    };
    let Some(unit) = raw.chars().last() else {
        return Err(problem());
    };
    let digits = &raw[..raw.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(problem());
    }
    let n: u64 = digits.parse().map_err(|_| problem())?;
    let secs = match unit {
        's' => n,
        'm' => n.saturating_mul(60),
        'h' => n.saturating_mul(3600),
        'd' => n.saturating_mul(86_400),
        _ => return Err(problem()),
    };
    if n == 0 || secs > 3650 * 86_400 {
        return Err(format!("window {raw:?} must be between 1s and 3650d"));
    }
    Ok(Some(Duration::from_secs(secs)))
}

/// One server's share of the traffic.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct ServerStats {
    pub server_id: String,
    pub requests: u64,
    /// Share of all requests in the window, in percent; the shares add up to 100.
    pub percent: f64,
    pub avg_latency_ms: f64,
    /// Estimated from a log-scale histogram (within about 5%).
    pub p95_latency_ms: f64,
    /// Requests answered with status 500 or above.
    pub errors: u64,
    /// `errors / requests`, 0 to 1.
    pub error_rate: f64,
}

/// Folds rollup rows into per-server summaries, busiest first.
pub fn summarize(rows: &[StatsRow]) -> (u64, Vec<ServerStats>) {
    struct Acc {
        requests: u64,
        errors: u64,
        duration_sum_us: u64,
        histogram: BTreeMap<i32, u64>,
    }
    let mut servers: BTreeMap<&str, Acc> = BTreeMap::new();
    for row in rows {
        let acc = servers.entry(&row.server_id).or_insert_with(|| Acc {
            requests: 0,
            errors: 0,
            duration_sum_us: 0,
            histogram: BTreeMap::new(),
        });
        let n = row.requests.max(0) as u64;
        acc.requests += n;
        acc.errors += row.errors.max(0) as u64;
        acc.duration_sum_us += row.duration_sum_us.max(0) as u64;
        *acc.histogram.entry(row.latency_bucket).or_default() += n;
    }
    let total: u64 = servers.values().map(|a| a.requests).sum();
    let counts: Vec<u64> = servers.values().map(|a| a.requests).collect();
    let percents = percentages(&counts, total);
    let mut out: Vec<ServerStats> = servers
        .into_iter()
        .zip(percents)
        .map(|((server_id, acc), percent)| {
            let p95_rank = (acc.requests * 95).div_ceil(100);
            let mut seen = 0;
            let mut p95_bucket = 0;
            for (bucket, n) in &acc.histogram {
                seen += n;
                p95_bucket = *bucket;
                if seen >= p95_rank {
                    break;
                }
            }
            let requests = acc.requests.max(1) as f64;
            ServerStats {
                server_id: server_id.to_owned(),
                requests: acc.requests,
                percent,
                avg_latency_ms: round3(acc.duration_sum_us as f64 / requests / 1000.0),
                p95_latency_ms: if acc.requests == 0 {
                    0.0
                } else {
                    round3(bucket_midpoint_us(p95_bucket) / 1000.0)
                },
                errors: acc.errors,
                error_rate: round4(acc.errors as f64 / requests),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then(a.server_id.cmp(&b.server_id))
    });
    (total, out)
}

/// Percentages with two decimals that add up to exactly 100 (largest remainder method).
pub fn percentages(counts: &[u64], total: u64) -> Vec<f64> {
    if total == 0 {
        return vec![0.0; counts.len()];
    }
    // Work in hundredths of a percent so the rounding is exact.
    let exact: Vec<u128> = counts.iter().map(|&c| u128::from(c) * 10_000).collect();
    let mut floors: Vec<u64> = exact
        .iter()
        .map(|e| (e / u128::from(total)) as u64)
        .collect();
    let short = 10_000 - floors.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(exact[i] % u128::from(total)));
    for &i in order.iter().take(short as usize) {
        floors[i] += 1;
    }
    floors.into_iter().map(|f| f as f64 / 100.0).collect()
}

/// Recent `/api/stats` answers by window, so a busy dashboard costs one aggregation per
/// window per `cache_ms`, not one per request.
pub struct StatsCache {
    ttl: Duration,
    /// One slot per window. A slot's lock is held while its answer is computed, so concurrent
    /// requests for that window wait for it instead of all running the same aggregation;
    /// other windows are not held up.
    slots: std::sync::Mutex<HashMap<String, Arc<Slot>>>,
}

type Slot = tokio::sync::Mutex<Option<(Instant, Bytes)>>;

/// Windows are caller input; past this many distinct ones, answers are not kept.
const MAX_CACHED_WINDOWS: usize = 64;

impl StatsCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            slots: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The cached answer for `window` if it is fresh, else `compute`'s (then cached).
    pub async fn get_or_compute<E, Fut>(
        &self,
        window: &str,
        compute: impl FnOnce() -> Fut,
    ) -> Result<Bytes, E>
    where
        Fut: Future<Output = Result<Bytes, E>>,
    {
        if self.ttl.is_zero() {
            return compute().await;
        }
        let Some(slot) = self.slot(window) else {
            return compute().await;
        };
        let mut entry = slot.lock().await;
        if let Some((at, body)) = entry.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(body.clone());
        }
        let body = compute().await?;
        *entry = Some((Instant::now(), body.clone()));
        Ok(body)
    }

    fn slot(&self, window: &str) -> Option<Arc<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get(window) {
            return Some(slot.clone());
        }
        if slots.len() >= MAX_CACHED_WINDOWS {
            return None;
        }
        let slot = Arc::new(Slot::new(None));
        slots.insert(window.to_owned(), slot.clone());
        Some(slot)
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirds_add_up_to_one_hundred() {
        let p = percentages(&[1, 1, 1], 3);
        assert_eq!(p.iter().sum::<f64>().round(), 100.0);
        assert_eq!(
            (p.iter().map(|x| (x * 100.0).round() as u64).sum::<u64>()),
            10_000
        );
        assert!(p.contains(&33.34) && p.contains(&33.33));
    }

    #[test]
    fn buckets_grow_with_latency_and_midpoints_stay_close() {
        assert!(latency_bucket(100) < latency_bucket(1000));
        for us in [3u64, 150, 2_000, 40_000, 1_000_000] {
            let mid = bucket_midpoint_us(latency_bucket(us));
            assert!((mid - us as f64).abs() / (us as f64) < 0.1, "{us} -> {mid}");
        }
    }

    #[test]
    fn windows_parse_units_and_reject_nonsense() {
        assert_eq!(parse_window("1h").unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(parse_window("15m").unwrap(), Some(Duration::from_secs(900)));
        assert_eq!(parse_window("all").unwrap(), None);
        assert!(parse_window("1y").is_err());
        assert!(parse_window("0h").is_err());
        assert!(parse_window("h").is_err());
        assert!(parse_window("+1h").is_err());
        assert!(
            parse_window("1µ").is_err(),
            "a multi-byte unit is an error, not a panic"
        );
        assert!(parse_window("µ").is_err());
    }

    #[test]
    fn p95_comes_from_the_slow_tail() {
        let mut rows = vec![StatsRow {
            server_id: "a".into(),
            latency_bucket: latency_bucket(1_000),
            requests: 90,
            errors: 0,
            duration_sum_us: 90_000,
        }];
        rows.push(StatsRow {
            server_id: "a".into(),
            latency_bucket: latency_bucket(50_000),
            requests: 10,
            errors: 2,
            duration_sum_us: 500_000,
        });
        let (total, servers) = summarize(&rows);
        assert_eq!(total, 100);
        let a = &servers[0];
        assert_eq!(a.errors, 2);
        assert_eq!(a.error_rate, 0.02);
        assert!(
            (a.p95_latency_ms - 50.0).abs() < 5.0,
            "{}",
            a.p95_latency_ms
        );
        assert!((a.avg_latency_ms - 5.9).abs() < 1e-9);
        assert_eq!(a.percent, 100.0);
    }
}
