//! An SSH port forward to a droplet's app port, so the gate can talk to a droplet that only the load balancer may reach.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// How long one tunnel may take to come up (the SSH connection and authentication).
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// `ssh -N -L 127.0.0.1:<local>:127.0.0.1:<port> user@host`, killed when dropped.
pub struct Tunnel {
    child: Child,
    /// The local end: `http://127.0.0.1:<local>` reaches the droplet's app.
    pub local: SocketAddr,
}

impl Tunnel {
    /// Opens the forward and waits until its local end accepts connections.
    ///
    /// `BatchMode` makes a missing key fail instead of prompting; a new droplet's host key is
    /// accepted on first use and kept in `known_hosts` (`accept-new`), as `doctl compute ssh`
    /// does.
    pub fn open(ssh: &str, user: &str, host: &str, port: u16) -> anyhow::Result<Tunnel> {
        let local = free_local_port()?;
        let forward = format!("127.0.0.1:{}:127.0.0.1:{port}", local.port());
        let target = format!("{user}@{host}");
        let child = Command::new(ssh)
            .args([
                "-N",
                "-o",
                "BatchMode=yes",
                "-o",
                "ExitOnForwardFailure=yes",
            ])
            .args(["-o", "StrictHostKeyChecking=accept-new"])
            .args(["-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5"])
            .args(["-L", &forward, &target])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {ssh} (OpenSSH client)"))?;
        let mut tunnel = Tunnel { child, local };
        tunnel.wait_open(&target)?;
        Ok(tunnel)
    }

    /// Whether ssh is still running (a forward dies with its connection).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn wait_open(&mut self, target: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + OPEN_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    use std::io::Read as _;
                    let _ = pipe.read_to_string(&mut stderr);
                }
                bail!(
                    "ssh to {target} exited ({status}): {}",
                    stderr.trim().lines().last().unwrap_or("no message")
                );
            }
            if TcpStream::connect_timeout(&self.local, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("ssh to {target} did not open its forward within {OPEN_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_local_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    Ok(listener.local_addr()?)
}
