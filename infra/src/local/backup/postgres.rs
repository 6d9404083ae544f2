//! PostgreSQL: `pg_dump --format=custom` of the stack's database, and `pg_restore` into a fresh database swapped in when complete.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use super::file::{Progress, Restored, beside, publish_backup, remove_if_present};
use super::pg_url::PgUrl;

/// The server's maintenance database, where databases are created, dropped and renamed.
const MAINTENANCE: &str = "postgres";

/// Dumps the stack's database to `out` in pg_dump's custom format (compressed, restorable
/// table by table and in parallel). pg_dump reads one snapshot, so the stack may keep running.
pub fn backup(url: &PgUrl, out: &Path) -> anyhow::Result<()> {
    let partial = beside(out, ".partial");
    remove_if_present(&partial)?;
    let shown = url.shown(url.database());
    let progress = Progress::start(
        &format!("backing up {shown} to {}", out.display()),
        Some(partial.clone()),
    );
    let mut command = tool("pg_dump", url);
    command
        .arg("--format=custom")
        .arg("--verbose")
        .arg(format!("--file={}", partial.display()))
        .arg(format!("--dbname={}", url.conninfo(url.database())));
    let dumped = run_tool(command, &progress.step(), dump_step);
    if let Err(e) = dumped {
        let _ = remove_if_present(&partial);
        return Err(e.context(format!("pg_dump of {shown} failed")));
    }
    publish_backup(&partial, out, progress)
}

/// Restores `from` as the stack's database: into a new database first, which replaces the
/// stack's (created when missing) only once the whole dump is in, so a failed restore leaves
/// things as they were. A database that holds tables is replaced only with `force`.
pub fn restore(
    runtime: &tokio::runtime::Runtime,
    url: &PgUrl,
    from: &Path,
    force: bool,
) -> anyhow::Result<Restored> {
    let tables = list_table_data(url, from)?;
    let target = url.database();
    let shown = url.shown(target);
    let scratch = format!("rustlb_restore_{}", std::process::id());
    runtime.block_on(async {
        let admin = connect(url, MAINTENANCE).await?;
        if let Some(found) = database_tables(url, &admin, target).await?
            && found > 0
            && !force
        {
            bail!(
                "{shown} is not empty ({found} tables): restoring would replace it. Pass --force to replace it (back it up first with `infra backup`), or point rustlb:databaseUrl at another database"
            );
        }
        sql(&admin, format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&scratch))).await?;
        sql(&admin, format!("CREATE DATABASE {}", ident(&scratch)))
            .await
            .with_context(|| format!("creating a database to restore into on {shown} (the role needs CREATEDB)"))?;
        let _ = admin.close().await;
        Ok(())
    })?;
    let progress = Progress::start(&format!("restoring {shown} from {}", from.display()), None);
    let restored = run_restore(url, from, &scratch, tables, &progress);
    runtime.block_on(async {
        let admin = connect(url, MAINTENANCE).await?;
        let swapped = match restored {
            Ok(()) => swap_in(&admin, &scratch, target).await,
            Err(e) => Err(e),
        };
        if swapped.is_err() {
            let _ = sql(
                &admin,
                format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&scratch)),
            )
            .await;
        }
        let _ = admin.close().await;
        swapped.with_context(|| format!("restoring {shown} from {}", from.display()))
    })?;
    progress.finish();
    runtime.block_on(count_rows(url, target))
}

/// pg_restore reads the backup's table of contents before anything changes: a file that is
/// not a dump is refused here. Returns how many tables' data it holds, for the progress line.
fn list_table_data(url: &PgUrl, from: &Path) -> anyhow::Result<usize> {
    if !from.is_file() {
        bail!("no backup at {}", from.display());
    }
    let out = tool("pg_restore", url)
        .arg("--list")
        .arg(from)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| missing_tool("pg_restore", e))?;
    if !out.status.success() {
        bail!(
            "{} is not a pg_dump custom-format backup (an `infra backup` of a PostgreSQL stack ends in .pgdump): {}",
            from.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with(';') && l.contains(" TABLE DATA "))
        .count())
}

fn run_restore(
    url: &PgUrl,
    from: &Path,
    scratch: &str,
    tables: usize,
    progress: &Progress,
) -> anyhow::Result<()> {
    // Parallel jobs load tables and build indexes side by side; more than the cores only queue.
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let mut command = tool("pg_restore", url);
    command
        .arg("--verbose")
        .arg("--exit-on-error")
        // The restoring role owns what it restores: the role of rustlb:databaseUrl, the one
        // that migrates and maintains the tables.
        .arg("--no-owner")
        .arg(format!("--jobs={jobs}"))
        .arg(format!("--dbname={}", url.conninfo(scratch)))
        .arg(from);
    let done = Arc::new(Mutex::new(0usize));
    let step = progress.step();
    run_tool(command, &step, move |line| {
        restore_step(line, &done, tables)
    })
    .context("pg_restore failed")
}

/// Drops the old database, if any, and gives the restored one its name. Autovacuum may have
/// just connected to the new database, which blocks a rename: its sessions are ended and
/// the rename tried again.
async fn swap_in(admin: &DatabaseConnection, scratch: &str, target: &str) -> anyhow::Result<()> {
    sql(
        admin,
        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(target)),
    )
    .await?;
    let mut last = None;
    for _ in 0..50 {
        sql(
            admin,
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {}",
                literal(scratch)
            ),
        )
        .await?;
        match sql(
            admin,
            format!(
                "ALTER DATABASE {} RENAME TO {}",
                ident(scratch),
                ident(target)
            ),
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.expect("tried at least once")).context("renaming the restored database")
}

/// Tables in the database's own schemas; `None` when the database does not exist.
async fn database_tables(
    url: &PgUrl,
    admin: &DatabaseConnection,
    database: &str,
) -> anyhow::Result<Option<i64>> {
    let exists = query_i64(
        admin,
        format!(
            "SELECT count(*) FROM pg_database WHERE datname = {}",
            literal(database)
        ),
    )
    .await?;
    if exists == 0 {
        return Ok(None);
    }
    let db = connect(url, database).await?;
    let tables = query_i64(
        &db,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') \
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg_toast%'"
            .to_owned(),
    )
    .await;
    let _ = db.close().await;
    tables.map(Some)
}

async fn count_rows(url: &PgUrl, database: &str) -> anyhow::Result<Restored> {
    let db = connect(url, database).await?;
    let restored = Restored {
        users: query_i64(&db, "SELECT count(*) FROM users".to_owned()).await?,
        log_rows: query_i64(&db, "SELECT count(*) FROM requests_log".to_owned()).await?,
    };
    let _ = db.close().await;
    Ok(restored)
}

async fn connect(url: &PgUrl, database: &str) -> anyhow::Result<DatabaseConnection> {
    Ok(app::connect_database(&url.app_url(database)).await?)
}

async fn sql(db: &DatabaseConnection, sql: String) -> anyhow::Result<()> {
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    Ok(())
}

async fn query_i64(db: &DatabaseConnection, sql: String) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .context("no row")?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A PostgreSQL client tool with the password in its environment only: never on its command
/// line, where `ps` would show it.
fn tool(name: &str, url: &PgUrl) -> Command {
    let mut command = Command::new(name);
    if let Some(password) = url.password() {
        command.env("PGPASSWORD", password);
    }
    if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
        command.env("PGCONNECT_TIMEOUT", "10");
    }
    command
}

fn missing_tool(name: &str, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "{name} is not installed (or not on PATH): install the PostgreSQL client tools, e.g. `apt-get install postgresql-client`"
        )
    } else {
        anyhow::anyhow!("starting {name}: {e}")
    }
}

/// Runs a tool with `--verbose`, turning its stderr into the progress step and keeping the
/// lines that explain a failure for the error.
fn run_tool(
    mut command: Command,
    step: &Arc<Mutex<String>>,
    mut describe: impl FnMut(&str) -> Option<String>,
) -> anyhow::Result<()> {
    let name = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| missing_tool(&name, e))?;
    let mut explained = Vec::new();
    let mut tail = std::collections::VecDeque::new();
    for line in BufReader::new(child.stderr.take().expect("piped")).lines() {
        let line = line.unwrap_or_default();
        if let Some(now) = describe(&line)
            && let Ok(mut s) = step.lock()
        {
            *s = now;
        }
        if [": error:", ": detail:", ": hint:", ": warning:"]
            .iter()
            .any(|tag| line.contains(tag))
        {
            explained.push(line.clone());
        }
        tail.push_back(line);
        if tail.len() > 5 {
            tail.pop_front();
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {name}"))?;
    if status.success() {
        return Ok(());
    }
    let lines: Vec<String> = if explained.is_empty() {
        tail.into()
    } else {
        explained
    };
    bail!("{name} exited with {status}:\n  {}", lines.join("\n  "))
}

/// pg_dump's verbose line for the table it is copying.
fn dump_step(line: &str) -> Option<String> {
    let table = line.split("dumping contents of table ").nth(1)?;
    Some(format!("table {}", table.trim_matches('"')))
}

/// pg_restore's verbose lines, as tables loaded of all, then the indexes and constraints.
fn restore_step(line: &str, done: &Mutex<usize>, tables: usize) -> Option<String> {
    let mut done = done.lock().ok()?;
    if line.contains("finished item") && line.contains(" TABLE DATA ") {
        *done += 1;
        return Some(format!("{}/{tables} tables loaded", *done));
    }
    let what = line.split("launching item ").nth(1)?;
    let kind = what.split_whitespace().nth(1)?;
    (kind != "TABLE").then(|| {
        format!(
            "{}/{tables} tables loaded, building {}",
            *done,
            kind.to_lowercase()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_follows_the_tools_verbose_lines() {
        assert_eq!(
            dump_step("pg_dump: dumping contents of table \"public.users\"").as_deref(),
            Some("table public.users")
        );
        let done = Mutex::new(0);
        assert_eq!(
            restore_step("pg_restore: finished item 3372 TABLE DATA users", &done, 9).as_deref(),
            Some("1/9 tables loaded")
        );
        assert_eq!(
            restore_step(
                "pg_restore: launching item 3380 INDEX idx_requests_log_created_at",
                &done,
                9
            )
            .as_deref(),
            Some("1/9 tables loaded, building index")
        );
    }

    #[test]
    fn names_are_quoted_for_sql() {
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(literal("o'k"), "'o''k'");
    }
}
