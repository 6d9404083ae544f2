//! `?window=`: `all` or a length such as `90s`, `15m`, `1h`, `7d`.

use std::time::Duration;

use crate::echo::echo;

/// Units a window's length may be given in, with their length in seconds.
const UNITS: [(char, u64); 4] = [('s', 1), ('m', 60), ('h', 3600), ('d', 86_400)];
/// At most this many digits: 99999d (about 270 years) is long enough for any log.
const MAX_DIGITS: usize = 5;

/// A window as asked for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// How the answer names it: `all`, or the length as given (`1h`).
    pub label: String,
    /// `None` for all time.
    pub length: Option<Duration>,
}

impl Window {
    /// All time: what an absent `window` means.
    pub fn all() -> Self {
        Self {
            label: "all".to_owned(),
            length: None,
        }
    }

    /// Parses the query value: `all`, or 1-5 digits without a leading zero followed by
    /// `s`, `m`, `h` or `d` (exactly what [`Window::pattern`] matches).
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw == "all" {
            return Ok(Self::all());
        }
        let problem = || {
            format!(
                "window {} is not `all` or a number of 1-{MAX_DIGITS} digits followed by s, \
                 m, h or d (e.g. 90s, 15m, 1h, 24h, 7d)",
                echo(raw)
            )
        };
        let Some(unit) = raw.chars().last() else {
            return Err(problem());
        };
        let digits = &raw[..raw.len() - unit.len_utf8()];
        let plain = (1..=MAX_DIGITS).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        let seconds = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, seconds)| *seconds);
        match (plain, seconds, digits.parse::<u64>()) {
            (true, Some(seconds), Ok(n)) => Ok(Self {
                label: raw.to_owned(),
                length: Some(Duration::from_secs(n * seconds)),
            }),
            _ => Err(problem()),
        }
    }

    /// The regular expression the OpenAPI document gives for `window`.
    pub fn pattern() -> String {
        let units: String = UNITS.iter().map(|(u, _)| *u).collect();
        format!("^(?:all|[1-9][0-9]{{0,{}}}[{units}])$", MAX_DIGITS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn length(raw: &str) -> Result<Option<Duration>, String> {
        Window::parse(raw).map(|w| w.length)
    }

    #[test]
    fn windows_parse_units_and_reject_nonsense() {
        assert_eq!(length("1h").unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(length("15m").unwrap(), Some(Duration::from_secs(900)));
        assert_eq!(
            length("99999d").unwrap(),
            Some(Duration::from_secs(99_999 * 86_400))
        );
        assert_eq!(length("all").unwrap(), None);
        for bad in [
            "", " 1h", "1h ", "ALL", "1y", "0h", "01h", "h", "+1h", "100000s", "1µ", "µ",
        ] {
            assert!(length(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_documented_pattern_agrees_with_parse() {
        let pattern = regex::Regex::new(&Window::pattern()).unwrap();
        for raw in [
            "all", "1s", "99999d", "15m", "", "0s", "100000d", "1y", " 1h", "ALL", "1µ",
        ] {
            assert_eq!(pattern.is_match(raw), Window::parse(raw).is_ok(), "{raw:?}");
        }
    }
}
