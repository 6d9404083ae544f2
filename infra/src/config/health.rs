//! The health check section: how the load balancer decides a droplet is healthy.

use super::keys::Section;
use super::reader::Reader;
use crate::limits;
use serde::Deserialize;

/// The port the app listens on inside every droplet.
pub const APP_PORT: u16 = 3000;

/// The load balancer's health check, in DigitalOcean's terms.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HealthCheck {
    /// `http`, `https` or `tcp`.
    pub protocol: String,
    /// Port checked on each droplet.
    pub port: u16,
    /// Path requested (http/https).
    pub path: String,
    /// Seconds between checks.
    pub check_interval_seconds: u32,
    /// Seconds before a check counts as failed.
    pub response_timeout_seconds: u32,
    /// Consecutive failures that take a droplet out.
    pub unhealthy_threshold: u32,
    /// Consecutive successes that bring it back.
    pub healthy_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        // Every 30 s, out after 3 failures, back after 2 passes. The provider's defaults differ from
        // the API's, so every field is set explicitly.
        HealthCheck {
            protocol: "http".into(),
            port: APP_PORT,
            path: "/health".into(),
            check_interval_seconds: 30,
            response_timeout_seconds: 5,
            unhealthy_threshold: 3,
            healthy_threshold: 2,
        }
    }
}

impl HealthCheck {
    /// `healthCheck`, within DigitalOcean's ranges (the local stack allows shorter intervals).
    pub(super) fn parse(r: &mut Reader, is_local: bool) -> HealthCheck {
        let r = r.enter(Section::HealthCheck);
        let health_check: HealthCheck = r.object("healthCheck");
        check(r, &health_check, is_local);
        health_check
    }
}

fn check(r: &mut Reader, h: &HealthCheck, is_local: bool) {
    let key = |f: &str| format!("healthCheck.{f}");
    if !["http", "https", "tcp"].contains(&h.protocol.as_str()) {
        r.err(
            &key("protocol"),
            format!("must be http, https or tcp (got {:?})", h.protocol),
        );
    }
    if h.port == 0 {
        r.err(&key("port"), "must be between 1 and 65535");
    }
    if h.protocol != "tcp" && !h.path.starts_with('/') {
        r.err(
            &key("path"),
            format!("must start with / (got {:?})", h.path),
        );
    }
    // DigitalOcean's floor is 3 s; the local load balancer accepts 1 s so local runs converge fast.
    let seconds = if is_local {
        1..=*limits::HEALTH_CHECK_SECONDS.end()
    } else {
        limits::HEALTH_CHECK_SECONDS
    };
    let checks = [
        ("checkIntervalSeconds", h.check_interval_seconds, &seconds),
        (
            "responseTimeoutSeconds",
            h.response_timeout_seconds,
            &seconds,
        ),
        (
            "unhealthyThreshold",
            h.unhealthy_threshold,
            &limits::HEALTH_CHECK_THRESHOLD,
        ),
        (
            "healthyThreshold",
            h.healthy_threshold,
            &limits::HEALTH_CHECK_THRESHOLD,
        ),
    ];
    for (field, value, range) in checks {
        if let Some(problem) = limits::range_problem(value, range) {
            r.err(&key(field), problem);
        }
    }
}
