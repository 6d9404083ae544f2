//! What `infra verify` is pointed at: the URL, the API key, how many requests.

/// What to verify.
pub struct Options {
    /// Base URL of the load balancer, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// The API key for writes, when the deployment has one.
    pub api_key: Option<String>,
    /// Requests sent to measure the distribution.
    pub requests: u32,
}
