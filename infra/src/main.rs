//! The infra binary: the Pulumi program (under the engine), the offline preview and the local stack commands.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use infra::config::{StackConfig, StackKind};
use infra::{cloud_rollout, local, root, verify};
use std::path::PathBuf;

/// rustlb infrastructure: DigitalOcean stacks through Pulumi, and the local stack.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Show what `pulumi up` would create for a DigitalOcean stack (offline, no secrets needed).
    Preview {
        /// Stack name (stacks/Pulumi.<stack>.yaml).
        #[arg(long, short)]
        stack: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Start the local stack.
    Up {
        /// Stack name (only `local` runs on this machine).
        #[arg(long, short)]
        stack: String,
        /// Return once it is up and leave it running.
        #[arg(long)]
        detach: bool,
        /// Serve HTTPS on rustlb:lbHttpsAddress as well, TLS ending at the load balancer, and
        /// redirect HTTP there; with a self-signed certificate for localhost, 127.0.0.1 and ::1
        /// that it makes under .stack/<stack>/tls/ and prints the path of, unless given one.
        #[arg(long)]
        https: bool,
        /// PEM certificate (then any intermediates) for --https.
        #[arg(long, requires_all = ["https", "private_key"])]
        certificate: Option<PathBuf>,
        /// PEM private key of --certificate.
        #[arg(long, requires_all = ["https", "certificate"])]
        private_key: Option<PathBuf>,
    },
    /// Show the local stack's state.
    Status {
        /// Stack name.
        #[arg(long, short)]
        stack: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restart the local stack's instances one at a time, each back in rotation before the next.
    Restart {
        /// Stack name.
        #[arg(long, short)]
        stack: String,
        /// Restart only this instance (e.g. local-2).
        #[arg(long)]
        server_id: Option<String>,
    },
    /// Blue/green: start a new build beside the running one, check it, switch the load
    /// balancer to it, watch its 5xx rate, retire the old one (or roll back). The local stack
    /// runs BINARY through its supervisor; a DigitalOcean stack is driven through the `pulumi`
    /// CLI (the idle colour gets `--build`, checked over SSH before any traffic).
    Rollout {
        /// Stack name: `local`, or a DigitalOcean stack (dev, staging, prod).
        #[arg(long, short)]
        stack: String,
        /// The local stack's new `app` binary, e.g. target/release/app.
        #[arg(long, required_if_eq("stack", "local"))]
        binary: Option<PathBuf>,
        /// A cloud stack's new build: `local` (the program's `rustlb:appBinary`, uploaded by
        /// `pulumi up`) or the sha256 of a build uploaded before.
        #[arg(long, default_value = "local")]
        build: String,
        /// Seconds each new instance may take to answer 200 on the health check path [local:
        /// 30; cloud: 600, droplets boot and download the build first].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
        health_timeout_seconds: Option<u64>,
        /// Seconds to watch the new build's 5xx rate after the switch [local: 10; cloud: 300].
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=3600))]
        watch_seconds: Option<u64>,
        /// Roll back when more than this percentage of the new build's answers are 5xx.
        #[arg(long, default_value_t = 1.0)]
        max_error_percent: f64,
        /// Cloud: the user the gate's SSH forward to each new droplet logs in as.
        #[arg(long, default_value = "root")]
        ssh_user: String,
        /// Cloud: API key for the gate's write checks (default: `pulumi config get rustlb:apiKey`).
        #[arg(long, env = "RUSTLB_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
    },
    /// Check a running deployment through its load balancer (local or DigitalOcean).
    Verify {
        /// The load balancer's URL, e.g. http://127.0.0.1:8080 or `pulumi stack output url`.
        #[arg(long, required_unless_present = "stack")]
        url: Option<String>,
        /// The local stack to verify (its URL, and with --https its certificate, are read
        /// from the running supervisor).
        #[arg(long, short)]
        stack: Option<String>,
        /// A PEM certificate to trust for an https:// URL besides the system's roots.
        #[arg(long)]
        cacert: Option<PathBuf>,
        /// API key for the write checks (the `rustlb:apiKey` of the stack).
        #[arg(long, env = "RUSTLB_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// Requests sent to measure the distribution.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        requests: u32,
        /// Also run the failure drills under load (local stack only): kill -9, rolling
        /// restarts, with PostgreSQL a database outage, and rollouts of a good and two bad builds.
        #[arg(long, requires = "stack")]
        drills: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Once per new cluster, from an admin network: let the schema owner role create the app's
    /// tables (PostgreSQL 15+ gives that right to the database owner only, DigitalOcean's admin).
    DbBootstrap {
        /// The admin's URL of the app database (`pulumi stack output databaseAdminUri
        /// --show-secrets`); best passed in the environment, where `ps` does not show it.
        #[arg(long, env = "RUSTLB_DB_ADMIN_URL", hide_env_values = true)]
        admin_url: String,
        /// The owner role (`pulumi stack output databaseOwnerRole`).
        #[arg(long)]
        owner: String,
    },
    /// Back up the local stack's database (running or not): pg_dump for PostgreSQL, an online
    /// copy for SQLite.
    Backup {
        /// Stack name (only `local`).
        #[arg(long, short)]
        stack: String,
        /// Where to write it (default: backups/<stack>-<UTC time>.<pgdump|sqlite>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Restore the local stack's database from a backup (the stack must be stopped).
    Restore {
        /// Stack name (only `local`).
        #[arg(long, short)]
        stack: String,
        /// The backup `infra backup` wrote.
        #[arg(long)]
        from: PathBuf,
        /// Replace a database that is not empty.
        #[arg(long)]
        force: bool,
    },
    /// Stop the local stack.
    Destroy {
        /// Stack name.
        #[arg(long, short)]
        stack: String,
    },
    /// Run one app instance (the local stack starts its instances this way, so the infra
    /// binary is all a user has to build).
    #[command(hide = true)]
    ServeApp,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(command) => run_command(command),
        None if std::env::var_os("PULUMI_MONITOR").is_some() => report(cloud::run_under_engine()),
        None => report(Err(anyhow::anyhow!(
            "no command: use `preview --stack <name>`, or run `pulumi up` to deploy (see --help)"
        ))),
    }
}

fn up_command(stack: String, detach: bool, https: Option<local::Https>) -> std::process::ExitCode {
    with_root(|root| {
        local::up(
            root,
            local_config(root, &stack)?,
            detach,
            rollout_gate(),
            https,
        )
    })
}

fn report(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_command(command: Command) -> std::process::ExitCode {
    match command {
        // An instance of the local stack needs no repository root: it runs as the app does.
        Command::ServeApp => app::run(),
        Command::Preview { stack, json } => with_root(|root| cloud::preview(root, &stack, json)),
        Command::Up {
            stack,
            detach,
            https,
            certificate,
            private_key,
        } => {
            let https = https.then_some(match (certificate, private_key) {
                (Some(certificate), Some(private_key)) => local::Https::Files {
                    certificate,
                    private_key,
                },
                _ => local::Https::SelfSigned,
            });
            up_command(stack, detach, https)
        }
        Command::Rollout {
            stack,
            binary,
            build,
            health_timeout_seconds,
            watch_seconds,
            max_error_percent,
            ssh_user,
            api_key,
        } => with_root(|root| {
            let phases = Phases {
                health_timeout_seconds,
                watch_seconds,
                max_error_percent,
            };
            rollout_command(root, &stack, binary, build, phases, ssh_user, api_key)
        }),
        Command::Status { stack, json } => {
            with_root(|root| local::status(root, local_config(root, &stack)?, json))
        }
        Command::Restart { stack, server_id } => {
            with_root(|root| local::restart(root, local_config(root, &stack)?, server_id))
        }
        Command::Verify {
            url,
            stack,
            cacert,
            api_key,
            requests,
            drills,
            json,
        } => verify_command(
            Target { url, stack, cacert },
            api_key,
            requests,
            drills,
            json,
        ),
        Command::DbBootstrap { admin_url, owner } => report((|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(app::grant_schema_to_owner(&admin_url, &owner))?;
            println!(
                "{owner} may now create the app's tables in schema public; the droplets migrate at their next start"
            );
            Ok(())
        })()),
        Command::Backup { stack, out } => {
            with_root(|root| local::backup(root, &local_config(root, &stack)?, out))
        }
        Command::Restore { stack, from, force } => {
            with_root(|root| local::restore(root, &local_config(root, &stack)?, &from, force))
        }
        Command::Destroy { stack } => {
            with_root(|root| local::destroy(root, local_config(root, &stack)?))
        }
    }
}

/// What `verify` is pointed at, as given.
struct Target {
    url: Option<String>,
    stack: Option<String>,
    cacert: Option<PathBuf>,
}

fn verify_command(
    Target { url, stack, cacert }: Target,
    api_key: Option<String>,
    requests: u32,
    drills: bool,
    json: bool,
) -> std::process::ExitCode {
    let outcome = (|| -> anyhow::Result<bool> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let local = match &stack {
            Some(stack) => {
                let root = root::current_root()?;
                let cfg = local_config(&root, stack)?;
                Some((root, cfg))
            }
            None => None,
        };
        let (url, root_certificate) = match (url, &local) {
            (Some(url), _) => (url, cacert),
            (None, Some((root, cfg))) => {
                let report = local::fetch_report(root, cfg)?;
                (report.url, cacert.or(report.certificate.map(PathBuf::from)))
            }
            (None, None) => anyhow::bail!("give --url or --stack local"),
        };
        // The local stack's own key, unless one was given.
        let api_key = api_key.or_else(|| {
            local.as_ref().and_then(|(_, cfg)| {
                use secrecy::ExposeSecret;
                cfg.api_key().map(|k| k.expose_secret().to_owned())
            })
        });
        let opts = verify::Options {
            url,
            api_key,
            requests,
            root_certificate,
        };
        let mut report = runtime.block_on(verify::verify(&opts))?;
        if drills && let Some((root, cfg)) = &local {
            report.drills = runtime.block_on(verify::drills::run_all(root, cfg, &opts))?;
        }
        if json {
            println!("{}", serde_json::to_string_pretty(&report.to_json())?);
        } else {
            print!("{}", report.to_text());
        }
        Ok(report.passed())
    })();
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The rollout's timing options as given (defaults differ between local and cloud).
struct Phases {
    health_timeout_seconds: Option<u64>,
    watch_seconds: Option<u64>,
    max_error_percent: f64,
}

/// `infra rollout`: through the local stack's supervisor, or through the `pulumi` CLI.
fn rollout_command(
    root: &std::path::Path,
    stack: &str,
    binary: Option<PathBuf>,
    build: String,
    phases: Phases,
    ssh_user: String,
    api_key: Option<String>,
) -> anyhow::Result<()> {
    let secs = std::time::Duration::from_secs;
    if StackKind::of(stack) == StackKind::Local {
        let phases = local::RolloutPhases {
            health_timeout: secs(phases.health_timeout_seconds.unwrap_or(30)),
            watch: secs(phases.watch_seconds.unwrap_or(10)),
            max_error_percent: phases.max_error_percent,
        };
        let binary = binary.context("--binary is required for the local stack")?;
        return local::rollout(root, local_config(root, stack)?, &binary, phases);
    }
    anyhow::ensure!(
        binary.is_none(),
        "--binary is for the local stack; a cloud stack rolls out `--build` (default: local, the program's rustlb:appBinary)"
    );
    let cfg = StackConfig::load(root, stack)?;
    let pulumi = cloud_rollout::Pulumi::new("pulumi", stack, root);
    let opts = cloud_rollout::Options {
        build,
        health_timeout: secs(phases.health_timeout_seconds.unwrap_or(600)),
        watch: secs(phases.watch_seconds.unwrap_or(300)),
        max_error_percent: phases.max_error_percent,
        ssh: "ssh".into(),
        ssh_user,
        api_key: cloud_rollout::api_key(&pulumi, api_key)?,
    };
    println!("{}", cloud_rollout::run(&cfg, &pulumi, &opts)?);
    Ok(())
}

/// `infra verify`'s checks against one new instance, for the supervisor's rollouts.
fn rollout_gate() -> local::Gate {
    std::sync::Arc::new(|url, api_key| Box::pin(async move { verify::gate(&url, api_key).await }))
}

/// Runs `f` in the repository root (the folder holding Pulumi.yaml) and reports its result.
fn with_root(f: impl FnOnce(&std::path::Path) -> anyhow::Result<()>) -> std::process::ExitCode {
    report(root::current_root().and_then(|root| f(&root)))
}

fn local_config(root: &std::path::Path, stack: &str) -> anyhow::Result<StackConfig> {
    StackKind::Local.require(stack)?;
    Ok(StackConfig::load(root, stack)?)
}

/// What needs the `cloud` feature: the Pulumi program and its offline preview.
#[cfg(feature = "cloud")]
mod cloud {
    use anyhow::Context as _;
    use infra::preview;
    use std::path::Path;

    /// `infra preview`: what `pulumi up` would create, offline.
    pub fn preview(root: &Path, stack: &str, json: bool) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("locating the infra binary")?;
        let p = preview::run(root, stack, &exe)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&p.to_json())?);
        } else {
            print!("{}", p.to_text());
        }
        Ok(())
    }

    /// The language host runs the binary with PULUMI_* set and no arguments (`infra` built
    /// with `cloud` can stand in for `rustlb-program`; `infra preview` relies on that).
    pub fn run_under_engine() -> anyhow::Result<()> {
        infra::program::run_under_engine()
    }
}

/// Without the `cloud` feature the binary runs the local stack only, and says how to get the rest.
#[cfg(not(feature = "cloud"))]
mod cloud {
    const REBUILD: &str = "this infra binary was built without the `cloud` feature (the Pulumi program and its preview); build it with `cargo build --release -p infra --features cloud`";

    pub fn preview(_root: &std::path::Path, _stack: &str, _json: bool) -> anyhow::Result<()> {
        anyhow::bail!("{REBUILD}")
    }

    pub fn run_under_engine() -> anyhow::Result<()> {
        anyhow::bail!("{REBUILD}")
    }
}
