//! The access section: who may reach the droplets over SSH (`sshKeys`, `sshPublicKeys`, `adminCidrs`, `allowSshFromAnywhere`).

use super::keys::Section;
use super::raw::{RawValue, SecretValue, string_list};
use super::reader::Reader;
use super::ssh_key::SshPublicKey;
use ipnet::IpNet;
use secrecy::SecretBox;
use serde_json::Value;

const SSH_KEYS: &str = "sshKeys";
const SSH_PUBLIC_KEYS: &str = "sshPublicKeys";
const ADMIN_CIDRS: &str = "adminCidrs";
const ALLOW_SSH_FROM_ANYWHERE: &str = "allowSshFromAnywhere";

/// SSH keys for the droplets and the networks that may use them.
pub(super) struct Access {
    pub(super) ssh_keys: SecretValue<SecretBox<Vec<String>>>,
    pub(super) ssh_public_keys: Vec<SshPublicKey>,
    pub(super) admin_cidrs: Vec<IpNet>,
    pub(super) allow_ssh_from_anywhere: bool,
}

impl Access {
    /// Admin networks must be public ranges, so the VPC range (when valid) is checked against them.
    pub(super) fn parse(r: &mut Reader, vpc_cidr: Option<IpNet>, is_prod: bool) -> Access {
        let r = r.enter(Section::Access);
        let ssh_keys = ssh_keys(r);
        let ssh_public_keys = ssh_public_keys(r);
        let admin_cidrs = nets(r, ADMIN_CIDRS);
        let allow_ssh_from_anywhere = r.boolean(ALLOW_SSH_FROM_ANYWHERE);
        check_world(r, &admin_cidrs, allow_ssh_from_anywhere, is_prod);
        check_overlaps(r, &admin_cidrs, vpc_cidr);
        Access {
            ssh_keys,
            ssh_public_keys,
            admin_cidrs,
            allow_ssh_from_anywhere,
        }
    }
}

/// `sshKeys` stays encrypted when the stack file is read offline: only whether it is set matters there.
fn ssh_keys(r: &mut Reader) -> SecretValue<SecretBox<Vec<String>>> {
    let listed = match r.raw(SSH_KEYS) {
        None => return SecretValue::Unset,
        Some(RawValue::Encrypted) => return SecretValue::Encrypted,
        Some(RawValue::Plain(v) | RawValue::Secret(v)) => string_list(v),
    };
    match listed {
        Ok(keys) => SecretValue::Known(SecretBox::new(Box::new(keys))),
        Err(m) => {
            r.err(SSH_KEYS, m);
            SecretValue::Unset
        }
    }
}

fn ssh_public_keys(r: &mut Reader) -> Vec<SshPublicKey> {
    let lines = match r.value(SSH_PUBLIC_KEYS) {
        None | Some(Value::Null) => return Vec::new(),
        Some(v) => match string_list(&v) {
            Ok(lines) => lines,
            Err(m) => {
                r.err(SSH_PUBLIC_KEYS, m);
                return Vec::new();
            }
        },
    };
    let mut keys: Vec<SshPublicKey> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match SshPublicKey::parse(line) {
            Ok(k) if keys.iter().any(|o| o.blob == k.blob) => r.err(
                &format!("{SSH_PUBLIC_KEYS}[{i}]"),
                "repeats an earlier key (DigitalOcean stores each key once)",
            ),
            Ok(k) => keys.push(k),
            Err(m) => r.err(&format!("{SSH_PUBLIC_KEYS}[{i}]"), m),
        }
    }
    keys
}

/// A list of CIDRs; a bare address is its own /32 or /128.
fn nets(r: &mut Reader, key: &str) -> Vec<IpNet> {
    let Some(v) = r.value(key) else {
        return Vec::new();
    };
    let items = match string_list(&v) {
        Ok(items) => items,
        Err(m) => {
            r.err(key, m);
            return Vec::new();
        }
    };
    let mut nets = Vec::new();
    for item in items {
        match item.parse::<IpNet>() {
            Ok(n) => nets.push(n),
            Err(_) => match item.parse::<std::net::IpAddr>() {
                Ok(ip) => nets.push(IpNet::from(ip)),
                Err(_) => r.err(key, format!("{item:?} is not a CIDR")),
            },
        }
    }
    nets
}

/// SSH open to the whole internet needs consent, and is never allowed in prod.
fn check_world(r: &mut Reader, admin_cidrs: &[IpNet], allow: bool, is_prod: bool) {
    let open_to_world = admin_cidrs.iter().any(|n| n.prefix_len() == 0);
    if open_to_world && is_prod {
        r.err(
            ADMIN_CIDRS,
            "SSH from 0.0.0.0/0 or ::/0 is refused in prod; list your admin networks",
        );
    } else if open_to_world && !allow {
        r.err(
            ADMIN_CIDRS,
            "SSH from 0.0.0.0/0 or ::/0 is refused unless rustlb:allowSshFromAnywhere is true",
        );
    }
    if allow && is_prod {
        r.err(ALLOW_SSH_FROM_ANYWHERE, "must not be true in prod");
    }
}

fn check_overlaps(r: &mut Reader, admin_cidrs: &[IpNet], vpc_cidr: Option<IpNet>) {
    for net in admin_cidrs {
        if let (Some(vpc), true) = (vpc_cidr, net.prefix_len() > 0)
            && (vpc.contains(net) || net.contains(&vpc))
        {
            r.err(
                ADMIN_CIDRS,
                format!("{net} overlaps the VPC range {vpc}; admin networks are public ranges"),
            );
        }
    }
    for (i, a) in admin_cidrs.iter().enumerate() {
        for b in &admin_cidrs[i + 1..] {
            if a.contains(b) || b.contains(a) {
                r.err(ADMIN_CIDRS, format!("{a} and {b} overlap"));
            }
        }
    }
}
