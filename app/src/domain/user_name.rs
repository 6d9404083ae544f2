//! `UserName`: 1-100 characters without control characters, trimmed.

use super::invalid::Invalid;

const MAX_CHARS: usize = 100;

/// A valid user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    /// Trims `raw` and checks it.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(Invalid("`name` must not be empty".into()));
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
}
