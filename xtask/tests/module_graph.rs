//! The module graph of every workspace crate: no two modules may refer to each other, directly or around a loop.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use xtask::module_graph::{cycles, graph};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn no_crate_of_the_workspace_has_an_import_cycle() {
    let mut found = Vec::new();
    for krate in ["app", "lb", "infra", "entity", "migration", "xtask"] {
        for cycle in cycles(&workspace().join(krate).join("src")) {
            // The crate root is the empty path.
            let named: Vec<String> = cycle
                .iter()
                .map(|m| {
                    if m.is_empty() {
                        krate.to_string()
                    } else {
                        format!("{krate}::{m}")
                    }
                })
                .collect();
            found.push(named.join(" -> "));
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_checker_sees_the_references_it_is_about() {
    // An empty graph would pass the check above.
    let app = graph(&workspace().join("app/src"));
    assert!(app["routes"].contains("handlers::users"), "{app:#?}");
    assert!(
        app["request_log::writer"].contains("request_log::store"),
        "{app:#?}"
    );
    assert!(
        app["configuration"].contains("configuration::deploy"),
        "{app:#?}"
    );
    let lb = graph(&workspace().join("lb/src"));
    assert!(lb["proxy"].contains("upstream"), "{lb:#?}");
}

#[test]
fn a_cycle_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "mod inner;\npub use inner::X;\n").unwrap();
    std::fs::write(
        src.join("a/inner.rs"),
        "use crate::{b::Y, a};\n// crate::nothing\nconst S: &str = \"super::b\";\n",
    )
    .unwrap();
    std::fs::write(src.join("b.rs"), "use super::a::X;\n").unwrap();
    let found = cycles(src);
    let text: Vec<String> = found.iter().map(|c| c.join(" -> ")).collect();
    assert!(text.contains(&"a -> b -> a".to_owned()), "{text:?}");
    assert!(text.iter().any(|c| c.contains("a::inner -> a")), "{text:?}");
    let graph = graph(src);
    assert_eq!(graph["b"], BTreeSet::from(["a".to_owned()]));
}

#[test]
fn an_import_inside_a_test_module_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod x;\n").unwrap();
    std::fs::write(
        src.join("a.rs"),
        "pub fn f() {}\n\n#[cfg(test)]\nmod tests {\n    use crate::x;\n}\n",
    )
    .unwrap();
    std::fs::write(src.join("x.rs"), "").unwrap();
    let graph = graph(src);
    assert_eq!(graph["a"], BTreeSet::from(["x".to_owned()]), "{graph:#?}");
}

#[test]
fn super_inside_an_inline_module_counts_from_that_module() {
    // A test's `use super::*` is its own file; `super::super` leaves the file.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir(src.join("p")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod p;\nmod q;\n").unwrap();
    std::fs::write(src.join("q.rs"), "").unwrap();
    std::fs::write(src.join("p/mod.rs"), "mod c;\npub use c::f;\n").unwrap();
    std::fs::write(
        src.join("p/c.rs"),
        "pub fn f() { let _ = '{'; }\n#[cfg(test)]\nmod tests {\n    use super::*;\n    \
         mod deeper {\n        use super::super::f;\n        use self::super::super::super::super::q;\n    }\n}\n\
         fn g() { self::f(); }\n",
    )
    .unwrap();
    let graph = graph(src);
    assert_eq!(
        graph["p::c"],
        BTreeSet::from(["q".to_owned()]),
        "{graph:#?}"
    );
    assert!(cycles(src).is_empty(), "{:?}", cycles(src));
}
