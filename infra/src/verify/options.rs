//! What `infra verify` is pointed at: the URL, the certificate to trust, the API key, how many requests.

use std::path::Path;

use anyhow::Context as _;

/// What to verify.
pub struct Options {
    /// Base URL of the load balancer, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// The API key for writes, when the deployment has one.
    pub api_key: Option<String>,
    /// Requests sent to measure the distribution.
    pub requests: u32,
    /// A PEM certificate to trust besides the system's roots (the local stack's self-signed
    /// one for an `https://` URL).
    pub root_certificate: Option<std::path::PathBuf>,
}

/// An HTTP client builder with `timeout` that trusts `root_certificate` too.
pub(crate) fn client_builder(
    timeout: std::time::Duration,
    root_certificate: Option<&Path>,
) -> anyhow::Result<reqwest::ClientBuilder> {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some(path) = root_certificate {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder)
}
