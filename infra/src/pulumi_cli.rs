//! The Pulumi CLI's stack-config rule, applied before the program runs: required keys, types and secrets.
//!
//! The CLI refuses a stack before it starts the program when a key declared in Pulumi.yaml has
//! neither a default nor a stack value, when a value is not of its declared type, or when a key
//! declared `secret: true` holds plain text. Source: pulumi/pulumi `pkg/workspace/config.go`
//! (`mergeConfig`, `validateStackConfigValues`) and `sdk/go/common/workspace/project.go`
//! (`Project.Validate`, `ValidateConfigValue`), at 1b5949891b.

use serde_json::Value;
use std::collections::BTreeMap;

/// One key of Pulumi.yaml's `config` block.
#[derive(Debug, Clone, Default)]
pub struct Declaration {
    /// `string`, `integer`, `boolean`, `array` or `object`; `None` when untyped.
    pub type_: Option<String>,
    /// The item type of an array.
    pub items: Option<String>,
    /// The default the CLI applies when the stack has no value.
    pub default: Option<Value>,
    /// A fixed value (the only form a key of another namespace may take).
    pub value: Option<Value>,
    /// The stack value must be encrypted.
    pub secret: bool,
}

/// A project: its name and declared config.
#[derive(Debug, Clone)]
pub struct Project {
    /// `name` of Pulumi.yaml.
    pub name: String,
    /// Declared keys as written (`key` or `namespace:key`).
    pub config: BTreeMap<String, Declaration>,
}

/// A stack value as the CLI holds it: scalars as text, structures as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StackValue {
    /// The value (a string for scalars, whatever their YAML type; arrays and objects as JSON).
    pub value: Value,
    /// Encrypted (`secure:` in the file, or set with `--secret`).
    pub secure: bool,
}

/// A stack's config, keyed by full name (`namespace:key`).
pub type StackValues = BTreeMap<String, StackValue>;

impl Project {
    /// Reads Pulumi.yaml's text and applies the CLI's own checks of it.
    pub fn parse(text: &str) -> Result<Project, String> {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| format!("Pulumi.yaml: {e}"))?;
        let name = doc["name"]
            .as_str()
            .ok_or("project is missing a 'name' attribute")?
            .to_string();
        let mut config = BTreeMap::new();
        if let Some(block) = doc["config"].as_mapping() {
            for (key, decl) in block {
                let key = key
                    .as_str()
                    .ok_or("config keys must be strings")?
                    .to_string();
                let json = serde_json::to_value(decl).map_err(|e| format!("{key}: {e}"))?;
                let declaration = match &json {
                    // A bare value is shorthand for `value:`.
                    Value::Object(m) if m.contains_key("type") || m.contains_key("default") => {
                        Declaration {
                            type_: m.get("type").and_then(Value::as_str).map(str::to_string),
                            items: m
                                .get("items")
                                .and_then(|i| i.get("type"))
                                .and_then(Value::as_str)
                                .map(str::to_string),
                            default: m.get("default").cloned(),
                            value: m.get("value").cloned(),
                            secret: m.get("secret") == Some(&Value::Bool(true)),
                        }
                    }
                    other => Declaration {
                        value: Some(other.clone()),
                        ..Declaration::default()
                    },
                };
                config.insert(key, declaration);
            }
        }
        let project = Project { name, config };
        project.validate()?;
        Ok(project)
    }

    fn namespaced(&self, key: &str) -> String {
        if key.contains(':') {
            key.to_string()
        } else {
            format!("{}:{key}", self.name)
        }
    }

    /// `Project.Validate`: declaration shapes the CLI refuses before any command.
    fn validate(&self) -> Result<(), String> {
        for (key, d) in &self.config {
            if d.default.is_some() && d.value.is_some() {
                return Err(format!(
                    "project config '{key}' cannot have both a 'default' and 'value' attribute"
                ));
            }
            let own = !key.contains(':') || key.starts_with(&format!("{}:", self.name));
            match (&d.type_, own) {
                (Some(t), true) => {
                    if t == "array" && d.items.is_none() {
                        return Err(format!(
                            "The configuration key '{key}' declares an array but does not specify the underlying type via the 'items' attribute"
                        ));
                    }
                    if let Some(default) = &d.default
                        && !type_matches(t, d.items.as_deref(), default)
                    {
                        return Err(format!(
                            "The default value specified for configuration key '{key}' is not of the expected type '{}'",
                            full_type(t, d.items.as_deref())
                        ));
                    }
                }
                (Some(_), false) => {
                    return Err(format!(
                        "Configuration key '{key}' is not namespaced by the project and should not define a type"
                    ));
                }
                (None, false) if d.value.is_none() => {
                    return Err(format!(
                        "Configuration key '{key}' is namespaced and must provide an attribute 'value'"
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `ValidateStackConfigAndApplyProjectConfig`: refuses what the CLI refuses, else returns the
    /// stack's config with the project's defaults merged in.
    pub fn apply(&self, stack: &str, values: &StackValues) -> Result<StackValues, String> {
        let mut merged = values.clone();
        let mut missing = Vec::new();
        for (key, d) in &self.config {
            let full = self.namespaced(key);
            if merged.contains_key(&full) {
                continue;
            }
            match d.default.as_ref().or(d.value.as_ref()) {
                Some(v) => {
                    merged.insert(full, StackValue::from_yaml(v, false));
                }
                None if full.starts_with(&format!("{}:", self.name)) => missing.push(key.clone()),
                None => {}
            }
        }
        if !missing.is_empty() {
            return Err(missing_message(stack, &mut missing));
        }
        for (key, d) in &self.config {
            let Some(t) = &d.type_ else { continue };
            let Some(v) = merged.get(&self.namespaced(key)) else {
                continue;
            };
            if d.secret && !v.secure {
                return Err(format!(
                    "Stack '{stack}' with configuration key '{key}' must be encrypted as it's secret"
                ));
            }
            if !type_matches(t, d.items.as_deref(), &v.value) {
                return Err(format!(
                    "Stack '{stack}' with configuration key '{key}' must be of type '{}'",
                    full_type(t, d.items.as_deref())
                ));
            }
        }
        Ok(merged)
    }
}

impl StackValue {
    /// A value as the CLI stores it: YAML scalars become their text, structures stay structured.
    pub fn from_yaml(v: &Value, secure: bool) -> StackValue {
        let value = match v {
            Value::String(_) | Value::Array(_) | Value::Object(_) => v.clone(),
            Value::Null => Value::String(String::new()),
            other => Value::String(other.to_string()),
        };
        StackValue { value, secure }
    }
}

/// Reads a stack file's `config:` block the way the CLI holds it (`secure:` values stay encrypted).
pub fn stack_values(text: &str) -> Result<StackValues, String> {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| format!("not a valid stack file: {e}"))?;
    let mut values = StackValues::new();
    if let Some(block) = doc["config"].as_mapping() {
        for (key, v) in block {
            let key = key.as_str().ok_or("config keys must be strings")?;
            let json = serde_json::to_value(v).map_err(|e| format!("{key}: {e}"))?;
            let secure =
                matches!(&json, Value::Object(m) if m.len() == 1 && m.contains_key("secure"));
            values.insert(key.to_string(), StackValue::from_yaml(&json, secure));
        }
    }
    Ok(values)
}

/// `pulumi config set [--secret] [--path] KEY VALUE`: a plain key takes the text; a path
/// (`k[0]`, `k.field`) writes inside the structure it names.
pub fn config_set(values: &mut StackValues, key: &str, value: &str, secret: bool, path: bool) {
    let (root, steps) = if path {
        split_path(key)
    } else {
        (key.to_string(), Vec::new())
    };
    let leaf = Value::String(value.to_string());
    let entry = values.entry(root).or_insert(StackValue {
        value: Value::Null,
        secure: false,
    });
    entry.secure |= secret;
    if steps.is_empty() {
        entry.value = leaf;
        return;
    }
    let mut slot = &mut entry.value;
    for step in steps {
        slot = match step {
            Step::Index(i) => {
                if !slot.is_array() {
                    *slot = Value::Array(Vec::new());
                }
                let list = slot.as_array_mut().expect("just made an array");
                if list.len() <= i {
                    list.resize(i + 1, Value::Null);
                }
                &mut list[i]
            }
            Step::Field(f) => {
                if !slot.is_object() {
                    *slot = Value::Object(Default::default());
                }
                slot.as_object_mut()
                    .expect("just made an object")
                    .entry(f)
                    .or_insert(Value::Null)
            }
        };
    }
    *slot = leaf;
}

enum Step {
    Index(usize),
    Field(String),
}

fn split_path(key: &str) -> (String, Vec<Step>) {
    // `ns:key.a[0].b`: the namespace's colon belongs to the root name.
    let cut = key.find(['.', '[']).unwrap_or(key.len());
    let (root, mut rest) = key.split_at(cut);
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            steps.push(Step::Index(r[..end].parse().unwrap_or(0)));
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let r = rest.trim_start_matches('.');
            let end = r.find(['.', '[']).unwrap_or(r.len());
            steps.push(Step::Field(r[..end].to_string()));
            rest = &r[end..];
        }
    }
    (root.to_string(), steps)
}

/// `ValidateConfigValue`: scalars arrive as text, so integers and booleans may be strings.
fn type_matches(t: &str, items: Option<&str>, v: &Value) -> bool {
    match (t, v) {
        ("string", Value::String(_)) => true,
        ("integer", Value::Number(n)) => n.as_f64().is_some_and(|f| f.fract() == 0.0),
        ("integer", Value::String(s)) => s.parse::<i64>().is_ok(),
        ("boolean", Value::Bool(_)) => true,
        ("boolean", Value::String(s)) => s == "true" || s == "false",
        ("object", Value::Object(_)) => true,
        ("array", Value::Array(a)) => {
            items.is_some_and(|i| a.iter().all(|x| type_matches(i, None, x)))
        }
        _ => false,
    }
}

fn full_type(t: &str, items: Option<&str>) -> String {
    match items {
        Some(i) => format!("array<{i}>"),
        None => t.to_string(),
    }
}

fn missing_message(stack: &str, keys: &mut [String]) -> String {
    keys.sort();
    let n = keys.len();
    let listed = match &*keys {
        [one] => format!("value '{one}'"),
        [init @ .., last] => {
            let mut s = String::from("values ");
            for (i, k) in init.iter().enumerate() {
                s.push_str(&format!("'{k}'"));
                s.push_str(if i + 2 == n { " " } else { ", " });
            }
            s.push_str(&format!("and '{last}'"));
            s
        }
        [] => String::new(),
    };
    format!("Stack '{stack}' is missing configuration {listed}")
}
