//! A throwaway repository root for a local stack: its free loopback ports, its stack file, and a scratch PostgreSQL database.
// Each test crate uses some of these.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::Path;

/// The local stack's default database.
pub const SQLITE: &str = "sqlite://data/local.sqlite?mode=rwc";

/// Ports the kernel never hands out as the local end of an outgoing connection (Linux's
/// ephemeral range starts at 32768): a stack's ports picked from that range could be taken by
/// one of the drills' own client connections before a rollout binds them.
const PORTS: std::ops::Range<u32> = 10_000..32_000;

/// A port from [`PORTS`], different on every call.
fn candidate() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let x = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) ^ seed;
    let x = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (PORTS.start + (x >> 33) as u32 % (PORTS.end - PORTS.start)) as u16
}

fn free(ports: std::ops::Range<u16>) -> bool {
    ports
        .into_iter()
        .all(|p| TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], p))).is_ok())
}

/// A load balancer port and `n` consecutive backend ports after another base, all free now.
pub fn free_ports(n: u16) -> (u16, u16) {
    for _ in 0..1000 {
        let (lb, base) = (candidate(), candidate());
        if (base..base + n + 1).contains(&lb) || !free(lb..lb + 1) || !free(base..base + n) {
            continue;
        }
        return (lb, base);
    }
    panic!("no {n} consecutive free ports");
}

/// A repository root with the real Pulumi.yaml and a local stack of `instances` on
/// `database_url`, checked every second, with `extra` config lines; `ports` consecutive
/// backend ports are free for it (a rollout needs a second block). Returns the root with the
/// load balancer's port and the first backend's.
pub fn new_root(
    instances: u16,
    ports: u16,
    database_url: &str,
    extra: &str,
) -> (tempfile::TempDir, u16, u16) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::copy(repo.join("Pulumi.yaml"), dir.path().join("Pulumi.yaml")).unwrap();
    std::fs::create_dir(dir.path().join("stacks")).unwrap();
    let (lb_port, first_port) = free_ports(ports);
    let stack = format!(
        "config:\n  rustlb:dropletCount: {instances}\n  rustlb:lbAddress: 127.0.0.1:{lb_port}\n  \
         rustlb:firstBackendPort: {first_port}\n  rustlb:databaseUrl: {database_url}\n  \
         rustlb:healthCheck:\n    protocol: http\n    port: 3000\n    path: /health\n    \
         checkIntervalSeconds: 1\n    responseTimeoutSeconds: 1\n    unhealthyThreshold: 3\n    \
         healthyThreshold: 2\n{extra}"
    );
    std::fs::write(dir.path().join("stacks/Pulumi.local.yaml"), stack).unwrap();
    (dir, lb_port, first_port)
}

/// A stack's repository root ([`new_root`]), removed on drop, and the `infra` binary run in it.
pub struct Root {
    pub dir: tempfile::TempDir,
    pub lb_port: u16,
    pub first_port: u16,
}

impl Root {
    pub fn new(instances: u16, ports: u16, database_url: &str, extra: &str) -> Root {
        let (dir, lb_port, first_port) = new_root(instances, ports, database_url, extra);
        Root {
            dir,
            lb_port,
            first_port,
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `path` through the stack's load balancer.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.lb_port)
    }

    /// `infra` with `args`, run in the root; what it did.
    pub fn infra(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_infra"))
            .args(args)
            .current_dir(self.root())
            .output()
            .expect("infra runs")
    }
}

/// A fresh PostgreSQL database on the `TEST_DATABASE_URL` server, dropped on drop; `None`
/// (with a notice) when the variable is unset outside CI.
pub struct ScratchDatabase {
    admin: String,
    /// Its name.
    pub name: String,
}

impl ScratchDatabase {
    pub fn create(tag: &str) -> Option<ScratchDatabase> {
        let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "TEST_DATABASE_URL must be set in CI"
            );
            eprintln!("skipped: TEST_DATABASE_URL is not set");
            return None;
        };
        let name = format!("rustlb_{tag}_{}", std::process::id());
        let db = ScratchDatabase { admin, name };
        db.sql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name));
        db.sql(&format!("CREATE DATABASE {}", db.name));
        Some(db)
    }

    /// Its URL, with `password` when given: the server trusts the loopback, so any password
    /// connects.
    pub fn url(&self, password: Option<&str>) -> String {
        let base = self.admin.rsplit_once('/').unwrap().0;
        let base = match password {
            Some(p) => base.replacen("postgres@", &format!("postgres:{p}@"), 1),
            None => base.to_owned(),
        };
        format!("{base}/{}?sslmode=disable", self.name)
    }

    /// Runs `sql` on the server as its admin.
    pub fn sql(&self, sql: &str) {
        use sea_orm::{ConnectionTrait, Database, Statement};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let db = Database::connect(&self.admin).await.unwrap();
            db.execute_raw(Statement::from_string(
                db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .unwrap();
            let _ = db.close().await;
        });
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        self.sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}
