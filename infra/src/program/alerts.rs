//! Alerts: DigitalOcean monitoring policies on the droplets, the database and the load balancer, and an uptime check of the site.

use super::database::Database;
use super::loadbalancer::LoadBalancer;
use super::network::Network;
use crate::config::{Alerts, StackConfig};
use crate::digitalocean::types::{
    MonitorAlertAlerts, MonitorAlertAlertsSlack, UptimeAlertNotification,
    UptimeAlertNotificationSlack,
};
use crate::digitalocean::{monitor_alert, uptime_alert, uptime_check};
use crate::graph::{Graph, token};
use pulumi_gestalt_rust::{Context, Output};
use secrecy::ExposeSecret;

/// One monitoring policy: its role in the name, the metric, the threshold and what it watches.
struct Policy {
    role: &'static str,
    metric: &'static str,
    compare: &'static str,
    value: f64,
    description: String,
    watches: Watches,
}

/// What a policy applies to.
enum Watches {
    /// Every droplet with the app tag, present and future.
    AppDroplets,
    /// The database cluster.
    Database,
    /// The load balancer.
    LoadBalancer,
}

/// What the alerts watch: the resources created before them.
pub struct Watched<'a> {
    /// The app tag.
    pub net: &'a Network,
    /// The cluster.
    pub db: &'a Database,
    /// The load balancer, and the URL the uptime check calls.
    pub lb: &'a LoadBalancer,
}

/// Creates the stack's alerts; none without `alerts`.
pub fn create(ctx: &Context, cfg: &StackConfig, graph: &Graph, watched: &Watched) {
    let Some(alerts) = &cfg.alerts else { return };
    let notify = monitor_notifications(ctx, alerts);
    for policy in policies(alerts) {
        monitor(ctx, cfg, graph, watched, &notify, alerts, policy);
    }
    uptime(ctx, cfg, graph, watched, alerts);
}

/// The droplet, database and load balancer policies, from the stack's thresholds. Metric names
/// are those the provider schema lists for `MonitorAlert.type`.
fn policies(a: &Alerts) -> Vec<Policy> {
    let droplet = |role, metric, value: u32, what: &str| Policy {
        role,
        metric,
        compare: "GreaterThan",
        value: f64::from(value),
        description: format!("{what} above {value} for {}", a.window),
        watches: Watches::AppDroplets,
    };
    let database = |role, metric, value: u32, what: &str| Policy {
        role,
        metric,
        compare: "GreaterThan",
        value: f64::from(value),
        description: format!("database {what} above {value}% for {}", a.window),
        watches: Watches::Database,
    };
    vec![
        droplet(
            "cpu",
            "v1/insights/droplet/cpu",
            a.cpu_percent,
            "droplet CPU %",
        ),
        droplet(
            "memory",
            "v1/insights/droplet/memory_utilization_percent",
            a.memory_percent,
            "droplet memory %",
        ),
        droplet(
            "disk",
            "v1/insights/droplet/disk_utilization_percent",
            a.disk_percent,
            "droplet disk %",
        ),
        droplet(
            "load",
            "v1/insights/droplet/load_5",
            a.load5,
            "droplet 5-minute load",
        ),
        database("db-cpu", "v1/dbaas/alerts/cpu_alerts", a.cpu_percent, "CPU"),
        database(
            "db-memory",
            "v1/dbaas/alerts/memory_utilization_alerts",
            a.memory_percent,
            "memory",
        ),
        database(
            "db-disk",
            "v1/dbaas/alerts/disk_utilization_alerts",
            a.disk_percent,
            "disk",
        ),
        Policy {
            role: "lb-droplet-health",
            metric: "v1/insights/lbaas/droplet_health",
            compare: "LessThan",
            // Below 100 %: some droplet behind the load balancer fails its checks.
            value: 100.0,
            description: "a droplet behind the load balancer fails its health checks".into(),
            watches: Watches::LoadBalancer,
        },
    ]
}

/// Emails and Slack for monitoring policies; secret, since the webhook URL is.
fn monitor_notifications(ctx: &Context, a: &Alerts) -> Output<MonitorAlertAlerts> {
    let slacks = a.slack.as_ref().map(|s| {
        vec![
            MonitorAlertAlertsSlack::builder()
                .channel(s.channel.clone())
                .url(s.url.expose_secret().to_owned())
                .build_struct(),
        ]
    });
    let value = MonitorAlertAlerts::builder()
        .maybe_emails((!a.emails.is_empty()).then(|| a.emails.clone()))
        .maybe_slacks(slacks)
        .build_struct();
    ctx.new_secret(&value)
}

fn monitor(
    ctx: &Context,
    cfg: &StackConfig,
    graph: &Graph,
    watched: &Watched,
    notify: &Output<MonitorAlertAlerts>,
    a: &Alerts,
    policy: Policy,
) {
    let name = cfg.name(&format!("alert-{}", policy.role));
    let mut node = graph.node(token::MONITOR_ALERT, &name).secret("alerts");
    let mut args = monitor_alert::MonitorAlertArgs::builder()
        .alerts(notify.clone())
        .compare(policy.compare)
        .description(format!(
            "{} {}: {}",
            cfg.project, cfg.stack, policy.description
        ))
        .type_(policy.metric)
        .value(policy.value)
        .window(a.window.clone())
        .enabled(true)
        .build_struct();
    match policy.watches {
        Watches::AppDroplets => {
            node = node.uses("tags", &[&watched.net.app_tag_ref]);
            args.tags = watched.net.app_tag.map(|t| vec![t]).into();
        }
        Watches::Database => {
            node = node.uses("entities", &[&watched.db.cluster]);
            args.entities = watched.db.cluster_id.map(|id| vec![id]).into();
        }
        Watches::LoadBalancer => {
            node = node.uses("entities", &[&watched.lb.declared]);
            args.entities = watched.lb.id.map(|id| vec![id]).into();
        }
    }
    node.declare();
    monitor_alert::create(ctx, &name, args);
}

/// An uptime check of `/health` through the load balancer, with alerts when the site is down,
/// slow, or (with a domain) its certificate is about to expire.
fn uptime(ctx: &Context, cfg: &StackConfig, graph: &Graph, watched: &Watched, a: &Alerts) {
    let name = cfg.name("uptime");
    let health = app::paths::HEALTH;
    let (target, kind): (Output<String>, &str) = match &cfg.domain {
        Some(domain) => (Output::new(format!("https://{domain}{health}")), "https"),
        None => (
            watched.lb.ip.map(move |ip| format!("http://{ip}{health}")),
            "http",
        ),
    };
    let mut node = graph.node(token::UPTIME_CHECK, &name);
    if cfg.domain.is_none() {
        node = node.uses("target", &[&watched.lb.declared]);
    }
    let check_ref = node.declare();
    let check = uptime_check::create(
        ctx,
        &name,
        uptime_check::UptimeCheckArgs::builder()
            .name(name.clone())
            .target(target)
            .type_(kind)
            .regions(a.regions.clone())
            .enabled(true)
            .build_struct(),
    );
    let mut alerts = vec![
        ("down", "down", None, None),
        (
            "latency",
            "latency",
            Some(a.latency_ms as i32),
            Some("greaterThan"),
        ),
    ];
    if cfg.domain.is_some() {
        alerts.push((
            "ssl-expiry",
            "sslExpiry",
            Some(a.ssl_expiry_days as i32),
            Some("lessThan"),
        ));
    }
    for (role, kind, threshold, comparison) in alerts {
        let alert_name = cfg.name(&format!("uptime-{role}"));
        graph
            .node(token::UPTIME_ALERT, &alert_name)
            .uses("checkId", &[&check_ref])
            .secret("notifications")
            .declare();
        uptime_alert::create(
            ctx,
            &alert_name,
            uptime_alert::UptimeAlertArgs::builder()
                .name(alert_name.clone())
                .check_id(check.id.clone())
                .type_(kind)
                .maybe_threshold(threshold)
                .maybe_comparison(comparison.map(str::to_owned))
                .period("2m")
                .notifications(uptime_notifications(ctx, a))
                .build_struct(),
        );
    }
}

fn uptime_notifications(ctx: &Context, a: &Alerts) -> Output<Vec<UptimeAlertNotification>> {
    let slacks = a.slack.as_ref().map(|s| {
        vec![
            UptimeAlertNotificationSlack::builder()
                .channel(s.channel.clone())
                .url(s.url.expose_secret().to_owned())
                .build_struct(),
        ]
    });
    let value = vec![
        UptimeAlertNotification::builder()
            .maybe_emails((!a.emails.is_empty()).then(|| a.emails.clone()))
            .maybe_slacks(slacks)
            .build_struct(),
    ];
    ctx.new_secret(&value)
}
