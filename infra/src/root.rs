//! Finds the repository root: the nearest folder holding Pulumi.yaml.

use std::path::{Path, PathBuf};

/// Walks up from `start` to the first directory that contains `Pulumi.yaml`.
pub fn find_root(start: &Path) -> anyhow::Result<PathBuf> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        if d.join("Pulumi.yaml").is_file() {
            return Ok(d.to_path_buf());
        }
        dir = d.parent();
    }
    anyhow::bail!(
        "no Pulumi.yaml in {} or any parent; run this from inside the repository",
        start.display()
    )
}

/// The root seen from the current directory.
pub fn current_root() -> anyhow::Result<PathBuf> {
    find_root(&std::env::current_dir()?)
}
