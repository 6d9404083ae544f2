//! Pulumi's wire values: the secret wrapper, the unknown sentinel, and how a person may see them.

use serde_json::{Value, json};

/// Stand-in for a secret that cannot be read (offline preview, `pulumi preview` without it).
pub const SECRET_PLACEHOLDER: &str = "[secret]";

/// Key marking a Pulumi special value (secret wrapper) on the wire.
pub const SIG_KEY: &str = "4dabf18193072939515e22adb298388d";
/// Signature value of a secret.
pub const SECRET_SIG: &str = "1b47061264138c4ac30d75fd1eb44270";
/// The wire sentinel of a value unknown until apply.
pub const UNKNOWN: &str = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/// Pulumi's wrapper around a secret value.
pub fn secret(v: Value) -> Value {
    json!({ SIG_KEY: SECRET_SIG, "value": v })
}

/// True when `v` is a secret wrapper.
pub fn is_secret(v: &Value) -> bool {
    v.get(SIG_KEY).and_then(Value::as_str) == Some(SECRET_SIG)
}

/// True when `v` is the unknown sentinel.
pub fn is_unknown(v: &Value) -> bool {
    v.as_str() == Some(UNKNOWN)
}

/// The value with every secret wrapper removed (for assertions on content).
pub fn reveal(v: &Value) -> Value {
    if is_secret(v) {
        return reveal(v.get("value").unwrap_or(&Value::Null));
    }
    match v {
        Value::Array(a) => Value::Array(a.iter().map(reveal).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), reveal(v))).collect()),
        other => other.clone(),
    }
}

/// The value as a person may see it: secrets as `[secret]`, unknowns as `[unknown]`.
///
/// The shape survives: a secret list stays a list of `[secret]` strings, so the redacted
/// document still validates against the provider schema.
pub fn redact(v: &Value) -> Value {
    if is_secret(v) {
        return hide(v.get("value").unwrap_or(&Value::Null));
    }
    if is_unknown(v) {
        return Value::String("[unknown]".into());
    }
    match v {
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), redact(v))).collect()),
        other => other.clone(),
    }
}

fn hide(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(hide).collect()),
        Value::Object(m) if !is_secret(v) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), hide(v))).collect())
        }
        Value::Object(_) => hide(v.get("value").unwrap_or(&Value::Null)),
        Value::Null => Value::Null,
        _ => Value::String("[secret]".into()),
    }
}

/// The value with every null field and list entry removed.
pub fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        other => other,
    }
}
