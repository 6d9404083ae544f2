//! schemathesis against the app's own OpenAPI document: no server errors, no answer that contradicts it.
//!
//! `.ci/run` installs schemathesis from PyPI. The test is `#[ignore]`d, so a plain `cargo test`
//! lists it as not run; `-- --include-ignored` runs it, and then a missing `st` fails it.

mod tools;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const API_KEY: &str = "fuzz-key-0123456789abcdef";

struct App {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real app (the infra binary's `serve-app`) on a free port with a fresh SQLite file.
fn start_app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("fuzz.sqlite").display()
    );
    let child = Command::new(env!("CARGO_BIN_EXE_infra"))
        .arg("serve-app")
        // Its request-log spool (`data/spool`) goes to the scratch folder, not the source tree.
        .current_dir(dir.path())
        .env("APP__APPLICATION__PORT", port.to_string())
        .env("APP__APPLICATION__API_KEY", API_KEY)
        .env("APP__DATABASE__URL", db)
        .env("APP__TELEMETRY__LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the app did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    App { child, port, dir }
}

fn require_schemathesis() {
    tools::require(
        "schemathesis (`st`)",
        tools::runs("st"),
        "pip install schemathesis==4.32.5",
    );
}

#[test]
#[ignore = "needs schemathesis (`st`): pip install schemathesis==4.32.5"]
fn schemathesis_finds_no_server_error_and_no_answer_that_contradicts_the_document() {
    require_schemathesis();
    let app = start_app();
    let url = format!("http://127.0.0.1:{}", app.port);
    let out = Command::new("timeout")
        .arg("300")
        .arg("st")
        .args(["run", &format!("{url}/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {API_KEY}")])
        // One worker: parallel workers crash CPython 3.11's AST checks now and then.
        .args(["--checks", "all", "--max-examples", "60", "--workers", "1"])
        .args(["--continue-on-failure", "--no-color", "--seed", "20261202"])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its own state folder (.schemathesis) goes with the scratch directory.
        .current_dir(app.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Test cases:"), "{stdout}");
}
