//! The network section (`region`, `vpcCidr`): where the stack runs and its private range.

use super::error::KeyError;
use super::keys::{Section, defaults};
use super::raw::{RawValue, raw_from_stack_file};
use super::reader::Reader;
use super::stack::LOCAL_STACK;
use crate::limits;
use ipnet::IpNet;
use serde_json::Value;
use std::path::{Path, PathBuf};

const REGION: &str = "region";
const VPC_CIDR: &str = "vpcCidr";

/// The region and the VPC range; no range when it was refused.
pub(super) struct Network {
    pub(super) region: String,
    pub(super) vpc_cidr: Option<IpNet>,
}

impl Network {
    pub(super) fn parse(r: &mut Reader) -> Network {
        let r = r.enter(Section::Network);
        let region = r.string(REGION).unwrap_or_default();
        let vpc_cidr = vpc_range(r, &region);
        Network { region, vpc_cidr }
    }
}

/// The VPC range: a private IPv4 CIDR DigitalOcean accepts in `region`.
fn vpc_range(r: &mut Reader, region: &str) -> Option<IpNet> {
    let text = r.string(VPC_CIDR).unwrap_or_default();
    match text.parse::<IpNet>() {
        Ok(n) if n != n.trunc() => {
            r.err(
                VPC_CIDR,
                format!("{text} has host bits set; did you mean {}?", n.trunc()),
            );
            None
        }
        Ok(IpNet::V6(_)) => {
            r.err(VPC_CIDR, "must be an IPv4 range");
            None
        }
        Ok(IpNet::V4(n)) => match limits::vpc_range_problem(region, n) {
            Some(problem) => {
                r.err(VPC_CIDR, problem);
                None
            }
            None => Some(IpNet::V4(n)),
        },
        Err(_) => {
            r.err(
                VPC_CIDR,
                format!("is not a CIDR like {} (got {text:?})", defaults::VPC_CIDR),
            );
            None
        }
    }
}

/// DigitalOcean refuses overlapping VPC ranges in one region, so sibling stacks must not clash.
pub(super) fn clashes(root: &Path, stack: &str, region: &str, vpc_cidr: IpNet) -> Vec<KeyError> {
    let mut errors = Vec::new();
    for (other, other_region, net) in sibling_ranges(root, stack) {
        if other_region == region && (net.contains(&vpc_cidr) || vpc_cidr.contains(&net)) {
            errors.push(KeyError::new(
                VPC_CIDR,
                format!(
                    "{vpc_cidr} overlaps {net} of stacks/Pulumi.{other}.yaml in region {region}; give each stack its own range"
                ),
            ));
        }
    }
    errors
}

/// (stack, region, VPC range) of every other DigitalOcean stack file that reads cleanly.
fn sibling_ranges(root: &Path, stack: &str) -> Vec<(String, String, IpNet)> {
    let Ok(entries) = std::fs::read_dir(root.join("stacks")) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let Some(other) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("Pulumi."))
            .and_then(|n| n.strip_suffix(".yaml"))
        else {
            continue;
        };
        if other == stack || other == LOCAL_STACK {
            continue;
        }
        let Some(raw) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| raw_from_stack_file(&t).ok())
        else {
            continue;
        };
        let text = |key: &str, default: &str| match raw.get(key) {
            Some(RawValue::Plain(Value::String(s))) => s.clone(),
            _ => default.to_string(),
        };
        let Ok(net) = text(VPC_CIDR, defaults::VPC_CIDR).parse::<IpNet>() else {
            continue;
        };
        out.push((other.to_string(), text(REGION, defaults::REGION), net));
    }
    out
}
