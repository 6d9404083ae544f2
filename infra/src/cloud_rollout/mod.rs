//! Blue/green on a DigitalOcean stack, driving the `pulumi` CLI: start the idle colour with the new build, gate it, switch, watch, retire the old colour or switch back.
//!
//! Every step is a stack config change and a `pulumi up`, the same steps README's manual
//! runbook lists, so the stack's config always says what runs and a half-finished rollout can
//! be finished or undone by hand.

mod pulumi;
mod tunnel;
mod watch;

use std::time::{Duration, Instant};

use anyhow::Context as _;

pub use pulumi::{Droplet, Outputs, Pulumi};

use crate::config::{APP_PORT, Color, StackConfig};

/// How a cloud rollout runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The new colour's `build`: `local` (the program's `appBinary`) or a sha256 already uploaded.
    pub build: String,
    /// How long each new droplet may take to boot and answer 200 on the health path, and the
    /// load balancer to answer from the new colour after the switch.
    pub health_timeout: Duration,
    /// How long the new colour's 5xx share is watched after the switch.
    pub watch: Duration,
    /// Switches back above this share of 5xx answers, in percent.
    pub max_error_percent: f64,
    /// The OpenSSH client, and the user it logs in as (cloud-init's `root`).
    pub ssh: String,
    pub ssh_user: String,
    /// The API key for the gate's write checks (`rustlb:apiKey`).
    pub api_key: Option<String>,
}

/// One rollout against one stack.
struct Rollout<'a> {
    pulumi: &'a Pulumi,
    opts: &'a Options,
    health_path: String,
    old: Color,
    new: Color,
    runtime: tokio::runtime::Runtime,
}

/// Runs the rollout; `Ok` is the summary once the new colour serves alone, `Err` names the
/// failed check (or command) once traffic is back on, or never left, the old colour.
pub fn run(cfg: &StackConfig, pulumi: &Pulumi, opts: &Options) -> anyhow::Result<String> {
    anyhow::ensure!(
        opts.build == "local"
            || (opts.build.len() == 64 && opts.build.bytes().all(|b| b.is_ascii_hexdigit())),
        "--build must be `local` or the 64-hex sha256 of an uploaded build (got {:?})",
        opts.build
    );
    let before = pulumi.outputs()?;
    let old = before.active()?;
    let new = other(old);
    let serving = before.droplets(old);
    anyhow::ensure!(
        !serving.is_empty(),
        "the active colour {} has no droplets; nothing to roll from",
        old.as_str()
    );
    let rollout = Rollout {
        pulumi,
        opts,
        health_path: cfg.health_check().path.clone(),
        old,
        new,
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?,
    };
    let old_sha = before.build(old)?.to_owned();
    step(&format!(
        "pin {} to the build it runs ({})",
        old.as_str(),
        short(&old_sha)
    ));
    pulumi.config_set(&rollout.key("build", old), &old_sha, true)?;
    rollout.start_new(serving.len())?;
    let started = pulumi.outputs()?;
    let new_sha = started.build(new)?.to_owned();
    let droplets = started.droplets(new);
    if let Err(failed) = rollout.gate(&droplets) {
        return Err(anyhow::anyhow!(rollout.stop_new(failed, false)));
    }
    let summary = rollout.switch_and_watch(&started.url, &droplets)?;
    step(&format!(
        "retire {}: pin {} to {} and scale {} to 0",
        old.as_str(),
        new.as_str(),
        short(&new_sha),
        old.as_str()
    ));
    pulumi.config_set(&rollout.key("build", new), &new_sha, true)?;
    pulumi.config_set(&rollout.key("count", old), "0", true)?;
    pulumi.up()?;
    Ok(format!(
        "{} serves build {} on {} droplets ({summary}); {} retired",
        new.as_str(),
        short(&new_sha),
        droplets.len(),
        old.as_str()
    ))
}

impl Rollout<'_> {
    /// Moves traffic to the new colour and watches it; switches back when either fails.
    fn switch_and_watch(&self, url: &str, droplets: &[Droplet]) -> anyhow::Result<String> {
        let new = self.new.as_str();
        step(&format!("switch the load balancer to {new}"));
        if let Err(e) = self.switch(self.new) {
            let failed = format!("switch failed: {e:#}");
            return Err(anyhow::anyhow!(self.stop_new(failed, true)));
        }
        let names: Vec<String> = droplets.iter().map(|d| d.name.clone()).collect();
        let watched = self.runtime.block_on(async {
            let watcher = watch::Watcher::new(url, &names).map_err(|e| e.to_string())?;
            watcher
                .wait_switched(self.opts.health_timeout)
                .await
                .map_err(|e| format!("switch failed: {e}"))?;
            step(&format!(
                "watch {new}'s answers for {} s",
                self.opts.watch.as_secs()
            ));
            watcher
                .watch(self.opts.watch, self.opts.max_error_percent)
                .await
                .map_err(|e| format!("watch failed: {e}"))
        });
        watched.map_err(|failed| anyhow::anyhow!(self.stop_new(failed, true)))
    }

    /// `rustlb:<colour>.<field>`, a `--path` key.
    fn key(&self, field: &str, color: Color) -> String {
        format!("{}:{}.{field}", crate::config::PROJECT, color.as_str())
    }

    fn start_new(&self, count: usize) -> anyhow::Result<()> {
        let new = self.new.as_str();
        step(&format!(
            "start {new}: {count} droplets of build {} beside {} (no traffic yet)",
            self.opts.build,
            self.old.as_str()
        ));
        self.pulumi
            .config_set(&self.key("build", self.new), &self.opts.build, true)?;
        self.pulumi
            .config_set(&self.key("count", self.new), &count.to_string(), true)?;
        if let Err(e) = self.pulumi.up() {
            let failed = format!("starting {new} failed: {e:#}");
            return Err(anyhow::anyhow!(self.stop_new(failed, false)));
        }
        Ok(())
    }

    /// Health, then `infra verify`'s checks, against each new droplet directly, over SSH.
    fn gate(&self, droplets: &[Droplet]) -> Result<(), String> {
        if droplets.is_empty() {
            return Err(format!(
                "health check failed: `pulumi up` created no {} droplets",
                self.new.as_str()
            ));
        }
        for d in droplets {
            step(&format!(
                "gate {} ({}): health, then verify's checks, over SSH",
                d.name, d.ip
            ));
            let tunnel = self.health_gate(d)?;
            let url = format!("http://{}", tunnel.local);
            self.runtime
                .block_on(crate::verify::gate(&url, self.opts.api_key.clone()))
                .map_err(|e| format!("verify check failed on {}: {e}", d.name))?;
        }
        Ok(())
    }

    /// Waits until the droplet answers 200 on the health path, through an SSH forward (opened
    /// again when it drops while the droplet is still booting).
    fn health_gate(&self, d: &Droplet) -> Result<tunnel::Tunnel, String> {
        let timeout = self.opts.health_timeout;
        let deadline = Instant::now() + timeout;
        let mut last = "no answer".to_owned();
        while Instant::now() < deadline {
            match tunnel::Tunnel::open(&self.opts.ssh, &self.opts.ssh_user, &d.ip, APP_PORT) {
                Ok(mut tunnel) => {
                    let url = format!("http://{}{}", tunnel.local, self.health_path);
                    while Instant::now() < deadline && tunnel.alive() {
                        let window = deadline.min(Instant::now() + Duration::from_secs(5));
                        match self.runtime.block_on(wait_healthy(&url, window)) {
                            Ok(()) => return Ok(tunnel),
                            Err(e) => last = e,
                        }
                    }
                }
                Err(e) => last = format!("{e:#}"),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        Err(format!(
            "health check failed: {} did not answer 200 on GET {} in time (limit {timeout:?}; last: {last})",
            d.name, self.health_path
        ))
    }

    fn switch(&self, to: Color) -> anyhow::Result<()> {
        self.pulumi.config_set(
            &format!("{}:activeColor", crate::config::PROJECT),
            to.as_str(),
            false,
        )?;
        self.pulumi.up()
    }

    /// Puts traffic back on the old colour (when it was switched) and scales the new one to
    /// 0; returns the message the command fails with.
    fn stop_new(&self, failed: String, switched: bool) -> String {
        let mut undo = Vec::new();
        if switched {
            step(&format!("switch back to {}", self.old.as_str()));
            undo.push(match self.switch(self.old) {
                Ok(()) => "traffic switched back".to_owned(),
                Err(e) => format!("switching back failed too: {e:#}"),
            });
        }
        step(&format!("stop {}", self.new.as_str()));
        let stopped = self
            .pulumi
            .config_set(&self.key("count", self.new), "0", true)
            .and_then(|()| self.pulumi.up());
        undo.push(match stopped {
            Ok(()) => format!("{} scaled to 0", self.new.as_str()),
            Err(e) => format!("scaling {} to 0 failed: {e:#}", self.new.as_str()),
        });
        format!(
            "rollout of build {} refused: {failed}; {} keeps serving ({})",
            self.opts.build,
            self.old.as_str(),
            undo.join(", ")
        )
    }
}

/// Polls `url` until it answers 200 or `deadline` passes; `Err` is the last answer.
async fn wait_healthy(url: &str, deadline: Instant) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let mut last = "no answer".to_owned();
    while Instant::now() < deadline {
        match client.get(url).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::OK => return Ok(()),
            Ok(r) => last = format!("answered {}", r.status().as_u16()),
            // Through a forward, an app that is not listening yet looks like a closed connection.
            Err(e) => last = format!("{e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last)
}

fn other(c: Color) -> Color {
    match c {
        Color::Blue => Color::Green,
        Color::Green => Color::Blue,
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn step(what: &str) {
    eprintln!("rollout: {what}");
}

/// The API key the gate writes with: given, or the stack's `rustlb:apiKey`.
pub fn api_key(pulumi: &Pulumi, given: Option<String>) -> anyhow::Result<Option<String>> {
    match given {
        Some(key) => Ok(Some(key)),
        None => pulumi
            .config_get(&format!("{}:apiKey", crate::config::PROJECT))
            .context("reading rustlb:apiKey for the gate's write checks"),
    }
}
