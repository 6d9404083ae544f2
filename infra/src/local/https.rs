//! The local stack's HTTPS entry: the certificate it serves, given as files or made self-signed.
//!
//! Without files, `up --https` makes an ECDSA P-256 certificate for `localhost`, 127.0.0.1 and
//! ::1 under `.stack/<stack>/tls/` and keeps it across runs (so a browser or `curl --cacert`
//! told to trust it once keeps trusting it), making a new one when it nears its end.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use chrono::{Datelike, Utc};

/// How long a self-signed certificate is valid.
const VALID_DAYS: i64 = 365;
/// A self-signed certificate older than this is replaced at the next `up`.
const RENEW_AFTER: Duration = Duration::from_secs(300 * 24 * 3600);

/// The certificate and key files the HTTPS entry serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsFiles {
    /// PEM certificate (chain).
    pub certificate: PathBuf,
    /// PEM private key.
    pub private_key: PathBuf,
}

impl HttpsFiles {
    /// The files given on the command line, made absolute (the supervisor runs in the root).
    pub fn given(certificate: &Path, private_key: &Path) -> anyhow::Result<HttpsFiles> {
        let absolute =
            |p: &Path| std::path::absolute(p).with_context(|| format!("resolving {}", p.display()));
        Ok(HttpsFiles {
            certificate: absolute(certificate)?,
            private_key: absolute(private_key)?,
        })
    }

    /// The stack's self-signed certificate under `state_dir`, made if missing or old.
    pub fn self_signed(state_dir: &Path) -> anyhow::Result<HttpsFiles> {
        let dir = state_dir.join("tls");
        let files = HttpsFiles {
            certificate: dir.join("localhost.pem"),
            private_key: dir.join("localhost-key.pem"),
        };
        if !files.is_fresh() {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            files.write_new()?;
        }
        Ok(files)
    }

    fn is_fresh(&self) -> bool {
        let age = |p: &Path| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
        };
        matches!(
            (age(&self.certificate), age(&self.private_key)),
            (Some(a), Some(_)) if a < RENEW_AFTER
        )
    }

    fn write_new(&self) -> anyhow::Result<()> {
        let key = rcgen::KeyPair::generate().context("generating a key")?;
        let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
        let mut params = rcgen::CertificateParams::new(names).context("certificate names")?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rustlb local stack");
        let day = |d: chrono::DateTime<Utc>| {
            rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
        };
        let now = Utc::now();
        params.not_before = day(now - chrono::Duration::days(1));
        params.not_after = day(now + chrono::Duration::days(VALID_DAYS));
        let cert = params
            .self_signed(&key)
            .context("signing the certificate")?;
        // The key first, readable by its owner only; the certificate names it.
        write_file(&self.private_key, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&self.certificate, cert.pem().as_bytes(), 0o644)
    }
}

/// Replaces `path` with `contents` (through a temporary file, so a reader never sees half).
fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = HttpsFiles::self_signed(dir.path()).unwrap();
        let pem = std::fs::read_to_string(&first.certificate).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&first.private_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = HttpsFiles::self_signed(dir.path()).unwrap();
        assert_eq!(again, first);
        assert_eq!(std::fs::read_to_string(&again.certificate).unwrap(), pem);
    }
}
