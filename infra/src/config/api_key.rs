//! The API key section: the key the app requires on writes, which must stay secret outside the local stack.

use super::keys::Section;
use super::raw::{RawValue, SecretValue};
use super::reader::Reader;
use secrecy::SecretString;
use serde_json::Value;

const KEY: &str = "apiKey";

/// `apiKey`: unset, still encrypted (read offline), or a usable key.
pub(super) fn parse(r: &mut Reader, is_local: bool) -> SecretValue<SecretString> {
    let r = r.enter(Section::ApiKey);
    let api_key = match r.raw(KEY) {
        None => SecretValue::Unset,
        Some(RawValue::Encrypted) => SecretValue::Encrypted,
        Some(RawValue::Plain(v) | RawValue::Secret(v)) => match usable(v) {
            Some(key) => SecretValue::Known(key),
            None => {
                r.err(
                    KEY,
                    "must be at least 16 printable ASCII characters without quotes or backslashes \
                     (e.g. `openssl rand -hex 32`)",
                );
                SecretValue::Unset
            }
        },
    };
    if !is_local && matches!(r.raw(KEY), Some(RawValue::Plain(_))) {
        r.err(
            KEY,
            "is in plain text; set it with `pulumi config set --secret rustlb:apiKey`",
        );
    }
    api_key
}

/// The key lands in a systemd environment file: printable, no quotes or backslashes.
fn usable(v: &Value) -> Option<SecretString> {
    match v {
        Value::String(s)
            if s.len() >= 16
                && s.chars()
                    .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '\'')) =>
        {
            Some(SecretString::from(s.clone()))
        }
        _ => None,
    }
}
