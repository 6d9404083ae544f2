//! What the program needs besides the stack config: where the repository is, the app build, preview or not.

use crate::build::AppBuild;
use std::path::PathBuf;

/// What the program needs besides the stack config.
pub struct Inputs {
    /// The repository root.
    pub root: PathBuf,
    /// The local app build (may be the placeholder).
    pub build: AppBuild,
    /// True under `pulumi preview` and the offline preview.
    pub dry_run: bool,
}
