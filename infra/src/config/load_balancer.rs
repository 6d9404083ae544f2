//! The load balancer section (`loadBalancerSizeUnit`, `httpIdleTimeoutSeconds`), within DigitalOcean's ranges.

use super::keys::Section;
use super::reader::Reader;
use crate::limits;

const SIZE_UNIT: &str = "loadBalancerSizeUnit";
const IDLE_TIMEOUT: &str = "httpIdleTimeoutSeconds";

/// The load balancer's size and idle timeout.
pub(super) struct LoadBalancer {
    pub(super) size_unit: u32,
    pub(super) http_idle_timeout_seconds: u32,
}

impl LoadBalancer {
    pub(super) fn parse(r: &mut Reader) -> LoadBalancer {
        let r = r.enter(Section::LoadBalancer);
        let size_unit = r.uint(SIZE_UNIT);
        if let Some(problem) = limits::range_problem(size_unit, &limits::LB_SIZE_UNIT) {
            r.err(SIZE_UNIT, problem);
        }
        let http_idle_timeout_seconds = r.uint(IDLE_TIMEOUT);
        if let Some(problem) =
            limits::range_problem(http_idle_timeout_seconds, &limits::LB_IDLE_TIMEOUT_SECONDS)
        {
            r.err(IDLE_TIMEOUT, problem);
        }
        LoadBalancer {
            size_unit,
            http_idle_timeout_seconds,
        }
    }
}
