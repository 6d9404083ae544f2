//! The Pulumi CLI's config rule against Pulumi.yaml, the stack files and the README's `pulumi config set` lines.

use infra::pulumi_cli::{Project, StackValues, config_set, stack_values};
use std::path::{Path, PathBuf};

const CLOUD_STACKS: [&str; 3] = ["dev", "staging", "prod"];
const PUBLIC_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBGo0XzXsAsZSGTOc6dPZ5tq5fm+BJ6zTDm/9L5QPY3J me@laptop";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap()
}

fn project() -> Project {
    Project::parse(&read("Pulumi.yaml")).expect("the CLI accepts Pulumi.yaml")
}

fn stack(stack: &str) -> StackValues {
    stack_values(&read(&format!("stacks/Pulumi.{stack}.yaml"))).unwrap()
}

/// One `pulumi config set` line, split the way a shell would (quotes, the two command
/// substitutions the README uses, `$STACK`).
#[derive(Debug)]
struct SetLine {
    key: String,
    value: String,
    secret: bool,
    path: bool,
    stack: String,
}

fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut started) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (None, '#') if !started => break,
            (None, ' ') => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, '\'' | '"') => (quote, started) = (Some(c), true),
            (Some(q), c) if c == q => quote = None,
            (_, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// The `pulumi config set` lines of README's step 3, for one stack.
fn readme_lines(stack: &str) -> Vec<SetLine> {
    let readme = read("README.md");
    let section = readme
        .split("### 3. Select the stack and set config and secrets")
        .nth(1)
        .expect("README has step 3")
        .split("\n### ")
        .next()
        .unwrap();
    let block = section
        .split("```sh")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let mut lines = Vec::new();
    for raw in block
        .lines()
        .filter(|l| l.starts_with("pulumi config set "))
    {
        let text = raw
            .replace("$(cat ~/.ssh/id_ed25519.pub)", PUBLIC_KEY)
            .replace("$(openssl rand -hex 32)", &"5f".repeat(32))
            .replace("$STACK", stack);
        let words = shell_words(&text);
        let (mut positional, mut flags, mut stack_arg) = (Vec::new(), Vec::new(), None);
        let mut rest = words[3..].iter();
        while let Some(w) = rest.next() {
            match w.as_str() {
                "-s" | "--stack" => stack_arg = rest.next().cloned(),
                f if f.starts_with("--") => flags.push(f.to_string()),
                _ => positional.push(w.clone()),
            }
        }
        assert_eq!(
            positional.len(),
            2,
            "key and value in {raw:?}: {positional:?}"
        );
        lines.push(SetLine {
            key: positional[0].clone(),
            value: positional[1].clone(),
            secret: flags.iter().any(|f| f == "--secret"),
            path: flags.iter().any(|f| f == "--path"),
            stack: stack_arg.expect("every line names its stack"),
        });
    }
    assert!(
        lines.len() >= 6,
        "README's step 3 lost its lines: {lines:?}"
    );
    lines
}

fn with_readme_lines(stack_name: &str) -> StackValues {
    let mut values = stack(stack_name);
    for line in readme_lines(stack_name) {
        assert_eq!(line.stack, stack_name);
        config_set(&mut values, &line.key, &line.value, line.secret, line.path);
    }
    values
}

#[test]
fn the_cli_accepts_every_cloud_stack_with_exactly_the_readme_lines() {
    let project = project();
    for name in CLOUD_STACKS {
        let merged = project
            .apply(name, &with_readme_lines(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // The defaults reach the program as the CLI merges them.
        assert_eq!(merged["rustlb:region"].value, "nyc1");
        assert!(
            merged["rustlb:apiKey"].secure,
            "{name}: apiKey is set with --secret"
        );
        // `infra preview` checks the stack file alone, before any secret is set.
        project
            .apply(name, &stack(name))
            .unwrap_or_else(|e| panic!("{name} without secrets: {e}"));
    }
}

#[test]
fn secrets_in_the_readme_are_set_with_secret() {
    for line in readme_lines("dev") {
        let secret = ["rustlb:apiKey", "rustlb:sshKeys"].contains(&line.key.as_str())
            || line.key.starts_with("digitalocean:");
        assert_eq!(line.secret, secret, "{line:?}");
    }
}

#[test]
fn a_declared_key_without_a_default_stops_every_stack() {
    let text = format!(
        "{}  extraSetting:\n    type: string\n  otherSetting:\n    type: integer\n",
        read("Pulumi.yaml")
    );
    let project = Project::parse(&text).unwrap();
    let e = project.apply("dev", &with_readme_lines("dev")).unwrap_err();
    assert_eq!(
        e,
        "Stack 'dev' is missing configuration values 'extraSetting' and 'otherSetting'"
    );
    let one = Project::parse(&format!(
        "{}  extraSetting:\n    type: string\n",
        read("Pulumi.yaml")
    ))
    .unwrap();
    assert_eq!(
        one.apply("prod", &stack("prod")).unwrap_err(),
        "Stack 'prod' is missing configuration value 'extraSetting'"
    );
}

#[test]
fn types_and_secrets_are_checked_as_the_cli_does() {
    let project = project();
    let mut values = stack("dev");
    config_set(&mut values, "rustlb:dropletCount", "many", false, false);
    assert_eq!(
        project.apply("dev", &values).unwrap_err(),
        "Stack 'dev' with configuration key 'dropletCount' must be of type 'integer'"
    );
    // Scalars arrive as text: "3" and "true" are an integer and a boolean.
    let mut values = stack("dev");
    config_set(&mut values, "rustlb:dropletCount", "3", false, false);
    config_set(
        &mut values,
        "rustlb:allowSshFromAnywhere",
        "true",
        false,
        false,
    );
    project.apply("dev", &values).unwrap();
    let secret = Project::parse(&format!(
        "{}  token:\n    type: string\n    secret: true\n",
        read("Pulumi.yaml")
    ))
    .unwrap();
    let mut values = stack("dev");
    config_set(&mut values, "rustlb:token", "plain", false, false);
    assert_eq!(
        secret.apply("dev", &values).unwrap_err(),
        "Stack 'dev' with configuration key 'token' must be encrypted as it's secret"
    );
    config_set(&mut values, "rustlb:token", "hidden", true, false);
    secret.apply("dev", &values).unwrap();
}

#[test]
fn project_declarations_the_cli_refuses() {
    let base = read("Pulumi.yaml");
    for (extra, why) in [
        (
            "  list:\n    type: array\n",
            "does not specify the underlying type",
        ),
        (
            "  count:\n    type: integer\n    default: lots\n",
            "not of the expected type 'integer'",
        ),
        (
            "  aws:region:\n    type: string\n",
            "should not define a type",
        ),
    ] {
        let e = Project::parse(&format!("{base}{extra}")).unwrap_err();
        assert!(e.contains(why), "{extra}: {e}");
    }
}

#[test]
fn infra_preview_refuses_a_stack_the_cli_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let root = repo_root();
    std::fs::create_dir_all(dir.path().join("stacks")).unwrap();
    std::fs::copy(
        root.join("stacks/Pulumi.dev.yaml"),
        dir.path().join("stacks/Pulumi.dev.yaml"),
    )
    .unwrap();
    let pulumi_yaml = format!("{}  extraSetting:\n    type: string\n", read("Pulumi.yaml"));
    std::fs::write(dir.path().join("Pulumi.yaml"), pulumi_yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_infra"))
        .args(["preview", "--stack", "dev"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("Stack 'dev' is missing configuration value 'extraSetting'"),
        "{stderr}"
    );
}

#[test]
fn pulumi_yaml_runs_the_program_binary_and_the_readme_builds_it() {
    let yaml: serde_yaml::Value = serde_yaml::from_str(&read("Pulumi.yaml")).unwrap();
    let binary = yaml["runtime"]["options"]["binary"].as_str().unwrap();
    let built = Path::new(env!("CARGO_BIN_EXE_rustlb-program"));
    assert_eq!(
        Path::new(binary).file_name(),
        built.file_name(),
        "Pulumi.yaml runs {binary}, which is not the program's binary"
    );
    assert!(binary.starts_with("target/release/"), "{binary}");
    // The program needs the `cloud` feature, and `cargo build` without it leaves it unbuilt.
    let readme = read("README.md");
    assert!(
        readme.contains("cargo build --release -p app -p infra --features infra/cloud"),
        "README's build step must build the program"
    );
}
