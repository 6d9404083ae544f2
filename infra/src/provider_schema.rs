//! The DigitalOcean provider schema cut (`schema/digitalocean.json`): what each resource accepts, checked against what the program registers.
//!
//! The cut comes from pulumi-digitalocean's own schema (`cargo xtask cut-schema`), so a check
//! here holds the program against material nobody on this project wrote: type tokens, input
//! names and types, required inputs, enum values and nested object shapes.

use serde_json::{Map, Value};
use std::sync::OnceLock;

use crate::wire::{is_secret, is_unknown};

/// The cut, as generated; build.rs generates the typed bindings from the same file.
const CUT: &str = include_str!("../schema/digitalocean.json");

/// The parsed cut.
pub struct ProviderSchema {
    doc: Value,
}

/// The cut this binary was built with.
pub fn digitalocean() -> &'static ProviderSchema {
    static SCHEMA: OnceLock<ProviderSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| ProviderSchema {
        doc: serde_json::from_str(CUT).expect("the committed schema cut is JSON"),
    })
}

impl ProviderSchema {
    /// The provider version the engine installs (the release the cut was taken from).
    pub fn version(&self) -> &str {
        self.doc["version"].as_str().unwrap_or_default()
    }

    /// Where the cut came from: repository, tag, commit, sha256 of the schema file.
    pub fn source(&self) -> &Value {
        &self.doc["cut"]
    }

    /// The resource spec of a type token.
    pub fn resource(&self, type_: &str) -> Option<&Value> {
        self.doc["resources"].get(type_)
    }

    /// The function spec of a token.
    pub fn function(&self, token: &str) -> Option<&Value> {
        self.doc["functions"].get(token)
    }

    /// Inputs of a resource whose change makes the provider replace it.
    pub fn replaced_by(&self, type_: &str) -> Vec<String> {
        self.resource(type_)
            .and_then(|r| r["inputProperties"].as_object())
            .map(|props| {
                props
                    .iter()
                    .filter(|(_, spec)| spec["willReplaceOnChanges"] == true)
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Output properties of a resource with their specs.
    pub fn outputs(&self, type_: &str) -> Option<&Map<String, Value>> {
        self.resource(type_)
            .and_then(|r| r["properties"].as_object())
    }

    /// What is wrong with `inputs` as the inputs of a `type_` resource; empty when nothing is.
    ///
    /// Secrets are checked by their content; unknown values (ids before creation) pass, as
    /// they do at the engine.
    pub fn check_resource(&self, type_: &str, inputs: &Value) -> Vec<String> {
        let Some(resource) = self.resource(type_) else {
            return vec![format!("{type_} is not a resource of the provider schema")];
        };
        let mut problems = Vec::new();
        self.check_object(
            &resource["inputProperties"],
            &resource["requiredInputs"],
            inputs,
            type_,
            &mut problems,
        );
        problems
    }

    /// What is wrong with `args` as the arguments of function `token`.
    pub fn check_function(&self, token: &str, args: &Value) -> Vec<String> {
        let Some(function) = self.function(token) else {
            return vec![format!("{token} is not a function of the provider schema")];
        };
        let mut problems = Vec::new();
        let spec = &function["inputs"];
        self.check_object(
            &spec["properties"],
            &spec["required"],
            args,
            token,
            &mut problems,
        );
        problems
    }

    fn check_object(
        &self,
        properties: &Value,
        required: &Value,
        value: &Value,
        path: &str,
        problems: &mut Vec<String>,
    ) {
        let value = reveal_top(value);
        if is_unknown(value) {
            return;
        }
        let Some(fields) = value.as_object() else {
            problems.push(format!("{path}: expected an object, got {value}"));
            return;
        };
        let empty = Map::new();
        let properties = properties.as_object().unwrap_or(&empty);
        for (name, v) in fields {
            match properties.get(name) {
                Some(spec) => self.check_value(spec, v, &format!("{path}.{name}"), problems),
                None if v.is_null() => {}
                None => problems.push(format!("{path}.{name}: not a property of the schema")),
            }
        }
        for name in required.as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if fields.get(name).is_none_or(Value::is_null) {
                problems.push(format!("{path}.{name}: required but missing"));
            }
        }
    }

    fn check_value(&self, spec: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
        let value = reveal_top(value);
        if value.is_null() || is_unknown(value) {
            return;
        }
        if let Some(alternatives) = spec["oneOf"].as_array() {
            let fits = alternatives.iter().any(|alt| {
                let mut scratch = Vec::new();
                self.check_value(alt, value, path, &mut scratch);
                scratch.is_empty()
            });
            if !fits {
                problems.push(format!("{path}: {value} matches none of {alternatives:?}"));
            }
            return;
        }
        if let Some(target) = spec["$ref"].as_str() {
            let Some(token) = target.strip_prefix("#/types/") else {
                return; // pulumi.json#/Asset and friends: opaque to this check
            };
            let Some(t) = self.doc["types"].get(token) else {
                problems.push(format!("{path}: refers to {token}, missing from the cut"));
                return;
            };
            if let Some(entries) = t["enum"].as_array() {
                if !entries.iter().any(|e| e["value"] == *value) {
                    let allowed: Vec<String> =
                        entries.iter().map(|e| e["value"].to_string()).collect();
                    problems.push(format!(
                        "{path}: {value} is not one of {}",
                        allowed.join(", ")
                    ));
                }
            } else {
                self.check_object(&t["properties"], &t["required"], value, path, problems);
            }
            return;
        }
        let ok = match spec["type"].as_str() {
            Some("string") => value.is_string(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            Some("array") => match value.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.check_value(&spec["items"], item, &format!("{path}[{i}]"), problems);
                    }
                    true
                }
                None => false,
            },
            Some("object") => match value.as_object() {
                Some(entries) => {
                    for (k, v) in entries {
                        self.check_value(
                            &spec["additionalProperties"],
                            v,
                            &format!("{path}.{k}"),
                            problems,
                        );
                    }
                    true
                }
                None => false,
            },
            _ => true,
        };
        if !ok {
            problems.push(format!(
                "{path}: expected {}, got {value}",
                spec["type"].as_str().unwrap_or("?")
            ));
        }
    }
}

/// A secret's content (the check is about shapes, not secrecy).
fn reveal_top(v: &Value) -> &Value {
    if is_secret(v) {
        reveal_top(v.get("value").unwrap_or(&Value::Null))
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POOL: &str = "digitalocean:index/databaseConnectionPool:DatabaseConnectionPool";
    const LB: &str = "digitalocean:index/loadBalancer:LoadBalancer";

    #[test]
    fn the_cut_records_its_source_and_pins_the_provider() {
        let s = digitalocean();
        assert_eq!(s.source()["repository"], "pulumi/pulumi-digitalocean");
        assert_eq!(format!("v{}", s.version()), s.source()["tag"]);
        assert_eq!(s.source()["sha256"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn pool_inputs_that_replace_the_pool_come_from_the_provider() {
        let mut replaced = digitalocean().replaced_by(POOL);
        replaced.sort();
        assert_eq!(
            replaced,
            ["clusterId", "dbName", "mode", "name", "size", "user"]
        );
    }

    #[test]
    fn wrong_names_types_shapes_and_missing_inputs_are_reported() {
        let s = digitalocean();
        let problems = s.check_resource(
            POOL,
            &json!({"clusterId": "c", "dbName": "app", "mode": "transaction", "size": "10", "colour": 1}),
        );
        assert!(
            problems
                .iter()
                .any(|p| p.ends_with(".size: expected integer, got \"10\"")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.ends_with(".colour: not a property of the schema")),
            "{problems:?}"
        );
        let problems = s.check_resource(POOL, &json!({"clusterId": "c"}));
        assert!(
            problems
                .iter()
                .any(|p| p.ends_with(".dbName: required but missing")),
            "{problems:?}"
        );
        let problems = s.check_resource(
            LB,
            &json!({"forwardingRules": [{"entryPort": 80, "entryProtocol": "http", "targetPort": 3000}]}),
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("forwardingRules[0].targetProtocol: required but missing")),
            "{problems:?}"
        );
        assert!(
            s.check_resource("digitalocean:index/nope:Nope", &json!({}))
                .len()
                == 1
        );
    }

    #[test]
    fn unknowns_and_secrets_are_checked_by_what_they_hold() {
        let s = digitalocean();
        let secret = json!({crate::wire::SIG_KEY: crate::wire::SECRET_SIG, "value": 10});
        let inputs = json!({
            "clusterId": crate::wire::UNKNOWN,
            "dbName": "app", "mode": "transaction", "size": secret,
        });
        assert_eq!(s.check_resource(POOL, &inputs), Vec::<String>::new());
    }
}
