//! The supervisor's loopback control port: the status report for `infra status`, rolling restarts for `infra restart`, blue/green for `infra rollout`.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// The running stack, as `infra status --json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackReport {
    pub stack: String,
    /// Where clients go: the HTTPS entry when there is one, else the HTTP entry.
    pub url: String,
    /// The HTTPS entry's certificate file (PEM), to trust for `url`.
    #[serde(default)]
    pub certificate: Option<String>,
    pub supervisor_pid: u32,
    /// Bytes on disk of the stack's database, when it is PostgreSQL.
    #[serde(default)]
    pub database_bytes: Option<u64>,
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
        if let Some(cert) = &self.certificate {
            out.insert_str(
                out.find("\n\n").unwrap_or(out.len()),
                &format!("\ncertificate: {cert}  (HTTP redirects to HTTPS)"),
            );
        }
        if let Some(bytes) = self.database_bytes {
            out.insert_str(
                out.find("\n\n").unwrap_or(out.len()),
                &format!("\ndatabase: {:.1} MB on disk", bytes as f64 / 1e6),
            );
        }
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

/// A blue/green rollout of a new app build (`infra rollout`).
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRequest {
    /// The new `app` binary (absolute path).
    pub binary: String,
    /// How long each new instance may take to answer 200 on the health path.
    pub health_timeout_seconds: u64,
    /// How long the new instances' 5xx rate is watched after the switch.
    pub watch_seconds: u64,
    /// Rolls back when more than this share (in percent) of their answers are 5xx.
    pub max_error_percent: f64,
}

/// What a client of the control port asks for: one line of text.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `status`: the report.
    Status,
    /// `restart [server_id]`: a rolling restart of every instance, or of one; answered with the
    /// report once the last one is back in rotation.
    Restart(Option<String>),
    /// `rollout <health timeout s> <watch s> <max error percent> <binary path>`: answered once the new
    /// build serves alone, or with the failed check once traffic is back on the old one.
    Rollout(RolloutRequest),
}

impl Command {
    fn parse(line: &str) -> Result<Command, String> {
        if let Some(rest) = line.strip_prefix("rollout ") {
            return parse_rollout(rest).ok_or_else(|| format!("bad rollout command {line:?}"));
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("status"), None, _) => Ok(Command::Status),
            (Some("restart"), only, None) => Ok(Command::Restart(only.map(str::to_owned))),
            _ => Err(format!("unknown command {line:?}")),
        }
    }

    fn line(&self) -> String {
        match self {
            Command::Status => "status\n".to_owned(),
            Command::Restart(None) => "restart\n".to_owned(),
            Command::Restart(Some(id)) => format!("restart {id}\n"),
            Command::Rollout(r) => format!(
                "rollout {} {} {} {}\n",
                r.health_timeout_seconds, r.watch_seconds, r.max_error_percent, r.binary
            ),
        }
    }
}

/// The path comes last and takes the rest of the line, so it may contain spaces.
fn parse_rollout(rest: &str) -> Option<Command> {
    let (health, rest) = rest.trim_start().split_once(' ')?;
    let (watch, rest) = rest.trim_start().split_once(' ')?;
    let (percent, binary) = rest.trim_start().split_once(' ')?;
    let binary = binary.trim_end_matches(['\r', '\n']);
    let max_error_percent: f64 = percent.parse().ok()?;
    (!binary.is_empty() && max_error_percent.is_finite()).then(|| {
        Some(Command::Rollout(RolloutRequest {
            binary: binary.to_owned(),
            health_timeout_seconds: health.parse().ok()?,
            watch_seconds: watch.parse().ok()?,
            max_error_percent,
        }))
    })?
}

/// Answers one command; `Err` carries a message for the client.
pub type Handler = Arc<
    dyn Fn(Command) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, String>> + Send>>
        + Send
        + Sync,
>;

/// Serves the control port: one command line per connection, answered with one JSON document
/// (`{"error": "..."}` when it fails), then the connection closes.
pub async fn serve(listener: TcpListener, handler: Handler) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let read = tokio::time::timeout(
                Duration::from_secs(5),
                BufReader::new(read.take(4096)).read_line(&mut line),
            )
            .await;
            let answer = match read {
                Ok(Ok(_)) => match Command::parse(&line) {
                    Ok(command) => handler(command).await,
                    Err(e) => Err(e),
                },
                _ => Err("no command".to_owned()),
            };
            let body = match answer {
                Ok(v) => v,
                Err(e) => serde_json::json!({ "error": e }),
            };
            let _ = write
                .write_all(&serde_json::to_vec(&body).unwrap_or_default())
                .await;
            let _ = write.shutdown().await;
        });
    }
}

/// Sends one command and reads the answer, waiting at most `timeout` for it.
pub fn request(
    addr: SocketAddr,
    command: &Command,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(command.line().as_bytes())?;
    let mut body = Vec::new();
    stream.read_to_end(&mut body)?;
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    if let Some(e) = answer.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("{e}");
    }
    Ok(answer)
}

/// Reads the report from the control port.
pub fn fetch(addr: SocketAddr) -> anyhow::Result<StackReport> {
    let answer = request(addr, &Command::Status, Duration::from_secs(5))?;
    Ok(serde_json::from_value(answer)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_their_line() {
        let rollout = Command::Rollout(RolloutRequest {
            binary: "/tmp/a build/app".to_owned(),
            health_timeout_seconds: 30,
            watch_seconds: 10,
            max_error_percent: 1.5,
        });
        for command in [
            Command::Status,
            Command::Restart(None),
            Command::Restart(Some("local-2".to_owned())),
            rollout,
        ] {
            assert_eq!(Command::parse(&command.line()), Ok(command));
        }
        assert!(Command::parse("rollout 30 ten 1 /bin/app\n").is_err());
        assert!(Command::parse("rollout 30 10 1\n").is_err());
    }
}
