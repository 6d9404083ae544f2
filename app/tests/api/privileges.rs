//! Least privilege on PostgreSQL 15+: a fresh database owned by an admin, an owner role that migrates, a runtime role with rows only.

use app::testing::{RetentionPolicy, run_maintenance};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::json;

use crate::helpers::{
    Backend, Options, spawn_app_with, test_database_name, try_spawn_app_with, with_database,
};

/// The server URL with another role (and a password with characters URLs trip over).
fn as_role(server: &str, role: &str) -> String {
    let (scheme, rest) = server.split_once("://").expect("a URL");
    let location = rest.rsplit_once('@').map_or(rest, |(_, l)| l);
    format!("{scheme}://{role}:{}@{location}", "p%40ss%2Fw%23rd%3F")
}

async fn exec(db: &DatabaseConnection, sql: &str) -> Result<(), String> {
    db.execute_unprepared(sql)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A managed cluster's layout: the database belongs to its admin, and the roles the provider
/// creates have no privileges (PostgreSQL 15+ grants CREATE on `public` to the owner only).
struct Cluster {
    server: String,
    superuser: DatabaseConnection,
    database: String,
    admin: String,
    owner: String,
    runtime: String,
}

impl Cluster {
    async fn new(server: &str) -> Cluster {
        let superuser = Database::connect(server).await.expect("TEST_DATABASE_URL");
        let tag = &uuid::Uuid::now_v7().simple().to_string()[20..];
        let (admin, owner, runtime) = (
            format!("rustlb_t_admin_{tag}"),
            format!("rustlb_t_owner_{tag}"),
            format!("rustlb_t_app_{tag}"),
        );
        for role in [&admin, &owner, &runtime] {
            exec(
                &superuser,
                &format!("CREATE ROLE {role} LOGIN PASSWORD 'p@ss/w#rd?'"),
            )
            .await
            .unwrap();
        }
        let database = test_database_name();
        exec(
            &superuser,
            &format!("CREATE DATABASE \"{database}\" OWNER {admin}"),
        )
        .await
        .unwrap();
        Cluster {
            server: server.to_owned(),
            superuser,
            database,
            admin,
            owner,
            runtime,
        }
    }

    fn url(&self, role: &str) -> String {
        with_database(&as_role(&self.server, role), &self.database)
    }

    async fn drop(self) {
        let _ = exec(
            &self.superuser,
            &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.database),
        )
        .await;
        for role in [&self.runtime, &self.owner, &self.admin] {
            let _ = exec(&self.superuser, &format!("DROP ROLE IF EXISTS {role}")).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_migrates_after_the_admins_grant_and_requests_run_without_ddl() {
    let Some(Backend::Postgres(server)) = Backend::postgres() else {
        return;
    };
    let cluster = Cluster::new(&server).await;
    let options = || Options {
        database_url: Some(cluster.url(&cluster.runtime)),
        owner_url: Some(cluster.url(&cluster.owner)),
        ..Options::default()
    };

    // A fresh cluster: the owner role may not create tables yet, and the app says what to do.
    let refused = try_spawn_app_with(Backend::Postgres(server.clone()), options())
        .await
        .err()
        .expect("migrations cannot run before the grant");
    let text = format!("{refused:#}");
    assert!(
        text.contains("permission denied for schema public"),
        "{text}"
    );
    assert!(text.contains("infra db-bootstrap"), "{text}");
    assert!(!text.contains("p@ss") && !text.contains("p%40ss"), "{text}");

    // The one statement only the admin can make, then the app migrates as the owner.
    app::grant_schema_to_owner(&cluster.url(&cluster.admin), &cluster.owner)
        .await
        .expect("the admin owns schema public");
    app::grant_schema_to_owner(&cluster.url(&cluster.admin), &cluster.owner)
        .await
        .expect("granting twice is harmless");
    let mut app = spawn_app_with(Backend::Postgres(server.clone()), options()).await;
    let created = app.create_user("Ada", "ada@example.com").await;
    let id = created["id"].as_str().expect("a created user").to_owned();
    let got = app.get(&format!("/api/users/{id}")).await;
    assert_eq!(got.status(), 200);
    let renamed = app
        .put_json(
            &format!("/api/users/{id}"),
            &json!({"name": "Ada L", "email": "ada@example.com"}),
        )
        .await;
    assert_eq!(renamed.status(), 200);
    assert_eq!(app.get("/api/stats").await.status(), 200);
    assert!(
        app.wait_for_rows("requests_log", 4).await >= 4,
        "the log writer writes as the runtime role"
    );
    assert_eq!(app.delete(&format!("/api/users/{id}")).await.status(), 204);

    // The runtime role reads and writes rows, and nothing else.
    let runtime = Database::connect(cluster.url(&cluster.runtime))
        .await
        .unwrap();
    exec(&runtime, "SELECT count(*) FROM users").await.unwrap();
    for ddl in [
        "CREATE TABLE stolen (x int)",
        "DROP TABLE users",
        "ALTER TABLE users ADD COLUMN x int",
        "TRUNCATE requests_log",
    ] {
        let e = exec(&runtime, ddl).await.expect_err(ddl);
        assert!(
            e.contains("permission denied") || e.contains("must be owner"),
            "{ddl}: {e}"
        );
    }
    // The owner, not the runtime role, owns what the migrations made.
    let owners = exec(
        &runtime,
        &format!(
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public' \
             AND tableowner <> '{}') THEN RAISE EXCEPTION 'a table has another owner'; END IF; END $$",
            cluster.owner
        ),
    )
    .await;
    assert_eq!(owners, Ok(()));

    // Partition maintenance is DDL: the owner runs it; the runtime role could not.
    let policy = RetentionPolicy {
        log_days: 7,
        stats_days: 400,
        minute_retention: chrono::TimeDelta::hours(48),
    };
    let now = chrono::Utc::now();
    let later = now + chrono::Duration::days(20);
    let as_runtime = run_maintenance(&runtime, &policy, later).await;
    assert!(
        as_runtime.is_err(),
        "the runtime role made partitions: {as_runtime:?}"
    );
    let owner = Database::connect(cluster.url(&cluster.owner))
        .await
        .unwrap();
    let report = run_maintenance(&owner, &policy, later).await.unwrap();
    assert!(report.partitions_created > 0, "{report:?}");
    app.create_user("Bob", "bob@example.com").await;
    let _ = owner.close().await;
    let _ = runtime.close().await;
    app.stop().await;
    cluster.drop().await;
}
