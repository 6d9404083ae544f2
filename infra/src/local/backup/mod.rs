//! `infra backup` and `infra restore` of the local stack's database: pg_dump and pg_restore on PostgreSQL, `VACUUM INTO` and a file swap on SQLite.

mod file;
mod pg_url;
mod postgres;
mod sqlite;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};

use super::state::{self, StateFile};
use crate::config::StackConfig;
use file::Restored;
use pg_url::PgUrl;

/// The stack's database, by kind.
enum Database {
    Sqlite(PathBuf),
    Postgres(PgUrl),
}

impl Database {
    fn of(root: &Path, cfg: &StackConfig) -> anyhow::Result<Database> {
        let url = cfg.database_url();
        let db = if url.starts_with("sqlite:") {
            sqlite::database_path(root, url).map(Database::Sqlite)
        } else {
            PgUrl::parse(url).map(Database::Postgres)
        };
        db.with_context(|| format!("{}: rustlb:databaseUrl", cfg.source))
    }

    fn extension(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "pgdump",
        }
    }
}

/// Writes a backup of the stack's database, running or not, to `out` (default
/// `backups/<stack>-<UTC time>.<sqlite|pgdump>` under the repository root).
pub fn backup(root: &Path, cfg: &StackConfig, out: Option<PathBuf>) -> anyhow::Result<()> {
    let db = Database::of(root, cfg)?;
    let out = out.unwrap_or_else(|| {
        let at = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        root.join("backups")
            .join(format!("{}-{at}.{}", cfg.stack, db.extension()))
    });
    if out.exists() {
        bail!(
            "{} already exists: give another --out (a backup is never overwritten)",
            out.display()
        );
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match &db {
        Database::Sqlite(path) => sqlite::backup(&runtime()?, path, &out),
        Database::Postgres(url) => postgres::backup(url, &out),
    }
}

/// Restores the stack's database from `from`. The stack must be stopped: its instances would
/// otherwise keep writing to the database being replaced.
pub fn restore(root: &Path, cfg: &StackConfig, from: &Path, force: bool) -> anyhow::Result<()> {
    let db = Database::of(root, cfg)?;
    if let Some(running) = StateFile::read_live(&state::dir(root, &cfg.stack)) {
        bail!(
            "the {stack} stack is running (supervisor pid {pid}, {url}): a restore would replace the database under it. \
             Stop it first with `cargo run --release -p infra -- destroy --stack {stack}` (or Ctrl-C its `up`), restore, then start it again",
            stack = cfg.stack,
            pid = running.supervisor_pid,
            url = running.url,
        );
    }
    if !from.is_file() {
        bail!(
            "no backup at {}: give the file `infra backup` wrote (see backups/)",
            from.display()
        );
    }
    let started = Instant::now();
    let runtime = runtime()?;
    let (name, restored): (String, Restored) = match &db {
        Database::Sqlite(path) => (
            path.display().to_string(),
            sqlite::restore(&runtime, from, path, force)?,
        ),
        Database::Postgres(url) => (
            url.shown(url.database()),
            postgres::restore(&runtime, url, from, force)?,
        ),
    };
    println!(
        "restored {name} from {} in {:.1} s: {} users, {} requests_log rows",
        from.display(),
        started.elapsed().as_secs_f64(),
        restored.users,
        restored.log_rows
    );
    println!(
        "start the stack with `cargo run --release -p infra -- up --stack {}`",
        cfg.stack
    );
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
