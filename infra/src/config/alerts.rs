//! The alerts section: who is told when a droplet, the database or the site is in trouble, and at which thresholds.

use super::keys::Section;
use super::raw::RawValue;
use super::reader::Reader;
use crate::wire::SECRET_PLACEHOLDER;
use secrecy::SecretString;
use serde::Deserialize;

/// The windows DigitalOcean's monitoring evaluates an alert policy over (provider schema,
/// `MonitorAlert.window`).
pub const WINDOWS: &[&str] = &["5m", "10m", "30m", "1h"];

/// The regions uptime checks may run from (provider schema, `UptimeCheck.regions`).
pub const UPTIME_REGIONS: &[&str] = &["us_east", "us_west", "eu_west", "se_asia"];

/// A Slack channel and its incoming webhook.
#[derive(Debug, Clone)]
pub struct Slack {
    /// `#channel`.
    pub channel: String,
    /// The webhook URL: a secret, anyone holding it can post to the channel.
    pub url: SecretString,
}

/// `alerts`: notification targets and thresholds, each with a default.
#[derive(Debug, Clone)]
pub struct Alerts {
    /// Addresses DigitalOcean mails alerts to (they must be verified on the account).
    pub emails: Vec<String>,
    /// A Slack channel, if any.
    pub slack: Option<Slack>,
    /// Droplet CPU, percent.
    pub cpu_percent: u32,
    /// Droplet memory, percent.
    pub memory_percent: u32,
    /// Droplet disk, percent.
    pub disk_percent: u32,
    /// Droplet 5-minute load average.
    pub load5: u32,
    /// The window each droplet and database policy is evaluated over.
    pub window: String,
    /// The uptime check's latency alert, milliseconds.
    pub latency_ms: u32,
    /// Days before the TLS certificate expires that the uptime check warns (stacks with a domain).
    pub ssl_expiry_days: u32,
    /// Where the uptime check runs from.
    pub regions: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawAlerts {
    #[serde(default)]
    emails: Vec<String>,
    slack: Option<RawSlack>,
    cpu_percent: Option<u32>,
    memory_percent: Option<u32>,
    disk_percent: Option<u32>,
    load5: Option<u32>,
    window: Option<String>,
    latency_ms: Option<u32>,
    ssl_expiry_days: Option<u32>,
    regions: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    channel: String,
    url: String,
}

const KEY: &str = "alerts";

/// `alerts`, or none: a stack without it gets no alert resources.
pub(super) fn parse(r: &mut Reader) -> Option<Alerts> {
    let r = r.enter(Section::Alerts);
    r.raw(KEY)?;
    // The webhook URL must be set with `--secret`: only then is the value a secret here.
    let secret = matches!(r.raw(KEY), Some(RawValue::Secret(_)));
    let raw: RawAlerts = r.object(KEY);
    // A droplet busy, full or short of memory for five minutes is worth a page; so is a site
    // slower than 2 s, or a certificate two weeks from expiry.
    let alerts = Alerts {
        emails: raw.emails,
        slack: raw.slack.map(|s| Slack {
            channel: s.channel,
            url: SecretString::from(s.url),
        }),
        cpu_percent: raw.cpu_percent.unwrap_or(80),
        memory_percent: raw.memory_percent.unwrap_or(90),
        disk_percent: raw.disk_percent.unwrap_or(85),
        load5: raw.load5.unwrap_or(3),
        window: raw.window.unwrap_or_else(|| "5m".into()),
        latency_ms: raw.latency_ms.unwrap_or(2000),
        ssl_expiry_days: raw.ssl_expiry_days.unwrap_or(14),
        regions: raw
            .regions
            .unwrap_or_else(|| vec!["us_east".into(), "eu_west".into()]),
    };
    check(r, &alerts, secret);
    Some(alerts)
}

fn check(r: &mut Reader, a: &Alerts, secret: bool) {
    use secrecy::ExposeSecret;
    if a.emails.is_empty() && a.slack.is_none() {
        r.err(KEY, "names nobody: give emails, slack or both");
    }
    for email in &a.emails {
        if !email.contains('@') || email.contains(char::is_whitespace) {
            r.err(
                "alerts.emails",
                format!("{email:?} is not an email address"),
            );
        }
    }
    for (key, value) in [
        ("alerts.cpuPercent", a.cpu_percent),
        ("alerts.memoryPercent", a.memory_percent),
        ("alerts.diskPercent", a.disk_percent),
    ] {
        if !(1..=100).contains(&value) {
            r.err(key, format!("must be a percentage, 1-100 (got {value})"));
        }
    }
    if !WINDOWS.contains(&a.window.as_str()) {
        r.err(
            "alerts.window",
            format!("must be one of {} (got {:?})", WINDOWS.join(", "), a.window),
        );
    }
    if a.regions.is_empty()
        || a.regions
            .iter()
            .any(|g| !UPTIME_REGIONS.contains(&g.as_str()))
    {
        r.err(
            "alerts.regions",
            format!(
                "must be some of {} (got {:?})",
                UPTIME_REGIONS.join(", "),
                a.regions
            ),
        );
    }
    if let Some(slack) = &a.slack
        && !secret
        && slack.url.expose_secret() != SECRET_PLACEHOLDER
    {
        r.err(
            "alerts.slack.url",
            "is a secret: set it with `pulumi config set --secret --path rustlb:alerts.slack.url <url>`",
        );
    }
}
