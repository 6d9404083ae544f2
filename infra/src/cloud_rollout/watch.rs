//! After a cloud switch, through the stack's load balancer: wait until the new colour answers, then watch its share of 5xx.
//!
//! DigitalOcean's load balancer exposes no per-droplet counters, but every request the app
//! answers is logged with the server that answered, so `/api/stats` (shared database) gives
//! each new droplet's requests and 5xx. The watch adds its own probes, which also catch what
//! the app cannot log: the load balancer's own errors and requests that got no answer.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// How often the watch probes and reads the stats.
const TICK: Duration = Duration::from_millis(500);
/// Answers it takes before the error share is judged early.
const EARLY_VERDICT_REQUESTS: u64 = 200;
/// Consecutive `/server-info` answers from the new colour that show the switch took effect.
const SWITCHED_AFTER: u32 = 3;

#[derive(Deserialize)]
struct Stats {
    servers: Vec<ServerStats>,
}

#[derive(Deserialize)]
struct ServerStats {
    server_id: String,
    requests: u64,
    errors: u64,
}

/// Reads the load balancer as a client does.
pub struct Watcher {
    client: reqwest::Client,
    url: String,
    new: BTreeSet<String>,
}

/// Requests the new colour answered and how many were 5xx, with the watch's failed probes.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    requests: u64,
    errors: u64,
}

impl Watcher {
    pub fn new(url: &str, new: &[String]) -> anyhow::Result<Watcher> {
        Ok(Watcher {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            url: url.trim_end_matches('/').to_owned(),
            new: new.iter().cloned().collect(),
        })
    }

    /// Waits until the load balancer answers `/server-info` from the new colour only, a few
    /// times in a row: retargeting takes the provider a moment after `pulumi up` returns.
    pub async fn wait_switched(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let (mut in_a_row, mut last) = (0, "no answer yet".to_owned());
        while Instant::now() < deadline {
            match self.server_info().await {
                Ok(id) if self.new.contains(&id) => in_a_row += 1,
                Ok(id) => {
                    in_a_row = 0;
                    last = format!("answered by {id}");
                }
                Err(e) => {
                    in_a_row = 0;
                    last = e;
                }
            }
            if in_a_row >= SWITCHED_AFTER {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(format!(
            "the load balancer did not answer from the new droplets within {timeout:?} (last: {last})"
        ))
    }

    async fn server_info(&self) -> Result<String, String> {
        let r = self
            .client
            .get(format!("{}{}", self.url, app::paths::SERVER_INFO))
            .send()
            .await
            .map_err(|e| format!("GET /server-info: {e}"))?;
        let status = r.status();
        let body: serde_json::Value = r
            .json()
            .await
            .map_err(|e| format!("GET /server-info answered {status}: {e}"))?;
        body["server_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("GET /server-info answered {status} naming no server"))
    }

    /// The new colour's requests and 5xx so far, from the shared request log.
    async fn stats(&self) -> Result<Tally, String> {
        let r = self
            .client
            .get(format!("{}/api/stats?window=all", self.url))
            .send()
            .await
            .map_err(|e| format!("GET /api/stats: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("GET /api/stats answered {}", r.status().as_u16()));
        }
        let stats: Stats = r.json().await.map_err(|e| format!("GET /api/stats: {e}"))?;
        Ok(stats
            .servers
            .iter()
            .filter(|s| self.new.contains(&s.server_id))
            .fold(Tally::default(), |t, s| Tally {
                requests: t.requests + s.requests,
                errors: t.errors + s.errors,
            }))
    }

    /// One probe through the load balancer: `false` for a 5xx or no answer.
    async fn probe(&self) -> bool {
        let r = self
            .client
            .get(format!("{}{}", self.url, app::paths::SERVER_INFO))
            .send()
            .await;
        r.is_ok_and(|r| !r.status().is_server_error())
    }

    /// Watches for `duration`: `Err` names the share of 5xx when it exceeds `max_percent`.
    pub async fn watch(&self, duration: Duration, max_percent: f64) -> Result<String, String> {
        // The gate's own requests count as the new colour's, and they were all answered.
        let base = self.stats().await.unwrap_or_default();
        let deadline = Instant::now() + duration;
        let (mut probes, mut failed_probes, mut stats_failures) = (0u64, 0u64, 0u64);
        let mut seen = Tally::default();
        loop {
            probes += 1;
            if !self.probe().await {
                failed_probes += 1;
            }
            match self.stats().await {
                Ok(now) => {
                    seen = Tally {
                        requests: now.requests.saturating_sub(base.requests),
                        errors: now.errors.saturating_sub(base.errors),
                    }
                }
                Err(_) => stats_failures += 1,
            }
            // Probes the app answered are already in the stats; failed ones may not be.
            let requests = seen.requests.max(probes) + stats_failures;
            let errors = seen.errors + failed_probes + stats_failures;
            let rate = percent(errors, requests);
            let due = Instant::now() >= deadline || requests >= EARLY_VERDICT_REQUESTS;
            if due && rate > max_percent {
                return Err(format!(
                    "{rate:.1}% of the new build's answers were 5xx or missing ({errors} of {requests}), above {max_percent}%"
                ));
            }
            if Instant::now() >= deadline {
                return Ok(format!(
                    "watched {} s: {requests} requests to the new build, {errors} 5xx ({rate:.1}%)",
                    duration.as_secs()
                ));
            }
            tokio::time::sleep(TICK).await;
        }
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
