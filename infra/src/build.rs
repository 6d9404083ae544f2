//! Identifies the app build to deploy: the release binary and its sha256.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The sha256 shown while no app build exists yet (fresh clone, offline preview).
pub const PLACEHOLDER_SHA256: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// The app binary `cargo build --release -p app` produced, or a placeholder before the first build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppBuild {
    /// Where the binary is.
    pub path: PathBuf,
    /// Lowercase hex sha256 of the binary.
    pub sha256: String,
    /// False when the binary does not exist and `sha256` is the placeholder.
    pub exists: bool,
}

impl AppBuild {
    /// Hashes `root/binary`; a missing file gives the placeholder.
    pub fn inspect(root: &Path, binary: &Path) -> std::io::Result<AppBuild> {
        let path = root.join(binary);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(AppBuild {
                path,
                sha256: hex(&Sha256::digest(&bytes)),
                exists: true,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AppBuild {
                path,
                sha256: PLACEHOLDER_SHA256.into(),
                exists: false,
            }),
            Err(e) => Err(e),
        }
    }

    /// Copies the binary to `target/artifacts/app-<sha256>` so a pool pinned to this build can
    /// be re-created after the next `cargo build` overwrote `target/release/app`.
    pub fn archive(&self, root: &Path) -> std::io::Result<PathBuf> {
        let dest = artifact_path(root, &self.sha256);
        if !dest.exists() {
            std::fs::create_dir_all(dest.parent().expect("artifact path has a parent"))?;
            let tmp = dest.with_extension("partial");
            std::fs::copy(&self.path, &tmp)?;
            std::fs::rename(&tmp, &dest)?;
        }
        Ok(dest)
    }
}

/// Where the archived binary of a build lives.
pub fn artifact_path(root: &Path, sha256: &str) -> PathBuf {
    root.join("target")
        .join("artifacts")
        .join(format!("app-{sha256}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
