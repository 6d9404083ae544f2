//! Cuts the slice of a Pulumi provider schema that the infra program uses, keeping facts and dropping prose.
//!
//! The cut keeps every resource and function the program names, every type they reach through
//! `$ref` (transitively), and for each only what code generation and validation need: property
//! types, required lists, enum values, `willReplaceOnChanges`, `secret`. Descriptions,
//! per-language naming hints and state-lookup inputs are dropped. The source of the cut (tag,
//! commit, sha256 of the schema file) is recorded under `cut`.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Where a schema file came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Repository the file was taken from, e.g. `pulumi/pulumi-digitalocean`.
    pub repository: String,
    /// Release tag, e.g. `v4.76.0`; its version becomes the provider version the engine installs.
    pub tag: String,
    /// The commit the tag points at.
    pub commit: String,
    /// Path of the schema file in the repository.
    pub path: String,
}

/// Why a cut could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CutError {
    /// The input is not a provider schema.
    #[error("not a provider schema: {0}")]
    NotASchema(String),
    /// A requested token is neither a resource nor a function of the schema.
    #[error("{0} is neither a resource nor a function of this schema")]
    UnknownToken(String),
    /// A `$ref` points at a type the schema does not define.
    #[error("{from} refers to {to}, which the schema does not define")]
    DanglingRef {
        /// The element holding the reference.
        from: String,
        /// The missing type token.
        to: String,
    },
    /// The tag does not name a version.
    #[error("tag {0:?} is not a version like v4.76.0")]
    BadTag(String),
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The resource and function tokens an existing cut holds, so a re-cut keeps the same selection.
pub fn tokens_of_cut(cut: &Value) -> BTreeSet<String> {
    ["resources", "functions"]
        .iter()
        .filter_map(|section| cut.get(section).and_then(Value::as_object))
        .flat_map(|m| m.keys().cloned())
        .collect()
}

/// Cuts `schema_bytes` (the provider's schema.json) down to `tokens` and what they reach.
pub fn cut(
    schema_bytes: &[u8],
    tokens: &BTreeSet<String>,
    source: &Source,
) -> Result<Value, CutError> {
    let schema: Value = serde_json::from_slice(schema_bytes)
        .map_err(|e| CutError::NotASchema(format!("invalid JSON: {e}")))?;
    let section = |name: &str| -> Result<&Map<String, Value>, CutError> {
        match schema.get(name) {
            Some(Value::Object(m)) => Ok(m),
            None => Ok(empty_map()),
            Some(_) => Err(CutError::NotASchema(format!("`{name}` is not an object"))),
        }
    };
    let name = schema
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| CutError::NotASchema("no `name`".into()))?;
    let (all_resources, all_functions, all_types) = (
        section("resources")?,
        section("functions")?,
        section("types")?,
    );
    let version = source
        .tag
        .strip_prefix('v')
        .filter(|v| v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok()))
        .ok_or_else(|| CutError::BadTag(source.tag.clone()))?;

    let mut resources = BTreeMap::new();
    let mut functions = BTreeMap::new();
    let mut pending: Vec<(String, String)> = Vec::new();
    for token in tokens {
        if let Some(r) = all_resources.get(token) {
            let kept = strip_resource(r);
            collect_refs(&kept, token, &mut pending);
            resources.insert(token.clone(), kept);
        } else if let Some(f) = all_functions.get(token) {
            let kept = strip_function(f);
            collect_refs(&kept, token, &mut pending);
            functions.insert(token.clone(), kept);
        } else {
            return Err(CutError::UnknownToken(token.clone()));
        }
    }
    let mut types = BTreeMap::new();
    while let Some((from, to)) = pending.pop() {
        if types.contains_key(&to) {
            continue;
        }
        let t = all_types.get(&to).ok_or_else(|| CutError::DanglingRef {
            from: from.clone(),
            to: to.clone(),
        })?;
        let kept = strip_type(t);
        collect_refs(&kept, &to, &mut pending);
        types.insert(to, kept);
    }

    let mut out = Map::new();
    out.insert("name".into(), json!(name));
    out.insert("version".into(), json!(version));
    if let Some(meta) = schema.get("meta") {
        out.insert("meta".into(), meta.clone());
    }
    out.insert(
        "cut".into(),
        json!({
            "repository": source.repository,
            "tag": source.tag,
            "commit": source.commit,
            "path": source.path,
            "sha256": sha256_hex(schema_bytes),
            "note": "generated by `cargo xtask cut-schema`; do not edit by hand",
        }),
    );
    out.insert(
        "resources".into(),
        Value::Object(resources.into_iter().collect()),
    );
    out.insert(
        "functions".into(),
        Value::Object(functions.into_iter().collect()),
    );
    out.insert("types".into(), Value::Object(types.into_iter().collect()));
    Ok(Value::Object(out))
}

fn empty_map() -> &'static Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Map::new)
}

/// Keywords of a type or property that carry prose, not facts.
const PROSE: &[&str] = &["description", "language"];

/// A resource: its outputs and inputs; state-lookup inputs are not used by the program.
fn strip_resource(r: &Value) -> Value {
    strip_object(r, |key, v| match key {
        "properties" | "inputProperties" => Keep::As(strip_property_map(v)),
        "stateInputs" => Keep::Nothing,
        _ => Keep::Facts,
    })
}

/// A function: its `inputs` and `outputs` object specs.
fn strip_function(f: &Value) -> Value {
    strip_object(f, |key, v| match key {
        "inputs" | "outputs" => Keep::As(strip_spec(v)),
        _ => Keep::Facts,
    })
}

/// An object or enum type; enum entries that repeat a value or a name are dropped, since code
/// generators turn them into duplicate variants.
fn strip_type(t: &Value) -> Value {
    let mut kept = strip_spec(t);
    if let Some(Value::Array(entries)) = kept.get_mut("enum") {
        let mut seen = BTreeSet::new();
        entries.retain(|e| {
            let value = e.get("value").map(Value::to_string).unwrap_or_default();
            let name: String = e
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .collect();
            let fresh_value = seen.insert(format!("value:{value}"));
            let fresh_name = name.is_empty() || seen.insert(format!("name:{name}"));
            fresh_value && fresh_name
        });
    }
    kept
}

fn strip_property_map(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(name, spec)| (name.clone(), strip_spec(spec)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A type or property spec. Keys of `properties` are property names, never keywords, so the
/// walk follows the schema's structure instead of dropping every key called `description`.
fn strip_spec(v: &Value) -> Value {
    strip_object(v, |key, v| match (key, v) {
        ("properties", _) => Keep::As(strip_property_map(v)),
        ("items" | "additionalProperties", _) => Keep::As(strip_spec(v)),
        ("oneOf" | "enum", Value::Array(a)) => {
            Keep::As(Value::Array(a.iter().map(strip_spec).collect()))
        }
        _ => Keep::Facts,
    })
}

/// What becomes of one key of a schema object.
enum Keep {
    /// This value instead of the original.
    As(Value),
    /// Dropped.
    Nothing,
    /// Kept as is, unless it is prose: [`PROSE`] is dropped, a deprecation message shortened.
    Facts,
}

/// `v`'s keys, each kept as `rule` says; anything but an object is kept whole.
fn strip_object(v: &Value, rule: impl Fn(&str, &Value) -> Keep) -> Value {
    let Value::Object(m) = v else {
        return v.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let kept = match rule(k, v) {
            Keep::As(kept) => kept,
            Keep::Nothing => continue,
            Keep::Facts if k == "deprecationMessage" => json!("deprecated"),
            Keep::Facts if PROSE.contains(&k.as_str()) => continue,
            Keep::Facts => v.clone(),
        };
        out.insert(k.clone(), kept);
    }
    Value::Object(out)
}

/// Every `#/types/...` reference under `v`, paired with the element that holds it.
fn collect_refs(v: &Value, from: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "$ref"
                    && let Some(target) = v.as_str().and_then(|s| s.strip_prefix("#/types/"))
                {
                    out.push((from.to_string(), target.to_string()));
                } else {
                    collect_refs(v, from, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, from, out)),
        _ => {}
    }
}

/// Pretty JSON with a trailing newline, stable across runs (keys sorted).
pub fn render(cut: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&sorted(cut)).expect("JSON values serialise");
    text.push('\n');
    text
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let ordered: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(ordered.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}
