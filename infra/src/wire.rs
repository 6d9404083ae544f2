//! Pulumi's wire values: the secret wrapper, the unknown sentinel, and how a person may see them.

// The config checks use the JSON half; the protobuf half and most helpers serve the engine.
#![cfg_attr(not(feature = "cloud"), allow(dead_code))]

use serde_json::{Value, json};

#[cfg(feature = "cloud")]
pub use proto::{struct_to_json, to_json, to_prost, to_struct};

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

/// Signature value of an output value: a value with the URNs of the resources it came from.
pub const OUTPUT_SIG: &str = "d0e6a833031e9bbcd3f4e8bde6ca49a4";

/// `v` as an output value that depends on `urns`: an unknown stays unknown and a secret stays
/// secret (or becomes one, with `secret`), the way the engine reads output values back from a
/// transform.
pub fn output_value(v: &Value, urns: &[String], secret: bool) -> Value {
    let mut out = serde_json::Map::new();
    out.insert(SIG_KEY.into(), json!(OUTPUT_SIG));
    let inner = if is_secret(v) {
        v.get("value").unwrap_or(&Value::Null)
    } else {
        v
    };
    if secret || is_secret(v) {
        out.insert("secret".into(), json!(true));
    }
    if !is_unknown(inner) {
        out.insert("value".into(), inner.clone());
    }
    out.insert("dependencies".into(), json!(urns));
    Value::Object(out)
}

/// True when `v` is an output value.
pub fn is_output(v: &Value) -> bool {
    v.get(SIG_KEY).and_then(Value::as_str) == Some(OUTPUT_SIG)
}

/// Every URN that the output values inside `v` carry (the engine's `addOutputDependencies`).
pub fn output_dependencies(v: &Value, into: &mut Vec<String>) {
    if is_output(v) {
        if let Some(deps) = v["dependencies"].as_array() {
            into.extend(deps.iter().filter_map(|d| d.as_str().map(str::to_string)));
        }
        if let Some(inner) = v.get("value") {
            output_dependencies(inner, into);
        }
        return;
    }
    match v {
        Value::Array(a) => a.iter().for_each(|x| output_dependencies(x, into)),
        Value::Object(m) => m.values().for_each(|x| output_dependencies(x, into)),
        _ => {}
    }
}

/// The value with output values turned back into plain, secret or unknown values, as the engine
/// does before a custom resource's inputs reach its provider (`downgradeOutputValues`).
pub fn downgrade_outputs(v: &Value) -> Value {
    if is_output(v) {
        let inner = match v.get("value") {
            Some(inner) => downgrade_outputs(inner),
            None => Value::String(UNKNOWN.into()),
        };
        return if v["secret"] == true {
            secret(inner)
        } else {
            inner
        };
    }
    match v {
        Value::Array(a) => Value::Array(a.iter().map(downgrade_outputs).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), downgrade_outputs(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Conversions to and from the protobuf values of the engine's gRPC messages.
#[cfg(feature = "cloud")]
mod proto {
    use prost_types::value::Kind;
    use prost_types::{ListValue, Struct};
    use serde_json::{Value, json};

    /// Converts a protobuf value to JSON, keeping secret wrappers as objects.
    pub fn to_json(v: &prost_types::Value) -> Value {
        match &v.kind {
            None | Some(Kind::NullValue(_)) => Value::Null,
            Some(Kind::NumberValue(n)) => {
                if n.fract() == 0.0 && n.abs() < 9.0e15 {
                    json!(*n as i64)
                } else {
                    json!(n)
                }
            }
            Some(Kind::StringValue(s)) => Value::String(s.clone()),
            Some(Kind::BoolValue(b)) => Value::Bool(*b),
            Some(Kind::StructValue(s)) => struct_to_json(s),
            Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(to_json).collect()),
        }
    }

    /// Converts a protobuf struct to a JSON object.
    pub fn struct_to_json(s: &Struct) -> Value {
        Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        )
    }

    /// Converts JSON back to protobuf.
    pub fn to_prost(v: &Value) -> prost_types::Value {
        let kind = match v {
            Value::Null => Kind::NullValue(0),
            Value::Bool(b) => Kind::BoolValue(*b),
            Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
            Value::String(s) => Kind::StringValue(s.clone()),
            Value::Array(a) => Kind::ListValue(ListValue {
                values: a.iter().map(to_prost).collect(),
            }),
            Value::Object(m) => Kind::StructValue(Struct {
                fields: m.iter().map(|(k, v)| (k.clone(), to_prost(v))).collect(),
            }),
        };
        prost_types::Value { kind: Some(kind) }
    }

    /// Converts a JSON object to a protobuf struct (anything else becomes an empty struct).
    pub fn to_struct(v: &Value) -> Struct {
        match to_prost(v).kind {
            Some(Kind::StructValue(s)) => s,
            _ => Struct::default(),
        }
    }
}
