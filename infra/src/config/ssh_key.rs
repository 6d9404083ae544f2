//! An OpenSSH public key from `rustlb:sshPublicKeys`: parsed, fingerprinted and named.

/// An OpenSSH public key from `rustlb:sshPublicKeys`, checked so a typo fails before `pulumi up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshPublicKey {
    /// Key type, e.g. `ssh-ed25519`.
    pub kind: String,
    /// The base64 key blob.
    pub blob: String,
    /// The comment after the key, if any.
    pub comment: Option<String>,
}

/// Key types DigitalOcean accepts for droplet access.
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

impl SshPublicKey {
    /// Parses one `authorized_keys`-style line: `<type> <base64> [comment]`.
    pub fn parse(line: &str) -> Result<SshPublicKey, String> {
        use base64::Engine as _;
        let line = line.trim();
        if line.contains("PRIVATE KEY") {
            return Err("this is a private key; give the public key (the .pub file)".into());
        }
        let mut parts = line.split_whitespace();
        let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
            return Err("must look like `ssh-ed25519 AAAA... comment`".into());
        };
        if !SSH_KEY_TYPES.contains(&kind) {
            return Err(format!(
                "key type {kind:?} is not one of {}",
                SSH_KEY_TYPES.join(", ")
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|_| format!("the {kind} key data is not valid base64"))?;
        // The blob starts with its own type as an SSH string: a u32 length, then the name.
        let inner = bytes
            .get(..4)
            .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
            .and_then(|n| bytes.get(4..4 + n));
        if inner != Some(kind.as_bytes()) {
            return Err(format!(
                "the key data does not hold a {kind} key (copied incompletely?)"
            ));
        }
        let comment: Vec<&str> = parts.collect();
        Ok(SshPublicKey {
            kind: kind.to_string(),
            blob: blob.to_string(),
            comment: (!comment.is_empty()).then(|| comment.join(" ")),
        })
    }

    /// The key as one line, the way DigitalOcean stores it.
    pub fn line(&self) -> String {
        match &self.comment {
            Some(c) => format!("{} {} {c}", self.kind, self.blob),
            None => format!("{} {}", self.kind, self.blob),
        }
    }

    /// The MD5 fingerprint DigitalOcean shows and accepts in a droplet's `sshKeys` (`aa:bb:...`).
    pub fn fingerprint(&self) -> String {
        use base64::Engine as _;
        use md5::{Digest, Md5};
        // `parse` checked that the blob decodes.
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.blob)
            .unwrap_or_default();
        Md5::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// A short stable id of the key material (not of the comment), for resource names.
    pub fn short_id(&self) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(self.blob.as_bytes())
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
