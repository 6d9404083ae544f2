//! The local stack's app instances: their names, ports and settings.

use anyhow::Context as _;

use crate::config::StackConfig;
use crate::deploy::{Deploy, Instance};

/// One app instance of the local stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalInstance {
    /// `local-N`, its `server_id` and the load balancer's name for it.
    pub server_id: String,
    /// Its loopback port: `firstBackendPort + N - 1`.
    pub port: u16,
}

/// Every instance of the local stack, in order; the one list the supervisor, the load
/// balancer and the port check all use.
pub fn instances(cfg: &StackConfig) -> anyhow::Result<Vec<LocalInstance>> {
    (0..cfg.droplet_count())
        .map(|i| {
            let port =
                u16::try_from(u32::from(cfg.first_backend_port()) + i).with_context(|| {
                    format!(
                        "{}: rustlb:firstBackendPort + rustlb:dropletCount passes 65535",
                        cfg.source
                    )
                })?;
            Ok(LocalInstance {
                server_id: format!("local-{}", i + 1),
                port,
            })
        })
        .collect()
}

impl LocalInstance {
    /// The instance's environment: production config on loopback, the stack's database and key.
    pub fn env(&self, deploy: &Deploy) -> Vec<(String, String)> {
        deploy
            .settings(Instance::Local {
                server_id: self.server_id.clone(),
                port: self.port,
            })
            .to_env()
    }
}
