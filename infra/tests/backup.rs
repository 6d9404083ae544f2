//! `infra backup` and `infra restore` through the real binary: a stack's users and request log survive losing the database, and restores that would do harm are refused.

mod stack;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use sea_orm::{Database, EntityTrait, QueryOrder};

/// A throwaway repository root with its own `Pulumi.yaml`, local stack file and free ports.
struct Sandbox {
    root: stack::Root,
}

impl std::ops::Deref for Sandbox {
    type Target = stack::Root;
    fn deref(&self) -> &stack::Root {
        &self.root
    }
}

impl Sandbox {
    fn new(database_url: &str) -> Sandbox {
        Sandbox {
            root: stack::Root::new(2, 2, database_url, ""),
        }
    }

    /// Runs `infra` and expects it to succeed; its stdout and stderr together.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.infra(args);
        let text = both(&out);
        assert!(out.status.success(), "infra {args:?} failed:\n{text}");
        text
    }

    /// Runs `infra` and expects a clear refusal: exit 1, an `error:` line, no panic.
    fn refused(&self, args: &[&str]) -> String {
        let out = self.infra(args);
        let text = both(&out);
        assert_eq!(out.status.code(), Some(1), "infra {args:?}:\n{text}");
        assert!(text.contains("error: "), "{text}");
        assert!(!text.contains("panicked"), "{text}");
        text
    }

    /// Starts the stack, creates `users` users (emails tagged `tag`) and as many reads through
    /// the load balancer, and waits until every answered request has its `requests_log` row.
    fn up_with_traffic(&self, db_url: &str, tag: &str, users: usize) {
        self.ok(&["up", "--stack", "local", "--detach"]);
        let logged = snapshot(db_url).1.len();
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{}", self.lb_port);
        for i in 0..users {
            let created = client
                .post(format!("{base}/api/users"))
                .json(&serde_json::json!({"name": format!("user {i}"), "email": format!("{tag}{i}@backup.test")}))
                .send()
                .unwrap();
            assert_eq!(created.status(), 201, "{:?}", created.text());
            let read = client.get(format!("{base}/server-info")).send().unwrap();
            assert_eq!(read.status(), 200);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while snapshot(db_url).1.len() < logged + 2 * users {
            assert!(Instant::now() < deadline, "request log rows never arrived");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn destroy(&self) {
        self.ok(&["destroy", "--stack", "local"]);
    }
}

fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

type Rows = (Vec<entity::users::Model>, Vec<entity::requests_log::Model>);

/// Every user and every request log row, whole, in a stable order.
fn snapshot(url: &str) -> Rows {
    block_on(async {
        let db = Database::connect(url).await.unwrap();
        let users = entity::users::Entity::find()
            .order_by_asc(entity::users::Column::Id)
            .all(&db)
            .await
            .unwrap();
        let log = entity::requests_log::Entity::find()
            .order_by_asc(entity::requests_log::Column::Id)
            .all(&db)
            .await
            .unwrap();
        let _ = db.close().await;
        (users, log)
    })
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The one file under `backups/`.
fn written_backup(root: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(root.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

#[test]
fn a_sqlite_stack_comes_back_whole_after_losing_its_database_file() {
    let sandbox = Sandbox::new("sqlite://data/local.sqlite?mode=rwc");
    let db_file = sandbox.root().join("data/local.sqlite");
    let url = format!("sqlite://{}", db_file.display());
    sandbox.up_with_traffic(&url, "a", 20);
    let before = snapshot(&url);

    // Online: the stack keeps running while the copy is made.
    let wrote = sandbox.ok(&["backup", "--stack", "local"]);
    let backup = written_backup(sandbox.root());
    let name = backup.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("local-") && name.ends_with(".sqlite"),
        "{name}"
    );
    assert!(wrote.contains("wrote ") && wrote.contains(&name), "{wrote}");

    let from = backup.to_str().unwrap();
    let running = sandbox.refused(&["restore", "--stack", "local", "--from", from, "--force"]);
    assert!(
        running.contains("is running") && running.contains("destroy"),
        "{running}"
    );
    sandbox.destroy();

    let over = sandbox.refused(&["restore", "--stack", "local", "--from", from]);
    assert!(
        over.contains("local.sqlite") && over.contains("--force"),
        "{over}"
    );

    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db_file.display()));
    }
    let restored = sandbox.ok(&["restore", "--stack", "local", "--from", from]);
    assert!(
        restored.contains(&format!("20 users, {} requests_log rows", before.1.len())),
        "{restored}"
    );
    assert_eq!(snapshot(&url), before, "every user and log row is back");

    // The restored file is the stack's database again.
    sandbox.up_with_traffic(&url, "b", 1);
    sandbox.destroy();
}

#[test]
fn a_backup_is_never_overwritten_and_a_wrong_file_is_refused() {
    let sandbox = Sandbox::new("sqlite://data/local.sqlite?mode=rwc");
    let missing = sandbox.refused(&["backup", "--stack", "local"]);
    assert!(missing.contains("no SQLite database at"), "{missing}");

    let not_a_backup = sandbox.root().join("notes.txt");
    std::fs::write(&not_a_backup, "hello, not a database").unwrap();
    let wrong = sandbox.refused(&[
        "restore",
        "--stack",
        "local",
        "--from",
        not_a_backup.to_str().unwrap(),
    ]);
    assert!(
        wrong.contains("notes.txt") && wrong.contains("not a SQLite backup"),
        "{wrong}"
    );

    let absent = sandbox.refused(&["restore", "--stack", "local", "--from", "nowhere.sqlite"]);
    assert!(absent.contains("no backup at nowhere.sqlite"), "{absent}");

    sandbox.up_with_traffic(
        &format!(
            "sqlite://{}",
            sandbox.root().join("data/local.sqlite").display()
        ),
        "a",
        1,
    );
    let out = not_a_backup.to_str().unwrap();
    let exists = sandbox.refused(&["backup", "--stack", "local", "--out", out]);
    assert!(exists.contains("already exists"), "{exists}");
    sandbox.destroy();
}

const SECRET: &str = "Backup-Secret-9f3a";

#[test]
fn a_postgresql_stack_comes_back_whole_after_its_database_is_dropped() {
    let Some(db) = stack::ScratchDatabase::create("backup") else {
        return;
    };
    let url = db.url(Some(SECRET));
    assert!(
        url.contains(SECRET),
        "the test needs a password in the URL: {url}"
    );
    let sandbox = Sandbox::new(&url);
    sandbox.up_with_traffic(&url, "a", 25);
    let before = snapshot(&url);
    let out = sandbox.root().join("drill.pgdump");
    let mut printed = sandbox.ok(&["backup", "--stack", "local", "--out", out.to_str().unwrap()]);
    assert!(
        printed.contains("wrote ") && printed.contains("drill.pgdump"),
        "{printed}"
    );
    sandbox.destroy();

    let from = out.to_str().unwrap();
    let over = sandbox.refused(&["restore", "--stack", "local", "--from", from]);
    assert!(
        over.contains(&format!("database \"{}\"", db.name)) && over.contains("--force"),
        "{over}"
    );
    printed.push_str(&over);

    db.sql(&format!("DROP DATABASE {} WITH (FORCE)", db.name));
    printed.push_str(&sandbox.ok(&["restore", "--stack", "local", "--from", from]));
    assert!(
        printed.contains(&format!("25 users, {} requests_log rows", before.1.len())),
        "{printed}"
    );
    assert_eq!(snapshot(&url), before, "every user and log row is back");

    // --force replaces a database that holds rows of its own.
    sandbox.up_with_traffic(&url, "b", 30);
    sandbox.destroy();
    printed.push_str(&sandbox.ok(&["restore", "--stack", "local", "--from", from, "--force"]));
    assert_eq!(
        snapshot(&url),
        before,
        "the forced restore is the backup, no more"
    );
    assert!(
        !printed.contains(SECRET),
        "the password was printed:\n{printed}"
    );
}

#[test]
fn a_postgresql_backup_or_restore_that_cannot_work_says_why() {
    let Some(db) = stack::ScratchDatabase::create("badrestore") else {
        return;
    };
    let sandbox = Sandbox::new(&db.url(Some(SECRET)));
    db.sql(&format!("DROP DATABASE {} WITH (FORCE)", db.name));
    let sqlite = sandbox.root().join("local.sqlite");
    std::fs::write(&sqlite, b"SQLite format 3\0 and nothing else").unwrap();
    let wrong = sandbox.refused(&[
        "restore",
        "--stack",
        "local",
        "--from",
        sqlite.to_str().unwrap(),
    ]);
    assert!(
        wrong.contains("not a pg_dump custom-format backup"),
        "{wrong}"
    );
    let missing = sandbox.refused(&["backup", "--stack", "local"]);
    assert!(
        missing.contains("pg_dump of database") && missing.contains("does not exist"),
        "{missing}"
    );
    assert!(!format!("{wrong}{missing}").contains(SECRET));
}
