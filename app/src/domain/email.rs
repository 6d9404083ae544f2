//! `Email`: a plausible address of at most 254 characters, trimmed.

use super::invalid::Invalid;

const MAX_LEN: usize = 254;

/// A plausible email address, spelled as the caller spelled it (uniqueness ignores case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Trims `raw` and checks it.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let email = raw.trim();
        if email.is_empty() {
            return Err(Invalid("`email` must not be empty".into()));
        }
        if email.len() > MAX_LEN {
            return Err(Invalid(format!(
                "`email` must be at most {MAX_LEN} characters"
            )));
        }
        if !plausible(email) {
            return Err(Invalid(format!(
                "`email` {email:?} is not a valid email address"
            )));
        }
        Ok(Self(email.to_owned()))
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

/// One `@`, a non-empty local part of at most 64 characters, a dotted domain of sane labels,
/// and no spaces or control characters.
fn plausible(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || domain.contains('@') {
        return false;
    }
    if email
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "<>()[],;:\\\"".contains(c))
    {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert!(Email::parse("ann@example.com").is_ok());
        assert!(Email::parse("a.b+tag@sub.example.io").is_ok());
        assert_eq!(
            Email::parse(" Ann@Example.com ").unwrap().as_ref(),
            "Ann@Example.com"
        );
        for bad in [
            "", "ann", "@x.io", "ann@", "ann@x", "a b@x.io", "a@@x.io", "a@x..io", "a@-x.io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
