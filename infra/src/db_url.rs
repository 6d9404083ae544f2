//! Database URL text: userinfo percent-encoded for a URL, and passwords kept out of error messages.

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

/// `error` with every trace of the password in `url` replaced, for messages that quote a
/// database library's error (drivers echo the URL they were given).
pub fn redact_db_error(error: &str, url: &str) -> String {
    let mut out = error.to_owned();
    if let Some(password) = url_password(url) {
        let decoded = percent_decode(&password);
        for secret in [password.as_str(), decoded.as_str()] {
            if !secret.is_empty() {
                out = out.replace(secret, "[redacted]");
            }
        }
    }
    out
}

/// The password of `scheme://user:password@host/...`, as written (percent-encoded).
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    // The authority ends at the last `@` before the path: passwords may hold `@`, `/`, `?`, `#`.
    let at = rest.rfind('@')?;
    let userinfo = &rest[..at];
    userinfo.split_once(':').map(|(_, p)| p.to_owned())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
