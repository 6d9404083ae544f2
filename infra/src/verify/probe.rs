//! The verifying client: sends requests through the load balancer and remembers what every answer was labelled with.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::Value;

use super::report::Check;

/// One answer, reduced to what the checks read.
pub struct Answer {
    pub status: u16,
    pub server_id: Option<String>,
    pub json: Option<Value>,
    /// `name=value` of a cookie the load balancer set for stickiness.
    pub sticky_cookie: Option<String>,
}

/// The client, and what it saw of the response headers.
pub struct Probe {
    client: reqwest::Client,
    base: String,
    api_key: Option<String>,
    answered: u32,
    unlabelled: Vec<String>,
}

impl Probe {
    /// A probe of `base`, trusting `root_certificate` besides the system's roots.
    pub fn new(
        base: &str,
        api_key: Option<String>,
        root_certificate: Option<&std::path::Path>,
    ) -> anyhow::Result<Probe> {
        let client = super::options::client_builder(Duration::from_secs(10), root_certificate)?
            .build()
            .context("building the HTTP client")?;
        Ok(Probe {
            client,
            base: base.trim_end_matches('/').to_owned(),
            api_key,
            answered: 0,
            unlabelled: Vec::new(),
        })
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<Answer> {
        self.get_with_cookie(path, None).await
    }

    pub async fn get_with_cookie(
        &mut self,
        path: &str,
        cookie: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.header(reqwest::header::COOKIE, c);
        }
        self.send(req, &format!("GET {path}")).await
    }

    /// A write, with the API key when there is one.
    pub async fn write(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(req, &format!("{method} {path}")).await
    }

    async fn send(&mut self, req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Answer> {
        let resp = req.send().await.with_context(|| what.to_owned())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        self.answered += 1;
        let server_id = header(&headers, "x-server-id");
        // The load balancer's own errors (502/503/504) name no server, by design.
        let from_lb = matches!(status, 502..=504) && server_id.is_none();
        if header(&headers, "x-request-id").is_none() || (server_id.is_none() && !from_lb) {
            self.unlabelled.push(format!("{what} -> {status}"));
        }
        Ok(Answer {
            status,
            server_id,
            json: serde_json::from_str(&text).ok(),
            sticky_cookie: sticky_cookie(&headers),
        })
    }

    /// Whether every answer so far carried `X-Server-Id` and `X-Request-Id`.
    pub fn header_check(&self) -> Check {
        if self.unlabelled.is_empty() {
            Check::pass(
                "headers",
                format!(
                    "all {} responses carried X-Server-Id and X-Request-Id",
                    self.answered
                ),
            )
        } else {
            Check::fail(
                "headers",
                format!(
                    "{} of {} responses lacked X-Server-Id or X-Request-Id, e.g. {}",
                    self.unlabelled.len(),
                    self.answered,
                    self.unlabelled[0]
                ),
            )
        }
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The first cookie the response sets, as `name=value`: the app sets none, so any cookie is
/// the load balancer's stickiness cookie.
fn sticky_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(|pair| pair.trim().to_owned())
        .find(|pair| pair.contains('='))
}
