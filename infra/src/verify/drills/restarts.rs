//! The drills that stop instances: kill -9, rolling restarts through the supervisor, and SIGTERM from outside it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::super::load::Mix;
use super::super::options::Options;
use super::harness::{LogStore, Running, second_instance, wait_all_up};
use super::result::{DrillResult, tally};
use crate::config::StackConfig;
use crate::local::{self, ControlCommand};

/// kill -9 of one instance under load: the load balancer must hide it from readers, and the
/// request log must get every row the instance answered, once: its spool is replayed when the
/// supervisor restarts it. A write in flight at the kill can only fail (it may have been
/// stored, so it is never replayed), and answers 502.
pub(super) async fn kill_9(
    root: &Path,
    cfg: &StackConfig,
    opts: &Options,
    log: &LogStore,
    mix: Mix,
) -> anyhow::Result<DrillResult> {
    let running = Running::start(root, cfg, opts, mix, Duration::from_secs(6)).await?;
    let since = running.since;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let victim = second_instance(root, cfg)?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(victim.1 as libc::pid_t, libc::SIGKILL) };
    // The load runs its course: the rest of its 6 s.
    let outcomes = running.task.await??;
    wait_all_up(root, cfg).await?;
    let lost = log.missing(&outcomes, since).await?;
    let duplicates = log.duplicates(&outcomes, since).await?;
    let (name, goal) = match mix {
        Mix::Reads => (
            "kill -9 one instance, reads",
            "0 failed requests, 0 lost and 0 duplicate log rows",
        ),
        Mix::ReadsAndWrites => (
            "kill -9 one instance, writes",
            "only writes in flight at the kill fail (502); 0 lost and 0 duplicate log rows",
        ),
    };
    let mut r = tally(name, mix, &outcomes, lost, goal);
    let in_flight_only = r.failures.keys().all(|k| k.starts_with("502"));
    r.passed = lost == 0
        && duplicates == 0
        && match mix {
            Mix::Reads => r.failed == 0,
            Mix::ReadsAndWrites => in_flight_only,
        };
    r.note = format!(
        "killed {} (pid {}); its rows came back from its spool when it restarted; {duplicates} written twice",
        victim.0, victim.1
    );
    Ok(r)
}

/// Every instance restarted in turn (out of rotation, SIGTERM, started, back in rotation)
/// while the load runs.
pub(super) async fn rolling_restart(
    root: &Path,
    cfg: &StackConfig,
    opts: &Options,
    log: &LogStore,
    mix: Mix,
) -> anyhow::Result<DrillResult> {
    let running = Running::start(root, cfg, opts, mix, Duration::from_secs(120)).await?;
    let since = running.since;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let control = local::control_address(root, cfg)?;
    let restarted = tokio::task::spawn_blocking(move || {
        local::control_request(
            control,
            &ControlCommand::Restart(None),
            Duration::from_secs(110),
        )
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = running.finish().await?;
    restarted.context("the rolling restart failed")?;
    let lost = log.missing(&outcomes, since).await?;
    let name = match mix {
        Mix::Reads => "rolling restart, reads",
        Mix::ReadsAndWrites => "rolling restart, writes",
    };
    let mut r = tally(name, mix, &outcomes, lost, "0 failed requests, 0 lost rows");
    r.passed = r.failed == 0 && r.lost_log_rows == 0;
    r.note = format!("{} instances, one at a time", cfg.droplet_count());
    Ok(r)
}

/// How long an instance may take from its SIGTERM to being back in rotation.
const BACK_WITHIN: Duration = Duration::from_secs(60);

/// SIGTERM to each instance in turn, by pid, as `systemctl stop`, an operator's `kill` or the
/// OOM killer's polite stage would send it: never through the supervisor, which would take
/// the instance out of rotation first. The instance's drain alone must cover the load
/// balancer's time to notice, and the supervisor must start it again at once.
pub(super) async fn outside_sigterm_roll(
    root: &Path,
    cfg: &StackConfig,
    opts: &Options,
    log: &LogStore,
) -> anyhow::Result<DrillResult> {
    let mix = Mix::ReadsAndWrites;
    let running = Running::start(root, cfg, opts, mix, Duration::from_secs(180)).await?;
    let since = running.since;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut back_after = Vec::new();
    let count = local::fetch_report(root, cfg)?.backends.len();
    for i in 0..count {
        wait_all_up(root, cfg).await?;
        let backend = local::fetch_report(root, cfg)?.backends.swap_remove(i);
        let pid = backend.pid.context("an instance without a pid")?;
        let signalled = Instant::now();
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        loop {
            let now = local::fetch_report(root, cfg)?.backends.swap_remove(i);
            if now.state == "up" && now.pid.is_some_and(|p| p != pid) {
                break;
            }
            anyhow::ensure!(
                signalled.elapsed() < BACK_WITHIN,
                "{} not back in rotation {BACK_WITHIN:?} after its SIGTERM",
                backend.server_id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        back_after.push(format!(
            "{} {:.1} s",
            backend.server_id,
            signalled.elapsed().as_secs_f64()
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = running.finish().await?;
    let lost = log.missing(&outcomes, since).await?;
    let goal = "0 failed requests, 0 lost rows";
    let mut r = tally("outside SIGTERM roll", mix, &outcomes, lost, goal);
    r.passed = r.failed == 0 && r.lost_log_rows == 0;
    r.note = format!(
        "SIGTERM by pid, not through the supervisor; drain {} s; from the signal to back in rotation: {}",
        crate::deploy::Deploy::of(cfg).drain_seconds(),
        back_after.join(", ")
    );
    Ok(r)
}
