//! Per-server summaries of the rollup: shares of 100, mean and p95 latency, error rates.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::query::ServerTotals;
use crate::request_log::histogram::{Histogram, bucket_midpoint_us};

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

/// Folds the servers' totals into summaries, busiest first.
pub fn summarize(rows: &[ServerTotals]) -> (u64, Vec<ServerStats>) {
    #[derive(Default)]
    struct Acc {
        requests: u64,
        errors: u64,
        duration_sum_us: u64,
        latency: Histogram,
        subtract: Vec<u8>,
    }
    let mut servers: BTreeMap<&str, Acc> = BTreeMap::new();
    for row in rows {
        let acc = servers.entry(&row.server_id).or_default();
        acc.requests += row.requests.max(0) as u64;
        acc.errors += row.errors.max(0) as u64;
        acc.duration_sum_us += row.duration_sum_us.max(0) as u64;
        acc.latency.add_stored(&row.latency_histogram);
        acc.subtract.extend_from_slice(&row.latency_subtract);
    }
    for acc in servers.values_mut() {
        acc.latency.subtract_stored(&acc.subtract);
    }
    let total: u64 = servers.values().map(|a| a.requests).sum();
    let counts: Vec<u64> = servers.values().map(|a| a.requests).collect();
    let percents = percentages(&counts, total);
    let mut out: Vec<ServerStats> = servers
        .into_iter()
        .zip(percents)
        .map(|((server_id, acc), percent)| {
            let requests = acc.requests.max(1) as f64;
            ServerStats {
                server_id: server_id.to_owned(),
                requests: acc.requests,
                percent,
                avg_latency_ms: round3(acc.duration_sum_us as f64 / requests / 1000.0),
                p95_latency_ms: acc
                    .latency
                    .percentile_bucket(95)
                    .map_or(0.0, |bucket| round3(bucket_midpoint_us(bucket) / 1000.0)),
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
fn percentages(counts: &[u64], total: u64) -> Vec<f64> {
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

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_log::histogram::latency_bucket;

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

    fn row(
        server_id: &str,
        requests: i64,
        errors: i64,
        duration_sum_us: i64,
        at_us: u64,
    ) -> ServerTotals {
        let mut latency = Histogram::default();
        latency.add(latency_bucket(at_us), requests as u64);
        ServerTotals {
            server_id: server_id.into(),
            requests,
            errors,
            duration_sum_us,
            latency_histogram: latency.to_stored(),
            latency_subtract: Vec::new(),
        }
    }

    #[test]
    fn p95_comes_from_the_slow_tail() {
        let rows = [
            row("a", 90, 0, 90_000, 1_000),
            row("a", 10, 2, 500_000, 50_000),
        ];
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
