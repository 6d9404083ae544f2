//! The local section: keys only the stack on this machine reads (addresses, database, and where its load balancer departs from DigitalOcean's).

use super::keys::{Section, defaults};
use super::reader::Reader;
use std::net::SocketAddr;

const LB_ADDRESS: &str = "lbAddress";
const LB_HTTPS_ADDRESS: &str = "lbHttpsAddress";
const FIRST_BACKEND_PORT: &str = "firstBackendPort";
const DATABASE_URL: &str = "databaseUrl";
const LEAVE_ON_DRAINING: &str = "lbLeaveOnDraining";
const LEAST_OUTSTANDING: &str = "lbLeastOutstanding";
const RESPONSE_TIMEOUT: &str = "lbResponseTimeoutSeconds";
const EJECT_AFTER_TIMEOUTS: &str = "lbEjectAfterTimeouts";

/// Longest first-byte timeout the local load balancer takes, as DigitalOcean's idle timeout.
const MAX_RESPONSE_TIMEOUT_SECONDS: u32 = 600;

/// Where the local load balancer and instances listen, and the database they share.
pub(super) struct Local {
    pub(super) lb_address: SocketAddr,
    pub(super) lb_https_address: SocketAddr,
    pub(super) first_backend_port: u16,
    pub(super) database_url: String,
    pub(super) lb: LocalLb,
}

/// Where the local load balancer departs from DigitalOcean's; every default is
/// DigitalOcean's behaviour, and `stacks/Pulumi.local.yaml` turns the departures on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocalLb {
    /// A 503 `draining` health answer takes an instance out of rotation at once
    /// (`lbLeaveOnDraining`); the instances' drain is shortened to match.
    pub leave_on_draining: bool,
    /// Requests go to the instance with the fewest in flight, ties in turn
    /// (`lbLeastOutstanding`), instead of strict round robin.
    pub least_outstanding: bool,
    /// Seconds an instance has to start its answer before the client gets 504
    /// (`lbResponseTimeoutSeconds`); `None` (0) means `httpIdleTimeoutSeconds`, as on
    /// DigitalOcean.
    pub response_timeout_seconds: Option<u32>,
    /// Response timeouts in a row that take an instance out of rotation until its checks pass
    /// again (`lbEjectAfterTimeouts`); 0: never.
    pub eject_after_timeouts: u32,
}

impl LocalLb {
    fn parse(r: &mut Reader) -> LocalLb {
        let leave_on_draining = r.boolean(LEAVE_ON_DRAINING);
        let least_outstanding = r.boolean(LEAST_OUTSTANDING);
        let response_timeout = r.uint(RESPONSE_TIMEOUT);
        if response_timeout > MAX_RESPONSE_TIMEOUT_SECONDS {
            r.err(
                RESPONSE_TIMEOUT,
                format!("must be 0 (httpIdleTimeoutSeconds) to {MAX_RESPONSE_TIMEOUT_SECONDS} (got {response_timeout})"),
            );
        }
        let eject_after_timeouts = r.uint(EJECT_AFTER_TIMEOUTS);
        LocalLb {
            leave_on_draining,
            least_outstanding,
            response_timeout_seconds: (response_timeout != 0).then_some(response_timeout),
            eject_after_timeouts,
        }
    }
}

impl Local {
    pub(super) fn parse(r: &mut Reader) -> Local {
        let r = r.enter(Section::Local);
        let lb_address = address(r, LB_ADDRESS, defaults::LB_ADDRESS);
        let lb_https_address = address(r, LB_HTTPS_ADDRESS, defaults::LB_HTTPS_ADDRESS);
        if lb_https_address == lb_address {
            r.err(LB_HTTPS_ADDRESS, format!("must differ from {LB_ADDRESS}"));
        }
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
        let lb = LocalLb::parse(r);
        Local {
            lb_address,
            lb_https_address,
            first_backend_port,
            database_url,
            lb,
        }
    }
}

/// A `host:port` key; a bad value is reported and `default` stands in.
fn address(r: &mut Reader, key: &str, default: &str) -> SocketAddr {
    let text = r.string(key).unwrap_or_default();
    text.parse::<SocketAddr>().unwrap_or_else(|_| {
        r.err(
            key,
            format!("must be host:port like {default} (got {text:?})"),
        );
        default.parse().expect("default address parses")
    })
}
