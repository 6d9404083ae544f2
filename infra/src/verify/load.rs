//! Bounded load for the drills: a few clients sending reads and writes until a deadline, recording every outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Mutex;

/// What the clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// GET /server-info only.
    Reads,
    /// Alternating GET /server-info and POST /api/users.
    ReadsAndWrites,
}

/// One request's fate.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When it was sent, from the start of the load.
    pub at: Duration,
    pub latency: Duration,
    pub write: bool,
    /// The status, or `None` when no response came (connection error, timeout).
    pub status: Option<u16>,
    /// `X-Request-Id` of the answer: the key of its `requests_log` row.
    pub request_id: Option<String>,
    /// Error code of a JSON error body.
    pub code: Option<String>,
    /// True when an instance answered (it carries `X-Server-Id`), so it owes a log row; the
    /// load balancer's own errors name no server.
    pub from_instance: bool,
}

impl Outcome {
    /// A response the client could use: 2xx.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Load settings; every run is bounded in time and in count.
#[derive(Debug, Clone)]
pub struct Load {
    pub url: String,
    /// A PEM certificate to trust for an `https://` URL.
    pub root_certificate: Option<std::path::PathBuf>,
    pub api_key: Option<String>,
    pub clients: usize,
    pub mix: Mix,
    pub duration: Duration,
    /// Upper bound on requests, whatever the duration.
    pub max_requests: u64,
    /// Pause between one client's requests.
    pub pace: Duration,
    /// Set to end the load before its duration.
    pub stop: Arc<AtomicBool>,
}

/// Runs the load until its deadline (or request bound) and returns every outcome in send order.
pub async fn run(load: Load) -> anyhow::Result<Vec<Outcome>> {
    let client =
        super::options::client_builder(Duration::from_secs(10), load.root_certificate.as_deref())?
            .pool_max_idle_per_host(load.clients)
            .build()?;
    let start = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for client_no in 0..load.clients {
        let (client, load, sent, outcomes) =
            (client.clone(), load.clone(), sent.clone(), outcomes.clone());
        tasks.spawn(async move {
            let mut turn = client_no;
            while start.elapsed() < load.duration
                && !load.stop.load(Ordering::Relaxed)
                && sent.fetch_add(1, Ordering::Relaxed) < load.max_requests
            {
                turn += 1;
                let write = load.mix == Mix::ReadsAndWrites && turn % 2 == 0;
                let outcome = one(&client, &load, write, start).await;
                outcomes.lock().await.push(outcome);
                tokio::time::sleep(load.pace).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut all = std::mem::take(&mut *outcomes.lock().await);
    all.sort_by_key(|o| o.at);
    Ok(all)
}

async fn one(client: &reqwest::Client, load: &Load, write: bool, start: Instant) -> Outcome {
    let at = start.elapsed();
    let req = if write {
        let email = format!("drill-{}@rustlb.invalid", uuid::Uuid::now_v7().simple());
        let mut r = client
            .post(format!("{}/api/users", load.url))
            .json(&json!({"name": "drill", "email": email}));
        if let Some(key) = &load.api_key {
            r = r.bearer_auth(key);
        }
        r
    } else {
        client.get(format!("{}/server-info", load.url))
    };
    let sent = Instant::now();
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let request_id = resp
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let from_instance = resp.headers().contains_key("x-server-id");
            let body = resp.bytes().await.unwrap_or_default();
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|j| j["error"]["code"].as_str().map(str::to_owned));
            Outcome {
                at,
                latency: sent.elapsed(),
                write,
                status: Some(status),
                request_id,
                code,
                from_instance,
            }
        }
        Err(_) => Outcome {
            at,
            latency: sent.elapsed(),
            write,
            status: None,
            request_id: None,
            code: None,
            from_instance: false,
        },
    }
}
