//! `Email`: a plausible address of at most 254 characters, trimmed.

use super::chars::{BIDI_CONTROL, CONTROL, INVISIBLE, WHITE_SPACE, class, contains};
use super::invalid::Invalid;
use crate::echo::echo;

const MAX_LOCAL_CHARS: usize = 64;
const MAX_LABEL_CHARS: usize = 63;
/// Characters an unquoted local part cannot hold (RFC 5322 specials).
const SPECIALS: &str = "<>()[],;:\\\"@";

/// A plausible email address, spelled as the caller spelled it (uniqueness ignores case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// The longest address, as sent (so padding counts too).
    pub const MAX_CHARS: usize = 254;

    /// Trims `raw` and checks it.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(Invalid(format!(
                "`email` must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        let email = raw.trim();
        if email.is_empty() {
            return Err(Invalid("`email` must not be empty".into()));
        }
        if !plausible(email) {
            return Err(Invalid(format!(
                "`email` {} is not a valid email address (local@domain: a local part of \
                 1-64 visible characters, a domain of two or more dot-separated labels of \
                 A-Z a-z 0-9 and inner hyphens)",
                echo(email)
            )));
        }
        Ok(Self(email.to_owned()))
    }

    /// The regular expression the OpenAPI document gives for `email` (with a maximum length of
    /// [`Email::MAX_CHARS`]): it matches exactly what [`Email::parse`] accepts.
    pub fn pattern() -> String {
        let space = class(&[WHITE_SPACE], "", false);
        let local = class(
            &[WHITE_SPACE, CONTROL, INVISIBLE, BIDI_CONTROL],
            r#"<>()\[\],;:\\"@"#,
            true,
        );
        let label = format!(
            "[A-Za-z0-9](?:[A-Za-z0-9-]{{0,{}}}[A-Za-z0-9])?",
            MAX_LABEL_CHARS - 2
        );
        format!("^{space}*{local}{{1,{MAX_LOCAL_CHARS}}}@(?:{label}\\.)+{label}{space}*$")
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Email> for String {
    fn from(email: Email) -> Self {
        email.0
    }
}

/// `local@domain`: a local part of 1-64 characters that are not white space, control,
/// invisible, bidi-control or special; a domain of two or more labels of ASCII letters, digits
/// and inner hyphens, 1-63 characters each (internationalised domains in their `xn--` form).
fn plausible(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let local_ok = (1..=MAX_LOCAL_CHARS).contains(&local.chars().count())
        && local.chars().all(|c| {
            !(c.is_whitespace()
                || c.is_control()
                || contains(INVISIBLE, c)
                || contains(BIDI_CONTROL, c)
                || SPECIALS.contains(c))
        });
    let labels: Vec<&str> = domain.split('.').collect();
    local_ok
        && labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=MAX_LABEL_CHARS).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::agreement::assert_pattern_agrees;

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert!(Email::parse("ann@example.com").is_ok());
        assert!(Email::parse("a.b+tag@sub.example.io").is_ok());
        assert!(Email::parse("café@example.com").is_ok());
        assert_eq!(
            Email::parse(" Ann@Example.com ").unwrap().as_ref(),
            "Ann@Example.com"
        );
        for bad in [
            "",
            "ann",
            "@x.io",
            "ann@",
            "ann@x",
            "a b@x.io",
            "a@@x.io",
            "a@x..io",
            "a@-x.io",
            "a\u{200B}@x.io",
            "a\u{202E}@x.io",
            "a@bücher.de",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_documented_pattern_accepts_exactly_what_parse_does() {
        assert_pattern_agrees(&Email::pattern(), Email::MAX_CHARS, |s| {
            Email::parse(s).is_ok()
        });
    }
}
