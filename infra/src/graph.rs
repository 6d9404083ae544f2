//! The program's declared resource graph: which resources each one uses, per input, and its resource options.
//!
//! Gestalt sends neither dependencies nor options with a registration, so the program declares
//! them here, and the stack transform (`crate::transform`) hands them to the engine: dependencies
//! as output values inside the inputs that use them, options as the transform's options. The
//! engine's destroy and replacement order comes only from these declarations.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Type tokens of the resources the program declares (each checked against the schema cut by a test).
pub mod token {
    /// VPC.
    pub const VPC: &str = "digitalocean:index/vpc:Vpc";
    /// Tag.
    pub const TAG: &str = "digitalocean:index/tag:Tag";
    /// SSH key.
    pub const SSH_KEY: &str = "digitalocean:index/sshKey:SshKey";
    /// Managed database cluster.
    pub const DATABASE_CLUSTER: &str = "digitalocean:index/databaseCluster:DatabaseCluster";
    /// Database inside a cluster.
    pub const DATABASE_DB: &str = "digitalocean:index/databaseDb:DatabaseDb";
    /// Database user.
    pub const DATABASE_USER: &str = "digitalocean:index/databaseUser:DatabaseUser";
    /// PgBouncer pool.
    pub const DATABASE_POOL: &str =
        "digitalocean:index/databaseConnectionPool:DatabaseConnectionPool";
    /// Trusted sources of a cluster.
    pub const DATABASE_FIREWALL: &str = "digitalocean:index/databaseFirewall:DatabaseFirewall";
    /// Spaces bucket.
    pub const BUCKET: &str = "digitalocean:index/spacesBucket:SpacesBucket";
    /// Object in a bucket.
    pub const BUCKET_OBJECT: &str = "digitalocean:index/spacesBucketObject:SpacesBucketObject";
    /// Droplet.
    pub const DROPLET: &str = "digitalocean:index/droplet:Droplet";
    /// Load balancer.
    pub const LOAD_BALANCER: &str = "digitalocean:index/loadBalancer:LoadBalancer";
    /// Certificate.
    pub const CERTIFICATE: &str = "digitalocean:index/certificate:Certificate";
    /// Cloud firewall.
    pub const FIREWALL: &str = "digitalocean:index/firewall:Firewall";
    /// Project.
    pub const PROJECT: &str = "digitalocean:index/project:Project";
    /// Monitoring alert policy.
    pub const MONITOR_ALERT: &str = "digitalocean:index/monitorAlert:MonitorAlert";
    /// Uptime check.
    pub const UPTIME_CHECK: &str = "digitalocean:index/uptimeCheck:UptimeCheck";
    /// Alert on an uptime check.
    pub const UPTIME_ALERT: &str = "digitalocean:index/uptimeAlert:UptimeAlert";
    /// Every token above.
    pub const ALL: &[&str] = &[
        VPC,
        TAG,
        SSH_KEY,
        DATABASE_CLUSTER,
        DATABASE_DB,
        DATABASE_USER,
        DATABASE_POOL,
        DATABASE_FIREWALL,
        BUCKET,
        BUCKET_OBJECT,
        DROPLET,
        LOAD_BALANCER,
        CERTIFICATE,
        FIREWALL,
        PROJECT,
        MONITOR_ALERT,
        UPTIME_CHECK,
        UPTIME_ALERT,
    ];
}

/// Resource options the engine honours when a stack transform returns them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Options {
    /// `pulumi destroy` and replacements refuse to delete it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub protect: bool,
    /// Delete the old resource before creating its replacement.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub delete_before_replace: bool,
    /// How long the provider may take to delete it (a Go duration such as `4m`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_timeout: Option<String>,
}

/// What the program declared for one resource.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    /// Input name -> URNs of the resources whose outputs or names that input holds.
    pub uses: BTreeMap<String, BTreeSet<String>>,
    /// Inputs that carry secrets: marked secret even while unknown (in a preview), which
    /// Gestalt does not do.
    pub secret: BTreeSet<String>,
    /// Its options.
    pub options: Options,
}

/// A declared resource, to name as a dependency of later ones.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ref {
    /// Its Pulumi URN.
    pub urn: String,
}

/// The declarations of one program run, shared with the transform server.
#[derive(Debug, Clone)]
pub struct Graph {
    project: String,
    stack: String,
    declared: Arc<Mutex<BTreeMap<String, Declared>>>,
}

impl Graph {
    /// An empty graph for a project's stack.
    pub fn new(project: &str, stack: &str) -> Graph {
        Graph {
            project: project.to_string(),
            stack: stack.to_string(),
            declared: Arc::default(),
        }
    }

    /// The URN the engine gives a resource registered without a parent (the stack is its parent).
    pub fn urn(&self, type_: &str, name: &str) -> String {
        urn(&self.stack, &self.project, type_, name)
    }

    /// Starts the declaration of a resource; call it before the resource is created.
    pub fn node(&self, type_: &str, name: &str) -> Node<'_> {
        Node {
            graph: self,
            urn: self.urn(type_, name),
            declared: Declared::default(),
        }
    }

    /// What was declared for a URN, if anything.
    pub fn get(&self, urn: &str) -> Option<Declared> {
        self.declared.lock().expect("graph lock").get(urn).cloned()
    }
}

/// `urn:pulumi:<stack>::<project>::<type>::<name>`, for a resource whose parent is the stack.
pub fn urn(stack: &str, project: &str, type_: &str, name: &str) -> String {
    format!("urn:pulumi:{stack}::{project}::{type_}::{name}")
}

/// A declaration being built.
#[must_use = "call declare()"]
pub struct Node<'g> {
    graph: &'g Graph,
    urn: String,
    declared: Declared,
}

impl Node<'_> {
    /// The input `property` holds outputs or names of `deps`.
    pub fn uses(mut self, property: &str, deps: &[&Ref]) -> Self {
        self.declared
            .uses
            .entry(property.to_string())
            .or_default()
            .extend(deps.iter().map(|d| d.urn.clone()));
        self
    }

    /// The input `property` carries secrets.
    pub fn secret(mut self, property: &str) -> Self {
        self.declared.secret.insert(property.to_string());
        self
    }

    /// The resource's options.
    pub fn options(mut self, options: Options) -> Self {
        self.declared.options = options;
        self
    }

    /// Records the declaration and returns the resource's reference.
    pub fn declare(self) -> Ref {
        self.graph
            .declared
            .lock()
            .expect("graph lock")
            .insert(self.urn.clone(), self.declared);
        Ref { urn: self.urn }
    }
}
