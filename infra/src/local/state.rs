//! `.stack/<stack>/state.json`: how `status` and `destroy` find a running supervisor.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::control::StackReport;

/// What a running supervisor publishes about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateFile {
    pub supervisor_pid: u32,
    pub url: String,
    /// Loopback port answering with the status report.
    pub control: SocketAddr,
    pub instances: u32,
    /// True once every instance passed its health checks (or the wait gave up).
    pub ready: bool,
}

/// The stack's working folder (logs, state file), ignored by git.
pub fn dir(root: &Path, stack: &str) -> PathBuf {
    root.join(".stack").join(stack)
}

fn file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

impl StateFile {
    /// Writes atomically (temp file + rename) so readers never see half a file.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join("state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("plain struct"))?;
        std::fs::rename(tmp, file(dir))
    }

    /// The state of a supervisor that is still alive; a stale file (crash, reboot) is `None`.
    ///
    /// A live pid is not enough after a reboot (it may be another program's now): the
    /// supervisor must also answer on its control port with the same pid.
    pub fn read_live(dir: &Path) -> Option<Self> {
        Self::read_live_with_report(dir).map(|(state, _)| state)
    }

    /// [`StateFile::read_live`], with the report the supervisor answered.
    pub fn read_live_with_report(dir: &Path) -> Option<(Self, StackReport)> {
        let text = std::fs::read(file(dir)).ok()?;
        let state: StateFile = serde_json::from_slice(&text).ok()?;
        if !pid_alive(state.supervisor_pid) {
            return None;
        }
        let report = super::control::fetch(state.control).ok()?;
        (report.supervisor_pid == state.supervisor_pid).then_some((state, report))
    }

    pub fn remove(dir: &Path) {
        let _ = std::fs::remove_file(file(dir));
    }
}

/// Whether a process with this pid exists (and is not a zombie we could reap).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 is the state; `Z` is a zombie, already dead.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}
