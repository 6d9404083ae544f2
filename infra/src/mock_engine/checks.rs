//! Checks on a finished run: what the provider would refuse, undeclared uses of other resources, and the destroy order.

use super::Run;
use super::record::Registration;
use crate::wire::{SECRET_PLACEHOLDER, is_unknown, reveal};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

impl Run {
    /// Everything the provider would refuse: each registration and invoke checked against the
    /// schema cut, and each resource against the provider's rules the schema cannot express.
    pub fn provider_problems(&self) -> Vec<String> {
        let schema = crate::provider_schema::digitalocean();
        let resources = self.resources.iter().filter(|r| r.custom).flat_map(|r| {
            let mut problems = schema.check_resource(&r.type_, &r.inputs);
            problems.extend(crate::limits::check_registration(&r.type_, &r.inputs));
            problems
                .into_iter()
                .map(move |p| format!("{}: {p}", r.name))
        });
        let invokes = self
            .invokes
            .iter()
            .flat_map(|i| schema.check_function(&i.token, &i.args));
        resources.chain(invokes).collect()
    }

    /// Every URN `r` depends on, directly or through the resources it depends on.
    pub fn transitive_dependencies(&self, r: &Registration) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = r.dependencies.clone();
        while let Some(urn) = todo.pop() {
            if seen.insert(urn.clone())
                && let Some(dep) = self.by_urn(&urn)
            {
                todo.extend(dep.dependencies.iter().cloned());
            }
        }
        seen
    }

    /// Each use of another resource's id, computed output or name that its declared
    /// dependencies, followed transitively, do not cover. Without the declaration the engine
    /// cannot order the two in `pulumi destroy` or in a replacement.
    pub fn undeclared_uses(&self) -> Vec<String> {
        let custom: Vec<&Registration> = self.resources.iter().filter(|r| r.custom).collect();
        let mut problems = Vec::new();
        for r in &custom {
            let declared = self.transitive_dependencies(r);
            let mut leaves = Vec::new();
            string_leaves(&reveal(&r.inputs), "", &mut leaves);
            for d in &custom {
                if d.urn == r.urn || declared.contains(&d.urn) {
                    continue;
                }
                let marks = marks_of(d);
                if let Some((input, what)) = leaves.iter().find_map(|(path, text)| {
                    marks
                        .iter()
                        .find(|(_, mark)| refers_to(text, mark))
                        .map(|(what, _)| (path.clone(), what.clone()))
                }) {
                    problems.push(format!(
                        "{} ({}) uses the {what} of {} in {input} without declaring a dependency on it",
                        r.name,
                        short_type(&r.type_),
                        d.name
                    ));
                }
            }
        }
        problems
    }

    /// The order in which `pulumi destroy` deletes the custom resources: a resource goes only
    /// after every resource that depends on it. Ties (resources the engine would delete in
    /// parallel) are listed by name.
    pub fn destroy_order(&self) -> Vec<String> {
        let custom: Vec<&Registration> = self.resources.iter().filter(|r| r.custom).collect();
        let mut left: BTreeMap<&str, &Registration> =
            custom.iter().map(|r| (r.urn.as_str(), *r)).collect();
        let mut order = Vec::new();
        while !left.is_empty() {
            let ready: Vec<&str> = left
                .keys()
                .filter(|urn| {
                    !left
                        .values()
                        .any(|other| other.dependencies.iter().any(|d| d == *urn))
                })
                .copied()
                .collect();
            // A cycle cannot come out of a creation order; stop rather than loop.
            if ready.is_empty() {
                order.extend(
                    left.values()
                        .map(|r| format!("{} (in a dependency cycle)", r.name)),
                );
                break;
            }
            let mut names: Vec<String> = ready.iter().map(|u| left[u].name.clone()).collect();
            names.sort();
            order.extend(names);
            for urn in ready {
                left.remove(urn);
            }
        }
        order
    }
}

/// The token's last part (`Droplet`).
fn short_type(type_: &str) -> &str {
    type_.rsplit(':').next().unwrap_or(type_)
}

/// Every string inside `v`, with its path (`forwardingRules[1].certificateName`).
fn string_leaves(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((path.to_string(), s.clone())),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                string_leaves(x, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                string_leaves(x, &p, out);
            }
        }
        _ => {}
    }
}

/// What identifies a resource to another: its id, the outputs the provider computed, and the
/// name DigitalOcean knows it by. Secrets and values too short to be told apart are left out.
fn marks_of(d: &Registration) -> Vec<(String, String)> {
    let mut marks = Vec::new();
    if !d.id.is_empty() {
        marks.push(("id".to_string(), d.id.clone()));
    }
    if let Value::Object(m) = &d.computed {
        for (k, v) in m {
            if let Some(text) = v
                .as_str()
                .filter(|t| *t != SECRET_PLACEHOLDER && !is_unknown(v))
            {
                marks.push((k.clone(), text.to_string()));
            }
        }
    }
    if let Some(name) = d.inputs["name"].as_str() {
        marks.push(("name".to_string(), name.to_string()));
    }
    marks.retain(|(_, text)| text.len() >= 6);
    marks
}

/// `text` is the mark, or holds it whole (a URL holding a host, a key holding a name).
fn refers_to(text: &str, mark: &str) -> bool {
    text == mark || (mark.len() >= 12 && text.contains(mark))
}
