//! Typed reading of raw values, collecting every problem instead of stopping at the first.

use super::error::{ConfigError, KeyError};
use super::keys::{self, DefaultValue, KNOWN_KEYS, Section};
use super::raw::{RawConfig, RawValue};
use serde::Deserialize;
use serde_json::Value;

/// The raw values of one stack and the problems found so far.
pub(super) struct Reader {
    raw: RawConfig,
    errors: Vec<KeyError>,
    /// The section reading now: a key is read by the section the table puts it in, and only there.
    section: Option<Section>,
}

impl Reader {
    /// A reader over `raw`, which already reports every key the table does not know.
    pub(super) fn new(raw: RawConfig) -> Reader {
        let errors = raw
            .keys()
            .filter(|key| !KNOWN_KEYS.contains(&key.as_str()))
            .map(|key| KeyError::new(key, "unknown key (see the config block of Pulumi.yaml)"))
            .collect();
        Reader {
            raw,
            errors,
            section: None,
        }
    }

    /// Hands the reader to `section`.
    pub(super) fn enter(&mut self, section: Section) -> &mut Reader {
        self.section = Some(section);
        self
    }

    /// Records a problem with `key` (without namespace; empty for the whole stack).
    pub(super) fn err(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(KeyError::new(key, message));
    }

    /// Every problem found, or nothing when the stack is valid.
    pub(super) fn finish(self, source: &str) -> Result<(), ConfigError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                source: source.to_string(),
                errors: self.errors,
            })
        }
    }

    /// The table's row for `key`; a key read outside the table or outside its section is a bug.
    fn row(&self, key: &str) -> Option<&'static keys::Key> {
        let row = keys::find(key);
        debug_assert!(
            row.is_some_and(|k| Some(k.section) == self.section),
            "{key} is read by {:?}, but the key table puts it in {:?}",
            self.section,
            row.map(|k| k.section)
        );
        row
    }

    /// The value as set, secret or not.
    pub(super) fn raw(&self, key: &str) -> Option<&RawValue> {
        self.row(key);
        self.raw.get(key)
    }

    /// The value of a setting that must be plain text.
    pub(super) fn value(&mut self, key: &str) -> Option<Value> {
        match self.raw(key) {
            None => None,
            Some(RawValue::Plain(v) | RawValue::Secret(v)) => Some(v.clone()),
            Some(RawValue::Encrypted) => {
                self.err(key, "is a secret but this setting must be plain text");
                None
            }
        }
    }

    fn default(&self, key: &str) -> Option<DefaultValue> {
        self.row(key).and_then(|k| k.default)
    }

    /// A string, or the key's default.
    pub(super) fn string(&mut self, key: &str) -> Option<String> {
        let default = match self.default(key) {
            Some(DefaultValue::Text(s)) => Some(s.to_string()),
            _ => None,
        };
        match self.value(key) {
            None | Some(Value::Null) => default,
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                self.err(key, format!("must be a string (got {other})"));
                default
            }
        }
    }

    /// A whole number, or the key's default.
    pub(super) fn uint(&mut self, key: &str) -> u32 {
        let default = match self.default(key) {
            Some(DefaultValue::Integer(n)) => n,
            _ => 0,
        };
        match self.value(key) {
            None => default,
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= u64::from(u32::MAX)) => {
                n.as_u64().unwrap_or(0) as u32
            }
            Some(Value::String(s)) if s.trim().parse::<u32>().is_ok() => {
                s.trim().parse().unwrap_or(default)
            }
            Some(other) => {
                self.err(key, format!("must be a whole number (got {other})"));
                default
            }
        }
    }

    /// `true` or `false`, or the key's default.
    pub(super) fn boolean(&mut self, key: &str) -> bool {
        let default = matches!(self.default(key), Some(DefaultValue::Boolean(true)));
        match self.value(key) {
            None => default,
            Some(Value::Bool(b)) => b,
            Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
            Some(other) => {
                self.err(key, format!("must be true or false (got {other})"));
                default
            }
        }
    }

    /// An object-valued key (a YAML mapping, or JSON text from the engine); unset is `T::default()`.
    pub(super) fn object<T: for<'de> Deserialize<'de> + Default>(&mut self, key: &str) -> T {
        let value = match self.value(key) {
            None | Some(Value::Null) => return T::default(),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
                Ok(v) => v,
                Err(_) => {
                    self.err(key, "must be an object");
                    return T::default();
                }
            },
            Some(v) => v,
        };
        match serde_json::from_value::<T>(value) {
            Ok(t) => t,
            Err(e) => {
                self.err(key, e.to_string());
                T::default()
            }
        }
    }
}
