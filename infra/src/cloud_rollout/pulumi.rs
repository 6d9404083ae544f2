//! The `pulumi` CLI as a subprocess, for one stack: config set and get, `up`, and the stack's outputs.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::config::Color;

/// The CLI, run in the repository root against one stack.
pub struct Pulumi {
    program: OsString,
    stack: String,
    root: PathBuf,
}

/// What `pulumi stack output --json` says about the deployment.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outputs {
    pub url: String,
    pub active_color: String,
    /// The sha256 each colour runs (`blue`, `green`).
    pub color_builds: BTreeMap<String, String>,
    pub droplet_names: Vec<String>,
    /// Same order as `droplet_names`.
    pub droplet_public_ips: Vec<String>,
}

/// A droplet of one colour, by name (its server id) and public address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Droplet {
    pub name: String,
    pub ip: String,
}

impl Outputs {
    /// The colour the load balancer sends traffic to.
    pub fn active(&self) -> anyhow::Result<Color> {
        Color::ALL
            .into_iter()
            .find(|c| c.as_str() == self.active_color)
            .with_context(|| format!("output activeColor is {:?}", self.active_color))
    }

    /// The build (sha256) `color` runs.
    pub fn build(&self, color: Color) -> anyhow::Result<&str> {
        self.color_builds
            .get(color.as_str())
            .map(String::as_str)
            .with_context(|| format!("output colorBuilds has no {}", color.as_str()))
    }

    /// The droplets of `color`, named `<project>-<stack>-<colour>-<n>`.
    pub fn droplets(&self, color: Color) -> Vec<Droplet> {
        let marker = format!("-{}-", color.as_str());
        self.droplet_names
            .iter()
            .zip(&self.droplet_public_ips)
            .filter(|(name, _)| name.contains(&marker))
            .map(|(name, ip)| Droplet {
                name: name.clone(),
                ip: ip.clone(),
            })
            .collect()
    }
}

impl Pulumi {
    /// `program` is the executable (`pulumi`, found on PATH unless a path is given).
    pub fn new(program: impl Into<OsString>, stack: &str, root: &Path) -> Pulumi {
        Pulumi {
            program: program.into(),
            stack: stack.to_owned(),
            root: root.to_owned(),
        }
    }

    /// The command line as shown to the user (no values that could be secret are ever set).
    fn shown(&self, args: &[&str]) -> String {
        format!("pulumi {} --stack {}", args.join(" "), self.stack)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.program);
        c.args(args)
            .args(["--stack", &self.stack, "--non-interactive"])
            .current_dir(&self.root)
            .stdin(Stdio::null());
        c
    }

    /// Runs a command whose output is for the user: both streams go to our stderr, so that
    /// stdout stays the rollout's own summary.
    fn run_shown(&self, args: &[&str]) -> anyhow::Result<()> {
        eprintln!("$ {}", self.shown(args));
        let err = std::io::stderr().as_fd().try_clone_to_owned()?;
        let status = self
            .command(args)
            .stdout(Stdio::from(err.try_clone()?))
            .stderr(Stdio::from(err))
            .status()
            .with_context(|| {
                format!("running {:?} (is the Pulumi CLI installed?)", self.program)
            })?;
        if !status.success() {
            bail!("`{}` failed ({status})", self.shown(args));
        }
        Ok(())
    }

    /// Runs a command and returns its stdout; `Err` carries its stderr.
    fn run_captured(&self, args: &[&str]) -> anyhow::Result<Result<String, String>> {
        let out = self.command(args).output().with_context(|| {
            format!("running {:?} (is the Pulumi CLI installed?)", self.program)
        })?;
        Ok(if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        })
    }

    /// `pulumi config set [--path] KEY VALUE`.
    pub fn config_set(&self, key: &str, value: &str, path: bool) -> anyhow::Result<()> {
        let mut args = vec!["config", "set"];
        if path {
            args.push("--path");
        }
        args.extend([key, value]);
        self.run_shown(&args)
    }

    /// `pulumi config get KEY`: `None` when the stack does not set it. The value is never
    /// shown: it may be a secret.
    pub fn config_get(&self, key: &str) -> anyhow::Result<Option<String>> {
        match self.run_captured(&["config", "get", key])? {
            Ok(value) => Ok(Some(value.trim_end_matches('\n').to_owned())),
            Err(stderr) if stderr.contains("not found") => Ok(None),
            Err(stderr) => bail!("`pulumi config get {key}` failed: {stderr}"),
        }
    }

    /// `pulumi up --yes --skip-preview`: applies the stack's config.
    pub fn up(&self) -> anyhow::Result<()> {
        self.run_shown(&["up", "--yes", "--skip-preview"])
    }

    /// `pulumi stack output --json`.
    pub fn outputs(&self) -> anyhow::Result<Outputs> {
        let json = match self.run_captured(&["stack", "output", "--json"])? {
            Ok(json) => json,
            Err(stderr) => bail!("`{}` failed: {stderr}", self.shown(&["stack", "output"])),
        };
        serde_json::from_str(&json).with_context(|| {
            format!(
                "reading the outputs of stack {}: run `pulumi up` once with this version of the program (it exports activeColor, colorBuilds, dropletNames, dropletPublicIps and url)",
                self.stack
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn droplets_are_picked_by_colour_with_their_addresses() {
        let o: Outputs = serde_json::from_value(serde_json::json!({
            "url": "http://198.51.100.10",
            "activeColor": "blue",
            "colorBuilds": {"blue": "a", "green": "b"},
            "dropletNames": ["rustlb-prod-blue-1", "rustlb-prod-green-1", "rustlb-prod-blue-2"],
            "dropletPublicIps": ["203.0.113.1", "203.0.113.2", "203.0.113.3"],
            "databaseUri": "[secret]"
        }))
        .unwrap();
        assert_eq!(o.active().unwrap(), Color::Blue);
        assert_eq!(o.build(Color::Green).unwrap(), "b");
        assert_eq!(
            o.droplets(Color::Blue),
            vec![
                Droplet {
                    name: "rustlb-prod-blue-1".into(),
                    ip: "203.0.113.1".into()
                },
                Droplet {
                    name: "rustlb-prod-blue-2".into(),
                    ip: "203.0.113.3".into()
                }
            ]
        );
    }
}
