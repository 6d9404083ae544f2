//! Managed PostgreSQL: cluster, database, app user, PgBouncer pool, the firewall trusting the app tag, and the cluster CA.

use super::network::Network;
use crate::config::{Environment, StackConfig};
use crate::db_url::percent_encode;
use crate::digitalocean::types::DatabaseFirewallRule;
use crate::digitalocean::{
    database_cluster, database_connection_pool, database_db, database_firewall, database_user,
};
use crate::graph::{Graph, Options, Ref, token};
use crate::transform::EngineLink;
use pulumi_gestalt_rust::{Context, Output, pulumi_combine};
use std::sync::Arc;

/// The engine every cluster runs.
const ENGINE: &str = "pg";
/// PgBouncer mode: prepared statements stay off in the app (see the droplets' environment).
const POOL_MODE: &str = "transaction";

/// What the rest of the program reads from the database.
pub struct Database {
    /// The cluster's name; it changes exactly when the cluster is replaced.
    pub cluster_name: String,
    /// DigitalOcean URN of the cluster (for the project).
    pub cluster_urn: Output<String>,
    /// Private host of the cluster.
    pub private_host: Output<String>,
    /// The app's connection URL through the private pool, as the runtime role (secret).
    pub app_url: Output<String>,
    /// The schema owner's direct URL on the private network, for migrations (secret).
    pub owner_url: Output<String>,
    /// The schema owner's role name.
    pub owner_role: String,
    /// The admin's URL of the app database on the public host, for `infra db-bootstrap` from an
    /// admin network (secret).
    pub admin_url: Output<String>,
    /// PEM of the CA that signed the cluster's certificate.
    pub ca_certificate: Output<String>,
    /// The cluster, for the graph.
    pub cluster: Ref,
    /// The connection pool (its host, port and name are in the app's URL).
    pub pool: Ref,
    /// The app's user (its name and password are in the app's URL).
    pub user: Ref,
    /// The schema owner (its name and password are in the owner's URL).
    pub owner: Ref,
}

/// The provider function that reads a cluster's CA certificate.
pub const GET_DATABASE_CA: &str = "digitalocean:index/getDatabaseCa:getDatabaseCa";

/// The cluster's CA (PEM). Without it no droplet could verify the database, so a failed read
/// ends the program the way a failed invoke does in Pulumi's own SDKs.
fn read_ca(link: &EngineLink, cluster_id: &str) -> String {
    let read = link
        .invoke(
            GET_DATABASE_CA,
            serde_json::json!({ "clusterId": cluster_id }),
        )
        .and_then(|v| {
            v["certificate"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("{GET_DATABASE_CA} returned no certificate"))
        });
    read.unwrap_or_else(|e| {
        eprintln!("error: reading the CA of database cluster {cluster_id}: {e:#}");
        std::process::exit(1)
    })
}

/// A PostgreSQL URL; user and password percent-encoded, so any character survives.
fn pg_url(
    user: &str,
    password: &str,
    host: &str,
    port: impl std::fmt::Display,
    db: &str,
    ssl_mode: &str,
) -> String {
    format!(
        "postgresql://{}:{}@{host}:{port}/{db}?sslmode={ssl_mode}",
        percent_encode(user),
        percent_encode(password)
    )
}

/// Creates the database resources.
pub fn create(
    ctx: &Context,
    cfg: &StackConfig,
    graph: &Graph,
    net: &Network,
    link: &Arc<EngineLink>,
) -> Database {
    let d = &cfg.database;
    // Production data is deleted only on purpose: `pulumi state unprotect` first (README).
    let data = Options {
        protect: cfg.environment == Environment::Production,
        ..Options::default()
    };
    // Cluster names are unique per account; engine, name and privateNetworkUuid (the VPC)
    // replace the cluster.
    let cluster_name = cfg.replaceable_name("db", &[ENGINE, &net.vpc_name]);
    let cluster_ref = graph
        .node(token::DATABASE_CLUSTER, &cfg.name("db"))
        .uses("privateNetworkUuid", &[&net.vpc])
        .options(data.clone())
        .declare();
    let cluster = database_cluster::create(
        ctx,
        &cfg.name("db"),
        database_cluster::DatabaseClusterArgs::builder()
            .name(cluster_name.clone())
            .engine(ENGINE)
            .version(d.version.clone())
            .size(d.size.clone())
            .region(cfg.region.clone())
            .node_count(d.node_count as i32)
            .private_network_uuid(net.vpc_id.clone())
            .tags(vec![cfg.name("db")])
            .build_struct(),
    );
    let db_ref = graph
        .node(token::DATABASE_DB, &cfg.name("db-app"))
        .uses("clusterId", &[&cluster_ref])
        .options(data)
        .declare();
    let db = database_db::create(
        ctx,
        &cfg.name("db-app"),
        database_db::DatabaseDbArgs::builder()
            .cluster_id(cluster.id.clone())
            .name(d.name.clone())
            .build_struct(),
    );
    let user_ref = graph
        .node(token::DATABASE_USER, &cfg.name("db-user"))
        .uses("clusterId", &[&cluster_ref])
        .declare();
    let user = database_user::create(
        ctx,
        &cfg.name("db-user"),
        database_user::DatabaseUserArgs::builder()
            .cluster_id(cluster.id.clone())
            .name(d.user.clone())
            .build_struct(),
    );
    // Owns the schema: migrations and partition maintenance run as it, requests as `user`,
    // which it grants rows only. Neither is the cluster's admin.
    let owner_role = format!("{}_owner", d.user);
    let owner_ref = graph
        .node(token::DATABASE_USER, &cfg.name("db-owner"))
        .uses("clusterId", &[&cluster_ref])
        .declare();
    let owner = database_user::create(
        ctx,
        &cfg.name("db-owner"),
        database_user::DatabaseUserArgs::builder()
            .cluster_id(cluster.id.clone())
            .name(owner_role.clone())
            .build_struct(),
    );
    // Pool names are unique per cluster and size, mode, user and dbName replace the pool:
    // a resize must create the new pool under a new name before the old one goes.
    let pool_size = d.pool_size.to_string();
    let pool_name = cfg.replaceable_name(
        "pool",
        &[&pool_size, POOL_MODE, &d.user, &d.name, &cluster_name],
    );
    let pool_ref = graph
        .node(token::DATABASE_POOL, &cfg.name("db-pool"))
        .uses("clusterId", &[&cluster_ref])
        .uses("dbName", &[&db_ref])
        .uses("user", &[&user_ref])
        .declare();
    let pool = database_connection_pool::create(
        ctx,
        &cfg.name("db-pool"),
        database_connection_pool::DatabaseConnectionPoolArgs::builder()
            .cluster_id(cluster.id.clone())
            .name(pool_name)
            .db_name(db.name.clone())
            .mode(POOL_MODE)
            .size(d.pool_size as i32)
            .user(user.name.clone())
            .build_struct(),
    );
    // A tag rule keeps working when droplets are replaced; droplet-id rules would not. The
    // admin networks may reach the cluster too, for the one grant only its admin can make.
    let admin: Vec<String> = cfg.admin_cidrs.iter().map(|n| n.to_string()).collect();
    let rules = net.app_tag.map(move |tag| {
        let mut rules = vec![
            DatabaseFirewallRule::builder()
                .type_("tag")
                .value(tag)
                .build_struct(),
        ];
        rules.extend(admin.iter().map(|cidr| {
            DatabaseFirewallRule::builder()
                .type_("ip_addr")
                .value(cidr.clone())
                .build_struct()
        }));
        rules
    });
    graph
        .node(token::DATABASE_FIREWALL, &cfg.name("db-firewall"))
        .uses("clusterId", &[&cluster_ref])
        .uses("rules", &[&net.app_tag_ref])
        .declare();
    database_firewall::create(
        ctx,
        &cfg.name("db-firewall"),
        database_firewall::DatabaseFirewallArgs::builder()
            .cluster_id(cluster.id.clone())
            .rules(rules)
            .build_struct(),
    );
    // The provider reads the CA from the API by cluster id, once the id is known: in every run
    // after the cluster exists (previews included, so its object shows no change), not in a
    // preview before the first `pulumi up`, where Gestalt's own invoke would send the unknown id
    // and the provider would fail on it.
    let link = link.clone();
    let ca_certificate = cluster.id.map(move |id| read_ca(&link, &id));
    let ssl_mode = d.ssl_mode.clone();
    let owner_url = pulumi_combine!(
        owner.name.clone(),
        owner.password.clone(),
        cluster.private_host.clone(),
        cluster.port.clone(),
        db.name.clone()
    )
    .map({
        let mode = ssl_mode.clone();
        move |(user, password, host, port, db)| pg_url(&user, &password, &host, port, &db, &mode)
    })
    .secret();
    // DigitalOcean's own connection strings use `require`; the admin connects from outside.
    let admin_url = pulumi_combine!(
        cluster.user.clone(),
        cluster.password.clone(),
        cluster.host.clone(),
        cluster.port.clone(),
        db.name.clone()
    )
    .map(move |(user, password, host, port, db)| {
        pg_url(&user, &password, &host, port, &db, "require")
    })
    .secret();
    let app_url = pulumi_combine!(
        user.name.clone(),
        user.password.clone(),
        pool.private_host.clone(),
        pool.port.clone(),
        pool.name.clone()
    )
    .map(move |(user, password, host, port, pool)| {
        pg_url(&user, &password, &host, port, &pool, &ssl_mode)
    })
    .secret();
    Database {
        cluster_name,
        cluster_urn: cluster.cluster_urn,
        private_host: cluster.private_host,
        app_url,
        owner_url,
        owner_role,
        admin_url,
        ca_certificate,
        cluster: cluster_ref,
        pool: pool_ref,
        user: user_ref,
        owner: owner_ref,
    }
}
