//! The size report: source files and non-test functions longer than the architecture allows.
//!
//! The scan counts braces rather than parsing Rust: comments and the contents of string and
//! character literals are blanked first (newlines kept, so line numbers stay right), then a
//! function runs from the line of its `fn` to the line of its closing brace. Items under
//! `#[cfg(test)]` and functions marked `#[test]` (or `#[tokio::test]` and the like) are skipped.

use std::path::{Path, PathBuf};

/// The longest a file and a function may be, in lines.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Lines per source file.
    pub file_lines: usize,
    /// Lines per non-test function, from `fn` to its closing brace.
    pub fn_lines: usize,
}

/// The architecture's limits: no file over 600 lines, no function over 80.
pub const LIMITS: Limits = Limits {
    file_lines: 600,
    fn_lines: 80,
};

/// Something over a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A file with more lines than allowed.
    File {
        /// The file, as given to `report`.
        path: PathBuf,
        /// Its lines.
        lines: usize,
    },
    /// A function with more lines than allowed.
    Function {
        /// The file, as given to `report`.
        path: PathBuf,
        /// The function's name.
        name: String,
        /// The line of its `fn`, from 1.
        line: usize,
        /// Its lines.
        lines: usize,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::File { path, lines } => write!(f, "{}: {lines} lines", path.display()),
            Finding::Function {
                path,
                name,
                line,
                lines,
            } => write!(f, "{}:{line}: fn {name} is {lines} lines", path.display()),
        }
    }
}

/// A non-test function of a source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// Its name.
    pub name: String,
    /// The line of its `fn`, from 1.
    pub line: usize,
    /// Lines from `fn` to the closing brace.
    pub lines: usize,
}

/// Every finding in the `.rs` files under `dirs` (relative to `root`), files in path order.
pub fn report(root: &Path, dirs: &[&str], limits: Limits) -> std::io::Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for dir in dirs {
        let mut files = Vec::new();
        rust_files(&root.join(dir), &mut files)?;
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file)?;
            let path = file.strip_prefix(root).unwrap_or(&file).to_path_buf();
            findings.extend(check(&path, &text, limits));
        }
    }
    Ok(findings)
}

/// The findings of one source text.
pub fn check(path: &Path, text: &str, limits: Limits) -> Vec<Finding> {
    let mut findings = Vec::new();
    let lines = text.lines().count();
    if lines > limits.file_lines {
        findings.push(Finding::File {
            path: path.to_path_buf(),
            lines,
        });
    }
    for f in functions(text) {
        if f.lines > limits.fn_lines {
            findings.push(Finding::Function {
                path: path.to_path_buf(),
                name: f.name,
                line: f.line,
                lines: f.lines,
            });
        }
    }
    findings
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Every function with a body in `text`, outside test code.
pub fn functions(text: &str) -> Vec<Function> {
    let code: Vec<char> = blank(text).chars().collect();
    let line_of = |at: usize| 1 + code[..at].iter().filter(|c| **c == '\n').count();
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        if code[i] == '#' && code.get(i + 1) == Some(&'[') {
            let end = matching(&code, i + 1).unwrap_or(code.len());
            let attribute: String = code[i + 2..end.min(code.len())].iter().collect();
            i = if is_test_attribute(&attribute) {
                item_end(&code, end)
            } else {
                end + 1
            };
            continue;
        }
        if let Some(name) = fn_name_at(&code, i) {
            match body_start(&code, i) {
                Some(open) => {
                    let close = matching(&code, open).unwrap_or(code.len() - 1);
                    out.push(Function {
                        name,
                        line: line_of(i),
                        lines: line_of(close) - line_of(i) + 1,
                    });
                    // Functions inside are reported too: step into the body, not over it.
                    i = open + 1;
                }
                None => i += 2,
            }
            continue;
        }
        i += 1;
    }
    out
}

/// `#[test]`, `#[tokio::test(..)]`, `#[cfg(test)]`.
fn is_test_attribute(attribute: &str) -> bool {
    let compact: String = attribute.chars().filter(|c| !c.is_whitespace()).collect();
    let path = compact.split('(').next().unwrap_or_default();
    path == "test" || path.ends_with("::test") || compact == "cfg(test)"
}

/// The name after the keyword `fn` starting at `i`, when it is one (not a `fn(..)` type).
fn fn_name_at(code: &[char], i: usize) -> Option<String> {
    let word_start = i == 0 || !is_ident(code[i - 1]);
    if !word_start || code.get(i) != Some(&'f') || code.get(i + 1) != Some(&'n') {
        return None;
    }
    if code.get(i + 2).is_none_or(|c| !c.is_whitespace()) {
        return None;
    }
    let start = (i + 2..code.len()).find(|&j| !code[j].is_whitespace())?;
    let end = (start..code.len())
        .find(|&j| !is_ident(code[j]))
        .unwrap_or(code.len());
    (end > start).then(|| code[start..end].iter().collect())
}

/// The `{` opening the body of the function whose `fn` is at `i`; none for a declaration
/// ending in `;` (a trait method without a default).
fn body_start(code: &[char], i: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, c) in code.iter().enumerate().skip(i) {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            '{' if depth == 0 => return Some(j),
            ';' if depth == 0 => return None,
            _ => {}
        }
    }
    None
}

/// Where the item after an attribute ending at `end` ends: its closing brace or semicolon.
fn item_end(code: &[char], end: usize) -> usize {
    let mut j = end + 1;
    // Further attributes belong to the same item.
    loop {
        while j < code.len() && code[j].is_whitespace() {
            j += 1;
        }
        if code.get(j) == Some(&'#') && code.get(j + 1) == Some(&'[') {
            j = matching(code, j + 1).map_or(code.len(), |e| e + 1);
        } else {
            break;
        }
    }
    match body_start(code, j) {
        Some(open) => matching(code, open).map_or(code.len(), |c| c + 1),
        None => (j..code.len())
            .find(|&k| code[k] == ';')
            .map_or(code.len(), |k| k + 1),
    }
}

/// The bracket closing the one at `open` (`{`, `[` or `(`).
fn matching(code: &[char], open: usize) -> Option<usize> {
    let (up, down) = match code.get(open)? {
        '{' => ('{', '}'),
        '[' => ('[', ']'),
        '(' => ('(', ')'),
        _ => return None,
    };
    let mut depth = 0usize;
    for (j, c) in code.iter().enumerate().skip(open) {
        if *c == up {
            depth += 1;
        } else if *c == down {
            depth -= 1;
            if depth == 0 {
                return Some(j);
            }
        }
    }
    None
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `text` with comments and the contents of string and character literals replaced by
/// spaces, newlines kept, so no brace or `fn` in them counts.
fn blank(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = chars.clone();
    let mut blank_range = |from: usize, to: usize| {
        for c in out.iter_mut().take(to.min(chars.len())).skip(from) {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    let mut i = 0;
    while i < chars.len() {
        let end = literal_or_comment_end(&chars, i);
        match end {
            Some(end) => {
                blank_range(i, end);
                i = end;
            }
            None => i += 1,
        }
    }
    out.into_iter().collect()
}

/// When a comment or literal starts at `i`, where it ends (exclusive).
fn literal_or_comment_end(chars: &[char], i: usize) -> Option<usize> {
    let c = chars[i];
    let next = chars.get(i + 1).copied();
    let after_ident = i > 0 && is_ident(chars[i - 1]);
    if c == '/' && next == Some('/') {
        return Some(
            (i..chars.len())
                .find(|&j| chars[j] == '\n')
                .unwrap_or(chars.len()),
        );
    }
    if c == '/' && next == Some('*') {
        let mut depth = 0;
        let mut j = i;
        while j < chars.len() {
            if chars[j] == '/' && chars.get(j + 1) == Some(&'*') {
                depth += 1;
                j += 2;
            } else if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
                depth -= 1;
                j += 2;
                if depth == 0 {
                    return Some(j);
                }
            } else {
                j += 1;
            }
        }
        return Some(chars.len());
    }
    if c == 'r' && !after_ident && matches!(next, Some('"' | '#')) {
        let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
        if chars.get(i + 1 + hashes) != Some(&'"') {
            return None;
        }
        let mut j = i + hashes + 2;
        while j < chars.len() {
            if chars[j] == '"' && chars[j + 1..].iter().take_while(|c| **c == '#').count() >= hashes
            {
                return Some(j + hashes + 1);
            }
            j += 1;
        }
        return Some(chars.len());
    }
    if c == '"' {
        let mut j = i + 1;
        while j < chars.len() && chars[j] != '"' {
            j += if chars[j] == '\\' { 2 } else { 1 };
        }
        return Some((j + 1).min(chars.len()));
    }
    // A character literal, not a lifetime: `'x'` or an escape such as `'\n'`.
    if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
        let mut j = i + 1;
        while j < chars.len() && chars[j] != '\'' {
            j += if chars[j] == '\\' { 2 } else { 1 };
        }
        return Some((j + 1).min(chars.len()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = r##"//! A fixture.

/// Six lines: over a limit of five.
fn long_one(x: [u8; 2]) -> u8 {
    let open = "{ fn not_a_function() {";
    let close = '}';
    // } fn also_not() {
    x[0]
}

fn short_one() {}

trait Shape {
    fn area(&self) -> f64;
    fn sides(&self) -> u32 {
        0
    }
}

#[test]
fn long_test() {
    let a = 1;
    let b = 2;
    let c = 3;
    assert_eq!(a + b, c);
}

#[cfg(test)]
mod tests {
    fn long_helper() {
        let a = 1;
        let b = r#"}"#;
        let c = 3;
        let _ = (a, b, c);
    }
}

fn after_tests<'a>(s: &'a str) -> &'a str {
    s
}
"##;

    #[test]
    fn functions_are_measured_from_fn_to_closing_brace_outside_test_code() {
        let found: Vec<(String, usize, usize)> = functions(FIXTURE)
            .into_iter()
            .map(|f| (f.name, f.line, f.lines))
            .collect();
        assert_eq!(
            found,
            [
                ("long_one".to_string(), 4, 6),
                ("short_one".to_string(), 11, 1),
                ("sides".to_string(), 15, 3),
                ("after_tests".to_string(), 38, 3),
            ]
        );
    }

    #[test]
    fn findings_name_the_file_and_function_over_the_limits() {
        let limits = Limits {
            file_lines: 39,
            fn_lines: 5,
        };
        let findings = check(Path::new("src/fixture.rs"), FIXTURE, limits);
        let shown: Vec<String> = findings.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "src/fixture.rs: 40 lines",
                "src/fixture.rs:4: fn long_one is 6 lines",
            ]
        );
        let roomy = Limits {
            file_lines: 40,
            fn_lines: 6,
        };
        assert!(check(Path::new("src/fixture.rs"), FIXTURE, roomy).is_empty());
    }

    #[test]
    fn report_walks_the_folders_in_path_order() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("src/nested")).unwrap();
        std::fs::write(root.path().join("src/nested/b.rs"), FIXTURE).unwrap();
        std::fs::write(root.path().join("src/a.rs"), FIXTURE).unwrap();
        std::fs::write(root.path().join("src/notes.txt"), FIXTURE).unwrap();
        let limits = Limits {
            file_lines: 100,
            fn_lines: 5,
        };
        let paths: Vec<PathBuf> = report(root.path(), &["src"], limits)
            .unwrap()
            .into_iter()
            .map(|f| match f {
                Finding::File { path, .. } | Finding::Function { path, .. } => path,
            })
            .collect();
        assert_eq!(
            paths,
            [PathBuf::from("src/a.rs"), PathBuf::from("src/nested/b.rs")]
        );
    }
}
