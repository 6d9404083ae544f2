//! The local section: keys only the stack on this machine reads (`lbAddress`, `firstBackendPort`, `databaseUrl`).

use super::keys::{Section, defaults};
use super::reader::Reader;
use std::net::SocketAddr;

/// A local instance's drain: the supervisor has already taken it out of rotation, so this only
/// covers requests the load balancer sent just before.
pub const LOCAL_DRAIN_SECONDS: u64 = 1;

const LB_ADDRESS: &str = "lbAddress";
const FIRST_BACKEND_PORT: &str = "firstBackendPort";
const DATABASE_URL: &str = "databaseUrl";

/// Where the local load balancer and instances listen, and the database they share.
pub(super) struct Local {
    pub(super) lb_address: SocketAddr,
    pub(super) first_backend_port: u16,
    pub(super) database_url: String,
}

impl Local {
    pub(super) fn parse(r: &mut Reader) -> Local {
        let r = r.enter(Section::Local);
        let lb_address = r.string(LB_ADDRESS).unwrap_or_default();
        let lb_address = lb_address.parse::<SocketAddr>().unwrap_or_else(|_| {
            r.err(
                LB_ADDRESS,
                format!("must be host:port like 127.0.0.1:8080 (got {lb_address:?})"),
            );
            defaults::LB_ADDRESS
                .parse()
                .expect("default address parses")
        });
        let first_backend_port = r.uint(FIRST_BACKEND_PORT);
        // Backends take 50 ports from here on.
        let first_backend_port = match u16::try_from(first_backend_port) {
            Ok(p) if p >= 1024 && u32::from(p) + 50 <= 65535 => p,
            _ => {
                r.err(
                    FIRST_BACKEND_PORT,
                    format!("must be between 1024 and 65485 (got {first_backend_port})"),
                );
                defaults::FIRST_BACKEND_PORT
            }
        };
        let database_url = r.string(DATABASE_URL).unwrap_or_default();
        if !(database_url.starts_with("sqlite:") || database_url.starts_with("postgres")) {
            r.err(DATABASE_URL, "must be a sqlite:// or postgres:// URL");
        }
        Local {
            lb_address,
            first_backend_port,
            database_url,
        }
    }
}
