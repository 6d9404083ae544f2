//! `cargo xtask <command>`: workspace chores that are not part of any shipped binary.

use anyhow::{Context as _, bail};
use std::collections::BTreeSet;
use std::path::PathBuf;
use xtask::{Source, cut, render, tokens_of_cut};

const USAGE: &str = "usage:
  cargo xtask sizes
  cargo xtask cut-schema --schema <schema.json> --tag <vX.Y.Z> --commit <sha>
                         [--cut infra/schema/digitalocean.json] [--add <token>]... [--remove <token>]...

Cuts the provider schema down to the resources and functions the existing cut holds (plus --add,
minus --remove) and every type they reach, and writes it over the cut. The schema file is
provider/cmd/pulumi-resource-digitalocean/schema.json of github.com/pulumi/pulumi-digitalocean
at the given tag.

sizes lists every .rs file under infra/src and lb/src over 600 lines and every non-test
function over 80 lines, and fails when it finds any.";

fn main() -> std::process::ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> anyhow::Result<()> {
    let Some((command, rest)) = args.split_first() else {
        bail!("{USAGE}");
    };
    match command.as_str() {
        "cut-schema" => cut_schema(rest),
        "sizes" => sizes(),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
}

/// The folders the size report reads, relative to the workspace root.
const SIZED: &[&str] = &["infra/src", "lb/src"];

fn workspace() -> anyhow::Result<PathBuf> {
    Ok(PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives inside the workspace")?
        .to_path_buf())
}

fn sizes() -> anyhow::Result<()> {
    let limits = xtask::sizes::LIMITS;
    let findings = xtask::sizes::report(&workspace()?, SIZED, limits)?;
    for finding in &findings {
        println!("{finding}");
    }
    if !findings.is_empty() {
        bail!(
            "{} over the limits (files {} lines, functions {} lines) in {}",
            findings.len(),
            limits.file_lines,
            limits.fn_lines,
            SIZED.join(", ")
        );
    }
    println!(
        "no file over {} lines and no function over {} lines in {}",
        limits.file_lines,
        limits.fn_lines,
        SIZED.join(", ")
    );
    Ok(())
}

fn cut_schema(args: &[String]) -> anyhow::Result<()> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives inside the workspace")?
        .to_path_buf();
    let mut schema = None;
    let mut tag = None;
    let mut commit = None;
    let mut cut_path = workspace.join("infra/schema/digitalocean.json");
    let mut add = Vec::new();
    let mut remove = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--schema" => schema = Some(PathBuf::from(value()?)),
            "--tag" => tag = Some(value()?),
            "--commit" => commit = Some(value()?),
            "--cut" => cut_path = PathBuf::from(value()?),
            "--add" => add.push(value()?),
            "--remove" => remove.push(value()?),
            other => bail!("unknown flag {other:?}\n{USAGE}"),
        }
    }
    let (Some(schema), Some(tag), Some(commit)) = (schema, tag, commit) else {
        bail!("--schema, --tag and --commit are required\n{USAGE}");
    };
    let mut tokens: BTreeSet<String> = match std::fs::read(&cut_path) {
        Ok(bytes) => tokens_of_cut(
            &serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not JSON", cut_path.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", cut_path.display())),
    };
    tokens.extend(add);
    for token in &remove {
        tokens.remove(token);
    }
    if tokens.is_empty() {
        bail!("nothing to cut: the cut holds no tokens yet; name them with --add");
    }
    let bytes = std::fs::read(&schema).with_context(|| format!("reading {}", schema.display()))?;
    let source = Source {
        repository: "pulumi/pulumi-digitalocean".into(),
        tag,
        commit,
        path: "provider/cmd/pulumi-resource-digitalocean/schema.json".into(),
    };
    let out = cut(&bytes, &tokens, &source)?;
    std::fs::write(&cut_path, render(&out))
        .with_context(|| format!("writing {}", cut_path.display()))?;
    let count = |s: &str| out[s].as_object().map_or(0, |m| m.len());
    println!(
        "wrote {}: {} resources, {} functions, {} types from {} {}",
        cut_path.display(),
        count("resources"),
        count("functions"),
        count("types"),
        source.repository,
        source.tag
    );
    Ok(())
}
