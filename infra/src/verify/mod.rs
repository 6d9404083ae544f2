//! `infra verify`: checks a running deployment from outside, as a client sees it through the load balancer.
//!
//! Works against any URL (the local stack or DigitalOcean): how requests spread over servers,
//! whether every server sees the same data, whether `/api/stats` adds up, and whether every
//! response is labelled and every error is JSON. Against the local stack it can also run
//! failure drills under load (see [`drills`]).

mod consistency;
pub mod drills;
mod load;
mod options;
mod probe;
mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use options::Options;
pub use report::{Check, Distribution, Mode, Report};

use consistency::consistency;
use probe::{Answer, Probe};

/// How far a server's share may stray from an even split under round robin: requests from
/// other clients land in between ours, so exact turns are not expected.
const ROUND_ROBIN_TOLERANCE: f64 = 0.25;
/// How long stats may take to count our requests: the request log writes in batches and
/// each instance caches answers for about a second.
const STATS_SETTLE: Duration = Duration::from_secs(8);

/// Runs every check against `opts.url`.
pub async fn verify(opts: &Options) -> anyhow::Result<Report> {
    let mut probe = Probe::new(
        &opts.url,
        opts.api_key.clone(),
        opts.root_certificate.as_deref(),
    )?;
    let mut checks = Vec::new();

    let distribution = distribution(&mut probe, opts.requests).await?;
    checks.push(distribution_check(&distribution));
    let servers: BTreeSet<String> = distribution.counts.keys().cloned().collect();
    checks.push(consistency(&mut probe, &servers).await);
    checks.push(stats(&mut probe, &servers).await);
    checks.push(errors_are_json(&mut probe).await);
    // Last, so it covers every response the checks above received.
    checks.insert(0, probe.header_check());
    Ok(Report {
        url: opts.url.clone(),
        distribution,
        checks,
        drills: Vec::new(),
    })
}

/// The checks a new build's instance must pass on its own URL before it gets traffic
/// (`infra rollout`): it names itself on `/server-info`, a user is created, read back and
/// deleted, errors are JSON, and every answer is labelled. `Err` names the first failure.
pub async fn gate(url: &str, api_key: Option<String>) -> Result<(), String> {
    let mut probe = Probe::new(url, api_key, None).map_err(|e| e.to_string())?;
    let server = match probe.get(app::paths::SERVER_INFO).await {
        Ok(a) if a.status == 200 => a.server_id.or_else(|| {
            a.json
                .as_ref()
                .and_then(|j| j["server_id"].as_str().map(str::to_owned))
        }),
        Ok(a) => {
            return Err(format!(
                "server-info: GET /server-info answered {}",
                a.status
            ));
        }
        Err(e) => return Err(format!("server-info: {e:#}")),
    };
    let Some(server) = server else {
        return Err("server-info: the answer names no server".to_owned());
    };
    let mut checks = vec![consistency(&mut probe, &BTreeSet::from([server])).await];
    checks.push(errors_are_json(&mut probe).await);
    checks.push(probe.header_check());
    match checks.into_iter().find(|c| !c.passed) {
        Some(failed) => Err(format!("{}: {}", failed.name, failed.detail)),
        None => Ok(()),
    }
}

/// Sends `n` GET /server-info and counts who answered. When the load balancer sets a sticky
/// cookie, the requests carry it back and a single server is expected instead.
async fn distribution(probe: &mut Probe, n: u32) -> anyhow::Result<Distribution> {
    let mut counts = BTreeMap::new();
    let mut failures = 0;
    let mut cookie: Option<String> = None;
    for _ in 0..n {
        match probe
            .get_with_cookie(app::paths::SERVER_INFO, cookie.as_deref())
            .await
        {
            Ok(a) if a.status == 200 => {
                let id = a
                    .json
                    .as_ref()
                    .and_then(|j| j["server_id"].as_str().map(str::to_owned))
                    .or(a.server_id.clone())
                    .unwrap_or_else(|| "(none)".to_owned());
                *counts.entry(id).or_insert(0u32) += 1;
                if cookie.is_none() {
                    cookie = a.sticky_cookie.clone();
                }
            }
            _ => failures += 1,
        }
    }
    Ok(Distribution {
        mode: if cookie.is_some() {
            Mode::Sticky
        } else {
            Mode::RoundRobin
        },
        counts,
        failures,
        sent: n,
    })
}

fn distribution_check(d: &Distribution) -> Check {
    let answered: u32 = d.counts.values().sum();
    if d.failures > 0 {
        return Check::fail(
            "distribution",
            format!("{} of {} GET /server-info failed", d.failures, d.sent),
        );
    }
    match d.mode {
        Mode::Sticky if d.counts.len() == 1 => Check::pass(
            "distribution",
            format!("sticky: all {answered} requests with the cookie went to one server"),
        ),
        Mode::Sticky => Check::fail(
            "distribution",
            format!(
                "sticky cookie set, but {} servers answered requests that carried it",
                d.counts.len()
            ),
        ),
        Mode::RoundRobin if d.counts.len() < 2 => Check::fail(
            "distribution",
            format!(
                "only {} answered {answered} requests: nothing is balanced",
                d.counts.keys().next().map_or("nobody", String::as_str)
            ),
        ),
        Mode::RoundRobin => {
            let even = f64::from(answered) / d.counts.len() as f64;
            let slack = (even * ROUND_ROBIN_TOLERANCE).max(2.0);
            let off: Vec<String> = d
                .counts
                .iter()
                .filter(|(_, c)| (f64::from(**c) - even).abs() > slack)
                .map(|(s, c)| format!("{s} got {c}"))
                .collect();
            if off.is_empty() {
                Check::pass(
                    "distribution",
                    format!(
                        "round robin over {} servers, each within {:.0} of {even:.1}",
                        d.counts.len(),
                        slack
                    ),
                )
            } else {
                Check::fail(
                    "distribution",
                    format!(
                        "uneven for round robin (about {even:.1} each): {}",
                        off.join(", ")
                    ),
                )
            }
        }
    }
}

/// `/api/stats`: percentages add up to 100 and every server that answered us is listed.
async fn stats(probe: &mut Probe, servers: &BTreeSet<String>) -> Check {
    const NAME: &str = "stats";
    let deadline = Instant::now() + STATS_SETTLE;
    loop {
        let answer = probe.get(app::paths::STATS).await;
        let verdict = match &answer {
            Ok(a) if a.status == 200 => {
                judge_stats(a.json.as_ref().unwrap_or(&Value::Null), servers)
            }
            Ok(a) => Err(format!("GET /api/stats answered {}", a.status)),
            Err(e) => Err(format!("GET /api/stats: {e}")),
        };
        match verdict {
            Ok(detail) => return Check::pass(NAME, detail),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(problem) => return Check::fail(NAME, problem),
        }
    }
}

fn judge_stats(stats: &Value, servers: &BTreeSet<String>) -> Result<String, String> {
    let rows = stats["servers"]
        .as_array()
        .ok_or("the answer has no `servers` list")?;
    let total: f64 = rows.iter().filter_map(|r| r["percent"].as_f64()).sum();
    if rows.is_empty() || (total - 100.0).abs() > 0.011 {
        return Err(format!("percentages add up to {total:.2}, not 100"));
    }
    let listed: BTreeSet<String> = rows
        .iter()
        .filter_map(|r| r["server_id"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<&String> = servers.difference(&listed).collect();
    if !missing.is_empty() {
        return Err(format!(
            "{missing:?} answered requests but are not in the stats"
        ));
    }
    Ok(format!(
        "percentages add up to {total:.2}; all {} servers listed ({} requests in total)",
        servers.len(),
        stats["total_requests"]
    ))
}

/// Errors from the app and from the load balancer come as JSON with a `code`.
async fn errors_are_json(probe: &mut Probe) -> Check {
    const NAME: &str = "errors";
    let cases: [(&str, String, Option<Value>, u16); 3] = [
        ("GET", app::paths::user("not-a-uuid"), None, 400),
        ("GET", "/no/such/path".into(), None, 404),
        ("DELETE", app::paths::STATS.into(), None, 405),
    ];
    let mut seen = Vec::new();
    for (method, path, body, want) in cases {
        let path = path.as_str();
        let answer = if method == "GET" {
            probe.get(path).await
        } else {
            probe.write(method, path, body.as_ref()).await
        };
        match answer {
            Ok(a) if a.status == want && error_code(&a).is_some() => {
                seen.push(format!("{want} {}", error_code(&a).unwrap_or_default()));
            }
            Ok(a) => {
                return Check::fail(
                    NAME,
                    format!(
                        "{method} {path} answered {} (expected {want}) with {}",
                        a.status,
                        if a.json.is_some() {
                            "JSON without error.code"
                        } else {
                            "a body that is not JSON"
                        }
                    ),
                );
            }
            Err(e) => return Check::fail(NAME, format!("{method} {path}: {e}")),
        }
    }
    Check::pass(NAME, format!("JSON error bodies: {}", seen.join(", ")))
}

fn error_code(a: &Answer) -> Option<String> {
    a.json
        .as_ref()
        .and_then(|j| j["error"]["code"].as_str().map(str::to_owned))
}
