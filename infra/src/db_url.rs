//! Database URL text: userinfo percent-encoded, so any generated password survives in a URL.

/// Percent-encodes a URL userinfo part (anything but unreserved characters), so any
/// generated password survives.
pub fn percent_encode(part: &str) -> String {
    part.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
