//! Debian's chromium, headless, loading the stack's pages as a user's browser does.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

use super::tools;

/// Debian's chromium, headless. Its test is `#[ignore]`d; once asked to run, a missing browser
/// fails it rather than letting it pass unchecked.
pub fn chromium() -> &'static str {
    let path = "/usr/bin/chromium";
    tools::require(
        "chromium",
        Path::new(path).exists(),
        "apt-get install chromium",
    );
    path
}

/// Loads `url` in headless chromium, lets the page's scripts run for `budget_ms` of virtual
/// time, and either prints the resulting DOM or takes a screenshot of `size`.
pub fn browse(url: &str, budget_ms: u32, screenshot: Option<(&Path, &str)>) -> String {
    browse_with(url, budget_ms, screenshot, &[])
}

/// [`browse`] with more chromium flags.
pub fn browse_with(
    url: &str,
    budget_ms: u32,
    screenshot: Option<(&Path, &str)>,
    flags: &[&str],
) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(chromium());
    // As Debian's chromium runs here: no sandbox as root, and nothing that calls home.
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--virtual-time-budget={budget_ms}"))
    .args(flags);
    match screenshot {
        Some((path, size)) => {
            cmd.arg(format!("--screenshot={}", path.display()))
                .arg(format!("--window-size={size}"));
        }
        None => {
            cmd.arg("--dump-dom");
        }
    }
    let out = Command::new("timeout")
        .arg("60")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed on {url}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
