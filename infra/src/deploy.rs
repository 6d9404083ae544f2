//! The one builder of an app instance's settings from the stack: droplets and local instances differ only where they must.

use secrecy::SecretString;

use crate::cloud_init::{CA_FILE, SPOOL_DIR};
use crate::config::{APP_PORT, StackConfig};

/// What sets one instance apart from the others of its stack.
pub enum Instance {
    /// A droplet behind DigitalOcean's load balancer, reaching the database through PgBouncer.
    Droplet {
        /// The droplet's name, which becomes the app's `server_id`.
        server_id: String,
        /// The runtime role's URL through the pool (secret).
        database_url: String,
        /// The schema owner's URL, straight to the cluster (secret).
        owner_url: String,
        /// The API key (secret).
        api_key: String,
        /// Whether the droplet has the cluster's CA to verify the database with.
        verify_ca: bool,
    },
    /// An instance of the local stack, on loopback.
    Local {
        /// `local-N`.
        server_id: String,
        /// Its own port.
        port: u16,
    },
}

/// The stack's part of every instance's settings, read once from the stack config.
#[derive(Debug, Clone)]
pub struct Deploy {
    drain_seconds: u64,
    health_timeout_ms: u64,
    retention: app::LogRetention,
    api_key: Option<SecretString>,
    database_url: String,
}

impl Deploy {
    /// Takes what every instance of the stack shares.
    pub fn of(cfg: &StackConfig) -> Deploy {
        Deploy {
            drain_seconds: cfg.drain_seconds(),
            health_timeout_ms: cfg.app_health_timeout_ms(),
            retention: cfg.log_retention(),
            api_key: cfg.api_key().cloned(),
            database_url: cfg.database_url().to_owned(),
        }
    }

    /// Seconds an instance drains after SIGTERM.
    pub fn drain_seconds(&self) -> u64 {
        self.drain_seconds
    }

    /// The settings of one instance.
    pub fn settings(&self, instance: Instance) -> app::DeploySettings {
        let mut settings = app::DeploySettings {
            environment: app::Environment::Production,
            host: std::net::Ipv4Addr::LOCALHOST.into(),
            port: APP_PORT,
            server_id: String::new(),
            api_key: self.api_key.clone(),
            database_url: self.database_url.clone().into(),
            owner_url: None,
            statement_cache: true,
            run_migrations: false,
            ca_file: None,
            drain_seconds: Some(self.drain_seconds),
            health_timeout_ms: Some(self.health_timeout_ms),
            // Both load balancers append the client's address: the last hop.
            trusted_proxy_hops: Some(1),
            retention: self.retention,
            // The working directory's `data/spool`: the local stack's instances run in the
            // repository root, each in its own `data/spool/<server id>`.
            spool_dir: None,
        };
        match instance {
            Instance::Droplet {
                server_id,
                database_url,
                owner_url,
                api_key,
                verify_ca,
            } => {
                settings.host = std::net::Ipv4Addr::UNSPECIFIED.into();
                settings.server_id = server_id;
                settings.api_key = Some(api_key.into());
                settings.database_url = database_url.into();
                settings.owner_url = Some(owner_url.into());
                // PgBouncer in transaction mode cannot keep prepared statements across transactions.
                settings.statement_cache = false;
                // Every droplet may migrate at start: the app serialises them with an advisory lock.
                settings.run_migrations = true;
                settings.ca_file = verify_ca.then(|| CA_FILE.into());
                settings.spool_dir = Some(SPOOL_DIR.into());
            }
            Instance::Local { server_id, port } => {
                settings.server_id = server_id;
                settings.port = port;
                // Migrations ran once before the instances started; racing migrators would collide.
                settings.run_migrations = false;
            }
        }
        settings
    }
}
