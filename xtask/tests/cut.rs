//! Cuts a small fixture schema and checks what the cut keeps, drops and records.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use xtask::{CutError, Source, cut, render, sha256_hex, tokens_of_cut};

const FIXTURE: &[u8] = include_bytes!("fixtures/schema.json");
const SERVER: &str = "demo:index/server:Server";
const GET_KEY: &str = "demo:index/getServerKey:getServerKey";

fn source(tag: &str) -> Source {
    Source {
        repository: "example/demo".into(),
        tag: tag.into(),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        path: "schema.json".into(),
    }
}

fn tokens(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn demo_cut() -> Value {
    cut(FIXTURE, &tokens(&[SERVER, GET_KEY]), &source("v1.2.3")).unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

/// True when the keyword appears anywhere except as the name of a property.
fn has_keyword(v: &Value, keyword: &str) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| {
            if k == "properties" || k == "inputProperties" {
                v.as_object()
                    .unwrap()
                    .values()
                    .any(|spec| has_keyword(spec, keyword))
            } else {
                k == keyword || has_keyword(v, keyword)
            }
        }),
        Value::Array(a) => a.iter().any(|x| has_keyword(x, keyword)),
        _ => false,
    }
}

#[test]
fn keeps_the_named_elements_and_every_type_they_reach() {
    let c = demo_cut();
    assert_eq!(keys(&c["resources"]), vec![SERVER]);
    assert_eq!(keys(&c["functions"]), vec![GET_KEY]);
    // ServerTarget is reached only through ServerRule: transitive.
    assert_eq!(
        keys(&c["types"]),
        vec![
            "demo:index/ServerRule:ServerRule",
            "demo:index/ServerTarget:ServerTarget",
            "demo:index:Size"
        ]
    );
    assert_eq!(c["name"], "demo");
    assert_eq!(
        c["version"], "1.2.3",
        "the tag's version is the provider version"
    );
}

#[test]
fn drops_prose_but_keeps_facts() {
    let c = demo_cut();
    for keyword in ["description", "language", "stateInputs"] {
        assert!(!has_keyword(&c, keyword), "{keyword} left in {c:#}");
    }
    let server = &c["resources"][SERVER];
    // A property that happens to be called `description` is a fact and stays.
    assert_eq!(
        server["properties"]["description"],
        json!({"type": "string"})
    );
    assert_eq!(
        server["inputProperties"]["name"]["willReplaceOnChanges"],
        true
    );
    assert_eq!(server["properties"]["password"]["secret"], true);
    assert_eq!(server["requiredInputs"], json!(["size"]));
    assert_eq!(
        server["inputProperties"]["legacy"]["deprecationMessage"],
        "deprecated"
    );
    assert_eq!(
        c["types"]["demo:index/ServerRule:ServerRule"]["required"],
        json!(["port"])
    );
    assert_eq!(
        c["functions"][GET_KEY]["outputs"]["required"],
        json!(["id", "key"])
    );
    assert!(c.get("config").is_none() && c.get("displayName").is_none());
    assert_eq!(c["meta"]["moduleFormat"], "(.*)(?:/[^/]*)");
}

#[test]
fn enum_entries_repeating_a_value_or_a_name_are_dropped() {
    let c = demo_cut();
    let values: Vec<&str> = c["types"]["demo:index:Size"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    // "Small_" repeats "Small" once punctuation is gone; "BigTwo" repeats the value "s-2".
    assert_eq!(values, vec!["s-1", "s-2"]);
}

#[test]
fn records_where_the_cut_came_from() {
    let c = demo_cut();
    assert_eq!(c["cut"]["repository"], "example/demo");
    assert_eq!(c["cut"]["tag"], "v1.2.3");
    assert_eq!(
        c["cut"]["commit"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(c["cut"]["sha256"], sha256_hex(FIXTURE));
    assert_eq!(c["cut"]["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn a_re_cut_selects_what_the_previous_cut_held_and_renders_identically() {
    let first = demo_cut();
    assert_eq!(tokens_of_cut(&first), tokens(&[SERVER, GET_KEY]));
    let again = cut(FIXTURE, &tokens_of_cut(&first), &source("v1.2.3")).unwrap();
    assert_eq!(render(&first), render(&again));
    assert!(render(&first).ends_with("}\n"));
}

#[test]
fn refuses_unknown_tokens_dangling_refs_and_tags_without_a_version() {
    assert_eq!(
        cut(
            FIXTURE,
            &tokens(&["demo:index/nope:Nope"]),
            &source("v1.2.3")
        ),
        Err(CutError::UnknownToken("demo:index/nope:Nope".into()))
    );
    assert_eq!(
        cut(FIXTURE, &tokens(&[SERVER]), &source("main")),
        Err(CutError::BadTag("main".into()))
    );
    let broken = String::from_utf8(FIXTURE.to_vec()).unwrap().replace(
        "\"demo:index/ServerTarget:ServerTarget\": {",
        "\"demo:index/Gone:Gone\": {",
    );
    assert_eq!(
        cut(broken.as_bytes(), &tokens(&[SERVER]), &source("v1.2.3")),
        Err(CutError::DanglingRef {
            from: "demo:index/ServerRule:ServerRule".into(),
            to: "demo:index/ServerTarget:ServerTarget".into()
        })
    );
    assert!(matches!(
        cut(b"[1, 2]", &tokens(&[SERVER]), &source("v1.2.3")),
        Err(CutError::NotASchema(_))
    ));
}
