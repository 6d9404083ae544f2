//! The stack's values before typing: read from a stack file or from the engine's `PULUMI_CONFIG`.

use super::keys::PROJECT;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Set by the offline preview: keys (without namespace) whose values are encrypted in the stack file.
pub const ENCRYPTED_KEYS_ENV: &str = "RUSTLB_PREVIEW_ENCRYPTED_KEYS";

/// A raw config value before typing.
#[derive(Debug, Clone)]
pub enum RawValue {
    /// A plain value.
    Plain(Value),
    /// A decrypted secret (from the engine).
    Secret(Value),
    /// A `secure:` value in a stack file: set, but unreadable without the Pulumi CLI.
    Encrypted,
}

/// Config keys without the `rustlb:` namespace.
pub type RawConfig = BTreeMap<String, RawValue>;

/// A secret setting: absent, present but encrypted (stack file read offline), or known.
pub enum SecretValue<T> {
    /// Not set.
    Unset,
    /// Set with `pulumi config set --secret`; only the Pulumi CLI can decrypt it.
    Encrypted,
    /// The value (from the engine, or a plain value in the local stack file).
    Known(T),
}

impl<T> SecretValue<T> {
    /// The value when known.
    pub fn known(&self) -> Option<&T> {
        match self {
            SecretValue::Known(v) => Some(v),
            _ => None,
        }
    }

    /// True unless the key is absent.
    pub fn is_set(&self) -> bool {
        !matches!(self, SecretValue::Unset)
    }
}

impl<T> fmt::Debug for SecretValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretValue::Unset => f.write_str("Unset"),
            SecretValue::Encrypted => f.write_str("Encrypted"),
            SecretValue::Known(_) => f.write_str("[secret]"),
        }
    }
}

/// Parses a stack file's `config:` block.
pub fn raw_from_stack_file(text: &str) -> Result<RawConfig, String> {
    #[derive(Deserialize)]
    struct StackFile {
        #[serde(default)]
        config: BTreeMap<String, serde_yaml::Value>,
    }
    let file: StackFile =
        serde_yaml::from_str(text).map_err(|e| format!("not a valid stack file: {e}"))?;
    let mut raw = RawConfig::new();
    for (key, value) in file.config {
        let Some(short) = key.strip_prefix(&format!("{PROJECT}:")) else {
            continue; // provider keys such as digitalocean:token belong to the provider
        };
        let json: Value =
            serde_json::to_value(&value).map_err(|e| format!("{PROJECT}:{short}: {e}"))?;
        // `pulumi config set --secret --path 'k[0]'` encrypts inside a structure. An object
        // with a secret field keeps its other fields readable (the secret reads `[secret]`);
        // anything else that holds a secret is unreadable here as a whole.
        let entry = match &json {
            Value::Object(m) if !m.contains_key("secure") && contains_secure(&json) => {
                RawValue::Secret(hide_secure(json))
            }
            _ if contains_secure(&json) => RawValue::Encrypted,
            _ => RawValue::Plain(json),
        };
        raw.insert(short.to_string(), entry);
    }
    Ok(raw)
}

/// The value with every `{secure: ...}` replaced by the secret placeholder.
fn hide_secure(v: Value) -> Value {
    match v {
        Value::Object(m) if m.contains_key("secure") => {
            Value::String(crate::wire::SECRET_PLACEHOLDER.into())
        }
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k, hide_secure(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(hide_secure).collect()),
        other => other,
    }
}

fn contains_secure(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key("secure") || m.values().any(contains_secure),
        Value::Array(a) => a.iter().any(contains_secure),
        _ => false,
    }
}

/// Parses the engine's `PULUMI_CONFIG` and `PULUMI_CONFIG_SECRET_KEYS`.
pub fn raw_from_engine(config: &str, secret_keys: &str) -> Result<RawConfig, String> {
    let map: BTreeMap<String, String> = serde_json::from_str(config)
        .map_err(|e| format!("PULUMI_CONFIG is not a JSON object of strings: {e}"))?;
    let secrets: Vec<String> = serde_json::from_str(secret_keys)
        .map_err(|e| format!("PULUMI_CONFIG_SECRET_KEYS is not a JSON array: {e}"))?;
    let mut raw = RawConfig::new();
    for (key, value) in map {
        let Some(short) = key.strip_prefix(&format!("{PROJECT}:")) else {
            continue;
        };
        // Structured values arrive as JSON text; scalars as plain strings.
        let json = match serde_json::from_str::<Value>(&value) {
            Ok(v @ (Value::Object(_) | Value::Array(_))) => v,
            _ => Value::String(value),
        };
        let entry = if secrets.contains(&key) {
            RawValue::Secret(json)
        } else {
            RawValue::Plain(json)
        };
        raw.insert(short.to_string(), entry);
    }
    Ok(raw)
}

/// A list of strings as a stack file (YAML list), the engine (JSON text) or a hand-written
/// comma-separated value gives it.
pub(super) fn string_list(v: &Value) -> Result<Vec<String>, String> {
    let v = match v {
        Value::String(s) if s.trim_start().starts_with('[') => {
            serde_json::from_str(s).map_err(|_| "must be a list of strings".to_string())?
        }
        Value::String(s) => {
            return Ok(s
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect());
        }
        other => other.clone(),
    };
    serde_json::from_value::<Vec<Value>>(v)
        .map_err(|_| "must be a list of strings".to_string())?
        .into_iter()
        .map(|e| match e {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err("must be a list of strings".to_string()),
        })
        .collect()
}
