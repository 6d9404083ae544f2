//! Rollout drills: blue/green under reads and writes with exact accounting, for a good build, one that fails its health check and one that cannot write.
//!
//! The builds are this infra binary's `serve-app` behind small scripts that change one
//! setting, so the drills need no other build: the good one as the stack runs it, one on an
//! empty database it may not migrate (its `/health` reports pending migrations), and one whose
//! database is read-only (reads answer, `POST /api/users` fails).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use super::harness::{LogStore, Running};
use super::result::{DrillResult, tally};
use crate::config::StackConfig;
use crate::local::{self, ControlCommand, RolloutRequest};
use crate::verify::load::Mix;
use crate::verify::options::Options;

/// One rollout drill: the build and what the rollout must answer.
struct Case {
    name: &'static str,
    /// Settings the build changes, as environment variables.
    env: Vec<(&'static str, String)>,
    /// `None`: the rollout must succeed; else the check its refusal must name.
    refused_by: Option<&'static str>,
}

/// Runs the three rollout drills in turn; the stack ends on the good build's instances, so
/// they run after the other drills.
pub(super) async fn run(
    root: &Path,
    cfg: &StackConfig,
    opts: &Options,
    log: &LogStore,
) -> anyhow::Result<Vec<DrillResult>> {
    let dir = local::state_dir(root, &cfg.stack).join("drill-builds");
    std::fs::create_dir_all(&dir)?;
    let empty = dir.join("empty.sqlite");
    let _ = std::fs::remove_file(&empty);
    let cases = [
        Case {
            name: "rollout, build fails its health check",
            env: vec![
                (
                    "APP__DATABASE__URL",
                    format!("sqlite://{}?mode=rwc", empty.display()),
                ),
                ("APP__DATABASE__RUN_MIGRATIONS", "false".to_owned()),
            ],
            refused_by: Some("health check failed"),
        },
        Case {
            name: "rollout, build answers 5xx on POST /api/users",
            env: vec![("APP__DATABASE__URL", read_only(root, cfg.database_url()))],
            refused_by: Some("verify check failed"),
        },
        Case {
            name: "rollout, good build",
            env: Vec::new(),
            refused_by: None,
        },
    ];
    let mut results = Vec::new();
    for case in cases {
        let build = write_build(&dir, &case)?;
        results.push(one(root, cfg, opts, log, &case, &build).await?);
    }
    Ok(results)
}

async fn one(
    root: &Path,
    cfg: &StackConfig,
    opts: &Options,
    log: &LogStore,
    case: &Case,
    build: &Path,
) -> anyhow::Result<DrillResult> {
    let running = Running::start(
        root,
        cfg,
        opts,
        Mix::ReadsAndWrites,
        Duration::from_secs(120),
    )
    .await?;
    let since = running.since;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let request = RolloutRequest {
        binary: build.to_str().context("build path")?.to_owned(),
        health_timeout_seconds: 5,
        watch_seconds: 3,
        max_error_percent: 1.0,
    };
    let control = local::control_address(root, cfg)?;
    let answer = tokio::task::spawn_blocking(move || {
        local::control_request(
            control,
            &ControlCommand::Rollout(request),
            Duration::from_secs(150),
        )
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcomes = running.finish().await?;
    let lost = log.missing(&outcomes, since).await?;
    let goal = match case.refused_by {
        None => "rolled out; 0 failed requests, 0 lost rows".to_owned(),
        Some(check) => format!("refused ({check}); 0 failed requests, 0 lost rows"),
    };
    let mut r = tally(case.name, Mix::ReadsAndWrites, &outcomes, lost, &goal);
    let (as_expected, note) = match (&answer, case.refused_by) {
        (Ok(a), None) => (true, a["summary"].as_str().unwrap_or_default().to_owned()),
        (Err(e), Some(check)) => {
            let e = format!("{e:#}");
            (e.contains(check), first_clause(&e))
        }
        (Ok(_), Some(check)) => (false, format!("rolled out; expected a refusal by {check}")),
        (Err(e), None) => (false, format!("refused: {e:#}")),
    };
    r.passed = as_expected && r.failed == 0 && r.lost_log_rows == 0;
    r.note = note;
    Ok(r)
}

/// The refusal up to the check's detail, which can be long.
fn first_clause(e: &str) -> String {
    let e = e.split("; the old build keeps serving").next().unwrap_or(e);
    // The build's path is the drill's own scratch file.
    let e = e.split_once(" refused: ").map_or(e, |(_, check)| check);
    match e.char_indices().nth(240) {
        Some((i, _)) => format!("{}...", &e[..i]),
        None => e.to_owned(),
    }
}

/// The stack's database, read-only: SQLite opened with `mode=ro` (relative paths are the
/// repository root's, where the instances run); PostgreSQL sessions that default to
/// read-only transactions.
fn read_only(root: &Path, url: &str) -> String {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = rest.split('?').next().unwrap_or(rest);
        let path = if path.starts_with('/') {
            PathBuf::from(path)
        } else {
            root.join(path)
        };
        return format!("sqlite://{}?mode=ro", path.display());
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20default_transaction_read_only%3Don")
}

/// A script that runs this binary's `serve-app` with the case's settings; only the owner
/// may read it (a database URL may carry a password).
fn write_build(dir: &Path, case: &Case) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the infra binary")?;
    let name: String = case
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let path = dir.join(name);
    let mut script = String::from("#!/bin/sh\n");
    for (key, value) in &case.env {
        script.push_str(&format!("export {key}={}\n", sh_quote(value)));
    }
    let exe = exe
        .to_str()
        .context("the infra binary's path is not UTF-8")?;
    script.push_str(&format!("exec {} serve-app\n", sh_quote(exe)));
    std::fs::write(&path, script)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
    Ok(path)
}

/// `s` as one shell word, whatever it contains.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_only_database_is_the_stacks_own() {
        assert_eq!(
            read_only(Path::new("/repo"), "sqlite://data/local.sqlite?mode=rwc"),
            "sqlite:///repo/data/local.sqlite?mode=ro"
        );
        assert_eq!(
            read_only(
                Path::new("/repo"),
                "postgres://u@127.0.0.1:5432/app?sslmode=disable"
            ),
            "postgres://u@127.0.0.1:5432/app?sslmode=disable&options=-c%20default_transaction_read_only%3Don"
        );
    }

    #[test]
    fn settings_reach_the_build_as_single_shell_words() {
        assert_eq!(sh_quote("p'w d$x"), "'p'\\''w d$x'");
    }
}
