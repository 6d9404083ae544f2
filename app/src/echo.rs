//! Client input quoted back in an error message, cut to a readable length.
//!
//! An error names what was wrong by showing it, but a 60 KB query string shown in full makes
//! every refusal as large as the request that caused it (and a log line or a dashboard full of
//! it): what is shown stops after [`MAX_ECHO_CHARS`] characters with an ellipsis.

use std::fmt::Write;

/// The most characters of client input an error message shows.
pub const MAX_ECHO_CHARS: usize = 100;

/// `raw` quoted (as `{:?}` would), at most [`MAX_ECHO_CHARS`] characters of it, and how
/// long it was when it is cut: `"aaaa…" (60000 characters)`.
pub fn echo(raw: &str) -> String {
    let total = raw.chars().count();
    if total <= MAX_ECHO_CHARS {
        return format!("{raw:?}");
    }
    let head: String = raw.chars().take(MAX_ECHO_CHARS).collect();
    let quoted = format!("{head:?}");
    let mut out = String::with_capacity(quoted.len() + 32);
    out.push_str(&quoted[..quoted.len() - 1]);
    let _ = write!(out, "…\" ({total} characters)");
    out
}

/// A message that embeds client input somewhere inside (a parser's error naming the unknown
/// field it met): cut after [`MAX_ECHO_CHARS`] characters plus room for its own words.
pub fn capped(message: &str) -> String {
    const ROOM: usize = MAX_ECHO_CHARS + 100;
    if message.chars().count() <= ROOM {
        return message.to_owned();
    }
    let mut out: String = message.chars().take(ROOM).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_quoted_whole_and_long_input_is_cut_with_its_length() {
        assert_eq!(echo("5x"), "\"5x\"");
        assert_eq!(echo(&"a".repeat(100)), format!("\"{}\"", "a".repeat(100)));
        let long = echo(&"é".repeat(60_000));
        assert_eq!(long, format!("\"{}…\" (60000 characters)", "é".repeat(100)));
        // A quote inside stays escaped; the cut comes after the first 100 characters.
        let quoted = echo(&format!("\"{}", "q".repeat(200)));
        assert!(quoted.starts_with("\"\\\"qqq"), "{quoted}");
        assert!(quoted.ends_with("q…\" (201 characters)"), "{quoted}");
        assert_eq!(quoted.matches('q').count(), 99);
        assert_eq!(capped("short"), "short");
        assert_eq!(capped(&"x".repeat(5000)).chars().count(), 201);
    }
}
