//! What the engine tests share: a throwaway repository, runs under the stand-in engine, and ways to read what was registered.
#![allow(dead_code, unused_imports)]

pub use infra::mock_engine::{
    self, MockAccount, Registration, Run, RunSpec, is_secret, is_unknown, reveal,
};
pub use serde_json::{Value, json};
pub use sha2::{Digest, Sha256};
pub use std::path::{Path, PathBuf};

pub const API_KEY: &str = "test-api-key-9f3b7c1d";
pub const SSH_KEY: &str = "aa:bb:cc:dd:ee:ff:00:11";
pub const VPC: &str = "digitalocean:index/vpc:Vpc";
pub const TAG: &str = "digitalocean:index/tag:Tag";
pub const CLUSTER: &str = "digitalocean:index/databaseCluster:DatabaseCluster";
pub const DB: &str = "digitalocean:index/databaseDb:DatabaseDb";
pub const USER: &str = "digitalocean:index/databaseUser:DatabaseUser";
pub const POOL: &str = "digitalocean:index/databaseConnectionPool:DatabaseConnectionPool";
pub const DB_FIREWALL: &str = "digitalocean:index/databaseFirewall:DatabaseFirewall";
pub const BUCKET: &str = "digitalocean:index/spacesBucket:SpacesBucket";
pub const OBJECT: &str = "digitalocean:index/spacesBucketObject:SpacesBucketObject";
pub const DROPLET: &str = "digitalocean:index/droplet:Droplet";
pub const CERT: &str = "digitalocean:index/certificate:Certificate";
pub const LB: &str = "digitalocean:index/loadBalancer:LoadBalancer";
pub const FIREWALL: &str = "digitalocean:index/firewall:Firewall";
pub const PROJECT: &str = "digitalocean:index/project:Project";
pub const SSH_KEY_RESOURCE: &str = "digitalocean:index/sshKey:SshKey";
pub const GET_DATABASE_CA: &str = "digitalocean:index/getDatabaseCa:getDatabaseCa";
pub const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGI2huabWGfZcbSPomuE/I2IIzvixPdr2NY7ff1cqaXL ops@rustlb";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A throwaway repository: the real Pulumi.yaml and stack files, plus a fake app build.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub sha256: String,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = repo_root();
        std::fs::copy(root.join("Pulumi.yaml"), dir.path().join("Pulumi.yaml")).unwrap();
        std::fs::create_dir_all(dir.path().join("stacks")).unwrap();
        for stack in ["dev", "staging", "prod", "local"] {
            let name = format!("Pulumi.{stack}.yaml");
            std::fs::copy(
                root.join("stacks").join(&name),
                dir.path().join("stacks").join(&name),
            )
            .unwrap();
        }
        let binary = &minimal_elf(b"pretend app build");
        std::fs::create_dir_all(dir.path().join("target/release")).unwrap();
        std::fs::write(dir.path().join("target/release/app"), binary).unwrap();
        let sha256 = Sha256::digest(binary)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Fixture { dir, sha256 }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn write_stack(&self, stack: &str, yaml: &str) {
        std::fs::write(
            self.root()
                .join("stacks")
                .join(format!("Pulumi.{stack}.yaml")),
            yaml,
        )
        .unwrap();
    }

    /// Runs `pulumi up` (or preview) of a stack with its secrets set, as the engine would.
    pub fn run(&self, stack: &str, dry_run: bool) -> Run {
        let run = self.try_run(stack, dry_run);
        assert!(
            run.success(),
            "program failed: {}\n{}",
            run.stderr,
            run.stdout
        );
        let problems = run.provider_problems();
        assert!(
            problems.is_empty(),
            "the provider would refuse {stack}:\n{}",
            problems.join("\n")
        );
        run
    }

    /// Like `run`, without asserting that the program succeeded.
    pub fn try_run(&self, stack: &str, dry_run: bool) -> Run {
        self.try_run_on(stack, dry_run, MockAccount::default())
    }

    /// Like `try_run`, on a given DigitalOcean account.
    pub fn try_run_on(&self, stack: &str, dry_run: bool, account: MockAccount) -> Run {
        self.try_run_with(stack, dry_run, account, &[])
    }

    /// Like `try_run`, with more of the stack's keys handed over as secrets (set with `--secret`).
    pub fn try_run_secret(&self, stack: &str, dry_run: bool, secret: &[&str]) -> Run {
        self.try_run_with(stack, dry_run, MockAccount::default(), secret)
    }

    fn try_run_with(
        &self,
        stack: &str,
        dry_run: bool,
        account: MockAccount,
        secret: &[&str],
    ) -> Run {
        let (mut config, _) = infra::preview::engine_config(self.root(), stack).unwrap();
        config.insert("rustlb:apiKey".into(), API_KEY.into());
        config.insert("rustlb:sshKeys".into(), json!([SSH_KEY]).to_string());
        config.insert("digitalocean:token".into(), "dop_v1_secret_token".into());
        mock_engine::run(&RunSpec {
            program: PathBuf::from(env!("CARGO_BIN_EXE_rustlb-program")),
            root: self.root().to_path_buf(),
            project: "rustlb".into(),
            stack: stack.into(),
            config,
            secret_keys: ["rustlb:apiKey", "rustlb:sshKeys", "digitalocean:token"]
                .iter()
                .chain(secret)
                .map(|k| k.to_string())
                .collect(),
            env: vec![],
            dry_run,
            placeholders: false,
            account,
        })
        .unwrap()
    }
}

/// The smallest x86-64 Linux executable header: static (no sections), so any droplet runs it.
pub fn minimal_elf(tail: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    (h[4], h[5], h[6]) = (2, 1, 1); // 64-bit, little-endian, version 1
    h[16..18].copy_from_slice(&2u16.to_le_bytes()); // executable
    h[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[52..54].copy_from_slice(&64u16.to_le_bytes());
    h[58..60].copy_from_slice(&64u16.to_le_bytes());
    h.extend_from_slice(tail);
    h
}

pub fn one<'a>(run: &'a Run, type_: &str, name: &str) -> &'a Registration {
    run.find(type_, name)
        .unwrap_or_else(|| panic!("no {type_} named {name}; got {:?}", names(run)))
}

pub fn names(run: &Run) -> Vec<(String, String)> {
    run.resources
        .iter()
        .map(|r| (r.type_.clone(), r.name.clone()))
        .collect()
}

pub fn input<'a>(r: &'a Registration, key: &str) -> &'a Value {
    r.inputs.get(key).unwrap_or(&Value::Null)
}

pub fn user_data(r: &Registration) -> String {
    let v = input(r, "userData");
    assert!(
        is_secret(v),
        "userData of {} must be sent as a secret",
        r.name
    );
    reveal(v).as_str().unwrap().to_string()
}
