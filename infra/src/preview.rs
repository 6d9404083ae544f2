//! `infra preview`: what `pulumi up` would create, from the stack file, with no CLI, network or secrets.

use crate::build::AppBuild;
use crate::config::{self, PROJECT, StackConfig};
use crate::graph::Options;
use crate::limits as config_limits;
use crate::mock_engine::{self, Registration, RunSpec};
use anyhow::Context as _;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// Deploy order of the resource types, for a listing that reads top-down.
const TYPE_ORDER: &[&str] = &[
    "Vpc",
    "Tag",
    "SshKey",
    "DatabaseCluster",
    "DatabaseDb",
    "DatabaseUser",
    "DatabaseConnectionPool",
    "DatabaseFirewall",
    "SpacesBucket",
    "SpacesBucketObject",
    "Droplet",
    "Certificate",
    "LoadBalancer",
    "Firewall",
    "Project",
];

/// One resource as the engine would register it.
#[derive(Debug, Clone)]
pub struct PreviewResource {
    /// Type token.
    pub type_: String,
    /// Logical name.
    pub name: String,
    /// Redacted inputs.
    pub inputs: Value,
    /// Names of the resources it declares it depends on (from the stack transform).
    pub depends_on: Vec<String>,
    /// Its resource options.
    pub options: Options,
}

/// The preview of one stack.
#[derive(Debug, Clone)]
pub struct Preview {
    /// Stack name.
    pub stack: String,
    /// Resources in deploy order.
    pub resources: Vec<PreviewResource>,
    /// The order `pulumi destroy` would delete them in.
    pub destroy_order: Vec<String>,
    /// Redacted stack outputs.
    pub outputs: Value,
    /// Placeholders the preview used.
    pub notes: Vec<String>,
}

/// Translates a stack file into the engine's PULUMI_CONFIG, listing `secure:` keys separately.
pub fn engine_config(
    root: &Path,
    stack: &str,
) -> anyhow::Result<(BTreeMap<String, String>, Vec<String>)> {
    let path = config::stack_file(root, stack);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let raw = config::raw_from_stack_file(&text)
        .map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))?;
    let mut map = BTreeMap::new();
    let mut encrypted = Vec::new();
    for (key, value) in raw {
        match value {
            config::RawValue::Encrypted => encrypted.push(key),
            config::RawValue::Plain(Value::String(s))
            | config::RawValue::Secret(Value::String(s)) => {
                map.insert(format!("{PROJECT}:{key}"), s);
            }
            config::RawValue::Plain(v) | config::RawValue::Secret(v) => {
                let text = match &v {
                    Value::Object(_) | Value::Array(_) => serde_json::to_string(&v)?,
                    other => other.to_string(),
                };
                map.insert(format!("{PROJECT}:{key}"), text);
            }
        }
    }
    Ok((map, encrypted))
}

/// Runs the program against the mock engine in preview mode.
pub fn run(root: &Path, stack: &str, program: &Path) -> anyhow::Result<Preview> {
    config::StackKind::Cloud.require(stack)?;
    cli_accepts(root, stack)?;
    let cfg = StackConfig::load(root, stack)?;
    let (config, encrypted) = engine_config(root, stack)?;
    let build = AppBuild::inspect(root, &cfg.app_binary)?;
    let mut notes = build_notes(&cfg, &build);
    notes.extend(config_notes(&cfg, stack, &config, &encrypted));
    let run = run_checked(root, stack, program, config, &encrypted)?;
    notes.extend(run.logs.iter().cloned());
    Ok(preview_of(stack, run, notes))
}

/// What the preview can tell about the app build the droplets would get.
fn build_notes(cfg: &StackConfig, build: &AppBuild) -> Vec<String> {
    if !build.exists {
        return vec![format!(
            "no app build at {}: the sha256 shown is a placeholder (run `cargo build --release -p app`)",
            cfg.app_binary.display()
        )];
    }
    let mut notes = vec![format!(
        "app build {} sha256 {}",
        cfg.app_binary.display(),
        build.sha256
    )];
    if let Some(problem) = crate::program::build_problem(cfg, &build.path) {
        notes.push(format!(
            "warning: `pulumi up` will refuse this stack: {problem}"
        ));
    }
    notes
}

/// Secrets the preview cannot read or that are missing, and what `pulumi up` would refuse or
/// regret about the stack's settings.
fn config_notes(
    cfg: &StackConfig,
    stack: &str,
    config: &BTreeMap<String, String>,
    encrypted: &[String],
) -> Vec<String> {
    let mut notes = Vec::new();
    for key in ["apiKey", "sshKeys"] {
        if encrypted.iter().any(|k| k == key) {
            notes.push(format!(
                "{PROJECT}:{key} is encrypted; the preview sends a placeholder, shown as [secret]"
            ));
        } else if !config.contains_key(&format!("{PROJECT}:{key}"))
            && !(key == "sshKeys"
                && (!cfg.ssh_public_keys.is_empty()
                    || cfg.environment == config::Environment::Production))
        {
            let need = if key == "apiKey" {
                "`pulumi up` requires it"
            } else {
                "optional, but without it or rustlb:sshPublicKeys nobody can SSH to the droplets"
            };
            notes.push(format!(
                "{PROJECT}:{key} is not set ({need}; pulumi config set --secret {PROJECT}:{key} ... -s {stack})"
            ));
        }
    }
    if cfg.environment == config::Environment::Production && !cfg.has_ssh_access() {
        notes.push(format!(
            "warning: `pulumi up` will refuse this stack: {}",
            crate::program::no_ssh_message(stack)
        ));
    }
    if let Some(domain) = cfg
        .domain
        .as_deref()
        .filter(|d| config_limits::placeholder_domain(d))
    {
        notes.push(format!(
            "warning: {}",
            crate::program::placeholder_domain_message(domain, stack)
        ));
    }
    notes.push(
        "<... of NAME> values exist only after `pulumi up` (ids, IPs, hosts); [secret] marks secrets".into(),
    );
    notes
}

/// Runs the program under the stand-in engine; fails where `pulumi up` or `pulumi destroy`
/// would, so a preview that succeeds is one the real engine and provider accept.
fn run_checked(
    root: &Path,
    stack: &str,
    program: &Path,
    config: BTreeMap<String, String>,
    encrypted: &[String],
) -> anyhow::Result<mock_engine::Run> {
    let run = mock_engine::run(&RunSpec {
        program: program.to_path_buf(),
        root: root.to_path_buf(),
        project: PROJECT.into(),
        stack: stack.into(),
        config,
        secret_keys: Vec::new(),
        env: vec![(
            config::ENCRYPTED_KEYS_ENV.into(),
            serde_json::to_string(encrypted)?,
        )],
        dry_run: true,
        placeholders: true,
        account: mock_engine::MockAccount::default(),
    })?;
    if !run.success() {
        anyhow::bail!("the program failed:\n{}", run.stderr.trim_end());
    }
    let undeclared = run.undeclared_uses();
    if !undeclared.is_empty() {
        anyhow::bail!(
            "`pulumi destroy` and replacements could not order these resources, since the \
             program uses them without declaring it:\n  {}",
            undeclared.join("\n  ")
        );
    }
    let problems = run.provider_problems();
    if !problems.is_empty() {
        anyhow::bail!(
            "the DigitalOcean provider (schema {}) would refuse this stack:\n  {}",
            crate::provider_schema::digitalocean().version(),
            problems.join("\n  ")
        );
    }
    Ok(run)
}

/// The resources the engine would create, in deploy order, named as a reviewer knows them.
fn preview_of(stack: &str, run: mock_engine::Run, notes: Vec<String>) -> Preview {
    let mut resources: Vec<&Registration> = run.resources.iter().filter(|r| r.custom).collect();
    resources.sort_by_key(|r| sort_key(r));
    let name_of = |urn: &String| run.by_urn(urn).map_or(urn.clone(), |d| d.name.clone());
    Preview {
        stack: stack.into(),
        resources: resources
            .into_iter()
            .map(|r| PreviewResource {
                type_: r.type_.clone(),
                name: r.name.clone(),
                inputs: shown_inputs(&r.inputs),
                depends_on: r.dependencies.iter().map(name_of).collect(),
                options: r.options.clone(),
            })
            .collect(),
        destroy_order: run.destroy_order(),
        outputs: mock_engine::redact(&run.outputs.unwrap_or(json!({}))),
        notes,
    }
}

/// The Pulumi CLI's config check of the stack file against Pulumi.yaml, which runs before the
/// program does: a stack it refuses never reaches the program.
pub fn cli_accepts(root: &Path, stack: &str) -> anyhow::Result<()> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    };
    let project = crate::pulumi_cli::Project::parse(&read(&root.join("Pulumi.yaml"))?)
        .map_err(|m| anyhow::anyhow!("the Pulumi CLI would refuse Pulumi.yaml: {m}"))?;
    let path = config::stack_file(root, stack);
    let values = crate::pulumi_cli::stack_values(&read(&path)?)
        .map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))?;
    project.apply(stack, &values).map_err(|m| {
        anyhow::anyhow!(
            "the Pulumi CLI would refuse this stack before the program runs: {m} (Pulumi.yaml, stacks/Pulumi.{stack}.yaml)"
        )
    })?;
    Ok(())
}

/// Inputs as a reviewer reads them: secrets as `[secret]`, except the droplets' user data,
/// which is shown whole. In the offline preview every secret in it is a `[secret]` placeholder
/// (the preview can read no secret), and the document is what a reviewer most needs to read.
fn shown_inputs(inputs: &Value) -> Value {
    let mut shown = mock_engine::redact(inputs);
    if let (Some(user_data), Some(fields)) = (inputs.get("userData"), shown.as_object_mut()) {
        let text = mock_engine::reveal(user_data);
        let text = text.as_str().unwrap_or_default();
        // The placeholder password is percent-encoded inside the database URL.
        let readable = text.replace(
            &crate::db_url::percent_encode(crate::wire::SECRET_PLACEHOLDER),
            crate::wire::SECRET_PLACEHOLDER,
        );
        fields.insert("userData".into(), Value::String(readable));
    }
    shown
}

fn sort_key(r: &Registration) -> (usize, String, u64) {
    let kind = r.type_.rsplit(':').next().unwrap_or_default();
    let order = TYPE_ORDER
        .iter()
        .position(|t| *t == kind)
        .unwrap_or(TYPE_ORDER.len());
    let digits: String = r
        .name
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    let n = digits
        .chars()
        .rev()
        .collect::<String>()
        .parse()
        .unwrap_or(0);
    (
        order,
        r.name
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .to_string(),
        n,
    )
}

impl Preview {
    /// `{"stack", "resources": [{type, name, inputs, dependsOn, options}], "destroyOrder",
    /// "outputs", "notes"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "stack": self.stack,
            "resources": self.resources.iter().map(|r| json!({
                "type": r.type_,
                "name": r.name,
                "inputs": r.inputs,
                "dependsOn": r.depends_on,
                "options": r.options,
            })).collect::<Vec<_>>(),
            "destroyOrder": self.destroy_order,
            "outputs": self.outputs,
            "notes": self.notes,
        })
    }

    /// One line per resource, then the outputs and notes.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "Previewing stack {} ({} resources to create)\n\n",
            self.stack,
            self.resources.len()
        );
        for r in &self.resources {
            let (t, n) = (&r.type_, &r.name);
            let empty = serde_json::Map::new();
            let fields = r.inputs.as_object().unwrap_or(&empty);
            // Documents (the droplets' user data) are shown whole under their resource line.
            let is_document = |v: &Value| v.as_str().is_some_and(|s| s.contains('\n'));
            let line = fields
                .iter()
                .filter(|(_, v)| !is_document(v))
                .map(|(k, v)| format!("{k}={}", short(v)))
                .collect::<Vec<_>>()
                .join(" ");
            out.push_str(&format!("  + {t:<66} {n:<30} {line}\n"));
            if !r.depends_on.is_empty() {
                out.push_str(&format!("      depends on: {}\n", r.depends_on.join(", ")));
            }
            let options = options_text(&r.options);
            if !options.is_empty() {
                out.push_str(&format!("      options: {options}\n"));
            }
            for (k, v) in fields.iter().filter(|(_, v)| is_document(v)) {
                out.push_str(&format!("      {k}: |\n"));
                for doc_line in v.as_str().unwrap_or_default().lines() {
                    out.push_str(&format!("        {doc_line}\n"));
                }
            }
        }
        out.push_str(
            "\nDestroy order (`pulumi destroy` deletes each only after those before it):\n",
        );
        for (i, n) in self.destroy_order.iter().enumerate() {
            out.push_str(&format!("  {:>2}. {n}\n", i + 1));
        }
        out.push_str("\nOutputs:\n");
        if let Value::Object(m) = &self.outputs {
            for (k, v) in m {
                out.push_str(&format!("  {k:<20} {}\n", short(v)));
            }
        }
        out.push_str("\nNotes:\n");
        for n in &self.notes {
            out.push_str(&format!("  - {n}\n"));
        }
        out
    }
}

fn options_text(o: &Options) -> String {
    let mut parts = Vec::new();
    if o.protect {
        parts.push("protect".to_string());
    }
    if o.delete_before_replace {
        parts.push("deleteBeforeReplace".to_string());
    }
    if let Some(d) = &o.delete_timeout {
        parts.push(format!("customTimeouts.delete={d}"));
    }
    parts.join(", ")
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
