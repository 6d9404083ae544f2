//! Managed PostgreSQL: cluster, database, app user, PgBouncer pool, the firewall trusting the app tag, and the cluster CA.

use super::network::Network;
use crate::config::{Environment, StackConfig};
use crate::db_url::percent_encode;
use crate::digitalocean::types::{DatabaseClusterBackupRestore, DatabaseFirewallRule};
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
    /// The cluster's id (alert policies watch it).
    pub cluster_id: Output<String>,
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

/// The logical name of a database resource. A restore (`database.restoreFrom`) starts a new
/// generation of them beside the old one: new cluster, database, users, pool and firewall,
/// which the droplets move to, while the old ones leave the program and Pulumi deletes them
/// after the new ones exist (production's cluster and database are protected, so they stay
/// until they are retired on purpose). Replacing them under the same names instead would be
/// refused up front for protected resources.
pub fn logical(cfg: &StackConfig, role: &str) -> String {
    match &cfg.database.restore_from {
        None => cfg.name(role),
        Some(r) => {
            let generation =
                cfg.replaceable_name("r", &[&r.cluster, r.at.as_deref().unwrap_or("newest")]);
            let hash = generation.rsplit('-').next().unwrap_or_default();
            cfg.name(&format!("{role}-r{hash}"))
        }
    }
}

/// The cluster, for the resources inside it.
struct Cluster {
    outputs: database_cluster::DatabaseClusterResult,
    declared: Ref,
    name: String,
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
    let cluster = cluster(ctx, cfg, graph, net, &data);
    let (db, db_ref) = app_database(ctx, cfg, graph, &cluster, data);
    let (user, user_ref) = database_role(ctx, cfg, graph, &cluster, "db-user", &d.user);
    // Owns the schema: migrations and partition maintenance run as it, requests as `user`,
    // which it grants rows only. Neither is the cluster's admin.
    let owner_role = format!("{}_owner", d.user);
    let (owner, owner_ref) = database_role(ctx, cfg, graph, &cluster, "db-owner", &owner_role);
    let (pool, pool_ref) = pool(
        ctx,
        cfg,
        graph,
        &cluster,
        (&db, &db_ref),
        (&user, &user_ref),
    );
    firewall(ctx, cfg, graph, net, &cluster);
    // The provider reads the CA from the API by cluster id, once the id is known: in every run
    // after the cluster exists (previews included, so its object shows no change), not in a
    // preview before the first `pulumi up`, where Gestalt's own invoke would send the unknown id
    // and the provider would fail on it.
    let link = link.clone();
    let ca_certificate = cluster.outputs.id.map(move |id| read_ca(&link, &id));
    let c = &cluster.outputs;
    let mode = d.ssl_mode.clone();
    let owner_url = secret_url(
        (&owner.name, &owner.password),
        &c.private_host,
        &c.port,
        &db.name,
        &mode,
    );
    // DigitalOcean's own connection strings use `require`; the admin connects from outside.
    let admin_url = secret_url(
        (&c.user, &c.password),
        &c.host,
        &c.port,
        &db.name,
        "require",
    );
    let app_url = secret_url(
        (&user.name, &user.password),
        &pool.private_host,
        &pool.port,
        &pool.name,
        &mode,
    );
    Database {
        cluster_name: cluster.name,
        cluster_urn: c.cluster_urn.clone(),
        cluster_id: c.id.clone(),
        private_host: c.private_host.clone(),
        app_url,
        owner_url,
        owner_role,
        admin_url,
        ca_certificate,
        cluster: cluster.declared,
        pool: pool_ref,
        user: user_ref,
        owner: owner_ref,
    }
}

/// The app's database in the cluster.
fn app_database(
    ctx: &Context,
    cfg: &StackConfig,
    graph: &Graph,
    cluster: &Cluster,
    data: Options,
) -> (database_db::DatabaseDbResult, Ref) {
    let declared = graph
        .node(token::DATABASE_DB, &logical(cfg, "db-app"))
        .uses("clusterId", &[&cluster.declared])
        .options(data)
        .declare();
    let db = database_db::create(
        ctx,
        &logical(cfg, "db-app"),
        database_db::DatabaseDbArgs::builder()
            .cluster_id(cluster.outputs.id.clone())
            .name(cfg.database.name.clone())
            .build_struct(),
    );
    (db, declared)
}

/// A secret `postgresql://` URL from the outputs that make it.
fn secret_url(
    (user, password): (&Output<String>, &Output<String>),
    host: &Output<String>,
    port: &Output<i32>,
    db: &Output<String>,
    ssl_mode: &str,
) -> Output<String> {
    let mode = ssl_mode.to_owned();
    pulumi_combine!(
        user.clone(),
        password.clone(),
        host.clone(),
        port.clone(),
        db.clone()
    )
    .map(move |(user, password, host, port, db)| pg_url(&user, &password, &host, port, &db, &mode))
    .secret()
}

fn cluster(
    ctx: &Context,
    cfg: &StackConfig,
    graph: &Graph,
    net: &Network,
    data: &Options,
) -> Cluster {
    let d = &cfg.database;
    // Cluster names are unique per account; engine, name, privateNetworkUuid (the VPC) and
    // backupRestore replace the cluster. A restore therefore makes a new cluster beside the old
    // one, which stays until it is retired on purpose (README, "Restore the database").
    let restore = d.restore_from.as_ref();
    let mut replaced_by: Vec<&str> = vec![ENGINE, &net.vpc_name];
    if let Some(r) = restore {
        replaced_by.extend([r.cluster.as_str(), r.at.as_deref().unwrap_or("newest")]);
    }
    let name = cfg.replaceable_name("db", &replaced_by);
    let backup_restore = restore.map(|r| {
        DatabaseClusterBackupRestore::builder()
            .database_name(r.cluster.clone())
            .maybe_backup_created_at(r.at.clone())
            .build_struct()
    });
    let declared = graph
        .node(token::DATABASE_CLUSTER, &logical(cfg, "db"))
        .uses("privateNetworkUuid", &[&net.vpc])
        .options(data.clone())
        .declare();
    let outputs = database_cluster::create(
        ctx,
        &logical(cfg, "db"),
        database_cluster::DatabaseClusterArgs::builder()
            .name(name.clone())
            .engine(ENGINE)
            .version(d.version.clone())
            .size(d.size.clone())
            .region(cfg.region.clone())
            .node_count(d.node_count as i32)
            .private_network_uuid(net.vpc_id.clone())
            .tags(vec![cfg.name("db")])
            .maybe_backup_restore(backup_restore)
            .build_struct(),
    );
    Cluster {
        outputs,
        declared,
        name,
    }
}

/// A database user of the cluster (`role` names the resource, `user_name` the PostgreSQL role).
fn database_role(
    ctx: &Context,
    cfg: &StackConfig,
    graph: &Graph,
    cluster: &Cluster,
    role: &str,
    user_name: &str,
) -> (database_user::DatabaseUserResult, Ref) {
    let declared = graph
        .node(token::DATABASE_USER, &logical(cfg, role))
        .uses("clusterId", &[&cluster.declared])
        .declare();
    let user = database_user::create(
        ctx,
        &logical(cfg, role),
        database_user::DatabaseUserArgs::builder()
            .cluster_id(cluster.outputs.id.clone())
            .name(user_name.to_owned())
            .build_struct(),
    );
    (user, declared)
}

fn pool(
    ctx: &Context,
    cfg: &StackConfig,
    graph: &Graph,
    cluster: &Cluster,
    (db, db_ref): (&database_db::DatabaseDbResult, &Ref),
    (user, user_ref): (&database_user::DatabaseUserResult, &Ref),
) -> (database_connection_pool::DatabaseConnectionPoolResult, Ref) {
    let d = &cfg.database;
    // Pool names are unique per cluster and size, mode, user and dbName replace the pool:
    // a resize must create the new pool under a new name before the old one goes.
    let pool_size = d.pool_size.to_string();
    let pool_name = cfg.replaceable_name(
        "pool",
        &[&pool_size, POOL_MODE, &d.user, &d.name, &cluster.name],
    );
    let declared = graph
        .node(token::DATABASE_POOL, &logical(cfg, "db-pool"))
        .uses("clusterId", &[&cluster.declared])
        .uses("dbName", &[db_ref])
        .uses("user", &[user_ref])
        .declare();
    let pool = database_connection_pool::create(
        ctx,
        &logical(cfg, "db-pool"),
        database_connection_pool::DatabaseConnectionPoolArgs::builder()
            .cluster_id(cluster.outputs.id.clone())
            .name(pool_name)
            .db_name(db.name.clone())
            .mode(POOL_MODE)
            .size(d.pool_size as i32)
            .user(user.name.clone())
            .build_struct(),
    );
    (pool, declared)
}

/// Trusted sources: a tag rule keeps working when droplets are replaced (droplet-id rules
/// would not); the admin networks may reach the cluster too, for the one grant only its admin
/// can make.
fn firewall(ctx: &Context, cfg: &StackConfig, graph: &Graph, net: &Network, cluster: &Cluster) {
    let admin: Vec<String> = cfg.admin_cidrs.iter().map(|n| n.to_string()).collect();
    let rules = net.app_tag.map(move |tag| {
        let rule = |type_: &str, value: String| {
            DatabaseFirewallRule::builder()
                .type_(type_)
                .value(value)
                .build_struct()
        };
        let mut rules = vec![rule("tag", tag)];
        rules.extend(admin.iter().map(|cidr| rule("ip_addr", cidr.clone())));
        rules
    });
    graph
        .node(token::DATABASE_FIREWALL, &logical(cfg, "db-firewall"))
        .uses("clusterId", &[&cluster.declared])
        .uses("rules", &[&net.app_tag_ref])
        .declare();
    database_firewall::create(
        ctx,
        &logical(cfg, "db-firewall"),
        database_firewall::DatabaseFirewallArgs::builder()
            .cluster_id(cluster.outputs.id.clone())
            .rules(rules)
            .build_struct(),
    );
}
