//! `GET /dashboard`: one self-contained page that polls `/api/stats`, `/server-info` and, on the local stack, the load balancer's status.
//!
//! The page, its style and its script are kept as files of their own and put together once at
//! start. It loads nothing from anywhere: the Content-Security-Policy it is served with allows
//! only its own inline style and script (by hash) and requests to this origin.

use base64::Engine;
use bytes::Bytes;
use http::HeaderValue;
use sha2::{Digest, Sha256};

/// Not a route of the app: the local stack's load balancer answers it with its own status
/// (backends, their last 15 minutes, rotation changes), and the dashboard reads it.
pub const LB_STATUS: &str = "/_lb/status";

const PAGE: &str = include_str!("page.html");
const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("script.js");

/// The page and the policy it is served with, built once.
pub struct Dashboard {
    pub page: Bytes,
    pub policy: HeaderValue,
}

impl Dashboard {
    pub fn build() -> Self {
        let script = script();
        let page = PAGE
            .replace("{{style}}", STYLE)
            .replace("{{script}}", &script);
        let policy = format!(
            "default-src 'none'; style-src '{}'; script-src '{}'; connect-src 'self'; \
             img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash(STYLE),
            hash(&script)
        );
        Self {
            page: page.into(),
            // Built from base64 digests and fixed text: always a valid header value.
            policy: HeaderValue::from_str(&policy).expect("a CSP of ASCII text"),
        }
    }
}

/// The script with the paths it fetches filled in.
fn script() -> String {
    SCRIPT.replace("{{lb_status_path}}", LB_STATUS)
}

/// A CSP source for inline content: `sha256-<base64 digest>`.
fn hash(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_holds_its_style_and_script_and_the_policy_their_hashes() {
        let dashboard = Dashboard::build();
        let page = std::str::from_utf8(&dashboard.page).unwrap();
        assert!(!page.contains("{{"), "every placeholder filled");
        let script = script();
        assert!(
            !script.contains("{{"),
            "every placeholder of the script filled"
        );
        assert!(page.contains(&format!("<script>{script}</script>")));
        assert!(page.contains(&format!("<style>{STYLE}</style>")));
        let policy = dashboard.policy.to_str().unwrap();
        assert!(policy.contains(&hash(&script)) && policy.contains(&hash(STYLE)));
    }

    #[test]
    fn network_text_reaches_the_page_only_as_text() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(sink), "the script uses {sink}");
        }
    }
}
