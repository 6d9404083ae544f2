//! `UserName`: 1-100 visible characters once trimmed, without control or bidi characters.

use super::chars::{BIDI_CONTROL, CONTROL, INVISIBLE, WHITE_SPACE, class, contains};
use super::invalid::Invalid;

const MAX_CHARS: usize = 100;

/// A valid user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    /// The longest name as sent, padding included: bounds the work and keeps a padded name
    /// within the body limit.
    pub const MAX_CHARS_AS_SENT: usize = 500;

    /// Trims white space and invisible characters from both ends of `raw`, and checks what is
    /// left: 1-100 characters, no control characters, no bidirectional controls (which could
    /// make a name display as another).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.chars().count() > Self::MAX_CHARS_AS_SENT {
            return Err(Invalid(format!(
                "`name` must be at most {} characters as sent",
                Self::MAX_CHARS_AS_SENT
            )));
        }
        if raw.chars().any(|c| contains(BIDI_CONTROL, c)) {
            return Err(Invalid(
                "`name` must not contain bidirectional control characters \
                 (U+202A-U+202E, U+2066-U+2069)"
                    .into(),
            ));
        }
        let name = raw.trim_matches(trimmed);
        if name.is_empty() {
            return Err(Invalid(
                "`name` must not be empty or made only of invisible characters".into(),
            ));
        }
        if name.chars().count() > MAX_CHARS {
            return Err(Invalid(format!(
                "`name` must be at most {MAX_CHARS} characters"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(Invalid("`name` must not contain control characters".into()));
        }
        Ok(Self(name.to_owned()))
    }

    /// The regular expression the OpenAPI document gives for `name` (with a maximum length
    /// of [`UserName::MAX_CHARS_AS_SENT`]): it matches exactly what [`UserName::parse`] accepts. Trimmed
    /// padding, then 1-100 characters that start and end visibly, then padding.
    pub fn pattern() -> String {
        let padding = class(&[WHITE_SPACE, INVISIBLE], "", false);
        let visible = class(&[WHITE_SPACE, INVISIBLE, CONTROL, BIDI_CONTROL], "", true);
        let inner = class(&[CONTROL, BIDI_CONTROL], "", true);
        format!(
            "^{padding}*{visible}(?:{inner}{{0,{}}}{visible})?{padding}*$",
            MAX_CHARS - 2
        )
    }
}

/// What `parse` trims from both ends.
fn trimmed(c: char) -> bool {
    c.is_whitespace() || contains(INVISIBLE, c)
}

impl AsRef<str> for UserName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<UserName> for String {
    fn from(name: UserName) -> Self {
        name.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::agreement::assert_pattern_agrees;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(UserName::parse("  Ann ").unwrap().as_ref(), "Ann");
        assert!(UserName::parse("   ").is_err());
        assert!(
            UserName::parse(&"é".repeat(100)).is_ok(),
            "characters, not bytes"
        );
        assert!(UserName::parse(&"n".repeat(101)).is_err());
        assert!(UserName::parse("A\u{7}nn").is_err());
    }

    #[test]
    fn invisible_padding_is_trimmed_and_invisible_names_refused() {
        assert_eq!(
            UserName::parse("\u{200B}Ann\u{FEFF} ").unwrap().as_ref(),
            "Ann"
        );
        for invisible in [
            "\u{200B}\u{200B}",
            "\u{200C} \u{200D}",
            "\u{2060}",
            "\u{3164}",
        ] {
            assert!(UserName::parse(invisible).is_err(), "{invisible:?}");
        }
        // Joiners inside a name are part of it (emoji sequences, Indic scripts).
        assert!(UserName::parse("👩\u{200D}💻 Ann").is_ok());
        // So are the tags of a subdivision flag at its end.
        let scotland = "Ann 🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}";
        assert_eq!(UserName::parse(scotland).unwrap().as_ref(), scotland);
    }

    #[test]
    fn bidi_controls_are_refused_anywhere() {
        for spoof in ["Ann\u{202E}gnp.exe", "\u{2066}Ann", "Ann\u{2069}"] {
            let err = UserName::parse(spoof).unwrap_err();
            assert!(err.0.contains("bidirectional"), "{spoof:?}: {err}");
        }
    }

    #[test]
    fn the_documented_pattern_accepts_exactly_what_parse_does() {
        let pattern = UserName::pattern();
        assert_pattern_agrees(&pattern, UserName::MAX_CHARS_AS_SENT, |s| {
            UserName::parse(s).is_ok()
        });
    }
}
