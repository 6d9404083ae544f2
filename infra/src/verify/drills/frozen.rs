//! The frozen instance drill: one instance stops (SIGSTOP) for a while under load, accepting connections and answering nothing, then goes on.

use std::path::Path;
use std::time::Duration;

use super::super::load::{Mix, Outcome};
use super::super::options::Options;
use super::harness::{LogStore, Running, second_instance, wait_all_up};
use super::result::{DrillResult, tally};
use crate::config::StackConfig;

/// How long the instance stays stopped.
const FREEZE: Duration = Duration::from_secs(8);

/// Sends SIGCONT on drop, so a drill that fails half-way never leaves an instance stopped.
struct Frozen(libc::pid_t);

impl Frozen {
    fn stop(pid: u32) -> Frozen {
        let pid = pid as libc::pid_t;
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        Frozen(pid)
    }

    /// Stops `pid` at a moment it holds no exclusive file lock, trying for up to 2 s. On
    /// SQLite every process shares one write lock (a POSIX lock): an instance frozen while it
    /// holds it stalls every writer in the cluster for as long as the freeze, which is
    /// SQLite's nature and says nothing about the load balancer, whose share this drill
    /// measures.
    async fn stop_unlocked(pid: u32) -> Frozen {
        for _ in 0..40 {
            let frozen = Frozen::stop(pid);
            if wait_stopped(pid).await && !holds_write_lock(pid) {
                return frozen;
            }
            drop(frozen);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Frozen::stop(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// Whether `pid` has stopped (state `T` in `/proc/<pid>/stat`), within 1 s.
async fn wait_stopped(pid: u32) -> bool {
    for _ in 0..100 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state follows the command name, which is in parentheses and may hold spaces.
        if stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Whether `pid` holds an exclusive POSIX lock (`/proc/locks`: `1: POSIX ADVISORY WRITE <pid> ...`).
fn holds_write_lock(pid: u32) -> bool {
    let pid = pid.to_string();
    std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&"POSIX")
                && fields.get(3) == Some(&"WRITE")
                && fields.get(4) == Some(&pid.as_str())
        })
}

/// How a write that waited out SQLite's busy timeout is counted.
const SQLITE_LOCK_WAIT: &str = "503 database_unavailable";

/// SIGSTOP of one instance for [`FREEZE`] under reads and writes, then SIGCONT: the others
/// must keep serving throughout (answers in every second of the freeze), the load balancer's
/// own answers may only be 504s for requests stuck at the frozen one, and every request an
/// instance answered must be logged (the frozen one's writer goes on after SIGCONT).
pub(super) async fn frozen_backend(
    root: &Path,
    cfg: &StackConfig,
    opts: &Options,
    log: &LogStore,
) -> anyhow::Result<DrillResult> {
    let mix = Mix::ReadsAndWrites;
    let running = Running::start(root, cfg, opts, mix, FREEZE + Duration::from_secs(6)).await?;
    let (since, started) = (running.since, running.started);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let victim = second_instance(root, cfg)?;
    let frozen = Frozen::stop_unlocked(victim.1).await;
    let frozen_at = started.elapsed();
    tokio::time::sleep(FREEZE).await;
    drop(frozen);
    let thawed_at = started.elapsed();
    let outcomes = running.task.await??;
    wait_all_up(root, cfg).await?;
    let lost = log.missing(&outcomes, since).await?;
    let goal = "the others answer in every second of the freeze; only 504s; 0 lost rows";
    let mut r = tally("frozen backend", mix, &outcomes, lost, goal);
    let per_second = answered_per_second(&outcomes, frozen_at, thawed_at);
    let quietest = per_second.iter().copied().min().unwrap_or(0);
    // SQLite has one write lock for every process: an instance frozen inside a write
    // transaction keeps it, and the others' writes wait out their busy timeout and answer a
    // fast 503 until it thaws. PostgreSQL locks rows, so there it must not happen.
    let sqlite = cfg.database_url().starts_with("sqlite");
    let lock_waits = r
        .failures
        .get(SQLITE_LOCK_WAIT)
        .copied()
        .filter(|_| sqlite)
        .unwrap_or(0);
    let only_timeouts = r
        .failures
        .keys()
        .all(|k| k.starts_with("504") || (sqlite && k == SQLITE_LOCK_WAIT));
    r.passed = quietest > 0 && only_timeouts && r.lost_log_rows == 0;
    let slowest = outcomes.iter().map(|o| o.latency).max().unwrap_or_default();
    r.note = format!(
        "SIGSTOP {} (pid {}) from {:.1} s to {:.1} s; answers per second of the freeze {per_second:?}; slowest request {} ms",
        victim.0,
        victim.1,
        frozen_at.as_secs_f64(),
        thawed_at.as_secs_f64(),
        slowest.as_millis()
    );
    if lock_waits > 0 {
        r.note.push_str(&format!(
            "; it froze holding SQLite's write lock: {lock_waits} writes elsewhere answered 503 until it thawed"
        ));
    }
    Ok(r)
}

/// Successful answers completed in each whole second between `from` and `to`.
fn answered_per_second(outcomes: &[Outcome], from: Duration, to: Duration) -> Vec<usize> {
    let seconds = (to - from).as_secs() as usize;
    let mut counts = vec![0; seconds];
    for o in outcomes.iter().filter(|o| o.ok()) {
        let done = o.at + o.latency;
        if done >= from && done < to {
            let s = ((done - from).as_secs()) as usize;
            if let Some(c) = counts.get_mut(s) {
                *c += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_in_the_second_they_completed() {
        let o = |at_ms: u64, latency_ms: u64, status: u16| Outcome {
            at: Duration::from_millis(at_ms),
            latency: Duration::from_millis(latency_ms),
            write: false,
            status: Some(status),
            request_id: None,
            code: None,
            from_instance: true,
        };
        let outcomes = [
            o(500, 100, 200),   // before the window
            o(900, 200, 200),   // completes in second 0
            o(1500, 4000, 200), // a stuck one, completes in second 4
            o(2100, 10, 504),   // not an answer
            o(2200, 10, 200),   // second 1
        ];
        let counts = answered_per_second(&outcomes, Duration::from_secs(1), Duration::from_secs(6));
        assert_eq!(counts, [1, 1, 0, 0, 1]);
    }
}
