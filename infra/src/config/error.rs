//! Why a stack's configuration was refused: one error per key, all of them at once.

use super::keys::PROJECT;
use std::fmt;

/// One invalid key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The full key, e.g. `rustlb:healthCheck.checkIntervalSeconds`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl KeyError {
    /// An error on `key` (without namespace); an empty key is about the whole stack.
    pub(super) fn new(key: &str, message: impl Into<String>) -> Self {
        KeyError {
            key: if key.is_empty() {
                String::new()
            } else {
                format!("{PROJECT}:{key}")
            },
            message: message.into(),
        }
    }
}

/// Why a stack's configuration was refused; lists every problem at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The stack file (or engine config) the values came from.
    pub source: String,
    /// The problems, one per key.
    pub errors: Vec<KeyError>,
}

impl ConfigError {
    /// A refusal with one problem, such as a stack file that cannot be read.
    pub(super) fn single(source: &str, key: &str, message: String) -> Self {
        ConfigError {
            source: source.to_string(),
            errors: vec![KeyError::new(key, message)],
        }
    }

    /// True when some error names `key` (with or without the namespace).
    pub fn mentions(&self, key: &str) -> bool {
        let full = if key.contains(':') {
            key.to_string()
        } else {
            format!("{PROJECT}:{key}")
        };
        self.errors.iter().any(|e| e.key == full)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid stack configuration in {}:", self.source)?;
        for e in &self.errors {
            if e.key.is_empty() {
                write!(f, "\n  {}", e.message)?;
            } else {
                write!(f, "\n  {}: {}", e.key, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
