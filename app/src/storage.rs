//! Whether this instance's local storage takes writes: the request-log spool's directory and,
//! on SQLite, the database file's.
//!
//! Checked by writing (and removing) one block, which is what fails on a full disk or a
//! read-only file system; looking at free space would miss the latter and quotas.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The bytes a probe writes: one file-system block, so a full disk refuses it.
const PROBE_BYTES: usize = 4096;
const PROBE_FILE: &str = ".health-probe";

/// The places this instance writes to on its own disk.
#[derive(Debug, Clone, Default)]
pub struct LocalStorage {
    places: Vec<(&'static str, PathBuf)>,
}

impl LocalStorage {
    /// `spool`: the request log's spool directory, if the log is on; `database_url`: the
    /// database, whose folder counts when it is a SQLite file.
    pub fn new(spool: Option<&Path>, database_url: &str) -> Self {
        let mut places = Vec::new();
        if let Some(spool) = spool {
            places.push(("request log spool", spool.to_owned()));
        }
        if let Some(folder) = sqlite_folder(database_url) {
            places.push(("SQLite database", folder));
        }
        Self { places }
    }

    /// What cannot be written, one line each (empty: all is well).
    pub fn problems(&self) -> Vec<String> {
        self.places
            .iter()
            .filter_map(|(what, dir)| {
                probe(dir)
                    .err()
                    .map(|err| format!("{what} ({}) cannot be written: {err}", dir.display()))
            })
            .collect()
    }
}

fn probe(dir: &Path) -> std::io::Result<()> {
    // Named for this process and this check: instances sharing a folder (the local stack's,
    // on one SQLite file) and checks running at once must not remove each other's file.
    static CHECKS: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(format!(
        "{PROBE_FILE}-{}-{}",
        std::process::id(),
        CHECKS.fetch_add(1, Ordering::Relaxed)
    ));
    let written =
        std::fs::File::create(&path).and_then(|mut file| file.write_all(&[0; PROBE_BYTES]));
    let removed = std::fs::remove_file(&path);
    written.and(removed)
}

/// The folder of a SQLite file URL (`sqlite://data/app.sqlite?mode=rwc` -> `data`); `None`
/// for PostgreSQL and in-memory databases.
fn sqlite_folder(url: &str) -> Option<PathBuf> {
    let parent = crate::configuration::sqlite_file(url)?.parent()?;
    Some(if parent.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        parent.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sqlite_folder_comes_from_the_url() {
        let folder = |url| sqlite_folder(url).map(|p| p.display().to_string());
        assert_eq!(
            folder("sqlite://data/app.sqlite?mode=rwc").as_deref(),
            Some("data")
        );
        assert_eq!(folder("sqlite:///tmp/x/app.db").as_deref(), Some("/tmp/x"));
        assert_eq!(folder("sqlite:app.db").as_deref(), Some("."));
        assert_eq!(folder("sqlite::memory:"), None);
        assert_eq!(folder("postgres://u@h/db"), None);
    }

    #[test]
    fn a_folder_that_cannot_be_written_is_a_problem_and_one_that_can_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let fine = LocalStorage::new(Some(dir.path()), "postgres://h/db");
        assert!(fine.problems().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the probe cleans up"
        );
        let gone = LocalStorage::new(Some(&dir.path().join("missing")), "postgres://h/db");
        let problems = gone.problems();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("request log spool ("),
            "{problems:?}"
        );
    }
}
