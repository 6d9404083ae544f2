//! Managed PostgreSQL: cluster, database, app user, PgBouncer pool and the firewall trusting the app tag.

use super::network::Network;
use crate::config::StackConfig;
use crate::digitalocean::types::DatabaseFirewallRule;
use crate::digitalocean::{
    database_cluster, database_connection_pool, database_db, database_firewall, database_user,
};
use pulumi_gestalt_rust::{Context, Output};

/// What the rest of the program reads from the database.
pub struct Database {
    /// DigitalOcean URN of the cluster (for the project).
    pub cluster_urn: Output<String>,
    /// Private host of the cluster.
    pub private_host: Output<String>,
    /// The app's connection URL through the private pool (secret).
    pub app_url: Output<String>,
}

/// Creates the database resources.
pub fn create(ctx: &Context, cfg: &StackConfig, net: &Network) -> Database {
    let d = &cfg.database;
    let cluster = database_cluster::create(
        ctx,
        &cfg.name("db"),
        database_cluster::DatabaseClusterArgs::builder()
            .name(cfg.name("db"))
            .engine("pg")
            .version(d.version.clone())
            .size(d.size.clone())
            .region(cfg.region.clone())
            .node_count(d.node_count as i32)
            .private_network_uuid(net.vpc_id.clone())
            .tags(vec![cfg.name("db")])
            .build_struct(),
    );
    let db = database_db::create(
        ctx,
        &cfg.name("db-app"),
        database_db::DatabaseDbArgs::builder()
            .cluster_id(cluster.id.clone())
            .name(d.name.clone())
            .build_struct(),
    );
    let user = database_user::create(
        ctx,
        &cfg.name("db-user"),
        database_user::DatabaseUserArgs::builder()
            .cluster_id(cluster.id.clone())
            .name(d.user.clone())
            .build_struct(),
    );
    let pool = database_connection_pool::create(
        ctx,
        &cfg.name("db-pool"),
        database_connection_pool::DatabaseConnectionPoolArgs::builder()
            .cluster_id(cluster.id.clone())
            .name(cfg.name("pool"))
            .db_name(db.name.clone())
            .mode("transaction")
            .size(d.pool_size as i32)
            .user(user.name.clone())
            .build_struct(),
    );
    // A tag rule keeps working when droplets are replaced; droplet-id rules would not.
    let rules = net.app_tag.map(|tag| {
        vec![DatabaseFirewallRule {
            type_: "tag".into(),
            value: tag,
        }]
    });
    database_firewall::create(
        ctx,
        &cfg.name("db-firewall"),
        database_firewall::DatabaseFirewallArgs::builder()
            .cluster_id(cluster.id.clone())
            .rules(rules)
            .build_struct(),
    );
    let ssl_mode = d.ssl_mode.clone();
    let app_url = pulumi_gestalt_rust::__private::output::combine5(
        user.name.clone(),
        user.password.clone(),
        pool.private_host.clone(),
        pool.port.clone(),
        pool.name.clone(),
    )
    .map(move |(user, password, host, port, pool)| {
        format!(
            "postgresql://{}:{}@{host}:{port}/{pool}?sslmode={ssl_mode}",
            userinfo(&user),
            userinfo(&password)
        )
    })
    .secret();
    Database {
        cluster_urn: cluster.cluster_urn,
        private_host: cluster.private_host,
        app_url,
    }
}

/// Percent-encodes a URL userinfo part so any generated password survives.
fn userinfo(part: &str) -> String {
    part.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
