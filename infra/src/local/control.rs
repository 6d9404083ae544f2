//! The supervisor's status report and the loopback port that serves it to `infra status`.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// The running stack, as `infra status --json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackReport {
    pub stack: String,
    pub url: String,
    pub supervisor_pid: u32,
    pub backends: Vec<BackendReport>,
}

/// One app instance behind the load balancer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendReport {
    pub server_id: String,
    /// Null while the instance is between a crash and its restart.
    pub pid: Option<u32>,
    pub port: u16,
    /// `up` (in rotation) or `down`.
    pub state: String,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    /// Requests the load balancer sent it.
    pub requests: u64,
    /// Times the supervisor restarted it after it exited.
    pub restarts: u32,
    pub last_error: Option<String>,
}

impl StackReport {
    /// The human table `up` and `status` print.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "{} stack: {}  (supervisor pid {})\n\n{:<10} {:>8} {:>6}  {:<5} {:>4} {:>5} {:>9} {:>8}\n",
            self.stack,
            self.url,
            self.supervisor_pid,
            "SERVER_ID",
            "PID",
            "PORT",
            "STATE",
            "OK",
            "FAIL",
            "REQUESTS",
            "RESTARTS"
        );
        for b in &self.backends {
            out.push_str(&format!(
                "{:<10} {:>8} {:>6}  {:<5} {:>4} {:>5} {:>9} {:>8}\n",
                b.server_id,
                b.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                b.port,
                b.state,
                b.consecutive_successes,
                b.consecutive_failures,
                b.requests,
                b.restarts
            ));
        }
        out
    }
}

/// Serves the report produced by `report` to every connection, then closes it.
pub async fn serve(listener: TcpListener, report: Arc<dyn Fn() -> StackReport + Send + Sync>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let body = serde_json::to_vec(&report()).unwrap_or_default();
        tokio::spawn(async move {
            let _ = stream.write_all(&body).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Reads the report from the control port.
pub fn fetch(addr: SocketAddr) -> anyhow::Result<StackReport> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut body = Vec::new();
    stream.read_to_end(&mut body)?;
    Ok(serde_json::from_slice(&body)?)
}
