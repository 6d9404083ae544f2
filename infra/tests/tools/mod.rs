//! Tools from outside cargo that a test needs: asked to run without its tool, a test fails instead of passing.

use std::process::Command;

/// True when `command --version` runs.
#[allow(dead_code)] // not every test crate that needs a tool runs one
pub fn runs(command: &str) -> bool {
    Command::new(command).arg("--version").output().is_ok()
}

/// Fails the test unless `present`, saying how to install `tool`.
pub fn require(tool: &str, present: bool, install: &str) {
    let hint = if std::env::var_os("CI").is_some() {
        ".ci/run installs it"
    } else {
        "leave out --ignored/--include-ignored to skip this test"
    };
    assert!(present, "{tool} is missing: {install} ({hint})");
}
