//! SQLite: an online copy with `VACUUM INTO` through the app's own connection, and a restore that swaps the file in.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use super::file::{
    Progress, Restored, beside, publish, publish_backup, remove_if_present, size_of,
};

/// The database file of a `sqlite:` URL; a relative path means the repository root, as the
/// supervisor reads it.
pub fn database_path(root: &Path, url: &str) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(url.starts_with("sqlite:"), "not a sqlite: URL");
    let path = app::sqlite_file(url)
        .context("an in-memory SQLite database has nothing to back up or restore")?;
    Ok(root.join(path))
}

/// The app's own connection type (WAL, busy timeout), so the copy waits for the writer
/// instead of failing.
async fn connect(path: &Path) -> anyhow::Result<DatabaseConnection> {
    Ok(app::connect_database(&format!("sqlite://{}", path.display())).await?)
}

async fn execute(db: &DatabaseConnection, sql: String) -> anyhow::Result<()> {
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    Ok(())
}

async fn query_i64(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await?
        .context("no row")?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Writes a consistent copy of the live database to `out`. `VACUUM INTO` reads one snapshot
/// in a read transaction, so the instances keep writing meanwhile, and the copy is compact.
pub fn backup(runtime: &tokio::runtime::Runtime, db: &Path, out: &Path) -> anyhow::Result<()> {
    if !db.is_file() {
        bail!(
            "no SQLite database at {}: nothing to back up (has the stack ever run with this rustlb:databaseUrl?)",
            db.display()
        );
    }
    let partial = beside(out, ".partial");
    remove_if_present(&partial)?;
    let progress = Progress::start(
        &format!("backing up {} to {}", db.display(), out.display()),
        Some(partial.clone()),
    );
    runtime
        .block_on(async {
            let conn = connect(db).await?;
            let copied = execute(
                &conn,
                format!("VACUUM INTO {}", literal(&partial.display().to_string())),
            )
            .await;
            let _ = conn.close().await;
            copied
        })
        .with_context(|| format!("copying {} with VACUUM INTO", db.display()))?;
    publish_backup(&partial, out, progress)
}

/// Puts the backup `from` in place of the database file `db` (the stack is stopped). The
/// copy is checked before it replaces anything, and a crash leaves the old file or the new.
pub fn restore(
    runtime: &tokio::runtime::Runtime,
    from: &Path,
    db: &Path,
    force: bool,
) -> anyhow::Result<Restored> {
    check_backup_file(from)?;
    if size_of(db) > 0 && !force {
        bail!(
            "{} exists and is not empty: restoring would replace it. Pass --force to replace it (back it up first with `infra backup`), or remove it",
            db.display()
        );
    }
    if let Some(dir) = db.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Ends in `-restoring` so `*.sqlite-*` in .gitignore covers it.
    let tmp = beside(db, "-restoring");
    for stale in [tmp.clone(), beside(&tmp, "-wal"), beside(&tmp, "-shm")] {
        remove_if_present(&stale)?;
    }
    let progress = Progress::start(
        &format!("restoring {} from {}", db.display(), from.display()),
        Some(tmp.clone()),
    );
    std::fs::copy(from, &tmp)
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    let restored = runtime.block_on(check_copy(&tmp)).with_context(|| {
        format!(
            "{} is not a usable backup of the app's database",
            from.display()
        )
    });
    let restored = match restored {
        Ok(r) => r,
        Err(e) => {
            let _ = remove_if_present(&tmp);
            return Err(e);
        }
    };
    for stale in [beside(&tmp, "-wal"), beside(&tmp, "-shm")] {
        remove_if_present(&stale)?;
    }
    // The old database's WAL would be replayed onto the new file: it goes before the swap.
    for stale in [beside(db, "-wal"), beside(db, "-shm")] {
        remove_if_present(&stale)?;
    }
    publish(&tmp, db)?;
    progress.finish();
    Ok(restored)
}

/// A backup is a SQLite file: its header says so before anything is copied.
fn check_backup_file(from: &Path) -> anyhow::Result<()> {
    use std::io::Read;
    let mut header = [0u8; 16];
    std::fs::File::open(from)
        .and_then(|mut f| f.read_exact(&mut header))
        .with_context(|| format!("reading the backup {}", from.display()))?;
    if &header != b"SQLite format 3\0" {
        bail!(
            "{} is not a SQLite backup (an `infra backup` of a SQLite stack ends in .sqlite; a .pgdump is for a PostgreSQL stack)",
            from.display()
        );
    }
    Ok(())
}

/// Checks the copy's pages and that it is the app's database, counts what it holds, and
/// folds its WAL back in so the file alone is the whole database.
async fn check_copy(tmp: &Path) -> anyhow::Result<Restored> {
    let conn = connect(tmp).await?;
    let checked = async {
        let row = conn
            .query_one_raw(Statement::from_string(
                conn.get_database_backend(),
                "PRAGMA quick_check".to_owned(),
            ))
            .await?
            .context("PRAGMA quick_check answered nothing")?;
        let verdict: String = row.try_get_by_index(0)?;
        if verdict != "ok" {
            bail!("PRAGMA quick_check: {verdict}");
        }
        let restored = Restored {
            users: query_i64(&conn, "SELECT count(*) FROM users")
                .await
                .context("it has no users table")?,
            log_rows: query_i64(&conn, "SELECT count(*) FROM requests_log")
                .await
                .context("it has no requests_log table")?,
        };
        execute(&conn, "PRAGMA wal_checkpoint(TRUNCATE)".to_owned()).await?;
        Ok(restored)
    }
    .await;
    let _ = conn.close().await;
    checked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_mean_the_repository_root() {
        let root = Path::new("/repo");
        assert_eq!(
            database_path(root, "sqlite://data/local.sqlite?mode=rwc").unwrap(),
            Path::new("/repo/data/local.sqlite")
        );
        assert_eq!(
            database_path(root, "sqlite:///var/db/x.sqlite").unwrap(),
            Path::new("/var/db/x.sqlite")
        );
        assert_eq!(
            database_path(root, "sqlite:data/x.sqlite").unwrap(),
            Path::new("/repo/data/x.sqlite")
        );
        assert!(database_path(root, "sqlite::memory:").is_err());
    }
}
