//! `?window=`: `all` or a length such as `90s`, `15m`, `1h`, `7d`.

use std::time::Duration;

/// A window as asked for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// How the answer names it: `all`, or the length as given (`1h`).
    pub label: String,
    /// `None` for all time.
    pub length: Option<Duration>,
}

impl Window {
    /// Parses the query value; empty means all time.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let length = parse_length(raw)?;
        let label = match length {
            Some(_) => raw.trim().to_owned(),
            None => "all".to_owned(),
        };
        Ok(Self { label, length })
    }
}

/// Parses a window such as `90s`, `15m`, `1h`, `7d`; `all` (or empty) means all time.
fn parse_length(raw: &str) -> Result<Option<Duration>, String> {
    let raw = raw.trim();
    if raw.is_empty() || raw.eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    let problem = || {
        format!(
            "window {raw:?} is not a number followed by s, m, h or d (e.g. 15m, 1h, 24h, 7d), or `all`"
        )
    };
    let Some(unit) = raw.chars().last() else {
        return Err(problem());
    };
    let digits = &raw[..raw.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(problem());
    }
    let n: u64 = digits.parse().map_err(|_| problem())?;
    let secs = match unit {
        's' => n,
        'm' => n.saturating_mul(60),
        'h' => n.saturating_mul(3600),
        'd' => n.saturating_mul(86_400),
        _ => return Err(problem()),
    };
    if n == 0 || secs > 3650 * 86_400 {
        return Err(format!("window {raw:?} must be between 1s and 3650d"));
    }
    Ok(Some(Duration::from_secs(secs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_units_and_reject_nonsense() {
        assert_eq!(parse_length("1h").unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(parse_length("15m").unwrap(), Some(Duration::from_secs(900)));
        assert_eq!(parse_length("all").unwrap(), None);
        assert!(parse_length("1y").is_err());
        assert!(parse_length("0h").is_err());
        assert!(parse_length("h").is_err());
        assert!(parse_length("+1h").is_err());
        assert!(
            parse_length("1µ").is_err(),
            "a multi-byte unit is an error, not a panic"
        );
        assert!(parse_length("µ").is_err());
    }

    #[test]
    fn windows_are_named_as_asked() {
        assert_eq!(Window::parse("").unwrap().label, "all");
        assert_eq!(Window::parse(" 1h ").unwrap().label, "1h");
    }
}
