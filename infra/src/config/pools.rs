//! The pools section: droplet size, image and count, the two colours, which is active, and the builds they run.

use super::keys::Section;
use super::reader::Reader;
use serde::Deserialize;
use std::path::PathBuf;

const DROPLET_COUNT: &str = "dropletCount";
const ACTIVE_COLOR: &str = "activeColor";

/// A droplet pool colour for blue/green releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    /// The blue pool.
    Blue,
    /// The green pool.
    Green,
}

impl Color {
    /// Both colours, blue first.
    pub const ALL: [Color; 2] = [Color::Blue, Color::Green];

    /// `blue` or `green`.
    pub fn as_str(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }
}

/// Which app build a pool runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Build {
    /// Whatever `cargo build --release -p app` produced last (`rustlb:appBinary`).
    Local,
    /// A build pinned by the sha256 of its binary, already uploaded by an earlier `pulumi up`.
    Pinned(String),
}

/// One droplet pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Number of droplets.
    pub count: u32,
    /// The build the droplets run.
    pub build: Build,
}

/// The droplets and the builds they run.
pub(super) struct Pools {
    pub(super) droplet_size: String,
    pub(super) droplet_image: String,
    pub(super) active_color: Color,
    pub(super) blue: Pool,
    pub(super) green: Pool,
    pub(super) app_binary: PathBuf,
    pub(super) artifacts_region: String,
}

impl Pools {
    pub(super) fn parse(r: &mut Reader) -> Pools {
        let r = r.enter(Section::Pools);
        let droplet_size = r.string("dropletSize").unwrap_or_default();
        let droplet_image = r.string("dropletImage").unwrap_or_default();
        let droplet_count = r.uint(DROPLET_COUNT);
        if !(1..=50).contains(&droplet_count) {
            r.err(
                DROPLET_COUNT,
                format!("must be between 1 and 50 (got {droplet_count})"),
            );
        }
        let active_color = match r.string(ACTIVE_COLOR).as_deref() {
            Some("green") => Color::Green,
            Some("blue") | None => Color::Blue,
            Some(other) => {
                r.err(
                    ACTIVE_COLOR,
                    format!("must be blue or green (got {other:?})"),
                );
                Color::Blue
            }
        };
        let blue = pool(r, Color::Blue, active_color, droplet_count);
        let green = pool(r, Color::Green, active_color, droplet_count);
        let app_binary = PathBuf::from(r.string("appBinary").unwrap_or_default());
        let artifacts_region = r.string("artifactsRegion").unwrap_or_default();
        Pools {
            droplet_size,
            droplet_image,
            active_color,
            blue,
            green,
            app_binary,
            artifacts_region,
        }
    }
}

/// The pool of one colour (`blue` or `green`: `{count, build}`).
fn pool(r: &mut Reader, color: Color, active_color: Color, droplet_count: u32) -> Pool {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct RawPool {
        count: Option<u32>,
        build: Option<String>,
    }
    let key = color.as_str();
    let active = color == active_color;
    let raw: RawPool = r.object(key);
    // The active pool defaults to dropletCount so a stack without blue/green keys still works.
    let count = raw.count.unwrap_or(if active { droplet_count } else { 0 });
    if count > 50 {
        r.err(
            &format!("{key}.count"),
            format!("must be between 0 and 50 (got {count})"),
        );
    }
    if active && count == 0 {
        r.err(
            &format!("{key}.count"),
            "the active colour needs at least 1 droplet",
        );
    }
    let build = match raw.build.as_deref() {
        None | Some("local") => Build::Local,
        Some(sha) => {
            let sha = sha
                .strip_prefix("sha256:")
                .unwrap_or(sha)
                .to_ascii_lowercase();
            if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                r.err(
                    &format!("{key}.build"),
                    "must be `local` or the 64-hex sha256 of an app build",
                );
            }
            Build::Pinned(sha)
        }
    };
    Pool { count, build }
}
