//! Which modules of a crate refer to which, read from its sources, and the cycles among them.
//!
//! `cargo test -p xtask` checks every crate of the workspace with it.
//!
//! A module is a source file (`a/b.rs` or `a/b/mod.rs` is `a::b`; `lib.rs` is the crate root).
//! Module `m` refers to module `n` when it names a path into `n`: `crate::n::..`,
//! `super::..`, `self::..`, or `c::..` for a child `c` it declares; a path names the deepest
//! module it passes through. The whole file is read, `#[cfg(test)]` modules included: a cycle
//! through a unit test still ties the two modules together. An inline `mod name { .. }` belongs
//! to its file's module, but `self` and `super` inside it count from the inline module, so a
//! test's `use super::*` refers to the file it sits in, not to that file's parent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`request_log::writer`; `""` for the root) -> the modules it refers to.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// The module graph of the crate whose `src` folder is `src` (its `main.rs` is a crate of
/// its own and left out).
pub fn graph(src: &Path) -> Graph {
    let files = modules(src);
    let known: BTreeSet<String> = files.keys().cloned().collect();
    let mut graph = Graph::new();
    for (module, file) in &files {
        let text = std::fs::read_to_string(file).expect("readable source");
        let code = strip(&text);
        let children = declared_children(&code);
        let inline = inline_modules(&code);
        let here = split(module);
        let mut refs = BTreeSet::new();
        for (at, path) in paths(&code) {
            // Where `self` is: the file's module, then any inline modules around `at`.
            let mut scope = here.clone();
            scope.extend(innermost(&inline, at).iter().cloned());
            let (mut base, mut rest) = match path.first().map(String::as_str) {
                Some("crate") => (Vec::new(), &path[1..]),
                Some("self") => (scope, &path[1..]),
                Some("super") => (scope, &path[..]),
                Some(first) if children.contains(first) => (here.clone(), &path[..]),
                _ => continue,
            };
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            // The deepest file module along the path; inline modules are not files.
            let mut target = Vec::new();
            for segment in base.iter().chain(rest) {
                target.push(segment.clone());
                if !known.contains(&target.join("::")) {
                    target.pop();
                    break;
                }
            }
            let target = target.join("::");
            if target != *module {
                refs.insert(target);
            }
        }
        graph.insert(module.clone(), refs);
    }
    graph
}

/// Every cycle found, each as the modules along it (first one repeated at the end); empty
/// when the graph is acyclic. Checked twice: between files, and between the crate's top-level
/// modules (a reference from `a::x` to `b::y` is one from `a` to `b`).
pub fn cycles(src: &Path) -> Vec<Vec<String>> {
    let files = graph(src);
    let mut top = Graph::new();
    for (from, targets) in &files {
        let from_top = top_level(from);
        let entry = top.entry(from_top.clone()).or_default();
        for target in targets {
            let to_top = top_level(target);
            if to_top != from_top {
                entry.insert(to_top);
            }
        }
    }
    let mut found = find_cycles(&files);
    found.extend(find_cycles(&top));
    found
}

fn top_level(module: &str) -> String {
    module.split("::").next().unwrap_or("").to_owned()
}

fn find_cycles(graph: &Graph) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        marks.insert(node.to_owned(), Mark::Open);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next.as_str()) {
                Some(Mark::Open) => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    found.push(cycle);
                }
                Some(Mark::Done) => {}
                None => visit(next, graph, marks, stack, found),
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut found = Vec::new();
    for node in graph.keys() {
        if !marks.contains_key(node.as_str()) {
            visit(node, graph, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    found
}

/// Module path -> file, for every `.rs` file under `src` but `main.rs` and `bin/`.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut pending = vec![src.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable source folder") {
            let path = entry.expect("folder entry").path();
            if path.is_dir() {
                if path != src.join("bin") {
                    pending.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path == src.join("main.rs") {
                continue;
            }
            let relative = path
                .strip_prefix(src)
                .expect("under src")
                .with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            out.insert(parts.join("::"), path);
        }
    }
    out
}

fn split(module: &str) -> Vec<String> {
    if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(str::to_owned).collect()
    }
}

/// The names of `mod name;` declarations.
fn declared_children(code: &str) -> BTreeSet<String> {
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ';'))
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .filter(|w| w[0] == "mod" && w[1].ends_with(';'))
        .map(|w| w[1].trim_end_matches(';').to_owned())
        .collect()
}

/// An inline `mod name { .. }` block: where its body starts and ends (char offsets into the
/// stripped code) and its path below the file's module (`["tests", "helpers"]`).
struct Inline {
    start: usize,
    end: usize,
    path: Vec<String>,
}

/// Every inline module block of `code`, which must be stripped so that no brace in a comment
/// or literal throws the nesting off.
fn inline_modules(code: &str) -> Vec<Inline> {
    let chars: Vec<char> = code.chars().collect();
    let mut out: Vec<Inline> = Vec::new();
    // (index into `out`, depth of its opening brace) of the blocks open at `i`.
    let mut open: Vec<(usize, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '{' => depth += 1,
            '}' => {
                if open.last().is_some_and(|(_, d)| *d == depth) {
                    let (block, _) = open.pop().expect("checked");
                    out[block].end = i;
                }
                depth -= 1;
            }
            _ => {}
        }
        let starts_word = i == 0 || !is_path_char(chars[i - 1]);
        if starts_word && chars[i..].starts_with(&['m', 'o', 'd']) {
            let name_start = skip_space(&chars, i + 3);
            let mut name_end = name_start;
            while name_end < chars.len() && is_ident(chars[name_end]) {
                name_end += 1;
            }
            let brace = skip_space(&chars, name_end);
            if name_start > i + 3 && name_end > name_start && chars.get(brace) == Some(&'{') {
                let mut path = open
                    .last()
                    .map(|(b, _)| out[*b].path.clone())
                    .unwrap_or_default();
                path.push(chars[name_start..name_end].iter().collect());
                depth += 1;
                open.push((out.len(), depth));
                out.push(Inline {
                    start: brace,
                    end: chars.len(),
                    path,
                });
                i = brace + 1;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// The path of the innermost inline module around offset `at`; empty outside all of them.
fn innermost(blocks: &[Inline], at: usize) -> &[String] {
    blocks
        .iter()
        .filter(|b| b.start < at && at < b.end)
        .max_by_key(|b| b.path.len())
        .map(|b| b.path.as_slice())
        .unwrap_or(&[])
}

/// Every path in `code` with the char offset where it starts, `use` groups expanded:
/// `crate::{a, b::c}` gives `crate::a` and `crate::b::c`.
fn paths(code: &str) -> Vec<(usize, Vec<String>)> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = is_ident(chars[i]) && (i == 0 || !is_path_char(chars[i - 1]));
        if starts_word {
            let mut trees = Vec::new();
            let end = use_tree(&chars, i, Vec::new(), &mut trees);
            out.extend(trees.into_iter().filter(|p| p.len() > 1).map(|p| (i, p)));
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Parses the path (and group) starting at `i`, appending every full path to `out`; returns
/// where it ended.
fn use_tree(
    chars: &[char],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        if i == start {
            break;
        }
        prefix.push(chars[start..i].iter().collect());
        let after = skip_space(chars, i);
        if chars.get(after) == Some(&':') && chars.get(after + 1) == Some(&':') {
            i = skip_space(chars, after + 2);
            if chars.get(i) == Some(&'{') {
                i += 1;
                loop {
                    i = skip_space(chars, i);
                    match chars.get(i) {
                        Some('}') => return i + 1,
                        Some(',') => i += 1,
                        Some(_) => {
                            let end = use_tree(chars, i, prefix.clone(), out);
                            i = if end > i { end } else { i + 1 };
                        }
                        None => return i,
                    }
                }
            }
            continue;
        }
        break;
    }
    out.push(prefix);
    i
}

fn skip_space(chars: &[char], mut i: usize) -> usize {
    while chars.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    i
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_path_char(c: char) -> bool {
    is_ident(c) || c == ':'
}

/// `text` without comments and without the contents of string and character literals, so
/// neither can be mistaken for a path.
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars[..i].last().is_some_and(|p| is_ident(*p))
        {
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            i += hashes + 2;
            while i < chars.len() {
                if chars[i] == '"'
                    && chars[i + 1..].iter().take_while(|c| **c == '#').count() >= hashes
                {
                    i += hashes + 1;
                    break;
                }
                i += 1;
            }
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}
