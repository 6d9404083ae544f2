//! The `environment` section: the DigitalOcean project environment, and whether the stack is production.

use super::keys::Section;
use super::reader::Reader;

/// The stack's environment, as DigitalOcean projects name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// Development.
    Development,
    /// Staging.
    Staging,
    /// Production.
    Production,
}

impl Environment {
    /// The value DigitalOcean expects in a project's `environment`.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "Development",
            Environment::Staging => "Staging",
            Environment::Production => "Production",
        }
    }

    /// `environment`, or without it the environment the stack's name suggests.
    pub(super) fn parse(r: &mut Reader, stack: &str) -> Environment {
        const KEY: &str = "environment";
        let r = r.enter(Section::Environment);
        match r.string(KEY) {
            Some(e) => match e.as_str() {
                "Development" => Environment::Development,
                "Staging" => Environment::Staging,
                "Production" => Environment::Production,
                other => {
                    r.err(
                        KEY,
                        format!("must be Development, Staging or Production (got {other:?})"),
                    );
                    Environment::Development
                }
            },
            None => match stack {
                "prod" | "production" => Environment::Production,
                "staging" => Environment::Staging,
                _ => Environment::Development,
            },
        }
    }

    /// Production rules (no SSH from anywhere, a standby database) hold for the `prod` stack
    /// whatever its environment says.
    pub(super) fn is_prod(self, stack: &str) -> bool {
        self == Environment::Production || stack == "prod"
    }
}
