//! The sticky sessions section: whether the load balancer pins a client to a droplet by cookie.

use super::keys::Section;
use super::reader::Reader;
use crate::limits;
use serde::Deserialize;

/// Sticky sessions at the load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StickySessions {
    /// `none` or `cookies`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Cookie name (2-40 chars) when `kind` is `cookies`.
    pub cookie_name: Option<String>,
    /// Cookie lifetime when `kind` is `cookies`.
    pub cookie_ttl_seconds: Option<u32>,
}

impl Default for StickySessions {
    fn default() -> Self {
        StickySessions {
            kind: "none".into(),
            cookie_name: None,
            cookie_ttl_seconds: None,
        }
    }
}

impl StickySessions {
    /// True when the load balancer pins clients with a cookie.
    pub fn enabled(&self) -> bool {
        self.kind == "cookies"
    }

    /// `stickySessions`: a cookie needs a name and a lifetime.
    pub(super) fn parse(r: &mut Reader) -> StickySessions {
        let r = r.enter(Section::StickySessions);
        let sticky_sessions: StickySessions = r.object("stickySessions");
        check(r, &sticky_sessions);
        sticky_sessions
    }
}

fn check(r: &mut Reader, s: &StickySessions) {
    match s.kind.as_str() {
        "none" => {}
        "cookies" => {
            match &s.cookie_name {
                Some(n) => {
                    if let Some(problem) =
                        limits::range_problem(n.chars().count(), &limits::COOKIE_NAME_CHARS)
                    {
                        r.err("stickySessions.cookieName", format!("length {problem}"));
                    }
                }
                None => r.err(
                    "stickySessions.cookieName",
                    "is required when type is cookies",
                ),
            }
            match s.cookie_ttl_seconds {
                Some(t) if t >= 1 => {}
                Some(_) => r.err("stickySessions.cookieTtlSeconds", "must be at least 1"),
                None => r.err(
                    "stickySessions.cookieTtlSeconds",
                    "is required when type is cookies",
                ),
            }
        }
        other => r.err(
            "stickySessions.type",
            format!("must be none or cookies (got {other:?})"),
        ),
    }
}
